/* Large blocks: runs of the page heap reused, split and coalesced; realloc in
 * place, by a move or by mremap; shrinking in place; idle runs purged on the
 * decay; blocks from BRISK_LARGE_MMAP up mapped alone; calloc of reused memory;
 * alignment; ENOMEM near the address-space limit. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "child.h"
#include "internal.h"

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

static bool is_mapped(void *p) {
  unsigned char v;
  size_t os = (size_t)sysconf(_SC_PAGESIZE);
  return mincore((void *)((uintptr_t)p & ~(os - 1)), os, &v) == 0;
}

/* OS pages of [p, p + bytes) that are resident. */
static size_t resident(void *p, size_t bytes) {
  size_t os = (size_t)sysconf(_SC_PAGESIZE), n = bytes / os, count = 0;
  static unsigned char vec[(64u << 20) / 4096];
  assert_true(n <= sizeof vec);
  assert_int_equal(mincore(p, bytes, vec), 0);
  for (size_t i = 0; i < n; i++) count += vec[i] & 1;
  return count;
}

/* A thread keeps its last freed heap block of up to 1 MiB as its spare; tests of
 * the heap itself hand it back first. */
static void drop_spare(void) { brisk__large_spare_release(&brisk__tc); }

static int setup(void **state) {
  (void)state;
  brisk_free(brisk_malloc(1));
  return 0;
}

static void test_freed_block_is_reused_without_mapping_more(void **state) {
  (void)state;
  void *p = brisk_malloc(10 * MiB);
  assert_non_null(p);
  memset(p, 1, 10 * MiB);
  brisk_free(p);
  brisk_stats_t a, b;
  brisk_get_stats(&a);
  assert_true(a.heap_free >= 10 * MiB);
  void *q = brisk_malloc(10 * MiB);
  brisk_get_stats(&b);
  assert_ptr_equal(q, p);
  assert_int_equal(b.mapped, a.mapped);
  brisk_free(q);
}

/* A freed 3 MiB block serves a later 2 MiB request: same pages, still resident,
 * and the rest stays a free run. */
static void test_larger_free_run_serves_smaller_request_with_its_pages(void **state) {
  (void)state;
  unsigned char *x = brisk_malloc(3 * MiB);
  void *fence = brisk_malloc(100 * KiB); /* keeps x's run from joining what follows */
  memset(x, 5, 3 * MiB);
  brisk_free(x);
  brisk_stats_t a, b;
  brisk_get_stats(&a);
  unsigned char *q = brisk_malloc(2 * MiB);
  brisk_get_stats(&b);
  assert_int_equal(b.mapped, a.mapped);
  assert_int_equal(resident(q, 2 * MiB), 2 * MiB / (size_t)sysconf(_SC_PAGESIZE));
  if (q == x) { /* the usual case: the best fit is x's own run, split */
    brisk_span_t *rest = brisk__pagemap_get(x + 2 * MiB);
    assert_non_null(rest);
    assert_int_equal(rest->state, BRISK_SPAN_FREE);
  }
  brisk_free(q);
  brisk_free(fence);
}

static void test_neighbouring_free_blocks_coalesce(void **state) {
  (void)state;
  brisk__heap_purge(UINT64_MAX, 0);
  unsigned char *a = brisk_malloc(MiB), *b = brisk_malloc(MiB);
  void *fence = brisk_malloc(100 * KiB);
  assert_ptr_equal(b, a + MiB);
  brisk_free(a);
  drop_spare();
  brisk_free(b);
  drop_spare();
  brisk_span_t *run = brisk__pagemap_get(a);
  assert_non_null(run);
  assert_int_equal(run->state, BRISK_SPAN_FREE);
  assert_true(run->npages >= 2 * MiB / BRISK_PAGE_SIZE);
  assert_null(brisk__pagemap_get(b)); /* interior now */
  void *c = brisk_malloc(2 * MiB);
  assert_ptr_equal(c, a);
  brisk_free(c);
  brisk_free(fence);
}

static void test_realloc_grows_in_place_into_a_free_neighbour(void **state) {
  (void)state;
  unsigned char *p = brisk_malloc(MiB), *next = brisk_malloc(MiB);
  void *fence = brisk_malloc(100 * KiB);
  assert_ptr_equal(next, p + MiB);
  for (size_t i = 0; i < MiB; i++) p[i] = (unsigned char)(i * 3);
  brisk_free(next);
  drop_spare();
  unsigned char *q = brisk_realloc(p, MiB + MiB / 2);
  assert_ptr_equal(q, p);
  assert_true(brisk_usable_size(q) >= MiB + MiB / 2);
  for (size_t i = 0; i < MiB; i++)
    if (q[i] != (unsigned char)(i * 3)) fail_msg("byte %zu lost", i);
  memset(q, 1, MiB + MiB / 2);
  brisk_free(q);
  brisk_free(fence);
}

