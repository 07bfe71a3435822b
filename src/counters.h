/* Counters (counters.c): the process-wide figures that every layer's slow paths
 * add to (bytes mapped, their peak, metadata), at the bottom so that the layers
 * that count call nothing above them. Atomic, relaxed: the statistics read them
 * racily, and no decision depends on them. */

#ifndef BRISK_COUNTERS_H
#define BRISK_COUNTERS_H
#include "base.h"

#pragma GCC visibility push(hidden)

typedef struct brisk_counters_s {
  _Atomic uint64_t mapped;
  _Atomic uint64_t peak_mapped;
  _Atomic uint64_t meta;
} brisk_counters_t;
extern brisk_counters_t brisk__counters;

/* Mappings of the pools grew (delta > 0) or shrank; the peak follows. */
void brisk__stat_mapped(int64_t delta);

/* Metadata grew by bytes (it never shrinks). */
static inline void brisk__stat_meta(uint64_t bytes) {
  atomic_fetch_add_explicit(&brisk__counters.meta, bytes, memory_order_relaxed);
}

#pragma GCC visibility pop
#endif /* BRISK_COUNTERS_H */
