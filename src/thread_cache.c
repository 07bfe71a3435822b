/* Thread caches: one per thread, in thread-local storage, owned and touched only
 * by that thread (the statistics read its counters racily). The fast paths in
 * alloc.c pop and push its lists; everything here is the slow path: refill from
 * and spill to the thread's own spans (small.c) in batches, budgets, scavenging,
 * thread exit. A thread's lists hold only blocks of spans its small heap owns:
 * free() sends any other block to its owner.
 *
 * A list's `max` (and room) is 0 until its class is first used, so the first
 * malloc (empty list) and the first free (room -1) of a class in a thread both
 * land here without an "initialised?" test on the fast path. The same trick
 * serves threads whose cache is being set up (nested allocations from
 * pthread_setspecific) or was torn down (allocations from later TLS
 * destructors): they have no small heap and allocate from the orphan spans.
 *
 * A list that overflows keeps its newest half and gives the rest back to the
 * spans, without a lock: they are the thread's own. A list that runs dry takes a
 * span's whole free list when it fits (O(1)), or a batch.
 *
 * Bounds: every list's capacity (max * object size) is charged to the thread's
 * budget, min(BRISK_TCACHE_BYTES, BRISK_TCACHE_TOTAL / live threads), so the
 * budget bounds the cache and, through the total, all caches together. A list
 * starts at one batch, or at LIST_START_BYTES when malloc starts it (less when
 * the budget is short, at least one object), and grows by a batch on each
 * refill, up to LIST_MAX_BATCHES batches, while the budget allows. Lists with no slow-path activity for a purge delay give half
 * their objects back, and an emptied one returns its whole charge.
 *   The default budget, 8 MiB, is what a thread that churns 4-64 KiB buffers
 * among its small ones needs: each class of those holds a few objects, a
 * batch of them is 32 KiB or more, and at 2 MiB the lists that had grown
 * first left those classes one batch, so every other free spilled to the
 * spans and their emptied spans went back to the page heap (scal/server at
 * 1 thread: 199 instructions per replacement at 2 MiB, 179 at 8 MiB; peak RSS
 * after 300,000 replacements 8.7 and 8.1 MiB: what a list holds is memory
 * its spans would hold otherwise, and spans cycled less). With
 * many threads BRISK_TCACHE_TOTAL bounds it: 8 threads or more get less.
 *
 * Remote frees: free() puts a block of a span another heap owns in an open
 * message for that span (kept in the thread's heap record, see remote_send),
 * which goes to the span's owner (small.c) once REMOTE_BATCH blocks or
 * REMOTE_BYTES wait, when another span needs its slot, at the next scavenge, or
 * at thread exit; so the thread never reuses another thread's blocks.
 *
 * NUMA: a thread's small heap owns spans of one node, `node`. Each refill looks
 * up the CPU the thread runs on (a few ns, multi-node machines only); a thread
 * that has moved to another node gives its whole cache back, hands its spans to
 * their node's orphan heap and refills from the new node. A block of another
 * node is never its spans' block, so it goes home through its owner.
 *
 * Registry: every registered thread has a node, metadata that lives on after
 * the thread, on a list under the registry lock. The node holds a robust mutex
 * that its thread locks at registration and unlocks in brisk's TLS destructor,
 * so that a thread that ends without that destructor (glibc drops a key set
 * in the last round of destructors: a thread whose first allocation comes
 * there) still shows: the kernel marks the mutex owner-died. The purge tick and
 * the statistics walk probe each node and reap such a thread from outside (see
 * "Threads that ended unseen"). The TLS cache itself is never linked anywhere. */
#define _GNU_SOURCE
#include "thread_cache.h"
#include "small.h"
#include "large.h"
#include "numa.h"
#include "boot.h"
#include "block.h"
#include "size_class.h"
#include "meta.h"
#include "pagemap.h"
#include "options.h"
#include "os.h"
#include "counters.h"
#include "init.h" /* upward: brisk__ensure_init, brisk__purge_note_idle, brisk__purge_tick */

#define LIST_MAX_BATCHES 8
/* What the first refill of a list that malloc starts takes: a 4 KiB OS page of
 * objects (see class_start). */
#define LIST_START_BYTES ((size_t)4096)
/* A thread always gets at least this budget, however many threads there are:
 * enough for a batch of the classes a typical thread uses. */
#define TCACHE_MIN_BUDGET ((size_t)64 * 1024)

__thread brisk_tcache_t brisk__tc;
brisk_block_keys_t brisk__keys;
brisk_lock_t brisk__registry_lock = BRISK_LOCK_INIT(BRISK_RANK_REGISTRY);
#ifdef BRISK_DEBUG
__thread uint32_t brisk__locks_held;
#endif

__thread brisk_lock_counts_t brisk__lock_counts;
/* The lock counts of threads that have exited. */
static _Atomic uint64_t gone_acquired, gone_contended;

/* A registered thread. Written by its thread at registration (and heap when it
 * goes LIVE); the links, the free list and the seen counts under the registry
 * lock. tc and locks point into the thread's TLS: read only while the thread is
 * known to live (alive held, and its TLS destructor, which unlinks the node
 * under the registry lock, not run), never once it has died: glibc reuses or
 * unmaps a dead thread's TLS. */
