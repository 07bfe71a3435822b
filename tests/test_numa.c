/* NUMA bookkeeping on a made-up machine. brisk's OS seam (brisk__numa_os) is
 * replaced: the topology is a synthetic or XML hwloc topology, the CPU a thread
 * runs on is whatever the test says, and mbind is recorded instead of made, so
 * the "node" of an address is the one brisk asked for. What this proves is that
 * the pools, the node refresh and the routing of remote frees do what they
 * should; that the kernel then places the pages is proven in a multi-node VM
 * (tests/numa, tools/numa-vm.sh).
 *
 * The program links libbrisk.a, so everything, hwloc's own allocations during
 * discovery included, runs on brisk. Each case runs in a forked child: discovery
 * happens once per process. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <hwloc.h>
#include <pthread.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "child.h"
#include "internal.h"

/* ------------------------------------------------------------------------------
   The fake OS
------------------------------------------------------------------------------ */
static unsigned fake_online = 2;
static const char *fake_synthetic = "numa:2 core:1 pu:1";
static const char *fake_xml;
static __thread int fake_cpu;

#define MAX_BINDS 4096
typedef struct {
  uintptr_t start, end;
  int node; /* first node of the mask */
  brisk_bind_t how;
} bind_rec_t;
static bind_rec_t binds[MAX_BINDS];
static int nbinds;
static pthread_mutex_t bind_lock = PTHREAD_MUTEX_INITIALIZER;

/* How the fake topology load behaves: at once; slowly but making progress
 * (allocating, as hwloc does, every few ms for SLOW_LOAD_MS); or stalled, with
 * no allocation at all, until the test lets it go (as a dlopen waiting for the
 * loader lock would be). */
typedef enum { LOAD_FAST, LOAD_SLOW, LOAD_STALLED } load_mode_t;
static load_mode_t load_mode = LOAD_FAST;
#define SLOW_LOAD_MS 1600
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t load_cond = PTHREAD_COND_INITIALIZER;
static int load_released;

static void release_load(void) {
  pthread_mutex_lock(&load_lock);
  load_released = 1;
  pthread_cond_broadcast(&load_cond);
  pthread_mutex_unlock(&load_lock);
}

/* A fake sysfs: /sys/devices/system/node/X is read from fake_sysfs/X and
 * /proc/self/status from fake_sysfs/status; nothing else exists. */
static const char *fake_sysfs;
static long f_read_file(const char *path, char *buf, size_t cap) {
  static const char node[] = "/sys/devices/system/node/";
  char real[512];
  if (fake_sysfs == NULL) return -1;
  if (strncmp(path, node, sizeof node - 1) == 0)
    brisk__snprintf(real, sizeof real, "%s/%s", fake_sysfs, path + sizeof node - 1);
  else if (strcmp(path, "/proc/self/status") == 0)
    brisk__snprintf(real, sizeof real, "%s/status", fake_sysfs);
  else
    return -1;
  return brisk__os_read_file(real, buf, cap);
}

static unsigned f_online(void) { return fake_online; }
static int f_setup(struct hwloc_topology *t) {
  if (load_mode == LOAD_SLOW)
    for (int ms = 0; ms < SLOW_LOAD_MS; ms += 20) {
      free(malloc(64)); /* the bootstrap area: progress */
      usleep(20 * 1000);
    }
  if (load_mode == LOAD_STALLED) {
    pthread_mutex_lock(&load_lock);
    while (!load_released) pthread_cond_wait(&load_cond, &load_lock);
    pthread_mutex_unlock(&load_lock);
  }
  return fake_xml ? hwloc_topology_set_xml(t, fake_xml) : hwloc_topology_set_synthetic(t, fake_synthetic);
}
static int f_cpu(void) { return fake_cpu; }
static int f_bind(void *p, size_t len, brisk_bind_t how, const uint64_t *mask) {
  int node = -1;
  for (int i = 0; i < BRISK_NODEMASK_WORDS * 64 && node < 0; i++)
    if (mask[i / 64] >> (i % 64) & 1) node = i;
  pthread_mutex_lock(&bind_lock);
  if (nbinds < MAX_BINDS) binds[nbinds++] = (bind_rec_t){(uintptr_t)p, (uintptr_t)p + len, node, how};
  pthread_mutex_unlock(&bind_lock);
  return 0;
}
/* The node brisk asked for at p (the last binding that covers it), -1 if none;
 * -2 for interleaved memory. */
