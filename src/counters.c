/* Counters: the process-wide figures of counters.h. No lock: each is one
 * atomic, and the peak is raised by a compare-and-swap loop. */
#include "counters.h"

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
