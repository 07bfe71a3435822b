/* realloc_crossover: where growing a block by a copy into memory already faulted
 * in stops beating mremap, which moves the pages without copying but grows into
 * fresh pages that fault again. No allocator: for each size S (256 KiB doubling
 * up to 128 MiB) it times one growth step from S to 2S, then one write per 4 KiB
 * page of the new half (what a program growing a buffer does next):
 *   copy    memcpy of S bytes into a resident 2S block (the page heap's reused run);
 *   mremap  mremap of a resident S mapping to 2S (MREMAP_MAYMOVE), faulting the
 *           new half; and, separately, the munmap that a block mapped alone pays
 *           when it is freed (a heap run is not unmapped).
 * brisk maps a block alone from BRISK_LARGE_MMAP up; this measures its default
 * (src/large.c, README).
 *
 * usage: realloc_crossover [-r RUNS]   prints per S the median microseconds. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CROSS_MIN ((size_t)256 << 10)
#define CROSS_MAX ((size_t)128 << 20)
#define CROSS_PAGE 4096
#define CROSS_MAX_RUNS 64

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static void *map(size_t n) {
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  return p;
}

static void touch(unsigned char *p, size_t from, size_t to) {
  for (size_t off = from; off < to; off += CROSS_PAGE) p[off] = (unsigned char)off;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  return v[n / 2];
}

int main(int argc, char **argv) {
  int runs = 7;
  if (argc == 3 && strcmp(argv[1], "-r") == 0) runs = atoi(argv[2]);
  if (runs < 1 || runs > CROSS_MAX_RUNS || (argc != 1 && argc != 3)) {
    fprintf(stderr, "usage: realloc_crossover [-r RUNS (1-%d)]\n", CROSS_MAX_RUNS);
    return 2;
  }
  printf("%10s %12s %12s %12s %8s\n", "size_KiB", "copy_us", "mremap_us", "munmap_us", "winner");
  for (size_t s = CROSS_MIN; s <= CROSS_MAX; s *= 2) {
    double copy[CROSS_MAX_RUNS], grow[CROSS_MAX_RUNS], unmap[CROSS_MAX_RUNS];
    unsigned char *src = map(s), *dst = map(2 * s);
    touch(src, 0, s);
    touch(dst, 0, 2 * s);
    for (int r = 0; r < runs; r++) {
      double t0 = now_us();
      memcpy(dst, src, s);
      touch(dst, s, 2 * s);
      copy[r] = now_us() - t0;

      unsigned char *m = map(s);
      memset(m, 1, s);
      t0 = now_us();
      unsigned char *g = mremap(m, s, 2 * s, MREMAP_MAYMOVE);
      if (g == MAP_FAILED) {
        perror("mremap");
        return 1;
      }
      touch(g, s, 2 * s);
      double t1 = now_us();
      munmap(g, 2 * s);
      unmap[r] = now_us() - t1;
      grow[r] = t1 - t0;
    }
    munmap(src, s);
    munmap(dst, 2 * s);
    double c = median(copy, runs), g = median(grow, runs), u = median(unmap, runs);
    printf("%10zu %12.1f %12.1f %12.1f %8s\n", s >> 10, c, g, u, c <= g + u ? "copy" : "mremap");
  }
  return 0;
}