static int f_page_node(const void *p) {
  int node = -1;
  pthread_mutex_lock(&bind_lock);
  for (int i = nbinds - 1; i >= 0 && node == -1; i--)
    if ((uintptr_t)p >= binds[i].start && (uintptr_t)p < binds[i].end) node = binds[i].how == BRISK_BIND_INTERLEAVE ? -2 : binds[i].node;
  pthread_mutex_unlock(&bind_lock);
  return node;
}

static void use_fake_os(void) {
  brisk__numa_os = (brisk_numa_os_t){f_online, f_setup, f_cpu, f_bind, f_page_node, f_read_file};
}

/* A thread that runs fn on a given fake CPU. */
typedef struct {
  int cpu;
  void (*fn)(void *);
  void *arg;
} on_cpu_t;
static void *on_cpu_main(void *a) {
  on_cpu_t *o = a;
  fake_cpu = o->cpu;
  o->fn(o->arg);
  return NULL;
}
static void run_on_cpu(int cpu, void (*fn)(void *), void *arg) {
  on_cpu_t o = {cpu, fn, arg};
  pthread_t t;
  if (pthread_create(&t, NULL, on_cpu_main, &o) != 0) abort();
  pthread_join(t, NULL);
}
static void touch_malloc(void *arg) {
  (void)arg;
  free(malloc(32)); /* a thread's cache starts at its first allocation */
}

/* Start a second thread (discovery runs in it) from the given CPU. The thread
 * waits until the slots are there; the early memory is adopted just after. */
static void discover_from(int cpu) {
  touch_malloc(NULL); /* the main thread's cache: thread one */
  run_on_cpu(cpu, touch_malloc, NULL);
  for (int i = 0; i < 5000 && !brisk__numa_settled(); i++) usleep(1000);
}

#define CHECK(c)                                                                  \
  do {                                                                            \
    if (!(c)) {                                                                   \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);       \
      return 1;                                                                   \
    }                                                                             \
  } while (0)

static unsigned slot_of(const void *p) { return brisk__pagemap_get(p)->node; }

/* ------------------------------------------------------------------------------
   Cases
------------------------------------------------------------------------------ */
#define NBLOCKS 3000
typedef struct {
  void *blocks[NBLOCKS];
  size_t size;
  int bad_slot, bad_bind;
  unsigned want_slot;
  int want_node;
} batch_t;

static void alloc_batch(void *arg) {
  batch_t *b = arg;
  b->bad_slot = b->bad_bind = 0;
  for (int i = 0; i < NBLOCKS; i++) {
    b->blocks[i] = malloc(b->size);
    memset(b->blocks[i], 1, b->size);
    if (slot_of(b->blocks[i]) != b->want_slot) b->bad_slot++;
    if (f_page_node(b->blocks[i]) != b->want_node) b->bad_bind++;
  }
}
static void free_batch(void *arg) {
  batch_t *b = arg;
  for (int i = 0; i < NBLOCKS; i++) free(b->blocks[i]);
}

/* A thread on cpu allocates a batch of size-byte blocks and frees it; returns how
 * many blocks were not from want_slot or not bound to want_node. */
static int misplaced(int cpu, size_t size, unsigned want_slot, int want_node) {
  static batch_t b;
  b = (batch_t){.size = size, .want_slot = want_slot, .want_node = want_node};
  run_on_cpu(cpu, alloc_batch, &b);
  run_on_cpu(cpu, free_batch, &b);
  return b.bad_slot + b.bad_bind;
}

