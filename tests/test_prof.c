/* Heap profiles (BRISK_PROF, prof.c): a workload with known allocation sites
 * (small, medium, large, calloc, aligned, realloc'd, freed and half-freed
 * blocks, one site in two threads) is profiled, and each site's estimated live
 * bytes, unsampled as pprof does it, must match the truth within five standard
 * deviations of the sampler's estimate.
 *
 * Run with BRISK_PROF=1 BRISK_PROF_SAMPLE=16K (and BRISK_PROF_FILE= so that
 * this process writes no profile at exit). Modes:
 *   test_prof                the cmocka tests (brisk_prof_dump; the profile
 *                            at exit and on the trigger, from a re-executed child)
 *   test_prof write FILE     the workload, then brisk_prof_dump(FILE) (for the
 *                            google-pprof test, tests/prof_pprof.sh)
 *   test_prof child TRIGGER  the workload, then the trigger file, waiting
 *                            until the purge thread has taken it away */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "brisk.h"

/* ------------------------------------------------------------------------------
   The workload: each site is one noinline function with one allocation call,
   whose result is stored after the call (so the call is no tail call and the
   return address lies in the site).
------------------------------------------------------------------------------ */
#define N_SMALL 300000 /* 48 bytes: 14.4 MB */
#define N_MID 6000     /* 3000 bytes: 18 MB */
#define N_BIG 200      /* 100000 bytes: 20 MB, large blocks */
#define N_CALLOC 40000 /* 400 bytes: 16 MB */
#define N_ALIGNED 20000 /* 700 bytes, 64-aligned: 14 MB */
#define N_FREED 40000  /* 512 bytes, all freed */
#define N_HALF 40000   /* 640 bytes, every other one freed */
#define N_THREAD 20000 /* 1000 bytes per thread, two threads */

/* One body per site, called as it is: no clone, no inlining. */
#ifdef __clang__
#define SITE __attribute__((noinline))
#else
#define SITE __attribute__((noipa))
#endif

/* volatile: a store the program never reads back would be dropped, and with it
 * the site's frame (the call becoming a tail call) */
static void *volatile small_blocks[N_SMALL], *volatile mid_blocks[N_MID], *volatile big_blocks[N_BIG];
static void *volatile calloc_blocks[N_CALLOC], *volatile aligned_blocks[N_ALIGNED];
static void *volatile freed_blocks[N_FREED], *volatile half_blocks[N_HALF];
static void *volatile thread_blocks[2][N_THREAD];

SITE static void site_small(int i) { small_blocks[i] = brisk_malloc(48); }
SITE static void site_mid(int i) { mid_blocks[i] = brisk_malloc(3000); }
SITE static void site_big(int i) { big_blocks[i] = brisk_malloc(100000); }
/* half of site_big's blocks move here: the profile counts them as this site's */
SITE static void site_realloc(int i) { big_blocks[i] = brisk_realloc(big_blocks[i], 150000); }
SITE static void site_calloc(int i) { calloc_blocks[i] = brisk_calloc(1, 400); }
SITE static void site_aligned(int i) { aligned_blocks[i] = brisk_aligned_alloc(64, 700); }
SITE static void site_freed(int i) { freed_blocks[i] = brisk_malloc(512); }
SITE static void site_half(int i) { half_blocks[i] = brisk_malloc(640); }
SITE static void site_thread(int t, int i) { thread_blocks[t][i] = brisk_malloc(1000); }
/* fails (ENOMEM): sampled for certain, and then no allocation of the profile's */
static void *volatile failed;
SITE static void site_fails(void) { failed = brisk_malloc(PTRDIFF_MAX); }

typedef struct {
  const char *name;
  void *fn;
  size_t size;
  size_t live; /* blocks live at the dump */
} site_t;

