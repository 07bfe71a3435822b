/* pairs: the cost of one malloc+free pair on an allocator's fast path, for counting
 * instructions under callgrind (tools/callgrind.sh).
 *
 * `pairs N` does N pairs, cycling the size over 16, 32, ..., 1024 and touching one
 * byte of each block; `pairs 0` does the same setup without the loop, so
 * (Ir(N) - Ir(0)) / N is the loop alone: malloc and free plus 16 instructions of
 * loop, calls and PLT jumps (gcc 12, -O2), the same for every allocator.
 * Single-threaded; plain malloc and free, so LD_PRELOAD decides which allocator
 * serves them. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 64 sizes in 16-byte steps: each pair uses another size class than the last in
 * most allocators, so the count is not one class's best case. */
#define PAIRS_STEP 16
#define PAIRS_MAX 1024

/* Keep the compiler from proving the block unused and dropping the pair (gcc
 * removes malloc/free pairs whose memory is only written). */
static inline void pairs_escape(void *p) {
  __asm__ volatile("" : : "r"(p) : "memory");
}

/* The allocator whose library is mapped, else glibc's (as churn reports it). */
static const char *detect_allocator(void) {
  static const char *const known[] = {"brisk", "jemalloc", "tcmalloc", "mimalloc"};
  const char *found = "glibc";
  char line[4096];
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL) return found;
  while (fgets(line, sizeof line, f) != NULL) {
    const char *base = strrchr(line, '/');
    if (base == NULL) continue;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
      char lib[32];
      snprintf(lib, sizeof lib, "/lib%s", known[i]);
      if (strncmp(base, lib, strlen(lib)) == 0) found = known[i];
    }
  }
  fclose(f);
  return found;
}

int main(int argc, char **argv) {
  int hold = 1;
  if (argc == 3 && strcmp(argv[2], "--no-hold") == 0) {
    hold = 0;
  } else if (argc != 2) {
    fprintf(stderr, "usage: pairs N [--no-hold]   (N malloc+free pairs; 0 for the baseline)\n"
                    "  --no-hold  keep no block of each size live during the loop\n");
    return 2;
  }
  char *end;
  errno = 0;
  unsigned long long n = strtoull(argv[1], &end, 10);
  if (errno != 0 || end == argv[1] || *end != '\0') {
    fprintf(stderr, "pairs: bad count '%s'\n", argv[1]);
    return 2;
  }

  /* Setup, the same for N and 0: find the allocator, and take and give back one
   * block of every size, so that first-use work (a thread cache refilled from a
   * central list, a size class set up) lands in the baseline, not the loop.
   * Then hold one block of every size for the whole run, as any real program
   * does: otherwise each free in the loop empties a page, and an allocator that
   * retires empty pages (mimalloc 2.0 does, at ~800 instructions a pair) is
   * measured on that, not on its fast path. --no-hold shows that case. */
  const char *allocator = detect_allocator();
  static void *held[PAIRS_MAX / PAIRS_STEP];
  for (size_t size = PAIRS_STEP; size <= PAIRS_MAX; size += PAIRS_STEP) {
    unsigned char *p = malloc(size);
    if (p == NULL) return 1;
    p[0] = 1;
    pairs_escape(p);
    free(p);
    if (hold && (held[size / PAIRS_STEP - 1] = malloc(size)) == NULL) return 1;
  }

  size_t size = PAIRS_STEP;
  for (unsigned long long i = 0; i < n; i++) {
    unsigned char *p = malloc(size);
    if (p == NULL) return 1;
    p[0] = (unsigned char)i;
    pairs_escape(p);
    free(p);
    size = size == PAIRS_MAX ? PAIRS_STEP : size + PAIRS_STEP;
  }

  printf("pairs allocator=%s n=%llu hold=%d\n", allocator, n, hold);
  for (size_t i = 0; i < PAIRS_MAX / PAIRS_STEP; i++) free(held[i]);
  return 0;
}
