/* Thread caches: refill and spill in batches, bounded lists, caches returned at
 * thread exit, and memory that stays bounded when threads hand blocks around. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "internal.h"

static void *run_in_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  void *ret;
  assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
  assert_int_equal(pthread_join(t, &ret), 0);
  return ret;
}

static void *first_malloc_refills_one_batch(void *arg) {
  (void)arg;
  unsigned cls = brisk__size_to_class(48);
  void *p = brisk_malloc(48);
  brisk_tlist_t *l = &brisk__tc.list[cls];
  uintptr_t ok = p != NULL && brisk__tc.state == BRISK_TC_LIVE &&
                 brisk__tl_count(l) == brisk__classes[cls].batch - 1;
  brisk_free(p);
  return (void *)ok;
}

static void test_first_malloc_refills_one_batch(void **state) {
  (void)state;
  assert_true((uintptr_t)run_in_thread(first_malloc_refills_one_batch, NULL));
}

/* The first refill of a class that malloc starts takes one 4 KiB page of
 * objects, so a class used once faults in no more than that; a class in steady
 * use still earns lists of whole batches. */
static void *first_list_is_one_page_then_batches(void *arg) {
  (void)arg;
  enum { SIZE = 1024, FIRST = 4096 / SIZE, N = 200 };
  unsigned cls = brisk__size_to_class(SIZE);
  brisk_tlist_t *l = &brisk__tc.list[cls];
  static void *p[N];
  p[0] = brisk_malloc(SIZE);
  uintptr_t ok = p[0] != NULL && brisk__tc.state == BRISK_TC_LIVE && brisk__classes[cls].batch > FIRST &&
                 brisk__tl_count(l) == FIRST - 1; /* the first refill took FIRST */
  for (int i = 1; i < N; i++) p[i] = brisk_malloc(SIZE);
  ok = ok && l->max >= FIRST + 2 * brisk__classes[cls].batch;
  for (int i = 0; i < N; i++) brisk_free(p[i]);
  return (void *)ok;
}

static void test_first_list_is_one_page_then_batches(void **state) {
  (void)state;
  assert_true((uintptr_t)run_in_thread(first_list_is_one_page_then_batches, NULL));
}

static void *lists_stay_bounded(void *arg) {
  (void)arg;
  enum { N = 50000 };
  static void *blocks[N];
  unsigned cls = brisk__size_to_class(64);
  for (int i = 0; i < N; i++) blocks[i] = brisk_malloc(64);
  for (int i = 0; i < N; i++) {
    brisk_free(blocks[i]);
    brisk_tlist_t *l = &brisk__tc.list[cls];
    if (brisk__tl_count(l) > l->max) return (void *)0;
  }
  brisk_tlist_t *l = &brisk__tc.list[cls];
  uintptr_t ok = l->max <= 8 * brisk__classes[cls].batch && brisk__tl_count(l) <= l->max;
  return (void *)ok;
}

static void test_lists_stay_bounded_when_a_thread_frees_much(void **state) {
  (void)state;
  assert_true((uintptr_t)run_in_thread(lists_stay_bounded, NULL));
}

/* The budget covers every list: a thread that uses 32 classes hard holds at most
 * its budget plus one object per class the budget could no longer afford. */
static void *cache_within_budget(void *arg) {
  size_t *held = arg;
  enum { CLASSES = 32, N = 100 };
  static void *blocks[N];
  for (int round = 0; round < 3; round++) {
    for (unsigned cls = 1; cls <= CLASSES; cls++) {
      for (int i = 0; i < N; i++) blocks[i] = brisk_malloc(brisk__classes[cls].size);
      for (int i = 0; i < N; i++) brisk_free(blocks[i]);
    }
  }
  size_t bytes = 0;
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++)
    bytes += (size_t)brisk__tl_count(&brisk__tc.list[cls]) * brisk__classes[cls].size;
  *held = bytes;
  return NULL;
}

static void test_thread_cache_stays_within_its_budget(void **state) {
  (void)state;
  size_t saved = brisk__opt.tcache_bytes, held = 0, floors = 0;
  brisk__opt.tcache_bytes = 128 * 1024;
  run_in_thread(cache_within_budget, &held);
  brisk__opt.tcache_bytes = saved;
  for (unsigned cls = 1; cls <= 32; cls++) floors += brisk__classes[cls].size;
  if (held > 128 * 1024 + floors) fail_msg("cache holds %zu bytes", held);
  assert_true(held > 0);
}

