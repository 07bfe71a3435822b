/* Conformance of the prefixed API (brisk_api: brisk_* only, malloc stays glibc's,
 * so the cmocka harness never runs on the allocator under test).
 * Each test pins one documented behaviour: alignment, zeroing, the POSIX error
 * answers, realloc semantics, statistics, and ENOMEM under an address-space limit
 * (in a forked child, so the limit cannot hurt the other tests). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
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

#include "child.h"

#include "api_helpers.h"
#include "brisk.h"

static brisk_stats_t stats_now(void) {
  brisk_stats_t s;
  memset(&s, 0, sizeof s);
  brisk_get_stats(&s);
  return s;
}

/* ------------------------------------------------------------------------------
   malloc: zero size, alignment, usable size
------------------------------------------------------------------------------ */

static void test_malloc_zero_returns_unique_non_null_pointers(void **state) {
  (void)state;
  enum { N = 100 };
  void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = brisk_malloc(0);
    expect(p[i] != NULL, "malloc(0) #%d returned NULL", i);
    expect(is_aligned(p[i], 16), "malloc(0) returned %p, not 16-byte aligned", p[i]);
  }
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j++)
      expect(p[i] != p[j], "malloc(0) returned %p twice (#%d and #%d)", p[i], i, j);
  for (int i = 0; i < N; i++) brisk_free(p[i]);
}

static void test_every_size_up_to_100000_is_16_byte_aligned_and_usable(void **state) {
  (void)state;
  /* A ring of live blocks, so that consecutive sizes do not just reuse one block. */
  enum { RING = 17 };
  void *ring[RING] = {0};
  for (size_t size = 0; size <= 100000; size++) {
    unsigned char *p = brisk_malloc(size);
    expect(p != NULL, "malloc(%zu) returned NULL", size);
    expect(is_aligned(p, 16), "malloc(%zu) returned %p, not 16-byte aligned", size, (void *)p);
    size_t usable = brisk_usable_size(p);
    expect(usable >= size, "usable_size %zu < request %zu", usable, size);
    if (size) p[0] = 1;
    if (usable) p[usable - 1] = 2;
    brisk_free(ring[size % RING]);
    ring[size % RING] = p;
  }
  for (int i = 0; i < RING; i++) brisk_free(ring[i]);
}

static void test_multi_mib_sizes_are_16_byte_aligned_and_usable(void **state) {
  (void)state;
  const size_t sizes[] = {MiB - 1, MiB, MiB + 1, 2 * MiB - 16, 3 * MiB + 5, 8 * MiB,
                          33 * MiB + 17, 100 * MiB + 3};
  size_t page = os_page();
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    size_t size = sizes[i];
    unsigned char *p = brisk_malloc(size);
    expect(p != NULL, "malloc(%zu) returned NULL", size);
    expect(is_aligned(p, 16), "malloc(%zu) returned %p, not 16-byte aligned", size, (void *)p);
    size_t usable = brisk_usable_size(p);
    expect(usable >= size, "malloc(%zu): usable_size %zu too small", size, usable);
    for (size_t off = 0; off < usable; off += page) p[off] = (unsigned char)off;
    p[usable - 1] = 0x7f;
    brisk_free(p);
  }
}

static void test_usable_size_of_null_is_zero(void **state) {
  (void)state;
  assert_int_equal(brisk_usable_size(NULL), 0);
}

/* Writing every usable byte of a block must not touch any other live block. */
static void test_usable_bytes_of_live_blocks_stay_intact(void **state) {
  (void)state;
  enum { N = 1200 };
  static unsigned char *p[N];
  static size_t usable[N];
  for (size_t i = 0; i < N; i++) {
    size_t size = i < 1000 ? (i * 37) % 4100 : (i - 999) * 1111;
    p[i] = brisk_malloc(size);
    expect(p[i] != NULL, "malloc(%zu) returned NULL", size);
    usable[i] = brisk_usable_size(p[i]);
    expect(usable[i] >= size, "malloc(%zu): usable_size %zu too small", size, usable[i]);
    pattern_fill(p[i], usable[i], i);
  }
  for (size_t i = 0; i < N; i++) {
    size_t bad = pattern_check(p[i], usable[i], i);
    expect(bad == SIZE_MAX, "block %zu (%p, %zu usable bytes) overwritten at offset %zu", i,
           (void *)p[i], usable[i], bad);
  }
  for (size_t i = 0; i < N; i++) brisk_free(p[i]);
}

/* ------------------------------------------------------------------------------
   calloc
------------------------------------------------------------------------------ */

static void test_calloc_returns_zeroed_memory(void **state) {
  (void)state;
  const size_t pairs[][2] = {{0, 0},    {0, 16},        {16, 0},      {1, 1},
                             {3, 333},  {1, 4096},      {1000, 65},   {1, 64 * KiB},
                             {1, 64 * KiB + 1}, {1, MiB}, {7, 3 * MiB + 3}, {1, 40 * MiB}};
  for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
    size_t n = pairs[i][0], size = pairs[i][1];
    unsigned char *p = brisk_calloc(n, size);
    expect(p != NULL, "calloc(%zu, %zu) returned NULL", n, size);
    expect(is_aligned(p, 16), "calloc(%zu, %zu) returned %p, not 16-byte aligned", n, size,
           (void *)p);
    size_t bad = first_nonzero(p, n * size);
    expect(bad == SIZE_MAX, "calloc(%zu, %zu): byte %zu is not zero", n, size, bad);
    brisk_free(p);
  }
}

static void test_calloc_zeroes_a_reused_dirty_block(void **state) {
  (void)state;
  const size_t sizes[] = {1,    16,   24,   100,       128,      1000,     4096,
                          5000, 32768, 64 * KiB, 64 * KiB + 1, 200 * KiB, 2 * MiB};
  enum { N = 64 };
  void *p[N];
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    size_t size = sizes[s];
    /* Dirty N blocks, free them (they wait in the caches), then calloc N. */
    for (int i = 0; i < N; i++) {
      p[i] = brisk_malloc(size);
      expect(p[i] != NULL, "malloc(%zu) returned NULL", size);
      memset(p[i], 0xA5, brisk_usable_size(p[i]));
    }
    for (int i = N - 1; i >= 0; i--) brisk_free(p[i]);
    /* A little less than the dirty size, so that the same blocks come back with a
     * tail past the request: zero up to the usable size, as glibc does. */
    size_t ask = size - size / 16;
    for (int i = 0; i < N; i++) {
      p[i] = brisk_calloc(1, ask);
      expect(p[i] != NULL, "calloc(1, %zu) returned NULL", ask);
      size_t usable = brisk_usable_size(p[i]);
      size_t bad = first_nonzero(p[i], usable);
      expect(bad == SIZE_MAX, "calloc(1, %zu) after a dirty free of %zu: byte %zu of %zu usable is not zero (%p)",
             ask, size, bad, usable, p[i]);
      memset(p[i], 0x5A, usable);
    }
    for (int i = 0; i < N; i++) brisk_free(p[i]);
  }
}