typedef struct brisk_tnode_s {
  pthread_mutex_t alive;             /* robust; held by the thread for its whole life */
  struct brisk_tnode_s *next, *prev; /* the registry; next: the free list */
  brisk_tcache_t *tc;
  brisk_sheap_t *heap;               /* the thread's small heap once LIVE: what a reaper retires */
  brisk_lock_counts_t *locks;
  brisk_large_counts_t large; /* its thread's large blocks (counters.h); folded when it goes */
  uint64_t seen_acquired, seen_contended; /* its lock counts as the last report read them */
  uint32_t seen_entries;             /* its gate entries as the purge tick last read them */
  uint64_t idle_since_ms;            /* when the purge tick saw them change (0: not yet) */
  bool given_back;                   /* the tick gave back since it last saw them change */
  bool robust;                       /* alive is robust: without, a death goes unseen */
} brisk_tnode_t;

static pthread_key_t tc_key;
/* Both under the registry lock. Nodes are never freed: a reaped or exited
 * thread's goes on the free list for the next thread. */
static brisk_tnode_t *registry, *node_free;
static _Atomic uint64_t threads_live, threads_seen;

static void tcache_on_thread_exit(void *arg);

void brisk__tcache_global_init(void) {
  brisk__free_key = brisk__os_random();
  /* Never zero in the low bits: see block.h. */
  uintptr_t k = (uintptr_t)brisk__os_random();
  brisk__list_key = (k & ~BRISK_BLOCK_ALIGN_MASK) | ((k & BRISK_BLOCK_ALIGN_MASK) ? (k & BRISK_BLOCK_ALIGN_MASK) : 1);
  pthread_key_create(&tc_key, tcache_on_thread_exit);
}

static size_t thread_budget(void) {
  uint64_t live = atomic_load_explicit(&threads_live, memory_order_relaxed);
  size_t b = brisk__opt.tcache_bytes;
  if (live > 0 && brisk__opt.tcache_total / live < b) b = brisk__opt.tcache_total / live;
  return b < TCACHE_MIN_BUDGET ? TCACHE_MIN_BUDGET : b;
}

/* A placed thread's small heap; without one (metadata exhausted) the thread
 * stays UNPLACED and tries again on its next slow path. */
static bool tcache_go_live(brisk_tcache_t *tc) {
  tc->node = brisk__numa_slot_now();
  tc->heap = brisk__small_heap_acquire(tc->node);
  if (tc->heap == NULL) {
    tc->state = BRISK_TC_UNPLACED;
    return false;
  }
  tc->reg->heap = tc->heap; /* for a reaper, should the thread end unseen */
  tc->state = BRISK_TC_LIVE; /* lists start when their class is first used */
  return true;
}

static void node_link_locked(brisk_tnode_t *n) {
  n->prev = NULL;
  n->next = registry;
  if (registry) registry->prev = n;
  registry = n;
}

static void node_unlink_locked(brisk_tnode_t *n) {
  if (n->prev) n->prev->next = n->next;
  else registry = n->next;
  if (n->next) n->next->prev = n->prev;
  n->next = n->prev = NULL;
}

static void node_put_locked(brisk_tnode_t *n) {
  n->next = node_free;
  node_free = n;
}

/* n becomes the calling thread's: alive is (re)made and held until the thread's
 * TLS destructor, or its death, lets go of it. Neither call waits, so this runs
 * under the registry lock, and no walker ever sees a linked node unheld. */
static void node_claim(brisk_tnode_t *n, brisk_tcache_t *tc) {
  n->robust = brisk__os_robust_init(&n->alive);
  brisk__os_robust_hold(&n->alive);
  n->tc = tc;
  n->heap = NULL;
  n->locks = &brisk__lock_counts;
  brisk_assert(n->large.count == 0 && n->large.bytes == 0 && "a node's large counts were folded");
  tc->large_counts = &n->large;
  n->seen_acquired = n->seen_contended = 0;
  n->seen_entries = 0;
  n->idle_since_ms = 0;
  n->given_back = false;
  tc->reg = n;
}

/* Without a node (metadata exhausted) the thread stays NEW: served from the
 * orphan spans, and it tries again on its next slow path. */
static void tcache_init(brisk_tcache_t *tc) {
  brisk__lock(&brisk__registry_lock);
  brisk_tnode_t *n = node_free;
  if (n != NULL) node_free = n->next;
  else n = brisk__meta_alloc(sizeof *n); /* the metadata lock ranks after this one */
  if (n != NULL) {
    node_claim(n, tc);
    node_link_locked(n);
  }
  brisk__unlock(&brisk__registry_lock);
  if (n == NULL) return;
  tc->state = BRISK_TC_INIT; /* allocations from here on until LIVE come from orphan spans */
  tc->last_scavenge_ms = brisk__os_now_ms();
  atomic_fetch_add_explicit(&threads_live, 1, memory_order_relaxed);
  uint64_t seen = atomic_fetch_add_explicit(&threads_seen, 1, memory_order_relaxed) + 1;
  pthread_setspecific(tc_key, tc); /* may allocate: we are in state INIT */
  tc->budget_used = 0;
  bool placed = brisk__numa_thread_started(seen);
  tc->node = brisk__numa_slot_now();
  if (placed) tcache_go_live(tc);
  else tc->state = BRISK_TC_UNPLACED;
}

/* An UNPLACED thread becomes LIVE once discovery has published the slots. */
static bool tcache_placed(brisk_tcache_t *tc) {
  return brisk__numa_published() && tcache_go_live(tc);
}

/* First use of a class in this thread (or after scavenging emptied it). A list
 * that malloc starts gets a max of LIST_START_BYTES (at least 2 objects), so
 * its first refill carves, and so faults in, only that much of a fresh span;
 * the refill's slow start then adds a batch to the max, as every refill does. Most classes a program touches at all it
 * touches a few times (start-up, a library's tables), and a full batch of 32
 * KiB for each of them was most of brisk's memory in small programs. A class in
 * steady use grows its list by a batch per refill as before. A list started by
 * free() gets a whole batch: a thread that frees blocks of its own spans first
 * would otherwise spill every other free. */
