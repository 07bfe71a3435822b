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
 * slot) and destroy it. Threads that start meanwhile wait for it (a second at
 * most). hwloc allocates hundreds of times while it loads: those calls come
 * back into brisk from the loading thread, which serves them from a bootstrap
 * area (mmap'd here, marked in the page map, never reused; free() of such a
 * block does nothing), so the pools see none of it.
 *
 * Publication: the tables and the new slots' central lists are filled before the
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
#include "internal.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <hwloc.h>
#include <sched.h>
#include <sys/syscall.h>
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
#define BRISK_MPOL_F_NODE (1 << 0)
#define BRISK_MPOL_F_ADDR (1 << 1)
#define BRISK_MPOL_MF_MOVE (1 << 1)
/* Migrating is a copy per stray page; past this much early heap only later
 * first touches follow the binding. A program that built a large heap on one
 * thread mostly did so on one node anyway. */
#define EARLY_MOVE_MAX ((size_t)256 << 20)

unsigned brisk__numa_nodes = 1;

/* 0 not yet, 1 loading the topology, 2 slots published (waiters go on) while
 * early memory is adopted, 3 done */
static atomic_int discovery;
/* Threads that start while another loads the topology wait for it this long at
 * most: memory they took meanwhile would be filed under slot 0 whatever node it
 * is on. The bound keeps a thread that hwloc might wait for (it may take the
 * dynamic loader's lock) from blocking it forever. */
#define DISCOVERY_WAIT_MS 1000
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

/* "0", "0-3", "0-1,4": the number of nodes in a kernel list file. */
static unsigned count_list(const char *s) {
  unsigned n = 0;
  while (*s >= '0' && *s <= '9') {
    unsigned a = 0, b;
    while (*s >= '0' && *s <= '9') a = a * 10 + (unsigned)(*s++ - '0');
    b = a;
    if (*s == '-') {
      s++;
      b = 0;
      while (*s >= '0' && *s <= '9') b = b * 10 + (unsigned)(*s++ - '0');
    }
    n += b >= a ? b - a + 1 : 1;
    if (*s == ',') s++;
  }
  return n;
}

