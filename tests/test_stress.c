/* Randomized multithreaded stress through the libc names (linked with brisk_static,
 * so the threads, cmocka and the test all allocate from brisk).
 *
 * Worker threads share an array of slots. A worker takes a slot by atomic
 * exchange of its busy flag (never spinning: a busy slot is skipped), checks the
 * block in it and frees, reallocates or replaces it, so most blocks are freed by a
 * thread other than the one that allocated them. Every block is filled over its
 * whole usable size with a pattern keyed by (block id, size) and fully checked
 * before it is freed or reallocated. The run is cut into epochs: at the end of
 * each, all workers exit (at slightly different times) and are joined, the main
 * thread checks every live block and that no two live [p, p + usable) ranges
 * overlap, and fresh workers go on with the blocks of the dead ones.
 *
 * STRESS_SEED (default 20240611) makes the random choices reproducible (the
 * interleaving is not); STRESS_SECONDS (default 3) sets the duration;
 * STRESS_THREADS (default 8) the number of workers. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_helpers.h"
#include "brisk.h"

#define DEFAULT_SEED 20240611ull
#define DEFAULT_SECONDS 3.0
#define DEFAULT_THREADS 8
#define MAX_THREADS 64
/* Enough slots that live memory (about 8 KiB a slot on average) reaches tens of
 * MiB, few enough that a busy slot is rarely hit twice in a row. */
#define NSLOTS 4096
/* Workers are replaced this often, so blocks outlive the threads that made them. */
#define EPOCH_SECONDS 0.5

typedef enum { OP_MALLOC, OP_CALLOC, OP_POSIX_MEMALIGN, OP_ALIGNED_ALLOC, OP_REALLOC_NULL,
               OP_REALLOC } alloc_op_t;
static const char *const op_name[] = {"malloc", "calloc", "posix_memalign", "aligned_alloc",
                                      "realloc(NULL)", "realloc"};

typedef struct slot_s {
  atomic_int busy;      /* 1 while a thread works on the slot */
  unsigned char *p;     /* NULL when the slot is empty */
  size_t size;          /* requested bytes */
  size_t usable;        /* malloc_usable_size when allocated; all of it is patterned */
  size_t align;         /* requested alignment, 0 for plain allocations */
  uint64_t id;          /* unique block id */
  int thread;           /* the worker that allocated it (epoch * 100 + index) */
  alloc_op_t op;        /* how it was allocated */
} slot_t;

static slot_t slots[NSLOTS];

static uint64_t cfg_seed;
static double cfg_seconds;
static int cfg_threads;

static atomic_int failed;
static char failure[1024];
static atomic_ullong total_ops;
static atomic_ullong total_cross_frees;

/* What this thread is doing to the allocator, for the report when brisk aborts
 * (or crashes) in the middle of it. Plain stores: formatting happens only then. */
typedef struct doing_s {
  const char *action; /* NULL when not inside an allocator call */
  int worker;
  size_t slot;
  alloc_op_t op;      /* when allocating */
  size_t size, align; /* when allocating or reallocating */
} doing_t;
static __thread doing_t doing;

/* The signal fences keep the compiler from dropping these stores: nothing but the
 * signal handler ever reads them. */
static inline void doing_begin(doing_t d) {
  doing = d;
  atomic_signal_fence(memory_order_seq_cst);
}

static inline void doing_end(void) {
  atomic_signal_fence(memory_order_seq_cst);
  doing.action = NULL;
}

/* ------------------------------------------------------------------------------
   Helpers
------------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t block_seed(uint64_t id, size_t size) {
  return id * 0x2545F4914F6CDD1Dull ^ (uint64_t)size;
}

static unsigned expected_byte(uint64_t seed, size_t i) {
  return (unsigned)(unsigned char)(pattern_word(seed, i / 8) >> (8 * (i % 8)));
}

/* Record the first failure (later ones are dropped) and stop every worker. */
static void report_failure(const char *fmt, ...) {
  if (atomic_exchange(&failed, 1)) return;
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(failure, sizeof failure, "seed %llu: ", (unsigned long long)cfg_seed);
  vsnprintf(failure + n, sizeof failure - (size_t)n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "stress: FAILED: %s\n", failure);
}

static void describe(const slot_t *s, size_t i, char *buf, size_t n) {
  /* A block id is (worker index << 40) + the worker's sequence number. */
  snprintf(buf, n, "slot %zu block %llu.%llu (%s by worker %d, size %zu, usable %zu, align %zu) "
           "at %p",
           i, (unsigned long long)(s->id >> 40), (unsigned long long)(s->id & ((1ull << 40) - 1)),
           op_name[s->op], s->thread, s->size, s->usable, s->align, (void *)s->p);
}

