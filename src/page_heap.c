/* The page heap: runs of brisk pages (spans) for the small-object classes.
 *
 * Memory comes from sbrk in chunks of BRISK_HEAP_GROW bytes, so the small heap is
 * one contiguous range for as long as the program break can grow; when it cannot
 * (another mapping in the way, RLIMIT_DATA, BRISK_SBRK=0) regions are mmap'd
 * instead and nothing else changes. Heap memory is never unmapped: freed pages are
 * given back with madvise(MADV_DONTNEED) once idle, which keeps their addresses
 * valid for the page map and for coalescing.
 *
 * Free spans sit in lists by length (exact up to HEAP_EXACT pages, one list of
 * longer ones) and coalesce with free neighbours on free; only a free span's first
 * and last pages are in the page map, which is all coalescing needs. heap_lock
 * guards every free list, every FREE span and the counters below.
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
#include "internal.h"

#define HEAP_EXACT 128

brisk_lock_t brisk__heap_lock = BRISK_LOCK_INIT;

typedef struct heap_slot_s {
  brisk_span_t *exact[HEAP_EXACT + 1]; /* [n]: free spans of n pages */
  brisk_span_t *longer;                /* free spans of more pages */
  size_t free_pages;                   /* pages in free spans */
  size_t returned_pages;               /* of those, given back with madvise */
  size_t mapped;                       /* bytes grown for this slot */
} heap_slot_t;

static heap_slot_t heap[BRISK_MAX_NODES];
static size_t free_pages;     /* over all slots */
static size_t returned_pages; /* over all slots */
static size_t sbrk_bytes;
static uintptr_t first_address;
static bool sbrk_failed;
static brisk_range_t early[BRISK_EARLY_RANGES];
static unsigned early_count;

static void note_early(uintptr_t p, size_t bytes) {
  if (early_count > 0 && early[early_count - 1].start + early[early_count - 1].len == p)
    early[early_count - 1].len += bytes;
  else if (early_count < BRISK_EARLY_RANGES)
    early[early_count++] = (brisk_range_t){p, bytes};
  /* else: more scattered chunks than that only come from mmap in a program that
   * never had the break; those stay where first touch put them */
}

static inline uintptr_t span_first_page(const brisk_span_t *s) { return s->start >> BRISK_PAGE_SHIFT; }
static inline uintptr_t span_last_page(const brisk_span_t *s) { return span_first_page(s) + s->npages - 1; }

static brisk_span_t **list_for(const brisk_span_t *s) {
  heap_slot_t *h = &heap[s->node];
  return s->npages <= HEAP_EXACT ? &h->exact[s->npages] : &h->longer;
}

/* Free-page counters, per slot and in all: add (or take away) span s. */
static void count_pages(const brisk_span_t *s, bool add) {
  heap_slot_t *h = &heap[s->node];
  size_t ret = s->purged ? s->npages : 0;
  if (add) {
    h->free_pages += s->npages;
    h->returned_pages += ret;
    free_pages += s->npages;
    returned_pages += ret;
  } else {
    h->free_pages -= s->npages;
    h->returned_pages -= ret;
    free_pages -= s->npages;
    returned_pages -= ret;
  }
}

static void list_push(brisk_span_t *s) {
  brisk_span_t **head = list_for(s);
  s->prev = NULL;
  s->next = *head;
  if (*head) (*head)->prev = s;
  *head = s;
  count_pages(s, true);
}