/* Two nodes: each thread's blocks come from its node's pools, bound to it. */
static int body_two_nodes(void) {
  use_fake_os();
  discover_from(0);
  CHECK(brisk__numa_count() == 2);
  CHECK(brisk__numa_slot_os_node(0) == 0 && brisk__numa_slot_os_node(1) == 1);
  static batch_t b0, b1;
  b0 = (batch_t){.size = 48, .want_slot = 0, .want_node = 0};
  b1 = (batch_t){.size = 48, .want_slot = 1, .want_node = 1};
  run_on_cpu(0, alloc_batch, &b0);
  run_on_cpu(1, alloc_batch, &b1);
  CHECK(b0.bad_slot == 0 && b1.bad_slot == 0);
  CHECK(b0.bad_bind == 0 && b1.bad_bind == 0); /* slot 0's pre-discovery heap too */
  /* Large blocks too. */
  fake_cpu = 1;
  void *big = malloc(1 << 20);
  CHECK(slot_of(big) == 1 && f_page_node(big) == 1);
  free(big);
  fake_cpu = 0;
  run_on_cpu(0, free_batch, &b0);
  run_on_cpu(1, free_batch, &b1);
  brisk_node_stats_t st[4];
  CHECK(brisk_get_node_stats(st, 4) == 2);
  CHECK(st[0].os_node == 0 && st[1].os_node == 1 && st[0].cpus == 1 && st[1].cpus == 1);
  CHECK(st[1].mapped > 0);
  return 0;
}

/* Memory freed by a thread of the other node goes home, and that thread's next
 * allocations are still local. */
static int body_remote_free(void) {
  use_fake_os();
  discover_from(0);
  CHECK(brisk__numa_count() == 2);
  static batch_t b0;
  b0 = (batch_t){.size = 64, .want_slot = 0, .want_node = 0};
  run_on_cpu(0, alloc_batch, &b0);
  run_on_cpu(1, free_batch, &b0); /* remote frees; the thread exits and flushes */
  CHECK(brisk__numa_remote(0) == NBLOCKS);
  CHECK(brisk__numa_remote(1) == 0);
  CHECK(misplaced(1, 64, 1, 1) == 0);
  return 0;
}

/* A thread that moves to another node refills from there. */
static void migrate(void *arg) {
  batch_t *b = arg;
  void *first[64];
  for (int i = 0; i < 64; i++) first[i] = malloc(b->size);
  fake_cpu = 1; /* the scheduler moved us */
  b->bad_slot = 0;
  for (int i = 0; i < NBLOCKS; i++) {
    b->blocks[i] = malloc(b->size);
    /* what was already in the cache may be used up first: at most one list */
    if (i >= 1024 && slot_of(b->blocks[i]) != 1) b->bad_slot++;
  }
  for (int i = 0; i < 64; i++) free(first[i]);
  free_batch(b);
}
static int body_refresh(void) {
  use_fake_os();
  discover_from(0);
  static batch_t b;
  b = (batch_t){.size = 32};
  run_on_cpu(0, migrate, &b);
  CHECK(b.bad_slot == 0);
  return 0;
}

/* Slot 0 goes to the node that held brisk's memory before discovery: here the
 * discovering thread's, node 1. */
static int body_home_slot(void) {
  use_fake_os();
  discover_from(1);
  CHECK(brisk__numa_count() == 2);
  CHECK(brisk__numa_slot_os_node(0) == 1 && brisk__numa_slot_os_node(1) == 0);
  CHECK(misplaced(0, 100, 1, 0) == 0);
  return 0;
}

/* What one thread allocated before there was a second belongs to slot 0, and
 * its pages may lie on any node (the thread may have moved). Discovery moves the
 * early heap to slot 0's node, all of it, the runs of freed large blocks too. */
static int body_early_heap(void) {
  use_fake_os();
  enum { N = 6000 };
  static void *early[N];
  for (int i = 0; i < N; i++) early[i] = malloc(1000); /* ~6 MiB: two heap chunks */
  void *big = malloc(1 << 20);
  free(big); /* a free run of the early heap */
  discover_from(1);
  CHECK(brisk__numa_count() == 2 && brisk__numa_slot_os_node(0) == 1);
  int moves = 0;
  for (int i = 0; i < nbinds; i++) moves += binds[i].how == BRISK_BIND_MOVE && binds[i].node == 1;
  CHECK(moves >= 1);
  CHECK(f_page_node((void *)brisk__heap_first_address()) == 1);
  for (int i = 0; i < N; i++) CHECK(f_page_node(early[i]) == 1);
  CHECK(f_page_node(big) == 1);
  for (int i = 0; i < N; i++) free(early[i]);
  /* A slot-0 thread gets the early pages back, on slot 0's node. */
  CHECK(misplaced(1, 1000, 0, 1) == 0);
  /* Later chunks are bound when grown, never moved. */
  int moves_after = 0;
  for (int i = 0; i < nbinds; i++) moves_after += binds[i].how == BRISK_BIND_MOVE;
  CHECK(moves_after == moves);
  return 0;
}

