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

static unsigned f_online(void) { return fake_online; }
static int f_setup(struct hwloc_topology *t) {
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
  brisk__numa_os = (brisk_numa_os_t){f_online, f_setup, f_cpu, f_bind, f_page_node};
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_two_nodes),  cmocka_unit_test(test_remote_free), cmocka_unit_test(test_refresh),
      cmocka_unit_test(test_home_slot),  cmocka_unit_test(test_memless),     cmocka_unit_test(test_cpuless),
      cmocka_unit_test(test_interleave), cmocka_unit_test(test_one_node),    cmocka_unit_test(test_off),
      cmocka_unit_test(test_bootstrap),  cmocka_unit_test(test_early_heap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
