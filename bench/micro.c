/* micro.c: single-thread micro benchmarks, one allocator operation per item.
 *
 *   micro/pair/<size>            malloc + touch + free of one size. Item: one pair.
 *   micro/calloc/<size>          calloc(1, size) + touch + free. Item: one pair.
 *   micro/realloc_growth         malloc(16), then realloc doubling to 64 MiB,
 *                                touching each step, then free. Item: one step
 *                                (the malloc or one realloc; 23 per iteration).
 *   micro/memalign/<align>       posix_memalign(align, 64 B) + touch + free.
 *   micro/aligned_alloc/<align>  aligned_alloc(align, max(64 B, align)) + touch + free.
 *   micro/batch_lifo/<n>         n mallocs of 64 B, then n frees, newest first.
 *   micro/batch_fifo/<n>         the same, oldest first. Item: one malloc + free.
 *   micro/large/<size>           malloc 64 KiB..32 MiB, write every page, free.
 *                                Item: one block; bytes_per_second counts its size.
 *   micro/empty                  the timed loop alone, no allocation: what one
 *                                iteration of the shim's loop costs by itself
 *                                (an out-of-line bs_keep_running call).
 *
 * Pair benchmarks hold one block of their size live for the whole run, so no free
 * in the loop empties a page: what is measured is the steady fast path, not an
 * allocator's policy for returning an emptied page. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

/* Blocks written page by page in micro/large: the smallest page Linux uses. */
#define MICRO_PAGE 4096

/* Size of the aligned blocks and of the batch blocks: a typical small object. */
#define MICRO_SMALL 64

/* micro/realloc_growth: from 16 B to 64 MiB, doubling. */
#define MICRO_GROW_FROM 16
#define MICRO_GROW_TO ((size_t)64 << 20)

static const int64_t micro_sizes[] = {16,   32,   48,   64,    96,    128,   256,  512,
                                      1024, 2048, 4096, 8192, 16384, 32768, 65536};
#define MICRO_NSIZES (sizeof micro_sizes / sizeof micro_sizes[0])

static void bench_pair(bs_state *st) {
  const size_t size = (size_t)bs_get_arg(st, 0);
  void *hold = bu_malloc(size);
  bu_touch(hold, size);
  while (bs_keep_running(st)) {
    void *p = malloc(size);
    if (p == NULL) bu_oom("malloc", size);
    bu_touch(p, size);
    free(p);
  }
  free(hold);
  bs_items(st, bs_max_iterations(st));
}

static void bench_calloc(bs_state *st) {
  const size_t size = (size_t)bs_get_arg(st, 0);
  void *hold = bu_malloc(size);
  bu_touch(hold, size);
  while (bs_keep_running(st)) {
    unsigned char *p = calloc(1, size);
    if (p == NULL) bu_oom("calloc", size);
    if (p[size / 2] != 0) bs_error(st, "calloc returned a block that is not zero");
    bu_touch(p, size);
    free(p);
  }
  free(hold);
  bs_items(st, bs_max_iterations(st));
}

static void bench_realloc_growth(bs_state *st) {
  int64_t steps = 0;
  while (bs_keep_running(st)) {
    size_t size = MICRO_GROW_FROM;
    unsigned char *p = bu_malloc(size);
    bu_touch(p, size);
    steps++;
    while (size < MICRO_GROW_TO) {
      size *= 2;
      unsigned char *q = realloc(p, size);
      if (q == NULL) bu_oom("realloc", size);
      /* The old contents must have moved with the block. */
      if (q[0] != (unsigned char)(size / 2)) bs_error(st, "realloc lost the contents");
      p = q;
      bu_touch(p, size);
      steps++;
    }
    free(p);
  }
  bs_items(st, steps);
}

