/* NUMA: which node a thread runs on, and where new memory goes.
 *
 * brisk keeps one set of pools per NUMA node that has memory, named by a slot
 * 0..brisk__numa_nodes-1. Until the topology is known there is one slot, and on
 * a one-node machine (or with BRISK_NUMA=off) there never is another.
 *
 * When: the first thread of a process never loads the topology, because the
 * kernel's first touch already places a lone thread's memory on its node and a
 * short-lived program should not pay for hwloc. When a second thread gets its
 * cache, a cheap look at /sys says whether there is more than one node, and
 * only then does a short-lived thread of brisk's ("brisk-numa") load hwloc
 * (dlopen, unless the program links it), read the topology, copy what brisk
 * needs into the tables below (CPU to slot, slot to OS node, a binding mask per
 * slot) and destroy it; where hwloc cannot be loaded, the same is read from the
 * kernel's sysfs, through the same description of the machine (topo_t).
 * Threads that start meanwhile wait for it while it makes progress (see
 * DISCOVERY_STALL_MS). hwloc allocates hundreds of times while it loads: those calls come
 * back into brisk from the loading thread, which serves them from the bootstrap
 * area (boot.c: mmap'd apart, marked in the page map, never reused; free() of
 * such a block does nothing), so the pools see none of it.
 *
 * Publication: the tables and the new slots' orphan heaps are filled before the
 * slot count is stored (release, under the registry lock, which the fork handler
 * takes first); the count is read with acquire, so whoever sees N slots sees
 * their tables. Slot 0 holds the memory allocated before discovery, so it is
 * given the node where that memory lies.
 *
 * Placement is done with raw mbind (no allocation) on fresh memory before it is
 * touched: MPOL_PREFERRED, so that a full node spills to its neighbours instead
 * of failing. The exception is what was allocated before discovery: its pages
 * went to whichever node first touched them, so discovery migrates the heap's
 * stray pages to slot 0's node (MPOL_MF_MOVE, up to EARLY_MOVE_MAX) and empties
 * the large-block cache. Everything that talks to the OS goes through
 * brisk__numa_os, which tests replace to describe machines that are not there. */
#define _GNU_SOURCE
#include "numa.h"
#include "meta.h"
#include "pagemap.h"
#include "options.h"
#include "os.h"
#include "page_heap.h" /* upward: BRISK_EARLY_RANGES, brisk__heap_first_address, brisk__heap_take_early, brisk_range_t */
#include "small.h" /* upward: brisk__small_add_slots */
#include "thread_cache.h" /* upward: brisk__registry_lock, brisk__tc */
#include "boot.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <hwloc.h>
#include <unistd.h>

/* hwloc: a program that links it (a test, or a static program built with
 * -lhwloc) provides it through these weak references; otherwise the discovery
 * thread dlopens it. libbrisk.so does not link it, so that no process pays for
 * loading hwloc and its libraries unless it is multithreaded on a multi-node
 * machine. */
#define HWLOC_FUNCS(X)                                                                             \
  X(hwloc_get_api_version) X(hwloc_topology_init) X(hwloc_topology_destroy) X(hwloc_topology_set_flags) \
  X(hwloc_topology_load) X(hwloc_get_type_depth) X(hwloc_get_obj_by_depth) X(hwloc_bitmap_isset)        \
  X(hwloc_bitmap_weight) X(hwloc_distances_get_by_type) X(hwloc_distances_release)
#define HWLOC_WEAK(f) extern __typeof__(f) f __attribute__((weak));
HWLOC_FUNCS(HWLOC_WEAK)
extern __typeof__(dlopen) dlopen __attribute__((weak));
extern __typeof__(dlsym) dlsym __attribute__((weak));
#define HWLOC_FIELD(f) __typeof__(f) *f;
static struct { HWLOC_FUNCS(HWLOC_FIELD) } hw;
/* The ABI of hwloc 2.x, the major version brisk is built against. */
#define HWLOC_SONAME "libhwloc.so.15"

