/* Small spans: every span of a size class has one owner, a small heap, and only
 * the owner touches the span's free list, bump pointer and counts. This is the
 * level below the thread caches (thread_cache.c) and above the page heap.
 *
 * Owners. Each live thread has a small heap (brisk_sheap_t). Each NUMA slot
 * also has an orphan heap, which owns the spans of threads that exited or moved
 * to another node; one lock per class guards the orphan's spans of that class
 * (and is the only lock on this level). A heap is metadata that is never freed:
 * a thread that has read a span's owner may still push to that heap's inbox
 * after the owner changed, and a thread's heap outlives it (retired, it serves
 * the next thread that starts).
 *
 * Frees. A thread frees a block of a span it owns into its own cache; when the
 * cache overflows, the blocks go back to their spans without a lock or an
 * atomic (brisk__small_release). A block of a span owned by another heap joins
 * the freeing thread's open message for that span (thread_cache.c), and a full
 * message goes to the owner (brisk__small_send, "Messages" below): a descriptor
 * in the owner's ring, or when that is full a chain on its linked inbox, one
 * compare-and-swap either way. The owner takes its messages on its next refill
 * and puts each chain on its cache list whole, without reading the blocks. A
 * message whose span has changed owner since it was sent is forwarded to the
 * new owner; so every block reaches the heap that owns its span.
 *
 * Why messages to a heap rather than a list per span (mimalloc's thread_free):
 * the owner learns of remote frees with one load on its refill path, without
 * scanning its full spans or tracking which of them received some, and taking
 * a message costs no read of the blocks, which are cold in the owner's cache.
 *
 * Lifecycle of a span (its `list`): PARTIAL (free objects on its list or above
 * bump) or FULL in its owner's lists; a span whose objects have all come back is
 * kept (one per class and thread heap, for the next refill: no page-heap lock,
 * no page-map writes) or given back to the page heap. A thread that exits hands
 * its spans to its slot's orphan heap; a thread that needs a span adopts an
 * orphan span of its slot and class before it takes a new one, and the purge
 * tick drains the orphans' inboxes, so spans of exited threads empty and return.
 *
 * Lock order: see "Locks" in base.h (registry, orphan class, heap, boot,
 * metadata, page map), checked in debug builds. */
#include "small.h"
#include "page_heap.h"
#include "numa.h"
#include "block.h"
#include "size_class.h"
#include "meta.h"
#include "pagemap.h"
#include "os.h"
#include "thread_cache.h" /* upward: brisk__registry_lock */

/* Spans of one class whose objects have all come back that a thread heap keeps
 * for its next refill, instead of giving them to the page heap. */
#define KEEP_EMPTY 1

typedef struct orphan_s {
  brisk_sheap_t heap;
  brisk_lock_t lock[BRISK_CLASSES]; /* the orphan heap's spans of each class */
} orphan_t;

static orphan_t orphan0;
/* Slot 0's orphan is static; the others come from metadata when discovery finds them. */
static orphan_t *orphans[BRISK_MAX_NODES] = {&orphan0};

/* Every thread heap ever made, and the retired ones ready for a new thread; both
 * under the registry lock. */
static brisk_sheap_t *all_heaps, *retired;

static inline orphan_t *orphan_of(unsigned slot) { return orphans[slot]; }
static bool chain_has(void *o, const void *obj, const brisk_span_t *s);
static inline bool is_orphan(const brisk_sheap_t *h) { return h->kind == BRISK_SHEAP_ORPHAN; }

static void orphan_init(orphan_t *o, unsigned slot) {
  o->heap.kind = BRISK_SHEAP_ORPHAN;
  o->heap.slot = slot;
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    o->lock[cls] = (brisk_lock_t)BRISK_LOCK_INIT(BRISK_RANK_ORPHAN);
  }
}

void brisk__small_init(void) { orphan_init(&orphan0, 0); }

bool brisk__small_add_slots(unsigned n) {
  for (unsigned i = 1; i < n; i++) {
    if (orphans[i] != NULL) continue; /* kept from an earlier topology (tests) */
    orphan_t *o = brisk__meta_alloc(sizeof *o);
    if (o == NULL) return false;
    orphan_init(o, i);
    orphans[i] = o;
  }
  return true;
}

/* ------------------------------------------------------------------------------
   A heap's span lists (the owner's; the orphan's under its class lock)
------------------------------------------------------------------------------ */

static inline uintptr_t span_end(const brisk_span_t *s) { return s->start + (uintptr_t)s->capacity * s->obj_size; }
static inline bool span_has_free(const brisk_span_t *s) { return s->freelist != NULL || s->bump < span_end(s); }

static inline void span_check(const brisk_span_t *s) {
  (void)s;
  brisk_assert(s->state == BRISK_SPAN_SMALL);
  brisk_assert(s->used + s->nfree + (span_end(s) - s->bump) / s->obj_size == s->capacity);
  brisk_assert((s->list == BRISK_SLIST_FULL) == !span_has_free(s));
}

static void list_add(brisk_span_t **head, brisk_span_t *s) {
  s->prev = NULL;
  s->next = *head;
  if (*head) (*head)->prev = s;
  *head = s;
}

