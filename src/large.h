/* Large blocks (large.c): requests above BRISK_SMALL_MAX, as runs of the page
 * heap (under its lock) or mapped alone (listed under alone_lock, rank LARGE),
 * and each thread's spare block, under its gate. */

#ifndef BRISK_LARGE_H
#define BRISK_LARGE_H
#include "pagemap.h"

#pragma GCC visibility push(hidden)

struct brisk_tcache_s;

void *brisk__large_alloc(size_t size, size_t align, bool zero);
void brisk__large_free(brisk_span_t *s, void *p, const char *call);
void *brisk__large_realloc(brisk_span_t *s, void *p, size_t size);
size_t brisk__large_usable(const brisk_span_t *s); /* the block's usable bytes */
/* Whether sizes a and b of a large block mean the same pages (sized frees). */
bool brisk__large_same_size(size_t a, size_t b);
/* Give the thread's spare large block back to the heap (thread exit, trim). */
void brisk__large_spare_release(struct brisk_tcache_s *tc);
/* A slot's bytes in large blocks mapped alone and in use (the blocks in use of
 * every kind are in counters.h's records, summed by brisk__tcache_large_counts). */
uint64_t brisk__large_node_alone(unsigned slot);
void brisk__large_regions(brisk_region_fn fn, void *arg); /* the blocks mapped alone */
void brisk__large_fork_lock(void);
void brisk__large_fork_unlock(void);

#pragma GCC visibility pop
#endif /* BRISK_LARGE_H */