/* A memory-less node's CPU uses the nearest node with memory (by distance: node
 * 2, not the lower-numbered node 0). */
static int body_memless(void) {
  use_fake_os();
  fake_online = 3;
  fake_xml = BRISK_TEST_DATA "/numa-memless.xml";
  discover_from(0);
  CHECK(brisk__numa_count() == 2);
  CHECK(brisk__numa_slot_os_node(0) == 0 && brisk__numa_slot_os_node(1) == 2);
  CHECK(brisk__numa_slot_cpus(0) == 1 && brisk__numa_slot_cpus(1) == 2);
  CHECK(misplaced(1, 256, 1, 2) == 0);
  return 0;
}

/* A CPU-less node gets pools but no thread. */
static int body_cpuless(void) {
  use_fake_os();
  fake_online = 3;
  fake_xml = BRISK_TEST_DATA "/numa-cpuless.xml";
  discover_from(0);
  CHECK(brisk__numa_count() == 3);
  unsigned cpuless = 3;
  for (unsigned s = 0; s < 3; s++)
    if (brisk__numa_slot_os_node((unsigned)s) == 2) cpuless = s;
  CHECK(cpuless < 3 && brisk__numa_slot_cpus(cpuless) == 0);
  for (int cpu = 0; cpu < 2; cpu++) {
    fake_cpu = cpu;
    CHECK(brisk__numa_slot_now() != cpuless);
    CHECK(brisk__numa_slot_os_node(brisk__numa_slot_now()) == cpu);
  }
  fake_cpu = 0;
  return 0;
}

/* BRISK_NUMA=interleave spreads large blocks over all nodes; small ones stay local. */
static int body_interleave(void) {
  use_fake_os();
  brisk__opt.numa = BRISK_NUMA_INTERLEAVE;
  discover_from(0);
  CHECK(brisk__numa_count() == 2);
  fake_cpu = 1;
  void *big = malloc(4 << 20);
  CHECK(f_page_node(big) == -2);
  free(big);
  CHECK(misplaced(1, 128, 1, 1) == 0);
  fake_cpu = 0;
  return 0;
}

/* One node, or BRISK_NUMA=off: no discovery, no binding, one set of pools. */
static int body_one_node(void) {
  use_fake_os();
  fake_online = 1;
  discover_from(1);
  CHECK(brisk__numa_count() == 1 && nbinds == 0);
  return 0;
}
static int body_off(void) {
  use_fake_os();
  brisk__opt.numa = BRISK_NUMA_OFF;
  discover_from(1);
  run_on_cpu(0, touch_malloc, NULL);
  CHECK(brisk__numa_count() == 1 && nbinds == 0);
  return 0;
}

/* The kernel says the main thread's early heap lies on node 0, so slot 0 is
 * node 0 whichever thread starts discovery. */
static void early_heap_on_node0(void) {
  touch_malloc(NULL);
  uint64_t mask[BRISK_NODEMASK_WORDS] = {1};
  f_bind((void *)brisk__heap_first_address(), BRISK_PAGE_SIZE, BRISK_BIND_PREFER, mask);
}

/* A topology that takes longer to load than any fixed bound (a loaded host, a
 * VM) but makes progress: the second thread waits for it, however long, and
 * its memory is its own node's from the first block. */
static int body_slow_discovery(void) {
  use_fake_os();
  load_mode = LOAD_SLOW;
  early_heap_on_node0();
  static batch_t b;
  b = (batch_t){.size = 48, .want_slot = 1, .want_node = 1};
  uint64_t start = brisk__os_now_ms();
  run_on_cpu(1, alloc_batch, &b); /* its first malloc starts discovery and waits */
  CHECK(brisk__os_now_ms() - start >= SLOW_LOAD_MS - 100);
  CHECK(brisk__numa_count() == 2 && brisk__numa_giveups() == 0);
  CHECK(brisk__numa_slot_os_node(1) == 1);
  CHECK(b.bad_slot == 0 && b.bad_bind == 0);
  run_on_cpu(1, free_batch, &b);
  return 0;
}

