/* test_bench_shim: the C shim over Google Benchmark, end to end. Registers C
 * benchmarks with arguments, thread counts, a thread sweep, setup/teardown, user
 * data and counters, runs them once through bs_main with a fixed iteration count
 * and JSON output to a file, then checks what ran (counted here) and what the JSON
 * says (names, iterations, counters, context).
 *
 * The JSON is Google Benchmark's: one flat object per benchmark, `"key": value`
 * pairs, so a benchmark's object is the text between the braces around its name. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h> /* cmocka needs these first */
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shim/bench_shim.h"

#define ITERATIONS 5    /* --shim_iterations */
#define MAX_THREADS 3   /* --shim_max_threads: not a power of two on purpose */
#define PAUSED_NS 20000000L /* slept with the clock stopped, per iteration */

/* What the benchmarks saw, checked after the run. */
static int setups, teardowns;
static atomic_int in_run;        /* between a setup and its teardown */
static atomic_int threads_done;  /* threads of the current run that left the loop */
static atomic_int order_errors;  /* fn outside setup..teardown, teardown too early */
static atomic_long widget_iterations;
static int marker;               /* its address is the benchmark's user data */

static char *json;               /* the whole JSON output */

static void widget_setup(bs_state *st) {
  setups++;
  atomic_store(&threads_done, 0);
  atomic_store(&in_run, 1);
}

static void widget_teardown(bs_state *st) {
  teardowns++;
  if (atomic_load(&threads_done) != bs_thread_count(st)) atomic_fetch_add(&order_errors, 1);
  atomic_store(&in_run, 0);
}

/* One item per iteration per unit of the argument; widgets: one per iteration. */
static void bench_widget(bs_state *st) {
  if (!atomic_load(&in_run)) atomic_fetch_add(&order_errors, 1);
  int64_t it = 0;
  while (bs_keep_running(st)) it++;
  atomic_fetch_add(&widget_iterations, (long)it);
  bs_items(st, it * bs_get_arg(st, 0));
  bs_counter(st, "widgets", (double)it, BS_RATE);
  bs_counter(st, "index_avg", bs_thread_index(st), BS_AVG_THREADS);
  bs_counter(st, "data_ok", bs_get_data(st) == &marker, BS_PLAIN);
  atomic_fetch_add(&threads_done, 1);
}

static void bench_sweep(bs_state *st) {
  while (bs_keep_running(st)) {
  }
  bs_items(st, bs_max_iterations(st));
}

static void bench_paused(bs_state *st) {
  const struct timespec nap = {0, PAUSED_NS};
  while (bs_keep_running(st)) {
    bs_pause(st);
    nanosleep(&nap, NULL);
    bs_resume(st);
  }
}

BS_REGISTRATION(test_register)
static void test_register(void) {
  bs_bench *w = bs_register("test/widget", bench_widget);
  const int64_t args[] = {8, 64};
  bs_args(w, args, 2);
  bs_threads(w, 1);
  bs_threads(w, 2);
  bs_real_time(w);
  bs_setup(w, widget_setup);
  bs_teardown(w, widget_teardown);
  bs_data(w, &marker);
  bs_threads_sweep(bs_register("test/sweep", bench_sweep));
  bs_register("test/paused", bench_paused);
}

/* ---- reading the JSON ---------------------------------------------------- */

/* The object of the benchmark named `name` as [*begin, *end), or 0. */
static int find_bench(const char *name, const char **begin, const char **end) {
  char key[256];
  snprintf(key, sizeof key, "\"name\": \"%s\",", name);
  const char *at = strstr(json, key);
  if (at == NULL) return 0;
  const char *b = at;
  while (b > json && *b != '{') b--;
  *begin = b;
  *end = strchr(at, '}');
  return *end != NULL;
}

/* The number after "key": in the benchmark's object; fails the test if absent. */
static double field(const char *name, const char *key) {
  const char *b, *e;
  if (!find_bench(name, &b, &e)) fail_msg("no benchmark %s in the JSON", name);
  char pat[128];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  const char *at = strstr(b, pat);
  if (at == NULL || at > e) fail_msg("%s has no %s", name, key);
  return strtod(at + strlen(pat), NULL);
}