static void *hold_cache(void *arg) {
  brisk_stats_t *st = arg;
  void *p[100];
  for (int i = 0; i < 100; i++) p[i] = brisk_malloc(200);
  for (int i = 0; i < 100; i++) brisk_free(p[i]);
  brisk_get_stats(st); /* while this thread's cache holds blocks */
  return NULL;
}

static void test_thread_exit_returns_the_cache(void **state) {
  (void)state;
  brisk_stats_t before, during, after;
  brisk_free(brisk_malloc(8)); /* main thread's cache exists */
  brisk_get_stats(&before);
  run_in_thread(hold_cache, &during);
  brisk_get_stats(&after);
  assert_int_equal(during.threads, before.threads + 1);
  assert_true(during.tcache >= before.tcache + 100 * 208 / 2);
  assert_int_equal(after.threads, before.threads);
  assert_int_equal(after.threads_seen, before.threads_seen + 1);
  assert_true(after.tcache <= before.tcache);
}

/* Producer/consumer: one thread allocates, another frees. Blocks come back to the
 * spans' owners in messages; memory must not grow round after round. */
enum { PC_BLOCKS = 20000, PC_ROUNDS = 60 };
static void *pc_blocks[PC_BLOCKS];

static void *produce(void *arg) {
  (void)arg;
  for (int i = 0; i < PC_BLOCKS; i++) {
    pc_blocks[i] = brisk_malloc(16 + (size_t)(i % 40) * 16);
    memset(pc_blocks[i], 0x5a, 16);
  }
  return NULL;
}
static void *consume(void *arg) {
  (void)arg;
  for (int i = 0; i < PC_BLOCKS; i++) brisk_free(pc_blocks[i]);
  return NULL;
}

static void test_producer_consumer_memory_stays_bounded(void **state) {
  (void)state;
  brisk_stats_t st;
  uint64_t mapped_after_warmup = 0;
  for (int round = 0; round < PC_ROUNDS; round++) {
    run_in_thread(produce, NULL);
    run_in_thread(consume, NULL);
    brisk_get_stats(&st);
    if (round == 5) mapped_after_warmup = st.mapped;
  }
  /* later rounds reuse the same memory: at most a little growth after warm-up */
  assert_true(st.mapped <= mapped_after_warmup + 4 * 1024 * 1024);
  assert_true(st.in_use < 1024 * 1024);
}

static void *tiny_thread(void *arg) {
  (void)arg;
  void *p = brisk_malloc(100), *q = brisk_malloc(5000);
  brisk_free(p);
  return q; /* freed by the main thread */
}

static void test_thousands_of_threads_do_not_grow_memory(void **state) {
  (void)state;
  brisk_stats_t st0, st1;
  for (int i = 0; i < 200; i++) brisk_free(run_in_thread(tiny_thread, NULL));
  brisk_get_stats(&st0);
  for (int i = 0; i < 5000; i++) brisk_free(run_in_thread(tiny_thread, NULL));
  brisk_get_stats(&st1);
  assert_int_equal(st1.threads_seen, st0.threads_seen + 5000);
  assert_int_equal(st1.threads, st0.threads);
  assert_true(st1.mapped <= st0.mapped + 2 * 1024 * 1024);
}

/* A TLS destructor that runs after brisk has returned the thread's cache (keys
 * created after brisk's run later) must still be able to allocate and free. */
static pthread_key_t late_key;
static _Atomic int late_destructor_ok;

static void late_destructor(void *arg) {
  void *blocks[300];
  for (int i = 0; i < 300; i++) {
    blocks[i] = brisk_malloc((size_t)(i % 30) * 100 + 1);
    if (blocks[i] == NULL) return;
    memset(blocks[i], 0x33, (size_t)(i % 30) * 100 + 1);
  }
  for (int i = 0; i < 300; i++) brisk_free(blocks[i]);
  brisk_free(arg);
  late_destructor_ok = brisk__tc.state == BRISK_TC_DEAD ? 1 : -1;
}

static void *thread_with_late_key(void *arg) {
  (void)arg;
  brisk_free(brisk_malloc(10)); /* the cache is live before the key is set */
  pthread_setspecific(late_key, brisk_malloc(64));
  return NULL;
}

