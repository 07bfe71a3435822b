/* The public entry points. malloc and free are the two fast paths of brisk; each
 * is a handful of instructions with one unlikely branch to a noinline slow path:
 *
 *   malloc: size -> class (a table below 1 KiB), pop the thread cache's list;
 *   free:   address -> span (two loads in the page map), check that the address
 *           is an object's start and that the thread owns its span, push on the
 *           thread cache's list.
 *
 * A free list entry holds its successor in word 0, encoded, and brisk__free_key
 * in word 1 (block.h); malloc checks the link it follows and
 * clears word 1 again. free() seeing the key in word 1 is the cheap hint
 * of a double free that sends it to the full check (the thread's list, the
 * span and the inbox). Everything else here is the API's edges: errno,
 * alignment, overflow, realloc. */
#include "alloc.h"
#include "init.h"
#include "sample.h"
#include "guard.h"
#include "thread_cache.h"
#include "small.h"
#include "large.h"
#include "prof.h"
#include "numa.h"
#include "boot.h"
#include "block.h"
#include "size_class.h"
#include "pagemap.h"
#include "options.h"
#include "os.h"

static inline void *tc_pop(unsigned cls) {
  brisk_tlist_t *l = &brisk__tc.list[cls];
  void *p = l->head;
  if (brisk_unlikely(p == NULL)) return NULL;
  void *next = brisk__block_next(p, "malloc()");
  l->head = next;
  l->room++;
  brisk__block_clear_hint(p);
  /* Blocks that other threads freed arrive cold; start the next one's line now
   * so the next malloc of this class does not wait for it. */
  __builtin_prefetch(next);
  return p;
}

/* ------------------------------------------------------------------------------
   Out of memory, handled once, here
------------------------------------------------------------------------------ */

/* Every layer below answers a request it cannot serve with NULL, and none of
 * them purges another's memory to make room. Here, once per failed request,
 * brisk__purge_all gives back what this thread's cache, its spare large block
 * and kept spans and the orphans' inboxes hold, to their spans and the page
 * heap (where freed spans coalesce), and returns idle pages to the OS; then
 * the request is tried once more. The blocks a cache held may be what split
 * the heap's free runs too short for a large request, under an address-space
 * limit that lets the heap grow no further. False for a size no memory can
 * serve, and in the thread that loads the topology (its blocks come from the
 * bootstrap area, which no purge refills): the request fails at once. */
static brisk_noinline brisk_cold bool out_of_memory_purge(size_t size) {
  if (size > PTRDIFF_MAX || brisk__boot_active()) return false; /* the loader's thread: see boot.c */
  brisk__purge_all();
  errno = ENOMEM; /* whatever the purge's calls left there, if the retry fails too */
  return true;
}

/* A small block that its class could not serve (no span could be made): a free
 * slot of the guard pool is memory as well (its address space is reserved
 * already), and so is a free run of pages too short for a span, which serves
 * the block as a large one, as a profiled block is served (page-aligned: any
 * small class's alignment). So a guarded or profiled block freed under a hard
 * limit still makes room for a block of its size. */
static void *small_elsewhere(size_t size, const void *site) {
  void *p = brisk__opt.guard_sample != 0 ? brisk__guard_alloc(size, site) : NULL;
  return p != NULL ? p : brisk__large_alloc(size, 0, false);
}

static brisk_noinline void *small_out_of_memory(size_t size, const void *site) {
  void *p = small_elsewhere(size, site);
  if (p == NULL && out_of_memory_purge(size)) {
    p = brisk__tcache_alloc_slow(size);
    if (p == NULL) p = small_elsewhere(size, site);
  }
  if (p == NULL) errno = ENOMEM;
  return p;
}

static void *large_at(size_t size, size_t align, bool zero, const void *site);

/* Reached by a jump from malloc() (no frame): the return address is malloc's
 * caller. */
