/* The libc allocation names when libbrisk.a is linked in (brisk_static): malloc,
 * free and the rest, the malloc.h extras (mallinfo2, malloc_trim, ...) and the glibc
 * aliases (__libc_malloc, ...) must all be brisk's, including the calls libc makes
 * itself (strdup). Built with -fno-builtin so every call really reaches the symbol.
 * cmocka runs on brisk here too. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_helpers.h"
#include "brisk.h"

/* C23 names that glibc 2.36 does not declare yet. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t alignment, size_t size);

/* glibc's internal aliases: some programs and libraries call them directly. */
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern int __posix_memalign(void **memptr, size_t alignment, size_t size);

static brisk_stats_t stats_now(void) {
  brisk_stats_t s;
  memset(&s, 0, sizeof s);
  brisk_get_stats(&s);
  return s;
}

/* What brisk counts as handed out, small and large together. */
static uint64_t handed_out(const brisk_stats_t *s) { return s->in_use + s->large_in_use; }

/* The block at p (of at least size bytes) shows up in brisk's statistics: a block
 * from another allocator would leave them unchanged. */
#define expect_counted_by_brisk(before, after, size, what)                           \
  expect(handed_out(&(after)) >= handed_out(&(before)) + (size),                      \
         "%s is not served by brisk: in_use+large_in_use %llu -> %llu", what,        \
         (unsigned long long)handed_out(&(before)), (unsigned long long)handed_out(&(after)))

#define expect_released_by_brisk(before, after, size, what)                          \
  expect(handed_out(&(after)) + (size) <= handed_out(&(before)),                      \
         "%s did not release the block to brisk: in_use+large_in_use %llu -> %llu", what, \
         (unsigned long long)handed_out(&(before)), (unsigned long long)handed_out(&(after)))

/* ------------------------------------------------------------------------------
   brisk really serves
------------------------------------------------------------------------------ */

static void test_malloc_and_free_are_served_by_brisk(void **state) {
  (void)state;
  brisk_stats_t s0 = stats_now();
  void *big = malloc(4 * MiB);
  assert_non_null(big);
  brisk_stats_t s1 = stats_now();
  expect_counted_by_brisk(s0, s1, 4 * MiB, "malloc(4 MiB)");
  expect(s1.mapped >= 4 * MiB, "mapped is %llu with a 4 MiB block live",
         (unsigned long long)s1.mapped);
  free(big);
  brisk_stats_t s2 = stats_now();
  expect_released_by_brisk(s1, s2, 4 * MiB, "free of a 4 MiB block");

  enum { N = 1000 };
  static void *p[N];
  s0 = stats_now();
  for (int i = 0; i < N; i++) {
    p[i] = malloc(1000);
    assert_non_null(p[i]);
  }
  s1 = stats_now();
  expect_counted_by_brisk(s0, s1, N * 1000, "malloc(1000)");
  for (int i = 0; i < N; i++) free(p[i]);
  s2 = stats_now();
  expect_released_by_brisk(s1, s2, N * 1000, "free of 1000-byte blocks");
}

static void test_libc_internal_allocations_are_served_by_brisk(void **state) {
  (void)state;
  /* strdup calls malloc from inside libc: that call must reach brisk too. */
  char *src = malloc(2 * MiB + 1);
  assert_non_null(src);
  memset(src, 'x', 2 * MiB);
  src[2 * MiB] = 0;
  brisk_stats_t s0 = stats_now();
  char *dup = strdup(src);
  assert_non_null(dup);
  brisk_stats_t s1 = stats_now();
  expect_counted_by_brisk(s0, s1, 2 * MiB, "strdup (libc's own malloc call)");
  assert_int_equal(brisk_usable_size(dup) >= 2 * MiB + 1, 1);
  free(dup);
  free(src);
}

static void test_free_and_brisk_free_release_each_others_blocks(void **state) {
  (void)state;
  const size_t sizes[] = {0, 24, 5000, 100 * KiB, 3 * MiB};
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    void *a = brisk_malloc(sizes[i]);
    void *b = malloc(sizes[i]);
    assert_non_null(a);
    assert_non_null(b);
    memset(a, 1, sizes[i]);
    memset(b, 2, sizes[i]);
    free(a);
    brisk_free(b);
  }
  void *r = brisk_malloc(100);
  assert_non_null(r);
  pattern_fill(r, 100, 9);
  void *grown = realloc(r, 100000);
  assert_non_null(grown);
  assert_true(pattern_check(grown, 100, 9) == SIZE_MAX);
  brisk_free(grown);
}