static void test_tls_destructor_can_allocate_after_the_cache_is_gone(void **state) {
  (void)state;
  brisk_free(brisk_malloc(1)); /* brisk's own key exists first */
  assert_int_equal(pthread_key_create(&late_key, late_destructor), 0);
  brisk_stats_t before, after;
  brisk_get_stats(&before);
  run_in_thread(thread_with_late_key, NULL);
  assert_int_equal(late_destructor_ok, 1);
  brisk_get_stats(&after);
  assert_int_equal(after.threads, before.threads);
  assert_true(after.in_use <= before.in_use + 4096);
}

static void *exit_block;
static void allocate_at_exit(void) {
  char *p = brisk_malloc(100000), *q = brisk_calloc(10, 10);
  if (p == NULL || q == NULL || q[99] != 0) _exit(3);
  memset(p, 1, 100000);
  brisk_free(p);
  brisk_free(q);
  brisk_free(exit_block);
  _exit(0); /* reached only if everything above worked */
}

static int exit_with_handler(void) {
  exit_block = brisk_malloc(50);
  atexit(allocate_at_exit);
  exit(7); /* the handler turns this into 0 */
}

static void test_atexit_handler_can_allocate(void **state) {
  (void)state;
  assert_int_equal(run_in_child(exit_with_handler, "exit_with_handler"), 0);
}

/* Lock statistics: every acquisition counts, and one that found the lock held
 * counts as contended, in the thread that waited, also after it has exited. */
static void *first_malloc(void *arg) {
  (void)arg;
  brisk_free(brisk_malloc(100)); /* registers the cache: the registry lock */
  return NULL;
}

static void test_lock_acquisitions_and_contention_are_counted(void **state) {
  (void)state;
  brisk_stats_t before, after;
  brisk_get_stats(&before);
  for (int i = 0; i < 20000; i++) brisk_free(brisk_malloc(3000)); /* refills and spills */
  brisk_get_stats(&after);
  assert_true(after.lock_acquired > before.lock_acquired);
  brisk__lock(&brisk__registry_lock); /* held while the new thread registers */
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, first_malloc, NULL), 0);
  usleep(200 * 1000);
  brisk__unlock(&brisk__registry_lock);
  pthread_join(t, NULL);
  brisk_stats_t joined;
  brisk_get_stats(&joined);
  assert_true(joined.lock_contended >= after.lock_contended + 1);
  assert_true(joined.lock_acquired > after.lock_acquired);
  /* A report takes locks too, and leaves them out. */
  brisk_stats_t again;
  brisk_get_stats(&again);
  assert_int_equal(again.lock_acquired, joined.lock_acquired);
}

/* Remote frees go to the owner. A thread that frees blocks another thread
 * allocated neither reuses them (the passive false sharing of cache-scratch:
 * its next block of that size is not one of them) nor takes a lock; the owner,
 * still running, gets them back on its next allocations. */
enum { REMOTE_N = 1000 };
static void *remote_blocks[REMOTE_N];

static int is_remote_block(const void *p) {
  for (int i = 0; i < REMOTE_N; i++)
    if (remote_blocks[i] == p) return 1;
  return 0;
}

static void *free_others_blocks(void *arg) {
  (void)arg;
  brisk_free(brisk_malloc(64)); /* this thread's cache and heap exist */
  uint64_t before = brisk__lock_counts.acquired;
  for (int i = 0; i < REMOTE_N; i++) brisk_free(remote_blocks[i]);
  uint64_t locks = brisk__lock_counts.acquired - before;
  int reused = 0;
  void *mine[64];
  for (int i = 0; i < 64; i++) reused += is_remote_block(mine[i] = brisk_malloc(64));
  for (int i = 0; i < 64; i++) brisk_free(mine[i]);
  return (void *)(uintptr_t)(locks == 0 && reused == 0);
}

static void test_remote_frees_go_to_the_owner_without_a_lock(void **state) {
  (void)state;
  for (int i = 0; i < REMOTE_N; i++) remote_blocks[i] = brisk_malloc(64);
  assert_true((uintptr_t)run_in_thread(free_others_blocks, NULL));
  /* The freeing thread has exited and sent what it held: the blocks wait in
   * this thread's inbox, and its next allocations are them. */
  static void *again[REMOTE_N];
  int back = 0;
  for (int i = 0; i < REMOTE_N; i++) back += is_remote_block(again[i] = brisk_malloc(64));
  for (int i = 0; i < REMOTE_N; i++) brisk_free(again[i]);
  if (back < REMOTE_N * 9 / 10) fail_msg("only %d of %d blocks came back to their owner", back, REMOTE_N);
}

/* A thread that exits with blocks out leaves its spans to the orphan heap;
 * when another thread frees those blocks the spans empty and go back to the
 * page heap, instead of staying stranded. */