static bool hwloc_resolve(void) {
  if (hwloc_topology_init != NULL) {
#define HWLOC_LINKED(f) hw.f = f;
    HWLOC_FUNCS(HWLOC_LINKED)
  } else {
    /* Weak too: a static program does not get dlopen pulled in, and even if it
     * has one, a shared hwloc would bring a second C library into it. */
    if (dlopen == NULL || dlsym == NULL || getauxval(AT_BASE) == 0) return false;
    void *lib = dlopen(HWLOC_SONAME, RTLD_NOW | RTLD_LOCAL); /* kept open for good */
    if (lib == NULL) return false;
#define HWLOC_DLSYM(f) *(void **)&hw.f = dlsym(lib, #f);
    HWLOC_FUNCS(HWLOC_DLSYM)
  }
#define HWLOC_MISSING(f) || hw.f == NULL
  if (0 HWLOC_FUNCS(HWLOC_MISSING)) return false;
  return (hw.hwloc_get_api_version() >> 16) == (HWLOC_API_VERSION >> 16);
}

/* Linux's mempolicy constants (numaif.h belongs to libnuma, which brisk does not use). */
#define BRISK_MPOL_PREFERRED 1
#define BRISK_MPOL_INTERLEAVE 3
#define BRISK_MPOL_MF_MOVE (1 << 1)
/* Migrating is a copy per stray page; past this much early heap only later
 * first touches follow the binding. A program that built a large heap on one
 * thread mostly did so on one node anyway. */
#define EARLY_MOVE_MAX ((size_t)256 << 20)

unsigned brisk__numa_nodes = 1;

/* Discovery's life; the waiters sleep on this word (futex) while it is LOADING. */
typedef enum {
  DISCOVERY_NONE = 0, /* not started */
  DISCOVERY_LOADING,  /* the brisk-numa thread is loading the topology */
  DISCOVERY_PUBLISHED, /* slots published (waiters go on); early memory being adopted */
  DISCOVERY_SETTLED,  /* done, or nothing to do */
} discovery_t;
static atomic_int discovery; /* a discovery_t */

/* Threads that start while the topology loads wait for it, for as long as it
 * makes progress: memory they took meanwhile would be filed under slot 0
 * whatever node it is on, so a fixed bound would make placement depend on how
 * fast the machine happens to be (under load, in a VM, loading takes seconds).
 * Progress is the beat: every allocation of the loading thread (hwloc allocates
 * hundreds of times) and every step of discovery. What a waiter must not do is
 * wait for ever for a loader that waits for it: a thread inside the dynamic
 * loader holds its lock, which dlopen of hwloc needs. So a waiter gives up once
 * the beat has stood still for DISCOVERY_STALL_MS, and a later thread that
 * finds it still standing at the same count does not wait at all. A thread
 * that gave up caches nothing until the slots are published (see
 * brisk__numa_published), so it never keeps another node's memory. */
#define DISCOVERY_STALL_MS 1000
#define DISCOVERY_POLL_MS 20
static atomic_uint discovery_beat;
static atomic_uint stalled_beat = UINT32_MAX; /* the beat at the last give-up */
static _Atomic uint64_t discovery_giveups;
static int requester_cpu = -1; /* the CPU of the thread whose start triggered discovery */
static uint8_t cpu_slot[BRISK_MAX_CPUS];
static int slot_os[BRISK_MAX_NODES];
static uint32_t slot_cpus[BRISK_MAX_NODES];
static uint64_t slot_mask[BRISK_MAX_NODES][BRISK_NODEMASK_WORDS];
static uint64_t all_mask[BRISK_NODEMASK_WORDS];
static _Atomic uint64_t remote_frees[BRISK_MAX_NODES];


/* ------------------------------------------------------------------------------
   The real OS
------------------------------------------------------------------------------ */

static unsigned list_parse(const char *s, uint64_t *mask, unsigned bits);

static unsigned os_online_nodes(void) {
  char buf[256];
  if (brisk__os_read_file("/sys/devices/system/node/online", buf, sizeof buf) <= 0) return 1;
  unsigned n = list_parse(buf, NULL, 0);
  return n ? n : 1;
}

static int os_topology_setup(struct hwloc_topology *topo) {
  (void)topo;
  return 0;
}

static int os_bind(void *p, size_t len, brisk_bind_t how, const uint64_t *mask) {
  return brisk__os_mbind(p, len, how == BRISK_BIND_INTERLEAVE ? BRISK_MPOL_INTERLEAVE : BRISK_MPOL_PREFERRED, mask,
                         (unsigned long)BRISK_NODEMASK_WORDS * 64, how == BRISK_BIND_MOVE ? BRISK_MPOL_MF_MOVE : 0u);
}

brisk_numa_os_t brisk__numa_os = {os_online_nodes, os_topology_setup, brisk__os_current_cpu, os_bind, brisk__os_page_node,
                                  brisk__os_read_file};