/* Large blocks are cached and remapped; a recycled span is dirty, not fresh. */
static void test_calloc_zeroes_large_blocks_after_free_and_realloc_cycles(void **state) {
  (void)state;
  for (int round = 0; round < 6; round++) {
    size_t size = 2 * MiB + (size_t)round * (MiB / 3);
    unsigned char *p = brisk_malloc(size);
    assert_non_null(p);
    memset(p, 0xEE, brisk_usable_size(p));
    p = brisk_realloc(p, 9 * MiB);
    assert_non_null(p);
    memset(p, 0xDD, brisk_usable_size(p));
    p = brisk_realloc(p, 3 * MiB / 2);
    assert_non_null(p);
    memset(p, 0xCC, brisk_usable_size(p));
    brisk_free(p);

    unsigned char *q = brisk_calloc(1, 9 * MiB);
    assert_non_null(q);
    size_t bad = first_nonzero(q, 9 * MiB);
    expect(bad == SIZE_MAX, "round %d: calloc(1, 9 MiB) byte %zu is not zero", round, bad);
    memset(q, 0xBB, 9 * MiB);
    brisk_free(q);

    unsigned char *r = brisk_calloc(3, size);
    assert_non_null(r);
    bad = first_nonzero(r, 3 * size);
    expect(bad == SIZE_MAX, "round %d: calloc(3, %zu) byte %zu is not zero", round, size, bad);
    memset(r, 0xAA, 3 * size);
    brisk_free(r);
  }
}

static void test_calloc_overflow_returns_enomem(void **state) {
  (void)state;
  const size_t pairs[][2] = {{SIZE_MAX, 2},
                             {2, SIZE_MAX},
                             {SIZE_MAX / 2 + 1, 2},
                             {(size_t)1 << 32, (size_t)1 << 32},
                             {SIZE_MAX, SIZE_MAX},
                             {SIZE_MAX / 16 + 1, 16},
                             {(size_t)1 << 33, (size_t)1 << 31}};
  for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
    errno = 0;
    void *p = brisk_calloc(opaque_size(pairs[i][0]), opaque_size(pairs[i][1]));
    expect(p == NULL, "calloc(%zu, %zu) overflows but returned %p", pairs[i][0], pairs[i][1], p);
    expect(errno == ENOMEM, "calloc(%zu, %zu): errno %d, want ENOMEM", pairs[i][0], pairs[i][1],
           errno);
  }
}

/* ------------------------------------------------------------------------------
   Sizes no allocator can satisfy, including those whose rounding would wrap
------------------------------------------------------------------------------ */

