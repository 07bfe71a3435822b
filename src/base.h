/* The base of every layer: compiler hints and the debug assert, the sizes and
 * constants all layers share, the kinds of mapping, and the lock type with its
 * ranks ("Locks" below: the lock order, written once). Every other header
 * includes it; each layer's own declarations are in the header of its .c.
 *
 * Layers, from the program down. Each .c includes its own header and those of
 * the layers below it; an include of a layer above is marked "upward" where it
 * is made (the purge tick and start-up state that slow paths below read or
 * call, and NUMA discovery, which adds pools to the heaps above it).
 *   alloc.c          public entry points and the malloc/free fast paths
 *   init.c           start-up, fork, the purge tick and its thread
 *   metrics.c        the live-metrics file; stats.c: statistics and residency
 *   sample.c         the samplers' countdowns; guard.c: guarded blocks
 *   thread_cache.c   per-thread free lists (owned by their thread, no locks)
 *   small.c          spans of the size classes, each owned by one thread's small
 *                    heap; remote frees reach the owner through its inbox
 *   large.c          blocks above the small limit: runs of the page heap, or an
 *                    mmap each for the largest
 *   prof.c           heap-profile records; backtrace.c: their stack walk
 *   page_heap.c      spans of pages carved from sbrk'd (or mmap'd) regions
 *   numa.c           topology, pools per node, binding
 *   block.h          the free-block links; size_class.c: the class table
 *   meta.c boot.c    span descriptors and other metadata, never from malloc;
 *                    the bootstrap area (blocks of the thread loading the topology)
 *   pagemap.c        address -> span map, read without locks
 *   options.c        BRISK_* options, read once
 *   os.c             every system call
 *   counters.c       the process-wide counters every layer adds to
 * Names: public brisk_*, cross-file internal brisk__*, types brisk_*_t. */

#ifndef BRISK_BASE_H
#define BRISK_BASE_H

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "brisk.h"

/* Everything declared in brisk's internal headers is internal to the library:
 * hidden, so that the fast paths reach brisk's own globals directly rather than
 * through the GOT. Each header pushes and pops it. */
#pragma GCC visibility push(hidden)

#define brisk_likely(x) __builtin_expect(!!(x), 1)
#define brisk_unlikely(x) __builtin_expect(!!(x), 0)
#define brisk_noinline __attribute__((noinline))
#define brisk_always_inline inline __attribute__((always_inline))
/* Out of line, and opaque to the caller's optimiser: a cold path that only
 * aborts stays a plain jump (GCC would otherwise see it never returns and give
 * the hot caller a stack frame for the call). */
#if defined(__GNUC__) && !defined(__clang__)
#define brisk_opaque __attribute__((noipa))
#else
#define brisk_opaque __attribute__((noinline))
#endif
#define brisk_cold __attribute__((cold, noinline))
#define BRISK_CACHE_LINE 64

__attribute__((noreturn, cold)) void brisk__assert_fail(const char *c, const char *file, int line);
#ifdef BRISK_DEBUG
#define brisk_assert(c) ((c) ? (void)0 : brisk__assert_fail(#c, __FILE__, __LINE__))
#else
#define brisk_assert(c) ((void)0)
#endif

/* ------------------------------------------------------------------------------
   Sizes
------------------------------------------------------------------------------ */

/* A brisk page is the unit of spans and of the page map. 8 KiB keeps the map small
 * while a span of the smallest classes still holds hundreds of objects. It is not
 * the OS page: that is read at run time (brisk__os_page) and only matters when
 * memory is given back. */
#define BRISK_PAGE_SHIFT 13
#define BRISK_PAGE_SIZE ((size_t)1 << BRISK_PAGE_SHIFT)

/* Every block is 16-byte aligned (max_align_t on x86-64 and aarch64). */
#define BRISK_ALIGN 16

/* Small classes: 16-byte steps up to 128 B, then 8 classes per doubling, so the
 * rounding waste of a request of 128 B or more stays under 1/8. 64 KiB keeps the
 * 4-64 KiB buffers that servers churn in thread caches. */
