/* Guarded blocks (BRISK_GUARD_SAMPLE). ctest runs this binary twice:
 *   test_guard       with BRISK_GUARD_SAMPLE=1, so that every small block is
 *                    guarded while a slot is free: the placement, the reports of
 *                    an overflow, an underflow, a use after free and a double
 *                    free, each in a forked child that must abort with one line;
 *   test_guard_rate  (argument "rate") with the default rate: about one block
 *                    per 128 MiB allocated is guarded. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "api_helpers.h"
#include "abort_child.h"
#include "brisk.h"

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* A guarded block ends at a page boundary and is exactly its 16-byte-rounded
 * size. The tests use sizes whose class is larger (1008 bytes: a 1024-byte
 * class), so that a plain block never looks guarded. */
static int guarded(const void *p, size_t size) {
  size_t usable = (size + 15) & ~(size_t)15;
  return ((uintptr_t)p + usable) % page_size() == 0 && brisk_usable_size(p) == usable;
}

/* The calls whose addresses the reports must name: not inlined, and not tail
 * calls (the code after them), so that the return address is in them. */
static __attribute__((noinline)) void *alloc_here(size_t n) { return opaque_ptr(brisk_malloc(n)); }
static __attribute__((noinline)) void free_here(void *p) {
  brisk_free(opaque_ptr(p));
  __asm__ volatile("" ::: "memory");
}

/* Whether the line names, after `after`, an address inside fn's first bytes
 * (where its call of malloc or free is). */
static int names_call_in(const char *line, const char *after, void *fn) {
  const char *s = strstr(line, after);
  if (s == NULL) return 0;
  s += strlen(after);
  if (strncmp(s, "0x", 2) != 0) return 0;
  uintptr_t a = (uintptr_t)strtoull(s + 2, NULL, 16);
  return a > (uintptr_t)fn && a < (uintptr_t)fn + 64;
}

/* ------------------------------------------------------------------------------
   Placement and the ordinary calls
------------------------------------------------------------------------------ */

static void test_sampled_block_ends_at_a_page_and_works(void **state) {
  (void)state;
  char *p = alloc_here(200);
  expect(guarded(p, 200), "a 200-byte block at %p (usable %zu) is not guarded", (void *)p, brisk_usable_size(p));
  memset(p, 0xab, 208); /* its usable bytes, up to the guard page */
  char *q = brisk_realloc(p, 3000);
  assert_non_null(q);
  for (size_t i = 0; i < 208; i++) assert_int_equal((unsigned char)q[i], 0xab);
  expect(guarded(q, 3000), "the realloc'd block %p is not guarded", (void *)q);
  brisk_free(q);
  /* calloc from a slot used before is zero up to its usable size */
  for (int i = 0; i < 600; i++) {
    unsigned char *z = brisk_calloc(1, 100);
    assert_non_null(z);
    for (size_t k = 0; k < brisk_usable_size(z); k++) assert_int_equal(z[k], 0);
    memset(z, 0xff, brisk_usable_size(z));
    brisk_free(z);
  }
  /* aligned requests are never guarded: a guarded block is only 16-aligned */
  void *a = brisk_aligned_alloc(256, 200);
  assert_int_equal((uintptr_t)a % 256, 0);
  brisk_free(a);
}

/* Every slot live: sampling goes on with plain blocks, and they work. */
static void test_full_pool_falls_back_to_plain_blocks(void **state) {
  (void)state;
  enum { N = 600 };
  static char *b[N];
  int plain = 0;
  for (int i = 0; i < N; i++) {
    b[i] = brisk_malloc(1008);
    assert_non_null(b[i]);
    memset(b[i], i, 1008);
    plain += !guarded(b[i], 1008);
  }
  expect(plain >= N - 256, "only %d of %d live blocks are plain: the pool has 256 slots", plain, N);
  for (int i = 0; i < N; i++) {
    for (int k = 0; k < 1008; k++) assert_int_equal((unsigned char)b[i][k], (unsigned char)i);
    brisk_free(b[i]);
  }
  char *p = brisk_malloc(1008);
  expect(guarded(p, 1008), "after the frees, a new block is not guarded");
  brisk_free(p);
}

/* ------------------------------------------------------------------------------
   The reports (each wrong call runs in a child)
------------------------------------------------------------------------------ */

static void overflow_by_one(void) {
  char *p = alloc_here(1008);
  if (!guarded(p, 1008)) _exit(3);
  report(p);
  ((volatile char *)p)[1008] = 1;
}

static void underflow_by_a_page(void) {
  char *p = alloc_here(1008);
  if (!guarded(p, 1008)) _exit(3);
  report(p);
  (void)((volatile char *)p)[-(long)page_size()];
}