static void test_malloc_usable_size_is_brisk_usable_size(void **state) {
  (void)state;
  assert_int_equal(malloc_usable_size(NULL), 0);
  for (size_t size = 0; size < 300 * KiB; size = size * 3 / 2 + 1) {
    void *p = malloc(size);
    assert_non_null(p);
    size_t usable = malloc_usable_size(p);
    expect(usable >= size, "malloc_usable_size(malloc(%zu)) = %zu", size, usable);
    expect(usable == brisk_usable_size(p), "malloc_usable_size %zu != brisk_usable_size %zu",
           usable, brisk_usable_size(p));
    memset(p, 3, usable);
    free(p);
  }
}

/* ------------------------------------------------------------------------------
   malloc, calloc, realloc, reallocarray through the libc names
------------------------------------------------------------------------------ */

static void test_malloc_zero_returns_unique_non_null_pointers(void **state) {
  (void)state;
  enum { N = 64 };
  void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = malloc(0);
    expect(p[i] != NULL && is_aligned(p[i], 16), "malloc(0) #%d returned %p", i, p[i]);
    for (int j = 0; j < i; j++) expect(p[i] != p[j], "malloc(0) returned %p twice", p[i]);
  }
  for (int i = 0; i < N; i++) free(p[i]);
}

static void test_malloc_results_are_16_byte_aligned_and_usable(void **state) {
  (void)state;
  enum { RING = 13 };
  void *ring[RING] = {0};
  for (size_t size = 0; size <= 100000; size++) {
    unsigned char *p = malloc(size);
    expect(p != NULL && is_aligned(p, 16), "malloc(%zu) returned %p", size, (void *)p);
    size_t usable = malloc_usable_size(p);
    expect(usable >= size, "malloc(%zu): usable size %zu", size, usable);
    if (size) p[0] = p[size - 1] = 1;
    free(ring[size % RING]);
    ring[size % RING] = p;
  }
  for (int i = 0; i < RING; i++) free(ring[i]);
  const size_t big[] = {MiB + 1, 5 * MiB + 3, 40 * MiB};
  for (size_t i = 0; i < ARRAY_LEN(big); i++) {
    unsigned char *p = malloc(big[i]);
    expect(p != NULL && is_aligned(p, 16), "malloc(%zu) returned %p", big[i], (void *)p);
    memset(p, 4, big[i]);
    free(p);
  }
}

static void test_calloc_returns_zeroed_memory_even_for_reused_blocks(void **state) {
  (void)state;
  const size_t sizes[] = {1, 48, 1000, 4096, 40000, 64 * KiB + 1, 300 * KiB, 6 * MiB};
  enum { N = 16 };
  void *p[N];
  for (size_t s = 0; s < ARRAY_LEN(sizes); s++) {
    for (int i = 0; i < N; i++) {
      p[i] = malloc(sizes[s]);
      assert_non_null(p[i]);
      memset(p[i], 0xFF, malloc_usable_size(p[i]));
    }
    for (int i = 0; i < N; i++) free(p[i]);
    for (int i = 0; i < N; i++) {
      p[i] = calloc(1, sizes[s]);
      assert_non_null(p[i]);
      size_t bad = first_nonzero(p[i], sizes[s]);
      expect(bad == SIZE_MAX, "calloc(1, %zu): byte %zu is not zero", sizes[s], bad);
      memset(p[i], 0xFF, sizes[s]);
    }
    for (int i = 0; i < N; i++) free(p[i]);
  }
  void *z = calloc(0, 0);
  assert_non_null(z);
  free(z);
}

static void test_calloc_overflow_returns_enomem(void **state) {
  (void)state;
  const size_t pairs[][2] = {{SIZE_MAX, 2},
                             {SIZE_MAX / 2 + 1, 2},
                             {(size_t)1 << 32, (size_t)1 << 32},
                             {SIZE_MAX, SIZE_MAX}};
  for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
    errno = 0;
    void *p = calloc(opaque_size(pairs[i][0]), opaque_size(pairs[i][1]));
    expect(p == NULL && errno == ENOMEM, "calloc(%zu, %zu): %p, errno %d", pairs[i][0],
           pairs[i][1], p, errno);
  }
}

