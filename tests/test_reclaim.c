/* Idle threads: the purge tick gives back what a parked thread's slow-path
 * state holds (blocks other threads freed to it, its kept spans, its spare
 * large block) under the thread's gate, and the thread goes on correctly when
 * it wakes, also while many threads sleep and wake under the tick. The purge
 * delay is a few milliseconds here (unit.cmake); RECLAIM_STRESS_MS sets how
 * long the stress runs (the `long` variant: 30 s). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* A block's stamp: its owner's tag in the first and the last word, so that a
 * block handed out twice shows in whichever copy is checked last. */
static void stamp(void *p, size_t size, uint64_t tag) {
  uint64_t *w = p;
  w[0] = tag;
  w[size / 8 - 1] = ~tag;
}

static bool stamped(const void *p, size_t size, uint64_t tag) {
  const uint64_t *w = p;
  return w[0] == tag && w[size / 8 - 1] == ~tag;
}

/* ------------------------------------------------------------------------------
   One parked thread
------------------------------------------------------------------------------ */

/* 10 MiB: past the 8 MiB sent to other threads that start the purge thread. */
enum { PARKED_BLOCKS = 40960, PARKED_SIZE = 256, PARKED_LARGE = 256 * 1024 };

typedef enum { PHASE_START, PHASE_PARKED, PHASE_WAKE } phase_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  phase_t phase;
  brisk_tcache_t *tc; /* the parked thread's cache, to watch its spare */
  void *blocks[PARKED_BLOCKS];
} parked = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PHASE_START, NULL, {0}};

static void phase_set(phase_t p) {
  pthread_mutex_lock(&parked.lock);
  parked.phase = p;
  pthread_cond_broadcast(&parked.cond);
  pthread_mutex_unlock(&parked.lock);
}

static void phase_wait(phase_t p) {
  pthread_mutex_lock(&parked.lock);
  while (parked.phase != p) pthread_cond_wait(&parked.cond, &parked.lock);
  pthread_mutex_unlock(&parked.lock);
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

/* Fills the blocks (for the main thread to free), leaves a spare large block,
 * parks; woken, it allocates them all again: each distinct and intact. */
static void *parked_thread(void *arg) {
  (void)arg;
  for (int i = 0; i < PARKED_BLOCKS; i++) parked.blocks[i] = brisk_malloc(PARKED_SIZE);
  brisk_free(brisk_malloc(PARKED_LARGE)); /* the thread's spare */
  parked.tc = &brisk__tc;
  phase_set(PHASE_PARKED);
  phase_wait(PHASE_WAKE);
  static void *again[PARKED_BLOCKS];
  for (int i = 0; i < PARKED_BLOCKS; i++) {
    again[i] = brisk_malloc(PARKED_SIZE);
    if (again[i] == NULL) return (void *)0;
    stamp(again[i], PARKED_SIZE, (uint64_t)i * 2654435761u + 1);
  }
  void *large = brisk_malloc(PARKED_LARGE);
  if (large == NULL) return (void *)0;
  memset(large, 0xab, PARKED_LARGE);
  uintptr_t ok = 1;
  for (int i = 0; i < PARKED_BLOCKS; i++) ok &= stamped(again[i], PARKED_SIZE, (uint64_t)i * 2654435761u + 1);
  qsort(again, PARKED_BLOCKS, sizeof again[0], cmp_ptr);
  for (int i = 1; i < PARKED_BLOCKS; i++) ok &= (uintptr_t)again[i] - (uintptr_t)again[i - 1] >= PARKED_SIZE;
  for (int i = 0; i < PARKED_BLOCKS; i++) brisk_free(again[i]);
  brisk_free(large);
  return (void *)ok;
}

static uint64_t small_in_use(void) {
  brisk_stats_t st;
  brisk_get_stats(&st);
  return st.in_use - st.large_in_use;
}

/* First in the run: nothing has started the purge thread yet, and the frees
 * sent to the parked thread must. */
static void test_parked_thread_gives_back_what_others_freed_and_its_spare(void **state) {
  (void)state;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, parked_thread, NULL), 0);
  phase_wait(PHASE_PARKED);
  /* Remote frees: they wait in the parked thread's inbox, pinning its spans. */
  for (int i = 0; i < PARKED_BLOCKS; i++) brisk_free(parked.blocks[i]);
  brisk__tcache_flush(&brisk__tc); /* this thread's open messages go out */
  uint64_t before = small_in_use();
  assert_true(before >= (uint64_t)PARKED_BLOCKS * PARKED_SIZE);
  uint64_t reclaims = brisk__tcache_reclaims();
  /* At most a few purge delays and ticks; 5 s for a loaded machine. */
  uint64_t start = now_ms();
  bool back = false;
  while (!back && now_ms() - start < 5000) {
    sleep_ms(10);
    back = small_in_use() + (uint64_t)PARKED_BLOCKS * PARKED_SIZE * 9 / 10 <= before &&
           __atomic_load_n(&parked.tc->large_spare, __ATOMIC_RELAXED) == NULL;
  }
  assert_true(back);
  assert_true(brisk__tcache_reclaims() > reclaims);
  phase_set(PHASE_WAKE);
  void *ok;
  assert_int_equal(pthread_join(t, &ok), 0);
  assert_true((uintptr_t)ok);
}