brisk_noinline void *brisk__malloc_slow(size_t size) {
  if (size <= BRISK_SMALL_MAX) {
    void *p = brisk__tcache_alloc_slow(size);
    return brisk_likely(p != NULL) ? p : small_out_of_memory(size, __builtin_return_address(0));
  }
  return large_at(size, 0, false, __builtin_return_address(0));
}

/* A small block of class cls, not sampled. */
static inline void *malloc_small(size_t size, unsigned cls) {
  void *p = tc_pop(cls);
  if (brisk_likely(p != NULL)) return p;
  return brisk__malloc_slow(size);
}

static inline brisk_span_t *span_of(const void *p) { return brisk__pm_span(brisk__pagemap_entry(p)); }

/* A block of the heap profile: its stack is captured first, outside every
 * lock; then the block, guarded if guard says so and a slot is free, else a
 * large block (a span of its own) whatever its size. */
static brisk_noinline void *alloc_profiled(size_t size, size_t align, bool zero, bool guard, const void *site) {
  brisk_prof_rec_t *rec = brisk__prof_record(size, site);
  void *p = guard ? brisk__guard_alloc(size, site) : NULL;
  if (p != NULL) {
    if (rec != NULL) brisk__guard_set_prof(p, rec);
    return p;
  }
  p = brisk__large_alloc(size, align, zero);
  if (p == NULL) brisk__prof_cancel(rec);
  else span_of(p)->prof = rec;
  return p;
}

/* A profiled small block of class cls, or a plain one when its page-heap run
 * cannot be had (an address-space limit): sampling never fails a request that
 * a plain block would serve. */
static void *small_profiled(size_t size, size_t align, unsigned cls, bool guard, const void *site) {
  int saved = errno;
  void *p = alloc_profiled(size, align, false, guard, site);
  if (p != NULL) return p;
  errno = saved;
  return malloc_small(brisk__classes[cls].size, cls);
}

/* malloc_at's slow path: the countdown went below zero. site NULL: malloc's
 * caller is this function's return address, as malloc() reaches it by a jump
 * (it has no frame), and malloc does not pay for reading it. */
static brisk_noinline void *malloc_sampled(size_t size, const void *site) {
  brisk_tcache_t *tc = &brisk__tc;
  if (site == NULL) site = __builtin_return_address(0);
  unsigned cls = brisk__size_to_class(size);
  if (!brisk__sample_due(tc, size)) return malloc_small(size, cls);
  bool guard = brisk__sampler_takes(tc, brisk__opt.guard_sample, size);
  if (brisk__sampler_takes(tc, brisk__prof_mean(), size) && brisk__prof_ready())
    return small_profiled(size, 0, cls, guard, site);
  void *p = guard ? brisk__guard_alloc(size, site) : NULL;
  return p != NULL ? p : malloc_small(size, cls);
}

/* The countdown went below zero for a request that only the profile samples
 * (large or aligned): whether it is profiled. */
static bool prof_due(size_t size) {
  brisk_tcache_t *tc = &brisk__tc;
  return brisk__sample_due(tc, size) && brisk__sampler_takes(tc, brisk__prof_mean(), size) && brisk__prof_ready();
}

/* A request that does not pass malloc_at's countdown (large or aligned) counts
 * down here while profiling: whether it is profiled. */
static bool prof_counts_down(size_t size) {
  if (brisk__prof_mean() == 0) return false;
  brisk_tcache_t *tc = &brisk__tc;
  return (tc->sample_left -= (int64_t)(size < INT64_MAX ? size : INT64_MAX)) < 0 && prof_due(size);
}

/* A large block (or an aligned one) for the caller at site. Large requests
 * also drive the purge tick where no purge thread runs (yet): the tick is
 * rate-limited, and a program that only takes large blocks never reaches the
 * thread cache's slow path, which drives it otherwise. Not in the thread that
 * loads the topology: its blocks come from the bootstrap area, and the tick
 * takes the locks of the heaps that discovery is filling in. */