static site_t sites[] = {
    {"site_small", (void *)site_small, 48, N_SMALL},
    {"site_mid", (void *)site_mid, 3000, N_MID},
    {"site_big", (void *)site_big, 100000, N_BIG / 2},
    {"site_realloc", (void *)site_realloc, 150000, N_BIG / 2},
    {"site_calloc", (void *)site_calloc, 400, N_CALLOC},
    {"site_aligned", (void *)site_aligned, 700, N_ALIGNED},
    {"site_freed", (void *)site_freed, 512, 0},
    {"site_half", (void *)site_half, 640, N_HALF / 2},
    {"site_thread", (void *)site_thread, 1000, 2 * N_THREAD},
    {"site_fails", (void *)site_fails, PTRDIFF_MAX, 0},
};
#define N_SITES (sizeof sites / sizeof sites[0])

static void *thread_main(void *arg) {
  int t = (int)(intptr_t)arg;
  for (int i = 0; i < N_THREAD; i++) site_thread(t, i);
  return NULL;
}

static void fail_now(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static void workload(void) {
  pthread_t th[2];
  for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, thread_main, (void *)(intptr_t)t);
  for (int i = 0; i < N_SMALL; i++) site_small(i);
  for (int i = 0; i < N_MID; i++) site_mid(i);
  for (int i = 0; i < N_BIG; i++) site_big(i);
  for (int i = 0; i < N_BIG; i += 2) site_realloc(i);
  for (int i = 0; i < N_CALLOC; i++) site_calloc(i);
  for (int i = 0; i < N_ALIGNED; i++) site_aligned(i);
  for (int i = 0; i < N_FREED; i++) site_freed(i);
  for (int i = 0; i < N_HALF; i++) site_half(i);
  for (int i = 0; i < N_FREED; i++) brisk_free(freed_blocks[i]);
  for (int i = 0; i < N_HALF; i += 2) brisk_free(half_blocks[i]);
  for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
  for (int i = 0; i < 10; i++) site_fails();
  if (failed != NULL) fail_now("malloc(PTRDIFF_MAX) succeeded");
  /* every block as asked: calloc's zero, the alignment, realloc's copy */
  for (int i = 0; i < N_CALLOC; i++)
    for (int j = 0; j < 400; j++)
      if (((unsigned char *)calloc_blocks[i])[j] != 0) fail_now("calloc block %p not zero at %d", calloc_blocks[i], j);
  for (int i = 0; i < N_ALIGNED; i++)
    if ((uintptr_t)aligned_blocks[i] % 64 != 0) fail_now("aligned block %p", aligned_blocks[i]);
  for (int i = 0; i < N_SMALL; i++)
    if (brisk_usable_size(small_blocks[i]) < 48) fail_now("small block %p too short", small_blocks[i]);
}

/* ------------------------------------------------------------------------------
   The profile: "heap profile: ... @ heap_v2/RATE", then one line per stack
   "<live objs>: <live bytes> [<objs>: <bytes>] @ 0x.. 0x..", a blank line and
   MAPPED_LIBRARIES.
------------------------------------------------------------------------------ */

/* The site whose function holds the return address pc: the nearest site that
 * starts below it, if pc lies within 128 bytes of its start (the sites are a
 * few instructions each). */
static int site_of(uintptr_t pc) {
  int best = -1;
  for (size_t i = 0; i < N_SITES; i++) {
    uintptr_t f = (uintptr_t)sites[i].fn;
    if (f < pc && pc - f < 128 && (best < 0 || f > (uintptr_t)sites[best].fn)) best = (int)i;
  }
  return best;
}

/* The load address of this test's executable in the maps that f holds from
 * its current position (offset 0 of the file that /proc/self/exe names); 0 if
 * none. A profile written by a child process (another address layout) is read
 * by moving its addresses by the difference to this process's own. */
static uintptr_t exe_base(FILE *f) {
  static char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return 0;
  exe[n] = 0;
  char line[4096 + 128];
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long start, end, off;
    char perms[8];
    int path_at = 0;
    if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %n", &start, &end, perms, &off, &path_at) < 4 || path_at == 0) continue;
    line[strcspn(line, "\n")] = 0;
    if (off == 0 && strcmp(line + path_at, exe) == 0) return (uintptr_t)start;
  }
  return 0;
}

static uintptr_t own_base(void) {
  FILE *m = fopen("/proc/self/maps", "r");
  if (m == NULL) return 0;
  uintptr_t b = exe_base(m);
  fclose(m);
  return b;
}

