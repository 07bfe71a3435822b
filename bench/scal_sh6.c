/* scal/sh6: the shape of MicroQuill's sh6bench. Every thread, independently,
 * allocates a batch of blocks whose sizes sweep 1..1063 bytes and frees it in
 * one of three orders, taking turns: last in first out, first in first out, and
 * every other block (the odd ones, then the even ones), which leaves the free
 * lists interleaved. No block crosses threads; what it measures is how an
 * allocator's free lists and refills cope with many classes and mixed orders,
 * beyond what one thread cache holds.
 *
 * Item: one malloc + free (one iteration is SH6_BATCH items). */
#include <stdlib.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

/* Large enough that a batch of every class outgrows a thread cache's lists. */
#define SH6_BATCH 2000
#define SH6_MAX_SIZE 1063
/* A step prime to the size range, so consecutive blocks differ in class. */
#define SH6_SIZE_STEP 97

static void bench_sh6(bs_state *st) {
  void **blocks = malloc(SH6_BATCH * sizeof *blocks);
  if (blocks == NULL) bu_oom("malloc", SH6_BATCH * sizeof *blocks);
  size_t size = (size_t)bs_thread_index(st) % SH6_MAX_SIZE + 1;
  unsigned order = 0;
  while (bs_keep_running(st)) {
    for (int i = 0; i < SH6_BATCH; i++) {
      blocks[i] = bu_malloc(size);
      bu_touch(blocks[i], size);
      size = (size + SH6_SIZE_STEP - 1) % SH6_MAX_SIZE + 1;
    }
    switch (order++ % 3) {
    case 0:
      for (int i = SH6_BATCH - 1; i >= 0; i--) free(blocks[i]);
      break;
    case 1:
      for (int i = 0; i < SH6_BATCH; i++) free(blocks[i]);
      break;
    default:
      for (int i = 1; i < SH6_BATCH; i += 2) free(blocks[i]);
      for (int i = 0; i < SH6_BATCH; i += 2) free(blocks[i]);
      break;
    }
  }
  free(blocks);
  bs_items(st, bs_max_iterations(st) * SH6_BATCH);
}

BS_REGISTRATION(sh6_register)
static void sh6_register(void) { bs_threads_sweep(bs_register("scal/sh6", bench_sh6)); }