static void list_del(brisk_span_t **head, brisk_span_t *s) {
  if (s->prev) s->prev->next = s->next;
  else *head = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

static inline brisk_span_t **list_of(brisk_sheap_t *h, const brisk_span_t *s) {
  return s->list == BRISK_SLIST_FULL ? &h->full[s->cls] : &h->partial[s->cls];
}

/* s joins h (counted there), on the list that its state says. */
static void heap_add(brisk_sheap_t *h, brisk_span_t *s) {
  s->list = span_has_free(s) ? BRISK_SLIST_PARTIAL : BRISK_SLIST_FULL;
  list_add(list_of(h, s), s);
  h->spans[s->cls]++;
  h->out[s->cls] += s->used;
}

static void heap_del(brisk_sheap_t *h, brisk_span_t *s) {
  list_del(list_of(h, s), s);
  if (s->kept) {
    s->kept = 0;
    h->kept[s->cls]--;
  }
  s->list = BRISK_SLIST_NONE;
  h->spans[s->cls]--;
  h->out[s->cls] -= s->used;
}

/* An empty span leaves its owner, on its way to the page heap: a block of it
 * that reaches an inbox after this was freed twice, and says so. */
static void span_disown(brisk_span_t *s) {
  atomic_store_explicit(&s->owner, NULL, memory_order_relaxed);
  s->cls = 0;
}

/* A span back to the page heap, its owner cleared first. */
static void span_free(brisk_span_t *s) {
  span_disown(s);
  brisk__heap_free(s); /* clears the page-map entries before anything else */
}

/* A fresh span of cls for h (not yet on its lists), published in the page map. */
static brisk_span_t *span_make(brisk_sheap_t *h, unsigned cls) {
  const brisk_class_info_t *ci = &brisk__classes[cls];
  brisk_span_t *s = brisk__heap_alloc(h->slot, ci->span_pages);
  if (s == NULL) return NULL;
  s->obj_size = ci->size;
  s->capacity = ci->span_objs;
  s->inv = ci->inv;
  s->rot = ci->rot;
  s->bump = s->start;
  s->freelist = NULL;
  s->nfree = 0;
  s->used = 0;
  s->kept = 0;
  s->list = BRISK_SLIST_NONE;
  s->cls = (uint8_t)cls;
  atomic_store_explicit(&s->owner, h, memory_order_relaxed);
  /* Published last: free() classifies a block by its page-map entry alone, and
   * the entry's release store makes the owner visible with it. */
  brisk__pagemap_set_small(s->start >> BRISK_PAGE_SHIFT, s->npages, s, cls);
  return s;
}

static brisk_span_t *span_new(brisk_sheap_t *h, unsigned cls) {
  brisk_span_t *s = span_make(h, cls);
  if (s != NULL) heap_add(h, s);
  return s;
}

/* Up to want objects of s, appended to (*head, *tail): the free list first (the
 * whole of it in O(1) when it fits in cap, which may exceed want), then
 * never-used ones in address order. */
static uint32_t span_take(brisk_sheap_t *h, brisk_span_t *s, uint32_t want, uint32_t cap, void **head,
                          void **tail) {
  uint32_t n = 0;
  if (s->kept) {
    s->kept = 0;
    h->kept[s->cls]--;
  }
  if (s->freelist != NULL && s->nfree <= cap) {
    /* Every link was written by brisk__small_release; the cache's pops check them. */
    if (*tail) brisk__block_set_next(*tail, s->freelist);
    else *head = s->freelist;
    n = s->nfree;
    *tail = NULL; /* the list's last block is not known: the caller stops here */
    s->freelist = NULL;
    s->nfree = 0;
  } else {
    while (n < want && s->freelist != NULL) {
      void *obj = s->freelist;
      void *next = brisk__block_next(obj, "malloc()");
      if (brisk_unlikely(next != NULL && ((uintptr_t)next < s->start || (uintptr_t)next >= span_end(s))))
        brisk__fatal("malloc()", "corrupted free list", obj);
      s->freelist = next;
      s->nfree--;
      brisk__block_set_next(obj, NULL);
      if (*tail) brisk__block_set_next(*tail, obj);
      else *head = obj;
      *tail = obj;
      n++;
    }
  }
  if ((*tail != NULL || *head == NULL) && n < want && s->bump < span_end(s)) {
    /* k never-used objects, from bump up: each link written once, to the next. */
    uintptr_t b = s->bump, size = s->obj_size;
    uint32_t k = (uint32_t)((span_end(s) - b) / size);
    if (k > want - n) k = want - n;
    if (*tail) brisk__block_set_next(*tail, (void *)b);
    else *head = (void *)b;
    uintptr_t last = b + (uintptr_t)(k - 1) * size;
    for (; b < last; b += size) brisk__block_set_next((void *)b, (void *)(b + size));
    brisk__block_set_next((void *)last, NULL);
    *tail = (void *)last;
    s->bump = last + size;
    n += k;
  }
  s->used += n;
  h->out[s->cls] += n;
  if (!span_has_free(s) && s->list == BRISK_SLIST_PARTIAL) {
    list_del(&h->partial[s->cls], s);
    s->list = BRISK_SLIST_FULL;
    list_add(&h->full[s->cls], s);
  }
  span_check(s);
  return n;
}

/* Blocks first..last (k of them, linked in that order, each with its free hint)
 * of span s, owned by h, are free again: the run joins the span's free list with
 * one link written. Returns s when it must go back to the page heap (the caller
 * frees it, after dropping any lock). */
static brisk_span_t *span_put_run(brisk_sheap_t *h, brisk_span_t *s, void *first, void *last, uint32_t k) {
  brisk_assert(atomic_load_explicit(&s->owner, memory_order_relaxed) == h);
  if (brisk_unlikely(k > s->used)) brisk__fatal("free()", "double free", first);
  brisk__block_set_next(last, s->freelist);
  s->freelist = first;
  s->nfree += k;
  s->used -= k;
  h->out[s->cls] -= k;
  if (s->list == BRISK_SLIST_FULL) {
    list_del(&h->full[s->cls], s);
    s->list = BRISK_SLIST_PARTIAL;
    list_add(&h->partial[s->cls], s);
  }
  span_check(s);
  if (s->used > 0) return NULL;
  if (!is_orphan(h) && h->kept[s->cls] < KEEP_EMPTY) { /* kept for the next refill */
    s->kept = 1;
    h->kept[s->cls]++;
    return NULL;
  }
  heap_del(h, s);
  return s;
}

static brisk_span_t *span_put(brisk_sheap_t *h, brisk_span_t *s, void *b) {
  ((uint64_t *)b)[1] = brisk__free_key;
  return span_put_run(h, s, b, b, 1);
}

/* ------------------------------------------------------------------------------
   Inboxes
------------------------------------------------------------------------------ */

/* The span of a block that came back through an inbox or a remote list, checked
 * as free() checked it (the list may have been written since). */
static brisk_span_t *block_span(void *b, const char *call) {
  uint64_t e = brisk__pagemap_entry(b);
  brisk_span_t *s = brisk__pm_span(e);
  if (brisk_unlikely(brisk__pm_class(e) == 0 || s == NULL || s->state != BRISK_SPAN_SMALL ||
                     (uintptr_t)b < s->start || (uintptr_t)b >= span_end(s)))
    brisk__fatal(call, "corrupted free list", b);
  const brisk_class_info_t *ci = &brisk__classes[s->cls];
  uintptr_t off = (uintptr_t)b - s->start;
  if (brisk_unlikely(brisk__obj_index(ci, off) >= ci->span_objs)) brisk__fatal(call, "corrupted free list", b);
  return s;
}

/* Lists that come back are mostly runs of blocks of one span: the walk looks a
 * span up only when a block lies outside the last one. */
typedef struct span_cursor_s {
  uintptr_t lo, hi;
  brisk_span_t *s;
  const brisk_class_info_t *ci;
} span_cursor_t;

static inline brisk_span_t *cursor_span(span_cursor_t *c, void *b, const char *call) {
  uintptr_t off = (uintptr_t)b - c->lo;
  if (brisk_likely(off < c->hi - c->lo)) {
    if (brisk_unlikely(brisk__obj_index(c->ci, off) >= c->ci->span_objs))
      brisk__fatal(call, "corrupted free list", b);
    return c->s;
  }
  brisk_span_t *s = block_span(b, call);
  c->s = s;
  c->lo = s->start;
  c->hi = span_end(s);
  c->ci = &brisk__classes[s->cls];
  return s;
}

/* Messages. A thread sends the blocks it freed of one span as one message: a
 * chain linked through word 0 as any list, whose first block's word 1 holds,
 * instead of the free hint, the chain's last block and length, sealed with the
 * free key. The last block's word 0 links to the next message of the inbox. So
 * the owner learns a message's length and end from its first block alone and
 * puts the whole chain on its cache in O(1), without walking blocks that are
 * cold in its cache (each would be a serial miss); it reads them when it hands
 * them out, as any cache pop does. One span per message, so that whether the
 * receiver owns the blocks is one check, whatever changed hands meanwhile. */
#define MSG_LEN_SHIFT 48
#define MSG_PTR_MASK (((uint64_t)1 << MSG_LEN_SHIFT) - 1)
#define MSG_LEN_MASK 0x7fffu
/* A ring cell's bit 32: its one block is suspected of a double free
 * (brisk__small_send_suspect). Such a block never travels linked. */
#define MSG_SUSPECT_CELL ((uint64_t)1 << 32)

static inline void msg_seal(void *head, const void *tail, uint32_t n) {
  ((uint64_t *)head)[1] = (((uint64_t)n << MSG_LEN_SHIFT) | (uintptr_t)tail) ^ brisk__free_key;
}

/* The ring: a bounded queue of message descriptors in h's record (metadata,
 * which no program write reaches), many senders and one taker (Vyukov's bounded
 * queue). A message sent through it costs the owner no read of block memory:
 * the descriptor says where the chain starts and ends and how long it is. A
 * full ring sends the message through the linked inbox instead. */
static void ring_init(brisk_sheap_t *h) {
  for (uint64_t i = 0; i < BRISK_RING; i++) atomic_store_explicit(&h->ring[i].seq, i, memory_order_relaxed);
  atomic_store_explicit(&h->ring_in, 0, memory_order_relaxed);
  h->ring_out = 0;
}

static bool ring_push(brisk_sheap_t *h, void *head, void *tail, uint64_t n) {
  uint64_t pos = atomic_load_explicit(&h->ring_in, memory_order_relaxed);
  for (;;) {
    brisk_ring_cell_t *c = &h->ring[pos & (BRISK_RING - 1)];
    uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    int64_t dif = (int64_t)(seq - pos);
    if (dif == 0) {
      if (atomic_compare_exchange_weak_explicit(&h->ring_in, &pos, pos + 1, memory_order_relaxed,
                                                memory_order_relaxed)) {
        c->head = head;
        c->tail = tail;
        c->n = n;
        atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
        return true;
      }
    } else if (dif < 0) {
      return false; /* full */
    } else {
      pos = atomic_load_explicit(&h->ring_in, memory_order_relaxed);
    }
  }
}

/* The owner's (or, for a retired heap, its one drainer's) next descriptor. */
static bool ring_pop(brisk_sheap_t *h, void **head, void **tail, uint64_t *n) {
  if (h->kind == BRISK_SHEAP_ORPHAN) return false;
  brisk_ring_cell_t *c = &h->ring[h->ring_out & (BRISK_RING - 1)];
  if (atomic_load_explicit(&c->seq, memory_order_acquire) != h->ring_out + 1) return false;
  *head = c->head;
  *tail = c->tail;
  *n = c->n;
  atomic_store_explicit(&c->seq, h->ring_out + BRISK_RING, memory_order_release);
  h->ring_out++;
  return true;
}

static inline bool ring_ready(const brisk_sheap_t *h) {
  const brisk_ring_cell_t *c = &h->ring[h->ring_out & (BRISK_RING - 1)];
  return atomic_load_explicit(&c->seq, memory_order_relaxed) == h->ring_out + 1;
}

/* Push the message head..tail onto h's inbox. */
static void inbox_push(brisk_sheap_t *h, void *head, void *tail) {
  void *old = atomic_load_explicit(&h->inbox, memory_order_relaxed);
  do {
    brisk__block_set_next(tail, old);
  } while (!atomic_compare_exchange_weak_explicit(&h->inbox, &old, head, memory_order_release,
                                                  memory_order_relaxed));
}

static inline brisk_sheap_t *owner_of(const brisk_span_t *s, void *b) {
  brisk_sheap_t *o = atomic_load_explicit(&s->owner, memory_order_acquire);
  if (brisk_unlikely(o == NULL)) brisk__fatal("free()", "double free", b); /* its span went back */
  return o;
}

/* Read and check message m: its span, last block and length, and the next
 * message. A seal that a program's write broke, or a last block outside m's
 * span, aborts: the chain is not followed to an address nobody checked. */
typedef struct msg_s {
  void *head, *tail, *next;
  uint32_t n;
  brisk_span_t *span;
  bool suspect;
} msg_t;

static msg_t msg_open(void *m) {
  msg_t g;
  g.head = m;
  g.span = block_span(m, "free()");
  uint64_t w = ((uint64_t *)m)[1] ^ brisk__free_key;
  g.n = (uint32_t)(w >> MSG_LEN_SHIFT) & MSG_LEN_MASK;
  g.suspect = false;
  g.tail = (void *)(uintptr_t)(w & MSG_PTR_MASK);
  uintptr_t t = (uintptr_t)g.tail, end = span_end(g.span);
  if (brisk_unlikely(g.n == 0 || g.n > g.span->capacity || t < g.span->start || t >= end ||
                     (t - g.span->start) % g.span->obj_size != 0))
    brisk__fatal("free()", "corrupted free list", m);
  g.next = brisk__block_next(g.tail, "free()");
  ((uint64_t *)m)[1] = brisk__free_key; /* a free block's hint again */
  return g;
}

/* A descriptor taken from the ring, checked against the page map (no block is
 * read): its span, and a last block in it. */
static msg_t msg_from_ring(void *head, void *tail, uint64_t cell_n) {
  uint32_t n = (uint32_t)cell_n;
  msg_t g = {head, tail, NULL, n, block_span(head, "free()"), (cell_n & MSG_SUSPECT_CELL) != 0};
  uintptr_t t = (uintptr_t)tail;
  if (brisk_unlikely(n == 0 || n > g.span->capacity || t < g.span->start || t >= span_end(g.span)))
    brisk__fatal("free()", "corrupted free list", head);
  return g;
}

/* Send message head..tail (n blocks of span s) to heap o: its ring, or when that
 * is full (or o is an orphan, whose inbox any thread drains) its linked inbox. */
static void msg_deliver(brisk_sheap_t *o, void *head, void *tail, uint32_t n) {
  if (o->kind != BRISK_SHEAP_ORPHAN && ring_push(o, head, tail, n)) return;
  msg_seal(head, tail, n);
  inbox_push(o, head, tail);
}

/* A block free() suspected of a double free (its hint was set) reaches its
 * span's owner o alone and unwritten: if it is a double free, its first copy may
 * still be on its way, linked through the block's words in another thread's
 * remote list, and that chain must stay whole. Where the block is seen free
 * (o's span list, never handed out, or o's inbox; an orphan's here, under its
 * class lock; a thread's when it takes the ring cell), it is a double free.
 * Where it is not, it is withheld: never put back on a list or span, so that
 * only the first copy, arriving later, is handed out again. A full ring
 * withholds it at once. A withheld block counts as out of its span for good
 * (it is a program's double free, or the program's data equalled the free key). */
static void suspect_deliver(brisk_sheap_t *me, brisk_sheap_t *o, brisk_span_t *s, void *p) {
  if (o == me || is_orphan(o)) {
    if (brisk__small_is_free(me, s, p)) brisk__fatal("free()", "double free", p);
    return; /* withheld */
  }
  (void)ring_push(o, p, p, 1 | MSG_SUSPECT_CELL); /* or withheld */
}

/* A message to whoever owns its span now. */
static void msg_forward(const msg_t *g) {
  brisk_sheap_t *o = owner_of(g->span, g->head);
  if (g->suspect) suspect_deliver(NULL, o, g->span, g->head);
  else msg_deliver(o, g->head, g->tail, g->n);
}

/* A suspected block reached its span's owner h: a double free if h sees it
 * free, else withheld (see suspect_deliver). */
static void msg_check_suspect(brisk_sheap_t *h, const msg_t *g) {
  if (brisk__small_is_free(h, g->span, g->head)) brisk__fatal("free()", "double free", g->head);
}

/* A message's blocks back into their span (h owns it). */
static void msg_release(brisk_sheap_t *h, const msg_t *g) {
  brisk__block_set_next(g->tail, NULL);
  brisk__small_release(h, g->head, g->n);
}

bool brisk__small_inbox_ready(const brisk_sheap_t *h) {
  return ring_ready(h) || atomic_load_explicit(&h->inbox, memory_order_relaxed) != NULL;
}

void *brisk__small_inbox_take(brisk_sheap_t *h) {
  if (atomic_load_explicit(&h->inbox, memory_order_relaxed) == NULL) return NULL;
  return atomic_exchange_explicit(&h->inbox, NULL, memory_order_acquire);
}

/* The next message, from the ring first, then the linked ones taken. */
static bool msg_take(brisk_sheap_t *h, void **inbox, msg_t *g) {
  void *head, *tail;
  uint64_t n;
  if (ring_pop(h, &head, &tail, &n)) {
    *g = msg_from_ring(head, tail, n);
    return true;
  }
  if (*inbox == NULL) return false;
  *g = msg_open(*inbox);
  *inbox = g->next;
  return true;
}

bool brisk__small_msg_next(brisk_sheap_t *h, void **inbox, unsigned *cls, void **head, void **tail, uint32_t *n,
                           bool *suspect) {
  msg_t g;
  while (msg_take(h, inbox, &g)) {
    if (atomic_load_explicit(&g.span->owner, memory_order_acquire) != h) {
      msg_forward(&g);
      continue;
    }
    *cls = g.span->cls;
    *head = g.head;
    *tail = g.tail;
    *n = g.n;
    *suspect = g.suspect;
    return true;
  }
  return false;
}

/* Take h's inbox (h is the caller's own heap, or a retired one under the
 * registry lock): messages of spans h owns go back to their spans, the others
 * to their spans' owners. */
static void thread_inbox_drain(brisk_sheap_t *h) {
  void *m = atomic_exchange_explicit(&h->inbox, NULL, memory_order_acquire);
  msg_t g;
  while (msg_take(h, &m, &g)) {
    if (atomic_load_explicit(&g.span->owner, memory_order_acquire) == h) {
      if (g.suspect) msg_check_suspect(h, &g); /* and withheld */
      else msg_release(h, &g);
    } else {
      msg_forward(&g);
    }
  }
}

/* h's waiting messages back into their spans (a cheap peek first). */
static void collect(brisk_sheap_t *h) {
  if (brisk__small_inbox_ready(h)) thread_inbox_drain(h);
}

/* The orphan's inbox, by any thread: each message's blocks go back to their
 * span under its class lock (or on to the span's owner, if adopted since). */
static void orphan_drain(orphan_t *o) {
  if (atomic_load_explicit(&o->heap.inbox, memory_order_relaxed) == NULL) return;
  void *m = atomic_exchange_explicit(&o->heap.inbox, NULL, memory_order_acquire);
  while (m != NULL) {
    msg_t g = msg_open(m);
    m = g.next;
    unsigned cls = g.span->cls;
    brisk_span_t *gone = NULL;
    brisk__lock(&o->lock[cls]);
    bool ours = atomic_load_explicit(&g.span->owner, memory_order_relaxed) == &o->heap;
    if (ours) {
      brisk__block_set_next(g.tail, NULL);
      void *b = g.head;
      for (uint32_t i = 0; i < g.n; i++) {
        void *next = brisk__block_next(b, "free()");
        if (brisk_unlikely(block_span(b, "free()") != g.span)) brisk__fatal("free()", "corrupted free list", b);
        brisk_span_t *e = span_put(&o->heap, g.span, b); /* a put after the span emptied aborts */
        if (e != NULL) gone = e;
        b = next;
      }
    }
    brisk__unlock(&o->lock[cls]);
    if (!ours) msg_forward(&g);
    if (gone != NULL) span_free(gone);
  }
}

/* ------------------------------------------------------------------------------
   The thread caches' interface
------------------------------------------------------------------------------ */

static brisk_span_t *adopt(brisk_sheap_t *h, unsigned cls);

uint32_t brisk__small_refill(brisk_sheap_t *h, unsigned cls, uint32_t want, uint32_t cap, void **head) {
  void *tail = NULL;
  uint32_t n = 0;
  *head = NULL;
  while (n < want) {
    brisk_span_t *s = h->partial[cls];
    if (s == NULL) {
      if (n > 0) break;
      s = adopt(h, cls);
      if (s == NULL) s = span_new(h, cls);
      if (s == NULL) break;
    }
    n += span_take(h, s, want - n, cap - n, head, &tail);
    if (tail == NULL) break; /* a whole free list joined: its end is not known */
  }
  return n;
}

/* An orphan span of h's slot and class with free objects, now h's. */
static brisk_span_t *adopt(brisk_sheap_t *h, unsigned cls) {
  orphan_t *o = orphan_of(h->slot);
  orphan_drain(o);
  if (o->heap.partial[cls] == NULL) return NULL; /* racy peek: a miss costs a new span */
  brisk__lock(&o->lock[cls]);
  brisk_span_t *s = o->heap.partial[cls];
  if (s != NULL) {
    heap_del(&o->heap, s);
    /* Under the class lock, so that a drain of the orphan's inbox sees either
     * owner; blocks pushed to the orphan before this are forwarded here. */
    atomic_store_explicit(&s->owner, h, memory_order_release);
  }
  brisk__unlock(&o->lock[cls]);
  if (s != NULL) heap_add(h, s);
  return s;
}

/* Spans that one release empties go back to the page heap together, with one
 * acquisition of each arena's lock (a thread that frees in bulk empties
 * several per spill). */
#define RELEASE_BATCH 16
typedef struct gone_s {
  brisk_span_t *v[RELEASE_BATCH];
  unsigned n;
} gone_t;

static void gone_flush(gone_t *g) {
  brisk__heap_free_batch(g->v, g->n);
  g->n = 0;
}

static void gone_add(gone_t *g, brisk_span_t *s) {
  span_disown(s);
  g->v[g->n++] = s;
  if (g->n == RELEASE_BATCH) gone_flush(g);
}

void *brisk__small_release(brisk_sheap_t *h, void *head, uint32_t n) {
  span_cursor_t c = {0, 0, NULL, NULL};
  gone_t gone = {.n = 0};
  brisk_span_t *run = NULL;
  void *first = NULL, *last = NULL;
  uint32_t k = 0;
  /* Blocks of one span that follow each other go back as one run. */
  for (uint32_t i = 0; i < n; i++) {
    void *b = head;
    head = brisk__block_next(b, "free()");
    brisk_span_t *s = cursor_span(&c, b, "free()");
    if (s != run) {
      if (run != NULL) {
        brisk_span_t *empty = span_put_run(h, run, first, last, k);
        if (empty) gone_add(&gone, empty); /* not the cursor's: that is s now */
      }
      if (brisk_unlikely(atomic_load_explicit(&s->owner, memory_order_relaxed) != h))
        brisk__fatal("free()", "corrupted free list", b);
      run = s;
      first = b;
      k = 0;
    }
    last = b;
    k++;
  }
  if (run != NULL) {
    brisk_span_t *empty = span_put_run(h, run, first, last, k);
    if (empty) gone_add(&gone, empty);
  }
  if (gone.n > 0) gone_flush(&gone);
  return head;
}

void brisk__small_send_suspect(brisk_sheap_t *me, brisk_span_t *s, void *p) {
  if (brisk_unlikely(s->state != BRISK_SPAN_SMALL)) brisk__fatal("free()", "double free", p); /* gone back */
  suspect_deliver(me, owner_of(s, p), s, p);
}

void brisk__small_send(brisk_sheap_t *me, unsigned my_slot, brisk_span_t *s, void *head, void *tail, uint32_t n) {
  if (brisk_unlikely(s->state != BRISK_SPAN_SMALL)) brisk__fatal("free()", "double free", head); /* gone back */
  brisk_sheap_t *o = owner_of(s, head);
  brisk__block_set_next(tail, NULL);
  if (o == me) { /* adopted since its blocks were freed */
    brisk__small_release(me, head, n);
    return;
  }
  if (s->node != my_slot) brisk__numa_note_remote(s->node, n);
  msg_deliver(o, head, tail, n);
  /* Nobody waits on an orphan's inbox: blocks of exited threads' spans go back
   * now, so that their spans empty while the program runs. */
  if (is_orphan(o)) orphan_drain(orphan_of(o->slot));
}

/* One object for a thread without a small heap (its cache is being set up, is
 * not placed on a node yet, or is gone): from the slot's orphan spans. */
uint32_t brisk__small_take_one(unsigned slot, unsigned cls, void **out) {
  orphan_t *o = orphan_of(slot);
  void *tail = NULL;
  *out = NULL;
  for (int attempt = 0; attempt < 2; attempt++) {
    brisk__lock(&o->lock[cls]);
    brisk_span_t *s = o->heap.partial[cls];
    uint32_t n = 0;
    if (s != NULL) n = span_take(&o->heap, s, 1, 1, out, &tail);
    brisk__unlock(&o->lock[cls]);
    if (n > 0) {
      brisk__block_set_next(*out, NULL);
      return 1;
    }
    if (attempt > 0) break;
    /* A new span, owned by the orphan; it joins the orphan's lists under the lock. */
    brisk_span_t *ns = span_make(&o->heap, cls);
    if (ns == NULL) return 0;
    brisk__lock(&o->lock[cls]);
    heap_add(&o->heap, ns);
    brisk__unlock(&o->lock[cls]);
  }
  return 0;
}

/* Every span of h goes to the orphan of its slot (one that is empty, to the page
 * heap). h's thread has given its cached blocks back first. */
static void heap_orphan_all(brisk_sheap_t *h) {
  orphan_t *o = orphan_of(h->slot);
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    while (h->partial[cls] != NULL || h->full[cls] != NULL) {
      brisk_span_t *s = h->partial[cls] ? h->partial[cls] : h->full[cls];
      heap_del(h, s);
      if (s->used == 0) {
        span_free(s);
        continue;
      }
      brisk__lock(&o->lock[cls]);
      atomic_store_explicit(&s->owner, &o->heap, memory_order_release);
      heap_add(&o->heap, s);
      brisk__unlock(&o->lock[cls]);
    }
  }
}

