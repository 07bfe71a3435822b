/* Wrong usage of the prefixed API: double frees, foreign and interior pointers,
 * free_sized with the wrong size. Brisk must abort with exactly one line on stderr,
 * "brisk: <call>(): <what> 0x<address>". Each case runs in a forked child whose
 * stderr goes into a pipe; the parent checks the signal and the line. Strict about
 * the call, the address and SIGABRT; tolerant about the wording in between. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_helpers.h"
#include "abort_child.h"
#include "brisk.h"

static const char *const double_free[] = {"double free", NULL};
static const char *const invalid_pointer[] = {"invalid pointer", NULL};
/* A freed large block may be unmapped already: then it is simply not brisk's. */
static const char *const double_free_or_invalid[] = {"double free", "invalid pointer", NULL};

/* ------------------------------------------------------------------------------
   The wrong calls (each runs in the child)
------------------------------------------------------------------------------ */

static void free_small_block_twice(void) {
  void *p = brisk_malloc(64);
  brisk_free(p);
  brisk_free(report(p));
}

static void free_large_block_twice(void) {
  void *p = brisk_malloc(MiB);
  memset(p, 1, MiB);
  brisk_free(p);
  brisk_free(report(p));
}

static void free_stack_address(void) {
  char buf[64];
  memset(buf, 0, sizeof buf);
  brisk_free(report(buf + 16));
}

static void free_glibc_small_block(void) {
  void *p = malloc(64);
  brisk_free(report(p));
}

static void free_glibc_large_block(void) {
  void *p = malloc(4 * MiB); /* glibc mmaps this one */
  brisk_free(report(p));
}

static void free_address_0x1000(void) { brisk_free(report((void *)0x1000)); }

static void free_interior_pointer_of_small_block(void) {
  unsigned char *p = brisk_malloc(64);
  brisk_free(report(p + 16));
}

static void free_interior_pointer_of_large_block(void) {
  unsigned char *p = brisk_malloc(MiB);
  brisk_free(report(p + 4096));
}

static void realloc_stack_address(void) {
  char buf[64];
  memset(buf, 0, sizeof buf);
  void *q = brisk_realloc(report(buf + 16), 100);
  (void)q;
}

static void realloc_address_0x1000(void) {
  void *q = brisk_realloc(report((void *)0x1000), 100);
  (void)q;
}

static void realloc_interior_pointer_of_small_block(void) {
  unsigned char *p = brisk_malloc(64);
  void *q = brisk_realloc(report(p + 16), 200);
  (void)q;
}

static void free_sized_small_block_with_large_size(void) {
  void *p = brisk_malloc(64);
  brisk_free_sized(report(p), 4096);
}

static void free_sized_large_block_with_small_size(void) {
  void *p = brisk_malloc(MiB);
  brisk_free_sized(report(p), 64);
}

static void free_sized_small_block_with_other_small_size(void) {
  void *p = brisk_malloc(32);
  brisk_free_sized(report(p), 1000);
}

/* Free-list poisoning: a plain address written into a freed block's first word
 * (a use after free, or an overflow from its neighbour) must not come back from
 * malloc; the pop that would follow it aborts naming the block. */
static volatile uintptr_t poison_target;
static void malloc_after_free_list_link_overwritten(void) {
  void *x = brisk_malloc(48);
  void *b = brisk_malloc(48);
  brisk_free(x);
  brisk_free(b); /* b heads the list, linked to x */
  *(volatile uintptr_t *)b = (uintptr_t)&poison_target; /* an aligned, attacker-chosen address */
  report(b);
  void *first = brisk_malloc(48); /* b: following its link must abort */
  void *second = brisk_malloc(48);
  poison_target = (uintptr_t)first ^ (uintptr_t)second;
}

/* The same through an 8-byte overflow of the block below, as glibc's tcache
 * check catches it ("malloc(): unaligned tcache chunk detected"). */
static void malloc_after_overflow_into_free_neighbour(void) {
  enum { N = 32 };
  unsigned char *blk[N];
  for (int i = 0; i < N; i++) blk[i] = brisk_malloc(48);
  int a = -1;
  for (int i = 0; i + 1 < N && a < 0; i++)
    if (blk[i] + brisk_usable_size(blk[i]) == blk[i + 1]) a = i;
  if (a < 0) _exit(3); /* no two neighbours: the parent reports the layout */
  brisk_free(blk[N - 1]);
  brisk_free(blk[a + 1]);
  uintptr_t target = (uintptr_t)&poison_target;
  memcpy(blk[a] + brisk_usable_size(blk[a]), &target, sizeof target); /* 8 bytes too many */
  report(blk[a + 1]);
  void *p = brisk_malloc(48);
  void *q = brisk_malloc(48);
  poison_target = (uintptr_t)p ^ (uintptr_t)q;
}

