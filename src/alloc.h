/* The allocation entry points shared by the override and the prefixed API. */

#ifndef BRISK_ALLOC_H
#define BRISK_ALLOC_H
#include "pagemap.h"

#pragma GCC visibility push(hidden)

void *brisk__malloc_slow(size_t size);
void brisk__free_slow(void *p, brisk_span_t *span, const char *call);
void *brisk__alloc_aligned(size_t align, size_t size);

#pragma GCC visibility pop
#endif /* BRISK_ALLOC_H */