static void *allocate_and_exit(void *arg) {
  (void)arg;
  for (int i = 0; i < REMOTE_N; i++) remote_blocks[i] = brisk_malloc(5000);
  return NULL;
}

static void test_spans_of_an_exited_thread_empty_and_return(void **state) {
  (void)state;
  unsigned cls = brisk__size_to_class(5000);
  uint64_t out0, free0, spans0, out1, free1, spans1;
  brisk_free(brisk_malloc(5000));
  brisk__small_class_stats(cls, &out0, &free0, &spans0);
  run_in_thread(allocate_and_exit, NULL);
  for (int i = 0; i < REMOTE_N; i++) brisk_free(remote_blocks[i]);
  brisk__small_class_stats(cls, &out1, &free1, &spans1);
  /* What this thread freed last may still wait on its remote list: at most
   * 128 blocks or 256 KiB (thread_cache.c), a few spans' worth. */
  const brisk_class_info_t *ci = &brisk__classes[cls];
  uint64_t waiting = (256 * 1024) / ci->size + 1, slack = waiting / ci->span_objs + 2;
  if (spans1 > spans0 + slack) fail_msg("%llu spans of the class before, %llu after", (unsigned long long)spans0,
                                    (unsigned long long)spans1);
  assert_true(out1 <= out0 + waiting);
}

/* A thread that frees many of its own blocks, far past its cache's budget,
 * takes no lock: every other block of 50,000, so that no span empties (an
 * emptied span goes back to the page heap, under its lock). */
static void *free_own_blocks(void *arg) {
  (void)arg;
  enum { N = 50000 };
  static void *blocks[N];
  for (int i = 0; i < N; i++) blocks[i] = brisk_malloc(64);
  uint64_t before = brisk__lock_counts.acquired;
  for (int i = 0; i < N; i += 2) brisk_free(blocks[i]);
  uint64_t locks = brisk__lock_counts.acquired - before;
  for (int i = 1; i < N; i += 2) brisk_free(blocks[i]);
  if (locks != 0) fprintf(stderr, "%llu locks for %d frees\n", (unsigned long long)locks, N / 2);
  return (void *)(uintptr_t)(locks == 0);
}

static void test_local_frees_take_no_lock(void **state) {
  (void)state;
  assert_true((uintptr_t)run_in_thread(free_own_blocks, NULL));
}

/* A block freed twice by two threads that do not own it, the first copy still
 * waiting in the first thread's open remote message when the second arrives at
 * the owner: the owner cannot see that copy, and must not take the second one
 * in (it withholds it); the first, sent when its thread exits, is then the
 * block's only way back. On the design before this test, the owner took both
 * copies, and two of its mallocs returned the same block. */
enum { TRANSIT_SIZE = 3000, TRANSIT_N = 600 };
static void *transit_block;
static pthread_mutex_t transit_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t transit_cv = PTHREAD_COND_INITIALIZER;
static int transit_stage; /* 1: the first free is done; 2: its thread may exit */

static void *first_free_then_wait(void *arg) {
  (void)arg;
  brisk_free(transit_block); /* one block: it stays in this thread's open message */
  pthread_mutex_lock(&transit_mu);
  transit_stage = 1;
  pthread_cond_broadcast(&transit_cv);
  while (transit_stage < 2) pthread_cond_wait(&transit_cv, &transit_mu);
  pthread_mutex_unlock(&transit_mu);
  return NULL; /* exit: the message goes to the owner */
}

static void *second_free(void *arg) {
  (void)arg;
  brisk_free(transit_block);
  return NULL;
}

static int double_free_in_transit_is_handed_out_once(void) {
  static void *live[TRANSIT_N];
  transit_block = brisk_malloc(TRANSIT_SIZE);
  pthread_t a;
  if (pthread_create(&a, NULL, first_free_then_wait, NULL) != 0) return 10;
  pthread_mutex_lock(&transit_mu);
  while (transit_stage < 1) pthread_cond_wait(&transit_cv, &transit_mu);
  pthread_mutex_unlock(&transit_mu);
  run_in_thread(second_free, NULL);
  int n = 0, seen = 0;
  for (; n < TRANSIT_N / 3; n++) seen += (live[n] = brisk_malloc(TRANSIT_SIZE)) == transit_block;
  pthread_mutex_lock(&transit_mu);
  transit_stage = 2;
  pthread_cond_broadcast(&transit_cv);
  pthread_mutex_unlock(&transit_mu);
  pthread_join(a, NULL);
  for (; n < TRANSIT_N; n++) seen += (live[n] = brisk_malloc(TRANSIT_SIZE)) == transit_block;
  if (seen > 1) fprintf(stderr, "the block was handed out %d times\n", seen);
  for (int i = 0; i < n; i++) brisk_free(live[i] == transit_block && seen > 1 ? NULL : live[i]);
  return seen <= 1 ? 0 : 1;
}

