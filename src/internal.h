/* brisk internal declarations, shared by every layer.
 *
 * Layers, from the program down:
 *   alloc.c        public entry points and the malloc/free fast paths
 *   thread_cache.c per-thread free lists (owned by their thread, no locks)
 *   small.c        spans of the size classes, each owned by one thread's small
 *                  heap; remote frees reach the owner through its inbox
 *   large.c        blocks above the small limit: runs of the page heap, or an
 *                  mmap each for the largest
 *   page_heap.c    spans of pages carved from sbrk'd (or mmap'd) regions
 *   pagemap.c      address -> span map, read without locks
 *   meta.c         span descriptors and other metadata, never from malloc
 *   options.c os.c stats.c init.c
 * Names: public brisk_*, cross-file internal brisk__*, types brisk_*_t. */
#ifndef BRISK_INTERNAL_H
#define BRISK_INTERNAL_H

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "brisk.h"

/* Everything declared below is internal to the library: hidden, so that the
 * fast paths reach brisk's own globals directly rather than through the GOT. */
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

/* Sizes up to this are classed through a table; above, by arithmetic. */
#define BRISK_CLASS_TABLE_MAX 1024

/* 32 bytes, so free() indexes the table with a shift. */
typedef struct brisk_class_info_s {
  uint32_t size;       /* object size */
  uint32_t batch;      /* objects moved between a thread cache and spans at once */
  uint32_t span_pages; /* pages in a span of this class */
  uint32_t span_objs;  /* objects in such a span */
  uint64_t inv;        /* the inverse mod 2^64 of size's odd part (brisk__obj_index) */
  uint32_t rot;        /* size's trailing zero bits */
  uint32_t limit;      /* span_objs * size: where a span's objects end */
} brisk_class_info_t;

extern brisk_class_info_t brisk__classes[BRISK_CLASSES];
extern uint8_t brisk__class_table[BRISK_CLASS_TABLE_MAX / 16 + 1];

void brisk__size_class_init(void);
unsigned brisk__size_to_class_slow(size_t size); /* any size <= BRISK_SMALL_MAX */
/* The smallest class whose size is >= size and a multiple of align (0 if none). */
unsigned brisk__size_to_class_aligned(size_t size, size_t align);

/* For size <= BRISK_SMALL_MAX. Above the table: 8 classes per doubling, the
 * class read off the top four bits of size - 1. */
static inline unsigned brisk__size_to_class(size_t size) {
  if (brisk_likely(size <= BRISK_CLASS_TABLE_MAX)) return brisk__class_table[(size + 15) >> 4];
  size_t s = size - 1;
  unsigned k = 63u - (unsigned)__builtin_clzll(s);
  return BRISK_CLASS_STEP_MAX / 16 + (k - 7) * 8 + ((unsigned)(s >> (k - 3)) & 7) + 1;
}

/* The index of the object at byte offset off of a span of class ci, or a value
 * of span_objs or more when off is not an object's start or lies past the last:
 * the exact-division test of Granlund and Montgomery. For off = q * size the
 * product with the odd part's inverse is q << rot, and rotating it back gives
 * q; for any other off the rotated product exceeds 2^64 / size, which is more
 * than span_objs. One multiply, one rotate, one compare in free(). */
static inline uint64_t brisk__obj_index(const brisk_class_info_t *ci, uintptr_t off) {
  uint64_t x = (uint64_t)off * ci->inv;
  return (x >> ci->rot) | (x << ((64 - ci->rot) & 63));
}

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
   Spans and the page map
------------------------------------------------------------------------------ */

typedef enum brisk_span_state_e {
  BRISK_SPAN_FREE = 1,  /* in the page heap's free lists */
  BRISK_SPAN_SMALL,     /* carved into objects of one class */
  BRISK_SPAN_LARGE,     /* one large block in use (from the page heap, or mapped alone) */
  BRISK_SPAN_SPARE,     /* a freed large block that its thread keeps for the next request */
  BRISK_SPAN_BOOT,      /* the bootstrap area that serves allocations made while
                           brisk itself loads the NUMA topology (numa.c) */
  BRISK_SPAN_FREEING,   /* a large block whose free has claimed it and is on its way
                           to the heap (not FREE yet: no neighbour may coalesce it) */
  BRISK_SPAN_GUARD,     /* the pool of guarded blocks (guard.c); never a free run */
} brisk_span_state_t;

struct brisk_sheap_s;

/* Where a SMALL span sits in its owner's lists (small.c). */
typedef enum brisk_slist_e {
  BRISK_SLIST_NONE = 0,
  BRISK_SLIST_PARTIAL, /* has free objects: on its free list or above bump */
  BRISK_SLIST_FULL,    /* every object is out */
} brisk_slist_t;

/* A span is a run of pages. Who may write which field:
 *  - start, npages, state: the page heap (heap lock), or large.c for a block
 *    mapped alone, set before the span is published in the page map; a large
 *    block's npages also changes when its owner grows or shrinks it in place
 *    (realloc, under the heap lock);
 *  - freelist, nfree, bump, used, list, kept, next/prev while SMALL: the span's
 *    owner (small.c): the thread whose small heap it is, without a lock, or for
 *    an orphan heap's span whoever holds that orphan's class lock;
 *  - owner: the owning thread (when it gives the span away), or whoever takes
 *    the span from an orphan, under the orphan's class lock; read by any free();
 *  - node: set when the page heap or large.c hands the span out (their locks);
 *  - cls, obj_size, capacity: written once when the span becomes SMALL, before
 *    its page-map entries carry the class; slow paths read them without a lock. */