static void *large_at(size_t size, size_t align, bool zero, const void *site) {
  brisk__ensure_init();
  if (!brisk__boot_active()) brisk__purge_tick();
  void *p;
  if (brisk_unlikely(prof_counts_down(size))) p = alloc_profiled(size, align, zero, false, site);
  else p = brisk__large_alloc(size, align, zero);
  if (brisk_unlikely(p == NULL) && out_of_memory_purge(size)) p = brisk__large_alloc(size, align, zero);
  return p;
}

/* malloc for the caller at site (NULL: see malloc_sampled). */
static brisk_always_inline void *malloc_at(size_t size, const void *site) {
  unsigned cls;
  /* The table's range first: one compare for the commonest sizes. */
  if (brisk_likely(size <= BRISK_CLASS_TABLE_MAX)) cls = brisk__class_table[(size + 15) >> 4];
  else if (brisk_likely(size <= BRISK_SMALL_MAX)) cls = brisk__size_to_class_above(size);
  else return brisk__malloc_slow(size);
  if (brisk_unlikely((brisk__tc.sample_left -= (int64_t)size) < 0)) return malloc_sampled(size, site);
  return malloc_small(size, cls);
}

void *brisk_malloc(size_t size) { return malloc_at(size, NULL); }

/* ------------------------------------------------------------------------------
   free
------------------------------------------------------------------------------ */

/* Validate p as the start of an object, given its page-map entry e (a SMALL
 * span's page: its descriptor and class); aborts on anything else. Everything
 * it reads lies on the descriptor's first line, which free() reads for the
 * owner anyway: the span's start, the class's inverse and rotation, the span's
 * object count. p with bits above 48 set lies 2^48 or more past the start and
 * fails like any other offset that starts no object. Returns true when word 1
 * holds the free key: p may already be free. */
static inline bool small_check(void *p, uint64_t e, const char *call) {
  const brisk_span_t *s = brisk__pm_span(e);
  uintptr_t off = (uintptr_t)p - s->start;
  if (brisk_unlikely(brisk__obj_index_by(s->inv, s->rot, off) >= s->capacity)) brisk__fatal(call, "invalid pointer", p);
  return brisk__block_hinted(p);
}

/* The full double-free check: the thread's own lists, then the span and the
 * inbox (small.c). A block in another thread's cache or inbox is out of sight and
 * passes. */
static brisk_cold void check_double_free(void *p, uint64_t e, const char *call) {
  unsigned cls = brisk__pm_class(e);
  bool gate = brisk__gate_enter(&brisk__tc); /* it reads the thread's spans and inbox */
  bool twice = brisk__tcache_contains(&brisk__tc, cls, p) || brisk__small_is_free(brisk__tc.heap, brisk__pm_span(e), p);
  brisk__gate_leave(&brisk__tc, gate);
  if (twice) brisk__fatal(call, "double free", p);
  /* the key was the program's own data */
}

/* free() of the block that heads its list: reached by a jump (brisk_opaque), so
 * that free() keeps needing no stack frame. */
static brisk_opaque brisk_cold void free_of_head(void *p) {
  brisk__fatal("free()", "double free", p);
}

/* A block of a span the thread does not own does not go on its lists: it goes to
 * the owner (the thread that allocated it, or the orphan heap of its node), so
 * a thread never reuses another thread's neighbouring blocks and memory freed on
 * another node goes home. A thread without a small heap (tc->heap NULL) owns no
 * span. */
static inline void small_free(void *p, uint64_t e) {
  brisk_tcache_t *tc = &brisk__tc;
  if (brisk_unlikely(brisk__span_owner_peek(brisk__pm_span(e)) != tc->heap)) {
    brisk__tcache_free_remote(tc, p, e, false);
    return;
  }
  unsigned cls = brisk__pm_class(e);
  brisk_tlist_t *l = &tc->list[cls];
  /* Freed twice with its word 1 overwritten in between (so no hint): pushing it
   * on the list it heads would make a loop that malloc hands out for ever. */
  if (brisk_unlikely(p == l->head)) {
    free_of_head(p);
    return;
  }
  brisk__block_push(p, l->head);
  l->head = p;
  if (brisk_unlikely(--l->room < 0)) brisk__tcache_free_slow(tc, cls);
}