static const size_t impossible_sizes[] = {
    SIZE_MAX,           SIZE_MAX - 1,         SIZE_MAX - 15,
    SIZE_MAX - 4096,    SIZE_MAX - 65536,     SIZE_MAX - GiB,
    (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX, (size_t)1 << 48,
    (size_t)1 << 47,
};
#define N_IMPOSSIBLE (sizeof impossible_sizes / sizeof *impossible_sizes)

static void test_malloc_of_impossible_size_returns_enomem(void **state) {
  (void)state;
  for (size_t i = 0; i < N_IMPOSSIBLE; i++) {
    errno = 0;
    void *p = brisk_malloc(opaque_size(impossible_sizes[i]));
    expect(p == NULL, "malloc(%zu) returned %p", impossible_sizes[i], p);
    expect(errno == ENOMEM, "malloc(%zu): errno %d, want ENOMEM", impossible_sizes[i], errno);
  }
}

static void test_calloc_of_impossible_size_returns_enomem(void **state) {
  (void)state;
  for (size_t i = 0; i < N_IMPOSSIBLE; i++) {
    errno = 0;
    void *p = brisk_calloc(1, opaque_size(impossible_sizes[i]));
    expect(p == NULL, "calloc(1, %zu) returned %p", impossible_sizes[i], p);
    expect(errno == ENOMEM, "calloc(1, %zu): errno %d, want ENOMEM", impossible_sizes[i], errno);
  }
}

static void test_aligned_allocation_of_impossible_size_returns_enomem(void **state) {
  (void)state;
  for (size_t i = 0; i < N_IMPOSSIBLE; i++) {
    size_t size = opaque_size(impossible_sizes[i]);
    errno = 0;
    void *p = brisk_aligned_alloc(64, size);
    expect(p == NULL && errno == ENOMEM, "aligned_alloc(64, %zu): %p, errno %d", size, p, errno);
    errno = 0;
    p = brisk_memalign(4096, size);
    expect(p == NULL && errno == ENOMEM, "memalign(4096, %zu): %p, errno %d", size, p, errno);
    errno = 0;
    p = brisk_valloc(size);
    expect(p == NULL && errno == ENOMEM, "valloc(%zu): %p, errno %d", size, p, errno);
    errno = 0;
    p = brisk_pvalloc(size);
    expect(p == NULL && errno == ENOMEM, "pvalloc(%zu): %p, errno %d", size, p, errno);
    /* glibc leaves errno at ENOMEM too, and its tst-malloc-thread-fail checks it. */
    void *q = (void *)0x1234;
    errno = 0;
    int rc = brisk_posix_memalign(&q, 2 * MiB, size);
    expect(rc == ENOMEM && errno == ENOMEM, "posix_memalign(2 MiB, %zu) returned %d, errno %d, want ENOMEM",
           size, rc, errno);
    expect(q == (void *)0x1234, "posix_memalign(2 MiB, %zu) wrote %p on failure", size, q);
  }
  /* An alignment no address space has room for. */
  void *q = NULL;
  errno = 0;
  int rc = brisk_posix_memalign(&q, opaque_size((size_t)1 << 62), 16);
  expect(rc == ENOMEM && errno == ENOMEM, "posix_memalign(2^62, 16) returned %d, errno %d, want ENOMEM", rc,
         errno);
  errno = 0;
  void *p = brisk_aligned_alloc(opaque_size((size_t)1 << 62), 16);
  expect(p == NULL && errno == ENOMEM, "aligned_alloc(2^62, 16): %p, errno %d", p, errno);
}

/* ------------------------------------------------------------------------------
   realloc
------------------------------------------------------------------------------ */

/* Walk one block through sizes, checking the preserved prefix at every step. */
static void realloc_walk(const size_t *sizes, size_t n, uint64_t seed) {
  unsigned char *p = brisk_malloc(sizes[0]);
  expect(p != NULL, "malloc(%zu) returned NULL", sizes[0]);
  pattern_fill(p, sizes[0], seed);
  for (size_t i = 1; i < n; i++) {
    size_t old = sizes[i - 1], size = sizes[i];
    unsigned char *q = brisk_realloc(p, size);
    expect(q != NULL, "realloc(%zu -> %zu) returned NULL", old, size);
    expect(is_aligned(q, 16), "realloc(%zu -> %zu) returned %p, not 16-byte aligned", old, size,
           (void *)q);
    size_t usable = brisk_usable_size(q);
    expect(usable >= size, "realloc(%zu -> %zu): usable_size %zu", old, size, usable);
    size_t keep = old < size ? old : size;
    size_t bad = pattern_check(q, keep, seed + i - 1);
    expect(bad == SIZE_MAX, "realloc(%zu -> %zu) (%p -> %p) lost the contents at offset %zu",
           old, size, (void *)p, (void *)q, bad);
    pattern_fill(q, size, seed + i);
    p = q;
  }
  brisk_free(p);
}

static void test_realloc_preserves_contents_small_to_small(void **state) {
  (void)state;
  const size_t sizes[] = {1,   2,    15,   16,    17,    100,   1000,  5000, 30000,
                          65536, 40000, 4097, 4096, 200, 33, 8, 1, 24, 2};
  realloc_walk(sizes, sizeof sizes / sizeof *sizes, 1);
}

static void test_realloc_preserves_contents_small_to_large_and_back(void **state) {
  (void)state;
  const size_t sizes[] = {100, 100 * KiB, 3 * MiB, 1000, 10, 64 * KiB + 1, 64 * KiB, 5 * MiB,
                          48};
  realloc_walk(sizes, sizeof sizes / sizeof *sizes, 100);
}

static void test_realloc_preserves_contents_large_to_large(void **state) {
  (void)state;
  const size_t sizes[] = {MiB, 64 * MiB, 100 * KiB, 2 * MiB + 7, 2 * MiB + 8 * KiB,
                          2 * MiB + 3 * KiB, 9 * MiB, 130 * KiB};
  realloc_walk(sizes, sizeof sizes / sizeof *sizes, 200);
}

/* Many small growth steps of a large block (in-place growth and remapping). */
/* A large block shrunk in place to one OS page (4 KiB) is smaller than a brisk page
 * (8 KiB): a mapping the kernel then places in the freed tail starts inside the
 * same brisk page, and must not take the shrunk block's place in the page map. */
static int shrunk_large_block_next_to_new_mapping(void) {
  unsigned char *q = NULL;
  void *spare[64];
  int nspare = 0;
  while (nspare < 64) { /* a block at an 8 KiB boundary, so its tail shares the page */
    unsigned char *p = brisk_malloc(96 * KiB);
    if (!p) return 1;
    if (((uintptr_t)p & (8 * KiB - 1)) == 0) {
      q = p;
      break;
    }
    spare[nspare++] = p;
  }
  if (!q) return 0; /* never got such a block: nothing to check here */
  pattern_fill(q, 96 * KiB, 77);
  q = brisk_realloc(q, 202);
  if (!q || pattern_check(q, 202, 77) != SIZE_MAX) return 2;
  void *v = brisk_malloc(96 * KiB - os_page()); /* fits the freed tail exactly */
  if (!v) return 1;
  if (brisk_usable_size(q) < 202) return 3;
  brisk_free(v);
  if (brisk_usable_size(q) < 202) return 3;
  if (pattern_check(q, 202, 77) != SIZE_MAX) return 2;
  brisk_free(q);
  while (nspare) brisk_free(spare[--nspare]);
  return 0;
}

static void test_large_block_shrunk_to_one_os_page_stays_valid_beside_new_mappings(
    void **state) {
  (void)state;
  int code = run_in_child(shrunk_large_block_next_to_new_mapping, "shrunk large block");
  expect(code != 1, "malloc(96 KiB) returned NULL");
  expect(code != 2, "realloc(96 KiB block, 202) lost the contents");
  expect(code != 3, "usable_size of the shrunk block is wrong");
  assert_int_equal(code, 0);
}

static void test_realloc_grows_large_block_step_by_step(void **state) {
  (void)state;
  enum { STEPS = 96 };
  size_t sizes[STEPS];
  for (size_t i = 0; i < STEPS; i++) sizes[i] = MiB + i * (20 * KiB + 3);
  realloc_walk(sizes, STEPS, 300);
}

static void test_realloc_null_acts_as_malloc(void **state) {
  (void)state;
  const size_t sizes[] = {0, 1, 100, 4096, 64 * KiB + 1, 2 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    unsigned char *p = brisk_realloc(NULL, sizes[i]);
    expect(p != NULL, "realloc(NULL, %zu) returned NULL", sizes[i]);
    expect(is_aligned(p, 16), "realloc(NULL, %zu) returned %p", sizes[i], (void *)p);
    expect(brisk_usable_size(p) >= sizes[i], "realloc(NULL, %zu): usable_size %zu", sizes[i],
           brisk_usable_size(p));
    memset(p, 0x11, sizes[i]);
    brisk_free(p);
  }
}

static void test_realloc_failure_returns_enomem_and_keeps_the_block(void **state) {
  (void)state;
  const size_t bases[] = {0, 100, 5000, 64 * KiB, MiB};
  for (size_t b = 0; b < sizeof bases / sizeof *bases; b++) {
    unsigned char *p = brisk_malloc(bases[b]);
    assert_non_null(p);
    pattern_fill(p, bases[b], 7 + b);
    for (size_t i = 0; i < N_IMPOSSIBLE; i++) {
      errno = 0;
      void *q = brisk_realloc(opaque_ptr(p), opaque_size(impossible_sizes[i]));
      expect(q == NULL, "realloc(%zu-byte block, %zu) returned %p", bases[b],
             impossible_sizes[i], q);
      expect(errno == ENOMEM, "realloc(%zu-byte block, %zu): errno %d, want ENOMEM", bases[b],
             impossible_sizes[i], errno);
      size_t bad = pattern_check(p, bases[b], 7 + b);
      expect(bad == SIZE_MAX, "failed realloc(%zu) changed the old %zu-byte block at %zu",
             impossible_sizes[i], bases[b], bad);
    }
    /* The old block is still owned by the caller and still works. */
    p = brisk_realloc(p, bases[b] + 10);
    assert_non_null(p);
    assert_true(pattern_check(p, bases[b], 7 + b) == SIZE_MAX);
    brisk_free(p);
  }
}

/* realloc(p, 0) with p != NULL is glibc's: it frees p and returns NULL. (C17 leaves
 * the choice to the implementation, C23 makes it undefined; brisk follows glibc so
 * that programs written against glibc neither leak nor double free.) The block
 * must really be freed: in_use / large_in_use drop back. */
static void test_realloc_to_zero_frees_the_block_and_returns_null(void **state) {
  (void)state;
  brisk_stats_t s0 = stats_now();
  unsigned char *big = brisk_malloc(8 * MiB);
  assert_non_null(big);
  memset(big, 1, 8 * MiB);
  brisk_stats_t s1 = stats_now();
  expect(s1.large_in_use >= s0.large_in_use + 8 * MiB,
         "large_in_use %llu -> %llu after malloc(8 MiB)", (unsigned long long)s0.large_in_use,
         (unsigned long long)s1.large_in_use);
  void *r = brisk_realloc(big, 0);
  expect(r == NULL, "realloc(8 MiB block, 0) returned %p, want NULL (glibc frees)", r);
  brisk_stats_t s2 = stats_now();
  expect(s2.large_in_use + 8 * MiB <= s1.large_in_use,
         "realloc(p, 0) did not free the 8 MiB block: large_in_use %llu -> %llu",
         (unsigned long long)s1.large_in_use, (unsigned long long)s2.large_in_use);

  enum { N = 2000 };
  static void *small[N];
  brisk_stats_t t0 = stats_now();
  for (int i = 0; i < N; i++) {
    small[i] = brisk_malloc(1000);
    assert_non_null(small[i]);
  }
  brisk_stats_t t1 = stats_now();
  expect(t1.in_use >= t0.in_use + N * 1000, "in_use %llu -> %llu after %d x malloc(1000)",
         (unsigned long long)t0.in_use, (unsigned long long)t1.in_use, N);
  for (int i = 0; i < N; i++) {
    r = brisk_realloc(small[i], 0);
    expect(r == NULL, "realloc(1000-byte block, 0) returned %p, want NULL", r);
  }
  brisk_stats_t t2 = stats_now();
  expect(t2.in_use + N * 1000 <= t1.in_use,
         "realloc(p, 0) did not free the small blocks: in_use %llu -> %llu",
         (unsigned long long)t1.in_use, (unsigned long long)t2.in_use);
}

static void test_reallocarray_overflow_returns_enomem_and_keeps_the_block(void **state) {
  (void)state;
  unsigned char *p = brisk_reallocarray(NULL, 8, 8);
  assert_non_null(p);
  pattern_fill(p, 64, 42);
  const size_t pairs[][2] = {{SIZE_MAX / 2 + 1, 2}, {SIZE_MAX, SIZE_MAX}, {(size_t)1 << 32,
                                                                          (size_t)1 << 32}};
  for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
    errno = 0;
    void *q = brisk_reallocarray(opaque_ptr(p), opaque_size(pairs[i][0]), opaque_size(pairs[i][1]));
    expect(q == NULL, "reallocarray(p, %zu, %zu) overflows but returned %p", pairs[i][0],
           pairs[i][1], q);
    expect(errno == ENOMEM, "reallocarray(p, %zu, %zu): errno %d, want ENOMEM", pairs[i][0],
           pairs[i][1], errno);
    assert_true(pattern_check(p, 64, 42) == SIZE_MAX);
  }
  p = brisk_reallocarray(p, 1000, 100);
  assert_non_null(p);
  expect(pattern_check(p, 64, 42) == SIZE_MAX, "reallocarray(p, 1000, 100) lost the contents");
  assert_true(brisk_usable_size(p) >= 100000);
  memset(p, 0, 100000);
  brisk_free(p);
}