/* Reads path; fills est[] with each site's unsampled live bytes. NULL, or the
 * first problem found. */
static double alloc_bytes[N_SITES]; /* the [objs: bytes] part, per site */

static const char *profile_read(const char *path, double est[N_SITES], long want_rate) {
  static char why[512];
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    snprintf(why, sizeof why, "cannot open %s: %s", path, strerror(errno));
    return why;
  }
  for (size_t i = 0; i < N_SITES; i++) est[i] = alloc_bytes[i] = 0;
  char line[4096];
  uintptr_t base = 0;
  while (fgets(line, sizeof line, f) != NULL)
    if (strcmp(line, "MAPPED_LIBRARIES:\n") == 0) {
      base = exe_base(f);
      break;
    }
  rewind(f);
  if (base == 0) {
    fclose(f);
    return "the maps name no mapping of this test's executable";
  }
  uintptr_t shift = own_base() - base;
  unsigned long long hlo, hlb, hao, hab, sum_lo = 0, sum_lb = 0;
  long rate;
  const char *err = NULL;
  bool maps = false;
  if (fgets(line, sizeof line, f) == NULL ||
      sscanf(line, "heap profile: %llu: %llu [%llu: %llu] @ heap_v2/%ld", &hlo, &hlb, &hao, &hab, &rate) != 5) {
    err = "no heap_v2 header line";
    goto out;
  }
  if (rate != want_rate) {
    snprintf(why, sizeof why, "rate %ld in the header, %ld asked for", rate, want_rate);
    err = why;
    goto out;
  }
  while (fgets(line, sizeof line, f) != NULL) {
    if (line[0] == '\n') continue;
    if (strcmp(line, "MAPPED_LIBRARIES:\n") == 0) {
      maps = true;
      break;
    }
    unsigned long long lo, lb, ao, ab;
    int at;
    if (sscanf(line, "%llu: %llu [%llu: %llu] @%n", &lo, &lb, &ao, &ab, &at) != 4) {
      snprintf(why, sizeof why, "malformed stack line: %.300s", line);
      err = why;
      goto out;
    }
    sum_lo += lo;
    sum_lb += lb;
    uintptr_t first = (uintptr_t)strtoull(line + at, NULL, 16) + shift;
    int s = site_of(first);
    if (s < 0) {
      snprintf(why, sizeof why, "a stack whose first frame %#lx is no site: %.300s", (unsigned long)first, line);
      err = why;
      goto out;
    }
    alloc_bytes[s] += (double)ab;
    if (lo == 0) continue;
    double avg = (double)lb / (double)lo;
    est[s] += (double)lb / (1 - exp(-avg / (double)rate)); /* as pprof unsamples heap_v2 */
  }
  if (!maps) err = "no MAPPED_LIBRARIES section";
  else if (sum_lo != hlo || sum_lb != hlb) err = "the header's totals are not the sum of the stacks'";
  else if (fgets(line, sizeof line, f) == NULL || strchr(line, '-') == NULL) err = "no maps after MAPPED_LIBRARIES";
out:
  fclose(f);
  return err;
}

/* The estimate of n live blocks of s bytes: each sampled with probability
 * p = 1 - exp(-s / rate), independently, and counted as s / p. The number
 * sampled is binomial, of mean np and standard deviation sqrt(np(1 - p)); it
 * may stray 5 of those, and 2 blocks more: where p is nearly 1 (a 150,000-byte
 * block at a 16K rate escapes once in 10,000) the deviation is a small fraction
 * of a block, and one block escaping in a hundred (1 % of runs) is no error.
 * Three escaping there is a chance of 2e-7. A site with none live must show 0. */