static void list_remove(brisk_span_t *s) {
  if (s->prev) s->prev->next = s->next;
  else *list_for(s) = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  count_pages(s, false);
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
    brisk__pagemap_set(span_last_page(left), 1, NULL);
    brisk__pagemap_set(first, 1, NULL);
    s->start = left->start;
    s->npages += left->npages;
    s->purged = s->purged && left->purged;
    if (left->idle_since_ms > s->idle_since_ms) s->idle_since_ms = left->idle_since_ms;
    brisk__span_delete(left);
  }
  brisk_span_t *right = brisk__pagemap_get((void *)((span_last_page(s) + 1) << BRISK_PAGE_SHIFT));
  if (right != NULL && right->state == BRISK_SPAN_FREE && right->node == s->node) {
    list_remove(right);
    brisk__pagemap_set(span_last_page(s), 1, NULL);
    brisk__pagemap_set(span_first_page(right), 1, NULL);
    s->npages += right->npages;
    s->purged = s->purged && right->purged;
    if (right->idle_since_ms > s->idle_since_ms) s->idle_since_ms = right->idle_since_ms;
    brisk__span_delete(right);
  }
  brisk__pagemap_set(span_first_page(s), 1, s);
  brisk__pagemap_set(span_last_page(s), 1, s);
  list_push(s);
}

/* sbrk first; the break is padded to a brisk page once so every later chunk that
 * follows on contiguously is aligned too. */
static void *grow_sbrk(size_t bytes) {
  void *cur = brisk__os_sbrk(0);
  if (cur == NULL) return NULL;
  size_t pad = brisk__align_up((uintptr_t)cur, BRISK_PAGE_SIZE) - (uintptr_t)cur;
  char *p = brisk__os_sbrk(pad + bytes);
  if (p == NULL) return NULL;
  if (p != cur) { /* someone else moved the break between the two calls */
    uintptr_t a = brisk__align_up((uintptr_t)p, BRISK_PAGE_SIZE);
    if (a + bytes > (uintptr_t)p + pad + bytes) return NULL; /* leave the odd piece */
    return (void *)a;
  }
  return p + pad;
}

static bool grow_locked(unsigned slot, size_t npages) {
  size_t bytes = brisk__align_up(brisk__opt.heap_grow, BRISK_PAGE_SIZE);
  if (npages * BRISK_PAGE_SIZE > bytes) bytes = npages * BRISK_PAGE_SIZE;
  void *p = NULL;
  bool from_sbrk = false;
  if (brisk__opt.sbrk && !sbrk_failed) {
    p = grow_sbrk(bytes);
    if (p != NULL) from_sbrk = true;
    else {
      /* Sticky: a break that could not grow once (a mapping above it, a limit)
       * rarely can later, and each failed try is a system call. */
      sbrk_failed = true;
      if (brisk__opt.verbose) brisk__printf_err("brisk: sbrk failed, using mmap for the heap\n");
    }
  }
  if (p == NULL) p = brisk__os_mmap_aligned(bytes, BRISK_PAGE_SIZE);
  if (p == NULL && bytes > npages * BRISK_PAGE_SIZE) { /* near the limit: just what is needed */
    bytes = npages * BRISK_PAGE_SIZE;
    p = brisk__os_mmap_aligned(bytes, BRISK_PAGE_SIZE);
  }
  if (p == NULL && brisk__large_purge(UINT64_MAX, 0) > 0) /* cached large blocks were in the way */
    p = brisk__os_mmap_aligned(bytes, BRISK_PAGE_SIZE);
  if (p == NULL) return false;
  brisk_span_t *s = brisk__span_new();
  if (s == NULL || !brisk__pagemap_ensure((uintptr_t)p >> BRISK_PAGE_SHIFT, bytes / BRISK_PAGE_SIZE)) {
    /* Out of memory for metadata: sbrk'd memory is kept for the next try, mmap'd
     * memory goes back. */
    if (s) brisk__span_delete(s);
    if (!from_sbrk) brisk__os_munmap(p, bytes);
    return false;
  }
  if (from_sbrk) sbrk_bytes += bytes;
  if (first_address == 0) first_address = (uintptr_t)p;
  if (brisk__numa_count() < 2) note_early((uintptr_t)p, bytes);
  else brisk__numa_bind(p, bytes, slot); /* before the first touch places a page */
  brisk__stat_mapped((int64_t)bytes);
  heap[slot].mapped += bytes;
  s->start = (uintptr_t)p;
  s->node = (uint8_t)slot;
  s->npages = bytes / BRISK_PAGE_SIZE;
  s->purged = 1; /* fresh pages cost no memory until touched */
  insert_coalesced(s, brisk__os_now_ms());
  return true;
}

