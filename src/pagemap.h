/* Spans and the page map (pagemap.c): the span descriptor, who writes which of
 * its fields, and the page map with the inline lookups of the fast paths. The
 * map is read without a lock; its leaves are made under pm_lock (rank PAGEMAP),
 * and entries are written by whoever owns the span (page heap or large lock). */

#ifndef BRISK_PAGEMAP_H
#define BRISK_PAGEMAP_H
#include "base.h"

#pragma GCC visibility push(hidden)

typedef enum brisk_span_state_e {
  BRISK_SPAN_FREE = 1,  /* in the page heap's free lists */
  BRISK_SPAN_SMALL,     /* carved into objects of one class */
  BRISK_SPAN_LARGE,     /* one large block in use (from the page heap, or mapped alone) */
  BRISK_SPAN_SPARE,     /* a freed large block that its thread keeps for the next request */
  BRISK_SPAN_BOOT,      /* the bootstrap area that serves allocations made while
                           brisk itself loads the NUMA topology (boot.c) */
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
 *  - start, npages, state: the page heap (its arena's lock), or large.c for a block
 *    mapped alone, set before the span is published in the page map; a large
 *    block's npages also changes when its owner grows or shrinks it in place
 *    (realloc, under the arena's lock);
 *  - freelist, nfree, bump, used, list, kept, next/prev while SMALL: the span's
 *    owner (small.c): the thread whose small heap it is, without a lock, or for
 *    an orphan heap's span whoever holds that orphan's class lock;
 *  - owner: the owning thread (when it gives the span away), or whoever takes
 *    the span from an orphan, under the orphan's class lock; read by any free();
 *  - node: set when the page heap or large.c hands the span out (their locks);
 *  - arena: once, by the page heap under that arena's lock (page_heap.c, "Arenas");
 *  - cls, obj_size, capacity, inv, rot: written once when the span becomes SMALL, before
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
  uint16_t arena;         /* the page-heap arena whose pages these are (index + 1; 0: none,
                             as for a block mapped alone); set once, under that arena's
                             lock, and never changed: the descriptor stays the arena's */
  uint32_t obj_size;
  uint32_t capacity;
  _Atomic(struct brisk_sheap_s *) owner;
  union {
    struct {                /* large spans (and boot.c's chunks: map_size) */
      size_t map_size;      /* bytes of the mapping (alone) */
      size_t req_size;      /* the size last asked for (large) */
    };
    struct {                /* SMALL: the class's figures for free()'s object test
                               (brisk__obj_index), copied here when the span becomes
                               SMALL, so that free() finds them on the line it reads
                               for start and owner, without the class table */
      uint64_t inv;
      uint32_t rot;
    };
  };
  struct brisk_prof_rec_s *prof; /* LARGE: the heap profile's record of this block, or
                                    NULL (prof.c; written by the block's allocating and
                                    freeing calls only) */
  /* Second cache line: the owner's (small spans) or the arena lock's (free runs). */
  void *freelist __attribute__((aligned(BRISK_CACHE_LINE))); /* objects returned to this span */
  uintptr_t bump;         /* objects at or above bump were never handed out */
  uint32_t used;          /* objects out of the span: in use, in caches or in inboxes */
  uint32_t nfree;         /* objects on freelist */
  uint8_t list;           /* SMALL: brisk_slist_t */
  uint8_t kept;           /* SMALL: empty, kept by its thread heap for the next refill */
  uint64_t idle_since_ms; /* FREE: when it became so */
  struct brisk_span_s *next, *prev;
} brisk_span_t;
_Static_assert(offsetof(brisk_span_t, rot) + sizeof(uint32_t) <= BRISK_CACHE_LINE &&
                   offsetof(brisk_span_t, owner) < BRISK_CACHE_LINE,
               "free() reads start, owner, capacity, inv and rot on the descriptor's first line");

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
 * carries the page's index in its span (bits 48-55), the size class (bits
 * 56-63: one shift reads it) and the span's NUMA slot in the pointer's low 6
 * bits (descriptors are 64-byte aligned). free() reads the class and the node
 * from the entry, and what it checks the address against from the first line
 * of the span descriptor. */
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
static inline unsigned brisk__pm_class(uint64_t e) { return (unsigned)(e >> 56); }
static inline uintptr_t brisk__pm_index(uint64_t e) { return (uintptr_t)(e >> 48) & 0xff; }
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

#pragma GCC visibility pop
#endif /* BRISK_PAGEMAP_H */