typedef struct brisk_span_s {
  /* First cache line: read by every thread's free() and remote-free path, and
   * written only when the span changes hands or state, so that it stays shared
   * in every core's cache while the owner writes the second line. */
  uintptr_t start;
  size_t npages;          /* brisk pages; for large spans, bytes / BRISK_PAGE_SIZE rounded up */
  uint8_t state;          /* brisk_span_state_t */
  uint8_t cls;            /* size class; 0 for page-heap and large spans */
  uint8_t purged;         /* FREE: every page was given back with madvise */
  uint8_t node;           /* the NUMA pool (slot) the span's memory belongs to; fixed
                             while the span is in use, so readers need no lock */
  uint8_t alone;          /* LARGE: mapped by itself (map_size bytes), not heap pages */
  uint32_t obj_size;
  uint32_t capacity;
  _Atomic(struct brisk_sheap_s *) owner;
  /* large spans */
  size_t map_size;        /* bytes of the mapping (alone) */
  size_t req_size;        /* the size last asked for (large) */
  struct brisk_prof_rec_s *prof; /* LARGE: the heap profile's record of this block, or
                                    NULL (prof.c; written by the block's allocating and
                                    freeing calls only) */
  /* Second cache line: the owner's (small spans) or the heap lock's (free runs). */
  void *freelist __attribute__((aligned(BRISK_CACHE_LINE))); /* objects returned to this span */
  uintptr_t bump;         /* objects at or above bump were never handed out */
  uint32_t used;          /* objects out of the span: in use, in caches or in inboxes */
  uint32_t nfree;         /* objects on freelist */
  uint8_t list;           /* SMALL: brisk_slist_t */
  uint8_t kept;           /* SMALL: empty, kept by its thread heap for the next refill */
  uint64_t idle_since_ms; /* FREE: when it became so */
  struct brisk_span_s *next, *prev;
} brisk_span_t;

/* The owner, for free()'s test "is this span mine": a plain load. Only the
 * owner ever stores its own heap there or replaces it, so the test is exact for
 * the caller whatever it reads otherwise; and unlike an atomic load, which GCC
 * treats as a barrier, it lets the fast path keep the keys it loaded in
 * registers. */
static inline const struct brisk_sheap_s *brisk__span_owner_peek(const brisk_span_t *s) {
  return *(struct brisk_sheap_s *const *)&s->owner;
}

/* The page map is a two-level radix tree over the 48-bit address space: a root of
 * 2^17 pointers (in .bss, touched sparsely) to leaves of 2^18 entries, each leaf
 * covering 2 GiB. Leaves are created once and never freed, so readers need no
 * lock; writers publish an entry after the span is filled in.
 *
 * An entry is the span pointer (48 bits); for the pages of a SMALL span it also
 * carries the size class (bits 48-55), the page's index in its span (bits
 * 56-63) and the span's NUMA slot in the pointer's low 6 bits (descriptors are
 * 64-byte aligned). With those, free() finds the object's class, span start and
 * node from the entry and the class table alone, without touching the span
 * descriptor. */
#define BRISK_VA_BITS 48
#define BRISK_PM_LEAF_BITS 18
#define BRISK_PM_ROOT_BITS (BRISK_VA_BITS - BRISK_PAGE_SHIFT - BRISK_PM_LEAF_BITS)
#define BRISK_PM_PTR_MASK (((uint64_t)1 << BRISK_VA_BITS) - 1)
#define BRISK_PM_MAX_INDEX 255

typedef struct brisk_pm_leaf_s {
  _Atomic uint64_t entry[(size_t)1 << BRISK_PM_LEAF_BITS];
} brisk_pm_leaf_t;

extern _Atomic(brisk_pm_leaf_t *) brisk__pagemap_root[(size_t)1 << BRISK_PM_ROOT_BITS];

/* The page number of p's low 48 bits: the bits above are dropped (a shift up
 * and down, no wider than the plain shift plus the root index's mask it saves).
 * An address with any of them set therefore finds the entry of a low address,
 * and a caller that computes where the span starts from this page number, never
 * from p itself, sees p lie 2^48 or more past it and rejects it. */
static inline uintptr_t brisk__page_of(const void *p) {
  return (uintptr_t)p << (64 - BRISK_VA_BITS) >> (64 - BRISK_VA_BITS + BRISK_PAGE_SHIFT);
}

/* 0 for an address brisk never used. */
static inline uint64_t brisk__pagemap_entry(const void *p) {
  uintptr_t page = brisk__page_of(p);
  uintptr_t ri = page >> BRISK_PM_LEAF_BITS;
  brisk_pm_leaf_t *leaf = atomic_load_explicit(&brisk__pagemap_root[ri], memory_order_acquire);
  if (brisk_unlikely(leaf == NULL)) return 0;
  return atomic_load_explicit(&leaf->entry[page & (((uintptr_t)1 << BRISK_PM_LEAF_BITS) - 1)],
                              memory_order_acquire);
}
#define BRISK_PM_NODE_MASK ((uint64_t)63)
static inline brisk_span_t *brisk__pm_span(uint64_t e) {
  return (brisk_span_t *)(uintptr_t)(e & BRISK_PM_PTR_MASK & ~BRISK_PM_NODE_MASK);
}
static inline unsigned brisk__pm_node(uint64_t e) { return (unsigned)(e & BRISK_PM_NODE_MASK); }
static inline unsigned brisk__pm_class(uint64_t e) { return (unsigned)(e >> 48) & 0xff; }
static inline uintptr_t brisk__pm_index(uint64_t e) { return (uintptr_t)(e >> 56); }
static inline brisk_span_t *brisk__pagemap_get(const void *p) { return brisk__pm_span(brisk__pagemap_entry(p)); }