/* A load that stands still (hwloc's dlopen waiting for a lock the new thread
 * might hold): the thread gives up after the stall bound and goes on, caching
 * nothing; a later thread that finds the load still stalled does not wait at
 * all; once the slots are published the first thread's memory is its node's
 * from its very next allocation. */
static batch_t unplaced_before, unplaced_after;
static atomic_int unplaced_phase;
static void unplaced_thread(void *arg) {
  (void)arg;
  alloc_batch(&unplaced_before); /* gives up waiting, then allocates */
  atomic_store(&unplaced_phase, 1);
  while (atomic_load(&unplaced_phase) != 2) usleep(1000);
  alloc_batch(&unplaced_after);
  free_batch(&unplaced_before);
  free_batch(&unplaced_after);
}
static void *unplaced_main(void *arg) {
  fake_cpu = 1;
  unplaced_thread(arg);
  return NULL;
}
static int body_stalled_discovery(void) {
  use_fake_os();
  load_mode = LOAD_STALLED;
  early_heap_on_node0();
  unplaced_before = (batch_t){.size = 48, .want_slot = 0, .want_node = -1};
  unplaced_after = (batch_t){.size = 48, .want_slot = 1, .want_node = 1};
  uint64_t start = brisk__os_now_ms();
  pthread_t t;
  CHECK(pthread_create(&t, NULL, unplaced_main, NULL) == 0);
  while (atomic_load(&unplaced_phase) != 1) usleep(1000);
  uint64_t waited = brisk__os_now_ms() - start;
  CHECK(waited >= 900 && waited < 4000);
  CHECK(brisk__numa_giveups() == 1 && brisk__numa_count() == 1);
  CHECK(brisk__tc.state == BRISK_TC_LIVE); /* main: the first thread never waits */
  /* Still stalled at the same point: a new thread goes on at once. */
  start = brisk__os_now_ms();
  run_on_cpu(1, touch_malloc, NULL);
  CHECK(brisk__os_now_ms() - start < 500);
  CHECK(brisk__numa_giveups() == 2);
  release_load();
  for (int i = 0; i < 5000 && !brisk__numa_settled(); i++) usleep(1000);
  CHECK(brisk__numa_count() == 2 && brisk__numa_slot_os_node(1) == 1);
  atomic_store(&unplaced_phase, 2);
  pthread_join(t, NULL);
  CHECK(unplaced_before.bad_slot == 0); /* before publication there is only slot 0 */
  CHECK(unplaced_after.bad_slot == 0 && unplaced_after.bad_bind == 0);
  return 0;
}

/* The real OS: a second thread with a cancel pending makes its first malloc,
 * which reads /sys/devices/system/node/online. That read must not be where the
 * thread unwinds (it was: open and read are cancellation points), or discovery
 * would stay "loading" and every later thread would wait for it (the
 * hardening issue's H1). */
static volatile int cancelled_malloc_returned;
static void *first_malloc_with_cancel_pending(void *arg) {
  (void)arg;
  pthread_cancel(pthread_self());
  free(malloc(64));
  cancelled_malloc_returned = 1;
  pthread_testcancel();
  return NULL;
}
static int body_cancelled_first_malloc(void) {
  touch_malloc(NULL);
  pthread_t t;
  void *ret = NULL;
  CHECK(pthread_create(&t, NULL, first_malloc_with_cancel_pending, NULL) == 0);
  pthread_join(t, &ret);
  CHECK(cancelled_malloc_returned && ret == PTHREAD_CANCELED);
  CHECK(brisk__numa_published());
  uint64_t start = brisk__os_now_ms();
  run_on_cpu(0, touch_malloc, NULL);
  CHECK(brisk__os_now_ms() - start < 500);
  return 0;
}

/* hwloc's allocations while it loads come from the bootstrap area; free,
 * realloc and malloc_usable_size accept such blocks. */
