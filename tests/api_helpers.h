/* Helpers shared by the API, override and stress tests: size units, a failure
 * macro that says what broke, and a position-keyed fill pattern.
 * Header-only (static functions), so each test stays one source file. */
#ifndef BRISK_TEST_API_HELPERS_H
#define BRISK_TEST_API_HELPERS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

#define ARRAY_LEN(a) (sizeof(a) / sizeof *(a))

/* Fail the current cmocka test with a formatted reason when cond is false
 * (cmocka's assert_* print only the expression, not the size that broke it). */
#define expect(cond, ...)                                                            \
  do {                                                                               \
    if (!(cond)) fail_msg(__VA_ARGS__);                                              \
  } while (0)

/* The pattern is keyed by position, so the first m bytes of a block filled for n
 * bytes are exactly a block filled for m bytes: what realloc must preserve. */
static inline uint64_t pattern_word(uint64_t seed, size_t k) {
  uint64_t x = (seed * 0xD1B54A32D192ED03ull + k) * 0x9E3779B97F4A7C15ull;
  return x ^ (x >> 31);
}

static inline void pattern_fill(void *p, size_t n, uint64_t seed) {
  unsigned char *b = p;
  size_t k = 0;
  for (; (k + 1) * 8 <= n; k++) {
    uint64_t w = pattern_word(seed, k);
    memcpy(b + k * 8, &w, 8);
  }
  if (k * 8 < n) {
    uint64_t w = pattern_word(seed, k);
    memcpy(b + k * 8, &w, n - k * 8);
  }
}

/* The first offset in [0, n) that does not hold the pattern, or SIZE_MAX. */
static inline size_t pattern_check(const void *p, size_t n, uint64_t seed) {
  const unsigned char *b = p;
  size_t k = 0;
  for (; (k + 1) * 8 <= n; k++) {
    uint64_t w = pattern_word(seed, k), got;
    memcpy(&got, b + k * 8, 8);
    if (got != w) break;
  }
  for (size_t i = k * 8; i < n; i++) {
    uint64_t w = pattern_word(seed, i / 8);
    if (b[i] != (unsigned char)(w >> (8 * (i % 8)))) return i;
  }
  return SIZE_MAX;
}

/* The first non-zero offset in [0, n), or SIZE_MAX. */
static inline size_t first_nonzero(const void *p, size_t n) {
  const unsigned char *b = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    if (w) break;
  }
  for (; i < n; i++)
    if (b[i]) return i;
  return SIZE_MAX;
}

/* Hide a value from the optimizer. The tests pass impossible sizes on purpose and
 * use a block after a realloc that failed; gcc's -Walloc-size-larger-than and
 * -Wuse-after-free cannot tell that from a bug when they see the values. */
static inline size_t opaque_size(size_t x) {
  volatile size_t v = x;
  return v;
}

static inline void *opaque_ptr(void *p) {
  void *volatile v = p;
  return v;
}

static inline int is_aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static inline size_t os_page(void) { return (size_t)sysconf(_SC_PAGESIZE); }

#endif /* BRISK_TEST_API_HELPERS_H */
