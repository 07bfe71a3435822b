/* Page heap (page_heap.c): runs of brisk pages for the small spans and the large
 * blocks, per NUMA slot, in arenas: each arena's lock (rank HEAP) guards its
 * free lists, its FREE spans, the length of its LARGE ones and its counters;
 * grow_lock (rank HEAP_GROW) what growing shares. */

#ifndef BRISK_PAGE_HEAP_H
#define BRISK_PAGE_HEAP_H
#include "pagemap.h"

#pragma GCC visibility push(hidden)

/* At most this many arenas per slot (BRISK_HEAP_SHARDS). */
#define HEAP_SHARDS_MAX 8

/* Chunks start and end on a 2 MiB boundary, so that no transparent huge page
 * holds pages of two chunks. Two neighbouring chunks may belong to different
 * nodes, or one may be early (unbound) while the other is bound. Without the
 * alignment the main-hop NUMA test (numa_probe --main-hop, 4 nodes) failed 3
 * runs in 30 under load: up to 166 of a thread's 1096 pages lay on the early
 * range's node, always from the early range's end to the next 2 MiB boundary,
 * as a huge page faulted or migrated whole would leave them; 0 in 30 with it.
 * The pad below a chunk costs address space, never memory: nothing touches it. */
#define BRISK_HEAP_CHUNK_ALIGN ((size_t)2 << 20)

/* The fork handler's: every arena's lock and grow_lock, and back. */
void brisk__heap_fork_lock(void);
void brisk__heap_fork_unlock(void);
/* A span of npages in state SMALL, its first and last page in the page map (the
 * caller publishes the others, as small.c does with their class). NULL when
 * memory is exhausted. */
brisk_span_t *brisk__heap_alloc(unsigned slot, size_t npages);
void brisk__heap_free(brisk_span_t *s);
/* brisk__heap_free of n SMALL spans, v[0..n) (cleared), with one acquisition of
 * each arena's lock that they belong to. */
void brisk__heap_free_batch(brisk_span_t **v, unsigned n);
/* A large block of npages (state LARGE, its first and last page in the page map),
 * the best fit among the slot's free runs. *zeroed tells whether every page is
 * fresh or was given back since its last use (so reads as zero). */
brisk_span_t *brisk__heap_alloc_large(unsigned slot, size_t npages, bool *zeroed);
void brisk__heap_free_large(brisk_span_t *s);
/* Grow large block s in place to npages from the free run that follows it; false
 * when there is none that long. Shrink gives its tail back as a free run. */
bool brisk__heap_grow_large(brisk_span_t *s, size_t npages);
void brisk__heap_shrink_large(brisk_span_t *s, size_t npages);
/* Give back free spans idle for at least min_idle_ms; returns bytes purged. */
size_t brisk__heap_purge(uint64_t now_ms, uint64_t min_idle_ms);
/* The purge tick's part: free runs idle for delay_ms go back, and so do free
 * pages beyond the recent swing of the heap's use (page_heap.c, "Decay"); returns
 * bytes. */
size_t brisk__heap_decay(uint64_t now_ms, uint64_t delay_ms);
void brisk__heap_stats(uint64_t *free_bytes, uint64_t *returned_bytes, uint64_t *sbrk_bytes);
/* One slot's part: bytes grown for it, and free ones still backed by memory. */
void brisk__heap_node_stats(unsigned slot, uint64_t *mapped, uint64_t *free_bytes);
/* The first address the heap ever got (0 if none yet): where pre-NUMA memory lives. */
uintptr_t brisk__heap_first_address(void);
/* The heap's ranges (chunks that touch merged), for the statistics. */
void brisk__heap_regions(brisk_region_fn fn, void *arg);
/* Every resident byte of the heap's ranges, in address order, as runs with the
 * span that owns them (NULL: a small span on its way back to the free runs).
 * fn runs under every arena's lock and must take no lock. */
typedef void (*brisk_span_bytes_fn)(void *arg, const brisk_span_t *s, uintptr_t start, size_t len);
void brisk__heap_resident(brisk_span_bytes_fn fn, void *arg);
/* Heap chunks grown before NUMA discovery, handed over once (page_heap.c). */
typedef struct brisk_range_s {
  uintptr_t start;
  size_t len;
} brisk_range_t;
#define BRISK_EARLY_RANGES 32
unsigned brisk__heap_take_early(brisk_range_t *out);

#pragma GCC visibility pop
#endif /* BRISK_PAGE_HEAP_H */
