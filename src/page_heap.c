/* The page heap: runs of brisk pages (spans) for the small-object classes and for
 * large blocks (large.c), one page-level heap for both, as tcmalloc's is.
 *
 * Memory comes from sbrk in chunks of BRISK_HEAP_GROW bytes, so the small heap is
 * one contiguous range for as long as the program break can grow; when it cannot
 * (another mapping in the way, RLIMIT_DATA) regions are mmap'd instead and nothing
 * else changes, until the break has moved (its other user freed memory or took it
 * past the obstacle) or mmap fails too: then sbrk is tried again. BRISK_SBRK=0
 * uses mmap only. Another user's sbrk between brisk's costs the padding to a
 * brisk page at most, and a chunk that finds no metadata goes back to the break.
 * Heap memory is never unmapped: freed pages are given back with
 * madvise(MADV_DONTNEED) once idle, which keeps their addresses valid for the
 * page map and for coalescing.
 *
 * Free spans sit in lists by length (exact up to HEAP_EXACT pages, then four bins
 * per doubling) and coalesce with free neighbours on free; a request takes the
 * best fit (the shortest run that is long enough, the lowest address among equals
 * in its bin) and splits it. Only a free span's first and last pages are in the
 * page map, and so only a large block's, which is all coalescing needs (a SMALL
 * span has every page mapped, for free()).
 *
 * Arenas: each slot's heap is split into up to HEAP_SHARDS_MAX arenas (BRISK_HEAP_SHARDS;
 * by default taken on demand, see CONTENDED_MOVE), each with its own
 * lock, free lists, descriptors and decay, so that threads taking spans and
 * large blocks do not queue on one mutex (tcmalloc's page heap lock, its issue
 * 40). A thread asks one arena of each slot first (the first, until it has
 * found that one's lock taken too often); runs of more than 1 MiB come from
 * the slot's first arena. An arena owns the chunks it grows, for good: a span's pages belong
 * to one arena (span->arena), which its free goes back to, whoever frees it,
 * and free runs of different arenas never coalesce. A request its own arena
 * cannot serve without growing first takes a resident free run of another
 * arena of its slot (memory already faulted in beats fresh pages), then grows,
 * then, out of memory, takes what any arena has.
 *   Neighbours across arenas: coalescing reads the descriptor in the page map
 * next to a run, and that may be another arena's, written under a lock not
 * held. It only goes on when that descriptor's arena is its own. That is a
 * sound test because a descriptor's arena is set once, under the arena's lock,
 * and the descriptor is never handed back to the metadata (an arena keeps the
 * ones it no longer needs): a descriptor that reads as this arena's is this
 * arena's, with every field fixed by the lock held; any other reads as another
 * arena's or none, whatever it is being turned into.
 *   Locks: an arena's lock (rank HEAP) guards its free lists, its FREE spans,
 * the length of its LARGE ones and its counters; no thread holds two but the
 * statistics' walk and fork, which take all in index order. grow_lock (rank
 * HEAP_GROW, taken under an arena's) guards what growing shares: the break,
 * the ranges, the early chunks. An arena's free and returned page counts are
 * also read without its lock (relaxed), by threads that look for a resident run there.
 *
 * Decay: each arena keeps backed as many free pages as its use has fallen from
 * its peak of the last DEMAND_WINDOW_MS (what recent demand may take again); the rest
 * goes back (madvise) once DECAY_MIN_AGE_MS old, longest runs first. Memory freed
 * in bulk thus returns soon after the program stops asking, steady churn keeps
 * its swing, and anything free for the purge delay goes back too. The madvise
 * calls are made under the arena's lock.
 *
 * NUMA: every span belongs to a slot (numa.c). Each slot has its own arenas; a
 * chunk an arena grows by is bound to the arena's node before anything touches
 * it. A slot whose node cannot grow (out of memory) takes another slot's free
 * pages rather than fail: the span is lent (its node says the asking slot's
 * while in use), and its pages go back to their own arena when freed.
 *
 * Chunks grown before discovery are bound to no node: their pages lie wherever
 * the threads that first touched them ran (a main thread may move between nodes,
 * and a transparent huge page goes whole to its first toucher's node), yet they
 * all belong to slot 0. Their ranges are kept (contiguous sbrk chunks merge) and
 * handed to discovery once, which moves stray pages to slot 0's node. */
#include "page_heap.h"
#include "numa.h"
#include "meta.h"
#include "pagemap.h"
#include "options.h"
#include "os.h"
#include "counters.h"
#include "init.h" /* upward: brisk__purge_note_idle */

#define HEAP_EXACT 128
/* Runs longer than HEAP_EXACT pages: four bins per doubling (the last catches the
 * rest, 32 GiB and more); a request scans its own bin for the best fit and takes
 * the shortest run of the first non-empty bin above it. */
#define HEAP_BINS 64
/* List i < HEAP_EXACT + 1 holds runs of exactly i pages, the others are the bins. */
#define HEAP_LISTS (HEAP_EXACT + 1 + HEAP_BINS)
#define HEAP_MASK_WORDS ((HEAP_LISTS + 63) / 64)

/* Decay: the peak use of the last DEMAND_WINDOW_MS justifies keeping free pages
 * backed up to it; the excess goes back once DECAY_MIN_AGE_MS old (younger runs
 * are likely the very next request's). DEMAND_SAMPLES ticks cover the window. */
#define DEMAND_WINDOW_MS 200
#define DECAY_MIN_AGE_MS 100
#define DEMAND_SAMPLES 4

typedef struct demand_sample_s {
  uint64_t ms, peak;
} demand_sample_t;

typedef struct heap_arena_s {
  brisk_lock_t lock;                   /* rank HEAP: everything below */
  brisk_span_t *list[HEAP_LISTS];      /* free spans by list_index of their length */
  uint64_t mask[HEAP_MASK_WORDS];      /* bit i: list[i] is not empty */
  size_t free_pages;                   /* pages in free spans (also read unlocked) */
  size_t returned_pages;               /* of those, given back with madvise (also read unlocked) */
  size_t mapped;                       /* bytes grown by this arena */
  /* Pages grown; the most of them in use (not free) since the last decay tick,
   * and that figure of the ticks before. */
  uint64_t pages, interval_peak;
  demand_sample_t demand[DEMAND_SAMPLES];
  unsigned demand_next;
  brisk_span_t *spare; /* descriptors it no longer needs, through next: never given back */
} __attribute__((aligned(BRISK_CACHE_LINE))) heap_arena_t;