/* Set the entry of one page whose leaf exists (the page heap ensured the leaves of
 * every region it added): a plain store, for the heap's run boundaries. */
static inline void brisk__pagemap_put(uintptr_t page, brisk_span_t *span) {
  brisk_pm_leaf_t *leaf = atomic_load_explicit(&brisk__pagemap_root[page >> BRISK_PM_LEAF_BITS], memory_order_relaxed);
  atomic_store_explicit(&leaf->entry[page & (((uintptr_t)1 << BRISK_PM_LEAF_BITS) - 1)],
                        (uint64_t)(uintptr_t)span, memory_order_release);
}
/* Set the entries of pages [first, first+n) to span; false if a leaf could not be
 * mapped (out of memory). */
bool brisk__pagemap_set(uintptr_t first_page, size_t n, brisk_span_t *span);
/* The same for the pages of a SMALL span of class cls, with class and index (a
 * page past BRISK_PM_MAX_INDEX gets a plain entry: no object lies there). */
void brisk__pagemap_set_small(uintptr_t first_page, size_t n, brisk_span_t *span, unsigned cls);
/* Make sure leaves exist for a range before it is published (so set cannot fail). */
bool brisk__pagemap_ensure(uintptr_t first_page, size_t n);
void brisk__pagemap_fork_lock(void);
void brisk__pagemap_fork_unlock(void);
void brisk__pagemap_regions(brisk_region_fn fn, void *arg); /* its leaves (the root is static data) */

/* ------------------------------------------------------------------------------
   Locks: pthread mutexes, statically initialised, so they need no allocation and
   sleep under contention instead of spinning on a 2-core machine. Every lock is
   registered with the fork handler in init.c.

   The lock order, written once: a thread takes a lock only while it holds none
   of the same or a later rank (so never two orphan class locks at once), and
   BRISK_DEBUG builds check it at every acquisition. The fork handler takes all
   of them in this order, through brisk__lock_all_fork, outside the check.
------------------------------------------------------------------------------ */
typedef enum brisk_lock_rank_e {
  BRISK_RANK_REGISTRY = 0, /* thread registry and heap records (thread_cache.c, small.c) */
  BRISK_RANK_ORPHAN,       /* an orphan heap's class lock (small.c) */
  BRISK_RANK_HEAP,         /* the page heap (page_heap.c) */
  BRISK_RANK_BOOT,         /* the bootstrap area (numa.c) */
  BRISK_RANK_GUARD,        /* the guarded blocks' slots (guard.c) */
  BRISK_RANK_PROF,         /* the heap profile's records and stacks (prof.c) */
  BRISK_RANK_LARGE,        /* the list of large blocks mapped alone (large.c) */
  BRISK_RANK_META,         /* metadata (meta.c) */
  BRISK_RANK_PAGEMAP,      /* page-map leaves (pagemap.c) */
} brisk_lock_rank_t;

typedef struct brisk_lock_s {
  pthread_mutex_t mutex;
  uint8_t rank; /* brisk_lock_rank_t */
} brisk_lock_t;
#define BRISK_LOCK_INIT(rank) {PTHREAD_MUTEX_INITIALIZER, (rank)}

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
  if (brisk_unlikely(pthread_mutex_trylock(&l->mutex) != 0)) {
    brisk__lock_counts.contended++;
    pthread_mutex_lock(&l->mutex);
  }
  brisk__lock_counts.acquired++;
}
static inline void brisk__unlock(brisk_lock_t *l) {
#ifdef BRISK_DEBUG
  brisk__locks_held &= ~(1u << l->rank);
#endif
  pthread_mutex_unlock(&l->mutex);
}
/* The fork handler's: every lock, in rank order, several of one rank. */
static inline void brisk__lock_fork(brisk_lock_t *l) { pthread_mutex_lock(&l->mutex); }
static inline void brisk__unlock_fork(brisk_lock_t *l) { pthread_mutex_unlock(&l->mutex); }

/* ------------------------------------------------------------------------------
   OS layer (os.c): the only file that makes system calls; none is a
   cancellation point.
------------------------------------------------------------------------------ */
extern size_t brisk__os_page; /* the OS page size, read at start */
void brisk__os_init(void);
void *brisk__os_mmap_aligned(size_t size, size_t align, brisk_vma_t kind); /* NULL on failure */
void *brisk__os_mmap_guarded(size_t size);              /* PROT_NONE page on each side; NULL on failure */
bool brisk__os_vma_names_work(void); /* false once the kernel refused a mapping's name */
/* Residency (mincore), for the statistics. A range that is not mapped whole (a
 * block that mremap is moving right now) reads as not resident. */
#define BRISK_RESIDENT_WINDOW 4096 /* OS pages per mincore call: 4 KiB of vector on the stack */
typedef void (*brisk_resident_fn)(void *arg, uintptr_t start, size_t len);
/* One byte per OS page of [start, start + len) into vec (bit 0: resident); start
 * OS-page aligned, len at most BRISK_RESIDENT_WINDOW pages. */
bool brisk__os_mincore(uintptr_t start, size_t len, unsigned char *vec);
/* The runs of resident pages of vec (its page 0 at base) clipped to [from, end),
 * each handed to fn (may be NULL), in address order; their bytes. */
uint64_t brisk__os_vec_runs(const unsigned char *vec, uintptr_t base, uintptr_t from, uintptr_t end,
                            brisk_resident_fn fn, void *arg);
