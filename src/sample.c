/* The samplers' countdown: the exponential gaps between sampled requests and
 * the split of one countdown between the guard pages (guard.c) and the heap
 * profile (prof.c). alloc.c subtracts each request from the thread's countdown
 * (brisk__tc.sample_left, the one field the fast path touches) and calls here
 * only when it goes below zero. Owns no memory and takes no lock: the state is
 * the calling thread's countdown and random generator.
 *
 * Sampling. malloc subtracts every small request from the thread's countdown;
 * below zero, the request is sampled. The gaps between samples are drawn from an
 * exponential distribution, so that every byte allocated has the same chance to
 * be picked, whatever the sizes and their order, and a program cannot keep its
 * blocks out of reach by its rhythm: a block of s bytes is sampled with
 * probability 1 - exp(-s / mean), independently of every other.
 *
 * One countdown serves two samplers: the guard pages (BRISK_GUARD_SAMPLE, small
 * blocks only) and, with BRISK_PROF=1, the heap profile (BRISK_PROF_SAMPLE,
 * every size: large and aligned requests count down on their own slow paths,
 * never on malloc's fast one). Its mean is the smaller of the two, and a
 * sampler with a larger mean takes a picked request with the probability that
 * makes its own chance for the request what its own countdown would have given
 * it (brisk__sampler_takes).
 *
 * A sampled block is guarded (guard.c) when a slot is free, else served as
 * usual; a profiled one gets a record (prof.c) hung on a span of its own: a
 * small request is then served as a large block (a page or more), so that its
 * free reaches the large slow path, which finds the record without a look-up
 * (alloc.c). */
#include "sample.h"
#include "thread_cache.h"
#include "options.h"
#include "os.h"
#include "init.h" /* upward: brisk__init_state */


/* -ln(u) for u uniform in (0, 1], from 53 random bits: u = m / 2^53 and
 * ln m = e ln 2 + ln f with f in [1, 2), where ln f = 2 atanh((f-1)/(f+1)) by its
 * series (|s| <= 1/3: five terms are good to 1e-6). */
static double neg_log_uniform(uint64_t r) {
  uint64_t m = (r >> 11) + 1;
  int e = 63 - __builtin_clzll(m);
  uint64_t scale_bits = (uint64_t)(1023 - e) << 52; /* 2^-e, exactly: no division */
  double scale;
  memcpy(&scale, &scale_bits, sizeof scale);
  double f = (double)m * scale;
  double s = (f - 1) / (f + 1), s2 = s * s;
  double ln_f = 2 * s * (1 + s2 * (1.0 / 3 + s2 * (1.0 / 5 + s2 * (1.0 / 7 + s2 / 9))));
  return (53 - e) * 0.69314718055994531 - ln_f;
}

static uint64_t sample_random(brisk_tcache_t *tc) {
  uint64_t x = tc->sample_rng;
  if (x == 0) x = brisk__os_random() ^ (uintptr_t)tc; /* per thread; the key's generator never gives 0 */
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  tc->sample_rng = x;
  return x;
}

/* The countdown's mean: the smaller of the enabled samplers' (0: none). */
static size_t sample_mean(void) {
  size_t g = brisk__opt.guard_sample, p = brisk__prof_mean();
  if (g == 0 || p == 0) return g | p;
  return g < p ? g : p;
}

static int64_t sample_gap(brisk_tcache_t *tc) {
  size_t mean = sample_mean();
  if (mean == 0) return INT64_MAX;
  double gap = neg_log_uniform(sample_random(tc)) * (double)mean;
  return gap >= 9e18 ? INT64_MAX : (int64_t)gap;
}

/* exp(-x) for x >= 0, without libm: exp(-x) = 2^-k exp(-r) with r in [0, ln 2),
 * exp(-r) by its series to the 14th power (good to 1e-15), in Horner's form,
 * and 2^-k made as a double's exponent. */
static double exp_neg(double x) {
  if (x > 700) return 0;
  int k = (int)(x / 0.69314718055994531);
  double r = x - k * 0.69314718055994531, sum = 1.0 / 87178291200.0; /* 1/14! */
  static const double inv_fact[14] = {1.0,           1.0,         1.0 / 2,         1.0 / 6,
                                      1.0 / 24,      1.0 / 120,   1.0 / 720,       1.0 / 5040,
                                      1.0 / 40320,   1.0 / 362880, 1.0 / 3628800,  1.0 / 39916800,
                                      1.0 / 479001600, 1.0 / 6227020800.0};
  for (int i = 13; i >= 0; i--) sum = sum * -r + inv_fact[i];
  uint64_t bits = (uint64_t)(1023 - k) << 52; /* 2^-k: k <= 1010 */
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  return sum * scale;
}

/* Whether the sampler of mean own (0: off) takes this event, a request of size
 * bytes that the countdown (of the smaller mean) has picked: with probability
 * (1 - exp(-size / own)) / (1 - exp(-size / mean)), so that the request is the
 * sampler's with probability 1 - exp(-size / own) in all, as if it counted down
 * on its own. */
bool brisk__sampler_takes(brisk_tcache_t *tc, size_t own, size_t size) {
  size_t mean = sample_mean();
  if (own == 0) return false;
  if (own <= mean) return true;
  /* The ratio lies between mean / own (1 - exp(-x) is concave) and that over
   * 1 - size / (2 mean) (as x - x^2/2 <= 1 - exp(-x) <= x): a draw outside
   * that band is decided without the exponentials (nearly every draw). */
  double u = (double)(sample_random(tc) >> 11) * 0x1p-53, m = (double)mean, o = (double)own, s = (double)size;
  if (u * o < m) return true;
  if (s < 2 * m && u * o * (2 * m - s) >= 2 * m * m) return false;
  double want = 1 - exp_neg(s / o), got = 1 - exp_neg(s / m);
  return u * got < want;
}

/* The countdown went below zero for a request of size bytes: whether it is
 * sampled, with the next gap drawn. Before brisk has started (its options
 * unread) and while the topology loads, the countdown stays at zero and the
 * block is a plain one. */
bool brisk__sample_due(brisk_tcache_t *tc, size_t size) {
  if (atomic_load_explicit(&brisk__init_state, memory_order_acquire) != 2 || brisk__boot_active()) {
    tc->sample_left = 0;
    return false;
  }
  if (tc->sample_rng == 0) { /* the thread's first gap starts with this request */
    int64_t gap = sample_gap(tc);
    if (gap >= (int64_t)size) {
      tc->sample_left = gap - (int64_t)size;
      return false;
    }
  }
  tc->sample_left = sample_gap(tc);
  return true;
}