#define HEAP_ARENAS (BRISK_MAX_NODES * HEAP_SHARDS_MAX)
/* Arena i is shard i % HEAP_SHARDS_MAX of slot i / HEAP_SHARDS_MAX; its spans carry i + 1. */
/* In .bss, locks included, so that an arena costs memory only once used: 800 KiB
 * of initialised data would be file-backed pages that the loader's fault-around
 * maps in every process (30 KiB more RSS for the locks alone). A zeroed lock is
 * a free one; the lock rank, which only BRISK_DEBUG builds read, is set by the
 * first shards() (set_ranks), before any arena is locked. */
_Static_assert(BRISK_LOCK_FREE == 0, "the arenas' locks are zeroed .bss");
static heap_arena_t arenas[HEAP_ARENAS];
static brisk_lock_t grow_lock = BRISK_LOCK_INIT(BRISK_RANK_HEAP_GROW);
static _Atomic unsigned shard_count; /* arenas per slot in use; 0 until the first request */
static bool shards_on_demand;        /* BRISK_HEAP_SHARDS=0: see shards() */
static _Atomic unsigned shard_next;  /* round robin over the threads */
/* This thread's shard + 1 (0: none yet), the same in every slot; and, on
 * demand, its acquisitions of that arena's lock in the current window, and how
 * many of them found it taken. */
static __thread struct {
  uint8_t shard, contended;
  uint16_t taken;
} heap_tls;

static inline unsigned arena_index(const heap_arena_t *a) { return (unsigned)(a - arenas); }
static inline unsigned arena_slot(const heap_arena_t *a) { return arena_index(a) / HEAP_SHARDS_MAX; }
static inline uint16_t arena_id(const heap_arena_t *a) { return (uint16_t)(arena_index(a) + 1); }
static inline brisk_lock_t *arena_lock(heap_arena_t *a) { return &a->lock; }
/* The arena the pages of span s belong to (s->arena != 0). */
static inline heap_arena_t *arena_of(const brisk_span_t *s) { return &arenas[s->arena - 1]; }
/* Read where another arena may be writing (see "Arenas"). */
static inline uint16_t span_arena(const brisk_span_t *s) { return __atomic_load_n(&s->arena, __ATOMIC_RELAXED); }

/* Arenas on demand (the default): every thread starts in its slot's first
 * arena, and one that found its arena's lock taken in CONTENDED_MOVE of its
 * last CONTENDED_WINDOW acquisitions moves to another (round robin), up to two
 * arenas per CPU, at most 8. Each arena keeps its own free runs and decay
 * swing, so arenas cost memory; only where threads queue are they worth it.
 * On the 2-CPU development machine (BRISK_HEAP_SHARDS=1 and unset, two runs
 * each of brisk_bench --benchmark_filter='^scal/(large_threads|realloc)/.*threads:(2|4|8)$'
 * under LD_PRELOAD, taking turns): scal/large_threads ran 1.6-2.5 M
 * replacements/s at 2-8 threads with one arena (0.95-1.4 M of every million
 * lock acquisitions contended) and 18-22 M on demand, at peak RSS 5.3-8.6 MiB
 * and 5.9-9.2; scal/realloc at 2 threads peaked at 27.5 MiB with one arena and
 * 32.2-34.0 on demand, and ran 10-13 M reallocs/s at 2-8 threads with one
 * arena and 12-19 M on demand. With
 * BRISK_HEAP_SHARDS=N the threads are dealt N arenas round robin at their
 * first request instead. */
#define CONTENDED_WINDOW 256
#define CONTENDED_MOVE 16
#define ARENAS_PER_CPU 2

static void set_ranks(void) {
#ifdef BRISK_DEBUG
  for (unsigned i = 0; i < HEAP_ARENAS; i++) arenas[i].lock.rank = BRISK_RANK_HEAP;
#endif
}

/* Every arena lock is taken after a call of this (heap_take, or the loops over
 * the arenas): the acquire pairs with the release that publishes the ranks. */
static unsigned shards(void) {
  unsigned n = atomic_load_explicit(&shard_count, memory_order_acquire);
  if (brisk_likely(n != 0)) return n;
  set_ranks(); /* the same stores from two first callers at once */
  shards_on_demand = brisk__opt.heap_shards == 0;
  n = !shards_on_demand ? (unsigned)brisk__opt.heap_shards : brisk__os_cpu_count() * ARENAS_PER_CPU;
  if (n > HEAP_SHARDS_MAX) n = HEAP_SHARDS_MAX;
  if (n == 0) n = 1;
  unsigned none = 0; /* two first requests at once agree anyway */
  atomic_compare_exchange_strong_explicit(&shard_count, &none, n, memory_order_release, memory_order_acquire);
  return atomic_load_explicit(&shard_count, memory_order_acquire);
}

/* Runs longer than this (1 MiB) come from each slot's first arena, whoever asks:
 * for blocks that size the lock is a small part of the cost (their pages are
 * faulted in or copied), and one pool of them reuses memory best, where split
 * among the arenas each would keep its own swing of big runs (jemalloc's
 * oversize arena does the same from 8 MiB). */
#define SHARDED_MAX_PAGES ((size_t)(1 << 20) / BRISK_PAGE_SIZE)

/* The arena of slot that this thread asks first for npages. */
static heap_arena_t *home_arena(unsigned slot, size_t npages) {
  if (npages > SHARDED_MAX_PAGES) return &arenas[slot * HEAP_SHARDS_MAX];
  if (brisk_unlikely(heap_tls.shard == 0)) {
    unsigned n = shards();
    heap_tls.shard = shards_on_demand ? 1 : (uint8_t)(atomic_fetch_add_explicit(&shard_next, 1, memory_order_relaxed) % n + 1);
  }
  return &arenas[slot * HEAP_SHARDS_MAX + heap_tls.shard - 1];
}

/* Lock the thread's own arena; on demand, count whether it was taken, and move
 * the thread on for its next requests once that happens too often. */
static void lock_own(heap_arena_t *own, size_t npages) {
  if (brisk__trylock(arena_lock(own))) {
    if (!shards_on_demand || npages > SHARDED_MAX_PAGES || ++heap_tls.taken < CONTENDED_WINDOW) return;
  } else {
    brisk__lock(arena_lock(own));
    if (!shards_on_demand || npages > SHARDED_MAX_PAGES) return;
    heap_tls.taken++;
    if (++heap_tls.contended >= CONTENDED_MOVE) {
      unsigned n = shards(), next = atomic_fetch_add_explicit(&shard_next, 1, memory_order_relaxed) % n + 1;
      if (next == heap_tls.shard) next = next % n + 1;
      heap_tls.shard = (uint8_t)next;
    } else if (heap_tls.taken < CONTENDED_WINDOW) {
      return;
    }
  }
  heap_tls.taken = 0;
  heap_tls.contended = 0;
}