/* ------------------------------------------------------------------------------
   Discovery
------------------------------------------------------------------------------ */
/* A topology as either source describes it, copied out of hwloc or read from
 * sysfs; the tables are built from this alone, so both give the same placement
 * for the same machine. Nodes are in the source's order: hwloc's logical order,
 * or sysfs's by OS number (the same on Linux, which numbers CPU-less nodes last). */
#define TOPO_NODES_MAX (BRISK_MAX_NODES * 4) /* nodes looked at; more are ignored */
#define CPU_WORDS (BRISK_MAX_CPUS / 64)
#define NODE_WORDS BRISK_NODEMASK_WORDS
#define FAR_AWAY (UINT64_MAX / 2) /* the distance between nodes that the source does not relate */
typedef struct topo_node_s {
  int os;                   /* OS node number */
  bool memory;              /* has memory of its own (that this process may use) */
  int weight;               /* CPUs local to it */
  uint64_t cpus[CPU_WORDS]; /* those CPUs (os_index < BRISK_MAX_CPUS) */
} topo_node_t;
typedef struct topo_s {
  unsigned n;
  topo_node_t *nodes;      /* n of them, from the bootstrap area */
  uint64_t *dist;          /* n * n, row = from; NULL: 0 to itself, 1 to any other */
  uint64_t pus[CPU_WORDS]; /* the CPUs the process may run on */
} topo_t;

static bool bit_get(const uint64_t *m, unsigned i) { return m[i / 64] >> (i % 64) & 1; }
static void bit_set(uint64_t *m, unsigned i) { m[i / 64] |= (uint64_t)1 << (i % 64); }

static uint64_t distance(const topo_t *t, unsigned a, unsigned b) {
  if (t->dist == NULL) return a == b ? 0 : 1;
  return t->dist[a * t->n + b];
}

/* The node nearest to cpu: of those whose CPUs include it, the one with the
 * fewest CPUs (sub-NUMA clusters hang inside their package's node set). */
static int most_local(const topo_t *t, unsigned cpu, bool need_memory) {
  int best = -1;
  for (unsigned i = 0; i < t->n; i++) {
    if ((need_memory && !t->nodes[i].memory) || !bit_get(t->nodes[i].cpus, cpu)) continue;
    if (best < 0 || t->nodes[i].weight < t->nodes[best].weight) best = (int)i;
  }
  return best;
}

static void mask_set(uint64_t *mask, int os) {
  if (os >= 0 && os < BRISK_NODEMASK_WORDS * 64) mask[os / 64] |= (uint64_t)1 << (os % 64);
}

/* Fill the tables from t; returns the number of slots (1 when there is nothing
 * to do). */
static unsigned tables_build(const topo_t *t) {
  unsigned n = t->n, with_memory = 0;
  for (unsigned i = 0; i < n; i++) with_memory += t->nodes[i].memory;
  if (n < 2 || with_memory < 2) return 1;

  /* Slots: memory nodes in the source's order, except that slot 0 goes to the
   * node that already holds brisk's memory (it was allocated before there were
   * slots). */
  int home = -1;
  uintptr_t first = brisk__heap_first_address();
  if (first != 0) home = brisk__numa_os.page_node((const void *)first);
  if (home < 0) {
    int cpu = requester_cpu;
    int local = cpu >= 0 && cpu < BRISK_MAX_CPUS ? most_local(t, (unsigned)cpu, true) : -1;
    if (local >= 0) home = t->nodes[local].os;
  }
  int node_slot[TOPO_NODES_MAX]; /* by index into nodes[]; -1 for memory-less */
  for (unsigned i = 0; i < n; i++) node_slot[i] = -1;
  unsigned next = 0;
  for (int pass = 0; pass < 2; pass++) /* the home node first, then the rest */
    for (unsigned i = 0; i < n; i++) {
      if (!t->nodes[i].memory || node_slot[i] >= 0 || (pass == 0 && t->nodes[i].os != home)) continue;
      unsigned s = next++ % BRISK_MAX_NODES; /* beyond the limit, nodes share pools */
      node_slot[i] = (int)s;
      if (s == next - 1) slot_os[s] = t->nodes[i].os;
      mask_set(slot_mask[s], t->nodes[i].os);
      mask_set(all_mask, t->nodes[i].os);
    }

  /* Every CPU goes to the most local node that has memory; a CPU of a
   * memory-less node to the nearest node with memory. */
  for (unsigned cpu = 0; cpu < BRISK_MAX_CPUS; cpu++) {
    if (!bit_get(t->pus, cpu)) continue;
    int best = most_local(t, cpu, true);
    int local = most_local(t, cpu, false);
    if (best < 0 && local >= 0) {
      uint64_t bd = UINT64_MAX;
      for (unsigned i = 0; i < n; i++) {
        if (node_slot[i] < 0) continue;
        uint64_t d = distance(t, (unsigned)local, i);
        if (d < bd) bd = d, best = (int)i;
      }
    }
    unsigned s = best >= 0 ? (unsigned)node_slot[best] : 0;
    cpu_slot[cpu] = (uint8_t)s;
    slot_cpus[s]++;
  }
  return next < BRISK_MAX_NODES ? next : BRISK_MAX_NODES;
}