/* ------------------------------------------------------------------------------
   Aligned allocation
------------------------------------------------------------------------------ */

static void test_posix_memalign_honours_every_power_of_two_alignment_up_to_1_gib(void **state) {
  (void)state;
  for (size_t align = sizeof(void *); align <= GiB; align *= 2) {
    size_t sizes[4];
    size_t n = 0;
    sizes[n++] = 1;
    if (align <= 64 * MiB) sizes[n++] = 100;
    if (align <= 4 * MiB) sizes[n++] = align;
    if (align <= MiB) sizes[n++] = 3 * align + 8;
    for (size_t i = 0; i < n; i++) {
      void *p = (void *)0x1;
      int rc = brisk_posix_memalign(&p, align, sizes[i]);
      expect(rc == 0, "posix_memalign(%zu, %zu) returned %d", align, sizes[i], rc);
      expect(p != NULL && is_aligned(p, align) && is_aligned(p, 16),
             "posix_memalign(%zu, %zu) returned %p", align, sizes[i], p);
      expect(brisk_usable_size(p) >= sizes[i], "posix_memalign(%zu, %zu): usable_size %zu",
             align, sizes[i], brisk_usable_size(p));
      memset(p, 0x3C, sizes[i]);
      brisk_free(p);
    }
  }
}

static void test_posix_memalign_rejects_bad_alignment_with_einval(void **state) {
  (void)state;
  const size_t bad[] = {0,  1,  2,  3,  sizeof(void *) / 2, sizeof(void *) + 1, 24, 48, 96,
                        (size_t)MiB + 8, SIZE_MAX, SIZE_MAX - 7};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    void *sentinel = (void *)0xdeadbeef;
    void *p = sentinel;
    int rc = brisk_posix_memalign(&p, bad[i], 64);
    expect(rc == EINVAL, "posix_memalign(alignment %zu) returned %d, want EINVAL", bad[i], rc);
    expect(p == sentinel, "posix_memalign(alignment %zu) changed *memptr to %p", bad[i], p);
  }
}

static void test_aligned_alloc_rejects_non_power_of_two_alignment(void **state) {
  (void)state;
  const size_t bad[] = {3, 5, 24, 48, 100, 3 * MiB, (size_t)MiB + 16, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    errno = 0;
    void *p = brisk_aligned_alloc(bad[i], 96);
    expect(p == NULL, "aligned_alloc(%zu, 96) returned %p", bad[i], p);
    expect(errno == EINVAL, "aligned_alloc(%zu, 96): errno %d, want EINVAL", bad[i], errno);
  }
}

