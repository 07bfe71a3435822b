/* bench_util.h: what every benchmark in brisk_bench shares: a seeded PRNG, the
 * rule for touching blocks, and dying loudly when an allocation fails (a NULL
 * would otherwise become a fast, meaningless number).
 *
 * Blocks are touched at their first and last byte: every allocator then pays for
 * the pages it hands out at least at both ends, so one that maps lazily is not
 * favoured, without memset of whole blocks swamping the allocator's own cost. */
#ifndef BRISK_BENCH_UTIL_H
#define BRISK_BENCH_UTIL_H

#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* splitmix64: one multiply-xorshift chain per number; seeds need not be random. */
static inline uint64_t bu_rand(uint64_t *state) {
  uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* A thread's seed: fixed per benchmark and thread index, so runs repeat. */
static inline uint64_t bu_seed(uint64_t bench, int thread) {
  return bench * UINT64_C(0xd1b54a32d192ed03) + (uint64_t)thread + 1;
}

static inline void bu_touch(void *p, size_t size) {
  volatile unsigned char *c = p;
  c[0] = (unsigned char)size;
  c[size - 1] = (unsigned char)size;
}

/* Keep the compiler from proving a block unused (gcc may drop a malloc/free pair
 * whose memory is only written, even with -fno-builtin-malloc on other calls). */
static inline void bu_escape(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

__attribute__((noreturn, cold)) static inline void bu_oom(const char *what, size_t size) {
  fprintf(stderr, "brisk_bench: %s(%zu) failed\n", what, size);
  abort();
}

static inline void *bu_malloc(size_t size) {
  void *p = malloc(size);
  if (p == NULL) bu_oom("malloc", size);
  return p;
}

/* One step of waiting for another thread: a short spin first (the other thread is
 * usually running and about to answer), then yield, because with more threads
 * than cores the one we wait for may need our core. */
#define BU_SPINS_BEFORE_YIELD 64
static inline void bu_wait_step(unsigned *spins) {
  if (++*spins < BU_SPINS_BEFORE_YIELD) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    *spins = 0;
    sched_yield();
  }
}

/* The small-object size mix shared by several scal benchmarks: octave k in 0..n-1
 * of [16 << k, 32 << k) is the smaller of two uniform draws, so small sizes are
 * the most frequent (P(k) = (2(n - k) - 1) / n^2), as in real programs. */
static inline size_t bu_small_size(uint64_t r, unsigned octaves) {
  unsigned a = (unsigned)(r % octaves);
  unsigned b = (unsigned)((r >> 8) % octaves);
  unsigned k = a < b ? a : b;
  size_t lo = (size_t)16 << k;
  return lo + (size_t)((r >> 16) % lo);
}

#endif