/* ------------------------------------------------------------------------------
   The topology from hwloc
------------------------------------------------------------------------------ */
/* The set's CPUs below BRISK_MAX_CPUS; weight (hwloc_bitmap_weight, -1 for an
 * infinite set) ends the scan once all are found. */
static void cpus_from_hwloc(uint64_t *out, hwloc_const_bitmap_t set, int weight) {
  if (set == NULL) return;
  int found = 0;
  for (unsigned cpu = 0; cpu < BRISK_MAX_CPUS && (weight < 0 || found < weight); cpu++)
    if (hw.hwloc_bitmap_isset(set, cpu)) {
      bit_set(out, cpu);
      found++;
    }
}

static uint64_t hwloc_distance(struct hwloc_distances_s *d, hwloc_obj_t a, hwloc_obj_t b) {
  if (d == NULL) return a == b ? 0 : 1;
  int ia = -1, ib = -1;
  for (unsigned i = 0; i < d->nbobjs; i++) {
    if (d->objs[i] == a) ia = (int)i;
    if (d->objs[i] == b) ib = (int)i;
  }
  if (ia < 0 || ib < 0) return a == b ? 0 : FAR_AWAY;
  return d->values[(unsigned)ia * d->nbobjs + (unsigned)ib];
}

/* False when hwloc could not load a topology; a one-node one is loaded. */
static bool topo_from_hwloc(topo_t *t) {
  hwloc_topology_t topo;
  if (hw.hwloc_topology_init(&topo) != 0) return false;
  bool loaded = false;
  struct hwloc_distances_s *dist = NULL;
  unsigned ndist = 1;
  /* Do not let the x86 backend move this thread around the CPUs. The CPU-side
   * objects stay (hwloc's default): a NUMA node's CPUs are those of the object
   * it hangs from, a package, a die, a cache or a core, and filtering those out
   * would hang every node from the machine, local to every CPU. */
  hw.hwloc_topology_set_flags(topo, HWLOC_TOPOLOGY_FLAG_DONT_CHANGE_BINDING);
  if (brisk__numa_os.topology_setup(topo) != 0 || hw.hwloc_topology_load(topo) != 0) goto out;
  loaded = true;

  int ndepth = hw.hwloc_get_type_depth(topo, HWLOC_OBJ_NUMANODE);
  int pdepth = hw.hwloc_get_type_depth(topo, HWLOC_OBJ_PU);
  unsigned n = 0;
  for (hwloc_obj_t o = hw.hwloc_get_obj_by_depth(topo, ndepth, 0); o != NULL && n < TOPO_NODES_MAX; o = o->next_cousin) n++;
  if (n < 2) goto out;
  hwloc_obj_t objs[TOPO_NODES_MAX];
  t->nodes = brisk__boot_alloc(n * sizeof *t->nodes, 0);
  if (t->nodes == NULL) goto out;
  unsigned i = 0;
  for (hwloc_obj_t o = hw.hwloc_get_obj_by_depth(topo, ndepth, 0); o != NULL && i < n; o = o->next_cousin, i++) {
    topo_node_t *nd = &t->nodes[i];
    nd->os = (int)o->os_index;
    nd->memory = o->attr->numanode.local_memory > 0;
    nd->weight = o->cpuset ? hw.hwloc_bitmap_weight(o->cpuset) : 0;
    cpus_from_hwloc(nd->cpus, o->cpuset, nd->weight);
    objs[i] = o;
  }
  t->n = n;
  for (hwloc_obj_t pu = hw.hwloc_get_obj_by_depth(topo, pdepth, 0); pu != NULL; pu = pu->next_cousin)
    if (pu->os_index < BRISK_MAX_CPUS) bit_set(t->pus, pu->os_index);
  if (hw.hwloc_distances_get_by_type(topo, HWLOC_OBJ_NUMANODE, &ndist, &dist, 0, 0) != 0 || ndist == 0) dist = NULL;
  if (dist != NULL && (t->dist = brisk__boot_alloc((size_t)n * n * sizeof *t->dist, 0)) != NULL)
    for (unsigned a = 0; a < n; a++)
      for (unsigned b = 0; b < n; b++) t->dist[a * n + b] = hwloc_distance(dist, objs[a], objs[b]);
out:
  if (dist != NULL) hw.hwloc_distances_release(topo, dist);
  hw.hwloc_topology_destroy(topo);
  return loaded;
}

