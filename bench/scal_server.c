/* scal/server: a server's mix of request sizes over a steady working set. Each
 * thread keeps SERVER_SLOTS live blocks and replaces a random one per operation.
 * Sizes: 90% small (16-512 B, skewed small), 9.9% medium (4-64 KiB), 0.1% large
 * (256 KiB-8 MiB), so every size regime of an allocator is exercised in the
 * proportions a long-running service sees, and peak RSS shows how much each
 * allocator holds on to beyond the ~4 MiB per thread that is live.
 *
 * Item: one replacement (one free + one malloc of a new size, touched). */
#include <stdlib.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

#define SERVER_SLOTS 1000

/* Per mille of each regime; the rest is small. */
#define SERVER_MEDIUM_PERMILLE 99
#define SERVER_LARGE_PERMILLE 1

#define SERVER_SEED 0x5e77e7

typedef struct {
  void *p;
  size_t size;
} server_slot_t;

/* Octave k of [base << k, base << (k + 1)), k uniform in 0..octaves-1: uniform in
 * log(size) within a regime. */
static size_t server_octave_size(uint64_t r, size_t base, unsigned octaves) {
  size_t lo = base << (r % octaves);
  return lo + (size_t)((r >> 8) % lo);
}

static size_t server_size(uint64_t r) {
  unsigned permille = (unsigned)(r % 1000);
  r >>= 10;
  if (permille < SERVER_LARGE_PERMILLE) return server_octave_size(r, (size_t)256 << 10, 5);
  if (permille < SERVER_LARGE_PERMILLE + SERVER_MEDIUM_PERMILLE)
    return server_octave_size(r, (size_t)4 << 10, 4);
  return bu_small_size(r, 5);
}

static void server_fill(server_slot_t *s, uint64_t *rng) {
  s->size = server_size(bu_rand(rng));
  s->p = bu_malloc(s->size);
  bu_touch(s->p, s->size);
}

static void bench_server(bs_state *st) {
  uint64_t rng = bu_seed(SERVER_SEED, bs_thread_index(st));
  server_slot_t *slots = bu_malloc(SERVER_SLOTS * sizeof *slots);
  for (int i = 0; i < SERVER_SLOTS; i++) server_fill(&slots[i], &rng);

  while (bs_keep_running(st)) {
    server_slot_t *s = &slots[bu_rand(&rng) % SERVER_SLOTS];
    free(s->p);
    server_fill(s, &rng);
  }

  for (int i = 0; i < SERVER_SLOTS; i++) free(slots[i].p);
  free(slots);
  bs_items(st, bs_max_iterations(st));
}

BS_REGISTRATION(server_register)
static void server_register(void) { bs_threads_sweep(bs_register("scal/server", bench_server)); }
