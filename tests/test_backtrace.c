/* The profiler's stack walk (src/backtrace.c) against libgcc's unwinder, frame
 * for frame: plain and deep recursion, frames in libc (qsort's comparator),
 * frames kept by %rbp (alloca), a realigned frame, unoptimised code, a signal
 * handler (which must fall back to libgcc, and still agree), and threads
 * walking at once. Also that the rules are read once, not at every walk, and
 * that a walk kept from an earlier sample is used only where the stack still
 * holds what it read. */
#include <alloca.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backtrace.h"

#define MAX 64

typedef struct {
  uintptr_t fast[MAX], slow[MAX];
  unsigned nf, ns;
} walks_t;

/* Both walks from the same frame: their first entries are two return
 * addresses in this function (two call sites), the rest must be equal. */
__attribute__((noinline)) static void walk_both(walks_t *w) {
  w->nf = brisk__unwind(w->fast, MAX);
  w->ns = brisk__unwind_slow(w->slow, MAX);
  __asm__ volatile("" ::: "memory");
}

/* Walks that fell back to libgcc so far. */
static uint64_t fallbacks(void) {
  uint64_t rules, falls;
  brisk__unwind_counts(&rules, &falls);
  return falls;
}

static void assert_same(const walks_t *w) {
  assert_true(w->nf >= 3);
  assert_int_equal(w->nf, w->ns);
  /* pcs[0] is in walk_both, at its two call sites */
  assert_true(w->fast[0] != w->slow[0]);
  uintptr_t d = w->fast[0] > w->slow[0] ? w->fast[0] - w->slow[0] : w->slow[0] - w->fast[0];
  assert_true(d < 64);
  for (unsigned i = 1; i < w->nf; i++) {
    if (w->fast[i] != w->slow[i]) fail_msg("frame %u: %#lx against libgcc's %#lx", i,
                                           (unsigned long)w->fast[i], (unsigned long)w->slow[i]);
  }
}

static __thread volatile int sink; /* per thread: test_threads walks from four at once */

__attribute__((noinline)) static void recurse(walks_t *w, int depth) {
  if (depth == 0) walk_both(w);
  else recurse(w, depth - 1);
  sink++; /* no tail call */
}

static void test_recursion(void **state) {
  (void)state;
  for (int depth = 0; depth < 12; depth++) {
    walks_t w;
    recurse(&w, depth);
    assert_same(&w);
  }
  /* deeper than the buffer: both stop at MAX */
  walks_t w;
  recurse(&w, MAX + 10);
  assert_int_equal(w.nf, MAX);
  assert_same(&w);
}

static walks_t qsort_walk;
static int qsort_walked;

static int cmp(const void *a, const void *b) {
  if (!qsort_walked) {
    qsort_walked = 1;
    walk_both(&qsort_walk);
  }
  return *(const int *)a - *(const int *)b;
}

static void test_libc_frames(void **state) {
  (void)state;
  int v[64];
  for (int i = 0; i < 64; i++) v[i] = (i * 37) % 64;
  qsort_walked = 0;
  uint64_t falls = fallbacks();
  qsort(v, 64, sizeof v[0], cmp);
  assert_true(qsort_walked);
  assert_same(&qsort_walk);
  assert_int_equal(fallbacks(), falls); /* the table's walk, not libgcc's */
}

__attribute__((noinline)) static void with_alloca(walks_t *w, size_t n) {
  volatile char *p = alloca(n);
  p[0] = 1;
  walk_both(w);
  sink += p[0];
}

static void test_rbp_frames(void **state) {
  (void)state;
  walks_t w;
  uint64_t falls = fallbacks();
  with_alloca(&w, 100 + (size_t)sink % 7);
  assert_same(&w);
  assert_int_equal(fallbacks(), falls); /* the table's walk, not libgcc's */
}

/* A realigned frame whose CFA gcc can only say as "the word at %rbp - 8"
 * (DW_CFA_def_cfa_expression, with %rbp saved at %rbp + 0: a DRAP frame): an
 * argument on the stack (the seventh), an over-aligned variable-length array
 * and a stack that may come misaligned. */
__attribute__((noinline, force_align_arg_pointer)) static void realigned(walks_t *w, long a, long b, long c,
                                                                         long d, long e, int n) {
  _Alignas(32) volatile char buf[n];
  buf[0] = (char)(a + b + c + d + e);
  walk_both(w);
  sink += buf[0];
}