/* Kept out of line so that the fast path below needs no stack frame. */
static brisk_noinline void free_suspect(void *p, uint64_t e) {
  check_double_free(p, e, "free()");
  brisk_tcache_t *tc = &brisk__tc;
  if (brisk__span_owner_peek(brisk__pm_span(e)) != tc->heap) {
    brisk__tcache_free_remote(tc, p, e, true); /* its owner can look further */
    return;
  }
  small_free(p, e);
}

/* A large block freed already: a free run of the heap that starts at p, or its
 * thread's spare. */
static bool large_freed(const brisk_span_t *s, const void *p) {
  return (uintptr_t)p == s->start &&
         (s->state == BRISK_SPAN_FREE || s->state == BRISK_SPAN_SPARE || s->state == BRISK_SPAN_FREEING);
}

/* Reached by a jump from free() (no frame), so that the return address here is
 * free()'s caller: the freeing call that a guarded block's report names. */
brisk_noinline void brisk__free_slow(void *p, brisk_span_t *s, const char *call) {
  if (s == NULL) {
    if (p == NULL) return;
    brisk__fatal(call, "invalid pointer", p);
  }
  if (s->state == BRISK_SPAN_LARGE) {
    brisk__large_free(s, p, call);
    return;
  }
  if (s->state == BRISK_SPAN_GUARD) {
    brisk__guard_free(p, call, __builtin_return_address(0));
    return;
  }
  if (s->state == BRISK_SPAN_BOOT) return; /* served while loading the topology; never reused */
  if (large_freed(s, p)) brisk__fatal(call, "double free", p);
  brisk__fatal(call, "invalid pointer", p); /* past a span's objects, or inside a free run */
}

void brisk_free(void *p) {
  uint64_t e = brisk__pagemap_entry(p);
  unsigned cls = brisk__pm_class(e);
  if (brisk_unlikely(cls == 0)) {
    brisk__free_slow(p, brisk__pm_span(e), "free()");
    return;
  }
  if (small_check(p, e, "free()")) {
    free_suspect(p, e);
    return;
  }
  small_free(p, e);
}

/* The usable size of a block, validating it like free() does. */
static size_t usable_of(const void *p, uint64_t e, const char *call) {
  if (brisk__pm_class(e) != 0) {
    if (small_check((void *)p, e, call)) check_double_free((void *)p, e, call);
    return brisk__classes[brisk__pm_class(e)].size;
  }
  brisk_span_t *s = brisk__pm_span(e);
  if (s != NULL && s->state == BRISK_SPAN_BOOT) return brisk__boot_usable(p);
  if (s != NULL && s->state == BRISK_SPAN_GUARD) return brisk__guard_usable(p, call);
  if (s == NULL || (s->state != BRISK_SPAN_LARGE && !large_freed(s, p)))
    brisk__fatal(call, "invalid pointer", p);
  if ((uintptr_t)p != s->start) brisk__fatal(call, "invalid pointer", p);
  if (s->state != BRISK_SPAN_LARGE) brisk__fatal(call, "double free", p);
  return brisk__large_usable(s);
}

/* A large block's size check for the sized frees: the same pages as the size last
 * asked for. Bootstrap blocks only need the size to fit. */
static bool large_size_wrong(const void *p, uint64_t e, size_t size) {
  brisk_span_t *s = brisk__pm_span(e);
  if (s->state == BRISK_SPAN_BOOT) return size > brisk__boot_usable(p);
  if (s->state == BRISK_SPAN_GUARD) return size > brisk__guard_usable(p, "free_sized()");
  return !brisk__large_same_size(size, s->req_size);
}

/* C23 free_sized: the size must be one the block could have been asked for.
 * Small: not above the class, and not so far below it that neither malloc nor
 * an in-place realloc could have left it there (realloc keeps a block down to
 * half its class). Large: the same pages as the size last asked for. */