/* The resident bytes of [start, start + len), each run also handed to fn. */
uint64_t brisk__os_resident(uintptr_t start, size_t len, brisk_resident_fn fn, void *arg);
void brisk__os_munmap(void *p, size_t size);
void *brisk__os_mremap(void *p, size_t old_size, size_t new_size); /* NULL on failure */
void *brisk__os_sbrk(size_t size);                     /* NULL on failure */
bool brisk__os_sbrk_release(size_t size);             /* lower the break; false on failure */
bool brisk__os_move_to(void *from, size_t len, void *to); /* mremap onto a free place only; false if none */
void brisk__os_purge(void *p, size_t size);            /* madvise(DONTNEED), rounded inwards */
uint64_t brisk__os_now_ms(void);                       /* a cheap monotonic clock */
bool brisk__os_thread_start(void *(*fn)(void *), size_t stack, const char *name);
uint64_t brisk__os_random(void);
void brisk__os_write(int fd, const char *s, size_t n); /* all of it, or up to an error */
void brisk__os_write_err(const char *s, size_t n);     /* stderr */
int brisk__os_open_read(const char *path);             /* fd, or -1 */
long brisk__os_read(int fd, void *buf, size_t n);      /* bytes read, 0 at the end, -1 */
int brisk__os_create_file(const char *path);           /* for writing; -1 on failure */
void brisk__os_close(int fd);
long brisk__os_read_file(const char *path, char *buf, size_t cap); /* length read, or -1 */
void brisk__os_sleep_ms(uint64_t ms);
void brisk__os_yield(void);
/* A full memory barrier on every running thread of the process (membarrier's
 * private expedited command, registered at the first call); false where the
 * kernel lacks it. */
bool brisk__os_membarrier(void);
void brisk__os_wait_while(atomic_int *addr, int val, uint64_t ms); /* futex wait, bounded */
void brisk__os_wake_all(atomic_int *addr);
int brisk__os_pid(void);
/* Guard pages (guard.c). */
void *brisk__os_reserve(size_t size, size_t align);      /* PROT_NONE; NULL on failure */
bool brisk__os_open_pages(void *p, size_t size);         /* read-write */
void brisk__os_close_pages(void *p, size_t size);        /* PROT_NONE, contents dropped */
/* Called from the SIGSEGV handler with the fault address and the access (1
 * write, 0 read, -1 unknown); returns only if the fault is not brisk's. */
typedef void (*brisk_fault_fn)(uintptr_t addr, int access);
bool brisk__os_catch_faults(brisk_fault_fn fn);
void brisk__os_describe_code(const void *pc, char *buf, size_t n); /* for reports */
/* Heap profiles (prof.c). */
int brisk__os_create_file_err(const char *path); /* like brisk__os_create_file; -errno on failure */
bool brisk__os_file_exists(const char *path);
void brisk__os_remove_file(const char *path);
/* The live-metrics file (metrics.c). */
int brisk__os_create_rw(const char *path);             /* read-write, created or truncated; -1 */
bool brisk__os_truncate(int fd, size_t size);
void *brisk__os_map_shared(int fd, size_t size);       /* MAP_SHARED read-write; NULL on failure */
bool brisk__os_rename(const char *from, const char *to);
uint64_t brisk__os_wall_ms(void);                      /* CLOCK_REALTIME */
__attribute__((noreturn, cold)) void brisk__fatal(const char *call, const char *what, const void *p);
__attribute__((noreturn, cold)) void brisk__assert_fail(const char *c, const char *file, int line);
/* Format into buf without malloc: %s %zu %llu %p %d, width for numbers. Returns length. */
int brisk__snprintf(char *buf, size_t n, const char *fmt, ...);
int brisk__vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);
void brisk__printf_err(const char *fmt, ...);
/* Robust mutexes (os.c, its last block): the thread registry's sign of life. */
typedef enum {
  BRISK_ROBUST_HELD = 0,   /* its owner lives (or the caller is the owner) */
  BRISK_ROBUST_OWNER_DIED, /* its owner ended holding it; now unlocked and consistent */
  BRISK_ROBUST_FREE,       /* nobody held it */
} brisk_robust_t;
bool brisk__os_robust_init(pthread_mutex_t *m); /* false: a plain mutex, death goes unseen */
void brisk__os_robust_hold(pthread_mutex_t *m);
void brisk__os_robust_release(pthread_mutex_t *m);
brisk_robust_t brisk__os_robust_probe(pthread_mutex_t *m); /* a trylock, never waits */

/* ------------------------------------------------------------------------------
   Free blocks: the one place that reads and writes a free block's words.

   Word 0 links to the next block of whatever list holds it (a thread cache's,
   a span's, the remote list, an inbox message), encoded as next ^ list key;
   word 1 holds brisk__free_key while the block is free (the double-free hint).
   Lists move whole between the levels, so every list uses the same encoding.
   The key is random per process and its low four bits are never zero, so a
   plain address that a program writes into a freed block (an overflow, a use
   after free) decodes to a misaligned pointer, and the pop that would have
   handed it out aborts ("corrupted free list") instead of returning an address
   the attacker chose. Slow paths that walk lists check more: that each block
   lies in its span. Mixing in the link's own address (safe-linking) would cost
   three more instructions per pop and push and adds little against a program
   that can read a freed block's words: it learns the key either way.
------------------------------------------------------------------------------ */
extern uintptr_t brisk__list_key;
extern uint64_t brisk__free_key; /* marks objects on free lists, to see double frees */
#define BRISK_BLOCK_ALIGN_MASK ((uintptr_t)BRISK_ALIGN - 1)