static void test_malloc_of_impossible_size_returns_enomem(void **state) {
  (void)state;
  const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 15, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX,
                          (size_t)1 << 47};
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    errno = 0;
    void *p = malloc(opaque_size(sizes[i]));
    expect(p == NULL && errno == ENOMEM, "malloc(%zu): %p, errno %d", sizes[i], p, errno);
  }
}

static void test_realloc_preserves_contents_across_small_and_large_sizes(void **state) {
  (void)state;
  const size_t sizes[] = {1, 17, 1000, 64 * KiB, 100 * KiB, MiB, 64 * MiB, 100 * KiB, 900, 3};
  unsigned char *p = realloc(NULL, sizes[0]);
  assert_non_null(p);
  pattern_fill(p, sizes[0], 0);
  for (size_t i = 1; i < ARRAY_LEN(sizes); i++) {
    unsigned char *q = realloc(p, sizes[i]);
    expect(q != NULL && is_aligned(q, 16), "realloc(%zu -> %zu) returned %p", sizes[i - 1],
           sizes[i], (void *)q);
    size_t keep = sizes[i - 1] < sizes[i] ? sizes[i - 1] : sizes[i];
    size_t bad = pattern_check(q, keep, i - 1);
    expect(bad == SIZE_MAX, "realloc(%zu -> %zu) lost the contents at offset %zu", sizes[i - 1],
           sizes[i], bad);
    pattern_fill(q, sizes[i], i);
    p = q;
  }
  free(p);
}

static void test_realloc_failure_returns_enomem_and_keeps_the_block(void **state) {
  (void)state;
  unsigned char *p = malloc(3000);
  assert_non_null(p);
  pattern_fill(p, 3000, 5);
  errno = 0;
  void *q = realloc(opaque_ptr(p), opaque_size(SIZE_MAX - 8));
  expect(q == NULL && errno == ENOMEM, "realloc(p, SIZE_MAX - 8): %p, errno %d", q, errno);
  errno = 0;
  q = realloc(opaque_ptr(p), opaque_size((size_t)PTRDIFF_MAX + 1));
  expect(q == NULL && errno == ENOMEM, "realloc(p, PTRDIFF_MAX + 1): %p, errno %d", q, errno);
  expect(pattern_check(p, 3000, 5) == SIZE_MAX, "a failed realloc changed the block");
  free(p);
}

/* realloc(p, 0) is glibc's: p is freed and NULL returned (see test_api.c). */
static void test_realloc_to_zero_frees_the_block_and_returns_null(void **state) {
  (void)state;
  void *p = malloc(6 * MiB);
  assert_non_null(p);
  brisk_stats_t s0 = stats_now();
  void *r = realloc(p, 0);
  expect(r == NULL, "realloc(p, 0) returned %p, want NULL", r);
  brisk_stats_t s1 = stats_now();
  expect_released_by_brisk(s0, s1, 6 * MiB, "realloc(p, 0)");
}

static void test_reallocarray_overflow_returns_enomem_and_keeps_the_block(void **state) {
  (void)state;
  unsigned char *p = reallocarray(NULL, 10, 10);
  assert_non_null(p);
  pattern_fill(p, 100, 6);
  errno = 0;
  void *q = reallocarray(opaque_ptr(p), opaque_size(SIZE_MAX / 4 + 1), 4);
  expect(q == NULL && errno == ENOMEM, "reallocarray overflow: %p, errno %d", q, errno);
  assert_true(pattern_check(p, 100, 6) == SIZE_MAX);
  unsigned char *grown = reallocarray(p, 100, 100);
  assert_non_null(grown);
  assert_true(pattern_check(grown, 100, 6) == SIZE_MAX);
  memset(grown, 0, 10000);
  free(grown);
}

/* ------------------------------------------------------------------------------
   Aligned allocation through the libc names
------------------------------------------------------------------------------ */