static void class_start(brisk_tcache_t *tc, unsigned cls, bool by_malloc) {
  const brisk_class_info_t *ci = &brisk__classes[cls];
  brisk_tlist_t *l = &tc->list[cls];
  size_t budget = thread_budget();
  size_t avail = budget > tc->budget_used ? budget - tc->budget_used : 0;
  uint32_t m = ci->batch;
  if (by_malloc && (size_t)m * ci->size > LIST_START_BYTES)
    m = LIST_START_BYTES / ci->size > 2 ? (uint32_t)(LIST_START_BYTES / ci->size) : 2;
  if ((size_t)m * ci->size > avail) m = avail / ci->size > 0 ? (uint32_t)(avail / ci->size) : 1;
  l->max = m;
  l->room += (int32_t)m;
  tc->budget_used += (size_t)m * ci->size;
}

/* Give back `n` objects from the head of a list to their spans (the thread's own). */
static void list_release(brisk_tcache_t *tc, brisk_tlist_t *l, uint32_t n) {
  if (n == 0) return;
  l->head = brisk__small_release(tc->heap, l->head, n);
  l->room += (int32_t)n;
}

/* Blocks of other heaps' spans freed by this thread wait in open messages, one
 * per span (small.c sends a message with one compare-and-swap), and go once
 * REMOTE_BATCH blocks or REMOTE_BYTES wait, or when a block of another span
 * needs the slot. free() knows the block's span already, so a block joins its
 * message in a few instructions, and no list is walked to sort it.
 *
 * What a remote free costs in atomics is one compare-and-swap on the owner's
 * ring per message, so the sizes are set for long messages where frees spread
 * over many spans (scal/migrate, sh8, xmalloc, larson at 4 threads, blocks per
 * message): 16 slots and a batch of 128 sent 1.5-2.3 blocks a message; 128
 * slots and a batch of 256 send 2.9-5.1 (a batch of 512 sent 3.3-7.4, but held
 * 10 % more memory in scal/sh8). REMOTE_BYTES bounds what waits. */
#define REMOTE_BATCH 256
#define REMOTE_BYTES ((size_t)256 * 1024)

static inline unsigned remote_slot(const brisk_span_t *s) {
  uintptr_t a = (uintptr_t)s >> 6; /* descriptors are cache-line aligned */
  return (unsigned)(a ^ (a >> 4)) % BRISK_REMOTE_SLOTS;
}

/* Open message i of heap h, whose thread's NUMA slot is slot, to its span's owner.
 * Blocks in an owner's inbox stay there while the owner sleeps, and only the
 * purge thread gives them back then ("Idle threads"): so the bytes sent count
 * toward its start as idle memory does, which a program that hands its blocks
 * to a thread that then parks would otherwise never reach. */
static void remote_send(brisk_sheap_t *h, unsigned slot, unsigned i) {
  brisk_span_t *s = h->remote[i].span;
  void *head = h->remote[i].head, *tail = h->remote[i].tail;
  uint32_t n = h->remote[i].n;
  brisk_assert(n > 0 && (h->remote_open[i / 64] >> (i % 64) & 1));
  h->remote[i].span = NULL;
  h->remote[i].n = 0;
  h->remote_open[i / 64] &= ~((uint64_t)1 << (i % 64));
  h->remote_count -= n;
  h->remote_sent += (uint64_t)n * s->obj_size;
  brisk__small_send(h, slot, s, head, tail, n);
  brisk__purge_note_idle(h->remote_sent);
}

static brisk_noinline void remote_flush(brisk_sheap_t *h, unsigned slot) {
  for (unsigned w = 0; w < BRISK_REMOTE_SLOTS / 64; w++)
    for (uint64_t m = h->remote_open[w]; m != 0; m &= m - 1) remote_send(h, slot, w * 64 + (unsigned)__builtin_ctzll(m));
  brisk_assert(h->remote_count == 0);
  h->remote_bytes = 0;
}

/* A message goes out under the gate: its span may have become this heap's
 * since (adopted), and then its blocks go back into the span (small.c). The
 * open messages themselves are the thread's alone, outside the gate. */
static brisk_noinline void remote_send_gated(brisk_tcache_t *tc, unsigned i) {
  bool gate = brisk__gate_enter(tc);
  remote_send(tc->heap, tc->node, i);
  brisk__gate_leave(tc, gate);
}

/* The rarer cases of a remote free, out of line, so that the common one (the
 * block joins its span's open message) calls nothing and saves no registers:
 * a thread that frees first, one without a small heap, a suspect block. */
static brisk_noinline void free_remote_rare(brisk_tcache_t *tc, void *p, uint64_t e, bool suspect) {
  if (tc->state == BRISK_TC_NEW) tcache_init(tc); /* a thread that frees first */
  brisk_span_t *s = brisk__pm_span(e);
  brisk_sheap_t *h = tc->heap;
  if (suspect) { /* its owner may be this heap: it reads the span */
    bool gate = brisk__gate_enter(tc);
    brisk__small_send_suspect(h, s, p);
    brisk__gate_leave(tc, gate);
    return;
  }
  if (h == NULL) { /* no heap (not LIVE): nothing waits here */
    brisk__block_push(p, NULL);
    brisk__small_send(h, tc->node, s, p, p, 1);
    return;
  }
  brisk__tcache_free_remote(tc, p, e, false); /* LIVE now */
}

