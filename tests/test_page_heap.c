/* The page heap: splitting, coalescing, purging, and the sbrk -> mmap fallback. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include <pthread.h>

#include "internal.h"

static int setup(void **state) {
  (void)state;
  brisk_free(brisk_malloc(1));
  return 0;
}

static size_t resident_pages(void *p, size_t bytes) {
  size_t os = (size_t)sysconf(_SC_PAGESIZE), n = bytes / os, count = 0;
  unsigned char vec[4096];
  assert_true(n <= sizeof vec);
  assert_int_equal(mincore(p, bytes, vec), 0);
  for (size_t i = 0; i < n; i++) count += vec[i] & 1;
  return count;
}

static void test_alloc_splits_and_maps_every_page(void **state) {
  (void)state;
  brisk_span_t *s = brisk__heap_alloc(0, 5);
  assert_non_null(s);
  assert_int_equal(s->npages, 5);
  assert_int_equal(s->start % BRISK_PAGE_SIZE, 0);
  for (size_t i = 0; i < 5; i++)
    assert_ptr_equal(brisk__pagemap_get((void *)(s->start + i * BRISK_PAGE_SIZE + 100)), s);
  brisk__heap_free(s);
}

static void test_free_neighbours_coalesce_into_one_span(void **state) {
  (void)state;
  brisk_span_t *a = brisk__heap_alloc(0, 3), *b = brisk__heap_alloc(0, 3), *c = brisk__heap_alloc(0, 3);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  uintptr_t as = a->start, bs = b->start, cs = c->start;
  assert_int_equal(bs, as + 3 * BRISK_PAGE_SIZE);
  assert_int_equal(cs, bs + 3 * BRISK_PAGE_SIZE);
  brisk__heap_free(a);
  brisk__heap_free(c);
  brisk_span_t *left = brisk__pagemap_get((void *)as);
  assert_non_null(left);
  assert_int_equal(left->state, BRISK_SPAN_FREE);
  brisk__heap_free(b); /* joins both neighbours */
  brisk_span_t *all = brisk__pagemap_get((void *)as);
  assert_non_null(all);
  assert_int_equal(all->state, BRISK_SPAN_FREE);
  assert_int_equal(all->start, as);
  assert_true(all->npages >= 9);
  /* pages that became interior are no longer in the map */
  assert_null(brisk__pagemap_get((void *)bs));
  assert_null(brisk__pagemap_get((void *)cs));
  assert_ptr_equal(brisk__pagemap_get((void *)(all->start + (all->npages - 1) * BRISK_PAGE_SIZE)), all);
}

static void test_idle_free_pages_are_given_back(void **state) {
  (void)state;
  const size_t pages = 64, bytes = pages * BRISK_PAGE_SIZE;
  brisk_span_t *s = brisk__heap_alloc(0, pages);
  assert_non_null(s);
  void *p = (void *)s->start;
  memset(p, 0xab, bytes);
  assert_int_equal(resident_pages(p, bytes), bytes / (size_t)sysconf(_SC_PAGESIZE));
  uint64_t free0, ret0, sb;
  brisk__heap_stats(&free0, &ret0, &sb);
  brisk__heap_free(s);
  uint64_t now = brisk__os_now_ms();
  /* not idle long enough yet: nothing happens */
  brisk__heap_purge(now, 60000);
  assert_true(resident_pages(p, bytes) > 0);
  assert_true(brisk__heap_purge(now + 60000, 60000) >= bytes);
  assert_int_equal(resident_pages(p, bytes), 0);
  uint64_t free1, ret1;
  brisk__heap_stats(&free1, &ret1, &sb);
  assert_true(ret1 >= ret0 + bytes);
}

static void test_trim_returns_small_heap_memory(void **state) {
  (void)state;
  enum { N = 20000 };
  static void *blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = brisk_malloc(512);
    memset(blocks[i], 1, 512);
  }
  for (int i = 0; i < N; i++) brisk_free(blocks[i]);
  brisk_trim();
  brisk_stats_t st;
  brisk_get_stats(&st);
  assert_true(st.heap_free < 1024 * 1024);
  assert_true(st.returned >= (uint64_t)N * 512 / 2);
}

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
  fclose(f);
  return resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* A program frees a big working set and then makes no further call: the purge
 * thread still gives the memory back after the delay. */
static void test_idle_memory_goes_back_without_further_calls(void **state) {
  (void)state;
  enum { N = 200000, SIZE = 1000 };
  void **blocks = calloc(N, sizeof *blocks); /* glibc's: not part of the count */
  assert_non_null(blocks);
  for (int i = 0; i < N; i++) {
    blocks[i] = brisk_malloc(SIZE);
    memset(blocks[i], 7, SIZE);
  }
  size_t peak = rss_bytes();
  for (int i = 0; i < N; i++) brisk_free(blocks[i]);
  free(blocks);
  /* two purge delays (central lists, then heap pages) and a purger period */
  struct timespec ts = {3, 500 * 1000 * 1000};
  nanosleep(&ts, NULL);
  size_t after = rss_bytes();
  if (after + (size_t)N * SIZE * 3 / 4 > peak)
    fail_msg("RSS %zu MiB at peak, still %zu MiB after idling", peak >> 20, after >> 20);
}