void brisk_free_sized(void *p, size_t size) {
  if (p == NULL) return;
  uint64_t e = brisk__pagemap_entry(p);
  size_t usable = usable_of(p, e, "free_sized()");
  unsigned cls = brisk__pm_class(e);
  bool wrong;
  if (cls != 0) wrong = size > usable || (brisk__size_to_class(size) < cls && size * 2 < usable);
  else wrong = large_size_wrong(p, e, size);
  if (wrong) brisk__fatal("free_sized()", "wrong size for the block", p);
  brisk_free(p);
}

void brisk_free_aligned_sized(void *p, size_t alignment, size_t size) {
  if (p == NULL) return;
  uint64_t e = brisk__pagemap_entry(p);
  if (size > usable_of(p, e, "free_aligned_sized()") ||
      (brisk__pm_class(e) == 0 && large_size_wrong(p, e, size)))
    brisk__fatal("free_aligned_sized()", "wrong size for the block", p);
  if (alignment != 0 && ((uintptr_t)p & (alignment - 1)) != 0)
    brisk__fatal("free_aligned_sized()", "misaligned pointer", p);
  brisk_free(p);
}

size_t brisk_usable_size(const void *p) {
  if (p == NULL) return 0;
  return usable_of(p, brisk__pagemap_entry(p), "malloc_usable_size()");
}

/* ------------------------------------------------------------------------------
   calloc, realloc
------------------------------------------------------------------------------ */

/* calloc of a small size served outside the classes: a profiled block is a
 * large one, zeroed up to its usable size as any; a guarded block is fresh
 * pages, zero already, and shorter than its class (the class's size would run
 * into its guard page). */
static brisk_noinline brisk_cold void *calloc_unclassed(void *p) {
  brisk_span_t *s = span_of(p);
  if (s->state == BRISK_SPAN_LARGE) memset(p, 0, brisk__large_usable(s));
  return p;
}