static void bench_memalign(bs_state *st) {
  const size_t align = (size_t)bs_get_arg(st, 0);
  void *hold;
  if (posix_memalign(&hold, align, MICRO_SMALL) != 0) bu_oom("posix_memalign", MICRO_SMALL);
  while (bs_keep_running(st)) {
    void *p;
    if (posix_memalign(&p, align, MICRO_SMALL) != 0) bu_oom("posix_memalign", MICRO_SMALL);
    if ((uintptr_t)p % align != 0) bs_error(st, "posix_memalign: misaligned block");
    bu_touch(p, MICRO_SMALL);
    free(p);
  }
  free(hold);
  bs_items(st, bs_max_iterations(st));
}

static void bench_aligned_alloc(bs_state *st) {
  const size_t align = (size_t)bs_get_arg(st, 0);
  /* C11 wants the size to be a multiple of the alignment. */
  const size_t size = align > MICRO_SMALL ? align : MICRO_SMALL;
  void *hold = aligned_alloc(align, size);
  if (hold == NULL) bu_oom("aligned_alloc", size);
  while (bs_keep_running(st)) {
    void *p = aligned_alloc(align, size);
    if (p == NULL) bu_oom("aligned_alloc", size);
    if ((uintptr_t)p % align != 0) bs_error(st, "aligned_alloc: misaligned block");
    bu_touch(p, size);
    free(p);
  }
  free(hold);
  bs_items(st, bs_max_iterations(st));
}

static void batch_run(bs_state *st, int lifo) {
  const size_t n = (size_t)bs_get_arg(st, 0);
  void **blocks = bu_malloc(n * sizeof *blocks);
  while (bs_keep_running(st)) {
    for (size_t i = 0; i < n; i++) {
      blocks[i] = bu_malloc(MICRO_SMALL);
      bu_touch(blocks[i], MICRO_SMALL);
    }
    if (lifo) {
      for (size_t i = n; i-- > 0;) free(blocks[i]);
    } else {
      for (size_t i = 0; i < n; i++) free(blocks[i]);
    }
  }
  free(blocks);
  bs_items(st, bs_max_iterations(st) * (int64_t)n);
}

static void bench_batch_lifo(bs_state *st) { batch_run(st, 1); }
static void bench_batch_fifo(bs_state *st) { batch_run(st, 0); }

static void bench_large(bs_state *st) {
  const size_t size = (size_t)bs_get_arg(st, 0);
  while (bs_keep_running(st)) {
    volatile unsigned char *p = bu_malloc(size);
    for (size_t off = 0; off < size; off += MICRO_PAGE) p[off] = 1;
    p[size - 1] = 1;
    free((void *)p);
  }
  bs_items(st, bs_max_iterations(st));
  bs_bytes(st, bs_max_iterations(st) * (int64_t)size);
}

static void bench_empty(bs_state *st) {
  while (bs_keep_running(st)) {
  }
  bs_items(st, bs_max_iterations(st));
}

BS_REGISTRATION(micro_register)
static void micro_register(void) {
  static const int64_t batches[] = {100, 1000, 10000};

  bs_args(bs_register("micro/pair", bench_pair), micro_sizes, MICRO_NSIZES);
  bs_args(bs_register("micro/calloc", bench_calloc), micro_sizes, MICRO_NSIZES);
  bs_time_unit(bs_register("micro/realloc_growth", bench_realloc_growth), BS_US);
  bs_arg_range(bs_register("micro/memalign", bench_memalign), 16, 4096, 2);
  bs_arg_range(bs_register("micro/aligned_alloc", bench_aligned_alloc), 16, 4096, 2);
  bs_args(bs_register("micro/batch_lifo", bench_batch_lifo), batches, 3);
  bs_args(bs_register("micro/batch_fifo", bench_batch_fifo), batches, 3);
  bs_bench *large = bs_register("micro/large", bench_large);
  bs_arg_range(large, 64 << 10, 32 << 20, 2);
  bs_time_unit(large, BS_US);
  bs_register("micro/empty", bench_empty);
}
