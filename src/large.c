/* Large blocks: every request above BRISK_SMALL_MAX (or with an alignment the
 * classes cannot give) is its own mmap, page aligned, described by one span whose
 * first page is in the page map. A freed block is kept in a cache and reused by
 * a later request of about its size without a system call; the cache is bounded
 * (BRISK_LARGE_CACHE, the oldest go first) and a block idle for a purge delay is
 * unmapped. realloc grows with mremap and shrinks by unmapping the tail: the
 * contents are never copied.
 *
 * large_lock guards the cache lists and the counters; a span in use belongs to
 * the program's block, and only its owner's free or realloc touches it. System
 * calls are made outside the lock.
 *
 * NUMA: a fresh block is bound to the node of the thread that asks for it (or
 * interleaved over all nodes with BRISK_NUMA=interleave), and the size bins are
 * kept per slot, so a cached block is only reused on its own node; the eviction
 * order and the cache budget are shared by all slots. */
#include "internal.h"

/* A cached block serves a request up to this fraction smaller than itself; the
 * slack is at most a quarter, the same order as the small classes' rounding. */
#define REUSE_SLACK_SHIFT 2
/* Bound on cached blocks, however small. */
#define CACHE_MAX_COUNT 64

/* Large mappings are sized in whole brisk pages (or OS pages, if larger): the
 * page map knows a large block by its first brisk page, and a mapping of a single
 * 4 KiB OS page would let the kernel put the next mapping into that same brisk
 * page. */
static inline size_t large_granule(void) {
  return brisk__os_page > BRISK_PAGE_SIZE ? brisk__os_page : BRISK_PAGE_SIZE;
}

brisk_lock_t brisk__large_lock = BRISK_LOCK_INIT;

/* The cache: every cached block is on one list in the order it was freed (for
 * eviction and purging, oldest at the tail) and on the list of its size bin (for
 * lookup). Bins split each doubling of the size in four, so a request looks at
 * its own bin and the next, whose blocks are within the reuse slack or just
 * past it, instead of scanning the whole cache under the lock. */
#define CACHE_BINS 128

static brisk_span_t *lru_head, *lru_tail;
static brisk_span_t *bin_head[BRISK_MAX_NODES][CACHE_BINS];
static size_t cache_bytes, cache_count;
static size_t in_use_bytes, in_use_count;
static size_t node_in_use[BRISK_MAX_NODES], node_cached[BRISK_MAX_NODES];

static unsigned bin_of(size_t bytes) {
  size_t n = bytes >> BRISK_PAGE_SHIFT;
  if (n < 8) return (unsigned)n;
  unsigned k = 63u - (unsigned)__builtin_clzll(n);
  unsigned b = 8 + (k - 3) * 4 + (unsigned)((n >> (k - 2)) & 3);
  return b < CACHE_BINS ? b : CACHE_BINS - 1;
}

static void cache_remove(brisk_span_t *s) {
  if (s->prev) s->prev->next = s->next;
  else lru_head = s->next;
  if (s->next) s->next->prev = s->prev;
  else lru_tail = s->prev;
  if (s->bprev) s->bprev->bnext = s->bnext;
  else bin_head[s->node][bin_of(s->map_size)] = s->bnext;
  if (s->bnext) s->bnext->bprev = s->bprev;
  s->next = s->prev = s->bnext = s->bprev = NULL;
  cache_bytes -= s->map_size;
  node_cached[s->node] -= s->map_size;
  cache_count--;
}

static void cache_push(brisk_span_t *s) {
  s->prev = NULL;
  s->next = lru_head;
  if (lru_head) lru_head->prev = s;
  else lru_tail = s;
  lru_head = s;
  brisk_span_t **bin = &bin_head[s->node][bin_of(s->map_size)];
  s->bprev = NULL;
  s->bnext = *bin;
  if (*bin) (*bin)->bprev = s;
  *bin = s;
  cache_bytes += s->map_size;
  node_cached[s->node] += s->map_size;
  cache_count++;
}

static void span_unmap(brisk_span_t *s) {
  brisk__pagemap_set(s->start >> BRISK_PAGE_SHIFT, 1, NULL);
  brisk__os_munmap((void *)s->start, s->map_size);
  brisk__stat_mapped(-(int64_t)s->map_size);
  brisk__span_delete(s);
}