/* p's slot i holds no message of its span: the other span's message (if any)
 * goes, and a message for p's span opens with p. */
static brisk_noinline void free_remote_open(brisk_tcache_t *tc, void *p, uint64_t e, unsigned i) {
  brisk_sheap_t *h = tc->heap;
  if (h->remote[i].n > 0) remote_send_gated(tc, i);
  h->remote[i].span = brisk__pm_span(e);
  h->remote[i].head = NULL;
  h->remote[i].tail = p;
  h->remote_open[i / 64] |= (uint64_t)1 << (i % 64);
  brisk__tcache_free_remote(tc, p, e, false);
}

static brisk_noinline void free_remote_flush(brisk_tcache_t *tc) {
  bool gate = brisk__gate_enter(tc);
  remote_flush(tc->heap, tc->node);
  brisk__gate_leave(tc, gate);
}

void brisk__tcache_free_remote(brisk_tcache_t *tc, void *p, uint64_t e, bool suspect) {
  brisk_sheap_t *h = tc->heap; /* NULL in a NEW thread too */
  if (brisk_unlikely(suspect || h == NULL)) {
    free_remote_rare(tc, p, e, suspect);
    return;
  }
  brisk_span_t *s = brisk__pm_span(e);
  unsigned i = remote_slot(s);
  if (brisk_unlikely(h->remote[i].span != s)) {
    free_remote_open(tc, p, e, i);
    return;
  }
  brisk__block_push(p, h->remote[i].head);
  h->remote[i].head = p;
  h->remote[i].n++;
  h->remote_bytes += brisk__classes[brisk__pm_class(e)].size;
  if (brisk_unlikely(++h->remote_count >= REMOTE_BATCH || h->remote_bytes >= REMOTE_BYTES)) free_remote_flush(tc);
}

static inline bool remote_waiting(const brisk_tcache_t *tc) { return tc->heap != NULL && tc->heap->remote_count != 0; }

void brisk__tcache_flush(brisk_tcache_t *tc) {
  bool gate = brisk__gate_enter(tc);
  if (remote_waiting(tc)) remote_flush(tc->heap, tc->node);
  if (tc->large_spare != NULL) brisk__large_spare_release(tc);
  if (tc->heap != NULL) {
    for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) list_release(tc, &tc->list[cls], brisk__tl_count(&tc->list[cls]));
    brisk__small_scavenge(tc->heap, NULL);
  }
  brisk__gate_leave(tc, gate);
}

/* The thread's TLS destructor: the node goes back, its mutex unlocked by the
 * thread that holds it. */
