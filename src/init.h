/* Start-up, fork, purging (init.c): brisk__ensure_init for every entry point,
 * and the purge tick called from slow paths. (The process-wide counters are
 * counters.h's.) */

#ifndef BRISK_INIT_H
#define BRISK_INIT_H
#include "base.h"

#pragma GCC visibility push(hidden)

extern atomic_int brisk__init_state; /* 0 none, 1 running, 2 done */
brisk_cold void brisk__init_slow(void);
static inline void brisk__ensure_init(void) {
  if (brisk_unlikely(atomic_load_explicit(&brisk__init_state, memory_order_acquire) != 2))
    brisk__init_slow();
}
/* Called from slow paths: gives memory back once it has been idle long enough. */
void brisk__purge_tick(void);
/* The page heap reports how much idle memory it holds (and a thread cache how
 * much it has sent to other threads' inboxes, which a parked owner never takes). */
void brisk__purge_note_idle(uint64_t idle_bytes);
size_t brisk__purge_all(void);
void brisk__purge_start(void); /* the purge thread, if not started yet */

#pragma GCC visibility pop
#endif /* BRISK_INIT_H */