static void test_aligned_alloc_honours_power_of_two_alignment(void **state) {
  (void)state;
  for (size_t align = 1; align <= 4 * MiB; align *= 2) {
    /* C17 (DR 460) dropped the rule that size be a multiple of the alignment. */
    const size_t sizes[] = {align, 3 * align, 1, 100};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
      void *p = brisk_aligned_alloc(align, sizes[i]);
      expect(p != NULL, "aligned_alloc(%zu, %zu) returned NULL", align, sizes[i]);
      expect(is_aligned(p, align) && is_aligned(p, 16), "aligned_alloc(%zu, %zu) returned %p",
             align, sizes[i], p);
      expect(brisk_usable_size(p) >= sizes[i], "aligned_alloc(%zu, %zu): usable_size %zu", align,
             sizes[i], brisk_usable_size(p));
      memset(p, 0x77, sizes[i]);
      brisk_free(p);
    }
  }
}

static void test_memalign_honours_power_of_two_alignment(void **state) {
  (void)state;
  for (size_t align = 1; align <= 4 * MiB; align *= 2) {
    const size_t sizes[] = {1, 1000, align + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
      void *p = brisk_memalign(align, sizes[i]);
      expect(p != NULL, "memalign(%zu, %zu) returned NULL", align, sizes[i]);
      expect(is_aligned(p, align) && is_aligned(p, 16), "memalign(%zu, %zu) returned %p", align,
             sizes[i], p);
      expect(brisk_usable_size(p) >= sizes[i], "memalign(%zu, %zu): usable_size %zu", align,
             sizes[i], brisk_usable_size(p));
      memset(p, 0x66, sizes[i]);
      brisk_free(p);
    }
  }
}

static void test_valloc_returns_page_aligned_blocks(void **state) {
  (void)state;
  size_t page = os_page();
  const size_t sizes[] = {1, 100, page - 1, page, page + 1, 64 * KiB + 3, MiB + 5};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    void *p = brisk_valloc(sizes[i]);
    expect(p != NULL, "valloc(%zu) returned NULL", sizes[i]);
    expect(is_aligned(p, page), "valloc(%zu) returned %p, not page aligned", sizes[i], p);
    expect(brisk_usable_size(p) >= sizes[i], "valloc(%zu): usable_size %zu", sizes[i],
           brisk_usable_size(p));
    memset(p, 0x55, sizes[i]);
    brisk_free(p);
  }
}

static void test_pvalloc_rounds_the_size_up_to_whole_pages(void **state) {
  (void)state;
  size_t page = os_page();
  const size_t sizes[] = {1, 100, page - 1, page, page + 1, 3 * page + 7, MiB + 1};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    size_t rounded = (sizes[i] + page - 1) & ~(page - 1);
    void *p = brisk_pvalloc(sizes[i]);
    expect(p != NULL, "pvalloc(%zu) returned NULL", sizes[i]);
    expect(is_aligned(p, page), "pvalloc(%zu) returned %p, not page aligned", sizes[i], p);
    expect(brisk_usable_size(p) >= rounded, "pvalloc(%zu): usable_size %zu < %zu", sizes[i],
           brisk_usable_size(p), rounded);
    memset(p, 0x44, rounded);
    brisk_free(p);
  }
  void *p = brisk_pvalloc(0);
  expect(p != NULL && is_aligned(p, page), "pvalloc(0) returned %p", p);
  brisk_free(p);
}

/* ------------------------------------------------------------------------------
   free, free_sized, free_aligned_sized
------------------------------------------------------------------------------ */

static void test_free_of_null_is_a_no_op(void **state) {
  (void)state;
  errno = EILSEQ;
  brisk_free(NULL);
  brisk_free_sized(NULL, 0);
  brisk_free_sized(NULL, 100);
  brisk_free_aligned_sized(NULL, 64, 100);
  assert_int_equal(errno, EILSEQ);
  void *p = brisk_malloc(10);
  assert_non_null(p);
  brisk_free(p);
}

/* glibc (and POSIX.1-2024) promise that free leaves errno alone. */
static void test_free_preserves_errno(void **state) {
  (void)state;
  const size_t sizes[] = {0, 16, 5000, 64 * KiB, 256 * KiB, 8 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    void *p = brisk_malloc(sizes[i]);
    assert_non_null(p);
    errno = EILSEQ;
    brisk_free(p);
    expect(errno == EILSEQ, "free of a %zu-byte block changed errno to %d", sizes[i], errno);
  }
}

static void test_free_sized_with_the_requested_size_releases_the_block(void **state) {
  (void)state;
  brisk_stats_t s0 = stats_now();
  for (int round = 0; round < 3; round++) {
    for (size_t size = 0; size <= 70000; size += size < 1024 ? 1 : 61) {
      void *p = brisk_malloc(size);
      assert_non_null(p);
      memset(p, 1, size);
      brisk_free_sized(p, size);
    }
    const size_t big[] = {100 * KiB, MiB, 3 * MiB + 1};
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
      void *p = brisk_malloc(big[i]);
      assert_non_null(p);
      brisk_free_sized(p, big[i]);
    }
    void *c = brisk_calloc(33, 17);
    assert_non_null(c);
    brisk_free_sized(c, 33 * 17);
    void *r = brisk_malloc(10);
    assert_non_null(r);
    r = brisk_realloc(r, 777);
    assert_non_null(r);
    brisk_free_sized(r, 777);
  }
  brisk_stats_t s1 = stats_now();
  expect(s1.in_use <= s0.in_use + 64 * KiB && s1.large_in_use <= s0.large_in_use,
         "blocks freed with free_sized still count as in use: in_use %llu -> %llu, "
         "large_in_use %llu -> %llu",
         (unsigned long long)s0.in_use, (unsigned long long)s1.in_use,
         (unsigned long long)s0.large_in_use, (unsigned long long)s1.large_in_use);
}

static void test_free_aligned_sized_with_the_requested_alignment_and_size_releases_the_block(
    void **state) {
  (void)state;
  for (size_t align = 1; align <= 2 * MiB; align *= 2) {
    const size_t sizes[] = {align, 3 * align, 100};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
      void *p = brisk_aligned_alloc(align, sizes[i]);
      expect(p != NULL, "aligned_alloc(%zu, %zu) returned NULL", align, sizes[i]);
      memset(p, 2, sizes[i]);
      brisk_free_aligned_sized(p, align, sizes[i]);
    }
  }
}