static void tcache_unregister(brisk_tcache_t *tc) {
  brisk_tnode_t *n = tc->reg;
  brisk__lock(&brisk__registry_lock);
  node_unlink_locked(n);
  /* Under the lock, so that a report sees these counts once, here or there. */
  atomic_fetch_add_explicit(&gone_acquired, brisk__lock_counts.acquired, memory_order_relaxed);
  atomic_fetch_add_explicit(&gone_contended, brisk__lock_counts.contended, memory_order_relaxed);
  brisk__lock_counts.acquired = brisk__lock_counts.contended = 0;
  tc->large_counts = NULL; /* its later frees (other TLS destructors) count in the shared record */
  brisk__large_count_fold(&n->large);
  brisk__os_robust_release(&n->alive);
  node_put_locked(n);
  brisk__unlock(&brisk__registry_lock);
  tc->reg = NULL;
  atomic_fetch_sub_explicit(&threads_live, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------------------
   Threads that ended unseen

   glibc runs the TLS destructors in at most PTHREAD_DESTRUCTOR_ITERATIONS
   rounds and drops, without calling its destructor, a key set in the last one:
   a thread whose first allocation comes there (or after brisk's key in the
   same round) registers and ends without tcache_on_thread_exit, and has no
   later hook. Its node's robust mutex tells: the kernel marks it owner-died
   when the thread ends. Whoever probes such a node (the purge tick, a
   statistics walk) unlinks it under the registry lock, then, having dropped the
   lock (retiring takes the orphan, heap and registry locks), does what the
   destructor would have done with what lives outside the thread: sends the
   open remote messages (kept in the heap record), retires the small heap (its
   spans to the orphans, its inbox forwarded; safe from another thread, since
   the owner can never run again) and counts the thread out. The thread's TLS
   is never read (glibc may have reused it for a new thread by now, or
   unmapped it): what its cache lists held (at most one cache's budget, and a
   spare large block, for each such thread) stays counted as in use, and those
   spans never empty; its lock counts are kept as the last report read them.
------------------------------------------------------------------------------ */

/* Under the registry lock: whether n's thread has died; if so n is unlinked and
 * pushed onto *dead. */
static bool node_reap_locked(brisk_tnode_t *n, brisk_tnode_t **dead) {
  if (!n->robust) return false;
  brisk_robust_t st = brisk__os_robust_probe(&n->alive);
  brisk_assert(st != BRISK_ROBUST_FREE && "a registered thread holds its node");
  if (st != BRISK_ROBUST_OWNER_DIED) return false;
  node_unlink_locked(n);
  atomic_fetch_add_explicit(&gone_acquired, n->seen_acquired, memory_order_relaxed);
  atomic_fetch_add_explicit(&gone_contended, n->seen_contended, memory_order_relaxed);
  brisk__large_count_fold(&n->large); /* not TLS: the node is metadata, and its thread is gone */
  n->next = *dead;
  *dead = n;
  return true;
}

/* The rest of the reaping, with no lock held. */
static void reap_finish(brisk_tnode_t *dead) {
  bool retired = false;
  while (dead != NULL) {
    brisk_tnode_t *n = dead;
    dead = n->next;
    brisk_sheap_t *h = n->heap;
    if (h != NULL) {
      remote_flush(h, h->slot);
      brisk__small_heap_retire(h);
      retired = true;
    }
    atomic_fetch_sub_explicit(&threads_live, 1, memory_order_relaxed);
    brisk__lock(&brisk__registry_lock);
    node_put_locked(n);
    brisk__unlock(&brisk__registry_lock);
  }
  /* The messages its inbox forwarded to the orphans go back into their spans. */
  if (retired) brisk__small_drain();
}

void brisk__tcache_reap(void) {
  brisk_tnode_t *dead = NULL;
  brisk__lock(&brisk__registry_lock);
  for (brisk_tnode_t *n = registry, *next; n != NULL; n = next) {
    next = n->next;
    node_reap_locked(n, &dead);
  }
  brisk__unlock(&brisk__registry_lock);
  reap_finish(dead);
}

/* ------------------------------------------------------------------------------
   Idle threads

   A thread that stops allocating (parked on a condition variable, blocked in a
   read) would keep what its slow-path state holds until it next refills or
   exits: blocks that other threads freed to it (its inbox), each pinning its
   span; the empty spans its heap keeps for its next refill; its spare large
   block. The purge tick gives these back for a thread that has entered no slow
   path for RECLAIM_IDLE_DELAYS purge delays, and again on every tick while it
   stays idle.

   The gate. Every path of the owner that touches that state (refill and spill,
   inbox, scavenge, flush, exit, a message that may come home, the double-free
   check that reads its spans, large.c's spare) runs between brisk__gate_enter
   and brisk__gate_leave, and costs the owner no read-modify-write: it stores
   its flag gate_owner, then loads the tick's gate_purger, and steps back and
   waits while that is set (brisk__gate_wait); it leaves with a release store.
   The tick stores gate_purger for each thread it means to visit, then has
   every running thread of the process pass a full barrier (membarrier's
   private expedited command, once for all of them), then loads gate_owner:
   Dekker's exclusion, with the owner's half of the fence paid by the tick. A
   thread whose store of gate_owner the tick does not see has its load after
   the barrier, which shows it gate_purger; so the owner and the tick are never
   in at once. Each sees the other's writes through an acquire load of the
   flag the other cleared with a release store. Neither deadlocks: the owner
   enters holding no lock (asserted), and the tick, which holds the registry
   lock, never waits on a gate: a thread it finds in is simply left for a
   later tick. Where the kernel has no membarrier the tick gives nothing back.
   A thread whose gate_entries is still 0 under the gate has never been in: the
   tick leaves it alone (nothing it wrote before its first entry, such as
   becoming LIVE, is ordered before the tick's reads). The tick touches a
   thread's TLS only while the node is linked and its owner alive, under the
   registry lock, which a thread's TLS destructor needs before its TLS goes; a
   thread that ends unseen leaves the window that the statistics walk has (see
   above the walks). malloc and free, which run outside the gate, never meet
   the tick: a block in a cache list counts as out of its span, so a span that
   the tick frees (every object back) has none in a list, and free() reads only
   the owner and class of a block's span, which stay while any of its blocks is
   out. A thread is visited once when it goes idle, and again only when blocks
   arrive in its inbox, so that an idle process is not sent a barrier at every
   tick.

   What stays: the cache lists. malloc and free pop and push them with plain
   loads and stores, outside the gate, and a thread stopped between its load of
   a list's head and its store could be resumed at any time, so no other thread
   can take blocks from them without a store on those paths (an "in the
   allocator" flag) or the kernel's restartable sequences, which would cost the
   fast paths; a signal to the thread would end its sleep or poll with EINTR.
   They are bounded by the thread's budget and go back when the thread next
   scavenges or exits.
------------------------------------------------------------------------------ */

/* Long enough that a thread between two requests keeps its kept spans and its
 * spare (which its next request would take back), short enough that one that
 * has gone to sleep gives them back within a few seconds at the default delay. */
#define RECLAIM_IDLE_DELAYS 2

static _Atomic uint64_t reclaims;

/* Threads visited in one tick, at most (the rest wait for the next). */
#define RECLAIM_BATCH 64

bool brisk__gate_wait(brisk_tcache_t *tc) {
  for (;;) { /* the tick wants in or is in: step back until it is done */
    __atomic_store_n(&tc->gate_owner, (uint8_t)0, __ATOMIC_RELEASE);
    while (__atomic_load_n(&tc->gate_purger, __ATOMIC_ACQUIRE)) brisk__os_yield();
    __atomic_store_n(&tc->gate_owner, (uint8_t)1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&tc->gate_purger, __ATOMIC_ACQUIRE)) {
      __atomic_store_n(&tc->gate_entries, tc->gate_entries + 1, __ATOMIC_RELAXED);
      return true;
    }
  }
}

/* Under the registry lock, with tc's gate_purger set and the barrier passed:
 * its heap's slow-path state back, unless its owner is in (false: then it is
 * visited again at a later tick). */
static bool tcache_reclaim_locked(brisk_tcache_t *tc) {
  if (__atomic_load_n(&tc->gate_owner, __ATOMIC_ACQUIRE)) return false; /* in a slow path: not idle after all */
  if (tc->gate_entries != 0 && tc->state == BRISK_TC_LIVE && tc->heap != NULL) {
    if (tc->large_spare != NULL) brisk__large_spare_release(tc);
    brisk__small_scavenge(tc->heap, NULL); /* its inbox into its spans, and its kept spans */
    atomic_fetch_add_explicit(&reclaims, 1, memory_order_relaxed);
  }
  return true;
}

void brisk__tcache_reclaim_idle(uint64_t now, uint64_t delay) {
  brisk_tnode_t *dead = NULL, *visit[RECLAIM_BATCH];
  unsigned nvisit = 0;
  brisk__lock(&brisk__registry_lock);
  for (brisk_tnode_t *n = registry, *next; n != NULL && nvisit < RECLAIM_BATCH; n = next) {
    next = n->next;
    if (node_reap_locked(n, &dead)) continue; /* its TLS is no more */
    brisk_tcache_t *tc = n->tc;
    if (tc == &brisk__tc) continue; /* a tick run by a thread: its own state is in use */
    uint32_t e = __atomic_load_n(&tc->gate_entries, __ATOMIC_RELAXED); /* a sign of life, read racily */
    if (e != n->seen_entries || n->idle_since_ms == 0) {
      n->seen_entries = e;
      n->idle_since_ms = now;
      n->given_back = false;
      continue;
    }
    if (now - n->idle_since_ms < RECLAIM_IDLE_DELAYS * delay) continue;
    if (n->given_back && (n->heap == NULL || !brisk__small_inbox_ready(n->heap))) continue; /* nothing new */
    __atomic_store_n(&tc->gate_purger, (uint8_t)1, __ATOMIC_RELAXED);
    visit[nvisit++] = n;
  }
  if (nvisit > 0) {
    /* Every owner's store of its flag before this is seen below, and every
     * owner's load after it sees gate_purger. */
    bool fenced = brisk__os_membarrier();
    for (unsigned i = 0; i < nvisit; i++) {
      brisk_tcache_t *tc = visit[i]->tc;
      visit[i]->given_back = fenced && tcache_reclaim_locked(tc);
      __atomic_store_n(&tc->gate_purger, (uint8_t)0, __ATOMIC_RELEASE);
    }
  }
  brisk__unlock(&brisk__registry_lock);
  reap_finish(dead);
}

uint64_t brisk__tcache_reclaims(void) { return atomic_load_explicit(&reclaims, memory_order_relaxed); }

static void tcache_on_thread_exit(void *arg) {
  brisk_tcache_t *tc = arg;
  if (tc->state != BRISK_TC_LIVE && tc->state != BRISK_TC_UNPLACED) return;
  bool gate = brisk__gate_enter(tc); /* the purge tick sees DEAD, or is done */
  tc->state = BRISK_TC_DEAD;
  brisk__tcache_flush(tc);
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) tc->list[cls].max = tc->list[cls].room = 0;
  if (tc->heap != NULL) {
    brisk_sheap_t *h = tc->heap;
    tc->heap = NULL; /* from here on, every free of this thread goes to an owner */
    brisk__small_heap_retire(h);
  }
  tcache_unregister(tc);
  brisk__gate_leave(tc, gate);
}

