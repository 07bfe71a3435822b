/* scal/large_churn: mixed-size large blocks that come and go. Each thread keeps
 * LARGE_CHURN_LIVE blocks of 64 KiB-32 MiB live (sizes log-uniform) and replaces a
 * random one per item, writing one byte per 4 KiB page of the new block. An
 * allocator that maps and unmaps every large block pays the page faults of each
 * one again; one that reuses freed runs of pages (of any size above the request,
 * split and coalesced) keeps them resident. Peak RSS shows what it keeps for that.
 *
 * Every thread makes LARGE_CHURN_ITERATIONS replacements, however fast the
 * allocator: peak RSS then compares like with like (with a run as long as the
 * time asks, a fast allocator would simply meet more of the rare moments when all
 * four blocks are large), and there is no short first run that finds the pages
 * cold and sets the iteration count.
 *
 * Item: one replacement (free + malloc + one write per page). */
#include <math.h>
#include <stdlib.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

#define LARGE_CHURN_LIVE 4
#define LARGE_CHURN_MIN ((size_t)64 << 10)
#define LARGE_CHURN_MAX ((size_t)32 << 20)
#define LARGE_CHURN_PAGE 4096
#define LARGE_CHURN_SEED 0x1a29e
/* Seconds for an allocator that maps every block afresh (about 3 ms a
 * replacement on the development machine), a fraction of one for one that reuses. */
#define LARGE_CHURN_ITERATIONS 400

/* Log-uniform in [LARGE_CHURN_MIN, LARGE_CHURN_MAX]: uniform in log2(size). */
static size_t large_churn_size(uint64_t r) {
  double octaves = log2((double)LARGE_CHURN_MAX / (double)LARGE_CHURN_MIN);
  double u = (double)(r >> 11) * 0x1.0p-53;
  return (size_t)((double)LARGE_CHURN_MIN * exp2(u * octaves));
}

static void *large_churn_fill(size_t size) {
  unsigned char *p = bu_malloc(size);
  for (size_t off = 0; off < size; off += LARGE_CHURN_PAGE) p[off] = (unsigned char)off;
  p[size - 1] = 1;
  return p;
}

static void bench_large_churn(bs_state *st) {
  uint64_t rng = bu_seed(LARGE_CHURN_SEED, bs_thread_index(st));
  void *live[LARGE_CHURN_LIVE];
  for (int i = 0; i < LARGE_CHURN_LIVE; i++) live[i] = large_churn_fill(large_churn_size(bu_rand(&rng)));

  while (bs_keep_running(st)) {
    uint64_t r = bu_rand(&rng);
    int i = (int)(r % LARGE_CHURN_LIVE);
    free(live[i]);
    live[i] = large_churn_fill(large_churn_size(bu_rand(&rng)));
  }

  for (int i = 0; i < LARGE_CHURN_LIVE; i++) free(live[i]);
  bs_items(st, bs_max_iterations(st));
}

BS_REGISTRATION(large_churn_register)
static void large_churn_register(void) {
  bs_bench *b = bs_register("scal/large_churn", bench_large_churn);
  bs_threads_sweep(b);
  bs_iterations(b, LARGE_CHURN_ITERATIONS);
}