/* ------------------------------------------------------------------------------
   trim and statistics
------------------------------------------------------------------------------ */

static void test_trim_returns_0_or_1_and_live_blocks_stay_valid(void **state) {
  (void)state;
  enum { N = 3000 };
  static unsigned char *p[N];
  static size_t sz[N];
  for (size_t i = 0; i < N; i++) {
    sz[i] = i % 100 == 0 ? 300 * KiB + i : (i * 131) % 9000;
    p[i] = brisk_malloc(sz[i]);
    assert_non_null(p[i]);
    pattern_fill(p[i], sz[i], i);
  }
  for (size_t i = 0; i < N; i += 2) {
    brisk_free(p[i]);
    p[i] = NULL;
  }
  int r = brisk_trim();
  expect(r == 0 || r == 1, "brisk_trim() returned %d", r);
  for (size_t i = 1; i < N; i += 2) {
    size_t bad = pattern_check(p[i], sz[i], i);
    expect(bad == SIZE_MAX, "block %zu (%zu bytes) changed at offset %zu by brisk_trim", i,
           sz[i], bad);
  }
  for (size_t i = 0; i < N; i += 2) {
    p[i] = brisk_malloc(sz[i]);
    assert_non_null(p[i]);
    pattern_fill(p[i], sz[i], i + N);
  }
  for (size_t i = 0; i < N; i++) {
    size_t bad = pattern_check(p[i], sz[i], i % 2 ? i : i + N);
    expect(bad == SIZE_MAX, "block %zu (%zu bytes) changed at offset %zu after trim", i, sz[i],
           bad);
    brisk_free(p[i]);
  }
  r = brisk_trim();
  expect(r == 0 || r == 1, "brisk_trim() returned %d", r);
  r = brisk_trim();
  expect(r == 0 || r == 1, "brisk_trim() returned %d", r);
  void *q = brisk_malloc(100);
  assert_non_null(q);
  brisk_free(q);
}

static void test_stats_in_use_grows_with_small_blocks_and_drops_after_free(void **state) {
  (void)state;
  enum { N = 10240, SIZE = 1024 }; /* 10 MiB in small blocks */
  static void *p[N];
  brisk_stats_t s0 = stats_now();
  for (int i = 0; i < N; i++) {
    p[i] = brisk_malloc(SIZE);
    assert_non_null(p[i]);
  }
  brisk_stats_t s1 = stats_now();
  expect(s1.in_use >= s0.in_use + (uint64_t)N * SIZE,
         "in_use %llu -> %llu after allocating 10 MiB", (unsigned long long)s0.in_use,
         (unsigned long long)s1.in_use);
  expect(s1.mapped >= s1.in_use, "mapped %llu < in_use %llu", (unsigned long long)s1.mapped,
         (unsigned long long)s1.in_use);
  expect(s1.peak_mapped >= s1.mapped, "peak_mapped %llu < mapped %llu",
         (unsigned long long)s1.peak_mapped, (unsigned long long)s1.mapped);
  expect(s1.threads >= 1 && s1.threads_seen >= s1.threads, "threads %llu, threads_seen %llu",
         (unsigned long long)s1.threads, (unsigned long long)s1.threads_seen);
  for (int i = 0; i < N; i++) brisk_free(p[i]);
  brisk_stats_t s2 = stats_now();
  expect(s2.in_use + (uint64_t)N * SIZE <= s1.in_use,
         "in_use %llu -> %llu after freeing 10 MiB", (unsigned long long)s1.in_use,
         (unsigned long long)s2.in_use);
}

static void test_stats_large_in_use_tracks_large_blocks(void **state) {
  (void)state;
  brisk_stats_t s0 = stats_now();
  void *p = brisk_malloc(16 * MiB);
  assert_non_null(p);
  brisk_stats_t s1 = stats_now();
  expect(s1.large_in_use >= s0.large_in_use + 16 * MiB, "large_in_use %llu -> %llu",
         (unsigned long long)s0.large_in_use, (unsigned long long)s1.large_in_use);
  expect(s1.mapped >= s0.mapped + 16 * MiB || s0.heap_free + s0.returned >= 16 * MiB,
         "mapped %llu -> %llu after malloc(16 MiB)", (unsigned long long)s0.mapped,
         (unsigned long long)s1.mapped);
  brisk_free(p);
  brisk_stats_t s2 = stats_now();
  expect(s2.large_in_use + 16 * MiB <= s1.large_in_use, "large_in_use %llu -> %llu after free",
         (unsigned long long)s1.large_in_use, (unsigned long long)s2.large_in_use);
}

/* Heap blocks (256 KiB: below BRISK_LARGE_MMAP) count in the record of the thread
 * that takes or frees them (counters.h): blocks taken by workers and freed by
 * main, and the other way round, must add up exactly, while the threads live
 * and after they have exited (their records folded into the shared one). */
#define XT_BLOCKS 8
#define XT_SIZE (256 * KiB)

typedef struct xt_arg_s {
  void *take[XT_BLOCKS]; /* the worker's, for main to free */
  void *give[XT_BLOCKS / 2]; /* main's, for the worker to free: its record ends at +XT_BLOCKS / 2 */
  pthread_barrier_t *bar;
} xt_arg_t;

static void *xt_worker(void *arg) {
  xt_arg_t *a = arg;
  brisk_free(brisk_malloc(16)); /* a thread gets its record with its cache, at its first small request */
  for (int i = 0; i < XT_BLOCKS; i++) a->take[i] = brisk_malloc(XT_SIZE);
  for (int i = 0; i < XT_BLOCKS / 2; i++) brisk_free(a->give[i]);
  pthread_barrier_wait(a->bar); /* main reads the statistics while this thread lives */
  pthread_barrier_wait(a->bar);
  return NULL;
}

