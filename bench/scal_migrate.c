/* scal/migrate: objects that move between threads, in the shape of mstress and
 * rpmalloc's rptest. All threads share one table of slots; each step a thread
 * picks a random slot, frees whatever block is there (most likely allocated by
 * another thread) and leaves a new block of a random size in its place, with an
 * atomic exchange. Blocks live for a while and die on any thread, as objects
 * handed between the threads of a server do. The table is filled before the run
 * and emptied after it.
 *
 * Item: one block replaced (a malloc, and a free of a block that may be any
 * thread's). */
#include <stdatomic.h>
#include <stdlib.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

/* 4096 slots of at most 2 KiB: about 1.5 MiB live, beyond the thread caches. */
#define MIGRATE_SLOTS 4096
#define MIGRATE_OCTAVES 7
#define MIGRATE_SEED 0x61a7

static _Atomic(void *) migrate_slot[MIGRATE_SLOTS];

static void *migrate_block(uint64_t *rng) {
  size_t size = bu_small_size(bu_rand(rng), MIGRATE_OCTAVES);
  void *p = bu_malloc(size);
  bu_touch(p, size);
  return p;
}

static void migrate_setup(bs_state *st) {
  uint64_t rng = bu_seed(MIGRATE_SEED, -1);
  for (int i = 0; i < MIGRATE_SLOTS; i++) atomic_store(&migrate_slot[i], migrate_block(&rng));
}

static void migrate_teardown(bs_state *st) {
  for (int i = 0; i < MIGRATE_SLOTS; i++) free(atomic_exchange(&migrate_slot[i], NULL));
}

static void bench_migrate(bs_state *st) {
  uint64_t rng = bu_seed(MIGRATE_SEED, bs_thread_index(st));
  while (bs_keep_running(st)) {
    void *fresh = migrate_block(&rng);
    size_t i = (size_t)(bu_rand(&rng) % MIGRATE_SLOTS);
    free(atomic_exchange_explicit(&migrate_slot[i], fresh, memory_order_acq_rel));
  }
  bs_items(st, bs_max_iterations(st));
}

BS_REGISTRATION(migrate_register)
static void migrate_register(void) {
  bs_bench *b = bs_register("scal/migrate", bench_migrate);
  bs_setup(b, migrate_setup);
  bs_teardown(b, migrate_teardown);
  bs_threads_sweep(b);
}
