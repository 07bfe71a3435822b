/* Heap profiles (prof.c): the sampled allocations that are still live, by call
 * stack, written in gperftools' heap profile format. alloc.c decides which
 * allocations are sampled (its countdown); prof.c keeps their records.
 *
 * prof_lock (rank PROF) guards the stack table and the records. */

#ifndef BRISK_PROF_H
#define BRISK_PROF_H
#include "base.h"

#pragma GCC visibility push(hidden)

typedef struct brisk_prof_rec_s brisk_prof_rec_t;
/* Whether the profile's records may be made now: BRISK_PROF is on and this
 * thread is not capturing a stack already (the unwinder's own allocations are
 * plain ones). */
bool brisk__prof_ready(void);
/* A record of a sampled allocation of size bytes made by the caller at site,
 * its stack captured here (outside every brisk lock); NULL if none could be made. */
brisk_prof_rec_t *brisk__prof_record(size_t size, const void *site);
void brisk__prof_forget(brisk_prof_rec_t *rec); /* the block is freed; rec may be NULL */
void brisk__prof_cancel(brisk_prof_rec_t *rec); /* the allocation failed: never sampled */
void brisk__prof_at_exit(void);                 /* BRISK_PROF_FILE */
void brisk__prof_poll(void);                    /* BRISK_PROF_TRIGGER, at a purge tick */
void brisk__prof_fork_lock(void);
void brisk__prof_fork_unlock(void);

#pragma GCC visibility pop
#endif /* BRISK_PROF_H */