/* A block above the classes holds whole slices of 64 KiB, so that the blocks cut
 * one after another from a run start a whole number of slices apart; its usable
 * size stays its request to the page, and realloc grows into the slack in place
 * whatever lies after the block. */
static void test_heap_blocks_are_whole_slices(void **state) {
  (void)state;
  const size_t slice = 64 * KiB;
  unsigned char *a = brisk_malloc(72 * KiB + 1), *b = brisk_malloc(200 * KiB), *c = brisk_malloc(72 * KiB + 1);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  unsigned char *blocks[] = {a, b, c};
  for (int i = 0; i < 3; i++) {
    brisk_span_t *s = brisk__pagemap_get(blocks[i]);
    assert_int_equal(s->state, BRISK_SPAN_LARGE);
    assert_int_equal(s->npages * BRISK_PAGE_SIZE % slice, 0);
  }
  assert_int_equal(brisk__pagemap_get(a)->npages * BRISK_PAGE_SIZE, 2 * slice);
  assert_int_equal(brisk_usable_size(a), 80 * KiB); /* not the slack */
  assert_int_equal(brisk_usable_size(b), 200 * KiB);
  memset(a, 5, 72 * KiB + 1);
  unsigned char *r = brisk_realloc(a, 2 * slice); /* the slack: no neighbour needed */
  assert_ptr_equal(r, a);
  assert_int_equal(brisk_usable_size(r), 2 * slice);
  for (size_t i = 0; i < 72 * KiB + 1; i++)
    if (r[i] != 5) fail_msg("byte %zu lost", i);
  brisk_free(r);
  brisk_free(b);
  brisk_free(c);
  drop_spare();
}

static void test_realloc_moves_keeping_contents(void **state) {
  (void)state;
  size_t n = MiB;
  unsigned char *p = brisk_malloc(n);
  void *fence = brisk_malloc(n); /* in use right after p: p cannot grow in place */
  assert_ptr_equal(fence, p + n);
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 7);
  unsigned char *q = brisk_realloc(p, 4 * MiB);
  assert_non_null(q);
  assert_true(q != p);
  for (size_t i = 0; i < n; i++)
    if (q[i] != (unsigned char)(i * 7)) fail_msg("byte %zu lost", i);
  memset(q + n, 3, 3 * MiB);
  brisk_free(q);
  brisk_free(fence);
}

/* From BRISK_LARGE_MMAP up a block is mapped alone: realloc grows it with mremap
 * (a heap block that grows past the threshold moves into one by a copy). */
static void test_realloc_of_a_block_mapped_alone_uses_mremap(void **state) {
  (void)state;
  size_t saved = brisk__opt.large_mmap_bytes;
  brisk__opt.large_mmap_bytes = 8 * MiB; /* keeps the test small */
  size_t n = MiB;
  unsigned char *p = brisk_malloc(n);
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 7);
  size_t big = brisk__opt.large_mmap_bytes;
  unsigned char *q = brisk_realloc(p, big);
  assert_non_null(q);
  brisk_span_t *s = brisk__pagemap_get(q);
  assert_non_null(s);
  assert_true(s->alone);
  assert_int_equal(s->start, (uintptr_t)q);
  unsigned char *r = brisk_realloc(q, 2 * big);
  assert_non_null(r);
  for (size_t i = 0; i < n; i++)
    if (r[i] != (unsigned char)(i * 7)) fail_msg("byte %zu lost", i);
  memset(r + n, 3, 2 * big - n);
  assert_true(brisk_usable_size(r) >= 2 * big);
  brisk_free(r);
  brisk__opt.large_mmap_bytes = saved;
}