static int body_bootstrap(void) {
  use_fake_os();
  discover_from(0);
  CHECK(brisk__numa_count() == 2);
  /* hwloc allocated while it loaded, and all of it came from the bootstrap area */
  CHECK(brisk__boot_count() > 20);
  void *p = brisk__boot_alloc(100, 0);
  CHECK(p != NULL && ((uintptr_t)p & 15) == 0);
  CHECK(brisk__pagemap_get(p)->state == BRISK_SPAN_BOOT);
  CHECK(malloc_usable_size(p) == 100);
  memset(p, 7, 100);
  void *q = realloc(p, 5000);
  CHECK(q != NULL && q != p && ((unsigned char *)q)[99] == 7);
  free(q);
  free(p); /* does nothing */
  void *a = brisk__boot_alloc(4096, 0);
  CHECK(((uintptr_t)a & 4095) == 0);
  free(a);
  void *big = brisk__boot_alloc(3 << 20, 0); /* more than a chunk */
  CHECK(big != NULL && malloc_usable_size(big) == 3 << 20);
  free(big);
  return 0;
}


/* ------------------------------------------------------------------------------
   sysfs: the same machine described to hwloc and as a sysfs tree must give the
   same tables. Each side runs in a child that dumps its tables to shared memory.
------------------------------------------------------------------------------ */
#define LAYOUT_CPUS 8
#define LAYOUT_NODES 4
typedef struct {
  const char *synthetic, *xml; /* hwloc's view (one of them) */
  unsigned nodes, ncpus;
  bool memory[LAYOUT_NODES];
  bool meminfo;                /* no has_memory file: nodeN/meminfo says it */
  const char *cpulist[LAYOUT_NODES];
  const char *distance[LAYOUT_NODES];
  const char *status;          /* /proc/self/status, NULL: none */
  int discover_cpu;
} layout_t;

typedef struct {
  int source;
  unsigned slots;
  int slot_os[LAYOUT_NODES];
  uint32_t slot_cpus[LAYOUT_NODES];
  unsigned cpu_slot[LAYOUT_CPUS];
  bool json_names_source;
} tables_t;

static const layout_t *layout;
static tables_t *dump; /* MAP_SHARED: written by the child */

static void write_file(const char *dir, const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (f == NULL) abort();
  fprintf(f, "%s\n", text);
  fclose(f);
}

/* The tree a kernel would show for the layout, in dir. */
static void make_sysfs(const layout_t *l, const char *dir) {
  char text[64], name[64];
  snprintf(text, sizeof text, "0-%u", l->nodes - 1);
  write_file(dir, "online", text);
  write_file(dir, "possible", text);
  if (l->status) write_file(dir, "status", l->status);
  text[0] = 0;
  for (unsigned n = 0; n < l->nodes; n++) {
    if (l->memory[n]) snprintf(text + strlen(text), sizeof text - strlen(text), "%s%u", text[0] ? "," : "", n);
    snprintf(name, sizeof name, "%s/node%u", dir, n);
    if (mkdir(name, 0755) != 0) abort();
    snprintf(name, sizeof name, "node%u/cpulist", n);
    write_file(dir, name, l->cpulist[n]);
    snprintf(name, sizeof name, "node%u/distance", n);
    write_file(dir, name, l->distance[n]);
    char info[160];
    snprintf(info, sizeof info, "Node %u MemTotal:       %u kB\nNode %u MemFree:        %u kB", n,
             l->memory[n] ? 1048576u : 0u, n, l->memory[n] ? 1000000u : 0u);
    snprintf(name, sizeof name, "node%u/meminfo", n);
    write_file(dir, name, info);
  }
  if (!l->meminfo) write_file(dir, "has_memory", text);
}

static void remove_sysfs(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) abort();
}