/* Counters another thread reads without the lock: a plain read-modify-write
 * under the lock, published with a relaxed store. */
static inline void counter_add(size_t *c, size_t n) { __atomic_store_n(c, *c + n, __ATOMIC_RELAXED); }
static inline size_t counter_read(const size_t *c) { return __atomic_load_n(c, __ATOMIC_RELAXED); }

/* What the heap grows by, under grow_lock. */
static size_t sbrk_bytes;
static uintptr_t first_address;
static uintptr_t sbrk_failed_at; /* the break when sbrk last failed; 0 while it works */
static brisk_range_t kept;       /* sbrk'd, without metadata yet, below a moved break */
static brisk_range_t early[BRISK_EARLY_RANGES];
static unsigned early_count;
/* Where the heap's last sbrk chunk ends (0: none yet); also read under an arena's lock alone. */
static _Atomic uintptr_t brk_end;
/* The heap's address ranges, for the statistics (brisk__heap_resident): every
 * chunk grown, those that touch merged (a free run may cross from one chunk
 * into the next, so spans tile each range exactly), sorted by address. Nodes
 * come from metadata; merged-away ones wait on region_spare for the next
 * growth, which takes one before it commits a chunk. */
typedef struct heap_region_s {
  uintptr_t start, end;
  struct heap_region_s *next;
} heap_region_t;
static heap_region_t *regions, *region_spare;

static void note_early(uintptr_t p, size_t bytes) {
  if (early_count > 0 && early[early_count - 1].start + early[early_count - 1].len == p)
    early[early_count - 1].len += bytes;
  else if (early_count < BRISK_EARLY_RANGES)
    early[early_count++] = (brisk_range_t){p, bytes};
  /* else: more scattered chunks than that only come from mmap in a program that
   * never had the break; those stay where first touch put them */
}

/* A descriptor becomes arena a's, for good (see "Arenas"). */
static void desc_adopt_locked(heap_arena_t *a, brisk_span_t *s) {
  __atomic_store_n(&s->arena, arena_id(a), __ATOMIC_RELAXED);
}

/* Descriptors that coalescing gives up and splitting needs again stay with the
 * arena (never back to the metadata); a block freed next to a free run and
 * taken again costs no trip to the metadata lock either. A heap that grows
 * needs one per span it cuts, so they come from the metadata DESC_BATCH at a
 * time: one acquisition of its lock per batch rather than per span. */
#define DESC_BATCH 16
static brisk_span_t *desc_new_locked(heap_arena_t *a) {
  brisk_span_t *s = a->spare;
  if (s == NULL) {
    if (brisk__span_new_batch(&s, DESC_BATCH) == 0) return NULL;
    for (brisk_span_t *d = s; d != NULL; d = d->next) desc_adopt_locked(a, d);
  }
  a->spare = s->next;
  uint16_t id = s->arena;
  memset(s, 0, sizeof *s);
  s->arena = id;
  return s;
}

static void desc_delete_locked(heap_arena_t *a, brisk_span_t *s) {
  s->state = 0; /* a stale pointer to it is nobody's */
  s->prev = NULL;
  s->next = a->spare;
  a->spare = s;
}

static inline void note_used(heap_arena_t *a) {
  uint64_t used = a->pages - a->free_pages;
  if (used > a->interval_peak) a->interval_peak = used;
}

static inline uintptr_t span_first_page(const brisk_span_t *s) { return s->start >> BRISK_PAGE_SHIFT; }
static inline uintptr_t span_last_page(const brisk_span_t *s) { return span_first_page(s) + s->npages - 1; }

static unsigned bin_of(size_t npages) { /* npages > HEAP_EXACT */
  unsigned k = 63u - (unsigned)__builtin_clzll(npages);
  unsigned b = (k - 7) * 4 + (unsigned)((npages >> (k - 2)) & 3);
  return b < HEAP_BINS ? b : HEAP_BINS - 1;
}
_Static_assert(HEAP_EXACT == 128, "bin_of counts doublings from 2^7 pages");

static inline unsigned list_index(size_t npages) {
  return npages <= HEAP_EXACT ? (unsigned)npages : HEAP_EXACT + 1 + bin_of(npages);
}

/* The first non-empty list from index i on, or HEAP_LISTS. */
static unsigned next_list(const heap_arena_t *h, unsigned i) {
  for (unsigned w = i / 64; w < HEAP_MASK_WORDS; w++) {
    uint64_t bits = h->mask[w] & (w == i / 64 ? ~(uint64_t)0 << (i % 64) : ~(uint64_t)0);
    if (bits != 0) return w * 64 + (unsigned)__builtin_ctzll(bits);
  }
  return HEAP_LISTS;
}

/* Free-page counters: add (sign 1) or take away (-1) span s. */
static inline void count_pages(heap_arena_t *h, const brisk_span_t *s, int64_t sign) {
  size_t n = (size_t)(sign * (int64_t)s->npages);
  counter_add(&h->free_pages, n);
  if (s->purged) counter_add(&h->returned_pages, n);
}

static void list_push(heap_arena_t *h, brisk_span_t *s) {
  brisk_assert(s->arena == arena_id(h) && s->state == BRISK_SPAN_FREE);
  unsigned i = list_index(s->npages);
  s->prev = NULL;
  s->next = h->list[i];
  if (s->next) s->next->prev = s;
  h->list[i] = s;
  h->mask[i / 64] |= (uint64_t)1 << (i % 64);
  count_pages(h, s, 1);
}

static void list_remove(heap_arena_t *h, brisk_span_t *s) {
  if (s->prev) {
    s->prev->next = s->next;
  } else {
    unsigned i = list_index(s->npages);
    h->list[i] = s->next;
    if (s->next == NULL) h->mask[i / 64] &= ~((uint64_t)1 << (i % 64));
  }
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  count_pages(h, s, -1);
}

/* The page-map neighbour at page index pg, if it is a free run of arena a. The
 * arena is read first: only a's own descriptors are a's lock's to read. */
static brisk_span_t *free_neighbour(const heap_arena_t *a, uintptr_t pg) {
  brisk_span_t *n = brisk__pagemap_get((void *)(pg << BRISK_PAGE_SHIFT));
  if (n == NULL || span_arena(n) != arena_id(a) || n->state != BRISK_SPAN_FREE) return NULL;
  return n;
}

/* The merge of free run n into s: the result is purged only if both were, and
 * its age is that of its oldest backed part. A run that keeps absorbing blocks
 * freed a moment ago thus still ages and goes back on the decay; were the
 * youngest part's age the whole run's, a heap under steady churn would never
 * purge its longest runs, and a program that touches its blocks only here and
 * there would fault in more and more of them (a loop of scal/server's sizes,
 * run for 20 million replacements, grew to 29 MiB that way; 17 MiB now). */
