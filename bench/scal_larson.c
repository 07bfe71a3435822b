/* scal/larson: Larson and Krishnan's server simulation, as churn.c did it. Each
 * thread owns a working set of LARSON_SLOTS blocks and keeps replacing a random
 * one with a fresh block of random size (16 B-4 KiB, skewed small). One free in
 * four is remote: the block is batched and handed to another thread, which frees
 * it, as a server hands requests between threads. So the allocator sees steady
 * churn, a fragmented heap, and a constant stream of cross-thread frees.
 *
 * Item: one replacement (one free, local or handed over, and one malloc).
 *
 * A thread's inbox is a lock-free stack of batches that others push onto and only
 * its owner empties (whole, so no ABA). A thread's backlog is capped at its
 * working-set size: a sender that finds the target full frees the block itself,
 * so blocks waiting for a descheduled thread cannot decide peak RSS, and nobody
 * ever waits (a thread may sit in Google Benchmark's end-of-loop barrier). */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

#define LARSON_SLOTS 1000
#define LARSON_OCTAVES 8  /* sizes 16 B .. 4 KiB */
#define LARSON_REMOTE_MASK 3 /* one free in four is remote */
/* Blocks travel in batches of this many, one atomic push per batch, so the handoff
 * costs a small fraction of the frees it carries. */
#define LARSON_BATCH 32
/* A thread looks at its inbox every this many operations: one load of a line that
 * changes only once per batch. */
#define LARSON_DRAIN_EVERY 16
#define LARSON_SEED 0x1a750
#define LARSON_LINE 64

/* A block on its way to another thread is linked through its own first word. */
typedef struct larson_link {
  struct larson_link *next;
} larson_link_t;

typedef struct {
  larson_link_t *head, *tail;
  size_t count;
} larson_batch_t;

/* One line per thread: pushed by any thread, emptied by the owner. */
typedef struct {
  _Alignas(LARSON_LINE) _Atomic(larson_link_t *) inbox;
  atomic_size_t pending; /* blocks pushed and not yet freed by the owner */
} larson_thread_t;

static larson_thread_t *larson_threads;
static atomic_int larson_pushing; /* threads that may still push */

static void larson_setup(bs_state *st) {
  int n = bs_thread_count(st);
  larson_threads = aligned_alloc(LARSON_LINE, (size_t)n * sizeof *larson_threads);
  if (larson_threads == NULL) bu_oom("aligned_alloc", (size_t)n * sizeof *larson_threads);
  for (int i = 0; i < n; i++) {
    atomic_init(&larson_threads[i].inbox, NULL);
    atomic_init(&larson_threads[i].pending, 0);
  }
  atomic_init(&larson_pushing, n);
}

static void larson_teardown(bs_state *st) {
  free(larson_threads);
  larson_threads = NULL;
}

static void larson_drain(larson_thread_t *self) {
  if (atomic_load_explicit(&self->inbox, memory_order_relaxed) == NULL) return;
  larson_link_t *l = atomic_exchange_explicit(&self->inbox, NULL, memory_order_acquire);
  size_t count = 0;
  while (l != NULL) {
    larson_link_t *next = l->next;
    free(l);
    l = next;
    count++;
  }
  atomic_fetch_sub_explicit(&self->pending, count, memory_order_relaxed);
}

/* Hand a batch to `to`; with `capped`, free it here instead when `to` is full. */
static void larson_push(larson_thread_t *to, larson_batch_t *b, int capped) {
  if (b->count == 0) return;
  if (capped && atomic_load_explicit(&to->pending, memory_order_relaxed) >= LARSON_SLOTS) {
    for (larson_link_t *l = b->head, *next; l != NULL; l = next) {
      next = l->next;
      free(l);
    }
  } else {
    atomic_fetch_add_explicit(&to->pending, b->count, memory_order_relaxed);
    larson_link_t *head = atomic_load_explicit(&to->inbox, memory_order_relaxed);
    do {
      b->tail->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&to->inbox, &head, b->head,
                                                    memory_order_release,
                                                    memory_order_relaxed));
  }
  b->head = b->tail = NULL;
  b->count = 0;
}

static void *larson_new(uint64_t *rng) {
  size_t size = bu_small_size(bu_rand(rng), LARSON_OCTAVES);
  void *p = bu_malloc(size);
  bu_touch(p, size);
  return p;
}

static void bench_larson(bs_state *st) {
  const int index = bs_thread_index(st), n = bs_thread_count(st);
  larson_thread_t *self = &larson_threads[index];
  uint64_t rng = bu_seed(LARSON_SEED, index);
  void **slots = bu_malloc(LARSON_SLOTS * sizeof *slots);
  larson_batch_t *out = calloc((size_t)n, sizeof *out);
  if (out == NULL) bu_oom("calloc", (size_t)n * sizeof *out);
  for (int i = 0; i < LARSON_SLOTS; i++) slots[i] = larson_new(&rng);

  uint64_t op = 0;
  while (bs_keep_running(st)) {
    uint64_t r = bu_rand(&rng);
    void **s = &slots[r % LARSON_SLOTS];
    if (n > 1 && ((r >> 40) & LARSON_REMOTE_MASK) == 0) {
      int target = (index + 1 + (int)((r >> 42) % (uint64_t)(n - 1))) % n;
      larson_batch_t *b = &out[target];
      larson_link_t *l = *s;
      l->next = b->head;
      b->head = l;
      if (b->tail == NULL) b->tail = l;
      if (++b->count == LARSON_BATCH) larson_push(&larson_threads[target], b, 1);
    } else {
      free(*s);
    }
    *s = larson_new(&rng);
    if (++op % LARSON_DRAIN_EVERY == 0) larson_drain(self);
  }

  /* Untimed: deliver what is still batched, then free what others send until
   * nobody can push any more. */
  for (int t = 0; t < n; t++) larson_push(&larson_threads[t], &out[t], 0);
  atomic_fetch_sub_explicit(&larson_pushing, 1, memory_order_acq_rel);
  unsigned spins = 0;
  while (atomic_load_explicit(&larson_pushing, memory_order_acquire) != 0) {
    larson_drain(self);
    bu_wait_step(&spins);
  }
  larson_drain(self);
  for (int i = 0; i < LARSON_SLOTS; i++) free(slots[i]);
  free(slots);
  free(out);
  bs_items(st, bs_max_iterations(st));
}

BS_REGISTRATION(larson_register)
static void larson_register(void) {
  bs_bench *b = bs_register("scal/larson", bench_larson);
  bs_setup(b, larson_setup);
  bs_teardown(b, larson_teardown);
  bs_threads_sweep(b);
}
