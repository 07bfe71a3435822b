/* The bootstrap area (boot.c): blocks for the thread that loads the NUMA
 * topology, never reused; free() of one does nothing. boot_lock (rank BOOT)
 * guards it. */

#ifndef BRISK_BOOT_H
#define BRISK_BOOT_H
#include "base.h"

#pragma GCC visibility push(hidden)

void *brisk__boot_alloc(size_t size, size_t align); /* align 0: natural for size; zeroed */
size_t brisk__boot_usable(const void *p);
uint64_t brisk__boot_count(void); /* blocks it has served (no lock) */
void brisk__boot_regions(brisk_region_fn fn, void *arg); /* its chunks */
void brisk__boot_fork_lock(void);
void brisk__boot_fork_unlock(void);

#pragma GCC visibility pop
#endif /* BRISK_BOOT_H */
