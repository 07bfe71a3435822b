/* Counters: the process-wide figures of counters.h. No lock: each is one
 * atomic, and the peak is raised by a compare-and-swap loop. */
#include "counters.h"

#include <string.h>

brisk_counters_t brisk__counters;

void brisk__stat_mapped(int64_t delta) {
  uint64_t now = atomic_fetch_add_explicit(&brisk__counters.mapped, (uint64_t)delta, memory_order_relaxed) +
                 (uint64_t)delta;
  uint64_t peak = atomic_load_explicit(&brisk__counters.peak_mapped, memory_order_relaxed);
  while (delta > 0 && now > peak &&
         !atomic_compare_exchange_weak_explicit(&brisk__counters.peak_mapped, &peak, now,
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

void brisk__large_count_fold(brisk_large_counts_t *c) {
  brisk_large_counts_t *to = &brisk__counters.large;
  __atomic_fetch_add(&to->bytes, c->bytes, __ATOMIC_RELAXED);
  __atomic_fetch_add(&to->count, c->count, __ATOMIC_RELAXED);
  for (unsigned i = 0; i < BRISK_MAX_NODES; i++)
    if (c->node[i] != 0) __atomic_fetch_add(&to->node[i], c->node[i], __ATOMIC_RELAXED);
  memset(c, 0, sizeof *c);
}