void brisk__small_abandon(brisk_sheap_t *h) {
  heap_orphan_all(h);
  thread_inbox_drain(h); /* h owns nothing now: every block is forwarded */
}

brisk_sheap_t *brisk__small_heap_acquire(unsigned slot) {
  brisk__lock(&brisk__registry_lock);
  brisk_sheap_t *h = retired;
  if (h != NULL) retired = h->next_retired;
  brisk__unlock(&brisk__registry_lock);
  if (h == NULL) {
    h = brisk__meta_alloc(sizeof *h);
    if (h == NULL) return NULL;
    h->kind = BRISK_SHEAP_THREAD;
    ring_init(h);
    brisk__lock(&brisk__registry_lock);
    h->next_all = all_heaps;
    all_heaps = h;
    brisk__unlock(&brisk__registry_lock);
  } else {
    thread_inbox_drain(h); /* late pushes of its last thread's remote frees */
  }
  h->slot = slot;
  h->state = BRISK_SHEAP_LIVE;
  return h;
}

void brisk__small_heap_retire(brisk_sheap_t *h) {
  brisk__small_abandon(h);
  brisk__lock(&brisk__registry_lock);
  h->state = BRISK_SHEAP_RETIRED;
  h->next_retired = retired;
  retired = h;
  brisk__unlock(&brisk__registry_lock);
}