/* Every purge delay: lists that saw no refill or spill since the last look give
 * half of what they hold back, and shrink toward one batch. A list in steady use
 * through the fast path alone loses at most one refill to this. */
static void tcache_scavenge(brisk_tcache_t *tc, uint64_t now) {
  tc->last_scavenge_ms = now;
  if (remote_waiting(tc)) remote_flush(tc->heap, tc->node);
  brisk__small_scavenge(tc->heap, tc->active); /* before the lists, which may empty spans */
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    brisk_tlist_t *l = &tc->list[cls];
    uint32_t batch = brisk__classes[cls].batch;
    if (!tc->active[cls]) {
      uint32_t count = brisk__tl_count(l);
      if (count > 0) list_release(tc, l, (count + 1) / 2);
      uint32_t keep = brisk__tl_count(l) == 0 ? 0 : l->max < batch ? l->max : batch;
      if (l->max > keep) { /* an emptied list gives back its whole charge */
        tc->budget_used -= (size_t)(l->max - keep) * brisk__classes[cls].size;
        l->room -= (int32_t)(l->max - keep);
        l->max = keep;
      }
    }
    tc->active[cls] = 0;
  }
}

static inline void tcache_tick(brisk_tcache_t *tc, unsigned cls) {
  tc->active[cls] = 1;
  /* Read the clock every few slow events only; a refill is ~64 mallocs. */
  if ((++tc->slow_events & 15) != 0) return;
  uint64_t now = brisk__os_now_ms();
  if (now - tc->last_scavenge_ms >= brisk__opt.purge_delay_ms) {
    tcache_scavenge(tc, now);
    brisk__purge_tick();
  }
}

/* Allocation for a thread without a live cache: one object of the orphan spans. */
static void *direct_alloc(unsigned cls) {
  void *p;
  if (brisk__small_take_one(brisk__numa_slot_now(), cls, &p) == 0) {
    errno = ENOMEM;
    return NULL;
  }
  ((void **)p)[0] = NULL;
  ((void **)p)[1] = NULL;
  return p;
}

/* Blocks other threads freed of this thread's spans, sent as one message per
 * span (small.c): each goes onto its class's list whole when the list has room,
 * else back into its span. */
