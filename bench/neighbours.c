/* neighbours: how much two threads slow each other down when their hot blocks
 * sit close together in memory without sharing a cache line. No allocator: each
 * thread owns a region of 64-byte blocks and cycles them the way malloc and free
 * do (pop every block off a list, write it, push them all back), and the two
 * regions start GAP bytes apart. On the development machine a 4 KiB region next
 * to the other thread's ran about three times slower than one 8 KiB away; this is
 * what scal/threadtest meets when an allocator hands neighbouring blocks to
 * different threads (docs/results.md).
 *
 * usage: neighbours [-b BLOCKS] [-i ITERATIONS] [GAP ...]
 *   prints, per GAP in bytes (default 4096 8192), the median seconds of 5 runs. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define BLOCK 64
#define RUNS 5

typedef struct {
  char *region;
  int blocks;
  long iterations;
  pthread_barrier_t *start;
} worker_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A free list through the blocks: word 0 links them, word 1 is written on the way
 * out and checked on the way back, like an allocator's double-free mark. */
static void *worker(void *arg) {
  worker_t *w = arg;
  void **held = malloc((size_t)w->blocks * sizeof *held);
  if (held == NULL) abort();
  void *head = NULL;
  for (int i = 0; i < w->blocks; i++) {
    void **b = (void **)(w->region + (size_t)i * BLOCK);
    b[0] = head;
    head = b;
  }
  pthread_barrier_wait(w->start);
  for (long it = 0; it < w->iterations; it++) {
    for (int i = 0; i < w->blocks; i++) {
      void **b = head;
      head = b[0];
      b[1] = NULL;
      ((volatile char *)b)[BLOCK - 1] = 1;
      held[i] = b;
    }
    for (int i = 0; i < w->blocks; i++) {
      void **b = held[i];
      if (b[1] == (void *)b) abort();
      b[0] = head;
      b[1] = (void *)1;
      head = b;
    }
  }
  free(held);
  return NULL;
}

static double run_once(char *base, size_t gap, int blocks, long iterations) {
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, 3);
  worker_t w[2] = {{base, blocks, iterations, &start}, {base + gap, blocks, iterations, &start}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    if (pthread_create(&t[i], NULL, worker, &w[i]) != 0) abort();
  pthread_barrier_wait(&start);
  double t0 = now_s();
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  double elapsed = now_s() - t0;
  pthread_barrier_destroy(&start);
  return elapsed;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int blocks = 64;
  long iterations = 3000000;
  size_t gaps[32];
  int ngaps = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-b") && i + 1 < argc) blocks = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-i") && i + 1 < argc) iterations = atol(argv[++i]);
    else if (argv[i][0] != '-' && ngaps < 32) gaps[ngaps++] = (size_t)strtoul(argv[i], NULL, 0);
    else {
      fprintf(stderr, "usage: %s [-b BLOCKS] [-i ITERATIONS] [GAP ...]\n", argv[0]);
      return 2;
    }
  }
  if (ngaps == 0) {
    gaps[ngaps++] = 4096;
    gaps[ngaps++] = 8192;
  }
  size_t span = (size_t)blocks * BLOCK;
  if (blocks < 1 || iterations < 1) return 2;
  for (int g = 0; g < ngaps; g++) {
    if (gaps[g] < span) {
      fprintf(stderr, "neighbours: gap %zu is smaller than a region (%zu bytes)\n", gaps[g], span);
      return 2;
    }
    /* Fresh, page-aligned memory for every gap; huge pages left to the kernel. */
    size_t bytes = gaps[g] + span;
    char *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return 2;
    double t[RUNS];
    for (int r = 0; r < RUNS; r++) t[r] = run_once(base, gaps[g], blocks, iterations);
    qsort(t, RUNS, sizeof *t, cmp_double);
    printf("gap=%zu blocks=%d iterations=%ld seconds=%.3f\n", gaps[g], blocks, iterations, t[RUNS / 2]);
    munmap(base, bytes);
  }
  return 0;
}
