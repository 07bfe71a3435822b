/* Guarded blocks: the pool behind BRISK_GUARD_SAMPLE. A small allocation that
 * the sampler picks (alloc.c) is placed at the end of a slot of this pool, right
 * below a PROT_NONE page; when it is freed its pages become PROT_NONE too, and
 * the slot is reused last (oldest freed first), so that the block stays
 * inaccessible while the other slots cycle. An overflow past the block, or a use
 * after its free, faults: the SIGSEGV handler (os.c) hands the address here, and
 * the report names the block, its size and the callers of malloc and free.
 *
 * Owns: the pool (one reservation, one span descriptor of state GUARD in the page
 * map, so that free() and realloc() find it) and its slot table. guard_lock
 * (rank GUARD) guards the queue of freed slots and the choice of a slot; a
 * slot's state moves by atomic stores and one compare-and-swap (free's, so that
 * of two racing frees one aborts), and its fields are written by the one thread
 * that moved it to TAKEN. No system call is made under the lock but the
 * check of the SIGSEGV handler. The fault handler reads the table without the
 * lock: it runs on a thread that has just touched the block, and only reports. */
#include "guard.h"
#include "prof.h"
#include "meta.h"
#include "pagemap.h"
#include "os.h"

#include <stdlib.h>

#define GUARD_SLOTS 256u

/* UNUSED -> TAKEN (a malloc opens its pages) -> LIVE -> CLOSING (a free closes
 * them) -> FREED (queued) -> TAKEN ...; TAKEN -> UNUSED (queued) when the pages
 * would not open. */
typedef enum { SLOT_UNUSED = 0, SLOT_TAKEN, SLOT_LIVE, SLOT_CLOSING, SLOT_FREED } slot_state_t;

typedef struct guard_slot_s {
  _Atomic uintptr_t block; /* the block's address (LIVE and after) */
  size_t size;             /* the size asked for */
  size_t usable;           /* the block's bytes: up to the guard page */
  const void *alloc_site, *free_site;
  brisk_prof_rec_t *prof;  /* LIVE: the heap profile's record of the block, or NULL */
  uint32_t next;           /* the next freed slot in the queue */
  _Atomic uint8_t state;   /* slot_state_t */
} guard_slot_t;

typedef enum { POOL_NONE = 0, POOL_READY, POOL_FAILED } pool_state_t;

static brisk_lock_t guard_lock = BRISK_LOCK_INIT(BRISK_RANK_GUARD);
static struct {
  atomic_int state;      /* pool_state_t; READY is published after the fields below */
  uintptr_t base;
  size_t data_bytes;     /* a slot's pages for the block */
  size_t slot_bytes;     /* data_bytes and the guard page after them */
  guard_slot_t *slots;
  uint32_t fresh;        /* slots from here on were never used */
  uint32_t head, tail;   /* freed slots, oldest first; GUARD_SLOTS when empty */
} pool;

static inline size_t pool_bytes(void) { return (size_t)GUARD_SLOTS * pool.slot_bytes; }

static void on_fault(uintptr_t addr, int access);

/* Under guard_lock. The pool is made once; if that fails, sampling goes on
 * with plain blocks. */
static bool pool_make(void) {
  size_t page = brisk__os_page;
  pool.data_bytes = brisk__align_up(BRISK_GUARD_MAX, page);
  pool.slot_bytes = pool.data_bytes + page;
  /* The page map covers brisk pages: the pool must be whole ones. */
  size_t bytes = brisk__align_up(pool_bytes(), BRISK_PAGE_SIZE);
  size_t align = page > BRISK_PAGE_SIZE ? page : BRISK_PAGE_SIZE;
  char *base = brisk__os_reserve(bytes, align);
  guard_slot_t *slots = brisk__meta_alloc(GUARD_SLOTS * sizeof(guard_slot_t));
  brisk_span_t *span = brisk__span_new();
  if (base == NULL || slots == NULL || span == NULL) return false; /* what was taken stays reserved */
  span->start = (uintptr_t)base;
  span->npages = bytes >> BRISK_PAGE_SHIFT;
  span->state = BRISK_SPAN_GUARD;
  if (!brisk__pagemap_set((uintptr_t)base >> BRISK_PAGE_SHIFT, span->npages, span)) return false;
  pool.base = (uintptr_t)base;
  pool.slots = slots;
  pool.fresh = 0;
  pool.head = pool.tail = GUARD_SLOTS;
  if (!brisk__os_catch_faults(on_fault)) return false;
  atomic_store_explicit(&pool.state, POOL_READY, memory_order_release);
  return true;
}