static inline void *brisk__block_next_raw(const void *b) {
  return (void *)(*(const uintptr_t *)b ^ brisk__list_key);
}
static inline bool brisk__block_link_ok(const void *next) {
  return ((uintptr_t)next & BRISK_BLOCK_ALIGN_MASK) == 0;
}
/* The next block, or an abort naming call and b if b's link is not one brisk wrote. */
static inline void *brisk__block_next(const void *b, const char *call) {
  void *next = brisk__block_next_raw(b);
  if (brisk_unlikely(!brisk__block_link_ok(next))) brisk__fatal(call, "corrupted free list", b);
  return next;
}
static inline void brisk__block_set_next(void *b, const void *next) {
  *(uintptr_t *)b = (uintptr_t)next ^ brisk__list_key;
}
/* b becomes free, linked before next. */
static inline void brisk__block_push(void *b, const void *next) {
  uint64_t hint = brisk__free_key, key = brisk__list_key; /* both before the stores, which may alias them */
  ((uint64_t *)b)[1] = hint;
  *(uintptr_t *)b = (uintptr_t)next ^ key;
}
/* b leaves the free lists: the hint goes, the program owns both words. */
static inline void brisk__block_clear_hint(void *b) { ((uint64_t *)b)[1] = 0; }
static inline bool brisk__block_hinted(const void *b) { return ((const uint64_t *)b)[1] == brisk__free_key; }

/* ------------------------------------------------------------------------------
   Options (options.c): read once from the environment at start.
------------------------------------------------------------------------------ */
typedef enum { BRISK_NUMA_AUTO = 0, BRISK_NUMA_OFF, BRISK_NUMA_INTERLEAVE } brisk_numa_mode_t;
/* BRISK_STATS: no report, the text report, or one JSON document (stats.c). */
typedef enum { BRISK_STATS_OFF = 0, BRISK_STATS_TEXT, BRISK_STATS_JSON } brisk_stats_mode_t;
/* BRISK_NUMA_SOURCE: where discovery reads the topology (numa.c). */
typedef enum { BRISK_NUMA_SOURCE_AUTO = 0, BRISK_NUMA_SOURCE_HWLOC, BRISK_NUMA_SOURCE_SYSFS } brisk_numa_source_t;
#define BRISK_PATH_OPT_MAX 256 /* a path option's bytes, NUL included */

typedef struct brisk_options_s {
  bool sbrk;                 /* BRISK_SBRK: grow the small heap with sbrk */
  uint8_t stats;             /* BRISK_STATS: brisk_stats_mode_t, the report at exit */
  char stats_file[BRISK_PATH_OPT_MAX]; /* BRISK_STATS_FILE: the report's file ("": stderr) */
  uint8_t numa_source;       /* BRISK_NUMA_SOURCE: brisk_numa_source_t */
  bool verbose;              /* BRISK_VERBOSE: warn about fallbacks */
  size_t tcache_bytes;       /* BRISK_TCACHE_BYTES: a thread cache's budget */
  size_t tcache_total;       /* BRISK_TCACHE_TOTAL: all thread caches together */
  uint64_t purge_delay_ms;   /* BRISK_PURGE_DELAY_MS: idle time before memory goes back */
  bool purge_thread;         /* BRISK_PURGE_THREAD: purge from a background thread */
  size_t large_mmap_bytes;   /* BRISK_LARGE_MMAP: large blocks from this size up are mapped alone */
  size_t heap_grow;          /* BRISK_HEAP_GROW: bytes the page heap grows by at once */
  uint8_t numa;              /* BRISK_NUMA: brisk_numa_mode_t */
  size_t guard_sample;       /* BRISK_GUARD_SAMPLE: mean bytes between guarded blocks; 0 off */
  bool prof;                 /* BRISK_PROF: sample a heap profile */
  size_t prof_sample;        /* BRISK_PROF_SAMPLE: mean bytes between profiled allocations */
  char prof_file[BRISK_PATH_OPT_MAX];    /* BRISK_PROF_FILE: the profile written at exit */
  char prof_trigger[BRISK_PATH_OPT_MAX]; /* BRISK_PROF_TRIGGER: a dump when this file appears */
  char metrics[BRISK_PATH_OPT_MAX];      /* BRISK_METRICS: the directory of the live-metrics file */
} brisk_options_t;

extern brisk_options_t brisk__opt;
void brisk__options_init(void);
/* Parse one "NAME=value" environment entry into opt (exposed for the tests). */
void brisk__options_parse_entry(brisk_options_t *opt, const char *entry, size_t len);
void brisk__options_defaults(brisk_options_t *opt);
/* Parse a size with an optional K/M/G suffix; false if malformed. */
bool brisk__parse_size(const char *s, size_t len, uint64_t *out);

/* ------------------------------------------------------------------------------
   NUMA (numa.c). brisk keeps one set of pools (orphan heaps, page-heap free
   lists) per NUMA node that has memory; a pool is named by its
   *slot*, 0..brisk__numa_nodes-1. Until the topology is known (and always on a
   one-node machine or with BRISK_NUMA=off) there is one slot, 0.
------------------------------------------------------------------------------ */
#define BRISK_MAX_NODES 64        /* pools; more memory nodes than this share them */
#define BRISK_MAX_CPUS 4096       /* CPUs above this count as slot 0's */
#define BRISK_NODEMASK_WORDS 16   /* mbind masks cover OS nodes 0..1023 */

extern unsigned brisk__numa_nodes; /* slots in use: 1 until discovery finds more */
/* Acquire: whoever sees N slots also sees their tables and pools. */
static inline unsigned brisk__numa_count(void) { return __atomic_load_n(&brisk__numa_nodes, __ATOMIC_ACQUIRE); }

/* The operating system as NUMA code sees it: one seam, so that host tests can
 * describe a machine that is not there. Every function must work without malloc
 * except topology_setup (it runs while brisk loads hwloc, see numa.c). */
