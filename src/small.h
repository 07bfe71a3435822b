/* Small spans (small.c): the small heaps (one per live thread, one orphan per
 * NUMA slot) that own the spans of the size classes. A heap's fields are its
 * owner's except its inbox and ring, which other threads write; one lock per
 * class (rank ORPHAN) guards an orphan heap's spans of that class. */

#ifndef BRISK_SMALL_H
#define BRISK_SMALL_H
#include "pagemap.h"

#pragma GCC visibility push(hidden)

typedef enum { BRISK_SHEAP_THREAD = 0, BRISK_SHEAP_ORPHAN } brisk_sheap_kind_t;
/* LOST: a heap whose thread did not come through fork (small.c). */
typedef enum { BRISK_SHEAP_LIVE = 0, BRISK_SHEAP_RETIRED, BRISK_SHEAP_LOST } brisk_sheap_state_t;

/* A small heap: the spans one owner holds, by class. The inbox, the ring's claim
 * counter and the ring's cells are the only fields other threads write (remote
 * frees send messages there); everything else is the owner's. Never freed (see
 * small.c). */
/* Message descriptors in a heap's ring: 4 KiB per thread, written when the heap
 * is made; a full ring falls back to the linked inbox. */
#define BRISK_RING 128
typedef struct brisk_ring_cell_s {
  _Atomic uint64_t seq;   /* the ring position it is free for, or that + 1 when filled */
  void *head, *tail;
  uint64_t n;
} brisk_ring_cell_t;

#define BRISK_REMOTE_SLOTS 128 /* see REMOTE_BATCH in thread_cache.c; a multiple of 64 */

typedef struct brisk_sheap_s {
  /* Written by other threads: the linked inbox and the ring's claim counter. */
  _Atomic(void *) inbox;
  _Atomic uint64_t ring_in;
  char pad_inbox[BRISK_CACHE_LINE - sizeof(void *) - sizeof(uint64_t)];
  brisk_ring_cell_t ring[BRISK_RING]; /* filled by senders, emptied by the owner */
  uint64_t ring_out;      /* the owner's next ring position */
  unsigned slot;          /* the NUMA slot of every span it owns */
  uint8_t kind;           /* brisk_sheap_kind_t */
  uint8_t state;          /* brisk_sheap_state_t */
  brisk_span_t *partial[BRISK_CLASSES];
  brisk_span_t *full[BRISK_CLASSES];
  uint32_t kept[BRISK_CLASSES];   /* empty spans kept, per class */
  uint64_t spans[BRISK_CLASSES];  /* spans owned */
  uint64_t out[BRISK_CLASSES];    /* objects out of them: sum of span->used */
  /* Blocks of other heaps' spans that this heap's thread freed, waiting to be
   * sent to their owners (thread_cache.c): one open message per slot, a slot
   * per span (direct-mapped). Here rather than in the thread cache, whose TLS
   * must stay small enough for dlopen's static TLS. */
  struct {
    brisk_span_t *span;
    void *head, *tail;
    uint32_t n;
  } remote[BRISK_REMOTE_SLOTS];
  /* Bit i: remote[i] holds blocks (n > 0), so that a flush visits the open
   * messages only, not all BRISK_REMOTE_SLOTS slots (4 KiB of them). */
  uint64_t remote_open[BRISK_REMOTE_SLOTS / 64];
  uint32_t remote_count;
  size_t remote_bytes;
  uint64_t remote_sent; /* bytes sent to owners so far (the purge thread's start, thread_cache.c) */
  struct brisk_sheap_s *next_all, *next_retired; /* registry lock */
} __attribute__((aligned(BRISK_CACHE_LINE))) brisk_sheap_t;
_Static_assert(BRISK_REMOTE_SLOTS % 64 == 0, "remote_open has a bit per slot");

void brisk__small_init(void);
bool brisk__small_add_slots(unsigned n); /* discovery: orphans of slots [1, n) */
brisk_sheap_t *brisk__small_heap_acquire(unsigned slot);
void brisk__small_heap_retire(brisk_sheap_t *h); /* its thread exits */
/* Every span of h goes to its slot's orphan (the thread moves to another node). */
void brisk__small_abandon(brisk_sheap_t *h);
/* A NULL-terminated list of up to want objects of cls from h's spans (or a
 * span's whole free list, up to cap; an orphan
 * span adopted or a new one when h has none with free objects); 0 when memory is
 * exhausted. */
uint32_t brisk__small_refill(brisk_sheap_t *h, unsigned cls, uint32_t want, uint32_t cap, void **head);
/* The first n blocks of a list, all of spans that h owns, go back to their
 * spans; returns the rest of the list. */
void *brisk__small_release(brisk_sheap_t *h, void *head, uint32_t n);
/* Send the chain head..tail of n blocks of span s, freed by this thread (heap
 * me, NULL when it has none; NUMA slot my_slot), to the span's owner. */
void brisk__small_send(brisk_sheap_t *me, unsigned my_slot, brisk_span_t *s, void *head, void *tail, uint32_t n);
/* One block of span s that free() suspected of a double free, not written: its
 * owner checks it, and withholds it where it cannot see a first copy. */
void brisk__small_send_suspect(brisk_sheap_t *me, brisk_span_t *s, void *p);
/* h's inbox, taken whole (NULL if empty); then, message by message, the ones
 * for h: a chain head..tail of n blocks of class cls, the last block's link
 * free for the caller (others are forwarded to their spans' owners). */
void *brisk__small_inbox_take(brisk_sheap_t *h);
bool brisk__small_inbox_ready(const brisk_sheap_t *h); /* messages wait (a cheap peek) */
bool brisk__small_msg_next(brisk_sheap_t *h, void **inbox, unsigned *cls, void **head, void **tail, uint32_t *n,
                           bool *suspect);
uint32_t brisk__small_take_one(unsigned slot, unsigned cls, void **out);
void brisk__small_scavenge(brisk_sheap_t *h, const uint8_t *active);
void brisk__small_drain(void);
bool brisk__small_is_free(brisk_sheap_t *me, brisk_span_t *span, void *obj);
void brisk__small_class_stats(unsigned cls, uint64_t *out_objs, uint64_t *free_objs, uint64_t *spans);
void brisk__small_node_stats(unsigned slot, uint64_t *out_bytes, uint64_t *free_bytes);
void brisk__small_fork_lock(void);
void brisk__small_fork_unlock(void);
void brisk__small_after_fork_child(brisk_sheap_t *mine);

#pragma GCC visibility pop
#endif /* BRISK_SMALL_H */