static void test_posix_memalign_honours_power_of_two_alignments_and_rejects_others(
    void **state) {
  (void)state;
  for (size_t align = sizeof(void *); align <= 256 * MiB; align *= 2) {
    void *p = NULL;
    int rc = posix_memalign(&p, align, 100);
    expect(rc == 0 && p != NULL && is_aligned(p, align), "posix_memalign(%zu, 100): %d, %p",
           align, rc, p);
    memset(p, 5, 100);
    free(p);
  }
  const size_t bad[] = {0, 3, 24, sizeof(void *) / 2};
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    void *sentinel = (void *)0xfeedface;
    void *p = sentinel;
    int rc = posix_memalign(&p, bad[i], 100);
    expect(rc == EINVAL && p == sentinel, "posix_memalign(%zu, 100): %d, *memptr %p", bad[i], rc,
           p);
  }
}

static void test_aligned_alloc_memalign_valloc_pvalloc_are_aligned(void **state) {
  (void)state;
  size_t page = os_page();
  for (size_t align = 16; align <= 2 * MiB; align *= 4) {
    void *a = aligned_alloc(align, 3 * align);
    void *m = memalign(align, 1000);
    expect(a != NULL && is_aligned(a, align), "aligned_alloc(%zu) returned %p", align, a);
    expect(m != NULL && is_aligned(m, align), "memalign(%zu) returned %p", align, m);
    memset(a, 6, 3 * align);
    memset(m, 6, 1000);
    free(a);
    free(m);
  }
  errno = 0;
  void *bad = aligned_alloc(opaque_size(24), 48);
  expect(bad == NULL && errno == EINVAL, "aligned_alloc(24, 48): %p, errno %d", bad, errno);

  void *v = valloc(100);
  expect(v != NULL && is_aligned(v, page), "valloc(100) returned %p", v);
  memset(v, 7, 100);
  free(v);
  void *pv = pvalloc(page + 1);
  expect(pv != NULL && is_aligned(pv, page), "pvalloc(page + 1) returned %p", pv);
  expect(malloc_usable_size(pv) >= 2 * page, "pvalloc(page + 1): usable %zu, want >= %zu",
         malloc_usable_size(pv), 2 * page);
  memset(pv, 7, 2 * page);
  free(pv);
}

static void test_free_sized_and_free_aligned_sized_release_blocks(void **state) {
  (void)state;
  free(NULL);
  free_sized(NULL, 10);
  free_aligned_sized(NULL, 64, 10);
  brisk_stats_t s0 = stats_now();
  for (size_t size = 1; size <= 2 * MiB; size = size * 2 + 3) {
    void *p = malloc(size);
    assert_non_null(p);
    memset(p, 8, size);
    free_sized(p, size);
    void *q = aligned_alloc(256, size);
    assert_non_null(q);
    memset(q, 8, size);
    free_aligned_sized(q, 256, size);
  }
  brisk_stats_t s1 = stats_now();
  expect(handed_out(&s1) <= handed_out(&s0) + 64 * KiB,
         "blocks freed with free_sized still count: %llu -> %llu",
         (unsigned long long)handed_out(&s0), (unsigned long long)handed_out(&s1));
}

/* ------------------------------------------------------------------------------
   malloc.h extras
------------------------------------------------------------------------------ */