static void test_realloc_shrinks_in_place(void **state) {
  (void)state;
  char *p = brisk_malloc(8 * MiB);
  memset(p, 9, 8 * MiB);
  char *q = brisk_realloc(p, 300 * KiB);
  assert_ptr_equal(q, p);
  size_t usable = brisk_usable_size(q);
  assert_true(usable >= 300 * KiB && usable < 400 * KiB);
  /* The block keeps whole 64 KiB slices; the rest went back to the heap. */
  size_t kept = brisk__pagemap_get(p)->npages * BRISK_PAGE_SIZE;
  assert_true(kept >= usable && kept <= 320 * KiB);
  brisk_span_t *tail = brisk__pagemap_get(p + kept);
  assert_non_null(tail);
  assert_int_equal(tail->state, BRISK_SPAN_FREE);
  assert_int_equal(q[(300 * KiB) - 1], 9);
  char *r = brisk_realloc(q, 100); /* large stays large, in place */
  assert_ptr_equal(r, p);
  brisk_free(r);
}

static void test_idle_free_runs_are_purged(void **state) {
  (void)state;
  unsigned char *p = brisk_malloc(3 * MiB);
  void *fence = brisk_malloc(100 * KiB);
  memset(p, 1, 3 * MiB);
  brisk_free(p);
  size_t os_pages = 3 * MiB / (size_t)sysconf(_SC_PAGESIZE);
  assert_int_equal(resident(p, 3 * MiB), os_pages);
  uint64_t now = brisk__os_now_ms();
  brisk__heap_purge(now, 60000); /* too recent */
  assert_int_equal(resident(p, 3 * MiB), os_pages);
  brisk__heap_purge(now + 60000, 60000);
  assert_int_equal(resident(p, 3 * MiB), 0);
  assert_true(is_mapped(p)); /* the heap keeps its addresses */
  brisk_free(fence);
}

/* The decay: once the heap's peak use has left its window, what lies free goes
 * back once a tick old, long before the purge delay. */
static void test_decay_returns_free_runs_beyond_recent_demand(void **state) {
  (void)state;
  unsigned char *p = brisk_malloc(8 * MiB);
  void *fence = brisk_malloc(100 * KiB);
  memset(p, 1, 8 * MiB);
  brisk_free(p);
  uint64_t now = brisk__os_now_ms();
  brisk__heap_decay(now + 50, 60000); /* younger than a tick: kept */
  assert_true(resident(p, 8 * MiB) > 0);
  brisk__heap_decay(now + 1000, 60000); /* nothing taken in the window since */
  assert_int_equal(resident(p, 8 * MiB), 0);
  brisk_free(fence);
}

/* A thread's last freed block of up to 1 MiB serves its next request of about
 * that size without the heap; the block it replaces goes back to the heap, and
 * a second free of the spare aborts (tests/test_bad_usage.c). */
static void test_thread_keeps_its_last_freed_block_as_spare(void **state) {
  (void)state;
  drop_spare();
  void *a = brisk_malloc(300 * KiB), *b = brisk_malloc(600 * KiB);
  brisk_free(a);
  assert_ptr_equal(brisk__tc.large_spare, brisk__pagemap_get(a));
  assert_int_equal(brisk__pagemap_get(a)->state, BRISK_SPAN_SPARE);
  brisk_free(b); /* b is the spare now, a goes back */
  assert_ptr_equal(brisk__tc.large_spare, brisk__pagemap_get(b));
  assert_ptr_equal(brisk_malloc(590 * KiB), b); /* within 1/8 of its size */
  assert_null(brisk__tc.large_spare);
  brisk_free(b);
  void *c = brisk_malloc(200 * KiB); /* a third the size: from the heap */
  assert_true(c != b);
  brisk_free(c);
  drop_spare();
}

static void test_block_from_the_mmap_threshold_is_unmapped_at_once(void **state) {
  (void)state;
  size_t saved = brisk__opt.large_mmap_bytes;
  brisk__opt.large_mmap_bytes = 8 * MiB;
  void *p = brisk_malloc(8 * MiB);
  assert_non_null(p);
  brisk_span_t *s = brisk__pagemap_get(p);
  assert_true(s->alone);
  brisk_free(p);
  assert_false(is_mapped(p));
  brisk__opt.large_mmap_bytes = saved;
}

/* calloc from a reused run is zero up to the usable size, not only the size asked. */
static void test_calloc_of_reused_memory_is_zero_up_to_usable_size(void **state) {
  (void)state;
  size_t sizes[] = {MiB + 100, 3 * MiB + 1, 200 * KiB + 17};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    unsigned char *p = brisk_malloc(sizes[k]);
    void *fence = brisk_malloc(100 * KiB);
    size_t usable = brisk_usable_size(p);
    assert_true(usable > sizes[k]);
    memset(p, 0xff, usable);
    brisk_free(p); /* the spare, or (3 MiB) a free run of the heap */
    unsigned char *q = brisk_calloc(1, sizes[k]);
    assert_ptr_equal(q, p);
    assert_int_equal(brisk_usable_size(q), usable);
    for (size_t i = 0; i < usable; i++)
      if (q[i] != 0) fail_msg("byte %zu of %zu is %d", i, usable, q[i]);
    brisk_free(q);
    brisk_free(fence);
  }
}