/* ------------------------------------------------------------------------------
   The topology from the kernel's sysfs, for when hwloc cannot be loaded: which
   nodes are online and have memory, each node's CPUs and distances. As hwloc
   does by default, CPUs and memory nodes that the process may not use (its
   cpuset cgroup, /proc/self/status) are left out.
------------------------------------------------------------------------------ */
#define SYSFS_NODE "/sys/devices/system/node"
#define SYSFS_BUF 8192 /* a cpulist of 4096 scattered CPUs is about 20 KiB; that many are rare */

/* "0", "0-3", "0-1,4": set the bits of a kernel list in mask (those below bits);
 * returns how many entries the list names, in range or not. */
static unsigned list_parse(const char *s, uint64_t *mask, unsigned bits) {
  unsigned n = 0;
  while (*s == ' ' || *s == '\t') s++;
  while (*s >= '0' && *s <= '9') {
    unsigned a = 0, b;
    while (*s >= '0' && *s <= '9') a = a * 10 + (unsigned)(*s++ - '0');
    b = a;
    if (*s == '-') {
      s++;
      b = 0;
      while (*s >= '0' && *s <= '9') b = b * 10 + (unsigned)(*s++ - '0');
    }
    if (b < a) b = a;
    n += b - a + 1;
    if (mask != NULL)
      for (unsigned i = a; i <= b && i < bits; i++) bit_set(mask, i);
    if (*s == ',') s++;
  }
  return n;
}

static bool sysfs_read(const char *path, char *buf) { return brisk__numa_os.read_file(path, buf, SYSFS_BUF) >= 0; }

/* The list after "Name:" in /proc/self/status into mask; false if it is not there. */
static bool status_list(const char *status, const char *name, uint64_t *mask, unsigned bits) {
  size_t len = strlen(name);
  for (const char *line = status; *line; ) {
    if (strncmp(line, name, len) == 0) {
      list_parse(line + len, mask, bits);
      return true;
    }
    const char *nl = strchr(line, '\n');
    if (nl == NULL) break;
    line = nl + 1;
  }
  return false;
}

/* "MemTotal:  1048576 kB" in a node's meminfo ("Node 1 MemTotal: ..."). */
static bool meminfo_has_memory(const char *meminfo) {
  const char *m = strstr(meminfo, "MemTotal:");
  if (m == NULL) return false;
  m += 9;
  while (*m == ' ') m++;
  return *m >= '1' && *m <= '9';
}