static inline uintptr_t slot_start(uint32_t i) { return pool.base + (uintptr_t)i * pool.slot_bytes; }

/* A slot for a new block, under guard_lock: one never used, else the one freed
 * longest ago; GUARD_SLOTS if every slot holds a live block. */
static uint32_t slot_take(void) {
  if (pool.fresh < GUARD_SLOTS) return pool.fresh++;
  uint32_t i = pool.head;
  if (i == GUARD_SLOTS) return GUARD_SLOTS;
  pool.head = pool.slots[i].next;
  if (pool.head == GUARD_SLOTS) pool.tail = GUARD_SLOTS;
  return i;
}

static void slot_queue(uint32_t i) {
  pool.slots[i].next = GUARD_SLOTS;
  if (pool.tail == GUARD_SLOTS) pool.head = i;
  else pool.slots[pool.tail].next = i;
  pool.tail = i;
}

void *brisk__guard_alloc(size_t size, const void *site) {
  if (size > BRISK_GUARD_MAX || atomic_load_explicit(&pool.state, memory_order_relaxed) == POOL_FAILED) return NULL;
  size_t usable = brisk__align_up(size ? size : 1, BRISK_ALIGN);
  uint32_t i = GUARD_SLOTS;
  brisk__lock(&guard_lock);
  int st = atomic_load_explicit(&pool.state, memory_order_relaxed);
  if (st == POOL_NONE && !pool_make()) {
    st = POOL_FAILED;
    atomic_store_explicit(&pool.state, POOL_FAILED, memory_order_relaxed);
  }
  if (st != POOL_FAILED) {
    i = slot_take();
    if (i < GUARD_SLOTS) atomic_store_explicit(&pool.slots[i].state, SLOT_TAKEN, memory_order_relaxed);
    /* Under the lock: two threads putting the handler back at once would
     * each take the other's for the program's. */
    brisk__os_catch_faults(on_fault); /* in front of any handler installed since */
  }
  brisk__unlock(&guard_lock);
  if (i == GUARD_SLOTS) return NULL;
  guard_slot_t *g = &pool.slots[i];
  uintptr_t end = slot_start(i) + pool.data_bytes;
  uintptr_t block = end - usable;
  uintptr_t first = block & ~(uintptr_t)(brisk__os_page - 1);
  if (!brisk__os_open_pages((void *)first, end - first)) { /* out of mappings: a later try may do */
    brisk__lock(&guard_lock);
    atomic_store_explicit(&g->state, SLOT_UNUSED, memory_order_relaxed);
    slot_queue(i);
    brisk__unlock(&guard_lock);
    return NULL;
  }
  atomic_store_explicit(&g->block, block, memory_order_relaxed);
  g->size = size;
  g->usable = usable;
  g->alloc_site = site;
  g->free_site = NULL;
  g->prof = NULL;
  atomic_store_explicit(&g->state, SLOT_LIVE, memory_order_release);
  return (void *)block;
}

/* The slot holding p, which lies in the pool (its page-map entry says so). */
static guard_slot_t *slot_of(const void *p) {
  return &pool.slots[((uintptr_t)p - pool.base) / pool.slot_bytes];
}

/* Not the start of a live guarded block: the second free of one, or no block. */
static brisk_cold __attribute__((noreturn)) void not_live(const guard_slot_t *g, uint8_t state, const void *p, const char *call) {
  bool twice = atomic_load_explicit(&g->block, memory_order_relaxed) == (uintptr_t)p &&
               (state == SLOT_CLOSING || state == SLOT_FREED);
  brisk__fatal(call, twice ? "double free" : "invalid pointer", p);
}

void brisk__guard_free(void *p, const char *call, const void *site) {
  guard_slot_t *g = slot_of(p);
  uint8_t state = SLOT_LIVE;
  if (atomic_load_explicit(&g->block, memory_order_relaxed) != (uintptr_t)p ||
      !atomic_compare_exchange_strong_explicit(&g->state, &state, SLOT_CLOSING, memory_order_acq_rel,
                                               memory_order_acquire))
    not_live(g, state == SLOT_LIVE ? atomic_load_explicit(&g->state, memory_order_acquire) : state, p, call);
  g->free_site = site;
  brisk_prof_rec_t *rec = g->prof;
  g->prof = NULL;
  uint32_t i = (uint32_t)(g - pool.slots);
  brisk__os_close_pages((void *)slot_start(i), pool.data_bytes);
  brisk__lock(&guard_lock);
  atomic_store_explicit(&g->state, SLOT_FREED, memory_order_relaxed);
  slot_queue(i);
  brisk__unlock(&guard_lock);
  brisk__prof_forget(rec); /* its lock ranks after this one, but none is needed together */
}

