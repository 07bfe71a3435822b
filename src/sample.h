/* The samplers' countdown (sample.c): which requests the guard pages and the
 * heap profile take. Used by alloc.c's slow paths; it calls nothing above it,
 * and reads one thing from above: init.c's start-up state (nothing is sampled
 * before brisk has started). */
#ifndef BRISK_SAMPLE_H
#define BRISK_SAMPLE_H
#include "options.h"
#include "thread_cache.h"

/* The heap profile's mean gap in bytes; 0 when BRISK_PROF is off. */
static inline size_t brisk__prof_mean(void) { return brisk__opt.prof ? brisk__opt.prof_sample : 0; }

/* The countdown went below zero for a request of size bytes: whether it is
 * sampled, with the next gap drawn (0: brisk has not started or is loading the
 * topology; the block is then a plain one). */
bool brisk__sample_due(brisk_tcache_t *tc, size_t size);

/* Whether the sampler of mean own (0: off) takes a request of size bytes that
 * the countdown picked, so that its own rate stays exact. */
bool brisk__sampler_takes(brisk_tcache_t *tc, size_t own, size_t size);
#endif
