/* Thread caches (thread_cache.c): the per-thread free lists that the fast paths
 * pop and push, and the thread cache's state, owned by its thread (no lock; the
 * gate below orders it with the purge tick). brisk__registry_lock (rank
 * REGISTRY) guards the thread registry and the heap records. */

#ifndef BRISK_THREAD_CACHE_H
#define BRISK_THREAD_CACHE_H
#include "small.h"

#pragma GCC visibility push(hidden)

/* A thread-cache list. It keeps the room left (max - count) rather than the count,
 * so that free's bound check is one decrement and a sign test. */
typedef struct brisk_tlist_s {
  void *head;
  int32_t room; /* max - count: below 0, free spills */
  uint32_t max; /* 0 while the cache is not live */
} brisk_tlist_t;

static inline uint32_t brisk__tl_count(const brisk_tlist_t *l) { return (uint32_t)((int64_t)l->max - l->room); }

/* NEW: no cache yet. INIT: being set up (allocations from pthread_setspecific
 * come from the orphan spans). UNPLACED: registered, but NUMA discovery was
 * still loading when the thread gave up waiting for it: it has no small heap,
 * every allocation comes from the orphan spans and every free goes to the
 * block's owner, so that the thread never holds memory of a node that is not
 * its own, until the slots are published and it becomes LIVE. DEAD: the thread
 * has exited (later TLS destructors are served as in INIT). Only a LIVE thread
 * has a small heap. */
typedef enum { BRISK_TC_NEW = 0, BRISK_TC_LIVE, BRISK_TC_INIT, BRISK_TC_UNPLACED, BRISK_TC_DEAD } brisk_tc_state_t;

typedef struct brisk_tcache_s {
  union {
    brisk_tlist_t list[BRISK_CLASSES];
    /* Class 0 is never a size's class once brisk has started (before, its empty
     * list sends malloc to the slow path), so the room and max of list[0] hold
     * the thread's small heap: free() compares it with the owner of every
     * block's span, and here it shares a cache line with the lists and costs no
     * extra address arithmetic. */
    struct {
      void *class0_head;   /* always NULL */
      brisk_sheap_t *heap; /* the spans this thread owns; NULL unless LIVE */
    };
  };
  /* Bytes left before the next sampled allocation (alloc.c): malloc subtracts
   * each small request and takes the sampling path below zero. Zero at first,
   * so that a thread's first malloc arms it. */
  int64_t sample_left;
  /* below: slow path only */
  uint64_t sample_rng; /* the sampler's generator (xorshift) */
  int state;
  unsigned node;      /* NUMA slot of the memory in this cache (refreshed on refill) */
  uint32_t slow_events;
  uint64_t last_scavenge_ms;
  size_t budget_used; /* sum over classes of max * size */
  struct brisk_span_s *large_spare; /* the last freed large run (large.c) */
  uint8_t booting;    /* this thread is loading the NUMA topology */
  uint8_t active[BRISK_CLASSES]; /* slow-path activity since the last scavenge */
  struct brisk_tnode_s *reg; /* the thread's registry node (thread_cache.c); NULL until registered */
  /* Its large blocks' counts (counters.h), in reg; NULL while it has no node. */
  struct brisk_large_counts_s *large_counts;
  /* The gate (see "Idle threads" in thread_cache.c): who may touch the state
   * that only slow paths use: the small heap's spans, inbox and kept spans,
   * and large_spare. Two flags, each with one writer, so that the owner's
   * side is a plain store and load (the purge tick pays for the fence). */
  uint8_t gate_owner;  /* the thread itself is in a slow path (written by it alone) */
  uint8_t gate_purger; /* the purge tick wants in or is in (written by the tick alone) */
  uint32_t gate_entries; /* the owner's entries, under the gate: the purge tick's sign of life */
} brisk_tcache_t;

bool brisk__gate_wait(brisk_tcache_t *tc);

/* The calling thread's own cache tc: its slow path enters the gate (waiting
 * out the purge tick, which holds it for one heap's give-back). False when the
 * thread is in already (a nested slow path): then it must not leave. No
 * read-modify-write: a store of its flag, then a load of the tick's, which
 * the tick orders with a process-wide barrier (brisk__os_membarrier) between
 * its own store and load. */
static inline bool brisk__gate_enter(brisk_tcache_t *tc) {
#ifdef BRISK_DEBUG
  brisk_assert(brisk__locks_held == 0 && "a gate is entered with no lock held");
#endif
  if (tc->gate_owner) return false;
  __atomic_store_n(&tc->gate_owner, (uint8_t)1, __ATOMIC_RELAXED);
  __atomic_signal_fence(__ATOMIC_SEQ_CST); /* the compiler keeps the store before the load */
  if (brisk_unlikely(__atomic_load_n(&tc->gate_purger, __ATOMIC_ACQUIRE))) return brisk__gate_wait(tc);
  __atomic_store_n(&tc->gate_entries, tc->gate_entries + 1, __ATOMIC_RELAXED); /* the tick reads it racily */
  return true;
}

static inline void brisk__gate_leave(brisk_tcache_t *tc, bool entered) {
  if (!entered) return;
  brisk_assert(tc->gate_owner == 1);
  __atomic_store_n(&tc->gate_owner, (uint8_t)0, __ATOMIC_RELEASE);
}

extern __thread brisk_tcache_t brisk__tc;
static inline bool brisk__boot_active(void) { return brisk_unlikely(brisk__tc.booting); }
void brisk__tcache_global_init(void);
void brisk__tcache_after_fork_child(void);
void *brisk__tcache_alloc_slow(size_t size);
void brisk__tcache_free_slow(brisk_tcache_t *tc, unsigned cls);
/* free() of a block of a span that another heap owns. */
/* suspect: the block's free hint was set, and the caller cannot see whether it
 * is free already: its owner checks. */
void brisk__tcache_free_remote(brisk_tcache_t *tc, void *p, uint64_t e, bool suspect);
void brisk__tcache_flush(brisk_tcache_t *tc); /* everything back to the spans and owners */
bool brisk__tcache_contains(brisk_tcache_t *tc, unsigned cls, void *obj);
void brisk__tcache_registry_stats(uint64_t *bytes, uint64_t per_class_objs[BRISK_CLASSES],
                                  uint64_t *live, uint64_t *seen);
/* Lock acquisitions and contended ones: the exited threads' plus the live ones'. */
/* mine: the calling thread's counts when its report began, counted for it instead
 * of its live ones (a report's own locks are not the program's). */
void brisk__tcache_lock_stats(uint64_t *acquired, uint64_t *contended, const brisk_lock_counts_t *mine);
/* The large blocks in use, summed over the threads' records and the shared one (counters.h). */
void brisk__tcache_large_counts(struct brisk_large_counts_s *sum);
/* Threads that ended without brisk's TLS destructor (see "Registry" in
 * thread_cache.c) are counted out and their small heaps retired: the purge tick's
 * and brisk_trim's part. */
void brisk__tcache_reap(void);
/* The purge tick's: threads that entered no slow path for RECLAIM_IDLE_DELAYS
 * purge delays give back their heap's inbox, kept spans and spare large block. */
void brisk__tcache_reclaim_idle(uint64_t now, uint64_t delay);
uint64_t brisk__tcache_reclaims(void); /* give-backs done so far (tests) */
extern brisk_lock_t brisk__registry_lock;

#pragma GCC visibility pop
#endif /* BRISK_THREAD_CACHE_H */
