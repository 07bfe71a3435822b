/* Central lists: one per size class, the level between thread caches and spans.
 *
 * Cross-thread frees, the choice and its reason. A block freed by a thread other
 * than its allocator goes into the *freeing* thread's cache, like any other free:
 * free() never touches another thread's state, never takes a lock, and needs no
 * atomic. A cache that overflows hands its whole list here in one piece, and a
 * cache that runs dry takes one list back, so in a producer/consumer program the
 * consumer's frees reach the producer a list at a time: one short critical
 * section (push or pop one pointer) per list of tens to hundreds of objects, and
 * memory stays bounded by the caches' budgets plus `max_objs` per class. Handing
 * each block back to its owning page instead (mimalloc's thread_free lists)
 * costs an atomic per remote free and leaves memory stranded on pages of threads
 * that stopped allocating; list transfer costs neither and keeps the fast path of
 * free identical for local and remote blocks.
 *
 * Each class has:
 *  - a stack of whole lists (NULL-terminated, with their lengths), at most
 *    max_objs objects in all: the O(1) path;
 *  - a list of SMALL spans that have free objects (returned ones on their free
 *    list, or never-used ones above `bump`); a list beyond the stack's bound goes
 *    back to its spans object by object, under the lock once for the whole list,
 *    and a span whose objects have all come back returns to the page heap.
 *    Spans that are mostly free wait at the tail, so that they can empty.
 * The class lock guards all of it, and every SMALL span's freelist/bump/used.
 *
 * NUMA: each slot (numa.c) has its own set of classes, and a span belongs to the
 * slot whose pages it holds. Lists given back are sorted by the slot of each
 * object's span on a multi-node machine, so memory that a thread on another node
 * freed goes home instead of being handed to that node's threads; on one node
 * the list goes on the stack untouched. */
#include "internal.h"

/* Bytes of free lists a class keeps ready: the handoff buffer between threads
 * that free and threads that allocate. Every byte here is memory the program
 * does not use, so it is kept small; purging drains it once idle. */
#define CENTRAL_STACK_BYTES ((size_t)256 * 1024)
#define CENTRAL_MAX_LISTS 32

typedef struct brisk_clist_s {
  void *head;
  uint32_t n;
} brisk_clist_t;

typedef struct brisk_central_s {
  brisk_lock_t lock;
  uint32_t nlists;
  uint32_t stacked;       /* objects in the stack */
  uint32_t max_objs;
  uint32_t cls;           /* this list's class, to check spans against */
  brisk_span_t *partial;  /* spans with free objects; mostly free ones at the tail */
  brisk_span_t *partial_tail;
  uint64_t spans;         /* SMALL spans of this class */
  uint64_t objs_out;      /* objects out of spans: sum of span->used */
  uint64_t last_use_ms;   /* when the stack was last pushed or popped */
  brisk_clist_t list[CENTRAL_MAX_LISTS];
} __attribute__((aligned(BRISK_CACHE_LINE))) brisk_central_t;

static brisk_central_t slot0[BRISK_CLASSES];
/* Slot 0 is static; the others come from metadata when discovery finds them. */
static brisk_central_t *slots[BRISK_MAX_NODES] = {slot0};

static inline brisk_central_t *central_of(unsigned slot, unsigned cls) { return &slots[slot][cls]; }

static void classes_init(brisk_central_t *set) {
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    brisk_central_t *c = &set[cls];
    pthread_mutex_init(&c->lock, NULL);
    c->cls = cls;
    /* at least two batches, so a handoff between two threads never has to
     * go through the spans */
    size_t m = CENTRAL_STACK_BYTES / brisk__classes[cls].size;
    size_t min = 2 * (size_t)brisk__classes[cls].batch;
    c->max_objs = (uint32_t)(m < min ? min : m);
  }
}

void brisk__central_init(void) { classes_init(slot0); }

bool brisk__central_add_slots(unsigned n) {
  for (unsigned i = 1; i < n; i++) {
    if (slots[i] != NULL) continue; /* kept from an earlier topology (tests) */
    brisk_central_t *set = brisk__meta_alloc(sizeof(brisk_central_t) * BRISK_CLASSES);
    if (set == NULL) return false;
    classes_init(set);
    slots[i] = set;
  }
  return true;
}

static inline uintptr_t span_end(const brisk_span_t *s) {
  return s->start + (uintptr_t)s->capacity * s->obj_size;
}
static inline bool span_has_free(const brisk_span_t *s) {
  return s->freelist != NULL || s->bump < span_end(s);
}

static void partial_add(brisk_central_t *c, brisk_span_t *s) {
  s->in_partial = 1;
  s->prev = NULL;
  s->next = c->partial;
  if (c->partial) c->partial->prev = s;
  else c->partial_tail = s;
  c->partial = s;
}

static void partial_add_tail(brisk_central_t *c, brisk_span_t *s) {
  s->in_partial = 1;
  s->next = NULL;
  s->prev = c->partial_tail;
  if (c->partial_tail) c->partial_tail->next = s;
  else c->partial = s;
  c->partial_tail = s;
}