/* Idle classes give back the empty spans their heap kept. */
void brisk__small_scavenge(brisk_sheap_t *h, const uint8_t *active) {
  collect(h);
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    if ((active && active[cls]) || h->kept[cls] == 0) continue;
    for (brisk_span_t *s = h->partial[cls], *next; s != NULL; s = next) {
      next = s->next;
      if (s->kept) {
        heap_del(h, s);
        span_free(s);
      }
    }
  }
}

/* The purge tick: the orphans' inboxes (blocks of exited threads' spans, which
 * empty and go back), and remote frees that reached retired heaps late. */
void brisk__small_drain(void) {
  unsigned nodes = brisk__numa_count();
  for (unsigned i = 0; i < nodes; i++) orphan_drain(orphan_of(i));
  brisk__lock(&brisk__registry_lock);
  for (brisk_sheap_t *h = retired; h != NULL; h = h->next_retired)
    if (brisk__small_inbox_ready(h)) thread_inbox_drain(h);
  brisk__unlock(&brisk__registry_lock);
  /* forwarded blocks of orphan spans */
  for (unsigned i = 0; i < nodes; i++) orphan_drain(orphan_of(i));
}

/* ------------------------------------------------------------------------------
   Double frees, statistics, fork
------------------------------------------------------------------------------ */

