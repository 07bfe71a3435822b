/* Counters (counters.c): the process-wide figures that every layer's slow paths
 * add to (bytes mapped, their peak, metadata, large blocks in use), at the
 * bottom so that the layers that count call nothing above them. Atomic,
 * relaxed: the statistics read them racily, and no decision depends on them. */

#ifndef BRISK_COUNTERS_H
#define BRISK_COUNTERS_H
#include "base.h"

#pragma GCC visibility push(hidden)

/* Large blocks in use (large.c): bytes, blocks, and bytes by the NUMA slot of
 * the block. A shared atomic on the path of every large block's malloc and
 * free bounces its cache line between the cores of threads that churn large
 * blocks at once (scal/large_threads), so a registered thread counts its heap
 * blocks in a record of its own (in its registry node, thread_cache.c):
 * written by that thread alone, with plain stores, and read by the statistics
 * under the registry lock. Blocks mapped alone (an mmap each),
 * threads without a record (a thread gets one with its cache, at its first
 * small request), and the records of threads that have gone count in
 * brisk__counters.large, with atomics. Every figure is a sum of deltas: a block
 * freed by another thread than the one that took it adds to one record and
 * subtracts from the other, and only the sum over all of them means anything
 * (brisk__tcache_large_counts). */
typedef struct brisk_large_counts_s {
  uint64_t bytes, count;
  uint64_t node[BRISK_MAX_NODES];
} brisk_large_counts_t;

typedef struct brisk_counters_s {
  _Atomic uint64_t mapped;
  _Atomic uint64_t peak_mapped;
  _Atomic uint64_t meta;
  brisk_large_counts_t large; /* through __atomic builtins */
} brisk_counters_t;
extern brisk_counters_t brisk__counters;

/* Mappings of the pools grew (delta > 0) or shrank; the peak follows. */
void brisk__stat_mapped(int64_t delta);

/* Metadata grew by bytes (it never shrinks). */
static inline void brisk__stat_meta(uint64_t bytes) {
  atomic_fetch_add_explicit(&brisk__counters.meta, bytes, memory_order_relaxed);
}

/* A thread's own record (no read-modify-write: only its thread writes it; the
 * relaxed stores keep the statistics' concurrent loads whole). */
static inline void brisk__large_count_mine(brisk_large_counts_t *c, unsigned slot, int64_t bytes, int64_t n) {
  __atomic_store_n(&c->bytes, c->bytes + (uint64_t)bytes, __ATOMIC_RELAXED);
  __atomic_store_n(&c->count, c->count + (uint64_t)n, __ATOMIC_RELAXED);
  __atomic_store_n(&c->node[slot], c->node[slot] + (uint64_t)bytes, __ATOMIC_RELAXED);
}
/* The shared record, or a record that another thread may be adding to. */
static inline void brisk__large_count_shared(unsigned slot, int64_t bytes, int64_t n) {
  brisk_large_counts_t *c = &brisk__counters.large;
  __atomic_fetch_add(&c->bytes, (uint64_t)bytes, __ATOMIC_RELAXED);
  __atomic_fetch_add(&c->count, (uint64_t)n, __ATOMIC_RELAXED);
  __atomic_fetch_add(&c->node[slot], (uint64_t)bytes, __ATOMIC_RELAXED);
}
/* A gone thread's record joins the shared one and is zeroed, ready for the next thread. */
void brisk__large_count_fold(brisk_large_counts_t *c);

#pragma GCC visibility pop
#endif /* BRISK_COUNTERS_H */
