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
 * span has every page mapped, for free()). heap_lock guards every free list,
 * every FREE span, the length of every LARGE one and the counters below.
 *
 * Decay: the heap keeps backed as many free pages as its use has fallen from its
 * peak of the last DEMAND_WINDOW_MS (what recent demand may take again); the rest
 * goes back (madvise) once DECAY_MIN_AGE_MS old, longest runs first. Memory freed
 * in bulk thus returns soon after the program stops asking, steady churn keeps
 * its swing, and anything free for the purge delay goes back too. The madvise
 * calls are made under the heap lock.
 *
 * NUMA: every span belongs to a slot (numa.c). Each slot has its own free lists;
 * a chunk the heap grows by belongs to the slot that asked for it and is bound to
 * that slot's node before anything touches it. Free spans of different slots
 * never coalesce. A slot whose node cannot grow (out of memory) takes another
 * slot's free pages rather than fail.
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

brisk_lock_t brisk__heap_lock = BRISK_LOCK_INIT(BRISK_RANK_HEAP);

typedef struct heap_slot_s {
  brisk_span_t *list[HEAP_LISTS];      /* free spans by list_index of their length */
  uint64_t mask[HEAP_MASK_WORDS];      /* bit i: list[i] is not empty */
  size_t free_pages;                   /* pages in free spans */
  size_t returned_pages;               /* of those, given back with madvise */
  size_t mapped;                       /* bytes grown for this slot */
} heap_slot_t;

static heap_slot_t heap[BRISK_MAX_NODES];
static size_t free_pages;     /* over all slots */
static size_t returned_pages; /* over all slots */
static size_t sbrk_bytes;
static uintptr_t first_address;
static uintptr_t sbrk_failed_at; /* the break when sbrk last failed; 0 while it works */
static brisk_range_t kept;       /* sbrk'd, without metadata yet, below a moved break */
static brisk_range_t early[BRISK_EARLY_RANGES];
static unsigned early_count;
static uintptr_t brk_end; /* where the heap's last sbrk chunk ends (0: none yet) */
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
/* Pages grown over all slots; the most of them in use (not free) since the last
 * decay tick, and that figure of the ticks before. */
static uint64_t heap_pages;
static uint64_t interval_peak;
typedef struct demand_sample_s {
  uint64_t ms, peak;
} demand_sample_t;
static demand_sample_t demand[DEMAND_SAMPLES];
static unsigned demand_next;

static void note_early(uintptr_t p, size_t bytes) {
  if (early_count > 0 && early[early_count - 1].start + early[early_count - 1].len == p)
    early[early_count - 1].len += bytes;
  else if (early_count < BRISK_EARLY_RANGES)
    early[early_count++] = (brisk_range_t){p, bytes};
  /* else: more scattered chunks than that only come from mmap in a program that
   * never had the break; those stay where first touch put them */
}

/* Descriptors that coalescing gives up and splitting needs again, kept under the
 * heap lock: a block freed next to a free run and taken again costs no trip to
 * the metadata lock. */
#define SPARE_DESCRIPTORS 16
static brisk_span_t *spare[SPARE_DESCRIPTORS];
static unsigned spare_count;

static brisk_span_t *desc_new_locked(void) {
  if (spare_count == 0) return brisk__span_new();
  brisk_span_t *s = spare[--spare_count];
  memset(s, 0, sizeof *s);
  return s;
}

static void desc_delete_locked(brisk_span_t *s) {
  s->state = 0; /* as brisk__span_delete: a stale pointer to it is nobody's */
  if (spare_count < SPARE_DESCRIPTORS) spare[spare_count++] = s;
  else brisk__span_delete(s);
}