struct hwloc_topology;
typedef enum {
  BRISK_BIND_PREFER,     /* fresh memory: later first touches go to the node */
  BRISK_BIND_MOVE,       /* the same, and pages already elsewhere are migrated */
  BRISK_BIND_INTERLEAVE, /* fresh memory, page by page over the mask */
} brisk_bind_t;
typedef struct brisk_numa_os_s {
  unsigned (*online_nodes)(void);                        /* a cheap count, before hwloc */
  int (*topology_setup)(struct hwloc_topology *topo);    /* before hwloc_topology_load */
  int (*current_cpu)(void);                              /* -1 when unknown */
  int (*bind)(void *p, size_t len, brisk_bind_t how, const uint64_t *mask); /* mbind; 0 or -errno */
  int (*page_node)(const void *p);                       /* OS node of a page, -1 unknown */
  long (*read_file)(const char *path, char *buf, size_t cap); /* sysfs, procfs: brisk__os_read_file */
} brisk_numa_os_t;
extern brisk_numa_os_t brisk__numa_os;

/* Called when a thread's cache is created; the second thread of a process starts
 * discovery and waits for it (the first never does: a single thread gets local
 * memory from the kernel's first touch, and start-up stays cheap). */
/* A thread's cache has started; false if NUMA discovery is still loading and the
 * thread gave up waiting for it (see BRISK_TC_UNPLACED). */
bool brisk__numa_thread_started(uint64_t threads_seen);
bool brisk__numa_published(void); /* not loading: slots, if any, are published */
uint64_t brisk__numa_giveups(void); /* threads that gave up waiting for discovery */
/* The slot of the CPU the calling thread runs on (a few ns: rseq or vDSO getcpu). */
unsigned brisk__numa_slot_now(void);
/* Bind fresh memory of a slot to its node (nothing on one node). */
void brisk__numa_bind(void *p, size_t len, unsigned slot);
/* Spread fresh memory page by page over all memory nodes. */
void brisk__numa_bind_interleave(void *p, size_t len);
/* The slot whose pools hold large blocks asked for from slot: with
 * BRISK_NUMA=interleave large blocks are mapped alone, interleaved, as slot 0's. */
unsigned brisk__numa_large_slot(unsigned slot);
int brisk__numa_slot_os_node(unsigned slot);
uint32_t brisk__numa_slot_cpus(unsigned slot);
/* Blocks that a thread of another node freed and that went home to slot. */
void brisk__numa_note_remote(unsigned slot, uint64_t n);
uint64_t brisk__numa_remote(unsigned slot);
/* Where the topology came from: nothing loaded (one node, one thread, off, or
 * no source worked), hwloc, or the kernel's sysfs. */
typedef enum { BRISK_TOPO_NONE = 0, BRISK_TOPO_HWLOC, BRISK_TOPO_SYSFS } brisk_topo_source_t;
brisk_topo_source_t brisk__numa_topology_source(void);
const char *brisk__numa_topology_source_name(void); /* "none", "hwloc", "sysfs" */
void brisk__numa_after_fork_child(void);
/* Discovery has finished, early memory adopted (or there was none to do). */
bool brisk__numa_settled(void);
void brisk__numa_fork_lock(void);
void brisk__numa_fork_unlock(void);
/* Allocations made by the thread that is loading the topology come from the
 * bootstrap area: they are never reused, and free() of one does nothing. */
void *brisk__boot_alloc(size_t size, size_t align); /* align 0: natural for size */
size_t brisk__boot_usable(const void *p);
uint64_t brisk__boot_count(void); /* blocks it has served */
void brisk__boot_regions(brisk_region_fn fn, void *arg); /* its chunks */

/* ------------------------------------------------------------------------------
   Metadata (meta.c)
------------------------------------------------------------------------------ */
/* Zeroed, cache-line aligned memory for the life of the process. */
void *brisk__meta_alloc(size_t size);
/* The bytes at the start of each metadata chunk that list it (meta.c). */
#define BRISK_META_CHUNK_HEADER BRISK_CACHE_LINE
brisk_span_t *brisk__span_new(void);
void brisk__span_delete(brisk_span_t *s);
void brisk__meta_fork_lock(void);
void brisk__meta_fork_unlock(void);
void brisk__meta_regions(brisk_region_fn fn, void *arg); /* its chunks, guard pages left out */

/* ------------------------------------------------------------------------------
   Page heap (page_heap.c)
------------------------------------------------------------------------------ */
extern brisk_lock_t brisk__heap_lock;
/* A span of npages in state SMALL, every page in the page map. NULL when memory
 * is exhausted. */
brisk_span_t *brisk__heap_alloc(unsigned slot, size_t npages);
void brisk__heap_free(brisk_span_t *s);
/* A large block of npages (state LARGE, its first and last page in the page map),
 * the best fit among the slot's free runs. *zeroed tells whether every page is
 * fresh or was given back since its last use (so reads as zero). */
brisk_span_t *brisk__heap_alloc_large(unsigned slot, size_t npages, bool *zeroed);
void brisk__heap_free_large(brisk_span_t *s);
/* Grow large block s in place to npages from the free run that follows it; false
 * when there is none that long. Shrink gives its tail back as a free run. */
bool brisk__heap_grow_large(brisk_span_t *s, size_t npages);
void brisk__heap_shrink_large(brisk_span_t *s, size_t npages);
/* Give back free spans idle for at least min_idle_ms; returns bytes purged. */
size_t brisk__heap_purge(uint64_t now_ms, uint64_t min_idle_ms);
/* The purge tick's part: free runs idle for delay_ms go back, and so do free
 * pages beyond the recent swing of the heap's use (page_heap.c, "Decay"); returns
 * bytes. */
