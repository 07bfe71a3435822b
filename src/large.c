/* Large blocks: every request above BRISK_SMALL_MAX (or with an alignment the
 * classes cannot give). Below BRISK_LARGE_MMAP bytes a block is a run of pages of
 * the page heap (page_heap.c), whole slices of 64 KiB (below): the best fit among
 * the free runs of the thread's node, split off and coalesced again when freed,
 * so a freed block's pages serve
 * the next request of any smaller size while they are still resident, and what
 * lies free goes back on the heap's decay. From BRISK_LARGE_MMAP up (and for an
 * alignment above a brisk page, or under BRISK_NUMA=interleave) a block is mapped
 * alone and unmapped when freed: there a page fault per page costs little next to
 * what the program does with that much memory, and the address space goes back.
 *
 * realloc: a heap block grows in place into the free run after it, or else moves
 * into the best fit (a copy into pages that are usually resident); it shrinks in
 * place, its tail going back to the heap. A block mapped alone grows with mremap
 * and shrinks by unmapping its tail. No lock of its own: the arena's lock guards the
 * runs, and the counters are the thread's own or atomic (counters.h).
 *
 * The spare: a thread keeps the last heap block it freed (up to SPARE_MAX_BYTES)
 * and serves its next request of about that size from it without a heap lock,
 * as a program that frees and allocates a buffer of one size in a loop does; the
 * block it replaces goes back to the heap. It is the thread's, under its gate
 * (no lock; see "Idle threads" in thread_cache.c), in state SPARE (a second free
 * of it aborts, coalescing passes it by), and goes back at thread exit, at
 * malloc_trim and when the purge tick finds the thread idle.
 *
 * A block of the heap profile (prof.c) carries its record on its span, and its
 * free forgets it; alloc.c serves a profiled small request here as well, so
 * that its free comes here too.
 *
 * The blocks mapped alone are on a list (alone_lock, through their spans'
 * next/prev), for the statistics' residency walk: a block leaves it before its
 * memory is unmapped or moved, and the walk measures each under the lock. */
#include "large.h"
#include "prof.h"
#include "page_heap.h"
#include "numa.h"
#include "boot.h"
#include "meta.h"
#include "pagemap.h"
#include "options.h"
#include "os.h"
#include "thread_cache.h" /* upward: BRISK_TC_LIVE, brisk__boot_active, brisk__gate_enter, brisk__gate_leave, brisk__tc, brisk_tcache_t */
#include "counters.h"

/* Blocks mapped alone are sized in whole brisk pages (or OS pages, if larger): the
 * page map knows such a block by its first brisk page, and a mapping of a single
 * 4 KiB OS page would let the kernel put the next mapping into that same brisk
 * page. */
static inline size_t large_granule(void) {
  return brisk__os_page > BRISK_PAGE_SIZE ? brisk__os_page : BRISK_PAGE_SIZE;
}

/* At most 1 MiB per thread held this way; a request takes the spare when it
 * wastes under 1/8 of it, as the size classes do. */
#define SPARE_MAX_BYTES ((size_t)1 << 20)
#define SPARE_SLACK_SHIFT 3

static brisk_lock_t alone_lock = BRISK_LOCK_INIT(BRISK_RANK_LARGE);
static brisk_span_t *alone_list;

static void alone_link(brisk_span_t *s) {
  brisk__lock(&alone_lock);
  s->prev = NULL;
  s->next = alone_list;
  if (alone_list != NULL) alone_list->prev = s;
  alone_list = s;
  brisk__unlock(&alone_lock);
}

static void alone_unlink(brisk_span_t *s) {
  brisk__lock(&alone_lock);
  if (s->prev != NULL) s->prev->next = s->next;
  else alone_list = s->next;
  if (s->next != NULL) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  brisk__unlock(&alone_lock);
}
static _Atomic uint64_t node_alone[BRISK_MAX_NODES];

/* Blocks (n) and bytes that came into use (or went, if negative): a heap
 * block's in the calling thread's record, if it has one (see counters.h). */
static void count_in_use(const brisk_span_t *s, int64_t bytes, int64_t n) {
  brisk_large_counts_t *mine = brisk__tc.large_counts;
  if (!s->alone && mine != NULL) {
    brisk__large_count_mine(mine, s->node, bytes, n);
    return;
  }
  brisk__large_count_shared(s->node, bytes, n);
  if (s->alone) atomic_fetch_add_explicit(&node_alone[s->node], (uint64_t)bytes, memory_order_relaxed);
}