static void on_fatal_signal(int sig) {
  char buf[768];
  int n;
  if (doing.action) {
    const slot_t *s = &slots[doing.slot];
    char what[256];
    if (s->p)
      describe(s, doing.slot, what, sizeof what);
    else
      snprintf(what, sizeof what, "empty slot %zu", doing.slot);
    n = snprintf(buf, sizeof buf,
                 "stress: signal %d (seed %llu) while worker %d was %s (op %s, size %zu, align "
                 "%zu) on %s\n",
                 sig, (unsigned long long)cfg_seed, doing.worker, doing.action, op_name[doing.op],
                 doing.size, doing.align, what);
  } else {
    n = snprintf(buf, sizeof buf, "stress: signal %d (seed %llu)\n", sig,
                 (unsigned long long)cfg_seed);
  }
  if (n > 0) {
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    (void)w;
  }
  raise(sig); /* SA_RESETHAND: the default action now, so the status shows the signal */
}

static void install_fatal_signal_report(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_fatal_signal;
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGABRT, &sa, NULL);
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
}

/* Check the whole block in slot i; false (and a failure report) if it is damaged. */
static int slot_check(const slot_t *s, size_t i, int worker, const char *when) {
  char what[256];
  doing_begin((doing_t){.action = "checking", .worker = worker, .slot = i, .op = s->op});
  size_t usable = malloc_usable_size(s->p);
  doing_end();
  if (usable != s->usable) {
    describe(s, i, what, sizeof what);
    report_failure("worker %d %s: %s: malloc_usable_size changed to %zu", worker, when, what,
                   usable);
    return 0;
  }
  uint64_t seed = block_seed(s->id, s->size);
  size_t bad = pattern_check(s->p, s->usable, seed);
  if (bad != SIZE_MAX) {
    describe(s, i, what, sizeof what);
    report_failure("worker %d %s: %s: byte %zu is 0x%02x, want 0x%02x (corrupted or overlapped)",
                   worker, when, what, bad, s->p[bad], expected_byte(seed, bad));
    return 0;
  }
  return 1;
}

/* Mostly small, some 4-64 KiB buffers, rarely 100 KiB and more. */
static size_t pick_size(uint64_t *rng) {
  uint64_t r = splitmix(rng) % 1000, x = splitmix(rng);
  if (r < 700) return x % 257;
  if (r < 850) return 257 + x % (4096 - 257);
  if (r < 970) return 4096 + x % (60 * KiB + 1);
  if (r < 990) return 64 * KiB + x % (36 * KiB);
  return 100 * KiB + x % (200 * KiB + 1);
}

/* ------------------------------------------------------------------------------
   One worker
------------------------------------------------------------------------------ */

typedef struct worker_s {
  pthread_t tid;
  int index;   /* epoch * 100 + thread number, for the reports */
  uint64_t rng;
  uint64_t next_id;
  double deadline;
  uint64_t ops;
  uint64_t cross_frees;
} worker_t;

/* Fill slot s with a new block; false on failure (reported). */
static int slot_fill(worker_t *w, slot_t *s, size_t i) {
  size_t size = pick_size(&w->rng);
  uint64_t r = splitmix(&w->rng) % 100;
  alloc_op_t op = r < 50 ? OP_MALLOC
                : r < 70 ? OP_CALLOC
                : r < 82 ? OP_POSIX_MEMALIGN
                : r < 94 ? OP_ALIGNED_ALLOC
                         : OP_REALLOC_NULL;
  size_t align = 0;
  unsigned char *p = NULL;
  doing_begin((doing_t){.action = "allocating", .worker = w->index, .slot = i, .op = op,
                        .size = size});
  switch (op) {
  case OP_MALLOC: p = malloc(size); break;
  case OP_CALLOC:
    p = size % 8 == 0 && size ? calloc(size / 8, 8) : calloc(1, size);
    break;
  case OP_POSIX_MEMALIGN: {
    align = (size_t)16 << (splitmix(&w->rng) % 13); /* 16 B .. 64 KiB */
    doing.align = align;
    atomic_signal_fence(memory_order_seq_cst);
    void *q = NULL;
    int rc = posix_memalign(&q, align, size);
    if (rc != 0) {
      report_failure("worker %d: posix_memalign(%zu, %zu) returned %d", w->index, align, size,
                     rc);
      return 0;
    }
    p = q;
    break;
  }
  case OP_ALIGNED_ALLOC:
    align = (size_t)16 << (splitmix(&w->rng) % 13);
    doing.align = align;
    atomic_signal_fence(memory_order_seq_cst);
    p = aligned_alloc(align, size);
    break;
  case OP_REALLOC_NULL: p = realloc(NULL, size); break;
  case OP_REALLOC: break;
  }
  if (!p) {
    report_failure("worker %d: %s(size %zu, align %zu) returned NULL (errno %d)", w->index,
                   op_name[op], size, align, errno);
    return 0;
  }
  if (!is_aligned(p, 16) || (align && !is_aligned(p, align))) {
    report_failure("worker %d: %s(size %zu, align %zu) returned misaligned %p", w->index,
                   op_name[op], size, align, (void *)p);
    return 0;
  }
  size_t usable = malloc_usable_size(p);
  doing_end();
  if (usable < size) {
    report_failure("worker %d: %s(size %zu) at %p: usable size %zu", w->index, op_name[op], size,
                   (void *)p, usable);
    return 0;
  }
  if (op == OP_CALLOC) {
    size_t bad = first_nonzero(p, size);
    if (bad != SIZE_MAX) {
      report_failure("worker %d: calloc(size %zu) at %p: byte %zu is 0x%02x, not zero", w->index,
                     size, (void *)p, bad, p[bad]);
      return 0;
    }
  }
  s->p = p;
  s->size = size;
  s->usable = usable;
  s->align = align;
  s->id = w->next_id++;
  s->thread = w->index;
  s->op = op;
  pattern_fill(p, usable, block_seed(s->id, size));
  (void)i;
  return 1;
}