static void test_realigned(void **state) {
  (void)state;
  walks_t w;
  uint64_t falls = fallbacks();
  realigned(&w, 1, 2, 3, 4, 5, 40 + sink % 3);
  assert_same(&w);
  assert_int_equal(fallbacks(), falls); /* the table's walk, not libgcc's */
}

__attribute__((noinline, optimize("O0"))) static void unoptimised(walks_t *w, int depth) {
  if (depth > 0) unoptimised(w, depth - 1);
  else walk_both(w);
}

static void test_unoptimised(void **state) {
  (void)state;
  walks_t w;
  uint64_t falls = fallbacks();
  unoptimised(&w, 3);
  assert_same(&w);
  assert_int_equal(fallbacks(), falls); /* the table's walk, not libgcc's */
}

static walks_t sig_walk;
static volatile sig_atomic_t sig_done;

static void on_signal(int sig) {
  (void)sig;
  walk_both(&sig_walk);
  sig_done = 1;
}

static void test_signal_frame(void **state) {
  (void)state;
  uint64_t rules0, falls0, rules1, falls1;
  brisk__unwind_counts(&rules0, &falls0);
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
  sig_done = 0;
  raise(SIGUSR1);
  assert_true(sig_done);
  brisk__unwind_counts(&rules1, &falls1);
  /* the kernel's signal frame is libgcc's to walk, and the walk says so */
  assert_true(falls1 > falls0);
  assert_same(&sig_walk);
  signal(SIGUSR1, SIG_DFL);
}

static void test_rules_kept(void **state) {
  (void)state;
  walks_t w;
  uint64_t rules0 = 0, falls0 = 0, rules1, falls1;
  for (int i = 0; i < 101; i++) {
    recurse(&w, 5); /* the rules of this stack are read in the first round at the latest */
    assert_same(&w);
    if (i == 0) brisk__unwind_counts(&rules0, &falls0);
  }
  brisk__unwind_counts(&rules1, &falls1);
  assert_int_equal(falls1, falls0); /* ordinary frames never need libgcc */
  /* each walk_both's slow walk reads nothing through the table; the fast one
   * finds every rule kept */
  assert_int_equal(rules1, rules0);
}

/* 600 functions, each a call site of its own: more return addresses than
 * the rule table's first size holds, so that it grows. */
#define SITE(n)                                                     \
  __attribute__((noinline)) static void site_##n(walks_t *w) {      \
    walk_both(w);                                                   \
    sink++;                                                         \
  }