static inline size_t span_bytes(const brisk_span_t *s) {
  return s->alone ? s->map_size : s->npages * BRISK_PAGE_SIZE;
}

static inline size_t pages_for(size_t size) { return (size ? size + BRISK_PAGE_SIZE - 1 : 1) >> BRISK_PAGE_SHIFT; }

/* A heap block above the classes is a whole number of slices of
 * LARGE_SLICE_PAGES (64 KiB), as mimalloc's segments cut theirs. A program that
 * touches only the first page of its buffers (the rest written later, or
 * never) then finds each new block's first page where an earlier block's was,
 * and already resident: cut to the page, the blocks' starts drift over every
 * page of the heap's free runs, and each start faults in a page that stays
 * resident in the free run afterwards (scal/large_threads at 1 thread: peak RSS
 * 7.9 MiB cut to the page, 5.0 MiB in slices; mimalloc 4.9, glibc 6.1). The slack at the end of a block is never touched by brisk: the usable
 * size stays the request rounded to a page (calloc zeroes no more), and realloc
 * grows into the slack in place. Smaller heap blocks (profiled or aligned small
 * requests) keep whole pages. */
#define LARGE_SLICE_PAGES 8

static inline size_t heap_pages_for(size_t size) {
  size_t n = pages_for(size);
  return size > BRISK_SMALL_MAX ? brisk__align_up(n, LARGE_SLICE_PAGES) : n;
}

/* A heap block's usable size: the request last asked for, to the page (the
 * span may be longer: its slack, or a spare or a whole run it was served). */
size_t brisk__large_usable(const brisk_span_t *s) {
  if (s->alone) return s->map_size;
  brisk_assert(pages_for(s->req_size) <= s->npages);
  return pages_for(s->req_size) * BRISK_PAGE_SIZE;
}

/* Whether a block of this size and alignment is mapped alone. */
static bool goes_alone(size_t size, size_t align) {
  return size >= brisk__opt.large_mmap_bytes || align > BRISK_PAGE_SIZE ||
         (brisk__opt.numa == BRISK_NUMA_INTERLEAVE && brisk__numa_count() > 1);
}

static void *alone_alloc(size_t size, size_t align, unsigned slot) {
  size_t map = brisk__align_up(size ? size : 1, large_granule());
  if (align < brisk__os_page) align = brisk__os_page;
  void *p = brisk__os_mmap_aligned(map, align, BRISK_VMA_LARGE);
  if (p == NULL) return NULL;
  brisk_span_t *s = brisk__span_new();
  if (s == NULL) {
    brisk__os_munmap(p, map);
    return NULL;
  }
  if (brisk__opt.numa == BRISK_NUMA_INTERLEAVE && brisk__numa_count() > 1) brisk__numa_bind_interleave(p, map);
  else brisk__numa_bind(p, map, slot);
  s->start = (uintptr_t)p;
  s->map_size = map;
  s->req_size = size;
  s->npages = pages_for(map);
  s->state = BRISK_SPAN_LARGE;
  s->alone = 1;
  s->node = (uint8_t)slot;
  if (!brisk__pagemap_set(s->start >> BRISK_PAGE_SHIFT, 1, s)) {
    brisk__span_delete(s);
    brisk__os_munmap(p, map);
    return NULL;
  }
  alone_link(s);
  brisk__stat_mapped((int64_t)map);
  count_in_use(s, (int64_t)map, 1);
  return p; /* fresh anonymous memory is already zero */
}