static void slot_release(worker_t *w, slot_t *s) {
  if (s->thread != w->index) w->cross_frees++;
  doing_begin((doing_t){.action = "freeing", .worker = w->index, .slot = (size_t)(s - slots),
                        .op = s->op});
  free(s->p);
  doing_end();
  s->p = NULL;
}

/* Grow or shrink the block in slot s; the kept prefix must survive. */
static int slot_realloc(worker_t *w, slot_t *s, size_t i) {
  size_t size = pick_size(&w->rng);
  if (size == 0) size = 1; /* realloc(p, 0) frees: not what this step is about */
  uint64_t old_seed = block_seed(s->id, s->size);
  doing_begin((doing_t){.action = "reallocating", .worker = w->index, .slot = i,
                        .op = OP_REALLOC, .size = size});
  unsigned char *q = realloc(s->p, size);
  doing_end();
  if (!q) {
    report_failure("worker %d: realloc(%p, %zu) returned NULL (errno %d)", w->index,
                   (void *)s->p, size, errno);
    return 0;
  }
  size_t keep = s->size < size ? s->size : size;
  size_t bad = pattern_check(q, keep, old_seed);
  if (bad != SIZE_MAX) {
    char what[256];
    describe(s, i, what, sizeof what);
    report_failure("worker %d: realloc of %s to %zu bytes at %p: byte %zu of the kept %zu is "
                   "0x%02x, want 0x%02x",
                   w->index, what, size, (void *)q, bad, keep, q[bad],
                   expected_byte(old_seed, bad));
    return 0;
  }
  doing_begin((doing_t){.action = "checking the result of realloc", .worker = w->index,
                        .slot = i, .op = OP_REALLOC, .size = size});
  size_t usable = malloc_usable_size(q);
  doing_end();
  if (!is_aligned(q, 16) || usable < size) {
    report_failure("worker %d: realloc to %zu returned %p with usable size %zu", w->index, size,
                   (void *)q, usable);
    return 0;
  }
  if (s->thread != w->index) w->cross_frees++;
  s->p = q;
  s->size = size;
  s->usable = usable;
  s->align = 0;
  s->id = w->next_id++;
  s->thread = w->index;
  s->op = OP_REALLOC;
  pattern_fill(q, usable, block_seed(s->id, size));
  return 1;
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  for (;;) {
    if ((w->ops & 63) == 0 && (now_s() >= w->deadline || atomic_load(&failed))) break;
    w->ops++;
    size_t i = (size_t)(splitmix(&w->rng) % NSLOTS);
    slot_t *s = &slots[i];
    if (atomic_exchange_explicit(&s->busy, 1, memory_order_acquire)) continue;
    int ok = 1;
    if (!s->p) {
      ok = slot_fill(w, s, i);
    } else if ((ok = slot_check(s, i, w->index, "before free/realloc"))) {
      uint64_t r = splitmix(&w->rng) % 100;
      if (r < 45) {
        slot_release(w, s);
      } else if (r < 75) {
        ok = slot_realloc(w, s, i);
      } else {
        slot_release(w, s);
        ok = slot_fill(w, s, i);
      }
    }
    atomic_store_explicit(&s->busy, 0, memory_order_release);
    if (!ok) break;
  }
  atomic_fetch_add(&total_ops, w->ops);
  atomic_fetch_add(&total_cross_frees, w->cross_frees);
  return NULL;
}

/* ------------------------------------------------------------------------------
   The check between epochs: every live block intact, no two overlap
------------------------------------------------------------------------------ */