/* A double free that the hint misses (the program wrote word 1 of the freed
 * block) must not make the block its own successor. */
static void free_twice_with_hint_overwritten(void) {
  uint64_t *p = brisk_malloc(48);
  brisk_free(p);
  p[1] = 0x1234;
  brisk_free(report(p));
}

/* Two threads free one large block at the same moment: exactly one may get
 * through; the other must abort. (The state was read outside any lock, and
 * both frees passed in about one try in ten, handing the block out twice.) */
static atomic_int racing_ready, racing_go;
static void *racing_free_main(void *p) {
  atomic_fetch_add(&racing_ready, 1);
  while (!atomic_load_explicit(&racing_go, memory_order_acquire)) {
  } /* spinning, not sleeping: both threads leave at the same moment */
  brisk_free(p);
  return NULL;
}

static void free_large_block_from_two_threads_at_once(void) {
  void *p = brisk_malloc(MiB);
  report(p);
  pthread_t a, b;
  if (pthread_create(&a, NULL, racing_free_main, p) != 0 || pthread_create(&b, NULL, racing_free_main, p) != 0)
    abort();
  while (atomic_load(&racing_ready) < 2) {
  }
  atomic_store_explicit(&racing_go, 1, memory_order_release);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
}

/* A live block's address with bit 48 set: the page map drops the bits above 48,
 * so the entry is the block's own, and free() must still see a pointer that is
 * not the block. */
static void free_small_block_with_bit_48_set(void) {
  void *p = brisk_malloc(48);
  brisk_free(report((void *)((uintptr_t)p | (uintptr_t)1 << 48)));
}

static void free_large_block_with_bit_48_set(void) {
  void *p = brisk_malloc(MiB);
  brisk_free(report((void *)((uintptr_t)p | (uintptr_t)1 << 48)));
}

/* A thread with a cancel pending (deferred): brisk's write of its message must
 * not be where the thread unwinds, or the process would go on past a detected
 * double free (libc's write() is a cancellation point; brisk's must not be). */
static void *double_free_with_cancel_pending_main(void *arg) {
  (void)arg;
  pthread_cancel(pthread_self());
  free_small_block_twice();
  return NULL;
}

static void free_twice_with_cancel_pending(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, double_free_with_cancel_pending_main, NULL) != 0) abort();
  pthread_join(t, NULL); /* joined: the thread unwound instead of aborting */
}

/* A block freed twice by two threads that do not own it, while the first of them
 * is still running: the first free's copy left that thread with its remote
 * list (here pushed out by PUSH_OUT more frees of another class, more than the
 * REMOTE_BATCH of thread_cache.c that sends what waits, which a cache of
 * the freeing thread would have kept apart), the second free finds the hint
 * and cannot look further itself, so it sends the block marked; the owner finds
 * the first copy and aborts. */
enum { PUSH_OUT = 1000 };
static void *second_free[2];
static _Atomic int first_done, may_exit;

static void *free_first_and_wait(void *arg) {
  void **q = arg;
  brisk_free(second_free[0]);
  for (int i = 0; i < PUSH_OUT; i++) brisk_free(q[i]);
  atomic_store(&first_done, 1);
  while (!atomic_load(&may_exit)) sched_yield(); /* alive: what it caches stays */
  return NULL;
}

static void *free_again(void *p) {
  brisk_free(p);
  return NULL;
}

static void free_small_block_twice_from_other_threads(void) {
  static void *q[PUSH_OUT];
  second_free[0] = brisk_malloc(64);
  void *keep = brisk_malloc(64); /* the class stays in use here */
  for (int i = 0; i < PUSH_OUT; i++) q[i] = brisk_malloc(32);
  pthread_t first, second;
  if (pthread_create(&first, NULL, free_first_and_wait, q) != 0) abort();
  while (!atomic_load(&first_done)) sched_yield();
  if (pthread_create(&second, NULL, free_again, report(second_free[0])) != 0) abort();
  pthread_join(second, NULL);
  /* The blocks wait in this thread's inbox: the next refills take it and make
   * the check. */
  enum { N = 4000 };
  static void *blocks[N];
  for (int i = 0; i < N; i++) blocks[i] = brisk_malloc(64);
  for (int i = 0; i < N; i++) brisk_free(blocks[i]);
  brisk_free(keep);
  atomic_store(&may_exit, 1);
  pthread_join(first, NULL);
}

