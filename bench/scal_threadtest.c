/* scal/threadtest: Hoard's threadtest. Every thread, independently, allocates a
 * batch of small blocks and then frees them all, over and over: no block crosses
 * threads, so this measures how well per-thread caches keep threads from
 * contending (for a lock, or for cache lines of shared allocator state).
 *
 * Item: one malloc + free (one iteration is THREADTEST_BATCH items). */
#include <stdlib.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

/* 64 blocks of 64 B: a batch spans one page, enough that every iteration takes
 * blocks from a refill and returns them, small enough to stay in L1. */
#define THREADTEST_BATCH 64
#define THREADTEST_SIZE 64

static void bench_threadtest(bs_state *st) {
  void *blocks[THREADTEST_BATCH];
  while (bs_keep_running(st)) {
    for (int i = 0; i < THREADTEST_BATCH; i++) {
      blocks[i] = bu_malloc(THREADTEST_SIZE);
      bu_touch(blocks[i], THREADTEST_SIZE);
    }
    for (int i = 0; i < THREADTEST_BATCH; i++) free(blocks[i]);
  }
  bs_items(st, bs_max_iterations(st) * THREADTEST_BATCH);
}

BS_REGISTRATION(threadtest_register)
static void threadtest_register(void) {
  bs_threads_sweep(bs_register("scal/threadtest", bench_threadtest));
}
