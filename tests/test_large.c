/* Large blocks: reuse without system calls, mremap growth, shrinking in place,
 * idle unmapping, alignment. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "child.h"
#include "internal.h"

static bool is_mapped(void *p) {
  unsigned char v;
  size_t os = (size_t)sysconf(_SC_PAGESIZE);
  return mincore((void *)((uintptr_t)p & ~(os - 1)), os, &v) == 0;
}

static void test_freed_block_is_reused_without_mapping_more(void **state) {
  (void)state;
  void *p = brisk_malloc(10 << 20);
  assert_non_null(p);
  memset(p, 1, 10 << 20);
  brisk_free(p);
  brisk_stats_t a, b;
  brisk_get_stats(&a);
  assert_true(a.large_cached >= 10u << 20);
  void *q = brisk_malloc(10 << 20);
  brisk_get_stats(&b);
  assert_ptr_equal(q, p);
  assert_int_equal(b.mapped, a.mapped);
  brisk_free(q);
}

/* A request takes a cached block at most a quarter larger than itself, from
 * whichever size bin holds it, and leaves blocks that would waste more. */
static void test_cache_serves_close_sizes_only(void **state) {
  (void)state;
  brisk__large_purge(UINT64_MAX, 0); /* start from an empty cache */
  size_t kib = 1024;
  void *a = brisk_malloc(100 * kib), *b = brisk_malloc(200 * kib), *c = brisk_malloc(400 * kib);
  brisk_free(a);
  brisk_free(b);
  brisk_free(c);
  void *close_to_b = brisk_malloc(190 * kib);
  assert_ptr_equal(close_to_b, b);
  void *far_from_c = brisk_malloc(300 * kib); /* c would waste a third */
  assert_true(far_from_c != c);
  void *exact_a = brisk_malloc(100 * kib);
  assert_ptr_equal(exact_a, a);
  brisk_stats_t st;
  brisk_get_stats(&st);
  assert_true(st.large_cached >= 400 * kib); /* c is still there */
  brisk_free(close_to_b);
  brisk_free(far_from_c);
  brisk_free(exact_a);
}

static void test_realloc_grows_with_mremap_keeping_contents(void **state) {
  (void)state;
  size_t n = 1 << 20;
  unsigned char *p = brisk_malloc(n);
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 7);
  unsigned char *q = brisk_realloc(p, 64 << 20);
  assert_non_null(q);
  for (size_t i = 0; i < n; i++)
    if (q[i] != (unsigned char)(i * 7)) fail_msg("byte %zu lost", i);
  memset(q + n, 3, (64u << 20) - n);
  assert_true(brisk_usable_size(q) >= 64u << 20);
  brisk_span_t *s = brisk__pagemap_get(q);
  assert_non_null(s);
  assert_int_equal(s->start, (uintptr_t)q);
  brisk_free(q);
}

static void test_realloc_shrinks_in_place(void **state) {
  (void)state;
  char *p = brisk_malloc(8 << 20);
  memset(p, 9, 8 << 20);
  char *q = brisk_realloc(p, 300 << 10);
  assert_ptr_equal(q, p);
  assert_true(brisk_usable_size(q) >= 300u << 10 && brisk_usable_size(q) < 400u << 10);
  assert_false(is_mapped(p + (1 << 20))); /* the tail went back */
  assert_int_equal(q[(300 << 10) - 1], 9);
  char *r = brisk_realloc(q, 100); /* large stays large, in place */
  assert_ptr_equal(r, p);
  brisk_free(r);
}

static void test_idle_cached_blocks_are_unmapped(void **state) {
  (void)state;
  void *p = brisk_malloc(3 << 20);
  brisk_free(p);
  assert_true(is_mapped(p));
  uint64_t now = brisk__os_now_ms();
  brisk__large_purge(now, 60000); /* too recent */
  assert_true(is_mapped(p));
  brisk__large_purge(now + 60000, 60000);
  assert_false(is_mapped(p));
  brisk_stats_t st;
  brisk_get_stats(&st);
  assert_int_equal(st.large_cached, 0);
}

static void test_block_above_cache_budget_is_unmapped_at_once(void **state) {
  (void)state;
  size_t n = brisk__opt.large_cache_bytes + (1 << 20);
  void *p = brisk_malloc(n);
  assert_non_null(p);
  brisk_free(p);
  assert_false(is_mapped(p));
}

static void test_huge_alignments(void **state) {
  (void)state;
  for (size_t align = 1 << 14; align <= ((size_t)1 << 30); align <<= 4) {
    void *p = NULL;
    assert_int_equal(brisk_posix_memalign(&p, align, 100), 0);
    assert_int_equal((uintptr_t)p % align, 0);
    memset(p, 1, 100);
    brisk_free(p);
  }
}

static void test_impossible_sizes_fail_with_enomem(void **state) {
  (void)state;
  volatile size_t too_big = (size_t)PTRDIFF_MAX + 1, huge = SIZE_MAX - 4096;
  errno = 0;
  assert_null(brisk_malloc(too_big));
  assert_int_equal(errno, ENOMEM);
  void *p = brisk_malloc(1 << 20);
  errno = 0;
  assert_null(brisk_realloc(p, huge));
  assert_int_equal(errno, ENOMEM);
  brisk_free(p); /* still intact */
}

static size_t vm_size_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f == NULL || fscanf(f, "%lu", &pages) != 1) _exit(20);
  fclose(f);
  return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Near an address-space limit, cached large blocks are unmapped before brisk
 * answers ENOMEM. */
static int cache_gives_way(void) {
  size_t mib = (size_t)1 << 20;
  struct rlimit rl = {vm_size_bytes() + 48 * mib, RLIM_INFINITY};
  if (setrlimit(RLIMIT_AS, &rl) != 0) return 21;
  void *p = brisk_malloc(30 * mib);
  if (p == NULL) return 22;
  brisk_free(p); /* kept in the cache */
  void *q = brisk_malloc(40 * mib);
  if (q == NULL) return 23;
  memset(q, 1, 40 * mib);
  brisk_free(q);
  return 0;
}

static void test_cache_gives_way_before_enomem(void **state) {
  (void)state;
  assert_int_equal(run_in_child(cache_gives_way, "cache_gives_way"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_freed_block_is_reused_without_mapping_more),
    cmocka_unit_test(test_cache_serves_close_sizes_only),
    cmocka_unit_test(test_realloc_grows_with_mremap_keeping_contents),
    cmocka_unit_test(test_realloc_shrinks_in_place),
    cmocka_unit_test(test_idle_cached_blocks_are_unmapped),
    cmocka_unit_test(test_block_above_cache_budget_is_unmapped_at_once),
    cmocka_unit_test(test_huge_alignments),
    cmocka_unit_test(test_impossible_sizes_fail_with_enomem),
    cmocka_unit_test(test_cache_gives_way_before_enomem),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