/* ------------------------------------------------------------------------------
   Many threads sleeping and waking while the tick gives back
------------------------------------------------------------------------------ */

enum { STRESS_THREADS = 6, STRESS_BATCH = 200, STRESS_SLOTS = 512 };

typedef struct {
  void *p;
  size_t size;
  uint64_t tag;
} held_t;

/* Blocks in transit between threads: their frees are remote, often to a
 * thread that sleeps. */
static struct {
  pthread_mutex_t lock;
  held_t slot[STRESS_SLOTS];
} exchange = {PTHREAD_MUTEX_INITIALIZER, {{0}}};

static _Atomic int stress_bad;
static uint64_t stress_until;

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void check_and_free(held_t *h) {
  if (h->p == NULL) return;
  if (!stamped(h->p, h->size, h->tag)) atomic_store(&stress_bad, 1);
  brisk_free(h->p);
  h->p = NULL;
}

static void *stress_thread(void *arg) {
  uint64_t rng = (uintptr_t)arg * 0x9e3779b97f4a7c15u + 1, seq = 0;
  held_t mine[STRESS_BATCH];
  held_t large = {0};
  while (now_ms() < stress_until && !atomic_load(&stress_bad)) {
    for (int i = 0; i < STRESS_BATCH; i++) {
      size_t size = 16 + (size_t)(xorshift(&rng) % 1009) / 16 * 16;
      mine[i] = (held_t){brisk_malloc(size), size, ((uint64_t)(uintptr_t)arg << 48) | ++seq};
      if (mine[i].p == NULL) {
        atomic_store(&stress_bad, 1);
        return NULL;
      }
      stamp(mine[i].p, size, mine[i].tag);
    }
    /* Trade half of them for blocks of other threads, which are freed here. */
    pthread_mutex_lock(&exchange.lock);
    for (int i = 0; i < STRESS_BATCH / 2; i++) {
      held_t *s = &exchange.slot[xorshift(&rng) % STRESS_SLOTS];
      held_t out = *s;
      *s = mine[i];
      mine[i] = out;
    }
    pthread_mutex_unlock(&exchange.lock);
    for (int i = 0; i < STRESS_BATCH; i++) check_and_free(&mine[i]);
    /* A large block: freed (the spare) or held across the sleep. */
    check_and_free(&large);
    size_t lsize = (size_t)(64 + xorshift(&rng) % 448) * 1024;
    large = (held_t){brisk_malloc(lsize), lsize, ++seq};
    if (large.p == NULL) {
      atomic_store(&stress_bad, 1);
      return NULL;
    }
    stamp(large.p, lsize, large.tag);
    if (xorshift(&rng) & 1) check_and_free(&large);
    /* A burst of slow paths: the spare taken and put back, lists that refill
     * and spill, while the give-backs run. */
    for (int j = 0; j < 32; j++) {
      held_t b = {brisk_malloc(lsize / 2), lsize / 2, ++seq};
      if (b.p == NULL) break;
      stamp(b.p, b.size, b.tag);
      check_and_free(&b);
    }
    for (int j = 0; j < STRESS_BATCH; j++) {
      size_t size = 16 + (size_t)(j % 4) * 48;
      mine[j] = (held_t){brisk_malloc(size), size, ++seq};
      if (mine[j].p == NULL) {
        atomic_store(&stress_bad, 1);
        return NULL;
      }
      stamp(mine[j].p, size, mine[j].tag);
    }
    for (int j = 0; j < STRESS_BATCH; j++) check_and_free(&mine[j]);
    /* Sleep: often past the idle threshold (two purge delays). */
    sleep_ms((unsigned)(xorshift(&rng) % 40));
  }
  check_and_free(&large);
  return NULL;
}