static const char *profile_check(const char *path, long rate) {
  static char why[1024];
  double est[N_SITES];
  const char *err = profile_read(path, est, rate);
  if (err != NULL) return err;
  for (size_t i = 0; i < N_SITES; i++) {
    if (sites[i].fn == (void *)site_fails) {
      if (alloc_bytes[i] != 0) {
        snprintf(why, sizeof why, "site_fails: %.0f bytes sampled, though no allocation succeeded", alloc_bytes[i]);
        return why;
      }
      continue;
    }
    double s = (double)sites[i].size, n = (double)sites[i].live;
    double p = 1 - exp(-s / (double)rate);
    double truth = s * n, slack = n > 0 ? (5 * sqrt(n * p * (1 - p)) + 2) * s / p : 0;
    if (fabs(est[i] - truth) > slack) {
      snprintf(why, sizeof why, "%s: estimated %.0f live bytes, truly %.0f (allowed %.0f)", sites[i].name, est[i],
               truth, slack);
      return why;
    }
  }
  return NULL;
}

static long env_rate(void) {
  const char *r = getenv("BRISK_PROF_SAMPLE");
  if (r == NULL) return 512 * 1024;
  char *end;
  long v = strtol(r, &end, 10);
  if (*end == 'K' || *end == 'k') v <<= 10;
  return v;
}

static void expect_ok(const char *err) {
  if (err != NULL) fail_msg("%s", err);
}

/* ------------------------------------------------------------------------------
   Tests
------------------------------------------------------------------------------ */

static void test_dump_estimates_each_sites_live_bytes(void **state) {
  (void)state;
  workload();
  char path[] = "/tmp/brisk_prof_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(brisk_prof_dump(path), 0);
  expect_ok(profile_check(path, env_rate()));
  unlink(path);
}

static void test_dump_rejects_bad_paths(void **state) {
  (void)state;
  assert_int_equal(brisk_prof_dump(NULL), EINVAL);
  assert_int_equal(brisk_prof_dump(""), EINVAL);
  assert_int_equal(brisk_prof_dump("/nonexistent-dir/x.heap"), ENOENT);
}

/* A re-executed child (mode "child") runs the workload, makes the trigger file
 * and exits once the purge thread has removed it: its profile must be in
 * DIR/prof.PID.heap.1 (the trigger's) and DIR/prof.PID.heap (at exit). */
static void test_profiles_at_exit_and_on_the_trigger(void **state) {
  (void)state;
  char dir[] = "/tmp/brisk_prof_dir_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char file[256], trigger[256];
  snprintf(file, sizeof file, "BRISK_PROF_FILE=%s/prof.%%p.heap", dir);
  snprintf(trigger, sizeof trigger, "%s/dump-now", dir);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char tenv[300];
    snprintf(tenv, sizeof tenv, "BRISK_PROF_TRIGGER=%s", trigger);
    putenv(file);
    putenv(tenv);
    execl("/proc/self/exe", "test_prof", "child", trigger, (char *)NULL);
    _exit(127);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("the child failed (status %#x)", st);
  char got[300];
  snprintf(got, sizeof got, "%s/prof.%d.heap.1", dir, (int)pid);
  expect_ok(profile_check(got, env_rate()));
  unlink(got);
  snprintf(got, sizeof got, "%s/prof.%d.heap", dir, (int)pid);
  expect_ok(profile_check(got, env_rate()));
  unlink(got);
  rmdir(dir);
}

static int child_main(const char *trigger) {
  workload();
  FILE *t = fopen(trigger, "w");
  if (t == NULL) return 2;
  fclose(t);
  /* the purge thread looks every 100 ms */
  struct stat sb;
  for (int i = 0; i < 200 && stat(trigger, &sb) == 0; i++) usleep(50 * 1000);
  if (stat(trigger, &sb) == 0) {
    fprintf(stderr, "the trigger file %s is still there after 10 s\n", trigger);
    return 3;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "write") == 0) {
    workload();
    int err = brisk_prof_dump(argv[2]);
    if (err != 0) fprintf(stderr, "brisk_prof_dump: %s\n", strerror(err));
    return err != 0;
  }
  if (argc == 3 && strcmp(argv[1], "child") == 0) return child_main(argv[2]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dump_rejects_bad_paths),
      cmocka_unit_test(test_dump_estimates_each_sites_live_bytes),
      cmocka_unit_test(test_profiles_at_exit_and_on_the_trigger),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