static unsigned os_online_nodes(void) {
  char buf[256];
  int fd = open("/sys/devices/system/node/online", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t r = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (r <= 0) return 1;
  buf[r] = 0;
  unsigned n = count_list(buf);
  return n ? n : 1;
}

static int os_topology_setup(struct hwloc_topology *topo) {
  (void)topo;
  return 0;
}

/* glibc 2.35+ registers rseq for every thread and exports where its area is: the
 * kernel keeps cpu_id there, a load instead of a call. */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

static int os_current_cpu(void) {
  if (&__rseq_size != NULL && __rseq_size >= 8) {
    int32_t cpu = *(volatile int32_t *)((char *)__builtin_thread_pointer() + __rseq_offset + 4);
    if (cpu >= 0) return cpu;
  }
  return sched_getcpu();
}

static int os_bind(void *p, size_t len, brisk_bind_t how, const uint64_t *mask) {
  int saved = errno;
  long r = syscall(SYS_mbind, p, len, how == BRISK_BIND_INTERLEAVE ? BRISK_MPOL_INTERLEAVE : BRISK_MPOL_PREFERRED,
                   mask, (unsigned long)BRISK_NODEMASK_WORDS * 64, how == BRISK_BIND_MOVE ? BRISK_MPOL_MF_MOVE : 0u);
  int err = r == 0 ? 0 : -errno;
  errno = saved;
  return err;
}

static int os_page_node(const void *p) {
  int node = -1, saved = errno;
  if (syscall(SYS_get_mempolicy, &node, NULL, 0ul, p, (unsigned long)(BRISK_MPOL_F_NODE | BRISK_MPOL_F_ADDR)) != 0)
    node = -1;
  errno = saved;
  return node;
}

brisk_numa_os_t brisk__numa_os = {os_online_nodes, os_topology_setup, os_current_cpu, os_bind, os_page_node};

/* ------------------------------------------------------------------------------
   The bootstrap area
------------------------------------------------------------------------------ */
#define BOOT_CHUNK ((size_t)1 << 20)
#define BOOT_HEADER 16

static brisk_lock_t boot_lock = BRISK_LOCK_INIT;
static uintptr_t boot_cur, boot_end;
static uint64_t boot_count;

static bool boot_grow_locked(size_t need) {
  size_t bytes = brisk__align_up(need > BOOT_CHUNK ? need : BOOT_CHUNK, BRISK_PAGE_SIZE);
  void *p = brisk__os_mmap_aligned(bytes, BRISK_PAGE_SIZE);
  if (p == NULL) return false;
  brisk_span_t *s = brisk__span_new();
  if (s == NULL || !brisk__pagemap_set((uintptr_t)p >> BRISK_PAGE_SHIFT, bytes / BRISK_PAGE_SIZE, s)) {
    if (s) brisk__span_delete(s);
    brisk__os_munmap(p, bytes);
    return false;
  }
  s->start = (uintptr_t)p;
  s->npages = bytes / BRISK_PAGE_SIZE;
  s->map_size = bytes;
  s->state = BRISK_SPAN_BOOT;
  atomic_fetch_add_explicit(&brisk__counters.meta, bytes, memory_order_relaxed);
  boot_cur = (uintptr_t)p;
  boot_end = (uintptr_t)p + bytes;
  return true;
}

/* align 0: the size's own power-of-two alignment (16 to a page), which is what
 * brisk__alloc_aligned expects of a block of a size class. */
void *brisk__boot_alloc(size_t size, size_t align) {
  if (size > PTRDIFF_MAX / 2) {
    errno = ENOMEM;
    return NULL;
  }
  if (align == 0) align = size & (~size + 1);
  if (align < BRISK_ALIGN) align = BRISK_ALIGN;
  if (align > brisk__os_page && size <= BRISK_SMALL_MAX) align = brisk__os_page;
  size_t need = size + align + BOOT_HEADER;
  brisk__lock(&boot_lock);
  if (boot_end - boot_cur < need && !boot_grow_locked(need)) {
    brisk__unlock(&boot_lock);
    errno = ENOMEM;
    return NULL;
  }
  uintptr_t p = brisk__align_up(boot_cur + BOOT_HEADER, align);
  ((size_t *)p)[-1] = size;
  boot_cur = p + (size ? size : 1);
  boot_count++;
  brisk__unlock(&boot_lock);
  return (void *)p; /* fresh mmap memory: zero, as calloc needs */
}

size_t brisk__boot_usable(const void *p) { return ((const size_t *)p)[-1]; }

uint64_t brisk__boot_count(void) {
  brisk__lock(&boot_lock);
  uint64_t n = boot_count;
  brisk__unlock(&boot_lock);
  return n;
}

/* ------------------------------------------------------------------------------
   Discovery
------------------------------------------------------------------------------ */
typedef struct node_info_s {
  int os;           /* OS node number */
  bool memory;      /* has memory of its own */
  int weight;       /* CPUs local to it */
  hwloc_obj_t obj;
} node_info_t;

static uint64_t distance(struct hwloc_distances_s *d, hwloc_obj_t a, hwloc_obj_t b) {
  if (d == NULL) return a == b ? 0 : 1;
  int ia = -1, ib = -1;
  for (unsigned i = 0; i < d->nbobjs; i++) {
    if (d->objs[i] == a) ia = (int)i;
    if (d->objs[i] == b) ib = (int)i;
  }
  if (ia < 0 || ib < 0) return a == b ? 0 : UINT64_MAX / 2;
  return d->values[(unsigned)ia * d->nbobjs + (unsigned)ib];
}

/* The node nearest to cpu: of those whose CPUs include it, the one with the
 * fewest CPUs (sub-NUMA clusters hang inside their package's node set). */
static int most_local(const node_info_t *nodes, unsigned n, unsigned cpu, bool need_memory) {
  int best = -1;
  for (unsigned i = 0; i < n; i++) {
    if ((need_memory && !nodes[i].memory) || nodes[i].obj->cpuset == NULL ||
        !hw.hwloc_bitmap_isset(nodes[i].obj->cpuset, cpu))
      continue;
    if (best < 0 || nodes[i].weight < nodes[best].weight) best = (int)i;
  }
  return best;
}

static void mask_set(uint64_t *mask, int os) {
  if (os >= 0 && os < BRISK_NODEMASK_WORDS * 64) mask[os / 64] |= (uint64_t)1 << (os % 64);
}

/* Load the topology and fill the tables; returns the number of slots (1 when
 * there is nothing to do). Runs in the discovering thread with booting set. */
static unsigned load_tables(void) {
  if (!hwloc_resolve()) return 1;
  hwloc_topology_t topo;
  if (hw.hwloc_topology_init(&topo) != 0) return 1;
  unsigned slots = 1;
  node_info_t *nodes = NULL;
  struct hwloc_distances_s *dist = NULL;
  unsigned ndist = 1;
  /* Do not let the x86 backend move this thread around the CPUs. The CPU-side
   * objects stay (hwloc's default): a NUMA node's CPUs are those of the object
   * it hangs from, a package, a die, a cache or a core, and filtering those out
   * would hang every node from the machine, local to every CPU. */
  hw.hwloc_topology_set_flags(topo, HWLOC_TOPOLOGY_FLAG_DONT_CHANGE_BINDING);
  if (brisk__numa_os.topology_setup(topo) != 0 || hw.hwloc_topology_load(topo) != 0) goto out;

  int ndepth = hw.hwloc_get_type_depth(topo, HWLOC_OBJ_NUMANODE);
  int pdepth = hw.hwloc_get_type_depth(topo, HWLOC_OBJ_PU);
  unsigned n = 0;
  for (hwloc_obj_t o = hw.hwloc_get_obj_by_depth(topo, ndepth, 0); o != NULL; o = o->next_cousin) n++;
  if (n < 2) goto out;
  nodes = brisk__boot_alloc(n * sizeof *nodes, 0);
  if (nodes == NULL) goto out;
  unsigned i = 0, with_memory = 0;
  for (hwloc_obj_t o = hw.hwloc_get_obj_by_depth(topo, ndepth, 0); o != NULL && i < n; o = o->next_cousin, i++) {
    nodes[i] = (node_info_t){(int)o->os_index, o->attr->numanode.local_memory > 0,
                             o->cpuset ? hw.hwloc_bitmap_weight(o->cpuset) : 0, o};
    with_memory += nodes[i].memory;
  }
  if (with_memory < 2) goto out;
  if (hw.hwloc_distances_get_by_type(topo, HWLOC_OBJ_NUMANODE, &ndist, &dist, 0, 0) != 0 || ndist == 0) dist = NULL;

  /* Slots: memory nodes by OS number, except that slot 0 goes to the node that
   * already holds brisk's memory (it was allocated before there were slots). */
  int home = -1;
  uintptr_t first = brisk__heap_first_address();
  if (first != 0) home = brisk__numa_os.page_node((const void *)first);
  if (home < 0) {
    int cpu = requester_cpu;
    int local = cpu >= 0 ? most_local(nodes, n, (unsigned)cpu, true) : -1;
    if (local >= 0) home = nodes[local].os;
  }
  int node_slot[BRISK_MAX_NODES * 4]; /* by index into nodes[]; -1 for memory-less */
  unsigned limit = n < BRISK_MAX_NODES * 4 ? n : BRISK_MAX_NODES * 4;
  for (i = 0; i < limit; i++) node_slot[i] = -1;
  unsigned next = 0;
  for (int pass = 0; pass < 2; pass++) /* the home node first, then the rest */
    for (i = 0; i < limit; i++) {
      if (!nodes[i].memory || node_slot[i] >= 0 || (pass == 0 && nodes[i].os != home)) continue;
      unsigned s = next++ % BRISK_MAX_NODES; /* beyond the limit, nodes share pools */
      node_slot[i] = (int)s;
      if (s == next - 1) slot_os[s] = nodes[i].os;
      mask_set(slot_mask[s], nodes[i].os);
      mask_set(all_mask, nodes[i].os);
    }
  slots = next < BRISK_MAX_NODES ? next : BRISK_MAX_NODES;

  /* Every CPU goes to the most local node that has memory; a CPU of a
   * memory-less node to the nearest node with memory. */
  for (hwloc_obj_t pu = hw.hwloc_get_obj_by_depth(topo, pdepth, 0); pu != NULL; pu = pu->next_cousin) {
    if (pu->os_index >= BRISK_MAX_CPUS) continue;
    int best = most_local(nodes, limit, pu->os_index, true);
    int local = most_local(nodes, limit, pu->os_index, false);
    if (best >= 0 && node_slot[best] < 0) best = -1; /* past the node limit */
    if (best < 0 && local >= 0) {
      uint64_t bd = UINT64_MAX;
      for (i = 0; i < limit; i++) {
        if (node_slot[i] < 0) continue;
        uint64_t d = distance(dist, nodes[local].obj, nodes[i].obj);
        if (d < bd) bd = d, best = (int)i;
      }
    }
    unsigned s = best >= 0 ? (unsigned)node_slot[best] : 0;
    cpu_slot[pu->os_index] = (uint8_t)s;
    slot_cpus[s]++;
  }
out:
  if (dist != NULL) hw.hwloc_distances_release(topo, dist);
  hw.hwloc_topology_destroy(topo);
  return slots;
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

static void discover(void) {
  uint64_t start = brisk__os_now_ms();
  unsigned slots = load_tables();
  if (slots < 2 || !brisk__central_add_slots(slots)) {
    if (brisk__opt.verbose && slots >= 2) brisk__printf_err("brisk: NUMA: out of memory for pools\n");
    return;
  }
  brisk__lock(&brisk__registry_lock); /* the fork handler sees the old count or the new */
  __atomic_store_n(&brisk__numa_nodes, slots, __ATOMIC_RELEASE);
  brisk__unlock(&brisk__registry_lock);
  atomic_store_explicit(&discovery, 2, memory_order_release);
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
  atomic_store_explicit(&discovery, 3, memory_order_release);
  return NULL;
}

static bool discovery_start(void) { return brisk__os_thread_start(discovery_main, 256 * 1024, "brisk-numa"); }

static brisk_noinline void wait_for_discovery(void) {
  uint64_t start = brisk__os_now_ms();
  while (atomic_load_explicit(&discovery, memory_order_acquire) == 1 &&
         brisk__os_now_ms() - start < DISCOVERY_WAIT_MS)
    sched_yield();
}

void brisk__numa_thread_started(uint64_t threads_seen) {
  if (threads_seen < 2 || brisk__opt.numa == BRISK_NUMA_OFF) return;
  int state = atomic_load_explicit(&discovery, memory_order_acquire);
  if (state >= 2) return;
  int expected = 0;
  if (state == 0 && atomic_compare_exchange_strong(&discovery, &expected, 1)) {
    requester_cpu = brisk__numa_os.current_cpu();
    if (brisk__numa_os.online_nodes() < 2 || !discovery_start()) {
      atomic_store_explicit(&discovery, 3, memory_order_release);
      return;
    }
  }
  wait_for_discovery();
}

/* A child forked while the discovery thread ran does not have that thread: it
 * starts over, or, with the slots already published, leaves the early memory
 * where it is. */
void brisk__numa_after_fork_child(void) {
  int loading = 1, adopting = 2;
  atomic_compare_exchange_strong(&discovery, &loading, 0);
  atomic_compare_exchange_strong(&discovery, &adopting, 3);
}

bool brisk__numa_settled(void) { return atomic_load_explicit(&discovery, memory_order_acquire) == 3; }

void brisk__numa_fork_lock(void) { brisk__lock(&boot_lock); }
void brisk__numa_fork_unlock(void) { brisk__unlock(&boot_lock); }

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