static brisk_span_t *find_locked(unsigned slot, size_t npages) {
  heap_slot_t *h = &heap[slot];
  for (size_t n = npages; n <= HEAP_EXACT; n++)
    if (h->exact[n] != NULL) return h->exact[n];
  brisk_span_t *best = NULL;
  for (brisk_span_t *s = h->longer; s != NULL; s = s->next)
    if (s->npages >= npages && (best == NULL || s->npages < best->npages)) best = s;
  return best;
}

brisk_span_t *brisk__heap_alloc(unsigned slot, size_t npages) {
  brisk__lock(&brisk__heap_lock);
  brisk_span_t *s = find_locked(slot, npages);
  if (s == NULL && grow_locked(slot, npages)) s = find_locked(slot, npages);
  for (unsigned i = 0; s == NULL && i < brisk__numa_count(); i++) /* remote beats failing */
    if (i != slot) s = find_locked(i, npages);
  if (s == NULL) {
    brisk__unlock(&brisk__heap_lock);
    return NULL;
  }
  list_remove(s);
  if (s->npages > npages) {
    brisk_span_t *rest = brisk__span_new();
    if (rest != NULL) {
      rest->start = s->start + npages * BRISK_PAGE_SIZE;
      rest->npages = s->npages - npages;
      rest->purged = s->purged;
      rest->state = BRISK_SPAN_FREE;
      rest->idle_since_ms = s->idle_since_ms;
      rest->node = s->node;
      s->npages = npages;
      brisk__pagemap_set(span_first_page(rest), 1, rest);
      brisk__pagemap_set(span_last_page(rest), 1, rest);
      list_push(rest);
    } /* else: hand out the whole span; its length says so */
  }
  if (s->node != slot) { /* the pages join the asking slot: its central lists own them now */
    size_t bytes = s->npages * BRISK_PAGE_SIZE;
    heap[s->node].mapped -= bytes;
    heap[slot].mapped += bytes;
    s->node = (uint8_t)slot;
  }
  s->state = BRISK_SPAN_SMALL;
  s->purged = 0;
  brisk__pagemap_set(span_first_page(s), s->npages, s);
  brisk__unlock(&brisk__heap_lock);
  return s;
}

void brisk__heap_free(brisk_span_t *s) {
  uint64_t now = brisk__os_now_ms();
  brisk__lock(&brisk__heap_lock);
  brisk__pagemap_set(span_first_page(s), s->npages, NULL);
  s->purged = 0;
  s->freelist = NULL;
  s->used = 0;
  insert_coalesced(s, now);
  uint64_t idle = (uint64_t)(free_pages - returned_pages) * BRISK_PAGE_SIZE;
  brisk__unlock(&brisk__heap_lock);
  brisk__purge_note_idle(idle);
}

static size_t purge_list(brisk_span_t *s, uint64_t now, uint64_t min_idle) {
  size_t bytes = 0;
  for (; s != NULL; s = s->next) {
    if (s->purged || now - s->idle_since_ms < min_idle) continue;
    brisk__os_purge((void *)s->start, s->npages * BRISK_PAGE_SIZE);
    s->purged = 1;
    heap[s->node].returned_pages += s->npages;
    returned_pages += s->npages;
    bytes += s->npages * BRISK_PAGE_SIZE;
  }
  return bytes;
}

size_t brisk__heap_purge(uint64_t now, uint64_t min_idle) {
  size_t bytes = 0;
  brisk__lock(&brisk__heap_lock);
  for (unsigned slot = 0; slot < brisk__numa_count(); slot++) {
    heap_slot_t *h = &heap[slot];
    if (h->free_pages == h->returned_pages) continue;
    for (size_t n = 1; n <= HEAP_EXACT; n++) bytes += purge_list(h->exact[n], now, min_idle);
    bytes += purge_list(h->longer, now, min_idle);
  }
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
