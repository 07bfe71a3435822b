/* scal/prodcons: one set of threads allocates, another frees. Threads pair up:
 * thread 2k produces for thread 2k+1 through a single-producer single-consumer
 * ring; with an odd count the last thread produces for itself (so one thread is
 * the single-thread baseline). Every block is freed by a thread other than the one
 * that allocated it: the remote-free path of an allocator, at full rate, with the
 * memory flowing one way.
 *
 * Per iteration a producer allocates and writes PRODCONS_BATCH blocks and pushes
 * them; a consumer takes PRODCONS_BATCH blocks and frees them. Producer
 * and consumer run the same number of iterations, so every block is consumed.
 * The ring moves whole batches (one release store per batch), so it costs little
 * next to the mallocs and frees.
 *
 * Item: one block allocated by one thread and freed by another (counted by the
 * producer). */
#include <stdatomic.h>
#include <stdlib.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

#define PRODCONS_BATCH 64
/* The ring holds this many batches: slack for a producer to run ahead while its
 * consumer is descheduled, without letting blocks in flight dominate peak RSS. */
#define PRODCONS_RING_BATCHES 16
#define PRODCONS_RING (PRODCONS_BATCH * PRODCONS_RING_BATCHES)
#define PRODCONS_SEED 0x9c0d
#define PRODCONS_LINE 64

/* head is written by the producer only, tail by the consumer only; each on its
 * own line so that the two do not false-share. */
typedef struct {
  _Alignas(PRODCONS_LINE) atomic_size_t head; /* blocks pushed so far */
  _Alignas(PRODCONS_LINE) atomic_size_t tail; /* blocks taken so far */
  _Alignas(PRODCONS_LINE) void *slot[PRODCONS_RING];
} prodcons_ring_t;

static prodcons_ring_t *prodcons_rings; /* one per pair of threads */

static void prodcons_setup(bs_state *st) {
  size_t pairs = (size_t)(bs_thread_count(st) + 1) / 2;
  prodcons_rings = aligned_alloc(PRODCONS_LINE, pairs * sizeof *prodcons_rings);
  if (prodcons_rings == NULL) bu_oom("aligned_alloc", pairs * sizeof *prodcons_rings);
  for (size_t i = 0; i < pairs; i++) {
    atomic_init(&prodcons_rings[i].head, 0);
    atomic_init(&prodcons_rings[i].tail, 0);
  }
}

static void prodcons_teardown(bs_state *st) {
  free(prodcons_rings);
  prodcons_rings = NULL;
}

static void produce(prodcons_ring_t *ring, uint64_t *rng) {
  size_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
  unsigned spins = 0;
  while (head - atomic_load_explicit(&ring->tail, memory_order_acquire) >
         PRODCONS_RING - PRODCONS_BATCH)
    bu_wait_step(&spins);
  for (size_t i = 0; i < PRODCONS_BATCH; i++) {
    size_t size = bu_small_size(bu_rand(rng), 5);
    unsigned char *p = bu_malloc(size);
    bu_touch(p, size);
    ring->slot[(head + i) % PRODCONS_RING] = p;
  }
  atomic_store_explicit(&ring->head, head + PRODCONS_BATCH, memory_order_release);
}

static void consume(prodcons_ring_t *ring) {
  size_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
  unsigned spins = 0;
  while (atomic_load_explicit(&ring->head, memory_order_acquire) - tail < PRODCONS_BATCH)
    bu_wait_step(&spins);
  for (size_t i = 0; i < PRODCONS_BATCH; i++) free(ring->slot[(tail + i) % PRODCONS_RING]);
  atomic_store_explicit(&ring->tail, tail + PRODCONS_BATCH, memory_order_release);
}

static void bench_prodcons(bs_state *st) {
  const int index = bs_thread_index(st), count = bs_thread_count(st);
  prodcons_ring_t *ring = &prodcons_rings[index / 2];
  const int alone = index == count - 1 && count % 2 == 1;
  const int producer = index % 2 == 0;
  uint64_t rng = bu_seed(PRODCONS_SEED, index);

  while (bs_keep_running(st)) {
    if (producer) produce(ring, &rng);
    if (!producer || alone) consume(ring);
  }
  if (producer) bs_items(st, bs_max_iterations(st) * PRODCONS_BATCH);
}

BS_REGISTRATION(prodcons_register)
static void prodcons_register(void) {
  bs_bench *b = bs_register("scal/prodcons", bench_prodcons);
  bs_setup(b, prodcons_setup);
  bs_teardown(b, prodcons_teardown);
  bs_threads_sweep(b);
}
