/* scal/large_threads: many threads taking and giving back blocks of 64 KiB-1 MiB
 * at once, as the I/O buffers of a server's workers do (gperftools' issue 40:
 * threads that serialised on its page heap's one lock). Each thread keeps
 * LARGE_THREADS_LIVE blocks (sizes log-uniform) and replaces a random one per
 * item, writing the first byte of the new one: the work per block is small,
 * so what the allocator does between two blocks, and whether the threads wait
 * for each other there, is what the row measures. Unlike scal/large_churn,
 * which writes every page and reaches 32 MiB, the faults do not hide the lock.
 *
 * Item: one replacement (free + malloc + a write). */
#include <math.h>
#include <stdlib.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

#define LARGE_THREADS_LIVE 8
#define LARGE_THREADS_MIN ((size_t)64 << 10)
#define LARGE_THREADS_MAX ((size_t)1 << 20)
#define LARGE_THREADS_SEED 0x1a7e5

/* Log-uniform in [LARGE_THREADS_MIN, LARGE_THREADS_MAX]: uniform in log2(size). */
static size_t large_threads_size(uint64_t r) {
  double u = (double)(r >> 11) * 0x1.0p-53;
  return (size_t)((double)LARGE_THREADS_MIN * exp2(u * log2((double)LARGE_THREADS_MAX / (double)LARGE_THREADS_MIN)));
}

static void *large_threads_block(uint64_t *rng) {
  unsigned char *p = bu_malloc(large_threads_size(bu_rand(rng)));
  p[0] = 1;
  return p;
}

static void bench_large_threads(bs_state *st) {
  uint64_t rng = bu_seed(LARGE_THREADS_SEED, bs_thread_index(st));
  void *live[LARGE_THREADS_LIVE];
  for (int i = 0; i < LARGE_THREADS_LIVE; i++) live[i] = large_threads_block(&rng);
  while (bs_keep_running(st)) {
    int i = (int)(bu_rand(&rng) % LARGE_THREADS_LIVE);
    free(live[i]);
    live[i] = large_threads_block(&rng);
  }
  for (int i = 0; i < LARGE_THREADS_LIVE; i++) free(live[i]);
  bs_items(st, bs_max_iterations(st));
}

BS_REGISTRATION(large_threads_register)
static void large_threads_register(void) {
  bs_bench *b = bs_register("scal/large_threads", bench_large_threads);
  bs_threads_sweep(b);
}