static bool topo_from_sysfs(topo_t *t) {
  char buf[SYSFS_BUF], path[96];
  uint64_t online[NODE_WORDS] = {0}, memory[NODE_WORDS] = {0}, mems_allowed[NODE_WORDS];
  uint64_t cpus_allowed[CPU_WORDS];
  if (!sysfs_read(SYSFS_NODE "/online", buf) || list_parse(buf, online, NODE_WORDS * 64) == 0) return false;
  bool have_memory_list = sysfs_read(SYSFS_NODE "/has_memory", buf);
  if (have_memory_list) list_parse(buf, memory, NODE_WORDS * 64);
  memset(mems_allowed, 0xff, sizeof mems_allowed);
  memset(cpus_allowed, 0xff, sizeof cpus_allowed);
  if (sysfs_read("/proc/self/status", buf)) {
    uint64_t m[NODE_WORDS] = {0}, c[CPU_WORDS] = {0};
    if (status_list(buf, "Mems_allowed_list:", m, NODE_WORDS * 64)) memcpy(mems_allowed, m, sizeof m);
    if (status_list(buf, "Cpus_allowed_list:", c, BRISK_MAX_CPUS)) memcpy(cpus_allowed, c, sizeof c);
  }
  unsigned n = 0;
  for (unsigned os = 0; os < NODE_WORDS * 64; os++) n += bit_get(online, os);
  if (n > TOPO_NODES_MAX) n = TOPO_NODES_MAX;
  if (n < 2) {
    t->n = n;
    return true;
  }
  t->nodes = brisk__boot_alloc(n * sizeof *t->nodes, 0);
  t->dist = brisk__boot_alloc((size_t)n * n * sizeof *t->dist, 0);
  if (t->nodes == NULL || t->dist == NULL) return false;
  unsigned i = 0;
  for (unsigned os = 0; os < NODE_WORDS * 64 && i < n; os++) {
    if (!bit_get(online, os)) continue;
    topo_node_t *nd = &t->nodes[i];
    nd->os = (int)os;
    if (!have_memory_list) {
      brisk__snprintf(path, sizeof path, SYSFS_NODE "/node%u/meminfo", os);
      if (sysfs_read(path, buf) && meminfo_has_memory(buf)) bit_set(memory, os);
    }
    nd->memory = bit_get(memory, os) && bit_get(mems_allowed, os);
    brisk__snprintf(path, sizeof path, SYSFS_NODE "/node%u/cpulist", os);
    if (sysfs_read(path, buf)) list_parse(buf, nd->cpus, BRISK_MAX_CPUS);
    for (unsigned w = 0; w < CPU_WORDS; w++) {
      nd->cpus[w] &= cpus_allowed[w];
      t->pus[w] |= nd->cpus[w];
      nd->weight += __builtin_popcountll(nd->cpus[w]);
    }
    i++;
  }
  t->n = n;
  /* nodeN/distance: one number per online node, in the order of their numbers. */
  for (unsigned a = 0; a < n; a++) {
    for (unsigned b = 0; b < n; b++) t->dist[a * n + b] = a == b ? 0 : FAR_AWAY;
    brisk__snprintf(path, sizeof path, SYSFS_NODE "/node%d/distance", t->nodes[a].os);
    if (!sysfs_read(path, buf)) continue;
    const char *s = buf;
    for (unsigned b = 0; b < n; b++) {
      while (*s == ' ' || *s == '\t' || *s == '\n') s++;
      if (*s < '0' || *s > '9') break;
      uint64_t v = 0;
      while (*s >= '0' && *s <= '9') v = v * 10 + (uint64_t)(*s++ - '0');
      t->dist[a * n + b] = v;
    }
  }
  return true;
}

/* ------------------------------------------------------------------------------
   Loading
------------------------------------------------------------------------------ */
static brisk_topo_source_t topo_source; /* written by discovery, read by statistics */

/* Load the topology and fill the tables; returns the number of slots (1 when
 * there is nothing to do). hwloc first (BRISK_NUMA_SOURCE=auto), sysfs when hwloc
 * cannot be loaded. Runs in the discovering thread with booting set. */
static unsigned load_tables(void) {
  static topo_t t; /* only the discovery thread touches it, once */
  uint8_t want = brisk__opt.numa_source;
  brisk_topo_source_t src = BRISK_TOPO_NONE;
  memset(&t, 0, sizeof t);
  bool have_hwloc = want != BRISK_NUMA_SOURCE_SYSFS && hwloc_resolve();
  if (have_hwloc && topo_from_hwloc(&t)) src = BRISK_TOPO_HWLOC;
  if (src == BRISK_TOPO_NONE && want != BRISK_NUMA_SOURCE_HWLOC) {
    memset(&t, 0, sizeof t); /* what hwloc may have left */
    if (topo_from_sysfs(&t)) src = BRISK_TOPO_SYSFS;
  }
  __atomic_store_n(&topo_source, src, __ATOMIC_RELAXED);
  if (brisk__opt.verbose && src == BRISK_TOPO_HWLOC)
    brisk__printf_err("brisk: NUMA: topology from hwloc\n");
  else if (brisk__opt.verbose)
    brisk__printf_err("brisk: NUMA: %s (%s)\n", src == BRISK_TOPO_SYSFS ? "topology from sysfs" : "no topology, one set of pools",
                      want == BRISK_NUMA_SOURCE_SYSFS ? "BRISK_NUMA_SOURCE=sysfs"
                      : have_hwloc                    ? "hwloc could not load it"
                                                      : HWLOC_SONAME " could not be loaded");
  return src == BRISK_TOPO_NONE ? 1 : tables_build(&t);
}