#define SITES10(n) SITE(n##0) SITE(n##1) SITE(n##2) SITE(n##3) SITE(n##4) \
  SITE(n##5) SITE(n##6) SITE(n##7) SITE(n##8) SITE(n##9)
#define SITES100(n) SITES10(n##0) SITES10(n##1) SITES10(n##2) SITES10(n##3) SITES10(n##4) \
  SITES10(n##5) SITES10(n##6) SITES10(n##7) SITES10(n##8) SITES10(n##9)
SITES100(1) SITES100(2) SITES100(3) SITES100(4) SITES100(5) SITES100(6)
#define PTR(n) site_##n,
#define PTRS10(n) PTR(n##0) PTR(n##1) PTR(n##2) PTR(n##3) PTR(n##4) PTR(n##5) PTR(n##6) PTR(n##7) \
  PTR(n##8) PTR(n##9)
#define PTRS100(n) PTRS10(n##0) PTRS10(n##1) PTRS10(n##2) PTRS10(n##3) PTRS10(n##4) PTRS10(n##5) \
  PTRS10(n##6) PTRS10(n##7) PTRS10(n##8) PTRS10(n##9)
static void (*const sites[])(walks_t *) = {PTRS100(1) PTRS100(2) PTRS100(3) PTRS100(4) PTRS100(5) PTRS100(6)};

/* Walks from each site, after taking the counts into counts (NULL: not). */
__attribute__((noinline)) static void walk_sites(uint64_t *counts) {
  if (counts != NULL) brisk__unwind_counts(&counts[0], &counts[1]);
  for (size_t i = 0; i < sizeof sites / sizeof sites[0]; i++) {
    walks_t w;
    sites[i](&w);
    assert_same(&w);
  }
}

static void test_many_sites(void **state) {
  (void)state;
  uint64_t before[2] = {0, 0}, after[2];
  static volatile int rounds = 2;
  for (int r = 0; r < rounds; r++) walk_sites(r == 1 ? before : NULL); /* one call site for both */
  brisk__unwind_counts(&after[0], &after[1]);
  assert_int_equal(after[1], before[1]);
  /* the table grew to keep them all: the second round read no rule */
  assert_int_equal(after[0], before[0]);
}

/* A walk from a stack already walked is the kept one, checked against the
 * stack, and the same as libgcc's. */
static void test_recalled_walk_is_the_same(void **state) {
  (void)state;
  walks_t w;
  uint64_t before = brisk__unwind_recalled();
  for (int i = 0; i < 50; i++) {
    recurse(&w, 7);
    assert_same(&w);
  }
  assert_true(brisk__unwind_recalled() - before >= 45);
}

/* Two callers with the same frame: walks through either start at the same
 * stack pointer, so each finds the other's walk kept. The return address into
 * the caller differs, and the check must see it. */
__attribute__((noinline)) static void via_a(walks_t *w) {
  walk_both(w);
  sink++;
}
__attribute__((noinline)) static void via_b(walks_t *w) {
  walk_both(w);
  sink++;
}

static void test_other_caller_at_the_same_stack_pointer(void **state) {
  (void)state;
  for (int i = 0; i < 40; i++) {
    walks_t w;
    (i & 1 ? via_b : via_a)(&w);
    assert_same(&w);
    assert_true(w.fast[1] - (uintptr_t)(i & 1 ? via_b : via_a) < 64); /* the caller's own */
  }
}

/* A frame kept by %rbp (alloca) whose %rbp differs while the stack pointer
 * at the walk does not: two outer callers of different frame sizes, the
 * deeper one asking for less alloca. The frame's return address is then found
 * through a different saved %rbp, and the check must compare that word too. */
__attribute__((noinline)) static void framed(walks_t *w, size_t n, uintptr_t *sp) {
  char *buf = alloca(n);
  __asm__ volatile("" : : "r"(buf) : "memory");
  *sp = (uintptr_t)buf; /* the bottom of the frame: where walk_both's starts */
  walk_both(w);
  sink++;
}
__attribute__((noinline)) static void outer_small(walks_t *w, size_t n, uintptr_t *sp) {
  framed(w, n, sp);
  sink++;
}
__attribute__((noinline)) static void outer_big(walks_t *w, size_t n, uintptr_t *sp) {
  volatile char pad[96];
  pad[0] = 1;
  framed(w, n, sp);
  sink += pad[0];
}

static void test_other_saved_rbp_at_the_same_stack_pointer(void **state) {
  (void)state;
  walks_t w;
  uintptr_t sp_small, sp_big;
  outer_small(&w, 512, &sp_small);
  outer_big(&w, 512, &sp_big);
  assert_true(sp_big < sp_small && sp_small - sp_big <= 256);
  size_t n_big = 512 - (sp_small - sp_big);
  outer_big(&w, n_big, &sp_big);
  assert_int_equal(sp_big, sp_small); /* the same stack pointer, another %rbp */
  for (int i = 0; i < 40; i++) {
    uintptr_t sp;
    if (i & 1) outer_big(&w, n_big, &sp);
    else outer_small(&w, 512, &sp);
    assert_same(&w);
    assert_true(w.fast[2] - (uintptr_t)(i & 1 ? outer_big : outer_small) < 256); /* framed's caller */
  }
}

static void *thread_walks(void *arg) {
  (void)arg;
  for (int i = 0; i < 2000; i++) {
    walks_t w;
    recurse(&w, i % 9);
    assert_same(&w);
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  pthread_t t[4];
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, thread_walks, NULL), 0);
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_recursion),  cmocka_unit_test(test_libc_frames), cmocka_unit_test(test_rbp_frames),
    cmocka_unit_test(test_realigned),  cmocka_unit_test(test_unoptimised), cmocka_unit_test(test_signal_frame),
    cmocka_unit_test(test_rules_kept), cmocka_unit_test(test_many_sites), cmocka_unit_test(test_threads),
    cmocka_unit_test(test_recalled_walk_is_the_same), cmocka_unit_test(test_other_caller_at_the_same_stack_pointer),
    cmocka_unit_test(test_other_saved_rbp_at_the_same_stack_pointer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