static void merge_age(brisk_span_t *s, const brisk_span_t *n) {
  if (n->purged) return;
  if (s->purged || n->idle_since_ms < s->idle_since_ms) s->idle_since_ms = n->idle_since_ms;
  s->purged = 0;
}

/* Mark s free, merge it with free neighbours and put it on its list. Page-map
 * entries of pages that become interior are cleared, so a stale pointer into a
 * free span never reaches a descriptor that has been reused. */
static void insert_coalesced(heap_arena_t *a, brisk_span_t *s, uint64_t now) {
  brisk_assert(s->arena == arena_id(a));
  s->state = BRISK_SPAN_FREE;
  s->cls = 0;
  s->node = (uint8_t)arena_slot(a); /* a span lent to another slot comes back */
  s->idle_since_ms = now;
  uintptr_t first = span_first_page(s);
  brisk_span_t *left = first > 0 ? free_neighbour(a, first - 1) : NULL;
  if (left != NULL) {
    list_remove(a, left);
    brisk__pagemap_put(span_last_page(left), NULL);
    brisk__pagemap_put(first, NULL);
    s->start = left->start;
    s->npages += left->npages;
    merge_age(s, left);
    desc_delete_locked(a, left);
  }
  brisk_span_t *right = free_neighbour(a, span_last_page(s) + 1);
  if (right != NULL) {
    list_remove(a, right);
    brisk__pagemap_put(span_last_page(s), NULL);
    brisk__pagemap_put(span_first_page(right), NULL);
    s->npages += right->npages;
    merge_age(s, right);
    desc_delete_locked(a, right);
  }
  brisk__pagemap_put(span_first_page(s), s);
  brisk__pagemap_put(span_last_page(s), s);
  list_push(a, s);
}

/* sbrk first; the break is padded to align (BRISK_HEAP_CHUNK_ALIGN, or a brisk
 * page near a limit) and the chunk rounded up to end on that boundary too, so
 * that the next one follows on with no pad. *bytes: asked for on entry, got on
 * return. Another thread's sbrk between the two calls that moves the break past
 * the pad leaves the chunk on a brisk page only: it is lengthened by the missing
 * piece while the break still ends there, or else cut to its whole pages; what
 * the break gave is never dropped, but for the pad (address space, never
 * touched) and less than a page that another user's bytes have made useless. */
static void *grow_sbrk(size_t *bytes, size_t align) {
  char *cur = brisk__os_sbrk(0);
  if (cur == NULL) return NULL;
  uintptr_t start = brisk__align_up((uintptr_t)cur, align);
  size_t want = brisk__align_up(start + *bytes, align) - start, pad = start - (uintptr_t)cur;
  char *p = brisk__os_sbrk(pad + want);
  if (p == NULL) return NULL;
  char *end = p + pad + want, *a = (char *)brisk__align_up((uintptr_t)p, align);
  *bytes = want;
  if (a + want <= end) return a; /* the break was where it was looked at, or moved less than the pad */
  a = (char *)brisk__align_up((uintptr_t)p, BRISK_PAGE_SIZE); /* moved past the pad: a page boundary will do */
  if (a + want <= end) return a;
  if (brisk__os_sbrk(0) == end && brisk__os_sbrk((size_t)(a + want - end)) == end) return a;
  size_t whole = (size_t)(end - a) & ~(BRISK_PAGE_SIZE - 1);
  char *keep = whole > 0 ? a + whole : p;
  if (brisk__os_sbrk(0) == end) brisk__os_sbrk_release((size_t)(end - keep));
  if (whole == 0) return NULL;
  *bytes = whole;
  return a;
}

/* Pages of the arena's free run that ends where the break is, if the break is
 * still there: a chunk grown by sbrk joins that run, so only the rest is needed. */
static size_t top_free_pages(const heap_arena_t *a) {
  uintptr_t end = atomic_load_explicit(&brk_end, memory_order_relaxed);
  if (end == 0 || brisk__os_sbrk(0) != (void *)end) return 0;
  brisk_span_t *top = free_neighbour(a, (end >> BRISK_PAGE_SHIFT) - 1);
  return top != NULL ? top->npages : 0;
}

/* Whether this growth asks the break first. After a failure (a mapping above
 * the break, a limit) sbrk is not tried again until the break has moved: its
 * other user has freed memory below a limit or taken the break past what was
 * in the way. grow_locked also tries it when mmap has failed too. */
static bool sbrk_worth_trying(void) {
  return brisk__opt.sbrk && (sbrk_failed_at == 0 || (uintptr_t)brisk__os_sbrk(0) != sbrk_failed_at);
}

/* A chunk from the break for npages: only what the arena's free run at the top
 * lacks (its resident pages serve first, and the break grows less), a whole
 * heap chunk unless the break is near a limit. */
static void *sbrk_chunk(const heap_arena_t *a, size_t npages, size_t chunk, size_t *bytes) {
  size_t top = top_free_pages(a);
  size_t need = (npages > top ? npages - top : 1) * BRISK_PAGE_SIZE;
  *bytes = need > chunk ? need : chunk;
  void *p = grow_sbrk(bytes, BRISK_HEAP_CHUNK_ALIGN);
  if (p == NULL) { /* near a limit: only what is needed, page-aligned */
    *bytes = need;
    p = grow_sbrk(bytes, BRISK_PAGE_SIZE);
  }
  if (p != NULL) {
    sbrk_failed_at = 0;
    return p;
  }
  if (sbrk_failed_at == 0 && brisk__opt.verbose) brisk__printf_err("brisk: sbrk failed, using mmap for the heap\n");
  uintptr_t now = (uintptr_t)brisk__os_sbrk(0);
  sbrk_failed_at = now != 0 ? now : 1;
  return NULL;
}

/* A chunk of address space: BRISK_HEAP_CHUNK_ALIGN on both ends, or near the
 * limit only what is needed, page-aligned. */
static void *mmap_chunk(size_t want, size_t chunk, size_t *bytes) {
  *bytes = brisk__align_up(want > chunk ? want : chunk, BRISK_HEAP_CHUNK_ALIGN);
  void *p = brisk__os_mmap_aligned(*bytes, BRISK_HEAP_CHUNK_ALIGN, BRISK_VMA_HEAP);
  if (p == NULL) { /* near the limit */
    *bytes = want;
    p = brisk__os_mmap_aligned(want, BRISK_PAGE_SIZE, BRISK_VMA_HEAP);
  }
  return p;
}