brisk_topo_source_t brisk__numa_topology_source(void) { return __atomic_load_n(&topo_source, __ATOMIC_RELAXED); }

const char *brisk__numa_topology_source_name(void) {
  static const char *const names[] = {[BRISK_TOPO_NONE] = "none", [BRISK_TOPO_HWLOC] = "hwloc",
                                      [BRISK_TOPO_SYSFS] = "sysfs"};
  return names[brisk__numa_topology_source()];
}

/* Slot 0 owns everything from before discovery. The early heap chunks (large
 * blocks' runs included) are bound to its node and their stray pages moved there.
 * Runs after the slots are published, so it blocks no allocation. Returns the
 * bytes of early heap it asked the kernel to move. */
static size_t adopt_early(void) {
  brisk_range_t r[BRISK_EARLY_RANGES];
  unsigned n = brisk__heap_take_early(r);
  size_t moved = 0;
  for (unsigned i = 0; i < n; i++) {
    bool move = moved + r[i].len <= EARLY_MOVE_MAX;
    if (move) moved += r[i].len;
    int err = brisk__numa_os.bind((void *)r[i].start, r[i].len, move ? BRISK_BIND_MOVE : BRISK_BIND_PREFER, slot_mask[0]);
    if (err != 0 && brisk__opt.verbose) brisk__printf_err("brisk: NUMA: moving early heap to node %d failed (%d)\n", slot_os[0], err);
  }
  return moved;
}

static void discovery_set(discovery_t state) {
  atomic_fetch_add_explicit(&discovery_beat, 1, memory_order_relaxed);
  atomic_store_explicit(&discovery, state, memory_order_release);
  brisk__os_wake_all(&discovery);
}

static void discover(void) {
  uint64_t start = brisk__os_now_ms();
  unsigned slots = load_tables();
  atomic_fetch_add_explicit(&discovery_beat, 1, memory_order_relaxed);
  if (slots < 2 || !brisk__small_add_slots(slots)) {
    if (brisk__opt.verbose && slots >= 2) brisk__printf_err("brisk: NUMA: out of memory for pools\n");
    return;
  }
  brisk__lock(&brisk__registry_lock); /* the fork handler sees the old count or the new */
  __atomic_store_n(&brisk__numa_nodes, slots, __ATOMIC_RELEASE);
  brisk__unlock(&brisk__registry_lock);
  discovery_set(DISCOVERY_PUBLISHED);
  uint64_t found = brisk__os_now_ms();
  size_t moved = adopt_early();
  if (brisk__opt.verbose) {
    brisk__printf_err("brisk: NUMA: %u nodes with memory;", slots);
    for (unsigned s = 0; s < slots; s++)
      brisk__printf_err(" slot %u = node %d (%u CPUs)", s, slot_os[s], (unsigned)slot_cpus[s]);
    brisk__printf_err("; found in %llu ms, %llu KiB of early heap moved to node %d in %llu ms\n",
                      (unsigned long long)(found - start), (unsigned long long)(moved >> 10), slot_os[0],
                      (unsigned long long)(brisk__os_now_ms() - found));
  }
}

/* Discovery runs in a thread of its own, never inside the allocation that
 * triggered it: that allocation may come from the dynamic loader, and hwloc may
 * be dlopened. Every allocation of this thread comes from the bootstrap area. */
static void *discovery_main(void *arg) {
  (void)arg;
  brisk__tc.booting = 1;
  discover();
  discovery_set(DISCOVERY_SETTLED);
  return NULL;
}

static bool discovery_start(void) { return brisk__os_thread_start(discovery_main, 256 * 1024, "brisk-numa"); }

/* Sleep until the slots are published, while the loader makes progress (see
 * DISCOVERY_STALL_MS). Returns false if it gave up. */
/* The loader's sign of life: its steps, and the blocks it takes from the
 * bootstrap area (every allocation of the discovery thread is one). */
static unsigned discovery_progress(void) {
  return atomic_load_explicit(&discovery_beat, memory_order_relaxed) + (unsigned)brisk__boot_count();
}