#define BRISK_SMALL_MAX ((size_t)64 * 1024)
#define BRISK_CLASS_STEP_MAX 128 /* the end of the 16-byte steps */
#define BRISK_CLASSES 81         /* class 0 is never used; 1..80 */

/* NUMA pools (numa.c): one set per memory node, named by its slot. */
#define BRISK_MAX_NODES 64        /* pools; more memory nodes than this share them */

static inline size_t brisk__align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

/* ------------------------------------------------------------------------------
   Mappings: the kinds of memory brisk maps, named in /proc/PID/maps and listed
   by each layer for the statistics' residency walk (stats.c). The values are
   the public brisk_region_kind_t's.
------------------------------------------------------------------------------ */
/* What a mapping holds: its name in /proc/PID/maps (os.c, "Mapping names"). */
typedef enum brisk_vma_e {
  BRISK_VMA_HEAP = 0, /* page-heap chunks (sbrk'd or mmap'd): "brisk:heap" */
  BRISK_VMA_LARGE,    /* a large block mapped alone: "brisk:large" */
  BRISK_VMA_META,     /* metadata, page-map leaves, the bootstrap area: "brisk:meta" */
  BRISK_VMA_GUARD,    /* the guarded blocks' pool: "brisk:guard" */
} brisk_vma_t;
_Static_assert(BRISK_VMA_HEAP == (int)BRISK_REGION_HEAP && BRISK_VMA_LARGE == (int)BRISK_REGION_LARGE &&
                   BRISK_VMA_META == (int)BRISK_REGION_META && BRISK_VMA_GUARD == (int)BRISK_REGION_GUARD,
               "brisk_vma_t is brisk_region_kind_t");
/* A layer's listing of the mappings it holds (brisk__*_regions): fn is called
 * for each, under the layer's lock, so that it may measure the range (mincore)
 * while nothing can unmap it; it must take no lock. */
typedef void (*brisk_region_fn)(void *arg, uintptr_t start, size_t len, brisk_vma_t kind);

/* ------------------------------------------------------------------------------
   Locks: a word of three states on a futex (Drepper's "Futexes are tricky",
   mutex 2). Taking a free lock is one compare-and-swap and giving it back one
   exchange, inline, with no call into libc; a thread that finds the lock taken
   spins a little (the sections these locks guard are short, and the holder is
   usually running on another core) and then sleeps in the kernel, so that a
   2-core machine never burns a core on a lock whose holder was preempted. A
   zero word is a free lock (the arenas and orphans rely on it: they sit in
   .bss), needs no initialisation and no allocation, and every lock is
   registered with the fork handler in init.c. The slow paths (the wait and the
   wake-up: system calls) are in os.c.

   The lock order, written once: a thread takes a lock only while it holds none
   of the same or a later rank (so never two orphan class locks at once), and
   BRISK_DEBUG builds check it at every acquisition. The fork handler takes all
   of them in this order, through brisk__lock_all_fork, outside the check.
------------------------------------------------------------------------------ */
typedef enum brisk_lock_rank_e {
  BRISK_RANK_REGISTRY = 0, /* thread registry and heap records (thread_cache.c, small.c) */
  BRISK_RANK_ORPHAN,       /* an orphan heap's class lock (small.c) */
  BRISK_RANK_HEAP,         /* a page-heap arena (page_heap.c; one at a time, but for the
                              statistics' walk and fork) */
  BRISK_RANK_HEAP_GROW,    /* what the page heap's arenas share when they grow (page_heap.c) */
  BRISK_RANK_BOOT,         /* the bootstrap area (boot.c) */
  BRISK_RANK_GUARD,        /* the guarded blocks' slots (guard.c) */
  BRISK_RANK_PROF,         /* the heap profile's records and stacks (prof.c) */
  BRISK_RANK_LARGE,        /* the list of large blocks mapped alone (large.c) */
  BRISK_RANK_META,         /* metadata (meta.c) */
  BRISK_RANK_PAGEMAP,      /* page-map leaves (pagemap.c) */
} brisk_lock_rank_t;

typedef enum brisk_lock_state_e {
  BRISK_LOCK_FREE = 0, /* a zeroed lock is free */
  BRISK_LOCK_TAKEN,    /* held, and no thread sleeps on it */
  BRISK_LOCK_WAITED,   /* held, and threads may sleep on it: its release wakes one */
} brisk_lock_state_t;