static bool chain_has(void *o, const void *obj, const brisk_span_t *s) {
  for (; o != NULL; o = brisk__block_next(o, "free()")) {
    if (o == obj) return true;
    if (s != NULL && ((uintptr_t)o < s->start || (uintptr_t)o >= span_end(s)))
      brisk__fatal("free()", "corrupted free list", o);
  }
  return false;
}

/* Walks the caller's own inbox: others only push onto it, and only its owner
 * takes messages off. */
static bool chain_has_n(void *b, const void *tail, uint32_t n, const void *obj) {
  for (uint32_t i = 0; i < n; i++) {
    if (b == obj) return true;
    if (b == tail) break;
    b = brisk__block_next(b, "free()");
  }
  return false;
}

static bool inbox_has(brisk_sheap_t *me, const void *obj) {
  for (uint64_t pos = me->ring_out;; pos++) {
    const brisk_ring_cell_t *c = &me->ring[pos & (BRISK_RING - 1)];
    if (atomic_load_explicit(&c->seq, memory_order_acquire) != pos + 1) break;
    if (chain_has_n(c->head, c->tail, (uint32_t)c->n, obj)) return true;
  }
  for (void *m = atomic_load_explicit(&me->inbox, memory_order_acquire); m != NULL;) {
    uint64_t w = ((uint64_t *)m)[1] ^ brisk__free_key;
    const void *tail = (const void *)(uintptr_t)(w & MSG_PTR_MASK);
    void *b = m;
    for (uint32_t i = 0, n = (uint32_t)(w >> MSG_LEN_SHIFT); i < n; i++) {
      if (b == obj) return true;
      if (b == tail) break;
      b = brisk__block_next(b, "free()");
    }
    m = brisk__block_next(tail, "free()");
  }
  return false;
}

