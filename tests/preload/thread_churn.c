/* Thread churn: tens of thousands of short-lived threads, a few at a time.
 *
 * Each thread allocates a handful of blocks, frees most of them itself and hands a
 * few to the main thread, which frees them a wave or two later (a free from a
 * thread other than the allocating one, after the allocating thread has exited).
 * An allocator that leaks a thread cache, or the blocks parked in one, at every
 * thread exit grows without bound here: the resident set after all the threads is
 * compared with the resident set after the first tenth of them.
 * Prints OK and exits 0 on success. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 40,000 threads in waves of 4 (2 cores: more at once only adds scheduling). */
#define TOTAL_THREADS 40000
#define WAVE 4
/* RSS is sampled after this many threads, once caches and spans have warmed up. */
#define BASELINE_THREADS 4000
/* Blocks each thread allocates, and how many of them it hands to the main thread. */
#define BLOCKS_PER_THREAD 12
#define HANDED_OFF 3
/* Handed-off blocks wait this many waves before the main thread frees them. */
#define HANDOFF_DELAY_WAVES 2
/* The leak limit: final RSS <= 2 x baseline + 16 MiB. Generous, since caches may
 * legitimately keep memory; a per-thread leak of 1 KiB adds 35 MiB here. */
#define RSS_SLACK_KB (16 * 1024)
/* Smaller stacks make thread creation cheaper and keep RSS about the heap. */
#define THREAD_STACK (64 * 1024)

struct job {
  unsigned index;
  void *handoff[HANDED_OFF];
  size_t handoff_size[HANDED_OFF];
  int ok;
};

static size_t block_size(unsigned index, unsigned i) {
  static const size_t sizes[] = {8, 24, 48, 100, 256, 600, 1500, 4000, 9000, 33000, 70000, 200000};
  return sizes[(index + i * 7) % (sizeof sizes / sizeof sizes[0])];
}

static unsigned char pattern(unsigned index, unsigned i) { return (unsigned char)(index * 13 + i); }

static void *thread_main(void *arg) {
  struct job *job = arg;
  void *blocks[BLOCKS_PER_THREAD];
  job->ok = 1;
  for (unsigned i = 0; i < BLOCKS_PER_THREAD; i++) {
    size_t n = block_size(job->index, i);
    blocks[i] = malloc(n);
    if (!blocks[i]) {
      job->ok = 0;
      return NULL;
    }
    memset(blocks[i], pattern(job->index, i), n);
  }
  /* A realloc and a calloc in the mix, too. */
  unsigned char *r = realloc(blocks[0], 5000);
  if (!r || r[7] != pattern(job->index, 0)) job->ok = 0;
  if (r) {
    memset(r, pattern(job->index, 0), 5000);
    blocks[0] = r;
  }
  unsigned char *z = calloc(64, 16);
  if (!z || z[1023] != 0) job->ok = 0;
  free(z);

  for (unsigned i = 0; i < BLOCKS_PER_THREAD; i++) {
    size_t n = i == 0 ? 5000 : block_size(job->index, i);
    const unsigned char *b = blocks[i];
    if (b[0] != pattern(job->index, i) || b[n - 1] != pattern(job->index, i)) job->ok = 0;
    if (i < HANDED_OFF) {
      job->handoff[i] = blocks[i];
      job->handoff_size[i] = n;
    } else {
      free(blocks[i]);
    }
  }
  return NULL;
}

/* Resident set in KiB, from /proc/self/status. */
static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtol(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kb;
}

/* Checks and frees the blocks a finished wave handed over. */
static int release_wave(struct job *wave) {
  int bad = 0;
  for (unsigned t = 0; t < WAVE; t++) {
    for (unsigned i = 0; i < HANDED_OFF; i++) {
      const unsigned char *b = wave[t].handoff[i];
      size_t n = wave[t].handoff_size[i];
      if (!b) continue;
      if (b[0] != pattern(wave[t].index, i) || b[n - 1] != pattern(wave[t].index, i)) bad++;
      free(wave[t].handoff[i]);
      wave[t].handoff[i] = NULL;
    }
  }
  return bad;
}

int main(void) {
  static struct job ring[HANDOFF_DELAY_WAVES + 1][WAVE];
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, THREAD_STACK);

  long baseline = -1;
  int failed = 0, corrupt = 0;
  unsigned waves = TOTAL_THREADS / WAVE;
  for (unsigned w = 0; w < waves; w++) {
    struct job *wave = ring[w % (HANDOFF_DELAY_WAVES + 1)];
    corrupt += release_wave(wave); /* the wave that ran HANDOFF_DELAY_WAVES ago */
    pthread_t tid[WAVE];
    for (unsigned t = 0; t < WAVE; t++) {
      wave[t] = (struct job){.index = w * WAVE + t};
      int e = pthread_create(&tid[t], &attr, thread_main, &wave[t]);
      if (e != 0) {
        fprintf(stderr, "pthread_create (thread %u): %s\n", w * WAVE + t, strerror(e));
        return 1;
      }
    }
    for (unsigned t = 0; t < WAVE; t++) {
      pthread_join(tid[t], NULL);
      if (!wave[t].ok) failed++;
    }
    if ((w + 1) * WAVE == BASELINE_THREADS) baseline = rss_kb();
  }
  for (unsigned k = 0; k <= HANDOFF_DELAY_WAVES; k++) corrupt += release_wave(ring[k]);
  pthread_attr_destroy(&attr);
  long final = rss_kb();

  printf("threads %u, rss after %d threads %ld KiB, after %u threads %ld KiB\n",
         waves * WAVE, BASELINE_THREADS, baseline, waves * WAVE, final);
  if (failed) fprintf(stderr, "%d thread(s) saw a failed allocation or corrupt block\n", failed);
  if (corrupt) fprintf(stderr, "%d handed-off block(s) were corrupt\n", corrupt);
  int leak = 0;
  if (baseline <= 0 || final <= 0) {
    fprintf(stderr, "could not read VmRSS from /proc/self/status\n");
    leak = 1;
  } else if (final > 2 * baseline + RSS_SLACK_KB) {
    fprintf(stderr, "RSS grew from %ld KiB to %ld KiB (limit %ld KiB): memory leaks per thread\n",
            baseline, final, 2 * baseline + RSS_SLACK_KB);
    leak = 1;
  }
  if (failed || corrupt || leak) return 1;
  puts("OK");
  return 0;
}