size_t brisk__heap_decay(uint64_t now_ms, uint64_t delay_ms);
void brisk__heap_stats(uint64_t *free_bytes, uint64_t *returned_bytes, uint64_t *sbrk_bytes);
/* One slot's part: bytes grown for it, and free ones still backed by memory. */
void brisk__heap_node_stats(unsigned slot, uint64_t *mapped, uint64_t *free_bytes);
/* The first address the heap ever got (0 if none yet): where pre-NUMA memory lives. */
uintptr_t brisk__heap_first_address(void);
/* The heap's ranges (chunks that touch merged), for the statistics. */
void brisk__heap_regions(brisk_region_fn fn, void *arg);
/* Every resident byte of the heap's ranges, in address order, as runs with the
 * span that owns them (NULL: a small span on its way back to the free runs).
 * fn runs under the heap lock and must take no lock. */
typedef void (*brisk_span_bytes_fn)(void *arg, const brisk_span_t *s, uintptr_t start, size_t len);
void brisk__heap_resident(brisk_span_bytes_fn fn, void *arg);
/* Heap chunks grown before NUMA discovery, handed over once (page_heap.c). */
typedef struct brisk_range_s {
  uintptr_t start;
  size_t len;
} brisk_range_t;
#define BRISK_EARLY_RANGES 32
unsigned brisk__heap_take_early(brisk_range_t *out);

/* ------------------------------------------------------------------------------
   Small spans (small.c)
------------------------------------------------------------------------------ */
typedef enum { BRISK_SHEAP_THREAD = 0, BRISK_SHEAP_ORPHAN } brisk_sheap_kind_t;
/* LOST: a heap whose thread did not come through fork (small.c). */
typedef enum { BRISK_SHEAP_LIVE = 0, BRISK_SHEAP_RETIRED, BRISK_SHEAP_LOST } brisk_sheap_state_t;

/* A small heap: the spans one owner holds, by class. The inbox, the ring's claim
 * counter and the ring's cells are the only fields other threads write (remote
 * frees send messages there); everything else is the owner's. Never freed (see
 * small.c). */
/* Message descriptors in a heap's ring: 4 KiB per thread, written when the heap
 * is made; a full ring falls back to the linked inbox. */
#define BRISK_RING 128
typedef struct brisk_ring_cell_s {
  _Atomic uint64_t seq;   /* the ring position it is free for, or that + 1 when filled */
  void *head, *tail;
  uint64_t n;
} brisk_ring_cell_t;

#define BRISK_REMOTE_SLOTS 16

typedef struct brisk_sheap_s {
  /* Written by other threads: the linked inbox and the ring's claim counter. */
  _Atomic(void *) inbox;
  _Atomic uint64_t ring_in;
  char pad_inbox[BRISK_CACHE_LINE - sizeof(void *) - sizeof(uint64_t)];
  brisk_ring_cell_t ring[BRISK_RING]; /* filled by senders, emptied by the owner */
  uint64_t ring_out;      /* the owner's next ring position */
  unsigned slot;          /* the NUMA slot of every span it owns */
  uint8_t kind;           /* brisk_sheap_kind_t */
  uint8_t state;          /* brisk_sheap_state_t */
  brisk_span_t *partial[BRISK_CLASSES];
  brisk_span_t *full[BRISK_CLASSES];
  uint32_t kept[BRISK_CLASSES];   /* empty spans kept, per class */
  uint64_t spans[BRISK_CLASSES];  /* spans owned */
  uint64_t out[BRISK_CLASSES];    /* objects out of them: sum of span->used */
  /* Blocks of other heaps' spans that this heap's thread freed, waiting to be
   * sent to their owners (thread_cache.c): one open message per slot, a slot
   * per span (direct-mapped). Here rather than in the thread cache, whose TLS
   * must stay small enough for dlopen's static TLS. */
  struct {
    brisk_span_t *span;
    void *head, *tail;
    uint32_t n;
  } remote[BRISK_REMOTE_SLOTS];
  uint32_t remote_count;
  size_t remote_bytes;
  uint64_t remote_sent; /* bytes sent to owners so far (the purge thread's start, thread_cache.c) */
  struct brisk_sheap_s *next_all, *next_retired; /* registry lock */
} __attribute__((aligned(BRISK_CACHE_LINE))) brisk_sheap_t;

void brisk__small_init(void);
bool brisk__small_add_slots(unsigned n); /* discovery: orphans of slots [1, n) */
brisk_sheap_t *brisk__small_heap_acquire(unsigned slot);
void brisk__small_heap_retire(brisk_sheap_t *h); /* its thread exits */
/* Every span of h goes to its slot's orphan (the thread moves to another node). */
void brisk__small_abandon(brisk_sheap_t *h);
/* A NULL-terminated list of up to want objects of cls from h's spans (or a
 * span's whole free list, up to cap; an orphan
 * span adopted or a new one when h has none with free objects); 0 when memory is
 * exhausted. */
uint32_t brisk__small_refill(brisk_sheap_t *h, unsigned cls, uint32_t want, uint32_t cap, void **head);
/* The first n blocks of a list, all of spans that h owns, go back to their
 * spans; returns the rest of the list. */
void *brisk__small_release(brisk_sheap_t *h, void *head, uint32_t n);
/* Send the chain head..tail of n blocks of span s, freed by this thread (heap
 * me, NULL when it has none; NUMA slot my_slot), to the span's owner. */
