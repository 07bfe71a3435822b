/* fork() while other threads are inside malloc and free.
 *
 * Worker threads hammer the allocator (small blocks, and 1 MiB ones that take the
 * large path) while the main thread, and then a second thread, fork repeatedly.
 * Each child allocates and frees a lot, small and large, checks the contents, and
 * _exit(0)s; a child that deadlocks on an allocator lock held at the fork is caught
 * by alarm() in the child and by a deadline in the parent, which kills it.
 * Prints OK and exits 0 if every child succeeded. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Workers hammering malloc in the parent while it forks. */
#define WORKERS 2
/* Forks from the main thread, then from a non-main thread. */
#define MAIN_FORKS 200
#define THREAD_FORKS 60
/* A child gets this long before alarm() kills it; its work takes a few ms. */
#define CHILD_ALARM_S 10
/* The parent's own deadline per child, a little longer than the child's alarm. */
#define CHILD_DEADLINE_MS 15000
/* Forking stops after this many failed children: one hang already proves the bug,
 * and each costs the whole alarm. */
#define MAX_CHILD_FAILURES 3
/* Distinct exit codes a child uses to say what went wrong. */
#define CHILD_ALLOC_FAILED 2
#define CHILD_CORRUPT 3
#define CHILD_THREAD_FAILED 4

/* Live blocks per churn table. A worker keeps few: after each fork the parent takes
 * a copy-on-write fault on every page it writes again, so its live set is what makes
 * a fork slow. A child keeps more. */
#define MAX_SLOTS 512
#define WORKER_SLOTS 128
#define CHILD_SLOTS 512
/* Operations per churn: a worker's round, a child's life, a thread in a child, and
 * the parent's final self-check. */
#define WORKER_OPS 2000
#define CHILD_OPS 5000
#define CHILD_THREAD_OPS 3000
#define PARENT_OPS 20000
#define LARGE_SIZE ((size_t)1 << 20)

static atomic_bool stop_workers;
static atomic_long worker_rounds;
static atomic_int worker_errors;

/* xorshift: a cheap deterministic stream per thread. */
static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Writing every byte of a 1 MiB block each time is too slow for the churn (and
 * every page touched is a fault in each child); above a page, the pattern covers a
 * stride through the block and its last byte, which still catches blocks that
 * overlap or move. The strides are primes so they never line up with pages. */
#define FULL_FILL_MAX 4096
#define MEDIUM_FILL_MAX 65536
#define MEDIUM_STRIDE 509
#define LARGE_STRIDE 65521

static size_t fill_step(size_t n) {
  return n <= FULL_FILL_MAX ? 1 : n <= MEDIUM_FILL_MAX ? MEDIUM_STRIDE : LARGE_STRIDE;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
  size_t step = fill_step(n);
  for (size_t i = 0; i < n; i += step) p[i] = (unsigned char)(seed + i);
  p[n - 1] = (unsigned char)(seed + n - 1);
}

/* Checks the first `check` bytes of a block that fill() wrote `filled` bytes of
 * (check < filled after a shrinking realloc). */
static int intact_prefix(const unsigned char *p, size_t filled, size_t check, unsigned seed) {
  size_t step = fill_step(filled);
  for (size_t i = 0; i < check; i += step)
    if (p[i] != (unsigned char)(seed + i)) return 0;
  return check < filled || p[filled - 1] == (unsigned char)(seed + filled - 1);
}

static int intact(const unsigned char *p, size_t n, unsigned seed) {
  return intact_prefix(p, n, n, seed);
}

static size_t pick_size(uint64_t r) {
  switch (r % 32) {
  case 0:
    return LARGE_SIZE + (r >> 8) % 4096; /* large path */
  case 1:
  case 2:
    return 4096 + (r >> 8) % 60000; /* the upper small classes */
  default:
    return 1 + (r >> 8) % 512;
  }
}

struct slot {
  unsigned char *p;
  size_t n;
  unsigned seed;
};

/* Allocates, checks and frees `rounds` times over a table of `nslots` slots.
 * Returns 0, or the CHILD_* code of what went wrong. */
static int churn(uint64_t seed, int rounds, unsigned nslots) {
  struct slot slots[MAX_SLOTS];
  memset(slots, 0, sizeof slots);
  uint64_t s = seed | 1;
  int rc = 0;
  for (int i = 0; i < rounds && rc == 0; i++) {
    uint64_t r = rng_next(&s);
    struct slot *sl = &slots[r % nslots];
    if (sl->p) {
      if (!intact(sl->p, sl->n, sl->seed)) rc = CHILD_CORRUPT;
      free(sl->p);
      sl->p = NULL;
    }
    size_t n = pick_size(r >> 16);
    unsigned char *p = (r >> 62) == 0 ? calloc(1, n) : malloc(n);
    if (!p) {
      rc = CHILD_ALLOC_FAILED;
      break;
    }
    if ((r >> 62) == 0 && (p[0] != 0 || p[n - 1] != 0)) rc = CHILD_CORRUPT;
    if ((r >> 60) % 8 == 1) { /* grow or shrink in place or by moving */
      fill(p, n, (unsigned)r);
      size_t m = pick_size(r >> 24);
      unsigned char *q = realloc(p, m);
      if (!q) {
        free(p);
        rc = CHILD_ALLOC_FAILED;
        break;
      }
      size_t keep = n < m ? n : m;
      if (!intact_prefix(q, n, keep, (unsigned)r)) rc = CHILD_CORRUPT;
      p = q;
      n = m;
    }
    fill(p, n, (unsigned)(r >> 32));
    *sl = (struct slot){p, n, (unsigned)(r >> 32)};
  }
  for (unsigned i = 0; i < nslots; i++) {
    if (slots[i].p) {
      if (rc == 0 && !intact(slots[i].p, slots[i].n, slots[i].seed)) rc = CHILD_CORRUPT;
      free(slots[i].p);
    }
  }
  return rc;
}