static int body_dump_tables(void) {
  use_fake_os();
  fake_online = layout->nodes;
  fake_xml = layout->xml;
  if (layout->synthetic) fake_synthetic = layout->synthetic;
  discover_from(layout->discover_cpu);
  dump->source = (int)brisk__numa_topology_source();
  dump->slots = brisk__numa_count();
  for (unsigned s = 0; s < dump->slots && s < LAYOUT_NODES; s++) {
    dump->slot_os[s] = brisk__numa_slot_os_node(s);
    dump->slot_cpus[s] = brisk__numa_slot_cpus(s);
  }
  for (unsigned cpu = 0; cpu < layout->ncpus; cpu++) {
    fake_cpu = (int)cpu;
    dump->cpu_slot[cpu] = brisk__numa_slot_now();
  }
  fake_cpu = 0;
  char json[16384];
  size_t len = brisk_stats_json(json, sizeof json);
  const char *want = dump->source == BRISK_TOPO_SYSFS ? "\"topology_source\": \"sysfs\""
                                                      : "\"topology_source\": \"hwloc\"";
  dump->json_names_source = len < sizeof json && strstr(json, want) != NULL;
  return 0;
}

/* The tables from one source: hwloc, or sysfs (BRISK_NUMA_SOURCE=sysfs, or hwloc
 * failing under BRISK_NUMA_SOURCE=auto when hwloc_fails). */