/* Whether obj is free already, as far as the calling thread (heap me, NULL when
 * it has none) can see without stopping others: in its span's free list or never
 * handed out, when the span is the caller's or an orphan's, or in the caller's
 * inbox. A block freed into another thread's cache or inbox is out of sight. */
bool brisk__small_is_free(brisk_sheap_t *me, brisk_span_t *s, void *obj) {
  brisk_sheap_t *o = atomic_load_explicit(&s->owner, memory_order_acquire);
  if (o == NULL) return true;
  if (o == me) {
    if ((uintptr_t)obj >= s->bump || chain_has(s->freelist, obj, s)) return true;
    return inbox_has(me, obj);
  }
  if (!is_orphan(o)) return false;
  orphan_t *orph = orphan_of(o->slot);
  bool found = false;
  brisk__lock(&orph->lock[s->cls]);
  if (atomic_load_explicit(&s->owner, memory_order_relaxed) == o)
    found = (uintptr_t)obj >= s->bump || chain_has(s->freelist, obj, s);
  brisk__unlock(&orph->lock[s->cls]);
  return found;
}

/* Counters are written by each heap's owner (an orphan's under its locks) and
 * read here without stopping anyone: a close figure while threads run. */
static void heap_counts(const brisk_sheap_t *h, unsigned cls, uint64_t *out, uint64_t *spans) {
  *out += __atomic_load_n(&h->out[cls], __ATOMIC_RELAXED);
  *spans += __atomic_load_n(&h->spans[cls], __ATOMIC_RELAXED);
}