static void test_mallinfo2_reports_arena_and_uordblks_that_grow(void **state) {
  (void)state;
  struct mallinfo2 m0 = mallinfo2();
  /* Ask for more small blocks than brisk holds in all, so that it must map more. */
  brisk_stats_t s = stats_now();
  size_t n = (size_t)(s.mapped + 16 * MiB) / KiB;
  if (n > 256 * 1024) n = 256 * 1024;
  void **p = malloc(n * sizeof *p);
  assert_non_null(p);
  for (size_t i = 0; i < n; i++) {
    p[i] = malloc(KiB);
    assert_non_null(p[i]);
  }
  struct mallinfo2 m1 = mallinfo2();
  expect(m1.arena > 0 && m1.uordblks > 0, "mallinfo2: arena %zu, uordblks %zu", m1.arena,
         m1.uordblks);
  expect(m1.uordblks >= m0.uordblks + n * KiB, "mallinfo2 uordblks %zu -> %zu after %zu KiB",
         m0.uordblks, m1.uordblks, n);
  expect(m1.arena > m0.arena, "mallinfo2 arena %zu -> %zu after %zu KiB", m0.arena, m1.arena, n);
  for (size_t i = 0; i < n; i++) free(p[i]);
  free(p);
  struct mallinfo2 m2 = mallinfo2();
  expect(m2.uordblks + n * KiB <= m1.uordblks, "mallinfo2 uordblks %zu -> %zu after free",
         m1.uordblks, m2.uordblks);
  /* hblks counts the large (mmap'd) blocks in use */
  void *big = malloc(4 * MiB);
  assert_non_null(big);
  struct mallinfo2 m3 = mallinfo2();
  expect(m3.hblks == m2.hblks + 1 && m3.uordblks >= m2.uordblks + 4 * MiB,
         "mallinfo2 hblks %zu -> %zu, uordblks %zu -> %zu after a 4 MiB block", m2.hblks, m3.hblks,
         m2.uordblks, m3.uordblks);
  free(big);
  expect(mallinfo2().hblks == m2.hblks, "mallinfo2 hblks does not drop after free");
}

static void test_mallinfo_reports_arena_and_uordblks_that_grow(void **state) {
  (void)state;
  enum { N = 8192 }; /* 8 MiB in 1 KiB blocks */
  static void *p[N];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo m0 = mallinfo();
  for (int i = 0; i < N; i++) {
    p[i] = malloc(KiB);
    assert_non_null(p[i]);
  }
  struct mallinfo m1 = mallinfo();
#pragma GCC diagnostic pop
  expect(m1.arena != 0 && m1.uordblks != 0, "mallinfo: arena %d, uordblks %d", m1.arena,
         m1.uordblks);
  expect((unsigned)m1.uordblks >= (unsigned)m0.uordblks + N * KiB,
         "mallinfo uordblks %d -> %d after 8 MiB in 1 KiB blocks", m0.uordblks, m1.uordblks);
  for (int i = 0; i < N; i++) free(p[i]);
}

static void test_malloc_trim_returns_0_or_1_and_keeps_live_blocks(void **state) {
  (void)state;
  enum { N = 2000 };
  static void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = malloc((size_t)(i % 50) * 200 + (i % 500 == 0 ? MiB : 0));
    assert_non_null(p[i]);
    pattern_fill(p[i], malloc_usable_size(p[i]), (uint64_t)i);
  }
  for (int i = 0; i < N; i += 2) free(p[i]);
  int r = malloc_trim(0);
  expect(r == 0 || r == 1, "malloc_trim(0) returned %d", r);
  for (int i = 1; i < N; i += 2) {
    size_t bad = pattern_check(p[i], malloc_usable_size(p[i]), (uint64_t)i);
    expect(bad == SIZE_MAX, "block %d changed at %zu by malloc_trim", i, bad);
    free(p[i]);
  }
  r = malloc_trim(0);
  expect(r == 0 || r == 1, "malloc_trim(0) returned %d", r);
}

static void test_malloc_stats_prints_without_crashing(void **state) {
  (void)state;
  void *p = malloc(100);
  assert_non_null(p);
  malloc_stats();
  free(p);
}

static void test_mallopt_returns_0_or_1(void **state) {
  (void)state;
  const int params[][2] = {{M_TRIM_THRESHOLD, 128 * 1024}, {M_MMAP_THRESHOLD, 256 * 1024},
                           {M_ARENA_MAX, 2},              {M_TOP_PAD, 0},
                           {M_MXFAST, 64},                {12345, 1}};
  for (size_t i = 0; i < ARRAY_LEN(params); i++) {
    int r = mallopt(params[i][0], params[i][1]);
    expect(r == 0 || r == 1, "mallopt(%d, %d) returned %d", params[i][0], params[i][1], r);
  }
  void *p = malloc(1000);
  assert_non_null(p);
  free(p);
}

/* ------------------------------------------------------------------------------
   glibc aliases
------------------------------------------------------------------------------ */