static void *worker(void *arg) {
  uint64_t seed = (uintptr_t)arg * 0x9E3779B97F4A7C15ull;
  while (!atomic_load(&stop_workers)) {
    if (churn(seed++, WORKER_OPS, WORKER_SLOTS) != 0) atomic_fetch_add(&worker_errors, 1);
    atomic_fetch_add(&worker_rounds, 1);
  }
  return NULL;
}

static void *child_thread(void *arg) {
  return (void *)(intptr_t)churn((uintptr_t)arg, CHILD_THREAD_OPS, CHILD_SLOTS);
}

/* The child's whole life. Every tenth child also starts a thread, so that thread
 * creation and thread-cache setup work in a child forked mid-malloc. */
static void child_main(int index) {
  alarm(CHILD_ALARM_S);
  int rc = churn(0xC0FFEEull + (uint64_t)index, CHILD_OPS, CHILD_SLOTS);
  if (rc == 0 && index % 10 == 0) {
    pthread_t t;
    void *res = NULL;
    if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(index + 7)) != 0 ||
        pthread_join(t, &res) != 0)
      rc = CHILD_THREAD_FAILED;
    else
      rc = (int)(intptr_t)res;
  }
  _exit(rc);
}

/* Only the first failures are printed in full; the driver shows the tail of stderr
 * and the count at the end says how many there were. */
#define MAX_REPORTS 20
static atomic_int reports;
#define REPORT(...)                                                                \
  do {                                                                             \
    if (atomic_fetch_add(&reports, 1) < MAX_REPORTS) fprintf(stderr, __VA_ARGS__); \
  } while (0)

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for the child until the deadline; a child still running then is killed and
 * counted as hung. Returns 0 if it exited with status 0. */
static int reap(pid_t pid, int index, const char *who) {
  uint64_t deadline = now_ms() + CHILD_DEADLINE_MS;
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      REPORT("%s fork %d: waitpid(%d): %s\n", who, index, (int)pid, strerror(errno));
      return 1;
    }
    if (now_ms() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      REPORT("%s fork %d: child %d hung (killed after %d ms)\n", who, index, (int)pid,
              CHILD_DEADLINE_MS);
      return 1;
    }
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    REPORT("%s fork %d: child %d killed by signal %d (%s)%s\n", who, index, (int)pid,
            sig, strsignal(sig), sig == SIGALRM ? ": it hung, e.g. on a lock held at fork" : "");
  } else {
    static const char *const why[] = {"", "", "allocation failed", "contents corrupted",
                                      "thread in child failed"};
    int code = WEXITSTATUS(status);
    REPORT("%s fork %d: child %d exited with %d (%s)\n", who, index, (int)pid, code,
            code < 5 ? why[code] : "?");
  }
  return 1;
}

/* Forks `count` children one after another, with a little allocation in between so
 * that the forking thread itself is often mid-malloc in the other threads' eyes. */
static atomic_int child_failures;

static int fork_many(int count, int base, const char *who) {
  int failed = 0;
  for (int i = 0; i < count; i++) {
    if (atomic_load(&child_failures) >= MAX_CHILD_FAILURES) {
      fprintf(stderr, "%s: stopped forking after %d failed children\n", who, MAX_CHILD_FAILURES);
      return failed + 1;
    }
    void *keep = malloc(64 + (size_t)i * 17);
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "%s: fork: %s\n", who, strerror(errno));
      free(keep);
      return failed + 1;
    }
    if (pid == 0) child_main(base + i);
    free(keep);
    if (reap(pid, base + i, who) != 0) {
      failed++;
      atomic_fetch_add(&child_failures, 1);
    }
  }
  return failed;
}

static void *forking_thread(void *arg) {
  (void)arg;
  return (void *)(intptr_t)fork_many(THREAD_FORKS, MAIN_FORKS, "non-main thread");
}

int main(void) {
  pthread_t workers[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    if (pthread_create(&workers[i], NULL, worker, (void *)(uintptr_t)(i + 1)) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  }

  int failed = fork_many(MAIN_FORKS, 0, "main thread");

  pthread_t forker;
  void *res = NULL;
  if (pthread_create(&forker, NULL, forking_thread, NULL) != 0 ||
      pthread_join(forker, &res) != 0) {
    fprintf(stderr, "forking thread failed to start\n");
    return 1;
  }
  failed += (int)(intptr_t)res;

  atomic_store(&stop_workers, true);
  for (int i = 0; i < WORKERS; i++) pthread_join(workers[i], NULL);

  /* The parent itself must still be healthy after all those forks. */
  if (churn(42, PARENT_OPS, MAX_SLOTS) != 0) {
    fprintf(stderr, "parent: allocator state corrupt after the forks\n");
    failed++;
  }
  if (atomic_load(&worker_errors)) {
    fprintf(stderr, "workers saw %d corrupt or failed allocation rounds\n",
            atomic_load(&worker_errors));
    failed++;
  }
  if (atomic_load(&worker_rounds) == 0) {
    fprintf(stderr, "workers never completed a round: nothing ran concurrently with fork\n");
    failed++;
  }
  if (failed) {
    fprintf(stderr, "%d failure(s)\n", failed);
    return 1;
  }
  printf("OK %d forks, %ld worker rounds\n", MAIN_FORKS + THREAD_FORKS,
         atomic_load(&worker_rounds));
  return 0;
}