static void test_stats_large_blocks_add_up_across_threads(void **state) {
  (void)state;
  enum { WORKERS = 3 };
  xt_arg_t arg[WORKERS];
  pthread_t t[WORKERS];
  pthread_barrier_t bar;
  assert_int_equal(pthread_barrier_init(&bar, NULL, WORKERS + 1), 0);
  brisk_stats_t s0 = stats_now();
  for (int w = 0; w < WORKERS; w++) {
    arg[w].bar = &bar;
    for (int i = 0; i < XT_BLOCKS / 2; i++) assert_non_null(arg[w].give[i] = brisk_malloc(XT_SIZE));
  }
  brisk_stats_t s1 = stats_now();
  expect(s1.large_blocks == s0.large_blocks + WORKERS * XT_BLOCKS / 2, "large_blocks %llu -> %llu after %d mallocs",
         (unsigned long long)s0.large_blocks, (unsigned long long)s1.large_blocks, WORKERS * XT_BLOCKS / 2);
  for (int w = 0; w < WORKERS; w++) assert_int_equal(pthread_create(&t[w], NULL, xt_worker, &arg[w]), 0);
  pthread_barrier_wait(&bar);
  brisk_stats_t s2 = stats_now(); /* each worker's record: XT_BLOCKS taken, half as many freed */
  const uint64_t grew = WORKERS * XT_BLOCKS / 2;
  expect(s2.large_blocks == s1.large_blocks + grew && s2.large_in_use == s1.large_in_use + grew * XT_SIZE,
         "with the workers alive: large_blocks %llu -> %llu, large_in_use %llu -> %llu",
         (unsigned long long)s1.large_blocks, (unsigned long long)s2.large_blocks,
         (unsigned long long)s1.large_in_use, (unsigned long long)s2.large_in_use);
  pthread_barrier_wait(&bar);
  for (int w = 0; w < WORKERS; w++) pthread_join(t[w], NULL);
  brisk_stats_t s3 = stats_now(); /* folded at their exit */
  expect(s3.large_blocks == s1.large_blocks + grew && s3.large_in_use == s1.large_in_use + grew * XT_SIZE,
         "after the workers exited: large_blocks %llu -> %llu, large_in_use %llu -> %llu",
         (unsigned long long)s1.large_blocks, (unsigned long long)s3.large_blocks,
         (unsigned long long)s1.large_in_use, (unsigned long long)s3.large_in_use);
  for (int w = 0; w < WORKERS; w++)
    for (int i = 0; i < XT_BLOCKS; i++) brisk_free(arg[w].take[i]);
  brisk_stats_t s4 = stats_now();
  expect(s4.large_blocks == s0.large_blocks && s4.large_in_use == s0.large_in_use,
         "after every block was freed: large_blocks %llu -> %llu, large_in_use %llu -> %llu",
         (unsigned long long)s0.large_blocks, (unsigned long long)s4.large_blocks,
         (unsigned long long)s0.large_in_use, (unsigned long long)s4.large_in_use);
  pthread_barrier_destroy(&bar);
}

/* ------------------------------------------------------------------------------
   ENOMEM under an address-space limit (in a forked child)
------------------------------------------------------------------------------ */

/* Why the child failed: its exit status indexes this table. */
static const char *const oom_failure[] = {
    [0] = "ok",
    [1] = "could not read /proc/self/statm",
    [2] = "setrlimit(RLIMIT_AS) failed",
    [3] = "no 1 MiB block could be allocated under the limit at all",
    [4] = "malloc(1 MiB) never failed: the limit is not reached",
    [5] = "malloc(1 MiB) failed with errno other than ENOMEM",
    [6] = "malloc(1 MiB) failed after freeing half of the 1 MiB blocks",
    [7] = "malloc(4 KiB) never failed: the limit is not reached",
    [8] = "malloc(4 KiB) failed with errno other than ENOMEM",
    [9] = "malloc(4 KiB) failed after freeing some 4 KiB blocks",
    [10] = "calloc(1, 256 MiB) did not fail with ENOMEM",
    [11] = "posix_memalign(64, 256 MiB) did not return ENOMEM",
    [12] = "realloc(p, 256 MiB) did not fail with ENOMEM",
    [13] = "a failed realloc changed the old block",
    [14] = "malloc(8 MiB) failed after freeing all 1 MiB blocks, even after brisk_trim()",
    [15] = "malloc(100) failed after freeing every block",
    [16] = "a live block was corrupted while memory ran out",
    [17] = "could not map the bookkeeping array",
    [18] = "malloc(8 MiB) failed after freeing all 1 MiB blocks (freed large blocks stay "
           "cached instead of being released when the OS refuses memory); it worked only "
           "after brisk_trim()",
    [19] = "malloc(3 MiB) failed where the thread's spare 1 MiB block lay between two free "
           "1 MiB runs",
    [20] = "no three 1 MiB blocks lay end to end",
    [21] = "after small blocks ran out, more than 8 MiB of the heap was in no block, cache, "
           "span or free run (spans that took whole free runs)",
};

static size_t vm_size_bytes(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  return (size_t)strtoull(buf, NULL, 10) * os_page();
}

static int cmp_addr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
  return (x > y) - (x < y);
}