/* A chunk from the break that no metadata could be had for goes back while the
 * break still ends there (the address space it took may be what the metadata
 * lacks); where another user has moved the break past it, it is kept, and the
 * next growth takes it before anything else. */
static void sbrk_undo(void *p, size_t bytes) {
  if (brisk__os_sbrk(0) == (char *)p + bytes && brisk__os_sbrk_release(bytes)) return;
  kept = (brisk_range_t){(uintptr_t)p, bytes};
}

/* [p, p + bytes) joins the ranges, merged with the ones it touches; a node is
 * on region_spare (grow_locked made sure). */
static void region_note(uintptr_t p, size_t bytes) {
  uintptr_t end = p + bytes;
  heap_region_t **link = &regions;
  while (*link != NULL && (*link)->end < p) link = &(*link)->next;
  heap_region_t *r = *link;
  if (r != NULL && r->start <= end) { /* touches r: grow it, then maybe swallow its successor */
    if (p < r->start) r->start = p;
    if (end > r->end) r->end = end;
    heap_region_t *n = r->next;
    if (n != NULL && n->start <= r->end) {
      if (n->end > r->end) r->end = n->end;
      r->next = n->next;
      n->next = region_spare;
      region_spare = n;
    }
    return;
  }
  heap_region_t *fresh = region_spare;
  region_spare = fresh->next;
  *fresh = (heap_region_t){p, end, r};
  *link = fresh;
}

/* Grow arena a (its lock held) by a chunk for npages at least. */
static bool grow_locked(heap_arena_t *a, size_t npages) {
  size_t chunk = brisk__align_up(brisk__opt.heap_grow, BRISK_PAGE_SIZE), want = npages * BRISK_PAGE_SIZE;
  unsigned slot = arena_slot(a);
  brisk__lock(&grow_lock);
  size_t bytes = kept.len;
  void *p = (void *)kept.start;
  bool from_sbrk = p != NULL;
  if (p == NULL) {
    bool asked = sbrk_worth_trying();
    if (asked) p = sbrk_chunk(a, npages, chunk, &bytes);
    from_sbrk = p != NULL;
    if (p == NULL) p = mmap_chunk(want, chunk, &bytes);
    if (p == NULL && !asked && brisk__opt.sbrk) {
      /* The last resort: what was in the way may be gone, and the break needs
       * less than mmap where a free run ends at it. */
      p = sbrk_chunk(a, npages, chunk, &bytes);
      from_sbrk = p != NULL;
    }
  }
  if (p == NULL) {
    brisk__unlock(&grow_lock);
    return false;
  }
  if (region_spare == NULL && (region_spare = brisk__meta_alloc(sizeof(heap_region_t))) != NULL)
    region_spare->next = NULL;
  brisk_span_t *s = region_spare != NULL ? brisk__span_new() : NULL;
  if (s == NULL || !brisk__pagemap_ensure((uintptr_t)p >> BRISK_PAGE_SHIFT, bytes / BRISK_PAGE_SIZE)) {
    /* Out of memory for metadata: mmap'd memory goes back, sbrk'd memory to the
     * break or into kept. */
    if (s) brisk__span_delete(s);
    if (from_sbrk) sbrk_undo(p, bytes);
    else brisk__os_munmap(p, bytes);
    brisk__unlock(&grow_lock);
    return false;
  }
  if (from_sbrk) {
    kept = (brisk_range_t){0, 0};
    sbrk_bytes += bytes;
    atomic_store_explicit(&brk_end, (uintptr_t)p + bytes, memory_order_relaxed);
  }
  region_note((uintptr_t)p, bytes);
  if (first_address == 0) first_address = (uintptr_t)p;
  if (brisk__numa_count() < 2) note_early((uintptr_t)p, bytes);
  else brisk__numa_bind(p, bytes, slot); /* before the first touch places a page */
  brisk__stat_mapped((int64_t)bytes);
  counter_add(&a->mapped, bytes);
  a->pages += bytes / BRISK_PAGE_SIZE;
  desc_adopt_locked(a, s);
  s->start = (uintptr_t)p;
  s->node = (uint8_t)slot;
  s->npages = bytes / BRISK_PAGE_SIZE;
  s->purged = 1; /* fresh pages cost no memory until touched */
  /* Still under grow_lock: the next growth's top run is this one. */
  insert_coalesced(a, s, brisk__os_now_ms());
  brisk__unlock(&grow_lock);
  return true;
}

/* The shortest run of at least npages in a list, the lowest address among equals. */
static brisk_span_t *best_in(brisk_span_t *s, size_t npages) {
  brisk_span_t *best = NULL;
  for (; s != NULL; s = s->next)
    if (s->npages >= npages &&
        (best == NULL || s->npages < best->npages || (s->npages == best->npages && s->start < best->start)))
      best = s;
  return best;
}

static brisk_span_t *find_locked(heap_arena_t *h, size_t npages) {
  unsigned i = list_index(npages);
  if (npages > HEAP_EXACT) { /* its own bin may hold runs a little too short */
    brisk_span_t *s = best_in(h->list[i], npages);
    if (s != NULL) return s;
    i++;
  }
  i = next_list(h, i);
  if (i >= HEAP_LISTS) return NULL;
  return i <= HEAP_EXACT ? h->list[i] : best_in(h->list[i], npages); /* every run there fits */
}

/* Run s of arena a, off its list, cut to exactly npages; the rest stays free.
 * Its page-map entries are still the free run's (first and last). Without a
 * descriptor for the rest (metadata exhausted), a run at most 1/8 longer than
 * asked goes out whole (its length says so); a longer one goes back and the
 * request fails: otherwise a span of a few objects, or a block of a few pages,
 * would hold the heap's longest run until it is freed, and under an
 * address-space limit each request then swallowed another. */
static brisk_span_t *cut_locked(heap_arena_t *a, brisk_span_t *s, size_t npages, unsigned slot) {
  list_remove(a, s);
  if (s->npages > npages) {
    brisk_span_t *rest = desc_new_locked(a);
    if (rest != NULL) {
      rest->start = s->start + npages * BRISK_PAGE_SIZE;
      rest->npages = s->npages - npages;
      rest->purged = s->purged;
      rest->state = BRISK_SPAN_FREE;
      rest->idle_since_ms = s->idle_since_ms;
      rest->node = s->node;
      s->npages = npages;
      brisk__pagemap_put(span_first_page(rest), rest);
      brisk__pagemap_put(span_last_page(rest), rest);
      list_push(a, rest);
    } else if (s->npages - npages > npages / 8) {
      list_push(a, s);
      return NULL;
    }
  }
  s->node = (uint8_t)slot; /* lent to the asking slot, if another's, until freed */
  note_used(a);
  return s;
}