void brisk__small_class_stats(unsigned cls, uint64_t *out_objs, uint64_t *free_objs, uint64_t *spans) {
  uint64_t out = 0, n = 0;
  unsigned nodes = brisk__numa_count();
  for (unsigned i = 0; i < nodes; i++) heap_counts(&orphan_of(i)->heap, cls, &out, &n);
  brisk__lock(&brisk__registry_lock);
  for (const brisk_sheap_t *h = all_heaps; h != NULL; h = h->next_all) heap_counts(h, cls, &out, &n);
  brisk__unlock(&brisk__registry_lock);
  uint64_t cap = n * brisk__classes[cls].span_objs;
  *out_objs = out;
  *free_objs = cap > out ? cap - out : 0;
  *spans = n;
}

void brisk__small_node_stats(unsigned slot, uint64_t *out_bytes, uint64_t *free_bytes) {
  *out_bytes = *free_bytes = 0;
  brisk__lock(&brisk__registry_lock);
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    uint64_t out = 0, n = 0;
    heap_counts(&orphan_of(slot)->heap, cls, &out, &n);
    for (const brisk_sheap_t *h = all_heaps; h != NULL; h = h->next_all)
      if (h->slot == slot) heap_counts(h, cls, &out, &n);
    uint64_t cap = n * brisk__classes[cls].span_objs, size = brisk__classes[cls].size;
    *out_bytes += out * size;
    *free_bytes += (cap > out ? cap - out : 0) * size;
  }
  brisk__unlock(&brisk__registry_lock);
}