static int oom_child(void) {
  enum { MAX_BIG = 4096, MAX_SMALL = 1 << 20 };
  /* Bookkeeping from mmap, before the limit, so it uses neither allocator. */
  void **big = mmap(NULL, (MAX_BIG + MAX_SMALL) * sizeof(void *), PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (big == MAP_FAILED) return 17;
  void **small = big + MAX_BIG;
  unsigned char *keep = brisk_malloc(1000); /* a block that must survive it all */
  if (!keep) return 3;
  memset(keep, 0x5C, 1000);

  size_t vm = vm_size_bytes();
  if (vm == 0) return 1;
  struct rlimit rl = {.rlim_cur = vm + 64 * MiB, .rlim_max = vm + 64 * MiB};
  if (setrlimit(RLIMIT_AS, &rl) != 0) return 2;

  /* Large blocks until the limit. */
  size_t nbig = 0;
  for (;;) {
    errno = 0;
    unsigned char *p = brisk_malloc(MiB);
    if (!p) {
      if (errno != ENOMEM) return 5;
      break;
    }
    p[0] = p[MiB - 1] = 1;
    big[nbig++] = p;
    if (nbig == MAX_BIG) return 4;
  }
  if (nbig == 0) return 3;
  for (size_t i = 0; i < nbig; i += 2) big[i] = (brisk_free(big[i]), NULL);
  for (size_t i = 0; i < nbig; i += 2) {
    big[i] = brisk_malloc(MiB);
    if (!big[i]) return 6;
  }

  /* The other allocation calls fail cleanly as well. */
  errno = 0;
  if (brisk_calloc(1, 256 * MiB) != NULL || errno != ENOMEM) return 10;
  void *q = NULL;
  if (brisk_posix_memalign(&q, 64, 256 * MiB) != ENOMEM) return 11;
  errno = 0;
  if (brisk_realloc(opaque_ptr(keep), 256 * MiB) != NULL || errno != ENOMEM) return 12;
  for (int i = 0; i < 1000; i++)
    if (keep[i] != 0x5C) return 13;

  /* A block the thread keeps as its spare splits two free runs: a block as long
   * as the three of them is still served, without brisk_trim (the spare and
   * what caches hold go back before brisk answers ENOMEM). Three 1 MiB blocks
   * that lie end to end, freed as a, c, b: the spare keeps b, a and c are free
   * runs, and no other run of the heap is 1 MiB long (it is full). */
  qsort(big, nbig, sizeof *big, cmp_addr);
  size_t k = 0;
  while (k + 2 < nbig && !((char *)big[k] + MiB == (char *)big[k + 1] && (char *)big[k + 1] + MiB == (char *)big[k + 2])) k++;
  if (k + 2 >= nbig) return 20;
  brisk_free(big[k]);
  brisk_free(big[k + 2]);
  brisk_free(big[k + 1]);
  void *three = brisk_malloc(3 * MiB);
  if (three == NULL) return 19;
  brisk_free(three);
  big[k] = big[k + 1] = big[k + 2] = NULL;

  /* Freed large blocks make room for a large block of another size: a cache that
   * holds them must give them back before brisk answers ENOMEM. */
  for (size_t i = 0; i < nbig; i++) brisk_free(big[i]);
  void *b = brisk_malloc(8 * MiB);
  if (!b) {
    brisk_trim();
    b = brisk_malloc(8 * MiB);
    return b ? 18 : 14;
  }
  brisk_free(b);

  /* Small blocks until the limit. */
  size_t nsmall = 0;
  for (;;) {
    errno = 0;
    unsigned char *p = brisk_malloc(4 * KiB);
    if (!p) {
      if (errno != ENOMEM) return 8;
      break;
    }
    p[0] = p[4 * KiB - 1] = 2;
    small[nsmall++] = p;
    if (nsmall == MAX_SMALL) return 7;
  }
  /* Every byte the heap holds is still in a block, a cache, a span's free
   * objects or a free run, whatever ran out first (on the machine this was
   * written on, metadata for span descriptors): no span of a few objects holds
   * a whole free run. */
  brisk_stats_t st;
  brisk_get_stats(&st);
  uint64_t held = st.metadata + st.in_use + st.tcache + st.central + st.heap_free + st.returned;
  if (st.mapped > held + 8 * MiB) return 21;
  for (size_t i = 0; i < nsmall; i += 3) small[i] = (brisk_free(small[i]), NULL);
  for (size_t i = 0; i < nsmall; i += 3) {
    small[i] = brisk_malloc(4 * KiB);
    if (!small[i]) return 9;
  }
  for (size_t i = 0; i < nsmall; i++) brisk_free(small[i]);

  /* Freed small pages may stay mapped (madvise does not shrink the address space),
   * so only a small block is asked for now. */
  void *s = brisk_malloc(100);
  if (!s) return 15;
  brisk_free(s);
  for (int i = 0; i < 1000; i++)
    if (keep[i] != 0x5C) return 16;
  brisk_free(keep);
  return 0;
}

static void test_allocation_under_an_address_space_limit_fails_with_enomem_and_recovers(
    void **state) {
  (void)state;
  int code = run_in_child(oom_child, "address-space limit");
  if (code != 0) {
    const char *why = code < (int)ARRAY_LEN(oom_failure) && oom_failure[code]
                          ? oom_failure[code]
                          : "unknown";
    fail_msg("the child failed (%d): %s", code, why);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_malloc_zero_returns_unique_non_null_pointers),
      cmocka_unit_test(test_every_size_up_to_100000_is_16_byte_aligned_and_usable),
      cmocka_unit_test(test_multi_mib_sizes_are_16_byte_aligned_and_usable),
      cmocka_unit_test(test_usable_size_of_null_is_zero),
      cmocka_unit_test(test_usable_bytes_of_live_blocks_stay_intact),
      cmocka_unit_test(test_calloc_returns_zeroed_memory),
      cmocka_unit_test(test_calloc_zeroes_a_reused_dirty_block),
      cmocka_unit_test(test_calloc_zeroes_large_blocks_after_free_and_realloc_cycles),
      cmocka_unit_test(test_calloc_overflow_returns_enomem),
      cmocka_unit_test(test_malloc_of_impossible_size_returns_enomem),
      cmocka_unit_test(test_calloc_of_impossible_size_returns_enomem),
      cmocka_unit_test(test_aligned_allocation_of_impossible_size_returns_enomem),
      cmocka_unit_test(test_realloc_preserves_contents_small_to_small),
      cmocka_unit_test(test_realloc_preserves_contents_small_to_large_and_back),
      cmocka_unit_test(test_realloc_preserves_contents_large_to_large),
      cmocka_unit_test(test_realloc_grows_large_block_step_by_step),
      cmocka_unit_test(test_large_block_shrunk_to_one_os_page_stays_valid_beside_new_mappings),
      cmocka_unit_test(test_realloc_null_acts_as_malloc),
      cmocka_unit_test(test_realloc_failure_returns_enomem_and_keeps_the_block),
      cmocka_unit_test(test_realloc_to_zero_frees_the_block_and_returns_null),
      cmocka_unit_test(test_reallocarray_overflow_returns_enomem_and_keeps_the_block),
      cmocka_unit_test(test_posix_memalign_honours_every_power_of_two_alignment_up_to_1_gib),
      cmocka_unit_test(test_posix_memalign_rejects_bad_alignment_with_einval),
      cmocka_unit_test(test_aligned_alloc_rejects_non_power_of_two_alignment),
      cmocka_unit_test(test_aligned_alloc_honours_power_of_two_alignment),
      cmocka_unit_test(test_memalign_honours_power_of_two_alignment),
      cmocka_unit_test(test_valloc_returns_page_aligned_blocks),
      cmocka_unit_test(test_pvalloc_rounds_the_size_up_to_whole_pages),
      cmocka_unit_test(test_free_of_null_is_a_no_op),
      cmocka_unit_test(test_free_preserves_errno),
      cmocka_unit_test(test_free_sized_with_the_requested_size_releases_the_block),
      cmocka_unit_test(
          test_free_aligned_sized_with_the_requested_alignment_and_size_releases_the_block),
      cmocka_unit_test(test_trim_returns_0_or_1_and_live_blocks_stay_valid),
      cmocka_unit_test(test_stats_in_use_grows_with_small_blocks_and_drops_after_free),
      cmocka_unit_test(test_stats_large_in_use_tracks_large_blocks),
      cmocka_unit_test(test_stats_large_blocks_add_up_across_threads),
      cmocka_unit_test(
          test_allocation_under_an_address_space_limit_fails_with_enomem_and_recovers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
