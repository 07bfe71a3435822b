/* scal/xmalloc: the shape of xmalloc-test (Lever and Boreham). Half the threads
 * allocate and half free, through one shared queue of batches: any consumer may
 * free any producer's blocks, so memory flows between many pairs at once, not
 * between fixed ones as in scal/prodcons. The queue is a small mutex-protected
 * stack of batches, the same cost for every allocator; a producer that finds it
 * full frees a queued batch itself (usually another producer's), so the memory
 * in flight stays bounded. With one thread, it produces and consumes in turn.
 *
 * Item: one block allocated and freed, nearly always by two different threads. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

#define XMALLOC_BATCH 64
#define XMALLOC_QUEUE 64 /* batches in flight at most */
#define XMALLOC_SEED 0x3a11

typedef struct {
  void *blocks[XMALLOC_BATCH];
} xmalloc_batch_t;

static pthread_mutex_t xmalloc_lock = PTHREAD_MUTEX_INITIALIZER;
static xmalloc_batch_t *xmalloc_queue[XMALLOC_QUEUE];
static int xmalloc_depth;
static atomic_int xmalloc_producers_left;

static void xmalloc_setup(bs_state *st) {
  xmalloc_depth = 0;
  int n = bs_thread_count(st);
  atomic_store(&xmalloc_producers_left, n == 1 ? 1 : (n + 1) / 2);
}

static void xmalloc_teardown(bs_state *st) {
  for (int i = 0; i < xmalloc_depth; i++) {
    for (int j = 0; j < XMALLOC_BATCH; j++) free(xmalloc_queue[i]->blocks[j]);
    free(xmalloc_queue[i]);
  }
  xmalloc_depth = 0;
}

static int xmalloc_push(xmalloc_batch_t *b) {
  pthread_mutex_lock(&xmalloc_lock);
  int ok = xmalloc_depth < XMALLOC_QUEUE;
  if (ok) xmalloc_queue[xmalloc_depth++] = b;
  pthread_mutex_unlock(&xmalloc_lock);
  return ok;
}

static xmalloc_batch_t *xmalloc_pop(void) {
  pthread_mutex_lock(&xmalloc_lock);
  xmalloc_batch_t *b = xmalloc_depth > 0 ? xmalloc_queue[--xmalloc_depth] : NULL;
  pthread_mutex_unlock(&xmalloc_lock);
  return b;
}

static long long xmalloc_consume(xmalloc_batch_t *b) {
  for (int i = 0; i < XMALLOC_BATCH; i++) free(b->blocks[i]);
  free(b);
  return XMALLOC_BATCH;
}

static void bench_xmalloc(bs_state *st) {
  const int index = bs_thread_index(st), count = bs_thread_count(st);
  const int alone = count == 1;
  const int producer = alone || index % 2 == 0;
  uint64_t rng = bu_seed(XMALLOC_SEED, index);
  long long items = 0, iter = 0;
  const long long last = bs_max_iterations(st);
  while (bs_keep_running(st)) {
    if (producer) {
      xmalloc_batch_t *b = bu_malloc(sizeof *b);
      for (int i = 0; i < XMALLOC_BATCH; i++) {
        size_t size = bu_small_size(bu_rand(&rng), 5);
        b->blocks[i] = bu_malloc(size);
        bu_touch(b->blocks[i], size);
      }
      /* A full queue (the consumers are behind, or done): take a batch out and
       * free it here, which keeps the memory in flight bounded and cannot stall. */
      while (!xmalloc_push(b)) {
        xmalloc_batch_t *old = xmalloc_pop();
        if (old != NULL) items += xmalloc_consume(old);
      }
      if (alone) items += xmalloc_consume(xmalloc_pop());
      /* Said in the last iteration: the final bs_keep_running waits for all threads. */
      if (++iter == last) atomic_fetch_sub(&xmalloc_producers_left, 1);
    } else {
      /* Consumers run until the producers are done and the queue is empty. */
      unsigned spins = 0;
      xmalloc_batch_t *b;
      while ((b = xmalloc_pop()) == NULL && atomic_load(&xmalloc_producers_left) > 0) bu_wait_step(&spins);
      if (b != NULL) items += xmalloc_consume(b);
    }
  }
  bs_items(st, items);
}

BS_REGISTRATION(xmalloc_register)
static void xmalloc_register(void) {
  bs_bench *b = bs_register("scal/xmalloc", bench_xmalloc);
  bs_setup(b, xmalloc_setup);
  bs_teardown(b, xmalloc_teardown);
  bs_threads_sweep(b);
}