static void partial_remove(brisk_central_t *c, brisk_span_t *s) {
  if (s->prev) s->prev->next = s->next;
  else c->partial = s->next;
  if (s->next) s->next->prev = s->prev;
  else c->partial_tail = s->prev;
  s->next = s->prev = NULL;
  s->in_partial = 0;
}

/* Take up to want objects from one span, appending to the list (*head, *tail).
 * Returned objects first (they are warm), then fresh ones in address order. */
static uint32_t span_take(brisk_span_t *s, uint32_t want, void **head, void **tail) {
  uint32_t n = 0;
  while (n < want) {
    void *obj;
    if (s->freelist != NULL) {
      obj = s->freelist;
      void *next = brisk__block_next(obj, "malloc()");
      if (brisk_unlikely(next != NULL && ((uintptr_t)next < s->start || (uintptr_t)next >= span_end(s))))
        brisk__fatal("malloc()", "corrupted free list", obj);
      s->freelist = next;
    } else if (s->bump < span_end(s)) {
      obj = (void *)s->bump;
      s->bump += s->obj_size;
    } else {
      break;
    }
    brisk__block_set_next(obj, NULL);
    if (*tail) brisk__block_set_next(*tail, obj);
    else *head = obj;
    *tail = obj;
    n++;
  }
  s->used += n;
  return n;
}

/* A fresh span for cls, not yet visible to other threads. */
static brisk_span_t *span_make(unsigned slot, unsigned cls) {
  const brisk_class_info_t *ci = &brisk__classes[cls];
  brisk_span_t *s = brisk__heap_alloc(slot, ci->span_pages);
  if (s == NULL) return NULL;
  s->obj_size = ci->size;
  s->capacity = ci->span_objs;
  s->bump = s->start;
  s->freelist = NULL;
  s->used = 0;
  s->in_partial = 0;
  s->cls = (uint8_t)cls;
  /* Published last: free() classifies a block by its page-map entry alone. */
  brisk__pagemap_set_small(s->start >> BRISK_PAGE_SHIFT, s->npages, s, cls);
  return s;
}

uint32_t brisk__central_take(unsigned slot, unsigned cls, uint32_t want, bool whole, void **head) {
  brisk_central_t *c = central_of(slot, cls);
  void *tail = NULL;
  uint32_t n = 0;
  *head = NULL;
  brisk__lock(&c->lock);
  if (whole && c->nlists > 0) {
    brisk_clist_t *l = &c->list[--c->nlists];
    *head = l->head;
    n = l->n;
    c->stacked -= n;
    c->last_use_ms = brisk__os_now_ms();
    brisk__unlock(&c->lock);
    return n;
  }
  while (n < want && c->partial != NULL) {
    brisk_span_t *s = c->partial;
    n += span_take(s, want - n, head, &tail);
    if (!span_has_free(s)) partial_remove(c, s);
  }
  c->objs_out += n;
  brisk__unlock(&c->lock);
  while (n < want) {
    brisk_span_t *s = span_make(slot, cls);
    if (s == NULL) break;
    uint32_t got = span_take(s, want - n, head, &tail);
    n += got;
    brisk__lock(&c->lock);
    c->spans++;
    c->objs_out += got;
    if (span_has_free(s)) partial_add(c, s);
    brisk__unlock(&c->lock);
  }
  return n;
}

/* Return objects to their spans; spans that become empty are collected in *empty
 * (linked through next) for the caller to free once the lock is dropped. */
static void release_to_spans(brisk_central_t *c, void *head, brisk_span_t **empty) {
  uint64_t n = 0;
  while (head != NULL) {
    void *obj = head;
    head = brisk__block_next(obj, "free()");
    brisk_span_t *s = brisk__pagemap_get(obj);
    /* Every block of a list handed here was checked on the way in, but a list
     * that waited on the stack may have been written since. */
    if (brisk_unlikely(s == NULL || s->state != BRISK_SPAN_SMALL || s->cls != c->cls || s->used == 0))
      brisk__fatal("free()", "corrupted free list", obj);
    brisk__block_set_next(obj, s->freelist);
    s->freelist = obj;
    s->used--;
    n++;
    if (s->used == 0) {
      if (s->in_partial) partial_remove(c, s);
      s->next = *empty;
      *empty = s;
      c->spans--;
    } else if (!s->in_partial) {
      partial_add(c, s);
    } else if (s->used == s->capacity / 4 && s->next != NULL) {
      /* mostly free now: serve others first and give this one time to empty */
      partial_remove(c, s);
      partial_add_tail(c, s);
    }
  }
  c->objs_out -= n;
}

static void free_spans(brisk_span_t *empty) {
  while (empty != NULL) {
    brisk_span_t *s = empty;
    empty = s->next;
    s->next = NULL;
    s->cls = 0;
    brisk__heap_free(s); /* clears the page-map entries first */
  }
}

