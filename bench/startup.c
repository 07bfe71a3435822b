/* startup: what an allocator costs a short-lived program.
 *
 * The parent starts itself again as a child R times (posix_spawn, the parent's
 * environment, so LD_PRELOAD picks the allocator) and reports medians, in
 * microseconds from the spawn call, of three moments:
 *   main     the child's main() begins: loading the allocator and its libraries,
 *            and its start-up, since the C library allocates before main;
 *   malloc   the child's first malloc(64) in main has returned;
 *   exit     the parent has reaped the child (destructors, exit, teardown).
 * With --threads the child also starts one thread that allocates before it exits,
 * which is when brisk looks at the NUMA topology. A plain C program on purpose:
 * it has to measure the allocator, not a benchmark library's start-up.
 *
 * usage: startup [-r REPS] [--threads] */
#define _GNU_SOURCE
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *thread_main(void *arg) {
  (void)arg;
  free(malloc(64));
  return NULL;
}

static int child(int fd, int threads) {
  uint64_t t[2];
  t[0] = now_ns();
  void *volatile p = malloc(64);
  t[1] = now_ns();
  free(p);
  if (threads) {
    pthread_t th;
    if (pthread_create(&th, NULL, thread_main, NULL) != 0 || pthread_join(th, NULL) != 0) return 1;
  }
  if (write(fd, t, sizeof t) != (ssize_t)sizeof t) return 1;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double median_us(uint64_t *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_u64);
  return (n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0) / 1000.0;
}

int main(int argc, char **argv) {
  int reps = 200, threads = 0;
  if (argc >= 3 && strcmp(argv[1], "--child") == 0) return child(atoi(argv[2]), argc > 3);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
    else if (strcmp(argv[i], "--threads") == 0) threads = 1;
    else {
      fprintf(stderr, "usage: %s [-r REPS] [--threads]\n", argv[0]);
      return 2;
    }
  }
  if (reps < 1) reps = 1;
  uint64_t *m = calloc((size_t)reps, sizeof *m), *a = calloc((size_t)reps, sizeof *a),
           *e = calloc((size_t)reps, sizeof *e);
  if (!m || !a || !e) return 1;
  for (int r = 0; r < reps; r++) {
    int pfd[2];
    if (pipe(pfd) != 0) return 1;
    char fdarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", pfd[1]);
    char *cargv[] = {argv[0], "--child", fdarg, threads ? "threads" : NULL, NULL};
    pid_t pid;
    uint64_t t0 = now_ns();
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, cargv, environ) != 0) return 1;
    int status;
    if (waitpid(pid, &status, 0) != pid) return 1;
    uint64_t t3 = now_ns();
    close(pfd[1]);
    uint64_t t[2];
    if (read(pfd[0], t, sizeof t) != (ssize_t)sizeof t || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "startup: the child failed\n");
      return 1;
    }
    close(pfd[0]);
    m[r] = t[0] - t0;
    a[r] = t[1] - t0;
    e[r] = t3 - t0;
  }
  printf("reps=%d threads=%d main_us=%.1f first_malloc_us=%.1f exit_us=%.1f\n", reps, threads + 1,
         median_us(m, reps), median_us(a, reps), median_us(e, reps));
  return 0;
}