static void test_huge_alignments(void **state) {
  (void)state;
  for (size_t align = 1 << 14; align <= ((size_t)1 << 30); align <<= 4) {
    void *p = NULL;
    assert_int_equal(brisk_posix_memalign(&p, align, 100), 0);
    assert_int_equal((uintptr_t)p % align, 0);
    memset(p, 1, 100);
    brisk_free(p);
    assert_int_equal(brisk_posix_memalign(&p, align, 3 * MiB), 0);
    assert_int_equal((uintptr_t)p % align, 0);
    memset(p, 1, 3 * MiB);
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

/* Near an address-space limit, a free run at the top of the heap serves a larger
 * request with only the missing part grown, before brisk answers ENOMEM. */
static int free_run_gives_way(void) {
  set_as_limit(vm_now() + 48 * MiB);
  void *p = brisk_malloc(30 * MiB);
  if (p == NULL) return 22;
  memset(p, 1, 30 * MiB);
  brisk_free(p); /* a free run of the heap */
  void *q = brisk_malloc(40 * MiB);
  if (q == NULL) return 23;
  memset(q, 1, 40 * MiB);
  brisk_free(q);
  return 0;
}

static void test_free_run_gives_way_before_enomem(void **state) {
  (void)state;
  assert_int_equal(run_in_child(free_run_gives_way, "free_run_gives_way"), 0);
}

/* One byte per 64 KiB of [p, p + n), from seed: enough to see a block lost or moved. */
static void stamp(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i += 64 * KiB) p[i] = (unsigned char)(seed + i / (64 * KiB));
  p[n - 1] = (unsigned char)~seed;
}
/* Whether the first n bytes of a block stamped with n_stamped bytes are as stamped. */
static bool kept_stamp(const unsigned char *p, size_t n, size_t n_stamped, unsigned seed) {
  for (size_t i = 0; i < n; i += 64 * KiB)
    if (p[i] != (unsigned char)(seed + i / (64 * KiB))) return false;
  return n < n_stamped || p[n_stamped - 1] == (unsigned char)~seed;
}
static bool stamped(const unsigned char *p, size_t n, unsigned seed) { return kept_stamp(p, n, n, seed); }

/* realloc of a block mapped alone, where mremap can only move it into a part of
 * the address space that the page map has no leaf for, and the address-space
 * limit leaves room for the growth but not for the leaf (the hardening issue's
 * C1: it aborted "out of memory for the page map after mremap"). It must fail
 * with ENOMEM, the block where it was and unchanged, every time; without the
 * limit the same realloc lands in that part and succeeds. */
static int realloc_where_the_page_map_has_no_leaf(void) {
  const size_t os = (size_t)sysconf(_SC_PAGESIZE), window = (size_t)1 << (BRISK_PM_LEAF_BITS + BRISK_PAGE_SHIFT);
  const size_t old = brisk__opt.large_mmap_bytes, grown = old + 64 * MiB + 2 * BRISK_PAGE_SIZE; /* not a THP multiple */
  unsigned char *p = brisk_malloc(old);
  if (p == NULL) return 1;
  if (brisk_usable_size(p) != old) return 2; /* mapped alone */
  stamp(p, old, 7);
  /* Nothing may follow it: mremap cannot grow it in place. */
  if (mmap(p + old, os, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED &&
      errno != EEXIST)
    return 3;
  /* A reservation spanning a whole leaf's window that brisk never used, with one
   * hole of exactly the grown size in it ... */
  char *r = mmap(NULL, 3 * window, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) return 4;
  uintptr_t w = brisk__align_up((uintptr_t)r, window);
  if (atomic_load(&brisk__pagemap_root[w / window]) != NULL) return 5;
  char *hole = (char *)w + window / 2;
  if (munmap(hole, grown) != 0) return 6;
  /* ... made the highest gap of that size: every gap above it is filled. */
  enum { FILLERS = 4096 };
  static void *filler[FILLERS];
  int n = 0;
  for (; n < FILLERS; n++) {
    filler[n] = mmap(NULL, grown, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (filler[n] == MAP_FAILED) return 7;
    if (filler[n] == hole) break;
  }
  if (n == FILLERS) return 8;
  munmap(hole, grown);
  /* Room for the growth, not for a 2 MiB leaf. */
  set_as_limit(vm_now() + (grown - old) + 1 * MiB);
  for (int i = 0; i < 50; i++) {
    errno = 0;
    void *q = brisk_realloc(p, grown);
    if (q != NULL) return 9;
    if (errno != ENOMEM) return 10;
    if (!stamped(p, old, 7)) return 11;
    if (brisk_usable_size(p) != old) return 12;
  }
  set_as_limit(RLIM_INFINITY);
  unsigned char *q = brisk_realloc(p, grown);
  if ((void *)q != hole) return 13; /* the limited tries went there too */
  if (!stamped(q, old, 7)) return 14;
  brisk_free(q);
  return 0;
}

static void test_realloc_into_a_window_without_page_map_leaf_fails_with_enomem(void **state) {
  (void)state;
  assert_int_equal(run_in_child(realloc_where_the_page_map_has_no_leaf, "realloc_no_leaf"), 0);
}

/* Large reallocs of every kind (heap runs, blocks mapped alone, growing and
 * shrinking) under an address-space limit: a failure is NULL with ENOMEM and the
 * block as it was; nothing aborts. */
static int large_reallocs_under_a_limit(void) {
  enum { BLOCKS = 8, ROUNDS = 3000 };
  unsigned char *b[BLOCKS] = {0};
  size_t size[BLOCKS] = {0};
  unsigned seed[BLOCKS] = {0};
  unsigned long long x = 88172645463325252ull;
  int failures = 0;
  set_as_limit(vm_now() + 600 * MiB);
  for (int r = 0; r < ROUNDS; r++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    unsigned i = (unsigned)(x % BLOCKS);
    /* 40 KiB to 320 MiB, weighted to the small end */
    size_t want = (size_t)40 * KiB << (x >> 8) % 14;
    want += (size_t)(x >> 20) % want;
    errno = 0;
    unsigned char *q = brisk_realloc(b[i], want);
    if (q == NULL) {
      if (errno != ENOMEM) return 1;
      if (b[i] != NULL && !stamped(b[i], size[i], seed[i])) return 2;
      failures++;
      if (b[i] != NULL && (x >> 40) % 4 == 0) { /* make some room */
        brisk_free(b[i]);
        b[i] = NULL;
      }
      continue;
    }
    if (b[i] != NULL && !kept_stamp(q, want < size[i] ? want : size[i], size[i], seed[i])) return 3;
    b[i] = q;
    size[i] = want;
    seed[i] = (unsigned)r;
    stamp(q, want, seed[i]);
  }
  for (unsigned i = 0; i < BLOCKS; i++) brisk_free(b[i]);
  return failures > 0 ? 0 : 4; /* the limit was reached */
}

static void test_large_reallocs_under_an_address_space_limit_fail_cleanly(void **state) {
  (void)state;
  assert_int_equal(run_in_child(large_reallocs_under_a_limit, "large_reallocs_under_a_limit"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_freed_block_is_reused_without_mapping_more),
    cmocka_unit_test(test_larger_free_run_serves_smaller_request_with_its_pages),
    cmocka_unit_test(test_neighbouring_free_blocks_coalesce),
    cmocka_unit_test(test_realloc_grows_in_place_into_a_free_neighbour),
    cmocka_unit_test(test_heap_blocks_are_whole_slices),
    cmocka_unit_test(test_realloc_moves_keeping_contents),
    cmocka_unit_test(test_realloc_of_a_block_mapped_alone_uses_mremap),
    cmocka_unit_test(test_realloc_shrinks_in_place),
    cmocka_unit_test(test_idle_free_runs_are_purged),
    cmocka_unit_test(test_decay_returns_free_runs_beyond_recent_demand),
    cmocka_unit_test(test_thread_keeps_its_last_freed_block_as_spare),
    cmocka_unit_test(test_block_from_the_mmap_threshold_is_unmapped_at_once),
    cmocka_unit_test(test_calloc_of_reused_memory_is_zero_up_to_usable_size),
    cmocka_unit_test(test_huge_alignments),
    cmocka_unit_test(test_impossible_sizes_fail_with_enomem),
    cmocka_unit_test(test_free_run_gives_way_before_enomem),
    cmocka_unit_test(test_realloc_into_a_window_without_page_map_leaf_fails_with_enomem),
    cmocka_unit_test(test_large_reallocs_under_an_address_space_limit_fail_cleanly),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