/* By the thread that has just allocated p, before the program sees it: no other
 * thread can reach the slot yet, and its free reads the record after its
 * compare-and-swap. */
void brisk__guard_set_prof(void *p, brisk_prof_rec_t *rec) { slot_of(p)->prof = rec; }

size_t brisk__guard_usable(const void *p, const char *call) {
  const guard_slot_t *g = slot_of(p);
  uint8_t state = atomic_load_explicit(&g->state, memory_order_acquire);
  if (state != SLOT_LIVE || atomic_load_explicit(&g->block, memory_order_relaxed) != (uintptr_t)p)
    not_live(g, state, p, call);
  return g->usable;
}

/* The report: one line, then abort. It takes no lock: the faulting thread may
 * have been interrupted anywhere, and a slot being reused under the lock at
 * this moment can only make the report name the wrong sizes, never hang it.
 * The offset is from the block's start: negative below it, the size or more
 * past its end. */
static void on_fault(uintptr_t addr, int access) {
  if (atomic_load_explicit(&pool.state, memory_order_acquire) != POOL_READY) return;
  if (addr < pool.base || addr >= pool.base + pool_bytes()) return;
  const guard_slot_t *g = slot_of((const void *)addr);
  const char *how = access == 1 ? "write" : access == 0 ? "read" : "access";
  uint8_t state = atomic_load_explicit(&g->state, memory_order_relaxed);
  uintptr_t block = atomic_load_explicit(&g->block, memory_order_relaxed);
  if (state == SLOT_UNUSED || state == SLOT_TAKEN) {
    brisk__printf_err("brisk: wild %s at %p, in brisk's guard pages but in no block\n", how, (void *)addr);
    abort();
  }
  bool freed = state == SLOT_CLOSING || state == SLOT_FREED;
  const char *what = freed ? "use after free" : addr < block ? "heap underflow" : "heap overflow";
  long long off = addr >= block ? (long long)(addr - block) : -(long long)(block - addr);
  char at[160], by[160];
  brisk__os_describe_code(g->alloc_site, at, sizeof at);
  if (!freed) {
    brisk__printf_err("brisk: %s: %s at %p, offset %lld of the %zu-byte block %p allocated by %s\n", what, how,
                      (void *)addr, off, g->size, (void *)block, at);
  } else {
    brisk__os_describe_code(g->free_site, by, sizeof by);
    brisk__printf_err("brisk: %s: %s at %p, offset %lld of the %zu-byte block %p allocated by %s, freed by %s\n",
                      what, how, (void *)addr, off, g->size, (void *)block, at, by);
  }
  abort();
}

void brisk__guard_stats(uint64_t *in_use, uint64_t *blocks) {
  uint64_t bytes = 0, n = 0;
  brisk__lock(&guard_lock);
  if (atomic_load_explicit(&pool.state, memory_order_relaxed) == POOL_READY)
    for (uint32_t i = 0; i < pool.fresh; i++)
      if (atomic_load_explicit(&pool.slots[i].state, memory_order_relaxed) == SLOT_LIVE) {
        bytes += pool.slots[i].usable;
        n++;
      }
  brisk__unlock(&guard_lock);
  *in_use = bytes;
  *blocks = n;
}

/* The whole pool: its closed slots are never resident (brisk__os_close_pages
 * drops their pages), its open ones hold the live blocks. */
void brisk__guard_regions(brisk_region_fn fn, void *arg) {
  if (atomic_load_explicit(&pool.state, memory_order_acquire) == POOL_READY)
    fn(arg, pool.base, brisk__align_up(pool_bytes(), BRISK_PAGE_SIZE), BRISK_VMA_GUARD);
}

void brisk__guard_fork_lock(void) { brisk__lock_fork(&guard_lock); }
void brisk__guard_fork_unlock(void) { brisk__unlock_fork(&guard_lock); }