static void test_glibc_aliases_are_served_by_brisk(void **state) {
  (void)state;
  brisk_stats_t s0 = stats_now();
  unsigned char *m = __libc_malloc(3 * MiB);
  assert_non_null(m);
  brisk_stats_t s1 = stats_now();
  expect_counted_by_brisk(s0, s1, 3 * MiB, "__libc_malloc");
  pattern_fill(m, 3 * MiB, 11);
  m = __libc_realloc(m, 5 * MiB);
  assert_non_null(m);
  expect(pattern_check(m, 3 * MiB, 11) == SIZE_MAX, "__libc_realloc lost the contents");
  s1 = stats_now();
  __libc_free(m);
  brisk_stats_t s2 = stats_now();
  expect_released_by_brisk(s1, s2, 5 * MiB, "__libc_free");

  s0 = stats_now();
  unsigned char *c = __libc_calloc(2, 2 * MiB);
  assert_non_null(c);
  s1 = stats_now();
  expect_counted_by_brisk(s0, s1, 4 * MiB, "__libc_calloc");
  expect(first_nonzero(c, 4 * MiB) == SIZE_MAX, "__libc_calloc did not zero");
  free(c); /* the aliases and the plain names are one allocator */

  s0 = stats_now();
  void *a = __libc_memalign(4096, 2 * MiB);
  expect(a != NULL && is_aligned(a, 4096), "__libc_memalign(4096) returned %p", a);
  s1 = stats_now();
  expect_counted_by_brisk(s0, s1, 2 * MiB, "__libc_memalign");
  free(a);

  void *pm = NULL;
  s0 = stats_now();
  int rc = __posix_memalign(&pm, 64 * KiB, 2 * MiB);
  expect(rc == 0 && pm != NULL && is_aligned(pm, 64 * KiB), "__posix_memalign: %d, %p", rc, pm);
  s1 = stats_now();
  expect_counted_by_brisk(s0, s1, 2 * MiB, "__posix_memalign");
  __libc_free(pm);
  void *sentinel = (void *)0x1234;
  pm = sentinel;
  rc = __posix_memalign(&pm, 24, 64);
  expect(rc == EINVAL && pm == sentinel, "__posix_memalign(24): %d, %p", rc, pm);

  void *small = __libc_malloc(40);
  assert_non_null(small);
  expect(brisk_usable_size(small) >= 40, "__libc_malloc(40): brisk_usable_size %zu",
         brisk_usable_size(small));
  brisk_free(small);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      /* first: it wants brisk to hold little memory yet */
      cmocka_unit_test(test_mallinfo2_reports_arena_and_uordblks_that_grow),
      cmocka_unit_test(test_mallinfo_reports_arena_and_uordblks_that_grow),
      cmocka_unit_test(test_malloc_and_free_are_served_by_brisk),
      cmocka_unit_test(test_libc_internal_allocations_are_served_by_brisk),
      cmocka_unit_test(test_free_and_brisk_free_release_each_others_blocks),
      cmocka_unit_test(test_malloc_usable_size_is_brisk_usable_size),
      cmocka_unit_test(test_malloc_zero_returns_unique_non_null_pointers),
      cmocka_unit_test(test_malloc_results_are_16_byte_aligned_and_usable),
      cmocka_unit_test(test_calloc_returns_zeroed_memory_even_for_reused_blocks),
      cmocka_unit_test(test_calloc_overflow_returns_enomem),
      cmocka_unit_test(test_malloc_of_impossible_size_returns_enomem),
      cmocka_unit_test(test_realloc_preserves_contents_across_small_and_large_sizes),
      cmocka_unit_test(test_realloc_failure_returns_enomem_and_keeps_the_block),
      cmocka_unit_test(test_realloc_to_zero_frees_the_block_and_returns_null),
      cmocka_unit_test(test_reallocarray_overflow_returns_enomem_and_keeps_the_block),
      cmocka_unit_test(test_posix_memalign_honours_power_of_two_alignments_and_rejects_others),
      cmocka_unit_test(test_aligned_alloc_memalign_valloc_pvalloc_are_aligned),
      cmocka_unit_test(test_free_sized_and_free_aligned_sized_release_blocks),
      cmocka_unit_test(test_malloc_trim_returns_0_or_1_and_keeps_live_blocks),
      cmocka_unit_test(test_malloc_stats_prints_without_crashing),
      cmocka_unit_test(test_mallopt_returns_0_or_1),
      cmocka_unit_test(test_glibc_aliases_are_served_by_brisk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
