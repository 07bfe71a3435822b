/* A program linked against libbrisk.a instead of preloading libbrisk.so.
 *
 * Nothing here names brisk to allocate: plain malloc, calloc, realloc, free,
 * posix_memalign and strdup, from the main thread and two others. The link alone
 * must route them to brisk, which the program checks through brisk's own
 * statistics (the blocks it holds show up in brisk_get_stats) and the test driver
 * checks again through the statistics brisk writes at exit (BRISK_STATS=json).
 * Prints OK and exits 0 on success. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brisk.h"

/* Blocks held at once while the statistics are read: 16 MiB of small blocks and
 * four 8 MiB large ones, far above anything the C runtime allocates by itself. */
#define SMALL_BLOCKS 16384
#define SMALL_SIZE 1024
#define LARGE_BLOCKS 4
#define LARGE_SIZE ((size_t)8 << 20)
#define HELD_BYTES ((uint64_t)SMALL_BLOCKS * SMALL_SIZE + (uint64_t)LARGE_BLOCKS * LARGE_SIZE)
#define THREADS 2

static int failures;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
      failures++;                                                                   \
    }                                                                               \
  } while (0)

static void *thread_main(void *arg) {
  uintptr_t seed = (uintptr_t)arg;
  long bad = 0;
  for (int round = 0; round < 200; round++) {
    char *blocks[64];
    for (int i = 0; i < 64; i++) {
      size_t n = 16 + (size_t)((seed * 131 + (unsigned)i * 977) % 3000);
      blocks[i] = malloc(n);
      if (!blocks[i]) return (void *)1;
      memset(blocks[i], (int)(seed + (unsigned)i), n);
    }
    for (int i = 0; i < 64; i++) {
      if (blocks[i][0] != (char)(seed + (unsigned)i)) bad++;
      free(blocks[i]);
    }
  }
  return (void *)(intptr_t)(bad != 0);
}

int main(void) {
  brisk_stats_t before, held, after;
  brisk_get_stats(&before);

  char **small = malloc(SMALL_BLOCKS * sizeof *small);
  CHECK(small != NULL);
  if (!small) return 1;
  for (int i = 0; i < SMALL_BLOCKS; i++) {
    small[i] = (i % 2) ? malloc(SMALL_SIZE) : calloc(1, SMALL_SIZE);
    CHECK(small[i] != NULL);
    if (!small[i]) return 1;
    /* The libc entry point and brisk's agree on the block: both are brisk. */
    if (i < 16) CHECK(malloc_usable_size(small[i]) == brisk_usable_size(small[i]));
    small[i][0] = (char)i;
    small[i][SMALL_SIZE - 1] = (char)i;
  }
  void *large[LARGE_BLOCKS];
  for (int i = 0; i < LARGE_BLOCKS; i++) {
    CHECK(posix_memalign(&large[i], 4096, LARGE_SIZE) == 0);
    CHECK(((uintptr_t)large[i] & 4095) == 0);
    memset(large[i], i + 1, LARGE_SIZE);
    CHECK(malloc_usable_size(large[i]) == brisk_usable_size(large[i]));
  }
  char *s = strdup("served by brisk");
  CHECK(s && malloc_usable_size(s) == brisk_usable_size(s));
  char *grown = realloc(s, 100000);
  CHECK(grown && strcmp(grown, "served by brisk") == 0);
  free(grown ? grown : s);

  brisk_get_stats(&held);
  uint64_t held_bytes = held.in_use + held.large_in_use;
  uint64_t before_bytes = before.in_use + before.large_in_use;
  if (held_bytes < before_bytes + HELD_BYTES) {
    fprintf(stderr,
            "brisk does not see the blocks: in_use+large_in_use went from %llu to %llu, "
            "expected at least %llu more (malloc is not brisk's)\n",
            (unsigned long long)before_bytes, (unsigned long long)held_bytes,
            (unsigned long long)HELD_BYTES);
    failures++;
  }
  CHECK(held.peak_mapped >= HELD_BYTES);

  pthread_t tid[THREADS];
  for (uintptr_t t = 0; t < THREADS; t++)
    CHECK(pthread_create(&tid[t], NULL, thread_main, (void *)(t + 1)) == 0);
  for (int t = 0; t < THREADS; t++) {
    void *res = NULL;
    CHECK(pthread_join(tid[t], &res) == 0);
    CHECK(res == NULL);
  }

  for (int i = 0; i < SMALL_BLOCKS; i++) {
    CHECK(small[i][0] == (char)i && small[i][SMALL_SIZE - 1] == (char)i);
    free(small[i]);
  }
  free(small);
  for (int i = 0; i < LARGE_BLOCKS; i++) {
    CHECK(((unsigned char *)large[i])[LARGE_SIZE - 1] == i + 1);
    free(large[i]);
  }
  brisk_get_stats(&after);
  /* Everything held was given back; slack for what stdio and pthreads keep. */
  CHECK(after.in_use + after.large_in_use < before_bytes + (1u << 20));
  CHECK(after.threads_seen >= 1 + THREADS);

  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  puts("OK");
  return 0;
}