static void test_double_free_in_transit_is_handed_out_once(void **state) {
  (void)state;
  assert_int_equal(run_in_child(double_free_in_transit_is_handed_out_once, "double free in transit"), 0);
}

/* A thread whose first allocation comes in glibc's last round of TLS
 * destructors sets brisk's key too late for its destructor to run: brisk must
 * see that the thread is gone anyway (its cache is lost, bounded by one cache)
 * and retire its small heap, so that the thread count comes back down and the
 * blocks other threads free into its spans are reusable. The thread does
 * nothing with brisk until then (the test harness runs on glibc's malloc). */
static pthread_key_t round_key;
static int dtor_round, was_new, live_after;
static void *last_round_block;

static void register_in_last_round(void *arg) {
  if (++dtor_round < PTHREAD_DESTRUCTOR_ITERATIONS) {
    pthread_setspecific(round_key, arg); /* once more, in the next round */
    return;
  }
  was_new = brisk__tc.state == BRISK_TC_NEW;
  last_round_block = brisk_malloc(48); /* the thread's first allocation */
  brisk_free(brisk_malloc(48));        /* one more left in its cache */
  live_after = brisk__tc.state == BRISK_TC_LIVE;
}

static void *set_round_key(void *arg) {
  (void)arg;
  pthread_setspecific(round_key, (void *)1);
  return NULL;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Whether the dead thread's span of p went to the orphan heap, with p free in it. */
static int span_orphaned_with_free(void *p) {
  brisk_span_t *s = brisk__pagemap_get(p);
  brisk_sheap_t *o = atomic_load(&s->owner);
  return o != NULL && o->kind == BRISK_SHEAP_ORPHAN && brisk__small_is_free(NULL, s, p);
}

enum { UNSEEN_EXIT_WAIT_MS = 5000 };

/* Runs one such thread; returns 0, or why not (printed). */
static int last_round_thread(void) {
  dtor_round = was_new = live_after = 0;
  last_round_block = NULL;
  pthread_t t;
  if (pthread_create(&t, NULL, set_round_key, NULL) != 0 || pthread_join(t, NULL) != 0) return 11;
  if (dtor_round != PTHREAD_DESTRUCTOR_ITERATIONS || !was_new || !live_after || last_round_block == NULL) {
    fprintf(stderr, "rounds %d, first allocation in the last: %d, live after it: %d\n", dtor_round, was_new,
            live_after);
    return 12;
  }
  return 0;
}

/* The key, then one such thread whose block this thread frees. */
static int run_last_round_thread(brisk_stats_t *before) {
  brisk_free(brisk_malloc(48)); /* brisk's key exists, and comes before round_key */
  if (pthread_key_create(&round_key, register_in_last_round) != 0) return 10;
  brisk_get_stats(before);
  int r = last_round_thread();
  if (r != 0) return r;
  brisk_free(last_round_block); /* a remote free, into the dead thread's span */
  brisk__tcache_flush(&brisk__tc); /* sends this thread's open message (brisk_trim would reap) */
  return 0;
}

/* The thread is counted out (and was counted in once). */
static int counted_out(const brisk_stats_t *before, const brisk_stats_t *after) {
  if (after->threads == before->threads && after->threads_seen == before->threads_seen + 1) return 1;
  fprintf(stderr, "threads %llu before, %llu after; seen %llu, %llu\n", (unsigned long long)before->threads,
          (unsigned long long)after->threads, (unsigned long long)before->threads_seen,
          (unsigned long long)after->threads_seen);
  return 0;
}

/* Counted out and its heap retired by the purge tick alone. */
static int unseen_exit_reaped_by_the_purge_tick(void) {
  brisk_stats_t before, after;
  int r = run_last_round_thread(&before);
  if (r != 0) return r;
  uint64_t start = now_ms();
  while (!span_orphaned_with_free(last_round_block) && now_ms() - start < UNSEEN_EXIT_WAIT_MS) {
    brisk__purge_tick();
    usleep(10 * 1000);
  }
  if (!span_orphaned_with_free(last_round_block)) {
    fprintf(stderr, "the dead thread's span still has its heap after %d ms\n", UNSEEN_EXIT_WAIT_MS);
    return 13;
  }
  brisk_get_stats(&after);
  return counted_out(&before, &after) ? 0 : 14;
}

/* Statistics reports, every 10 ms, until the thread count is back to want (or
 * UNSEEN_EXIT_WAIT_MS have passed); the last report in *after. */
static void stats_until_threads(uint64_t want, brisk_stats_t *after) {
  uint64_t start = now_ms();
  do {
    brisk_get_stats(after);
    if (after->threads == want) break;
    usleep(10 * 1000);
  } while (now_ms() - start < UNSEEN_EXIT_WAIT_MS);
}

/* Counted out by a statistics report, which retires its heap too. */
static int unseen_exit_reaped_by_the_statistics(void) {
  brisk_stats_t before, after;
  int r = run_last_round_thread(&before);
  if (r != 0) return r;
  stats_until_threads(before.threads, &after);
  if (!counted_out(&before, &after)) return 15;
  if (!span_orphaned_with_free(last_round_block)) {
    fprintf(stderr, "the dead thread's span is not the orphan's, or its block is not free\n");
    return 16;
  }
  return 0;
}

/* Such threads between ordinary ones, whose TLS reuses theirs, and reports
 * walking the registry meanwhile: every thread is counted in once and out once. */
static int unseen_exits_among_ordinary_threads(void) {
  enum { ROUNDS = 100 };
  brisk_stats_t before, after;
  int r = run_last_round_thread(&before);
  if (r != 0) return r;
  for (int i = 1; i < ROUNDS; i++) {
    if ((r = last_round_thread()) != 0) return r;
    brisk_free(last_round_block);
    pthread_t t;
    void *q;
    if (pthread_create(&t, NULL, tiny_thread, NULL) != 0 || pthread_join(t, &q) != 0) return 11;
    brisk_free(q);
    if (i % 10 == 0) brisk_get_stats(&after);
  }
  stats_until_threads(before.threads, &after);
  before.threads_seen += 2 * ROUNDS - 2; /* counted_out adds the first one */
  return counted_out(&before, &after) ? 0 : 17;
}

static void test_thread_registered_in_the_last_destructor_round_is_reaped_by_the_purge_tick(void **state) {
  (void)state;
  assert_int_equal(run_in_child(unseen_exit_reaped_by_the_purge_tick, "unseen_exit_reaped_by_the_purge_tick"), 0);
}

static void test_thread_registered_in_the_last_destructor_round_is_reaped_by_the_statistics(void **state) {
  (void)state;
  assert_int_equal(run_in_child(unseen_exit_reaped_by_the_statistics, "unseen_exit_reaped_by_the_statistics"), 0);
}

static void test_threads_registered_in_the_last_destructor_round_among_ordinary_ones(void **state) {
  (void)state;
  assert_int_equal(run_in_child(unseen_exits_among_ordinary_threads, "unseen_exits_among_ordinary_threads"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_first_malloc_refills_one_batch),
    cmocka_unit_test(test_first_list_is_one_page_then_batches),
    cmocka_unit_test(test_lists_stay_bounded_when_a_thread_frees_much),
    cmocka_unit_test(test_thread_exit_returns_the_cache),
    cmocka_unit_test(test_thread_cache_stays_within_its_budget),
    cmocka_unit_test(test_producer_consumer_memory_stays_bounded),
    cmocka_unit_test(test_thousands_of_threads_do_not_grow_memory),
    cmocka_unit_test(test_tls_destructor_can_allocate_after_the_cache_is_gone),
    cmocka_unit_test(test_atexit_handler_can_allocate),
    cmocka_unit_test(test_lock_acquisitions_and_contention_are_counted),
    cmocka_unit_test(test_remote_frees_go_to_the_owner_without_a_lock),
    cmocka_unit_test(test_spans_of_an_exited_thread_empty_and_return),
    cmocka_unit_test(test_local_frees_take_no_lock),
    cmocka_unit_test(test_double_free_in_transit_is_handed_out_once),
    cmocka_unit_test(test_thread_registered_in_the_last_destructor_round_is_reaped_by_the_purge_tick),
    cmocka_unit_test(test_thread_registered_in_the_last_destructor_round_is_reaped_by_the_statistics),
    cmocka_unit_test(test_threads_registered_in_the_last_destructor_round_among_ordinary_ones),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
