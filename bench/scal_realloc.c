/* scal/realloc: buffers that grow by realloc, as containers and string builders
 * do. Each thread keeps REALLOC_LIVE buffers; per item it grows a random one:
 *  - a "vector" doubles, from 16 B up to a cap drawn log-uniform in 1 KiB-2 MiB,
 *    and the new half gets one write per 4 KiB page (and its last byte);
 *  - a "string" grows by 1-80 B, up to a cap drawn log-uniform in 256 B-16 KiB,
 *    and the appended bytes are written.
 * A buffer at its cap is freed and starts again as a new vector or string (even
 * odds). The first byte is checked on every step: realloc must keep the contents.
 * An allocator that grows large blocks into fresh pages (mremap, or a new mapping)
 * pays their faults on every step; one that grows in place or copies into memory
 * already faulted in does not.
 *
 * Item: one realloc. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

#define REALLOC_LIVE 64
#define REALLOC_SEED 0x7ea11
#define REALLOC_PAGE 4096
#define REALLOC_VEC_FROM 16
#define REALLOC_VEC_CAP_MIN ((size_t)1 << 10)
#define REALLOC_VEC_CAP_MAX ((size_t)2 << 20)
#define REALLOC_STR_STEP_MAX 80
#define REALLOC_STR_CAP_MIN 256
#define REALLOC_STR_CAP_MAX ((size_t)16 << 10)

typedef struct {
  unsigned char *p;
  size_t size, cap;
  int vector; /* else a string */
  unsigned char tag; /* the first byte, checked on every step */
} realloc_buf_t;

static size_t realloc_log_uniform(uint64_t r, size_t lo, size_t hi) {
  double u = (double)(r >> 11) * 0x1.0p-53;
  return (size_t)((double)lo * exp2(u * log2((double)hi / (double)lo)));
}

static void realloc_start(realloc_buf_t *b, uint64_t *rng) {
  uint64_t r = bu_rand(rng);
  b->vector = (int)(r & 1);
  if (b->vector) {
    b->cap = realloc_log_uniform(bu_rand(rng), REALLOC_VEC_CAP_MIN, REALLOC_VEC_CAP_MAX);
    b->size = REALLOC_VEC_FROM;
  } else {
    b->cap = realloc_log_uniform(bu_rand(rng), REALLOC_STR_CAP_MIN, REALLOC_STR_CAP_MAX);
    b->size = 1 + (size_t)((r >> 8) % REALLOC_STR_STEP_MAX);
  }
  b->p = bu_malloc(b->size);
  b->tag = (unsigned char)(r >> 32);
  memset(b->p, b->tag, b->size);
}

/* One growth step; false when realloc lost the contents. */
static int realloc_grow(realloc_buf_t *b, uint64_t *rng) {
  size_t old = b->size;
  size_t size = b->vector ? old * 2 : old + 1 + (size_t)(bu_rand(rng) % REALLOC_STR_STEP_MAX);
  if (size > b->cap) size = b->cap;
  unsigned char *q = realloc(b->p, size);
  if (q == NULL) bu_oom("realloc", size);
  int kept = q[0] == b->tag && q[old - 1] == b->tag;
  if (b->vector) {
    for (size_t off = old; off < size; off += REALLOC_PAGE) q[off] = b->tag;
    q[size - 1] = b->tag;
  } else {
    memset(q + old, b->tag, size - old);
  }
  b->p = q;
  b->size = size;
  return kept;
}

static void bench_realloc(bs_state *st) {
  uint64_t rng = bu_seed(REALLOC_SEED, bs_thread_index(st));
  realloc_buf_t bufs[REALLOC_LIVE];
  for (int i = 0; i < REALLOC_LIVE; i++) realloc_start(&bufs[i], &rng);

  while (bs_keep_running(st)) {
    realloc_buf_t *b = &bufs[bu_rand(&rng) % REALLOC_LIVE];
    if (b->size >= b->cap) {
      free(b->p);
      realloc_start(b, &rng);
    }
    if (!realloc_grow(b, &rng)) {
      bs_error(st, "realloc lost the contents");
      break;
    }
  }

  for (int i = 0; i < REALLOC_LIVE; i++) free(bufs[i].p);
  bs_items(st, bs_max_iterations(st));
}

BS_REGISTRATION(realloc_register)
static void realloc_register(void) { bs_threads_sweep(bs_register("scal/realloc", bench_realloc)); }
