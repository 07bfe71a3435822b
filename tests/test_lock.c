/* brisk_lock_t (base.h, os.c): mutual exclusion under contention, the sleepers'
 * path (a holder that yields makes the waiters outlast their spin and sleep),
 * and the states a lock passes through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>

#include "internal.h"

#define WORKERS 4
#define ROUNDS 100000
/* Every this many rounds the holder yields inside the section: the others spin
 * out and sleep on the futex, and the release has to wake them. */
#define YIELD_EVERY 512

static brisk_lock_t lock = BRISK_LOCK_INIT(BRISK_RANK_META);
static uint64_t counter;      /* only under lock */
static int inside;            /* threads inside the section: never more than 1 */
static _Atomic int overlaps;  /* times a thread found another inside */
static _Atomic uint64_t contended, acquired;

static void *worker(void *arg) {
  (void)arg;
  brisk_lock_counts_t before = brisk__lock_counts;
  for (int i = 0; i < ROUNDS; i++) {
    brisk__lock(&lock);
    if (__atomic_fetch_add(&inside, 1, __ATOMIC_RELAXED) != 0) atomic_fetch_add(&overlaps, 1);
    counter++;
    if (i % YIELD_EVERY == 0) sched_yield();
    __atomic_fetch_sub(&inside, 1, __ATOMIC_RELAXED);
    brisk__unlock(&lock);
  }
  atomic_fetch_add(&acquired, brisk__lock_counts.acquired - before.acquired);
  atomic_fetch_add(&contended, brisk__lock_counts.contended - before.contended);
  return NULL;
}

static void test_threads_exclude_each_other_and_sleepers_wake(void **state) {
  (void)state;
  pthread_t t[WORKERS];
  for (int i = 0; i < WORKERS; i++) assert_int_equal(pthread_create(&t[i], NULL, worker, NULL), 0);
  for (int i = 0; i < WORKERS; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
  assert_int_equal(overlaps, 0);
  assert_int_equal(counter, (uint64_t)WORKERS * ROUNDS);
  assert_int_equal(acquired, (uint64_t)WORKERS * ROUNDS);
  /* Each yield inside the section makes the others find it taken. */
  print_message("contended: %llu of %llu\n", (unsigned long long)contended, (unsigned long long)acquired);
  assert_true(contended > 0);
  assert_int_equal(atomic_load(&lock.state), BRISK_LOCK_FREE);
}

static void *try_once(void *arg) {
  brisk_lock_t *l = arg;
  bool got = brisk__trylock(l);
  if (got) brisk__unlock(l);
  return got ? l : NULL;
}

static void test_a_zeroed_lock_is_free_and_trylock_sees_a_holder(void **state) {
  (void)state;
  static brisk_lock_t zeroed; /* as the arenas' are, in .bss */
  zeroed.rank = BRISK_RANK_META;
  assert_int_equal(atomic_load(&zeroed.state), BRISK_LOCK_FREE);
  assert_true(brisk__trylock(&zeroed));
  assert_int_equal(atomic_load(&zeroed.state), BRISK_LOCK_TAKEN);
  brisk__unlock(&zeroed);
  assert_int_equal(atomic_load(&zeroed.state), BRISK_LOCK_FREE);
  pthread_t t;
  void *r;
  brisk__lock(&zeroed); /* another thread's trylock fails while it is held */
  assert_int_equal(pthread_create(&t, NULL, try_once, &zeroed), 0);
  assert_int_equal(pthread_join(t, &r), 0);
  assert_null(r);
  brisk__unlock(&zeroed); /* and succeeds once it is not */
  assert_int_equal(pthread_create(&t, NULL, try_once, &zeroed), 0);
  assert_int_equal(pthread_join(t, &r), 0);
  assert_ptr_equal(r, &zeroed);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_threads_exclude_each_other_and_sleepers_wake),
      cmocka_unit_test(test_a_zeroed_lock_is_free_and_trylock_sees_a_holder),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