static void unmap_list(brisk_span_t *s) {
  while (s != NULL) {
    brisk_span_t *next = s->next;
    span_unmap(s);
    s = next;
  }
}

static brisk_span_t *cache_find_locked(unsigned slot, size_t map, size_t align) {
  unsigned b = bin_of(map);
  for (unsigned bb = b; bb <= b + 1 && bb < CACHE_BINS; bb++)
    for (brisk_span_t *s = bin_head[slot][bb]; s != NULL; s = s->bnext)
      if (s->map_size >= map && s->map_size - map <= map >> REUSE_SLACK_SHIFT &&
          (s->start & (align - 1)) == 0)
        return s;
  return NULL;
}

void *brisk__large_alloc(size_t size, size_t align, bool zero) {
  if (size > PTRDIFF_MAX - 2 * brisk__os_page) {
    errno = ENOMEM;
    return NULL;
  }
  if (brisk__boot_active()) return brisk__boot_alloc(size, align);
  if (align < brisk__os_page) align = brisk__os_page;
  size_t map = brisk__align_up(size ? size : 1, large_granule());
  unsigned slot = brisk__numa_count() > 1 ? brisk__numa_large_slot(brisk__numa_slot_now()) : 0;
  brisk__purge_tick();
  brisk__lock(&brisk__large_lock);
  brisk_span_t *s = cache_find_locked(slot, map, align);
  if (s != NULL) {
    cache_remove(s);
    s->state = BRISK_SPAN_LARGE;
    s->req_size = size;
    in_use_bytes += s->map_size;
    node_in_use[slot] += s->map_size;
    in_use_count++;
    brisk__unlock(&brisk__large_lock);
    if (zero) memset((void *)s->start, 0, s->map_size); /* up to the usable size */
    return (void *)s->start;
  }
  brisk__unlock(&brisk__large_lock);

  void *p = brisk__os_mmap_aligned(map, align);
  if (p == NULL && brisk__large_purge(UINT64_MAX, 0) > 0) /* the cache was in the way */
    p = brisk__os_mmap_aligned(map, align);
  if (p == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  s = brisk__span_new();
  if (s == NULL) {
    brisk__os_munmap(p, map);
    errno = ENOMEM;
    return NULL;
  }
  if (brisk__opt.numa == BRISK_NUMA_INTERLEAVE && brisk__numa_count() > 1)
    brisk__numa_bind_interleave(p, map);
  else
    brisk__numa_bind(p, map, slot);
  s->start = (uintptr_t)p;
  s->map_size = map;
  s->req_size = size;
  s->npages = (map + BRISK_PAGE_SIZE - 1) / BRISK_PAGE_SIZE;
  s->state = BRISK_SPAN_LARGE;
  s->node = (uint8_t)slot;
  if (!brisk__pagemap_set(s->start >> BRISK_PAGE_SHIFT, 1, s)) {
    brisk__span_delete(s);
    brisk__os_munmap(p, map);
    errno = ENOMEM;
    return NULL;
  }
  brisk__stat_mapped((int64_t)map);
  brisk__lock(&brisk__large_lock);
  in_use_bytes += map;
  node_in_use[slot] += map;
  in_use_count++;
  brisk__unlock(&brisk__large_lock);
  return p; /* fresh anonymous memory is already zero */
}

size_t brisk__large_rounded(size_t size) { return brisk__align_up(size ? size : 1, large_granule()); }

static void large_check(brisk_span_t *s, void *p, const char *call) {
  if ((uintptr_t)p != s->start) brisk__fatal(call, "invalid pointer", p);
  if (s->state != BRISK_SPAN_LARGE) brisk__fatal(call, "double free", p);
}

void brisk__large_free(brisk_span_t *s, void *p, const char *call) {
  large_check(s, p, call);
  brisk_span_t *evict = NULL;
  uint64_t now = brisk__os_now_ms();
  brisk__lock(&brisk__large_lock);
  in_use_bytes -= s->map_size;
  node_in_use[s->node] -= s->map_size;
  in_use_count--;
  if (s->map_size > brisk__opt.large_cache_bytes) {
    s->state = BRISK_SPAN_CACHED; /* a second free until unmapped still aborts */
    brisk__unlock(&brisk__large_lock);
    span_unmap(s);
    return;
  }
  s->state = BRISK_SPAN_CACHED;
  s->idle_since_ms = now;
  /* Over budget: the least recently freed blocks go first. */
  while (lru_tail != NULL &&
         (cache_count >= CACHE_MAX_COUNT || cache_bytes + s->map_size > brisk__opt.large_cache_bytes)) {
    brisk_span_t *old = lru_tail;
    cache_remove(old);
    old->next = evict;
    evict = old;
  }
  cache_push(s);
  uint64_t idle = cache_bytes;
  brisk__unlock(&brisk__large_lock);
  unmap_list(evict);
  brisk__purge_note_idle(idle);
  brisk__purge_tick();
}

void *brisk__large_realloc(brisk_span_t *s, void *p, size_t size) {
  large_check(s, p, "realloc()");
  if (size > PTRDIFF_MAX - 2 * brisk__os_page) {
    errno = ENOMEM;
    return NULL;
  }
  size_t map = brisk__align_up(size ? size : 1, large_granule());
  size_t old = s->map_size;
  if (map <= old) {
    if (map < old) { /* shrink in place: the tail goes back to the OS */
      brisk__os_munmap((char *)p + map, old - map);
      brisk__stat_mapped(-(int64_t)(old - map));
      brisk__lock(&brisk__large_lock);
      in_use_bytes -= old - map;
      node_in_use[s->node] -= old - map;
      brisk__unlock(&brisk__large_lock);
      s->map_size = map;
      s->npages = (map + BRISK_PAGE_SIZE - 1) / BRISK_PAGE_SIZE;
    }
    s->req_size = size;
    return p;
  }
  /* Unpublish first: once mremap moves the block, the kernel may hand the old
   * address to another thread's mmap, whose span must not be overwritten. */
  uintptr_t page = s->start >> BRISK_PAGE_SHIFT;
  brisk__pagemap_set(page, 1, NULL);
  void *q = brisk__os_mremap(p, old, map);
  if (q == NULL) {
    brisk__pagemap_set(page, 1, s);
    errno = ENOMEM;
    return NULL;
  }
  s->start = (uintptr_t)q;
  s->map_size = map;
  s->req_size = size;
  s->npages = (map + BRISK_PAGE_SIZE - 1) / BRISK_PAGE_SIZE;
  if (!brisk__pagemap_set(s->start >> BRISK_PAGE_SHIFT, 1, s))
    brisk__fatal("realloc()", "out of memory for the page map after mremap of", q);
  brisk__stat_mapped((int64_t)(map - old));
  brisk__lock(&brisk__large_lock);
  in_use_bytes += map - old;
  node_in_use[s->node] += map - old;
  brisk__unlock(&brisk__large_lock);
  return q;
}

size_t brisk__large_purge(uint64_t now, uint64_t min_idle) {
  brisk_span_t *evict = NULL;
  size_t bytes = 0;
  brisk__lock(&brisk__large_lock);
  /* oldest first; the first one too young ends the walk */
  while (lru_tail != NULL && now - lru_tail->idle_since_ms >= min_idle) {
    brisk_span_t *s = lru_tail;
    cache_remove(s);
    bytes += s->map_size;
    s->next = evict;
    evict = s;
  }
  brisk__unlock(&brisk__large_lock);
  unmap_list(evict);
  return bytes;
}

void brisk__large_stats(uint64_t *in_use, uint64_t *cached, uint64_t *count) {
  brisk__lock(&brisk__large_lock);
  *in_use = in_use_bytes;
  *cached = cache_bytes;
  *count = in_use_count;
  brisk__unlock(&brisk__large_lock);
}

void brisk__large_node_stats(unsigned slot, uint64_t *in_use, uint64_t *cached) {
  brisk__lock(&brisk__large_lock);
  *in_use = node_in_use[slot];
  *cached = node_cached[slot];
  brisk__unlock(&brisk__large_lock);
}