static inline void note_used(void) {
  uint64_t used = heap_pages - free_pages;
  if (used > interval_peak) interval_peak = used;
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
static unsigned next_list(const heap_slot_t *h, unsigned i) {
  for (unsigned w = i / 64; w < HEAP_MASK_WORDS; w++) {
    uint64_t bits = h->mask[w] & (w == i / 64 ? ~(uint64_t)0 << (i % 64) : ~(uint64_t)0);
    if (bits != 0) return w * 64 + (unsigned)__builtin_ctzll(bits);
  }
  return HEAP_LISTS;
}

/* Free-page counters, per slot and in all: add (sign 1) or take away (-1) span s. */
static inline void count_pages(const brisk_span_t *s, int64_t sign) {
  heap_slot_t *h = &heap[s->node];
  size_t n = (size_t)(sign * (int64_t)s->npages), ret = s->purged ? n : 0;
  h->free_pages += n;
  h->returned_pages += ret;
  free_pages += n;
  returned_pages += ret;
}

static void list_push(brisk_span_t *s) {
  heap_slot_t *h = &heap[s->node];
  unsigned i = list_index(s->npages);
  s->prev = NULL;
  s->next = h->list[i];
  if (s->next) s->next->prev = s;
  h->list[i] = s;
  h->mask[i / 64] |= (uint64_t)1 << (i % 64);
  count_pages(s, 1);
}

static void list_remove(brisk_span_t *s) {
  heap_slot_t *h = &heap[s->node];
  if (s->prev) {
    s->prev->next = s->next;
  } else {
    unsigned i = list_index(s->npages);
    h->list[i] = s->next;
    if (s->next == NULL) h->mask[i / 64] &= ~((uint64_t)1 << (i % 64));
  }
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  count_pages(s, -1);
}

/* Mark s free, merge it with free neighbours and put it on its list. Page-map
 * entries of pages that become interior are cleared, so a stale pointer into a
 * free span never reaches a descriptor that has been reused. */
static void insert_coalesced(brisk_span_t *s, uint64_t now) {
  s->state = BRISK_SPAN_FREE;
  s->cls = 0;
  s->idle_since_ms = now;
  uintptr_t first = span_first_page(s);
  brisk_span_t *left = first > 0 ? brisk__pagemap_get((void *)((first - 1) << BRISK_PAGE_SHIFT)) : NULL;
  if (left != NULL && left->state == BRISK_SPAN_FREE && left->node == s->node) {
    list_remove(left);
    brisk__pagemap_put(span_last_page(left), NULL);
    brisk__pagemap_put(first, NULL);
    s->start = left->start;
    s->npages += left->npages;
    s->purged = s->purged && left->purged;
    if (left->idle_since_ms > s->idle_since_ms) s->idle_since_ms = left->idle_since_ms;
    desc_delete_locked(left);
  }
  brisk_span_t *right = brisk__pagemap_get((void *)((span_last_page(s) + 1) << BRISK_PAGE_SHIFT));
  if (right != NULL && right->state == BRISK_SPAN_FREE && right->node == s->node) {
    list_remove(right);
    brisk__pagemap_put(span_last_page(s), NULL);
    brisk__pagemap_put(span_first_page(right), NULL);
    s->npages += right->npages;
    s->purged = s->purged && right->purged;
    if (right->idle_since_ms > s->idle_since_ms) s->idle_since_ms = right->idle_since_ms;
    desc_delete_locked(right);
  }
  brisk__pagemap_put(span_first_page(s), s);
  brisk__pagemap_put(span_last_page(s), s);
  list_push(s);
}

/* sbrk first; the break is padded to a brisk page, so that every later chunk
 * that follows on contiguously is aligned too. *bytes: asked for on entry, got
 * on return. Another thread's sbrk between the two calls leaves the chunk off a
 * brisk page: it is lengthened by the missing piece while the break still ends
 * there, or else cut to its whole pages; what the break gave is never dropped,
 * but for less than a page that another user's bytes have made useless. */
static void *grow_sbrk(size_t *bytes) {
  char *cur = brisk__os_sbrk(0);
  if (cur == NULL) return NULL;
  size_t want = *bytes, pad = brisk__align_up((uintptr_t)cur, BRISK_PAGE_SIZE) - (uintptr_t)cur;
  char *p = brisk__os_sbrk(pad + want);
  if (p == NULL) return NULL;
  char *end = p + pad + want, *a = (char *)brisk__align_up((uintptr_t)p, BRISK_PAGE_SIZE);
  if (a + want <= end) return a; /* the break was where it was looked at, or moved less than the pad */
  if (brisk__os_sbrk(0) == end && brisk__os_sbrk((size_t)(a + want - end)) == end) return a;
  size_t whole = (size_t)(end - a) & ~(BRISK_PAGE_SIZE - 1);
  char *keep = whole > 0 ? a + whole : p;
  if (brisk__os_sbrk(0) == end) brisk__os_sbrk_release((size_t)(end - keep));
  if (whole == 0) return NULL;
  *bytes = whole;
  return a;
}

/* Pages of the slot's free run that ends where the break is, if the break is
 * still there: a chunk grown by sbrk joins that run, so only the rest is needed. */
static size_t top_free_pages(unsigned slot) {
  if (brk_end == 0 || brisk__os_sbrk(0) != (void *)brk_end) return 0;
  brisk_span_t *top = brisk__pagemap_get((void *)(brk_end - BRISK_PAGE_SIZE));
  if (top == NULL || top->state != BRISK_SPAN_FREE || top->node != slot) return 0;
  return top->npages;
}

/* Whether this growth asks the break first. After a failure (a mapping above
 * the break, a limit) sbrk is not tried again until the break has moved: its
 * other user has freed memory below a limit or taken the break past what was
 * in the way. grow_locked also tries it when mmap has failed too. */
static bool sbrk_worth_trying(void) {
  return brisk__opt.sbrk && (sbrk_failed_at == 0 || (uintptr_t)brisk__os_sbrk(0) != sbrk_failed_at);
}

/* A chunk from the break for npages: only what the slot's free run at the top
 * lacks (its resident pages serve first, and the break grows less), a whole
 * heap chunk unless the break is near a limit. */
static void *sbrk_chunk(unsigned slot, size_t npages, size_t chunk, size_t *bytes) {
  size_t top = top_free_pages(slot);
  size_t need = (npages > top ? npages - top : 1) * BRISK_PAGE_SIZE;
  *bytes = need > chunk ? need : chunk;
  void *p = grow_sbrk(bytes);
  if (p == NULL && need < *bytes) { /* near a limit */
    *bytes = need;
    p = grow_sbrk(bytes);
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

static void *mmap_chunk(size_t want, size_t chunk, size_t *bytes) {
  *bytes = want > chunk ? want : chunk;
  void *p = brisk__os_mmap_aligned(*bytes, BRISK_PAGE_SIZE, BRISK_VMA_HEAP);
  if (p == NULL && *bytes > want) { /* near the limit */
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

static bool grow_locked(unsigned slot, size_t npages) {
  size_t chunk = brisk__align_up(brisk__opt.heap_grow, BRISK_PAGE_SIZE), want = npages * BRISK_PAGE_SIZE;
  size_t bytes = kept.len;
  void *p = (void *)kept.start;
  bool from_sbrk = p != NULL;
  if (p == NULL) {
    bool asked = sbrk_worth_trying();
    if (asked) p = sbrk_chunk(slot, npages, chunk, &bytes);
    from_sbrk = p != NULL;
    if (p == NULL) p = mmap_chunk(want, chunk, &bytes);
    if (p == NULL && !asked && brisk__opt.sbrk) {
      /* The last resort: what was in the way may be gone, and the break needs
       * less than mmap where a free run ends at it. */
      p = sbrk_chunk(slot, npages, chunk, &bytes);
      from_sbrk = p != NULL;
    }
  }
  if (p == NULL) return false;
  if (region_spare == NULL && (region_spare = brisk__meta_alloc(sizeof(heap_region_t))) != NULL)
    region_spare->next = NULL;
  brisk_span_t *s = region_spare != NULL ? brisk__span_new() : NULL;
  if (s == NULL || !brisk__pagemap_ensure((uintptr_t)p >> BRISK_PAGE_SHIFT, bytes / BRISK_PAGE_SIZE)) {
    /* Out of memory for metadata: mmap'd memory goes back, sbrk'd memory to the
     * break or into kept. */
    if (s) brisk__span_delete(s);
    if (from_sbrk) sbrk_undo(p, bytes);
    else brisk__os_munmap(p, bytes);
    return false;
  }
  if (from_sbrk) {
    kept = (brisk_range_t){0, 0};
    sbrk_bytes += bytes;
    brk_end = (uintptr_t)p + bytes;
  }
  region_note((uintptr_t)p, bytes);
  if (first_address == 0) first_address = (uintptr_t)p;
  if (brisk__numa_count() < 2) note_early((uintptr_t)p, bytes);
  else brisk__numa_bind(p, bytes, slot); /* before the first touch places a page */
  brisk__stat_mapped((int64_t)bytes);
  heap[slot].mapped += bytes;
  heap_pages += bytes / BRISK_PAGE_SIZE;
  s->start = (uintptr_t)p;
  s->node = (uint8_t)slot;
  s->npages = bytes / BRISK_PAGE_SIZE;
  s->purged = 1; /* fresh pages cost no memory until touched */
  insert_coalesced(s, brisk__os_now_ms());
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

static brisk_span_t *find_locked(unsigned slot, size_t npages) {
  heap_slot_t *h = &heap[slot];
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

/* A run of exactly npages out of the free lists (the slot's own, grown, or as a
 * last resort another slot's), split from a longer one; NULL when memory is
 * exhausted. Its page-map entries are still the free run's (first and last).
 * Without a descriptor for the rest (metadata exhausted), a run at most 1/8
 * longer than asked goes out whole (its length says so); a longer one stays
 * free and the request fails: otherwise a span of a few objects, or a block of
 * a few pages, would hold the heap's longest run until it is freed, and under
 * an address-space limit each request then swallowed another. */
static brisk_span_t *take_locked(unsigned slot, size_t npages) {
  brisk_span_t *s = find_locked(slot, npages);
  /* A second growth when the first did not join the top run (another user of
   * the break moved it in between): the new chunk is the top run then. */
  for (int tries = 0; s == NULL && tries < 2 && grow_locked(slot, npages); tries++) s = find_locked(slot, npages);
  for (unsigned i = 0; s == NULL && i < brisk__numa_count(); i++) /* remote beats failing */
    if (i != slot) s = find_locked(i, npages);
  if (s == NULL) return NULL;
  list_remove(s);
  if (s->npages > npages) {
    brisk_span_t *rest = desc_new_locked();
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
      list_push(rest);
    } else if (s->npages - npages > npages / 8) {
      list_push(s);
      return NULL;
    }
  }
  if (s->node != slot) { /* the pages join the asking slot: its pools own them now */
    size_t bytes = s->npages * BRISK_PAGE_SIZE;
    heap[s->node].mapped -= bytes;
    heap[slot].mapped += bytes;
    s->node = (uint8_t)slot;
  }
  note_used();
  return s;
}

brisk_span_t *brisk__heap_alloc(unsigned slot, size_t npages) {
  brisk__lock(&brisk__heap_lock);
  brisk_span_t *s = take_locked(slot, npages);
  if (s != NULL) {
    s->state = BRISK_SPAN_SMALL;
    s->purged = 0;
    brisk__pagemap_set(span_first_page(s), s->npages, s);
  }
  brisk__unlock(&brisk__heap_lock);
  return s;
}

brisk_span_t *brisk__heap_alloc_large(unsigned slot, size_t npages, bool *zeroed) {
  brisk__lock(&brisk__heap_lock);
  brisk_span_t *s = take_locked(slot, npages);
  if (s != NULL) {
    *zeroed = s->purged;
    s->state = BRISK_SPAN_LARGE;
    s->purged = 0;
    s->alone = 0;
    brisk__pagemap_put(span_first_page(s), s);
    brisk__pagemap_put(span_last_page(s), s);
  }
  brisk__unlock(&brisk__heap_lock);
  return s;
}

/* Into the free lists, merged with free neighbours. The page-map entries of the
 * span beyond its first and last page must be clear already. */
static void span_release(brisk_span_t *s) {
  uint64_t now = brisk__os_now_ms();
  brisk__lock(&brisk__heap_lock);
  s->purged = 0;
  s->freelist = NULL;
  s->used = 0;
  insert_coalesced(s, now);
  uint64_t idle = (uint64_t)(free_pages - returned_pages) * BRISK_PAGE_SIZE;
  brisk__unlock(&brisk__heap_lock);
  brisk__purge_note_idle(idle);
}

void brisk__heap_free(brisk_span_t *s) {
  /* Every page of a SMALL span is in the map; nobody else reaches these entries
   * any more, so they are cleared before the lock is taken. */
  brisk__pagemap_set(span_first_page(s), s->npages, NULL);
  span_release(s);
}

void brisk__heap_free_large(brisk_span_t *s) { span_release(s); }

bool brisk__heap_grow_large(brisk_span_t *s, size_t npages) {
  size_t extra = npages - s->npages;
  brisk__lock(&brisk__heap_lock);
  uintptr_t next = (span_last_page(s) + 1) << BRISK_PAGE_SHIFT;
  brisk_span_t *right = brisk__pagemap_get((void *)next);
  /* At the top of the break (nothing after s, or a free run too short that ends
   * there), the heap grows by what is missing, and the new chunk joins the run. */
  bool short_top = right != NULL && right->state == BRISK_SPAN_FREE && right->node == s->node &&
                   right->npages < extra && (span_last_page(right) + 1) << BRISK_PAGE_SHIFT == brk_end;
  if (((right == NULL && next == brk_end) || short_top) && grow_locked(s->node, extra)) /* less the top run */
    right = brisk__pagemap_get((void *)next);
  if (right == NULL || right->state != BRISK_SPAN_FREE || right->node != s->node || right->npages < extra) {
    brisk__unlock(&brisk__heap_lock);
    return false;
  }
  list_remove(right);
  brisk__pagemap_put(span_first_page(right), NULL);
  if (right->npages > extra) {
    right->start += extra * BRISK_PAGE_SIZE;
    right->npages -= extra;
    brisk__pagemap_put(span_first_page(right), right);
    list_push(right);
  } else {
    desc_delete_locked(right);
  }
  if (s->npages > 1) brisk__pagemap_put(span_last_page(s), NULL); /* interior now */
  s->npages = npages;
  brisk__pagemap_put(span_last_page(s), s);
  note_used();
  brisk__unlock(&brisk__heap_lock);
  return true;
}

void brisk__heap_shrink_large(brisk_span_t *s, size_t npages) {
  brisk_span_t *tail = brisk__span_new();
  if (tail == NULL) return; /* out of metadata: the block just stays longer */
  uint64_t now = brisk__os_now_ms();
  brisk__lock(&brisk__heap_lock);
  tail->start = s->start + npages * BRISK_PAGE_SIZE;
  tail->npages = s->npages - npages;
  tail->node = s->node;
  tail->purged = 0;
  s->npages = npages;
  brisk__pagemap_put(span_last_page(s), s);
  insert_coalesced(tail, now); /* sets or clears the entry of the old last page */
  uint64_t idle = (uint64_t)(free_pages - returned_pages) * BRISK_PAGE_SIZE;
  brisk__unlock(&brisk__heap_lock);
  brisk__purge_note_idle(idle);
}

/* Give back the runs of list s idle for min_idle, until *budget pages are gone
 * (the last run may take the budget below zero). */
static size_t purge_list(brisk_span_t *s, uint64_t now, uint64_t min_idle, int64_t *budget) {
  size_t bytes = 0;
  for (; s != NULL && *budget > 0; s = s->next) {
    if (s->purged || now - s->idle_since_ms < min_idle) continue;
    brisk__os_purge((void *)s->start, s->npages * BRISK_PAGE_SIZE);
    s->purged = 1;
    heap[s->node].returned_pages += s->npages;
    returned_pages += s->npages;
    bytes += s->npages * BRISK_PAGE_SIZE;
    *budget -= (int64_t)s->npages;
  }
  return bytes;
}

/* Longest runs first: the fewest calls per byte, and the runs that a steady
 * program's next small request needs least. */
static size_t purge_locked(uint64_t now, uint64_t min_idle, int64_t budget) {
  size_t bytes = 0;
  for (unsigned slot = 0; slot < brisk__numa_count() && budget > 0; slot++) {
    heap_slot_t *h = &heap[slot];
    if (h->free_pages == h->returned_pages) continue;
    for (unsigned i = HEAP_LISTS; i-- > 1 && budget > 0;) bytes += purge_list(h->list[i], now, min_idle, &budget);
  }
  return bytes;
}

size_t brisk__heap_purge(uint64_t now, uint64_t min_idle) {
  brisk__lock(&brisk__heap_lock);
  size_t bytes = purge_locked(now, min_idle, INT64_MAX);
  brisk__unlock(&brisk__heap_lock);
  return bytes;
}

size_t brisk__heap_decay(uint64_t now, uint64_t delay) {
  brisk__lock(&brisk__heap_lock);
  /* Demand: how far use has fallen from its peak within the window. */
  uint64_t used = heap_pages - free_pages, peak = interval_peak;
  for (unsigned i = 0; i < DEMAND_SAMPLES; i++)
    if (demand[i].ms != 0 && now - demand[i].ms <= DEMAND_WINDOW_MS && demand[i].peak > peak) peak = demand[i].peak;
  uint64_t want = peak > used ? peak - used : 0;
  demand[demand_next] = (demand_sample_t){now, interval_peak};
  demand_next = (demand_next + 1) % DEMAND_SAMPLES;
  interval_peak = used;
  size_t bytes = purge_locked(now, delay, INT64_MAX);
  uint64_t dirty = free_pages - returned_pages;
  if (dirty > want) bytes += purge_locked(now, DECAY_MIN_AGE_MS, (int64_t)(dirty - want));
  brisk__unlock(&brisk__heap_lock);
  return bytes;
}

void brisk__heap_stats(uint64_t *free_bytes, uint64_t *returned_bytes, uint64_t *sbrk_out) {
  brisk__lock(&brisk__heap_lock);
  *free_bytes = (uint64_t)(free_pages - returned_pages) * BRISK_PAGE_SIZE;
  *returned_bytes = (uint64_t)returned_pages * BRISK_PAGE_SIZE;
  *sbrk_out = sbrk_bytes;
  brisk__unlock(&brisk__heap_lock);
}

void brisk__heap_node_stats(unsigned slot, uint64_t *mapped, uint64_t *free_bytes) {
  brisk__lock(&brisk__heap_lock);
  *mapped = heap[slot].mapped;
  *free_bytes = (uint64_t)(heap[slot].free_pages - heap[slot].returned_pages) * BRISK_PAGE_SIZE;
  brisk__unlock(&brisk__heap_lock);
}

/* Called by discovery after it has published the slots: a chunk grown later sees
 * them (the count is read under this lock) and is bound when it is grown. */
unsigned brisk__heap_take_early(brisk_range_t *out) {
  brisk__lock(&brisk__heap_lock);
  unsigned n = early_count;
  for (unsigned i = 0; i < n; i++) out[i] = early[i];
  early_count = 0;
  brisk__unlock(&brisk__heap_lock);
  return n;
}

uintptr_t brisk__heap_first_address(void) {
  brisk__lock(&brisk__heap_lock);
  uintptr_t a = first_address;
  brisk__unlock(&brisk__heap_lock);
  return a;
}

/* ------------------------------------------------------------------------------
   Residency (the statistics): the heap's ranges, and each resident byte of them
   with the span that owns it. The walk goes span by span from each range's
   start (a span's first page is always in the page map), a page-map read per
   span, and asks the kernel window by window (BRISK_RESIDENT_WINDOW pages).
   Under the heap lock, which fixes every FREE and LARGE span and every span's
   place (a SMALL span's own counts are its owner's, read as they are); the
   lock is dropped for each window's mincore, and when it is taken again the
   walk checks that the span it stands in is still there, whole. If it is not,
   the walk starts over from the range's start and keeps the lock to the
   range's end, so that it always finishes.
------------------------------------------------------------------------------ */

void brisk__heap_regions(brisk_region_fn fn, void *arg) {
  brisk__lock(&brisk__heap_lock);
  for (const heap_region_t *r = regions; r != NULL; r = r->next) fn(arg, r->start, r->end - r->start, BRISK_VMA_HEAP);
  brisk__unlock(&brisk__heap_lock);
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
  brisk__lock(&brisk__heap_lock);
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
      brisk__unlock(&brisk__heap_lock);
      brisk__os_mincore(base, end - base, vec);
      brisk__lock(&brisk__heap_lock);
      if (!walk_in_place(&w)) { /* the spans moved meanwhile (the range may have grown too) */
        w.span = NULL;
        w.from = w.to = region_after(at)->start;
        held = true;
      }
    }
    brisk__os_vec_runs(vec, base, at, end, heap_walk_run, &w);
    at = end;
  }
  brisk__unlock(&brisk__heap_lock);
}