/* From arena a (locked): its best fit, growing it if it has none and grow says
 * so. A second growth when the first did not join the top run (another user of
 * the break moved it in between): the new chunk is the top run then. */
static brisk_span_t *take_locked(heap_arena_t *a, size_t npages, unsigned slot, bool grow) {
  brisk_span_t *s = find_locked(a, npages);
  for (int tries = 0; s == NULL && grow && tries < 2 && grow_locked(a, npages); tries++) s = find_locked(a, npages);
  return s != NULL ? cut_locked(a, s, npages, slot) : NULL;
}

/* Whether arena a may hold free pages still backed (a racy peek, no lock). */
static inline bool has_resident(const heap_arena_t *a) {
  return counter_read(&a->free_pages) != counter_read(&a->returned_pages);
}

/* Whether an arena of the slot other than own may hold resident free pages: if
 * none does, heap_take keeps its own lock and grows, rather than drop it to
 * look and take it again (two acquisitions for every span a growing heap
 * cuts). */
static bool others_resident(const heap_arena_t *base, const heap_arena_t *own, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    if (&base[i] != own && has_resident(&base[i])) return true;
  return false;
}

/* A run of npages for slot, and the arena it came from (locked, for the caller
 * to finish the span and unlock); NULL when memory is exhausted. In order: the
 * best fit of the thread's own arena if its pages are resident; else a resident
 * best fit of another arena of the slot (tried, not waited for: memory already
 * faulted in beats pages given back or fresh); else the own arena's best fit
 * as it is, or the own arena grown; then, out of memory, whatever any arena
 * has, the slot's first (remote beats failing). */
static brisk_span_t *heap_take(unsigned slot, size_t npages, heap_arena_t **where) {
  heap_arena_t *own = home_arena(slot, npages), *base = &arenas[slot * HEAP_SHARDS_MAX];
  unsigned n = shards();
  lock_own(own, npages);
  brisk_span_t *s = find_locked(own, npages);
  if (n > 1 && (s == NULL || s->purged) && others_resident(base, own, n)) {
    brisk__unlock(arena_lock(own));
    for (unsigned i = 0; i < n; i++) {
      heap_arena_t *b = &base[i];
      if (b == own || !has_resident(b) || !brisk__trylock(arena_lock(b)))
        continue;
      brisk_span_t *fit = find_locked(b, npages);
      if (fit != NULL && !fit->purged && (s = cut_locked(b, fit, npages, slot)) != NULL) {
        *where = b;
        return s;
      }
      brisk__unlock(arena_lock(b));
    }
    brisk__lock(arena_lock(own));
    s = find_locked(own, npages); /* it may have changed meanwhile */
  }
  s = s != NULL ? cut_locked(own, s, npages, slot) : take_locked(own, npages, slot, true);
  if (s != NULL) {
    *where = own;
    return s;
  }
  brisk__unlock(arena_lock(own));
  for (unsigned k = 0; k < brisk__numa_count(); k++) {
    unsigned sl = (slot + k) % brisk__numa_count();
    for (unsigned i = 0; i < n; i++) {
      heap_arena_t *b = &arenas[sl * HEAP_SHARDS_MAX + i];
      if (b == own) continue;
      brisk__lock(arena_lock(b));
      if ((s = take_locked(b, npages, slot, false)) != NULL) {
        *where = b;
        return s;
      }
      brisk__unlock(arena_lock(b));
    }
  }
  return NULL;
}

brisk_span_t *brisk__heap_alloc(unsigned slot, size_t npages) {
  heap_arena_t *a;
  brisk_span_t *s = heap_take(slot, npages, &a);
  if (s == NULL) return NULL;
  s->state = BRISK_SPAN_SMALL;
  s->purged = 0;
  /* The ends are what coalescing neighbours read; the interior entries are
   * clear (a free run's are) until the caller writes them, outside the lock. */
  brisk__pagemap_put(span_first_page(s), s);
  brisk__pagemap_put(span_last_page(s), s);
  brisk__unlock(arena_lock(a));
  return s;
}

brisk_span_t *brisk__heap_alloc_large(unsigned slot, size_t npages, bool *zeroed) {
  heap_arena_t *a;
  brisk_span_t *s = heap_take(slot, npages, &a);
  if (s == NULL) return NULL;
  *zeroed = s->purged;
  s->state = BRISK_SPAN_LARGE;
  s->purged = 0;
  s->alone = 0;
  brisk__pagemap_put(span_first_page(s), s);
  brisk__pagemap_put(span_last_page(s), s);
  brisk__unlock(arena_lock(a));
  return s;
}

/* Bytes free and still backed in arena a (its lock held): what starts the
 * purger (init.c), once one arena has that much idle. */
static uint64_t idle_bytes_locked(const heap_arena_t *a) {
  return (uint64_t)(a->free_pages - a->returned_pages) * BRISK_PAGE_SIZE;
}

/* Into the free lists of its arena a (locked), merged with free neighbours. The
 * page-map entries of the span beyond its first and last page must be clear
 * already. */
static void release_locked(heap_arena_t *a, brisk_span_t *s, uint64_t now) {
  s->purged = 0;
  s->freelist = NULL;
  s->used = 0;
  insert_coalesced(a, s, now);
}

static void span_release(brisk_span_t *s) {
  uint64_t now = brisk__os_now_ms();
  heap_arena_t *a = arena_of(s);
  brisk__lock(arena_lock(a));
  release_locked(a, s, now);
  uint64_t idle = idle_bytes_locked(a);
  brisk__unlock(arena_lock(a));
  brisk__purge_note_idle(idle);
}

void brisk__heap_free(brisk_span_t *s) {
  /* Every page of a SMALL span is in the map; nobody else reaches these entries
   * any more, so they are cleared before the lock is taken. */
  brisk__pagemap_set(span_first_page(s), s->npages, NULL);
  span_release(s);
}

void brisk__heap_free_batch(brisk_span_t **v, unsigned n) {
  for (unsigned i = 0; i < n; i++) brisk__pagemap_set(span_first_page(v[i]), v[i]->npages, NULL);
  uint64_t now = brisk__os_now_ms();
  for (unsigned i = 0; i < n; i++) {
    if (v[i] == NULL) continue;
    heap_arena_t *a = arena_of(v[i]);
    brisk__lock(arena_lock(a));
    for (unsigned j = i; j < n; j++)
      if (v[j] != NULL && arena_of(v[j]) == a) {
        release_locked(a, v[j], now);
        v[j] = NULL;
      }
    uint64_t idle = idle_bytes_locked(a);
    brisk__unlock(arena_lock(a));
    brisk__purge_note_idle(idle);
  }
}