/* ------------------------------------------------------------------------------
   Tests
------------------------------------------------------------------------------ */

static void test_double_free_of_small_block_aborts_naming_free_and_address(void **state) {
  (void)state;
  expect_abort(free_small_block_twice, "free()", double_free);
}

static void test_double_free_from_two_other_threads_aborts(void **state) {
  (void)state;
  expect_abort(free_small_block_twice_from_other_threads, "free()", double_free);
}

static void test_double_free_of_large_block_aborts_naming_free_and_address(void **state) {
  (void)state;
  expect_abort(free_large_block_twice, "free()", double_free_or_invalid);
}

static void test_free_of_stack_address_aborts_with_invalid_pointer(void **state) {
  (void)state;
  expect_abort(free_stack_address, "free()", invalid_pointer);
}

static void test_free_of_glibc_small_block_aborts_with_invalid_pointer(void **state) {
  (void)state;
  expect_abort(free_glibc_small_block, "free()", invalid_pointer);
}

static void test_free_of_glibc_large_block_aborts_with_invalid_pointer(void **state) {
  (void)state;
  expect_abort(free_glibc_large_block, "free()", invalid_pointer);
}

static void test_free_of_address_0x1000_aborts_with_invalid_pointer(void **state) {
  (void)state;
  expect_abort(free_address_0x1000, "free()", invalid_pointer);
}

static void test_free_of_interior_pointer_of_small_block_aborts_with_invalid_pointer(
    void **state) {
  (void)state;
  expect_abort(free_interior_pointer_of_small_block, "free()", invalid_pointer);
}

static void test_free_of_interior_pointer_of_large_block_aborts_with_invalid_pointer(
    void **state) {
  (void)state;
  expect_abort(free_interior_pointer_of_large_block, "free()", invalid_pointer);
}

static void test_realloc_of_stack_address_aborts_with_invalid_pointer(void **state) {
  (void)state;
  expect_abort(realloc_stack_address, "realloc()", invalid_pointer);
}

static void test_realloc_of_address_0x1000_aborts_with_invalid_pointer(void **state) {
  (void)state;
  expect_abort(realloc_address_0x1000, "realloc()", invalid_pointer);
}

static void test_realloc_of_interior_pointer_aborts_with_invalid_pointer(void **state) {
  (void)state;
  expect_abort(realloc_interior_pointer_of_small_block, "realloc()", invalid_pointer);
}

/* The wording of a size mismatch is brisk's choice; the call and address are not. */
static void test_free_sized_of_small_block_with_large_size_aborts(void **state) {
  (void)state;
  expect_abort(free_sized_small_block_with_large_size, "free_sized()", NULL);
}

static void test_free_sized_of_large_block_with_small_size_aborts(void **state) {
  (void)state;
  expect_abort(free_sized_large_block_with_small_size, "free_sized()", NULL);
}

static void test_free_sized_of_small_block_with_other_class_size_aborts(void **state) {
  (void)state;
  expect_abort(free_sized_small_block_with_other_small_size, "free_sized()", NULL);
}

static void test_free_of_small_block_address_with_bit_48_set_aborts_with_invalid_pointer(void **state) {
  (void)state;
  expect_abort(free_small_block_with_bit_48_set, "free()", invalid_pointer);
}

static void test_free_of_large_block_address_with_bit_48_set_aborts_with_invalid_pointer(void **state) {
  (void)state;
  expect_abort(free_large_block_with_bit_48_set, "free()", invalid_pointer);
}

static const char *const corrupted_list[] = {"corrupted free list", NULL};

static void test_poisoned_free_list_link_aborts_in_malloc(void **state) {
  (void)state;
  expect_abort(malloc_after_free_list_link_overwritten, "malloc()", corrupted_list);
}

static void test_overflow_into_free_neighbour_aborts_in_malloc(void **state) {
  (void)state;
  expect_abort(malloc_after_overflow_into_free_neighbour, "malloc()", corrupted_list);
}