/* Allocate (and keep) enough 1000-byte blocks that the heap must grow by at least
 * extra bytes beyond the free pages it already has, and check every block. Runs
 * in forked children: exits on failure. */
static void grow_heap(size_t extra, brisk_stats_t *before, brisk_stats_t *after) {
  brisk_get_stats(before);
  size_t n = (size_t)((before->heap_free + before->returned + extra) / 1000);
  void *list = NULL;
  for (size_t i = 0; i < n; i++) {
    unsigned char *b = brisk_malloc(1000);
    if (b == NULL) _exit(11);
    memset(b, (int)(i & 0xff), 1000);
    *(void **)b = list; /* chain the blocks through their first word */
    list = b;
  }
  for (size_t i = n; i-- > 0;) {
    unsigned char *b = list;
    if (b[999] != (i & 0xff)) _exit(12);
    list = *(void **)b;
  }
  brisk_get_stats(after);
}

/* Grow with the program break blocked by a mapping: brisk must carry on with
 * mmap'd regions. */
static int blocked_break(void) {
  size_t os = (size_t)sysconf(_SC_PAGESIZE);
  uintptr_t brk_now = (uintptr_t)sbrk(0);
  void *wall = (void *)((brk_now + os - 1) & ~(os - 1));
  if (mmap(wall, os, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != wall) return 10;
  brisk_stats_t before, after;
  grow_heap(30u << 20, &before, &after);
  if (after.sbrk_bytes != before.sbrk_bytes) return 13;
  if (after.mapped < before.mapped + (30u << 20)) return 14;
  return 0;
}

static void test_blocked_break_falls_back_to_mmap(void **state) {
  (void)state;
  assert_int_equal(run_in_child(blocked_break, "blocked_break"), 0);
}

/* BRISK_VERBOSE's warning about the failed sbrk is written under the heap lock:
 * a thread with a cancel pending must not unwind there holding it, or the next
 * heap growth hangs (the hardening issue's H2). */
static volatile int warned_and_returned;
static void *grow_with_cancel_pending(void *arg) {
  (void)arg;
  pthread_cancel(pthread_self());
  brisk_stats_t before, after;
  grow_heap(8u << 20, &before, &after); /* sbrk fails: the warning */
  warned_and_returned = 1;
  pthread_testcancel();
  return NULL;
}

static int verbose_warning_with_cancel_pending(void) {
  alarm(30); /* a hang below ends the child with SIGALRM */
  size_t os = (size_t)sysconf(_SC_PAGESIZE);
  uintptr_t brk_now = (uintptr_t)sbrk(0);
  void *wall = (void *)((brk_now + os - 1) & ~(os - 1));
  if (mmap(wall, os, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != wall) return 10;
  brisk__opt.verbose = 1;
  pthread_t t;
  void *ret = NULL;
  if (pthread_create(&t, NULL, grow_with_cancel_pending, NULL) != 0) return 11;
  pthread_join(t, &ret);
  if (!warned_and_returned || ret != PTHREAD_CANCELED) return 12;
  brisk_stats_t before, after;
  grow_heap(8u << 20, &before, &after); /* the heap lock must be free */
  return 0;
}

static void test_verbose_warning_in_thread_with_cancel_pending_leaves_heap_usable(void **state) {
  (void)state;
  assert_int_equal(run_in_child(verbose_warning_with_cancel_pending, "verbose_cancel"), 0);
}

static int sbrk_off(void) {
  brisk__opt.sbrk = false;
  brisk_stats_t before, after;
  grow_heap(20u << 20, &before, &after);
  if (after.sbrk_bytes != before.sbrk_bytes) return 1;
  return after.mapped >= before.mapped + (20u << 20) ? 0 : 2;
}

static void test_sbrk_option_off_uses_mmap_only(void **state) {
  (void)state;
  assert_int_equal(run_in_child(sbrk_off, "sbrk_off"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_alloc_splits_and_maps_every_page),
    cmocka_unit_test(test_free_neighbours_coalesce_into_one_span),
    cmocka_unit_test(test_idle_free_pages_are_given_back),
    cmocka_unit_test(test_trim_returns_small_heap_memory),
    cmocka_unit_test(test_idle_memory_goes_back_without_further_calls),
    cmocka_unit_test(test_blocked_break_falls_back_to_mmap),
    cmocka_unit_test(test_sbrk_option_off_uses_mmap_only),
    cmocka_unit_test(test_verbose_warning_in_thread_with_cancel_pending_leaves_heap_usable),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