void brisk__heap_free_large(brisk_span_t *s) { span_release(s); }

bool brisk__heap_grow_large(brisk_span_t *s, size_t npages) {
  size_t extra = npages - s->npages;
  heap_arena_t *a = arena_of(s);
  brisk__lock(arena_lock(a));
  uintptr_t next_pg = span_last_page(s) + 1, next = next_pg << BRISK_PAGE_SHIFT;
  uintptr_t top = atomic_load_explicit(&brk_end, memory_order_relaxed);
  brisk_span_t *right = free_neighbour(a, next_pg);
  /* At the top of the break (nothing after s, or a free run too short that ends
   * there), the heap grows by what is missing, and the new chunk joins the run. */
  bool short_top = right != NULL && right->npages < extra && (span_last_page(right) + 1) << BRISK_PAGE_SHIFT == top;
  if (((brisk__pagemap_get((void *)next) == NULL && next == top) || short_top) && grow_locked(a, extra)) /* less the top run */
    right = free_neighbour(a, next_pg);
  if (right == NULL || right->npages < extra) {
    brisk__unlock(arena_lock(a));
    return false;
  }
  list_remove(a, right);
  brisk__pagemap_put(span_first_page(right), NULL);
  if (right->npages > extra) {
    right->start += extra * BRISK_PAGE_SIZE;
    right->npages -= extra;
    brisk__pagemap_put(span_first_page(right), right);
    list_push(a, right);
  } else {
    desc_delete_locked(a, right);
  }
  if (s->npages > 1) brisk__pagemap_put(span_last_page(s), NULL); /* interior now */
  s->npages = npages;
  brisk__pagemap_put(span_last_page(s), s);
  note_used(a);
  brisk__unlock(arena_lock(a));
  return true;
}

void brisk__heap_shrink_large(brisk_span_t *s, size_t npages) {
  heap_arena_t *a = arena_of(s);
  uint64_t now = brisk__os_now_ms();
  brisk__lock(arena_lock(a));
  brisk_span_t *tail = desc_new_locked(a);
  if (tail == NULL) { /* out of metadata: the block just stays longer */
    brisk__unlock(arena_lock(a));
    return;
  }
  tail->start = s->start + npages * BRISK_PAGE_SIZE;
  tail->npages = s->npages - npages;
  tail->purged = 0;
  s->npages = npages;
  brisk__pagemap_put(span_last_page(s), s);
  insert_coalesced(a, tail, now); /* sets or clears the entry of the old last page */
  uint64_t idle = idle_bytes_locked(a);
  brisk__unlock(arena_lock(a));
  brisk__purge_note_idle(idle);
}

/* Give back the runs of list s idle for min_idle, until *budget pages are gone
 * (the last run may take the budget below zero). */
static size_t purge_list(heap_arena_t *a, brisk_span_t *s, uint64_t now, uint64_t min_idle, int64_t *budget) {
  size_t bytes = 0;
  for (; s != NULL && *budget > 0; s = s->next) {
    if (s->purged || now - s->idle_since_ms < min_idle) continue;
    brisk__os_purge((void *)s->start, s->npages * BRISK_PAGE_SIZE);
    s->purged = 1;
    counter_add(&a->returned_pages, s->npages);
    bytes += s->npages * BRISK_PAGE_SIZE;
    *budget -= (int64_t)s->npages;
  }
  return bytes;
}

/* Longest runs first: the fewest calls per byte, and the runs that a steady
 * program's next small request needs least. */
static size_t purge_locked(heap_arena_t *a, uint64_t now, uint64_t min_idle, int64_t budget) {
  size_t bytes = 0;
  if (a->free_pages == a->returned_pages) return 0;
  for (unsigned i = HEAP_LISTS; i-- > 1 && budget > 0;) bytes += purge_list(a, a->list[i], now, min_idle, &budget);
  return bytes;
}