static void test_double_free_with_overwritten_hint_aborts(void **state) {
  (void)state;
  expect_abort(free_twice_with_hint_overwritten, "free()", double_free);
}

static void test_racing_frees_of_one_large_block_abort(void **state) {
  (void)state;
  for (int i = 0; i < 100; i++) expect_abort(free_large_block_from_two_threads_at_once, "free()", double_free);
}

static void test_double_free_with_cancel_pending_still_aborts(void **state) {
  (void)state;
  expect_abort(free_twice_with_cancel_pending, "free()", double_free);
}

/* brisk_print_stats (malloc_stats) in a thread with a cancel pending prints the
 * whole report and returns; the cancel acts at the thread's next cancellation
 * point, here pthread_testcancel. */
static volatile int stats_returned;
static void *stats_with_cancel_pending_main(void *arg) {
  (void)arg;
  pthread_cancel(pthread_self());
  brisk_print_stats();
  stats_returned = 1;
  pthread_testcancel();
  return NULL;
}

static void print_stats_with_cancel_pending(void) {
  pthread_t t;
  void *ret = NULL;
  if (pthread_create(&t, NULL, stats_with_cancel_pending_main, NULL) != 0) abort();
  pthread_join(t, &ret);
  _exit(stats_returned && ret == PTHREAD_CANCELED ? 0 : 1);
}

static void test_print_stats_with_cancel_pending_prints_and_returns(void **state) {
  (void)state;
  static outcome_t out;
  run_capturing(print_stats_with_cancel_pending, &out);
  expect(WIFEXITED(out.status) && WEXITSTATUS(out.status) == 0,
         "the stats call did not return normally (status %#x); stderr: \"%s\"", out.status, out.err);
  expect(strstr(out.err, "brisk: stats for pid") != NULL && strstr(out.err, "large cached") != NULL,
         "the report is missing or cut short; stderr: \"%s\"", out.err);
}

static int setup_shared(void **state) {
  (void)state;
  /* Start brisk here, so that whatever it says at start (a warning about an
   * unknown BRISK_ variable) goes to the harness, not into a child's pipe. */
  brisk_free(brisk_malloc(1));
  return abort_child_setup();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_double_free_of_small_block_aborts_naming_free_and_address),
      cmocka_unit_test(test_double_free_of_large_block_aborts_naming_free_and_address),
    cmocka_unit_test(test_double_free_from_two_other_threads_aborts),
      cmocka_unit_test(test_free_of_stack_address_aborts_with_invalid_pointer),
      cmocka_unit_test(test_free_of_glibc_small_block_aborts_with_invalid_pointer),
      cmocka_unit_test(test_free_of_glibc_large_block_aborts_with_invalid_pointer),
      cmocka_unit_test(test_free_of_address_0x1000_aborts_with_invalid_pointer),
      cmocka_unit_test(test_free_of_interior_pointer_of_small_block_aborts_with_invalid_pointer),
      cmocka_unit_test(test_free_of_interior_pointer_of_large_block_aborts_with_invalid_pointer),
      cmocka_unit_test(test_realloc_of_stack_address_aborts_with_invalid_pointer),
      cmocka_unit_test(test_realloc_of_address_0x1000_aborts_with_invalid_pointer),
      cmocka_unit_test(test_realloc_of_interior_pointer_aborts_with_invalid_pointer),
      cmocka_unit_test(test_free_sized_of_small_block_with_large_size_aborts),
      cmocka_unit_test(test_free_sized_of_large_block_with_small_size_aborts),
      cmocka_unit_test(test_free_sized_of_small_block_with_other_class_size_aborts),
      cmocka_unit_test(test_free_of_small_block_address_with_bit_48_set_aborts_with_invalid_pointer),
      cmocka_unit_test(test_free_of_large_block_address_with_bit_48_set_aborts_with_invalid_pointer),
      cmocka_unit_test(test_poisoned_free_list_link_aborts_in_malloc),
      cmocka_unit_test(test_overflow_into_free_neighbour_aborts_in_malloc),
      cmocka_unit_test(test_double_free_with_overwritten_hint_aborts),
      cmocka_unit_test(test_racing_frees_of_one_large_block_abort),
      cmocka_unit_test(test_double_free_with_cancel_pending_still_aborts),
      cmocka_unit_test(test_print_stats_with_cancel_pending_prints_and_returns),
  };
  return cmocka_run_group_tests(tests, setup_shared, NULL);
}