static void tables_from(const layout_t *l, bool sysfs, bool hwloc_fails, tables_t *out) {
  char dir[] = "/tmp/brisk-sysfs.XXXXXX";
  assert_non_null(mkdtemp(dir));
  make_sysfs(l, dir);
  layout = l;
  fake_sysfs = dir;
  brisk__opt.numa_source = sysfs && !hwloc_fails ? BRISK_NUMA_SOURCE_SYSFS : BRISK_NUMA_SOURCE_AUTO;
  static const char broken_xml[] = BRISK_TEST_DATA "/no-such-topology.xml";
  const layout_t broken = {.xml = broken_xml, .nodes = l->nodes, .ncpus = l->ncpus, .discover_cpu = l->discover_cpu};
  if (hwloc_fails) layout = &broken; /* hwloc_topology_load fails: sysfs takes over */
  dump = mmap(NULL, sizeof *dump, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(dump != MAP_FAILED);
  memset(dump, 0, sizeof *dump);
  assert_int_equal(run_in_child(body_dump_tables, sysfs ? "sysfs tables" : "hwloc tables"), 0);
  *out = *dump;
  munmap(dump, sizeof *dump);
  brisk__opt.numa_source = BRISK_NUMA_SOURCE_AUTO;
  fake_sysfs = NULL;
  remove_sysfs(dir);
}

static void assert_same_tables(const layout_t *l, bool hwloc_fails) {
  tables_t hw, fs;
  tables_from(l, false, false, &hw);
  tables_from(l, true, hwloc_fails, &fs);
  assert_int_equal(hw.source, BRISK_TOPO_HWLOC);
  assert_int_equal(fs.source, BRISK_TOPO_SYSFS);
  assert_true(hw.json_names_source && fs.json_names_source);
  assert_int_equal(fs.slots, hw.slots);
  for (unsigned s = 0; s < hw.slots && s < LAYOUT_NODES; s++) {
    assert_int_equal(fs.slot_os[s], hw.slot_os[s]);
    assert_int_equal(fs.slot_cpus[s], hw.slot_cpus[s]);
  }
  for (unsigned cpu = 0; cpu < l->ncpus; cpu++) assert_int_equal(fs.cpu_slot[cpu], hw.cpu_slot[cpu]);
}

static const layout_t two_nodes = {
    .synthetic = "numa:2 core:1 pu:1", .nodes = 2, .ncpus = 2, .memory = {1, 1},
    .cpulist = {"0", "1"}, .distance = {"10 20", "20 10"}};
static const layout_t four_nodes = {
    .synthetic = "numa:4 core:2 pu:1", .nodes = 4, .ncpus = 8, .memory = {1, 1, 1, 1},
    .cpulist = {"0-1", "2-3", "4-5", "6-7"},
    .distance = {"10 20 20 20", "20 10 20 20", "20 20 10 20", "20 20 20 10"}, .discover_cpu = 5};
/* CPU 1's node has no memory; node 2 (distance 20) is nearer than node 0 (30). */
static const layout_t memless = {
    .xml = BRISK_TEST_DATA "/numa-memless.xml", .nodes = 3, .ncpus = 3, .memory = {1, 0, 1},
    .cpulist = {"0", "1", "2"}, .distance = {"10 30 20", "30 10 20", "20 20 10"}};
static const layout_t cpuless = {
    .xml = BRISK_TEST_DATA "/numa-cpuless.xml", .nodes = 3, .ncpus = 2, .memory = {1, 1, 1},
    .cpulist = {"0", "1", ""}, .distance = {"10 20 30", "20 10 30", "30 30 10"}};

static void test_sysfs_two_nodes(void **state) { (void)state; assert_same_tables(&two_nodes, false); }
static void test_sysfs_four_nodes(void **state) { (void)state; assert_same_tables(&four_nodes, false); }
static void test_sysfs_cpuless(void **state) { (void)state; assert_same_tables(&cpuless, false); }

static void test_sysfs_memless_nearest_memory(void **state) {
  (void)state;
  assert_same_tables(&memless, false);
  tables_t fs;
  tables_from(&memless, true, false, &fs);
  assert_int_equal(fs.slots, 2);
  assert_int_equal(fs.slot_os[0], 0);
  assert_int_equal(fs.slot_os[1], 2);
  assert_int_equal(fs.cpu_slot[1], 1); /* node 2's pools, not node 0's */
  assert_int_equal(fs.slot_cpus[1], 2);
  /* The same from the nodes' meminfo, without has_memory. */
  layout_t by_meminfo = memless;
  by_meminfo.meminfo = true;
  tables_t mi;
  tables_from(&by_meminfo, true, false, &mi);
  assert_memory_equal(&mi, &fs, sizeof fs);
}

/* With BRISK_NUMA_SOURCE=auto, sysfs takes over when hwloc fails. */
static void test_sysfs_when_hwloc_fails(void **state) {
  (void)state;
  assert_same_tables(&four_nodes, true);
}

/* Memory nodes the process may not use (its cpuset's mems) count as memory-less,
 * CPUs it may not run on are not counted. */
static void test_sysfs_honours_allowed_sets(void **state) {
  (void)state;
  layout_t l = four_nodes;
  l.status = "Name:\ttest\nCpus_allowed_list:\t0-5\nMems_allowed_list:\t0-2\n";
  tables_t fs;
  tables_from(&l, true, false, &fs);
  assert_int_equal(fs.slots, 3);
  for (unsigned s = 0; s < 3; s++) assert_int_not_equal(fs.slot_os[s], 3);
  uint32_t cpus = 0;
  for (unsigned s = 0; s < 3; s++) cpus += fs.slot_cpus[s];
  assert_int_equal(cpus, 6);
}

#define CASE(name)                                                        \
  static void test_##name(void **state) {                                 \
    (void)state;                                                          \
    assert_int_equal(run_in_child(body_##name, #name), 0);                \
  }
CASE(two_nodes)
CASE(remote_free)
CASE(refresh)
CASE(home_slot)
CASE(early_heap)
CASE(memless)
CASE(cpuless)
CASE(interleave)
CASE(one_node)
CASE(off)
CASE(bootstrap)
CASE(slow_discovery)
CASE(cancelled_first_malloc)
CASE(stalled_discovery)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_two_nodes),  cmocka_unit_test(test_remote_free), cmocka_unit_test(test_refresh),
      cmocka_unit_test(test_home_slot),  cmocka_unit_test(test_memless),     cmocka_unit_test(test_cpuless),
      cmocka_unit_test(test_interleave), cmocka_unit_test(test_one_node),    cmocka_unit_test(test_off),
      cmocka_unit_test(test_bootstrap),  cmocka_unit_test(test_early_heap),  cmocka_unit_test(test_slow_discovery),
      cmocka_unit_test(test_stalled_discovery), cmocka_unit_test(test_cancelled_first_malloc),
      cmocka_unit_test(test_sysfs_two_nodes), cmocka_unit_test(test_sysfs_four_nodes),
      cmocka_unit_test(test_sysfs_memless_nearest_memory), cmocka_unit_test(test_sysfs_cpuless),
      cmocka_unit_test(test_sysfs_when_hwloc_fails), cmocka_unit_test(test_sysfs_honours_allowed_sets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