static brisk_noinline void absorb_inbox(brisk_tcache_t *tc) {
  void *in = brisk__small_inbox_take(tc->heap);
  unsigned cls;
  void *head, *tail;
  uint32_t n;
  bool suspect;
  while (brisk__small_msg_next(tc->heap, &in, &cls, &head, &tail, &n, &suspect)) {
    brisk_tlist_t *l = &tc->list[cls];
    /* Another thread freed it while its hint said free: the first copy may be
     * here, in this thread's lists, span or inbox; if not, it is on its way,
     * and this copy is withheld (small.c, suspect_deliver). */
    if (brisk_unlikely(suspect)) {
      if (brisk__tcache_contains(tc, cls, head) || brisk__small_is_free(tc->heap, brisk__pagemap_get(head), head))
        brisk__fatal("free()", "double free", head);
      continue;
    }
    if (l->max != 0 && l->room >= (int32_t)n) {
      brisk__block_set_next(tail, l->head);
      l->head = head;
      l->room -= (int32_t)n;
    } else {
      brisk__block_set_next(tail, NULL);
      brisk__small_release(tc->heap, head, n);
    }
  }
}

/* The thread moved to another node: what it caches belongs to the old one. */
static brisk_noinline void numa_refresh(brisk_tcache_t *tc) {
  unsigned now = brisk__numa_slot_now();
  if (now == tc->node) return;
  brisk__tcache_flush(tc);
  brisk__small_abandon(tc->heap);
  tc->node = now;
  tc->heap->slot = now;
}

static void *alloc_live(brisk_tcache_t *tc, unsigned cls);

void *brisk__tcache_alloc_slow(size_t size) {
  brisk__ensure_init();
  brisk_tcache_t *tc = &brisk__tc;
  unsigned cls = brisk__size_to_class(size); /* the fast path's table may have been empty */
  /* The class's size, as for any small block: calloc clears that much. */
  if (brisk__boot_active()) return brisk__boot_alloc(brisk__classes[cls].size, 0);
  if (brisk_unlikely(tc->state != BRISK_TC_LIVE)) {
    if (tc->state == BRISK_TC_NEW) tcache_init(tc);
    if (tc->state != BRISK_TC_LIVE && !(tc->state == BRISK_TC_UNPLACED && tcache_placed(tc)))
      return direct_alloc(cls);
  }
  bool gate = brisk__gate_enter(tc);
  void *p = alloc_live(tc, cls);
  brisk__gate_leave(tc, gate);
  return p;
}

/* A LIVE thread's refill, in its gate. */
static void *alloc_live(brisk_tcache_t *tc, unsigned cls) {
  brisk_tlist_t *l = &tc->list[cls];
  void *p = l->head;
  if (p == NULL && brisk__small_inbox_ready(tc->heap)) {
    absorb_inbox(tc);
    p = l->head;
  }
  if (p == NULL) {
    const brisk_class_info_t *ci = &brisk__classes[cls];
    if (brisk__numa_count() > 1) numa_refresh(tc);
    if (l->max == 0) class_start(tc, cls, true);
    uint32_t n = brisk__small_refill(tc->heap, cls, l->max < ci->batch ? l->max : ci->batch, l->max, &p);
    if (n == 0) {
      errno = ENOMEM;
      return NULL;
    }
    l->head = p;
    l->room = (int32_t)l->max - (int32_t)n;
    /* Slow start: a class that keeps running dry earns a longer list. */
    if (l->max < ci->batch * LIST_MAX_BATCHES &&
        tc->budget_used + (size_t)ci->batch * ci->size <= thread_budget()) {
      l->max += ci->batch;
      l->room += (int32_t)ci->batch;
      tc->budget_used += (size_t)ci->batch * ci->size;
    }
    tcache_tick(tc, cls);
  }
  l->head = brisk__block_next(p, "malloc()");
  l->room++;
  brisk__block_clear_hint(p);
  return p;
}

static void free_spill(brisk_tcache_t *tc, unsigned cls);

/* Only a LIVE thread pushes on its lists: free() sends a thread without a small
 * heap to brisk__tcache_free_remote, since no span's owner is NULL. */
void brisk__tcache_free_slow(brisk_tcache_t *tc, unsigned cls) {
  brisk_tlist_t *l = &tc->list[cls];
  brisk_assert(tc->state == BRISK_TC_LIVE && tc->heap != NULL);
  if (l->max == 0) {
    class_start(tc, cls, false);
    if (l->room >= 0) return;
  }
  bool gate = brisk__gate_enter(tc);
  free_spill(tc, cls);
  brisk__gate_leave(tc, gate);
}

static void free_spill(brisk_tcache_t *tc, unsigned cls) {
  brisk_tlist_t *l = &tc->list[cls];
  /* Overflow: the newest half stays (the blocks this thread is likeliest to ask
   * for again), the older half goes back to its spans, without a lock. */
  uint32_t count = brisk__tl_count(l);
  uint32_t keep = l->max / 2 > 0 ? l->max / 2 : 1;
  void *last = l->head;
  for (uint32_t i = 1; i < keep; i++) last = brisk__block_next(last, "free()");
  void *rest = brisk__block_next(last, "free()");
  brisk__block_set_next(last, NULL);
  l->room = (int32_t)l->max - (int32_t)keep;
  brisk__small_release(tc->heap, rest, count - keep);
  tcache_tick(tc, cls);
}

bool brisk__tcache_contains(brisk_tcache_t *tc, unsigned cls, void *obj) {
  for (unsigned i = 0; tc->heap != NULL && i < BRISK_REMOTE_SLOTS; i++) {
    void *o = tc->heap->remote[i].head;
    for (uint32_t k = 0; k < tc->heap->remote[i].n; k++, o = brisk__block_next(o, "free()"))
      if (o == obj) return true;
  }
  uint32_t n = 0;
  uint32_t count = brisk__tl_count(&tc->list[cls]);
  for (void *o = tc->list[cls].head; o != NULL && n <= count; o = brisk__block_next(o, "free()"), n++)
    if (o == obj) return true;
  return false;
}