static void give_local(brisk_central_t *c, void *head, uint32_t n) {
  brisk_span_t *empty = NULL;
  brisk__lock(&c->lock);
  if (c->nlists < CENTRAL_MAX_LISTS && c->stacked + n <= c->max_objs) {
    c->list[c->nlists++] = (brisk_clist_t){head, n};
    c->stacked += n;
    c->last_use_ms = brisk__os_now_ms();
    brisk__unlock(&c->lock);
    return;
  }
  release_to_spans(c, head, &empty);
  brisk__unlock(&c->lock);
  free_spans(empty);
}

/* Sort a list by the slot of each object's span and give every part to its own
 * pool. The walk reads each object's page-map entry and span, which the one-node
 * path never does: it is the price of keeping memory on its node. */
static brisk_noinline void give_routed(unsigned slot, unsigned cls, void *head) {
  void *part[BRISK_MAX_NODES] = {0};
  uint32_t count[BRISK_MAX_NODES] = {0};
  while (head != NULL) {
    void *obj = head;
    head = brisk__block_next(obj, "free()");
    brisk_span_t *s = brisk__pagemap_get(obj);
    if (brisk_unlikely(s == NULL || s->state != BRISK_SPAN_SMALL)) brisk__fatal("free()", "corrupted free list", obj);
    unsigned home = s->node;
    brisk__block_set_next(obj, part[home]);
    part[home] = obj;
    count[home]++;
  }
  unsigned nodes = brisk__numa_count();
  for (unsigned i = 0; i < nodes; i++) {
    if (count[i] == 0) continue;
    give_local(central_of(i, cls), part[i], count[i]);
    if (i != slot) brisk__numa_note_remote(i, count[i]);
  }
}

void brisk__central_give(unsigned slot, unsigned cls, void *head, uint32_t n) {
  if (brisk_likely(brisk__numa_count() <= 1)) give_local(central_of(0, cls), head, n);
  else give_routed(slot, cls, head);
}

/* Give stacked lists back to their spans: all of them, or (for the idle purge)
 * those of classes whose stack has not been used for a purge delay. */
void brisk__central_drain(bool all) {
  uint64_t now = brisk__os_now_ms();
  unsigned nodes = brisk__numa_count();
  for (unsigned i = 0; i < nodes * BRISK_CLASSES; i++) {
    unsigned cls = i % BRISK_CLASSES;
    if (cls == 0) continue;
    brisk_central_t *c = central_of(i / BRISK_CLASSES, cls);
    if (c->nlists == 0) continue; /* racy peek; a stale answer only delays */
    brisk_span_t *empty = NULL;
    brisk__lock(&c->lock);
    if (all || now - c->last_use_ms >= brisk__opt.purge_delay_ms) {
      while (c->nlists > 0) release_to_spans(c, c->list[--c->nlists].head, &empty);
      c->stacked = 0;
    }
    brisk__unlock(&c->lock);
    free_spans(empty);
  }
}

bool brisk__central_is_free(brisk_span_t *span, void *obj) {
  brisk_central_t *c = central_of(span->node, span->cls);
  bool found = false;
  brisk__lock(&c->lock);
  if ((uintptr_t)obj >= span->bump) found = true; /* never handed out */
  for (void *o = span->freelist; o != NULL && !found; o = brisk__block_next(o, "free()"))
    if (o == obj) found = true;
  for (uint32_t b = 0; b < c->nlists && !found; b++)
    for (void *o = c->list[b].head; o != NULL; o = brisk__block_next(o, "free()"))
      if (o == obj) { found = true; break; }
  brisk__unlock(&c->lock);
  return found;
}

void brisk__central_class_stats(unsigned cls, uint64_t *out_objs, uint64_t *free_objs,
                                uint64_t *spans) {
  *out_objs = *free_objs = *spans = 0;
  unsigned nodes = brisk__numa_count();
  for (unsigned slot = 0; slot < nodes; slot++) {
    brisk_central_t *c = central_of(slot, cls);
    brisk__lock(&c->lock);
    uint64_t batched = c->stacked;
    *out_objs += c->objs_out - batched; /* in use or in thread caches */
    *free_objs += c->spans * brisk__classes[cls].span_objs - c->objs_out + batched;
    *spans += c->spans;
    brisk__unlock(&c->lock);
  }
}

void brisk__central_node_stats(unsigned slot, uint64_t *out_bytes, uint64_t *free_bytes) {
  *out_bytes = *free_bytes = 0;
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    brisk_central_t *c = central_of(slot, cls);
    uint64_t size = brisk__classes[cls].size;
    brisk__lock(&c->lock);
    *out_bytes += (c->objs_out - c->stacked) * size;
    *free_bytes += (c->spans * brisk__classes[cls].span_objs - c->objs_out + c->stacked) * size;
    brisk__unlock(&c->lock);
  }
}

/* The caller holds the registry lock, under which discovery publishes new slots,
 * so the count cannot change between lock and unlock. */
void brisk__central_fork_lock(void) {
  for (unsigned slot = 0; slot < brisk__numa_count(); slot++)
    for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) brisk__lock(&central_of(slot, cls)->lock);
}
void brisk__central_fork_unlock(void) {
  for (unsigned slot = 0; slot < brisk__numa_count(); slot++)
    for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) brisk__unlock(&central_of(slot, cls)->lock);
}