typedef struct live_s {
  uintptr_t start, end;
  size_t slot;
} live_t;

static int live_cmp(const void *a, const void *b) {
  const live_t *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

static live_t live[NSLOTS];

static size_t check_all_live_blocks(int epoch) {
  size_t n = 0;
  for (size_t i = 0; i < NSLOTS && !atomic_load(&failed); i++) {
    slot_t *s = &slots[i];
    if (!s->p) continue;
    if (!slot_check(s, i, -1, "between epochs")) break;
    live[n].start = (uintptr_t)s->p;
    live[n].end = (uintptr_t)s->p + s->usable;
    live[n].slot = i;
    n++;
  }
  qsort(live, n, sizeof *live, live_cmp);
  for (size_t k = 1; k < n && !atomic_load(&failed); k++) {
    if (live[k - 1].end > live[k].start) {
      char a[256], b[256];
      describe(&slots[live[k - 1].slot], live[k - 1].slot, a, sizeof a);
      describe(&slots[live[k].slot], live[k].slot, b, sizeof b);
      report_failure("after epoch %d two live blocks overlap: %s and %s", epoch, a, b);
    }
  }
  return n;
}

/* ------------------------------------------------------------------------------
   The test
------------------------------------------------------------------------------ */

static void read_config(void) {
  const char *e = getenv("STRESS_SEED");
  cfg_seed = e && *e ? strtoull(e, NULL, 0) : DEFAULT_SEED;
  e = getenv("STRESS_SECONDS");
  cfg_seconds = e && *e ? strtod(e, NULL) : DEFAULT_SECONDS;
  if (!(cfg_seconds > 0)) cfg_seconds = DEFAULT_SECONDS;
  e = getenv("STRESS_THREADS");
  cfg_threads = e && *e ? atoi(e) : DEFAULT_THREADS;
  if (cfg_threads < 1 || cfg_threads > MAX_THREADS) cfg_threads = DEFAULT_THREADS;
}

static void test_random_multithreaded_use_keeps_every_block_intact(void **state) {
  (void)state;
  read_config();
  install_fatal_signal_report();
  printf("stress: STRESS_SEED=%llu STRESS_SECONDS=%g threads=%d slots=%d\n",
         (unsigned long long)cfg_seed, cfg_seconds, cfg_threads, NSLOTS);
  fflush(stdout);

  static worker_t workers[MAX_THREADS];
  uint64_t master = cfg_seed;
  double start = now_s(), end = start + cfg_seconds;
  int epoch = 0;
  size_t max_live = 0;
  while (!atomic_load(&failed)) {
    double t = now_s();
    if (t >= end) break;
    double epoch_end = t + EPOCH_SECONDS < end ? t + EPOCH_SECONDS : end;
    for (int k = 0; k < cfg_threads; k++) {
      worker_t *w = &workers[k];
      memset(w, 0, sizeof *w);
      w->index = epoch * 100 + k;
      w->rng = splitmix(&master);
      w->next_id = ((uint64_t)(epoch * 100 + k) << 40) + 1;
      /* Staggered exits: some threads die while others still free their blocks. */
      w->deadline = epoch_end - (double)(splitmix(&w->rng) % 100) * 1e-3;
      int rc = pthread_create(&w->tid, NULL, worker_main, w);
      expect(rc == 0, "pthread_create: %d", rc);
    }
    for (int k = 0; k < cfg_threads; k++) pthread_join(workers[k].tid, NULL);
    size_t n = check_all_live_blocks(epoch);
    if (n > max_live) max_live = n;
    epoch++;
  }

  /* Free what is left, checking it one last time. */
  for (size_t i = 0; i < NSLOTS && !atomic_load(&failed); i++) {
    if (!slots[i].p) continue;
    if (!slot_check(&slots[i], i, -1, "at the end")) break;
    doing_begin((doing_t){.action = "freeing at the end", .worker = -1, .slot = i,
                          .op = slots[i].op});
    free(slots[i].p);
    doing_end();
    slots[i].p = NULL;
  }

  brisk_stats_t st;
  brisk_get_stats(&st);
  printf("stress: %d epochs, %llu operations, %llu frees or reallocs by another thread, "
         "up to %zu live blocks; mapped %llu, peak %llu, threads seen %llu\n",
         epoch, (unsigned long long)atomic_load(&total_ops),
         (unsigned long long)atomic_load(&total_cross_frees), max_live,
         (unsigned long long)st.mapped, (unsigned long long)st.peak_mapped,
         (unsigned long long)st.threads_seen);
  if (atomic_load(&failed)) fail_msg("%s", failure);
  expect(atomic_load(&total_cross_frees) > 0, "no block was freed by another thread");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_multithreaded_use_keeps_every_block_intact),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