/* The caller holds the registry lock, under which discovery publishes new slots,
 * so the count cannot change between lock and unlock. */
void brisk__small_fork_lock(void) {
  for (unsigned slot = 0; slot < brisk__numa_count(); slot++)
    for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) brisk__lock_fork(&orphan_of(slot)->lock[cls]);
}
void brisk__small_fork_unlock(void) {
  for (unsigned slot = 0; slot < brisk__numa_count(); slot++)
    for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) brisk__unlock_fork(&orphan_of(slot)->lock[cls]);
}

/* In a forked child only the forking thread exists. The other threads' heaps
 * are left alone and never reused: their owners change spans without a lock,
 * so the fork may have caught one halfway through a refill or a spill, and
 * nothing in the child may read those spans' lists or counts. Their memory is
 * lost to the child (as every thread cache's is, with any thread-caching
 * allocator); blocks of theirs that the child frees wait in their inboxes.
 * Retired heaps and orphans changed only under locks the fork held, so they
 * serve the child. Runs single-threaded, locks released. */
void brisk__small_after_fork_child(brisk_sheap_t *mine) {
  for (brisk_sheap_t *h = all_heaps; h != NULL; h = h->next_all)
    if (h != mine && h->state == BRISK_SHEAP_LIVE) h->state = BRISK_SHEAP_LOST;
}
