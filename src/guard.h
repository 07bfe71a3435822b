/* Guarded blocks (guard.c): a sampled small allocation ends at a PROT_NONE page
 * and its pages stay PROT_NONE for a while after its free, so that an overflow
 * or a use after free faults and is reported.
 *
 * guard_lock (rank GUARD) guards the queue of freed slots and the choice of a
 * slot; a slot moves by atomic stores and one compare-and-swap. */

#ifndef BRISK_GUARD_H
#define BRISK_GUARD_H
#include "prof.h"

#pragma GCC visibility push(hidden)

#define BRISK_GUARD_MAX ((size_t)16 * 1024) /* the largest block that may be guarded */
/* A guarded block of size bytes (at most BRISK_GUARD_MAX), 16-byte aligned;
 * NULL when every slot holds a live block or the pool cannot be made. site: the
 * caller of malloc. */
void *brisk__guard_alloc(size_t size, const void *site);
/* Hang the heap profile's record rec on the guarded block p (just allocated);
 * its free hands it to brisk__prof_forget. */
void brisk__guard_set_prof(void *p, struct brisk_prof_rec_s *rec);
void brisk__guard_free(void *p, const char *call, const void *site);
size_t brisk__guard_usable(const void *p, const char *call); /* validates like free */
/* The live guarded blocks: their usable bytes and their number. */
void brisk__guard_stats(uint64_t *in_use, uint64_t *blocks);
void brisk__guard_regions(brisk_region_fn fn, void *arg); /* the pool, once made */
void brisk__guard_fork_lock(void);
void brisk__guard_fork_unlock(void);

#pragma GCC visibility pop
#endif /* BRISK_GUARD_H */