void *brisk__large_alloc(size_t size, size_t align, bool zero) {
  if (size > PTRDIFF_MAX - 2 * brisk__os_page) {
    errno = ENOMEM;
    return NULL;
  }
  if (brisk__boot_active()) return brisk__boot_alloc(size, align);
  unsigned slot = brisk__numa_count() > 1 ? brisk__numa_large_slot(brisk__numa_slot_now()) : 0;
  void *p = NULL;
  if (!goes_alone(size, align)) {
    bool zeroed = false;
    size_t npages = heap_pages_for(size);
    brisk_tcache_t *tc = &brisk__tc;
    bool gate = brisk__gate_enter(tc); /* the purge tick may give an idle thread's spare back */
    brisk_span_t *s = tc->large_spare;
    if (s != NULL && s->node == slot && s->npages >= npages && s->npages - npages <= s->npages >> SPARE_SLACK_SHIFT)
      tc->large_spare = NULL;
    else
      s = NULL;
    brisk__gate_leave(tc, gate);
    if (s == NULL) s = brisk__heap_alloc_large(slot, npages, &zeroed);
    if (s != NULL) {
      s->state = BRISK_SPAN_LARGE;
      s->req_size = size;
      s->prof = NULL; /* alloc.c hangs a record on it if the block is profiled */
      count_in_use(s, (int64_t)span_bytes(s), 1);
      p = (void *)s->start;
      /* The whole usable size, as malloc_usable_size promises it to the program. */
      if (zero && !zeroed) memset(p, 0, brisk__large_usable(s));
      return p;
    }
  }
  p = alone_alloc(size, align, slot);
  if (p == NULL) errno = ENOMEM;
  return p;
}

bool brisk__large_same_size(size_t a, size_t b) {
  return brisk__align_up(a ? a : 1, large_granule()) == brisk__align_up(b ? b : 1, large_granule());
}

static void large_check(brisk_span_t *s, void *p, const char *call) {
  if ((uintptr_t)p != s->start) brisk__fatal(call, "invalid pointer", p);
  if (s->state != BRISK_SPAN_LARGE) brisk__fatal(call, "double free", p);
}

static void alone_unmap(brisk_span_t *s) {
  alone_unlink(s);
  brisk__pagemap_set(s->start >> BRISK_PAGE_SHIFT, 1, NULL);
  brisk__os_munmap((void *)s->start, s->map_size);
  brisk__stat_mapped(-(int64_t)s->map_size);
  brisk__span_delete(s);
}

/* The free of a large block takes it out of LARGE with one compare-and-swap:
 * of two threads that free the same block at once, exactly one goes on and the
 * other aborts, where a plain read of the state let both hand the block on. */