void brisk__small_send(brisk_sheap_t *me, unsigned my_slot, brisk_span_t *s, void *head, void *tail, uint32_t n);
/* One block of span s that free() suspected of a double free, not written: its
 * owner checks it, and withholds it where it cannot see a first copy. */
void brisk__small_send_suspect(brisk_sheap_t *me, brisk_span_t *s, void *p);
/* h's inbox, taken whole (NULL if empty); then, message by message, the ones
 * for h: a chain head..tail of n blocks of class cls, the last block's link
 * free for the caller (others are forwarded to their spans' owners). */
void *brisk__small_inbox_take(brisk_sheap_t *h);
bool brisk__small_inbox_ready(const brisk_sheap_t *h); /* messages wait (a cheap peek) */
bool brisk__small_msg_next(brisk_sheap_t *h, void **inbox, unsigned *cls, void **head, void **tail, uint32_t *n,
                           bool *suspect);
uint32_t brisk__small_take_one(unsigned slot, unsigned cls, void **out);
void brisk__small_scavenge(brisk_sheap_t *h, const uint8_t *active);
void brisk__small_drain(void);
bool brisk__small_is_free(brisk_sheap_t *me, brisk_span_t *span, void *obj);
void brisk__small_class_stats(unsigned cls, uint64_t *out_objs, uint64_t *free_objs, uint64_t *spans);
void brisk__small_node_stats(unsigned slot, uint64_t *out_bytes, uint64_t *free_bytes);
void brisk__small_fork_lock(void);
void brisk__small_fork_unlock(void);
void brisk__small_after_fork_child(brisk_sheap_t *mine);

/* ------------------------------------------------------------------------------
   Thread caches (thread_cache.c)
------------------------------------------------------------------------------ */
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
/* Threads that ended without brisk's TLS destructor (see "Registry" in
 * thread_cache.c) are counted out and their small heaps retired: the purge tick's
 * and brisk_trim's part. */
void brisk__tcache_reap(void);
/* The purge tick's: threads that entered no slow path for RECLAIM_IDLE_DELAYS
 * purge delays give back their heap's inbox, kept spans and spare large block. */
void brisk__tcache_reclaim_idle(uint64_t now, uint64_t delay);
uint64_t brisk__tcache_reclaims(void); /* give-backs done so far (tests) */
extern brisk_lock_t brisk__registry_lock;

/* ------------------------------------------------------------------------------
   Large blocks (large.c)
------------------------------------------------------------------------------ */
void *brisk__large_alloc(size_t size, size_t align, bool zero);
void brisk__large_free(brisk_span_t *s, void *p, const char *call);
void *brisk__large_realloc(brisk_span_t *s, void *p, size_t size);
size_t brisk__large_usable(const brisk_span_t *s); /* the block's usable bytes */
/* Whether sizes a and b of a large block mean the same pages (sized frees). */
bool brisk__large_same_size(size_t a, size_t b);
/* cached is always 0: freed large blocks are free runs of the page heap now. */
void brisk__large_stats(uint64_t *in_use, uint64_t *cached, uint64_t *count);
/* Give the thread's spare large block back to the heap (thread exit, trim). */
void brisk__large_spare_release(brisk_tcache_t *tc);
/* A slot's bytes in large blocks in use, and the part of it mapped alone. */
void brisk__large_node_stats(unsigned slot, uint64_t *in_use, uint64_t *alone);
void brisk__large_regions(brisk_region_fn fn, void *arg); /* the blocks mapped alone */
void brisk__large_fork_lock(void);
void brisk__large_fork_unlock(void);

/* ------------------------------------------------------------------------------
   Guarded blocks (guard.c): a sampled small allocation ends at a PROT_NONE page
   and its pages stay PROT_NONE for a while after its free, so that an overflow
   or a use after free faults and is reported.
------------------------------------------------------------------------------ */
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

/* ------------------------------------------------------------------------------
   Heap profiles (prof.c): the sampled allocations that are still live, by call
   stack, written in gperftools' heap profile format. alloc.c decides which
   allocations are sampled (its countdown); prof.c keeps their records.
------------------------------------------------------------------------------ */
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

/* ------------------------------------------------------------------------------
   Start-up, fork, purging (init.c), statistics (stats.c)
------------------------------------------------------------------------------ */
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

/* Process-wide counters, updated on slow paths only. */
typedef struct brisk_counters_s {
  _Atomic uint64_t mapped;
  _Atomic uint64_t peak_mapped;
  _Atomic uint64_t meta;
} brisk_counters_t;
extern brisk_counters_t brisk__counters;
void brisk__stat_mapped(int64_t delta);
/* What of brisk's mappings is resident now, by layer (stats.c, "Residency"):
 * the figures of the JSON's "resident" object and of brisk_get_resident. */
void brisk__stats_resident(brisk_resident_t *out);
/* A path option with each %p replaced by the pid and %% by %; false if the
 * result does not fit in cap bytes. */
bool brisk__expand_path(const char *tmpl, char *out, size_t cap);

/* Live metrics (metrics.c), BRISK_METRICS: the file is made at start-up, rewritten
 * by the purge thread at each tick, removed at exit. */
void brisk__metrics_start(void);
void brisk__metrics_publish(void);
void brisk__metrics_at_exit(void);
bool brisk__metrics_wanted(void); /* set, and the purge thread allowed: it must run */

/* The allocation entry points shared by the override and the prefixed API. */
void *brisk__malloc_slow(size_t size);
void brisk__free_slow(void *p, brisk_span_t *span, const char *call);
void *brisk__alloc_aligned(size_t align, size_t size);

#pragma GCC visibility pop
#endif /* BRISK_INTERNAL_H */
