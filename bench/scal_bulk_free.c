/* scal/bulk_free: a working set built, freed in one go, and then no demand. The
 * threads together allocate BENCH_BULK_MIB MiB (default 1024; tools/compare.sh
 * uses 256 in its short and quick modes) of 16-512 B blocks (skewed small), free
 * them all, and park. 0.5 s into the idleness thread 0 reads the process's RSS
 * (rss_idle_mib); then every thread does a short burst of small allocations
 * (BULK_BURST malloc/free pairs) and RSS is read again (rss_burst_mib). An
 * allocator that returns freed memory on a timer, or whose caches of parked
 * threads keep whole pages alive, shows it here; peak RSS is the same for all.
 *
 * Timed: the allocation and the frees only (the idle wait and the burst are
 * paused). One iteration; item: one block allocated and freed. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

#define BULK_DEFAULT_MIB 1024
#define BULK_IDLE_MS 500
#define BULK_BURST 2000
#define BULK_BURST_LIVE 64
#define BULK_SEED 0xb01f

static pthread_barrier_t bulk_barrier;

static size_t bulk_total_bytes(void) {
  const char *s = getenv("BENCH_BULK_MIB");
  long mib = s != NULL ? strtol(s, NULL, 10) : 0;
  return (size_t)(mib > 0 ? mib : BULK_DEFAULT_MIB) << 20;
}

static double bulk_rss_mib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f == NULL) return -1;
  if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  fclose(f);
  return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

static void bulk_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void bulk_setup(bs_state *st) { pthread_barrier_init(&bulk_barrier, NULL, (unsigned)bs_thread_count(st)); }
static void bulk_teardown(bs_state *st) { pthread_barrier_destroy(&bulk_barrier); }

/* The blocks are chained through their first word: no array of pointers adds to
 * the RSS being measured. */
static int64_t bulk_build_and_free(size_t share, uint64_t *rng) {
  void *head = NULL;
  int64_t n = 0;
  for (size_t bytes = 0; bytes < share; n++) {
    size_t size = bu_small_size(bu_rand(rng), 5);
    void **p = bu_malloc(size);
    p[0] = head;
    ((unsigned char *)p)[size - 1] = 1;
    head = p;
    bytes += size;
  }
  while (head != NULL) {
    void *next = *(void **)head;
    free(head);
    head = next;
  }
  return n;
}

static void bulk_burst(uint64_t *rng) {
  void *live[BULK_BURST_LIVE] = {0};
  for (int i = 0; i < BULK_BURST; i++) {
    int k = i % BULK_BURST_LIVE;
    free(live[k]);
    size_t size = bu_small_size(bu_rand(rng), 5);
    live[k] = bu_malloc(size);
    bu_touch(live[k], size);
  }
  for (int k = 0; k < BULK_BURST_LIVE; k++) free(live[k]);
}

static void bench_bulk_free(bs_state *st) {
  uint64_t rng = bu_seed(BULK_SEED, bs_thread_index(st));
  size_t share = bulk_total_bytes() / (size_t)bs_thread_count(st);
  int lead = bs_thread_index(st) == 0;
  int64_t blocks = 0;
  double idle = 0, burst = 0;
  while (bs_keep_running(st)) {
    blocks += bulk_build_and_free(share, &rng);
    bs_pause(st);
    pthread_barrier_wait(&bulk_barrier); /* every thread parked */
    if (lead) {
      bulk_sleep_ms(BULK_IDLE_MS);
      idle = bulk_rss_mib();
    }
    pthread_barrier_wait(&bulk_barrier);
    bulk_burst(&rng);
    pthread_barrier_wait(&bulk_barrier);
    if (lead) burst = bulk_rss_mib();
    pthread_barrier_wait(&bulk_barrier);
    bs_resume(st);
  }
  bs_items(st, blocks);
  /* Counters are summed over the threads: only thread 0 reports the process's. */
  if (lead) {
    bs_counter(st, "rss_idle_mib", idle, 0);
    bs_counter(st, "rss_burst_mib", burst, 0);
  }
}

BS_REGISTRATION(bulk_free_register)
static void bulk_free_register(void) {
  bs_bench *b = bs_register("scal/bulk_free", bench_bulk_free);
  bs_threads_sweep(b);
  bs_setup(b, bulk_setup);
  bs_teardown(b, bulk_teardown);
  bs_iterations(b, 1);
}