static void large_claim(brisk_span_t *s, void *p, const char *call, brisk_span_state_t next) {
  if ((uintptr_t)p != s->start) brisk__fatal(call, "invalid pointer", p);
  uint8_t want = BRISK_SPAN_LARGE;
  if (!__atomic_compare_exchange_n(&s->state, &want, (uint8_t)next, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
    brisk__fatal(call, "double free", p);
}

void brisk__large_free(brisk_span_t *s, void *p, const char *call) {
  brisk_tcache_t *tc = &brisk__tc;
  bool spare = !s->alone && tc->state == BRISK_TC_LIVE && span_bytes(s) <= SPARE_MAX_BYTES;
  /* a second free until it is unmapped or in the heap still aborts */
  large_claim(s, p, call, spare ? BRISK_SPAN_SPARE : BRISK_SPAN_FREEING);
  if (brisk_unlikely(s->prof != NULL)) { /* a sampled block of the heap profile */
    brisk__prof_forget(s->prof);
    s->prof = NULL;
  }
  count_in_use(s, -(int64_t)span_bytes(s), -1);
  if (s->alone) {
    alone_unmap(s);
    return;
  }
  if (spare) {
    bool gate = brisk__gate_enter(tc);
    brisk_span_t *old = tc->large_spare;
    tc->large_spare = s;
    brisk__gate_leave(tc, gate);
    if (old == NULL) return;
    s = old;
  }
  brisk__heap_free_large(s); /* notes idle memory, which starts the purger */
}

void brisk__large_spare_release(brisk_tcache_t *tc) {
  brisk_span_t *s = tc->large_spare;
  tc->large_spare = NULL;
  if (s != NULL) brisk__heap_free_large(s);
}

/* mremap has moved a block from p to q, where the page map has no leaf yet and
 * the address space (RLIMIT_AS) no room for one: the block goes back, so that
 * realloc fails with it in place and unchanged. The growth is dropped first; the
 * block then moves back piece by piece, each piece into a reservation at its old
 * place (a mapping another thread made there meanwhile is never overwritten),
 * halved while the address space has no room for it. False if a piece of one
 * granule cannot go back either. */
static bool alone_move_back(char *q, size_t map, char *p, size_t old) {
  brisk__os_munmap(q + old, map - old);
  size_t granule = large_granule(), piece = old;
  for (size_t done = 0; done < old;) {
    size_t n = old - done < piece ? old - done : piece;
    if (brisk__os_move_to(q + done, n, p + done)) {
      done += n;
      continue;
    }
    if (piece == granule) return false;
    piece = brisk__align_up(piece / 2, granule);
  }
  return true;
}

/* A block mapped alone: mremap to grow, an unmapped tail to shrink. */
static void *alone_realloc(brisk_span_t *s, void *p, size_t size) {
  size_t map = brisk__align_up(size ? size : 1, large_granule());
  size_t old = s->map_size;
  if (map <= old) {
    if (map < old) {
      brisk__lock(&alone_lock); /* the walk measures no more than is left */
      s->map_size = map;
      brisk__unlock(&alone_lock);
      brisk__os_munmap((char *)p + map, old - map);
      brisk__stat_mapped(-(int64_t)(old - map));
      count_in_use(s, -(int64_t)(old - map), 0);
      s->npages = pages_for(map);
    }
    s->req_size = size;
    return p;
  }
  /* Unpublish first: once mremap moves the block, the kernel may hand the old
   * address to another thread's mmap, whose span must not be overwritten. */
  uintptr_t page = s->start >> BRISK_PAGE_SHIFT;
  brisk__pagemap_set(page, 1, NULL);
  alone_unlink(s); /* off the residency walk while it moves */
  void *q = brisk__os_mremap(p, old, map);
  if (q != NULL && !brisk__pagemap_set((uintptr_t)q >> BRISK_PAGE_SHIFT, 1, s)) {
    /* Only a move to where no block has been yet can need a leaf. */
    if (!alone_move_back(q, map, p, old))
      brisk__fatal("realloc()", "out of address space to put back the block moved by mremap from", p);
    q = NULL;
  }
  if (q == NULL) {
    brisk__pagemap_set(page, 1, s);
    alone_link(s);
    errno = ENOMEM;
    return NULL;
  }
  s->start = (uintptr_t)q;
  s->map_size = map;
  s->req_size = size;
  s->npages = pages_for(map);
  alone_link(s);
  brisk__stat_mapped((int64_t)(map - old));
  count_in_use(s, (int64_t)(map - old), 0);
  return q;
}

void *brisk__large_realloc(brisk_span_t *s, void *p, size_t size) {
  large_check(s, p, "realloc()");
  if (size > PTRDIFF_MAX - 2 * brisk__os_page) {
    errno = ENOMEM;
    return NULL;
  }
  if (s->alone) return alone_realloc(s, p, size);
  size_t npages = heap_pages_for(size), old = s->npages, old_usable = brisk__large_usable(s);
  if (npages <= old) { /* shrink in place: the tail goes back to the heap */
    if (npages < old) {
      brisk__heap_shrink_large(s, npages);
      count_in_use(s, -(int64_t)((old - s->npages) * BRISK_PAGE_SIZE), 0);
    }
    s->req_size = size;
    return p;
  }
  if (!goes_alone(size, BRISK_ALIGN) && brisk__heap_grow_large(s, npages)) {
    count_in_use(s, (int64_t)((npages - old) * BRISK_PAGE_SIZE), 0);
    s->req_size = size;
    return p;
  }
  /* Move: into the best fit of the heap (usually resident: a copy beats faulting
   * fresh pages), or, from BRISK_LARGE_MMAP up, into a mapping of its own. */
  void *q = brisk__large_alloc(size, 0, false);
  if (q == NULL) return NULL; /* errno is ENOMEM; p is untouched */
  memcpy(q, p, old_usable);
  brisk__large_free(s, p, "realloc()");
  return q;
}

uint64_t brisk__large_node_alone(unsigned slot) {
  return atomic_load_explicit(&node_alone[slot], memory_order_relaxed);
}

void brisk__large_regions(brisk_region_fn fn, void *arg) {
  brisk__lock(&alone_lock);
  for (const brisk_span_t *s = alone_list; s != NULL; s = s->next) fn(arg, s->start, s->map_size, BRISK_VMA_LARGE);
  brisk__unlock(&alone_lock);
}

void brisk__large_fork_lock(void) { brisk__lock_fork(&alone_lock); }
void brisk__large_fork_unlock(void) { brisk__unlock_fork(&alone_lock); }