static int run_group(void **state) {
  char path[] = "/tmp/test_bench_shim.XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  close(fd);
  char out[64], iters[64], threads[64];
  snprintf(out, sizeof out, "--benchmark_out=%s", path);
  snprintf(iters, sizeof iters, "--shim_iterations=%d", ITERATIONS);
  snprintf(threads, sizeof threads, "--shim_max_threads=%d", MAX_THREADS);
  char *argv[] = {"test_bench_shim", iters, threads, out, "--benchmark_out_format=json", NULL};
  int rc = bs_main(5, argv);

  FILE *f = fopen(path, "r");
  if (f == NULL || rc != 0) return -1;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  rewind(f);
  json = calloc(1, (size_t)size + 1);
  if (json == NULL || fread(json, 1, (size_t)size, f) != (size_t)size) return -1;
  fclose(f);
  unlink(path);
  return 0;
}

/* ---- the tests ----------------------------------------------------------- */

static void test_setup_and_teardown_bracket_every_run(void **state) {
  assert_int_equal(setups, 4); /* 2 arguments x 2 thread counts */
  assert_int_equal(teardowns, 4);
  assert_int_equal(atomic_load(&order_errors), 0);
}

static void test_every_thread_runs_the_fixed_iterations(void **state) {
  /* 2 arguments x (1 + 2 threads) x ITERATIONS */
  assert_int_equal(atomic_load(&widget_iterations), 2 * 3 * ITERATIONS);
  assert_int_equal(field("test/widget/8/iterations:5/real_time/threads:1", "iterations"),
                   ITERATIONS);
  assert_int_equal(field("test/widget/64/iterations:5/real_time/threads:2", "iterations"),
                   2 * ITERATIONS);
}

static void test_items_per_second_is_the_total_over_real_time(void **state) {
  const char *name = "test/widget/64/iterations:5/real_time/threads:2";
  double iterations = field(name, "iterations");
  double seconds = field(name, "real_time") * iterations * 1e-9; /* ns per iteration */
  double items = 64 * iterations;
  assert_true(seconds > 0);
  double ratio = field(name, "items_per_second") * seconds / items;
  assert_true(ratio > 0.99 && ratio < 1.01);
  assert_true(field(name, "items_per_iter") == 64);
  /* widgets, a rate of one per iteration, relates to items as 1 to 64 */
  double widgets = field(name, "widgets");
  assert_true(widgets > 0);
  double per = field(name, "items_per_second") / widgets;
  assert_true(per > 63.9 && per < 64.1);
}

static void test_counters_average_and_sum_over_threads(void **state) {
  const char *two = "test/widget/8/iterations:5/real_time/threads:2";
  assert_true(field(two, "index_avg") == 0.5); /* (0 + 1) / 2 */
  assert_true(field(two, "data_ok") == 2);     /* summed: both threads saw the data */
  assert_true(field(two, "peak_rss_mib") > 0);
  assert_true(field("test/sweep/iterations:5/real_time/threads:1", "peak_rss_mib") > 0);
}

static void test_sweep_runs_powers_of_two_and_the_maximum(void **state) {
  const char *b, *e;
  assert_true(find_bench("test/sweep/iterations:5/real_time/threads:1", &b, &e));
  assert_true(find_bench("test/sweep/iterations:5/real_time/threads:2", &b, &e));
  assert_true(find_bench("test/sweep/iterations:5/real_time/threads:3", &b, &e));
  assert_false(find_bench("test/sweep/iterations:5/real_time/threads:4", &b, &e));
}

static void test_paused_time_is_not_counted(void **state) {
  /* Each iteration sleeps PAUSED_NS with the clock stopped; what is left is a
   * few calls, far below the sleep whatever the machine's load. */
  double ns = field("test/paused/iterations:5", "real_time");
  assert_true(ns < PAUSED_NS / 2);
}

static void test_context_names_the_malloc_provider(void **state) {
  const char *at = strstr(json, "\"malloc_provider\": \"");
  assert_non_null(at);
  /* Not preloaded: glibc's malloc, from libc.so. */
  const char *end = strchr(at + 20, '"');
  assert_non_null(end);
  assert_non_null(memmem(at, (size_t)(end - at), "libc", 4));
  assert_non_null(strstr(json, "\"cpus_online\": \""));
  assert_non_null(strstr(json, "\"cpu_model\": \""));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_setup_and_teardown_bracket_every_run),
      cmocka_unit_test(test_every_thread_runs_the_fixed_iterations),
      cmocka_unit_test(test_items_per_second_is_the_total_over_real_time),
      cmocka_unit_test(test_counters_average_and_sum_over_threads),
      cmocka_unit_test(test_sweep_runs_powers_of_two_and_the_maximum),
      cmocka_unit_test(test_paused_time_is_not_counted),
      cmocka_unit_test(test_context_names_the_malloc_provider),
  };
  return cmocka_run_group_tests(tests, run_group, NULL);
}