static brisk_noinline bool wait_for_discovery(void) {
  unsigned beat = discovery_progress();
  uint64_t since = brisk__os_now_ms();
  while (atomic_load_explicit(&discovery, memory_order_acquire) == DISCOVERY_LOADING) {
    unsigned now_beat = discovery_progress();
    uint64_t now = brisk__os_now_ms();
    if (now_beat != beat) {
      beat = now_beat;
      since = now;
    } else if (now - since >= DISCOVERY_STALL_MS ||
               beat == atomic_load_explicit(&stalled_beat, memory_order_relaxed)) {
      atomic_store_explicit(&stalled_beat, beat, memory_order_relaxed);
      atomic_fetch_add_explicit(&discovery_giveups, 1, memory_order_relaxed);
      if (brisk__opt.verbose)
        brisk__printf_err("brisk: NUMA: topology loading made no progress for %u ms; this thread caches "
                          "nothing until it is done\n", (unsigned)DISCOVERY_STALL_MS);
      return false;
    }
    brisk__os_wait_while(&discovery, DISCOVERY_LOADING, DISCOVERY_POLL_MS);
  }
  return true;
}

bool brisk__numa_thread_started(uint64_t threads_seen) {
  if (threads_seen < 2 || brisk__opt.numa == BRISK_NUMA_OFF) return true;
  int state = atomic_load_explicit(&discovery, memory_order_acquire);
  if (state >= DISCOVERY_PUBLISHED) return true;
  int expected = DISCOVERY_NONE;
  if (state == DISCOVERY_NONE && atomic_compare_exchange_strong(&discovery, &expected, DISCOVERY_LOADING)) {
    requester_cpu = brisk__numa_os.current_cpu();
    if (brisk__numa_os.online_nodes() < 2 || !discovery_start()) {
      discovery_set(DISCOVERY_SETTLED);
      return true;
    }
  }
  return wait_for_discovery();
}

bool brisk__numa_published(void) {
  return atomic_load_explicit(&discovery, memory_order_acquire) != DISCOVERY_LOADING;
}

uint64_t brisk__numa_giveups(void) { return atomic_load_explicit(&discovery_giveups, memory_order_relaxed); }

/* A child forked while the discovery thread ran does not have that thread: it
 * starts over, or, with the slots already published, leaves the early memory
 * where it is. */
void brisk__numa_after_fork_child(void) {
  int loading = DISCOVERY_LOADING, adopting = DISCOVERY_PUBLISHED;
  atomic_compare_exchange_strong(&discovery, &loading, DISCOVERY_NONE);
  atomic_compare_exchange_strong(&discovery, &adopting, DISCOVERY_SETTLED);
}

bool brisk__numa_settled(void) { return atomic_load_explicit(&discovery, memory_order_acquire) == DISCOVERY_SETTLED; }


/* ------------------------------------------------------------------------------
   Queries, binding, statistics
------------------------------------------------------------------------------ */
unsigned brisk__numa_slot_now(void) {
  if (brisk__numa_count() < 2) return 0;
  int cpu = brisk__numa_os.current_cpu();
  return cpu >= 0 && cpu < BRISK_MAX_CPUS ? cpu_slot[cpu] : 0;
}

void brisk__numa_bind(void *p, size_t len, unsigned slot) {
  if (brisk__numa_count() < 2) return;
  int err = brisk__numa_os.bind(p, len, BRISK_BIND_PREFER, slot_mask[slot]);
  if (err != 0 && brisk__opt.verbose) brisk__printf_err("brisk: NUMA: mbind to node %d failed (%d)\n", slot_os[slot], err);
}

void brisk__numa_bind_interleave(void *p, size_t len) {
  if (brisk__numa_count() < 2) return;
  int err = brisk__numa_os.bind(p, len, BRISK_BIND_INTERLEAVE, all_mask);
  if (err != 0 && brisk__opt.verbose) brisk__printf_err("brisk: NUMA: interleaving failed (%d)\n", err);
}

unsigned brisk__numa_large_slot(unsigned slot) { return brisk__opt.numa == BRISK_NUMA_INTERLEAVE ? 0 : slot; }
int brisk__numa_slot_os_node(unsigned slot) { return slot_os[slot]; }
uint32_t brisk__numa_slot_cpus(unsigned slot) { return brisk__numa_count() < 2 ? 0 : slot_cpus[slot]; }

void brisk__numa_note_remote(unsigned slot, uint64_t n) {
  atomic_fetch_add_explicit(&remote_frees[slot], n, memory_order_relaxed);
}
uint64_t brisk__numa_remote(unsigned slot) { return atomic_load_explicit(&remote_frees[slot], memory_order_relaxed); }

