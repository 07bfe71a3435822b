/* Runs on brisk (libbrisk.so linked in), makes blocks of many classes in a few
 * threads, some large ones, frees part of them, and checks brisk_stats_json's
 * contract: the length it returns, the NUL, no byte past len written, a cut
 * document equal to the start of the whole one. Prints the whole document on
 * stdout; tests/stats/check_stats_json.py validates it and the one brisk writes
 * at exit (BRISK_STATS=json). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brisk.h"

#define THREADS 3
#define BLOCKS 4000

static void *keep[THREADS][BLOCKS];

static void *work(void *arg) {
  void **mine = arg;
  for (int i = 0; i < BLOCKS; i++) {
    size_t size = (size_t)(i % 97) * 53 + 1 + (i % 500 == 0 ? 200000 : 0);
    mine[i] = malloc(size);
    if (mine[i] == NULL) abort();
    memset(mine[i], 1, size < 64 ? size : 64);
  }
  for (int i = 0; i < BLOCKS; i += 2) { /* half of them back, some in this cache */
    free(mine[i]);
    mine[i] = NULL;
  }
  return NULL;
}

static int fail(const char *what) {
  fprintf(stderr, "stats_json_probe: %s\n", what);
  return 1;
}

int main(void) {
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    if (pthread_create(&t[i], NULL, work, keep[i]) != 0) return fail("pthread_create");
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  void *big = malloc(3 << 20); /* a large block in use */

  /* Everything this needs is allocated first, so that the numbers hold still:
   * guard bytes around each buffer see any write outside it. */
  enum { AREA = 1 << 20, GUARD = 32 };
  char *area = malloc(AREA);
  if (area == NULL) return fail("malloc");
  memset(area, 'G', AREA);
  size_t need = brisk_stats_json(NULL, 0);
  if (need < 100 || need > AREA / 4) return fail("brisk_stats_json(NULL, 0) is not a plausible length");
  size_t cap = need + 1;
  char *buf = area + GUARD;
  size_t got = brisk_stats_json(buf, cap);
  if (got != need) return fail("the length changed in a quiet process");
  if (buf[got] != 0 || strlen(buf) != got) return fail("the whole document is not NUL-terminated at its length");
  for (int i = 0; i < GUARD; i++)
    if (area[i] != 'G' || buf[cap + i] != 'G') return fail("a byte outside the buffer was written");

  /* A short buffer: the same length back, len - 1 bytes of the document, a NUL. */
  size_t half = need / 2;
  char *cut = buf + cap + GUARD;
  if (brisk_stats_json(cut, half) != need) return fail("a short buffer changed the length returned");
  if (cut[half - 1] != 0 || memcmp(cut, buf, half - 1) != 0) return fail("the cut document is not the start of the whole one");
  for (int i = 0; i < GUARD; i++)
    if (cut[half + i] != 'G') return fail("a short buffer was overrun");
  char one[2] = {'G', 'G'};
  if (brisk_stats_json(one, 1) != need || one[0] != 0 || one[1] != 'G') return fail("a one-byte buffer does not get just its NUL");

  fputs(buf, stdout);
  free(area);
  free(big);
  return 0;
}