typedef struct brisk_lock_s {
  _Atomic uint32_t state; /* brisk_lock_state_t */
  uint8_t rank;           /* brisk_lock_rank_t */
} brisk_lock_t;
#define BRISK_LOCK_INIT(rank) {BRISK_LOCK_FREE, (rank)}

/* The slow paths (os.c): wait until the lock is ours (it was found taken), and
 * wake one sleeper (it was released in state WAITED). */
void brisk__lock_wait(brisk_lock_t *l);
void brisk__lock_wake(brisk_lock_t *l);

static inline bool brisk__lock_take(brisk_lock_t *l) {
  uint32_t free_ = BRISK_LOCK_FREE;
  return atomic_compare_exchange_strong_explicit(&l->state, &free_, BRISK_LOCK_TAKEN, memory_order_acquire,
                                                 memory_order_relaxed);
}
static inline void brisk__lock_give(brisk_lock_t *l) {
  uint32_t was = atomic_exchange_explicit(&l->state, BRISK_LOCK_FREE, memory_order_release);
  brisk_assert(was != BRISK_LOCK_FREE && "a lock released that was not held");
  if (brisk_unlikely(was == BRISK_LOCK_WAITED)) brisk__lock_wake(l);
}

#ifdef BRISK_DEBUG
extern __thread uint32_t brisk__locks_held; /* bit r: a lock of rank r is held */
#endif

/* Every acquisition is counted, and so is every one that found the lock taken
 * (a failed trylock before the wait): figures that do not depend on the core
 * count, per thread and without atomics; thread_cache.c sums the live threads'
 * and keeps the exited threads' (brisk_stats_t.lock_acquired/_contended). */
typedef struct brisk_lock_counts_s {
  uint64_t acquired, contended;
} brisk_lock_counts_t;
extern __thread brisk_lock_counts_t brisk__lock_counts;

static inline void brisk__lock(brisk_lock_t *l) {
#ifdef BRISK_DEBUG
  brisk_assert((brisk__locks_held >> l->rank) == 0 && "lock order");
  brisk__locks_held |= 1u << l->rank;
#endif
  if (brisk_unlikely(!brisk__lock_take(l))) {
    brisk__lock_counts.contended++;
    brisk__lock_wait(l);
  }
  brisk__lock_counts.acquired++;
}
/* Without waiting: true if taken (and counted). */
static inline bool brisk__trylock(brisk_lock_t *l) {
#ifdef BRISK_DEBUG
  brisk_assert((brisk__locks_held >> l->rank) == 0 && "lock order");
#endif
  if (!brisk__lock_take(l)) return false;
#ifdef BRISK_DEBUG
  brisk__locks_held |= 1u << l->rank;
#endif
  brisk__lock_counts.acquired++;
  return true;
}
static inline void brisk__unlock(brisk_lock_t *l) {
#ifdef BRISK_DEBUG
  brisk__locks_held &= ~(1u << l->rank);
#endif
  brisk__lock_give(l);
}
/* Several locks of one rank taken together, in a fixed order (page_heap.c's
 * arenas, through brisk__lock_fork): the check sees them as one. */
static inline void brisk__lock_rank_enter(brisk_lock_rank_t rank) {
#ifdef BRISK_DEBUG
  brisk_assert((brisk__locks_held >> rank) == 0 && "lock order");
  brisk__locks_held |= 1u << rank;
#else
  (void)rank;
#endif
}
static inline void brisk__lock_rank_leave(brisk_lock_rank_t rank) {
#ifdef BRISK_DEBUG
  brisk__locks_held &= ~(1u << rank);
#else
  (void)rank;
#endif
}
/* The fork handler's: every lock, in rank order, several of one rank. */
static inline void brisk__lock_fork(brisk_lock_t *l) {
  if (!brisk__lock_take(l)) brisk__lock_wait(l);
}
static inline void brisk__unlock_fork(brisk_lock_t *l) { brisk__lock_give(l); }

#pragma GCC visibility pop
#endif /* BRISK_BASE_H */