/* The arenas that may hold pages: every shard of every slot discovered. */
#define FOR_EACH_ARENA(a)                                                      \
  for (unsigned a##_sl = 0; a##_sl < brisk__numa_count(); a##_sl++)           \
    for (heap_arena_t *a = &arenas[a##_sl * HEAP_SHARDS_MAX]; a < &arenas[a##_sl * HEAP_SHARDS_MAX] + shards(); a++)

size_t brisk__heap_purge(uint64_t now, uint64_t min_idle) {
  size_t bytes = 0;
  FOR_EACH_ARENA(a) {
    brisk__lock(arena_lock(a));
    bytes += purge_locked(a, now, min_idle, INT64_MAX);
    brisk__unlock(arena_lock(a));
  }
  return bytes;
}

/* One arena's decay: it keeps backed what its own use has fallen from its own
 * recent peak. */
static size_t decay_locked(heap_arena_t *a, uint64_t now, uint64_t delay) {
  /* Demand: how far use has fallen from its peak within the window. */
  uint64_t used = a->pages - a->free_pages, peak = a->interval_peak;
  for (unsigned i = 0; i < DEMAND_SAMPLES; i++)
    if (a->demand[i].ms != 0 && now - a->demand[i].ms <= DEMAND_WINDOW_MS && a->demand[i].peak > peak)
      peak = a->demand[i].peak;
  uint64_t want = peak > used ? peak - used : 0;
  a->demand[a->demand_next] = (demand_sample_t){now, a->interval_peak};
  a->demand_next = (a->demand_next + 1) % DEMAND_SAMPLES;
  a->interval_peak = used;
  size_t bytes = purge_locked(a, now, delay, INT64_MAX);
  uint64_t dirty = a->free_pages - a->returned_pages;
  if (dirty > want) bytes += purge_locked(a, now, DECAY_MIN_AGE_MS, (int64_t)(dirty - want));
  return bytes;
}

size_t brisk__heap_decay(uint64_t now, uint64_t delay) {
  size_t bytes = 0;
  FOR_EACH_ARENA(a) {
    brisk__lock(arena_lock(a));
    bytes += decay_locked(a, now, delay);
    brisk__unlock(arena_lock(a));
  }
  return bytes;
}

void brisk__heap_stats(uint64_t *free_bytes, uint64_t *returned_bytes, uint64_t *sbrk_out) {
  uint64_t free_pages = 0, returned = 0;
  FOR_EACH_ARENA(a) {
    brisk__lock(arena_lock(a));
    free_pages += a->free_pages - a->returned_pages;
    returned += a->returned_pages;
    brisk__unlock(arena_lock(a));
  }
  *free_bytes = free_pages * BRISK_PAGE_SIZE;
  *returned_bytes = returned * BRISK_PAGE_SIZE;
  brisk__lock(&grow_lock);
  *sbrk_out = sbrk_bytes;
  brisk__unlock(&grow_lock);
}

void brisk__heap_node_stats(unsigned slot, uint64_t *mapped, uint64_t *free_bytes) {
  uint64_t m = 0, f = 0;
  for (heap_arena_t *a = &arenas[slot * HEAP_SHARDS_MAX]; a < &arenas[slot * HEAP_SHARDS_MAX] + shards(); a++) {
    brisk__lock(arena_lock(a));
    m += a->mapped;
    f += (uint64_t)(a->free_pages - a->returned_pages) * BRISK_PAGE_SIZE;
    brisk__unlock(arena_lock(a));
  }
  *mapped = m;
  *free_bytes = f;
}

/* Called by discovery after it has published the slots: a chunk grown later sees
 * them (the count is read under grow_lock) and is bound when it is grown. */
unsigned brisk__heap_take_early(brisk_range_t *out) {
  brisk__lock(&grow_lock);
  unsigned n = early_count;
  for (unsigned i = 0; i < n; i++) out[i] = early[i];
  early_count = 0;
  brisk__unlock(&grow_lock);
  return n;
}

uintptr_t brisk__heap_first_address(void) {
  brisk__lock(&grow_lock);
  uintptr_t a = first_address;
  brisk__unlock(&grow_lock);
  return a;
}

/* Every arena's lock in index order, then grow_lock: the statistics' walk and
 * fork, the only holders of more than one arena lock (see "Arenas"). */
static void lock_everything(void) {
  brisk__lock_rank_enter(BRISK_RANK_HEAP);
  for (unsigned i = 0; i < HEAP_ARENAS; i++) brisk__lock_fork(&arenas[i].lock);
  brisk__lock(&grow_lock);
}

static void unlock_everything(void) {
  brisk__unlock(&grow_lock);
  for (unsigned i = HEAP_ARENAS; i-- > 0;) brisk__unlock_fork(&arenas[i].lock);
  brisk__lock_rank_leave(BRISK_RANK_HEAP);
}

void brisk__heap_fork_lock(void) {
  for (unsigned i = 0; i < HEAP_ARENAS; i++) brisk__lock_fork(&arenas[i].lock);
  brisk__lock_fork(&grow_lock);
}

void brisk__heap_fork_unlock(void) {
  brisk__unlock_fork(&grow_lock);
  for (unsigned i = HEAP_ARENAS; i-- > 0;) brisk__unlock_fork(&arenas[i].lock);
}

/* ------------------------------------------------------------------------------
   Residency (the statistics): the heap's ranges, and each resident byte of them
   with the span that owns it. The walk goes span by span from each range's
   start (a span's first page is always in the page map), a page-map read per
   span, and asks the kernel window by window (BRISK_RESIDENT_WINDOW pages).
   Under every arena's lock (lock_everything), which fixes every FREE and LARGE span and every span's
   place (a SMALL span's own counts are its owner's, read as they are); the
   lock is dropped for each window's mincore, and when it is taken again the
   walk checks that the span it stands in is still there, whole. If it is not,
   the walk starts over from the range's start and keeps the lock to the
   range's end, so that it always finishes.
------------------------------------------------------------------------------ */

void brisk__heap_regions(brisk_region_fn fn, void *arg) {
  brisk__lock(&grow_lock);
  for (const heap_region_t *r = regions; r != NULL; r = r->next) fn(arg, r->start, r->end - r->start, BRISK_VMA_HEAP);
  brisk__unlock(&grow_lock);
}

typedef struct heap_walk_s {
  brisk_span_bytes_fn fn;
  void *arg;
  const brisk_span_t *span; /* the span of [from, to); NULL for a page in between owners */
  uintptr_t from, to;
} heap_walk_t;

/* The span that starts at page address p, or NULL: a SMALL span on its way back
 * to the heap clears its entries before it takes the lock, and then its pages
 * are nobody's for a moment (the walk takes them one by one, as free pages). */
static const brisk_span_t *span_at(uintptr_t p) {
  const brisk_span_t *s = brisk__pagemap_get((void *)p);
  return s != NULL && s->start == p && s->npages > 0 ? s : NULL;
}

static void heap_walk_run(void *arg, uintptr_t a, size_t len) {
  heap_walk_t *w = arg;
  uintptr_t end = a + len;
  while (a < end) {
    while (a >= w->to) { /* on to the next span: every one between has no resident byte */
      w->from = w->to;
      w->span = span_at(w->from);
      w->to = w->from + (w->span != NULL ? w->span->npages * BRISK_PAGE_SIZE : BRISK_PAGE_SIZE);
    }
    uintptr_t b = end < w->to ? end : w->to;
    w->fn(w->arg, w->span, a, b - a);
    a = b;
  }
}

/* Whether the walk's place holds: the span it stands in (or, before its first
 * step, the one it is about to take) is unchanged. */
static bool walk_in_place(const heap_walk_t *w) {
  if (w->from == w->to) return span_at(w->to) != NULL;
  return w->span != NULL && span_at(w->from) == w->span && w->to == w->from + w->span->npages * BRISK_PAGE_SIZE;
}

/* The range that holds at or comes first after it (NULL: none). */
static const heap_region_t *region_after(uintptr_t at) {
  const heap_region_t *r = regions;
  while (r != NULL && r->end <= at) r = r->next;
  return r;
}

void brisk__heap_resident(brisk_span_bytes_fn fn, void *arg) {
  unsigned char vec[BRISK_RESIDENT_WINDOW];
  const size_t window = BRISK_RESIDENT_WINDOW * brisk__os_page;
  heap_walk_t w = {fn, arg, NULL, 0, 0};
  uintptr_t at = 0;
  bool held = false; /* the lock stays to the end of this range */
  lock_everything();
  for (const heap_region_t *r; (r = region_after(at)) != NULL;) {
    if (at < r->start) { /* the next range: the walk starts at its first span */
      at = r->start;
      w.span = NULL;
      w.from = w.to = at;
      held = false;
    }
    uintptr_t base = at & ~(uintptr_t)(brisk__os_page - 1);
    uintptr_t end = base + window < r->end ? base + window : r->end;
    if (held) {
      brisk__os_mincore(base, end - base, vec);
    } else {
      unlock_everything();
      brisk__os_mincore(base, end - base, vec);
      lock_everything();
      if (!walk_in_place(&w)) { /* the spans moved meanwhile (the range may have grown too) */
        w.span = NULL;
        w.from = w.to = region_after(at)->start;
        held = true;
      }
    }
    brisk__os_vec_runs(vec, base, at, end, heap_walk_run, &w);
    at = end;
  }
  unlock_everything();
}