void *brisk_calloc(size_t n, size_t size) {
  size_t total;
  if (brisk_unlikely(__builtin_mul_overflow(n, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  if (total <= BRISK_SMALL_MAX) {
    /* Zero the whole block, as malloc_usable_size reports it: a reused block's
     * tail past the request is the previous owner's data. */
    void *p = malloc_at(total, __builtin_return_address(0)); /* after it, brisk has started */
    if (p != NULL && brisk_likely(brisk__pm_class(brisk__pagemap_entry(p)) != 0))
      memset(p, 0, brisk__classes[brisk__size_to_class(total)].size);
    else if (p != NULL) return calloc_unclassed(p);
    return p;
  }
  return large_at(total, 0, true, __builtin_return_address(0));
}

/* realloc of a large block while profiling: the result is sampled as a new
 * allocation of size bytes, the old block's record forgotten, whether it
 * moves or not. */
static brisk_noinline void *realloc_profiled(brisk_span_t *s, void *p, size_t size, const void *site) {
  brisk_prof_rec_t *rec = prof_counts_down(size) ? brisk__prof_record(size, site) : NULL;
  void *q = brisk__large_realloc(s, p, size);
  if (q == NULL) {
    brisk__prof_cancel(rec);
    return NULL;
  }
  brisk_span_t *t = span_of(q); /* s if it stayed; the old block's free forgot its record */
  if (t->prof != rec) {
    brisk__prof_forget(t->prof);
    t->prof = rec;
  }
  return q;
}

void *brisk_realloc(void *p, size_t size) {
  if (p == NULL) return brisk_malloc(size);
  if (size == 0) { /* as glibc: free and return NULL */
    brisk_free(p);
    return NULL;
  }
  uint64_t e = brisk__pagemap_entry(p);
  brisk_span_t *s = brisk__pm_span(e);
  if (s == NULL) brisk__fatal("realloc()", "invalid pointer", p);
  size_t old;
  if (brisk__pm_class(e) != 0) {
    if (small_check(p, e, "realloc()")) check_double_free(p, e, "realloc()");
    old = brisk__classes[brisk__pm_class(e)].size;
    /* Stay put unless the block would be more than twice what is needed. */
    if (size <= old && size >= old / 2) return p;
  } else if (s->state == BRISK_SPAN_BOOT) {
    old = brisk__boot_usable(p); /* copied out below, never grown in place */
  } else if (s->state == BRISK_SPAN_GUARD) {
    old = brisk__guard_usable(p, "realloc()"); /* moves, so that its slot is freed */
  } else {
    /* Large blocks stay large: in place, moved within the heap, or mremap. */
    if (s->state != BRISK_SPAN_LARGE) brisk__fatal("realloc()", large_freed(s, p) ? "double free" : "invalid pointer", p);
    if (brisk_unlikely(brisk__opt.prof)) return realloc_profiled(s, p, size, __builtin_return_address(0));
    void *q = brisk__large_realloc(s, p, size);
    if (brisk_unlikely(q == NULL) && out_of_memory_purge(size)) q = brisk__large_realloc(s, p, size);
    return q;
  }
  const void *site = __builtin_return_address(0);
  void *q = malloc_at(size, site);
  if (q == NULL) return NULL; /* errno is ENOMEM; p is untouched */
  memcpy(q, p, size < old ? size : old);
  if (s->state == BRISK_SPAN_GUARD) brisk__guard_free(p, "realloc()", site);
  else brisk_free(p);
  return q;
}

void *brisk_reallocarray(void *p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return brisk_realloc(p, total);
}

/* ------------------------------------------------------------------------------
   Aligned allocation
------------------------------------------------------------------------------ */

static inline bool is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* An aligned small request whose countdown went below zero while profiling:
 * a profiled one is a large block, which any class's alignment fits (never
 * guarded: a guarded block is only 16-byte aligned). */
static brisk_noinline void *aligned_small_sampled(size_t size, size_t align, unsigned cls, const void *site) {
  if (prof_due(size)) return small_profiled(size, align, cls, false, site);
  return malloc_small(brisk__classes[cls].size, cls);
}

void *brisk__alloc_aligned(size_t align, size_t size) {
  if (align <= BRISK_ALIGN) return brisk_malloc(size);
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  brisk__ensure_init();
  unsigned cls = brisk__size_to_class_aligned(size ? size : 1, align);
  if (cls != 0) {
    /* They count down only while profiling: the guard sampler does not take them. */
    if (brisk_unlikely(brisk__opt.prof) && brisk_unlikely((brisk__tc.sample_left -= (int64_t)size) < 0))
      return aligned_small_sampled(size, align, cls, __builtin_return_address(0));
    return malloc_small(brisk__classes[cls].size, cls);
  }
  return large_at(size, align, false, __builtin_return_address(0));
}

void *brisk_aligned_alloc(size_t alignment, size_t size) {
  if (!is_pow2(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return brisk__alloc_aligned(alignment, size);
}

void *brisk_memalign(size_t alignment, size_t size) {
  /* glibc rounds an alignment that is not a power of two up to one */
  if (alignment > (SIZE_MAX >> 1) + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (!is_pow2(alignment)) {
    size_t a = BRISK_ALIGN;
    while (a < alignment) a <<= 1;
    alignment = a;
  }
  return brisk__alloc_aligned(alignment, size);
}

int brisk_posix_memalign(void **memptr, size_t alignment, size_t size) {
  if (!is_pow2(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
  /* On failure errno is left at ENOMEM as well, as glibc leaves it. */
  void *p = brisk__alloc_aligned(alignment, size);
  if (p == NULL) {
    errno = ENOMEM;
    return ENOMEM;
  }
  *memptr = p;
  return 0;
}

void *brisk_valloc(size_t size) {
  brisk__ensure_init();
  return brisk__alloc_aligned(brisk__os_page, size);
}

void *brisk_pvalloc(size_t size) {
  brisk__ensure_init();
  size_t page = brisk__os_page;
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  size_t rounded = size ? brisk__align_up(size, page) : page;
  return brisk__alloc_aligned(page, rounded);
}

int brisk_trim(void) {
  brisk__ensure_init();
  return brisk__purge_all() > 0;
}
