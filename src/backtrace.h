/* The stack walk of the heap profiler: return addresses of the calling thread,
 * innermost first. A layer of its own under prof.c; it calls only libgcc's FDE
 * lookup and unwinder and glibc's dl_iterate_phdr. */
#ifndef BRISK_BACKTRACE_H
#define BRISK_BACKTRACE_H
#include <stdint.h>

/* Fills pcs[0..max) with the return addresses of the frames above the caller's
 * own (pcs[0] is where the caller of brisk__unwind will return to); returns how
 * many. Never calls malloc: its rule table and kept walks are metadata
 * (meta.c's lock, a leaf, is the only brisk lock it takes, when it makes or
 * grows them); libgcc may allocate the first time it looks at an object's
 * tables (the caller makes such allocations plain ones). */
unsigned brisk__unwind(uintptr_t *pcs, unsigned max);

/* The same stack from libgcc's unwinder alone: what brisk__unwind falls back to,
 * and what the tests compare it with. */
unsigned brisk__unwind_slow(uintptr_t *pcs, unsigned max);

/* In the child of a fork from a multithreaded process: another thread may have
 * been inside dl_iterate_phdr, whose lock glibc does not reset, so the walks
 * no longer ask the loader for its count of closed objects; they keep no rules
 * and read each frame's from the unwind tables (libgcc's lookup takes no lock). */
void brisk__backtrace_after_fork_child(void);

/* Frame rules read from the unwind tables so far, and walks that fell back to
 * libgcc's unwinder (for the tests and the statistics of the profiler). */
void brisk__unwind_counts(uint64_t *rules, uint64_t *fallbacks);

/* Walks that were a kept walk's frames, checked against the stack (see
 * "Recent walks" in backtrace.c). */
uint64_t brisk__unwind_recalled(void);
#endif