static void read_after_free(void) {
  char *p = alloc_here(1008);
  if (!guarded(p, 1008)) _exit(3);
  free_here(p);
  /* the slot stays closed while the others are used */
  for (int i = 0; i < 100; i++) brisk_free(brisk_malloc(1008));
  report(p);
  (void)((volatile char *)p)[3];
}

static void free_twice(void) {
  char *p = alloc_here(1008);
  if (!guarded(p, 1008)) _exit(3);
  brisk_free(p);
  brisk_free(report(p));
}

static void free_inside(void) {
  char *p = alloc_here(1008);
  if (!guarded(p, 1008)) _exit(3);
  brisk_free(report(p + 16));
}

/* The child's one brisk line, after the checks of expect_abort; NULL if none. */
static const char *brisk_line(const outcome_t *out) {
  const char *s = strstr(out->err, "brisk: ");
  return s;
}

static void expect_report(void (*wrong)(void), const char *what, const char *const *words, bool freed) {
  expect_abort(wrong, what, words);
  static outcome_t out;
  run_capturing(wrong, &out); /* again, to read the sites */
  const char *line = brisk_line(&out);
  assert_non_null(line);
  expect(names_call_in(line, "allocated by ", (void *)alloc_here),
         "the report does not name the malloc call in alloc_here (%p): \"%s\"", (void *)alloc_here, line);
  if (freed)
    expect(names_call_in(line, "freed by ", (void *)free_here),
           "the report does not name the free call in free_here (%p): \"%s\"", (void *)free_here, line);
}

static const char *const overflow_words[] = {"write at", NULL};
static const char *const offset_past_end[] = {"offset 1008 of the 1008-byte block", NULL};
static const char *const read_words[] = {"read at", NULL};
static const char *const double_free[] = {"double free", NULL};
static const char *const invalid_pointer[] = {"invalid pointer", NULL};

static void test_overflow_past_a_guarded_block_aborts_naming_block_size_and_caller(void **state) {
  (void)state;
  expect_abort(overflow_by_one, "heap overflow", offset_past_end);
  expect_report(overflow_by_one, "heap overflow", overflow_words, false);
}

static void test_underflow_aborts(void **state) {
  (void)state;
  expect_report(underflow_by_a_page, "heap underflow", read_words, false);
}

static void test_use_after_free_of_a_guarded_block_aborts_naming_both_callers(void **state) {
  (void)state;
  static const char *const offset_3[] = {"offset 3 of the 1008-byte block", NULL};
  expect_abort(read_after_free, "use after free", offset_3);
  expect_report(read_after_free, "use after free", read_words, true);
}

static void test_double_free_of_a_guarded_block_aborts(void **state) {
  (void)state;
  expect_abort(free_twice, "free()", double_free);
}

static void test_free_inside_a_guarded_block_aborts(void **state) {
  (void)state;
  expect_abort(free_inside, "free()", invalid_pointer);
}

/* ------------------------------------------------------------------------------
   The default rate (test_guard_rate)
------------------------------------------------------------------------------ */

/* 8 GiB in 1000-byte blocks, each freed at once: with gaps of mean 128 MiB, 64
 * samples are expected (a Poisson count: below 30 or above 110 happens with
 * odds under one in a million), and every one finds a free slot. */
static void test_default_rate_guards_one_block_per_128_mib(void **state) {
  (void)state;
  size_t total = 0;
  unsigned n = 0;
  while (total < 8 * GiB) {
    char *p = brisk_malloc(1000);
    assert_non_null(p);
    n += guarded(p, 1000);
    p[0] = 1;
    brisk_free(p);
    total += 1000;
  }
  expect(n >= 30 && n <= 110, "%u guarded blocks in 8 GiB allocated, want about 64", n);
}

static int setup(void **state) {
  (void)state;
  brisk_free(brisk_malloc(1)); /* start brisk here: see test_bad_usage */
  return abort_child_setup();
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sampled_block_ends_at_a_page_and_works),
      cmocka_unit_test(test_full_pool_falls_back_to_plain_blocks),
      cmocka_unit_test(test_overflow_past_a_guarded_block_aborts_naming_block_size_and_caller),
      cmocka_unit_test(test_underflow_aborts),
      cmocka_unit_test(test_use_after_free_of_a_guarded_block_aborts_naming_both_callers),
      cmocka_unit_test(test_double_free_of_a_guarded_block_aborts),
      cmocka_unit_test(test_free_inside_a_guarded_block_aborts),
  };
  const struct CMUnitTest rate[] = {
      cmocka_unit_test(test_default_rate_guards_one_block_per_128_mib),
  };
  if (argc > 1 && strcmp(argv[1], "rate") == 0) return cmocka_run_group_tests(rate, setup, NULL);
  return cmocka_run_group_tests(tests, setup, NULL);
}