/* ------------------------------------------------------------------------------
   A thread inside its gate
------------------------------------------------------------------------------ */

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int step; /* 1: inside its gate; 2: told to leave; 3: left; 4: told to end */
  brisk_tcache_t *tc;
} inside = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, NULL};

static void inside_to(int step) {
  pthread_mutex_lock(&inside.lock);
  inside.step = step;
  pthread_cond_broadcast(&inside.cond);
  pthread_mutex_unlock(&inside.lock);
}

static void inside_wait(int step) {
  pthread_mutex_lock(&inside.lock);
  while (inside.step < step) pthread_cond_wait(&inside.cond, &inside.lock);
  pthread_mutex_unlock(&inside.lock);
}

static void *inside_main(void *arg) {
  (void)arg;
  void *small = brisk_malloc(PARKED_SIZE); /* the thread's cache and heap: LIVE */
  brisk_free(brisk_malloc(PARKED_LARGE)); /* its spare now */
  brisk_free(small);
  inside.tc = &brisk__tc;
  bool entered = brisk__gate_enter(&brisk__tc); /* as a slow path that takes its time */
  inside_to(1);
  inside_wait(2);
  brisk__gate_leave(&brisk__tc, entered);
  inside_to(3);
  inside_wait(4);
  return NULL;
}

/* The tick leaves alone a thread that is inside its gate, however long it
 * stays (its spare and its heap are in use), and visits it once it has left. */
static void test_a_thread_inside_its_gate_is_left_alone(void **state) {
  (void)state;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, inside_main, NULL), 0);
  inside_wait(1);
  assert_non_null(__atomic_load_n(&inside.tc->large_spare, __ATOMIC_RELAXED));
  uint64_t reclaims = brisk__tcache_reclaims();
  for (int i = 0; i < 50; i++) {
    brisk__tcache_reclaim_idle(now_ms(), 0);
    sleep_ms(1);
  }
  assert_int_equal(brisk__tcache_reclaims(), reclaims);
  assert_non_null(__atomic_load_n(&inside.tc->large_spare, __ATOMIC_RELAXED));
  inside_to(2);
  inside_wait(3);
  uint64_t until = now_ms() + 5000;
  while (__atomic_load_n(&inside.tc->large_spare, __ATOMIC_RELAXED) != NULL && now_ms() < until) {
    brisk__tcache_reclaim_idle(now_ms(), 0);
    sleep_ms(1);
  }
  assert_null(__atomic_load_n(&inside.tc->large_spare, __ATOMIC_RELAXED));
  assert_true(brisk__tcache_reclaims() > reclaims);
  inside_to(4);
  assert_int_equal(pthread_join(t, NULL), 0);
}

static void test_threads_sleeping_and_waking_while_the_tick_gives_back(void **state) {
  (void)state;
  brisk__purge_start();
  const char *env = getenv("RECLAIM_STRESS_MS");
  unsigned ms = env != NULL ? (unsigned)strtoul(env, NULL, 10) : 1500;
  uint64_t reclaims = brisk__tcache_reclaims();
  stress_until = now_ms() + ms;
  pthread_t t[STRESS_THREADS];
  for (uintptr_t i = 0; i < STRESS_THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, stress_thread, (void *)(i + 1)), 0);
  /* Besides the purge thread's ticks: give-backs as fast as they go, with no
   * idle threshold, so that they meet the threads' slow paths often. */
  while (now_ms() < stress_until && !atomic_load(&stress_bad)) brisk__tcache_reclaim_idle(now_ms(), 0);
  for (int i = 0; i < STRESS_THREADS; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
  for (int i = 0; i < STRESS_SLOTS; i++) check_and_free(&exchange.slot[i]);
  assert_false(atomic_load(&stress_bad));
  assert_true(brisk__tcache_reclaims() > reclaims); /* the race was run */
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parked_thread_gives_back_what_others_freed_and_its_spare),
    cmocka_unit_test(test_a_thread_inside_its_gate_is_left_alone),
    cmocka_unit_test(test_threads_sleeping_and_waking_while_the_tick_gives_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