/* The walks below read the TLS of threads whose node is held: a thread that is
 * ending through its destructor waits for the registry lock to unlink its node,
 * so its TLS is there. One that ends unseen can die between the probe and the
 * read: its TLS stays mapped until the kernel has marked the node and glibc has
 * freed its stack (after a join, or at once when detached), and then goes
 * only when glibc trims its cache of free stacks to 40 MiB or the program
 * frees a stack it gave the thread. A read that loses that race faults: a
 * window of one walk's reads, for such threads only (brisk__tcache_reap, the
 * purge tick's, probes and never reads). */
void brisk__tcache_registry_stats(uint64_t *bytes, uint64_t per_class_objs[BRISK_CLASSES],
                                  uint64_t *live, uint64_t *seen) {
  uint64_t total = 0;
  brisk_tnode_t *dead = NULL;
  brisk__lock(&brisk__registry_lock);
  for (brisk_tnode_t *n = registry, *next; n != NULL; n = next) {
    next = n->next;
    if (node_reap_locked(n, &dead)) continue;
    brisk_tcache_t *tc = n->tc;
    for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
      int32_t room = __atomic_load_n(&tc->list[cls].room, __ATOMIC_RELAXED);
      uint32_t max = __atomic_load_n(&tc->list[cls].max, __ATOMIC_RELAXED);
      int64_t count = (int64_t)max - room;
      uint32_t k = count > 0 ? (uint32_t)count : 0; /* a torn read may look odd */
      if (per_class_objs) per_class_objs[cls] += k;
      total += (uint64_t)k * brisk__classes[cls].size;
    }
  }
  brisk__unlock(&brisk__registry_lock);
  reap_finish(dead);
  *bytes = total;
  *live = atomic_load_explicit(&threads_live, memory_order_relaxed);
  *seen = atomic_load_explicit(&threads_seen, memory_order_relaxed);
}

void brisk__tcache_lock_stats(uint64_t *acquired, uint64_t *contended, const brisk_lock_counts_t *mine) {
  brisk_tnode_t *dead = NULL;
  uint64_t a = 0, c = 0;
  brisk__lock(&brisk__registry_lock);
  for (brisk_tnode_t *n = registry, *next; n != NULL; n = next) {
    next = n->next;
    if (node_reap_locked(n, &dead)) continue;
    const brisk_lock_counts_t *counts = n->locks == &brisk__lock_counts ? mine : n->locks;
    n->seen_acquired = __atomic_load_n(&counts->acquired, __ATOMIC_RELAXED);
    n->seen_contended = __atomic_load_n(&counts->contended, __ATOMIC_RELAXED);
    a += n->seen_acquired;
    c += n->seen_contended;
  }
  /* After the walk, which may have added reaped threads' counts. */
  a += atomic_load_explicit(&gone_acquired, memory_order_relaxed);
  c += atomic_load_explicit(&gone_contended, memory_order_relaxed);
  brisk__unlock(&brisk__registry_lock);
  reap_finish(dead);
  *acquired = a;
  *contended = c;
}

/* The large blocks in use (counters.h): every live thread's record and the
 * shared one, read under the registry lock, under which records fold into the
 * shared one, so that a gone thread's counts are seen once. */
void brisk__tcache_large_counts(brisk_large_counts_t *sum) {
  brisk_tnode_t *dead = NULL;
  memset(sum, 0, sizeof *sum);
  brisk__lock(&brisk__registry_lock);
  for (brisk_tnode_t *n = registry, *next; n != NULL; n = next) {
    next = n->next;
    if (node_reap_locked(n, &dead)) continue;
    sum->bytes += __atomic_load_n(&n->large.bytes, __ATOMIC_RELAXED);
    sum->count += __atomic_load_n(&n->large.count, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < BRISK_MAX_NODES; i++) sum->node[i] += __atomic_load_n(&n->large.node[i], __ATOMIC_RELAXED);
  }
  const brisk_large_counts_t *shared = &brisk__counters.large;
  sum->bytes += __atomic_load_n(&shared->bytes, __ATOMIC_RELAXED);
  sum->count += __atomic_load_n(&shared->count, __ATOMIC_RELAXED);
  for (unsigned i = 0; i < BRISK_MAX_NODES; i++) sum->node[i] += __atomic_load_n(&shared->node[i], __ATOMIC_RELAXED);
  brisk__unlock(&brisk__registry_lock);
  reap_finish(dead);
}

/* In a forked child only the forking thread exists: the other caches' objects are
 * lost to it (as with every thread-caching allocator), and must not be counted.
 * Their nodes' mutexes name threads that the child's kernel will never mark, so
 * the nodes go to the free list (remade when taken), their heaps marked lost by
 * small.c. glibc has emptied the child's robust list: the forking thread's own
 * node is remade and held again, under the child's thread id. */
void brisk__tcache_after_fork_child(void) {
  brisk_tcache_t *tc = &brisk__tc;
  brisk_tnode_t *mine = (tc->state == BRISK_TC_LIVE || tc->state == BRISK_TC_UNPLACED) ? tc->reg : NULL;
  for (brisk_tnode_t *n = registry, *next; n != NULL; n = next) {
    next = n->next;
    if (n == mine) continue;
    brisk__large_count_fold(&n->large); /* the child still holds the blocks */
    node_put_locked(n);
  }
  registry = NULL;
  if (mine != NULL) {
    mine->robust = brisk__os_robust_init(&mine->alive);
    brisk__os_robust_hold(&mine->alive);
    node_link_locked(mine);
  }
  atomic_store_explicit(&threads_live, mine != NULL ? 1 : 0, memory_order_relaxed);
}
