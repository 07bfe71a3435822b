/* Metadata (meta.c): span descriptors and other records for the life of the
 * process, never from malloc. meta_lock (rank META) guards all of it. */

#ifndef BRISK_META_H
#define BRISK_META_H
#include "pagemap.h"

#pragma GCC visibility push(hidden)

/* Zeroed, cache-line aligned memory for the life of the process. */
void *brisk__meta_alloc(size_t size);
/* The bytes at the start of each metadata chunk that list it (meta.c). */
#define BRISK_META_CHUNK_HEADER BRISK_CACHE_LINE
brisk_span_t *brisk__span_new(void);
/* Up to n zeroed descriptors, linked through next, under one acquisition of
 * meta_lock; returns how many (fewer only when metadata runs out). */
unsigned brisk__span_new_batch(brisk_span_t **list, unsigned n);
void brisk__span_delete(brisk_span_t *s);
void brisk__meta_fork_lock(void);
void brisk__meta_fork_unlock(void);
void brisk__meta_regions(brisk_region_fn fn, void *arg); /* its chunks, guard pages left out */

#pragma GCC visibility pop
#endif /* BRISK_META_H */
