/* churn: a multithreaded malloc/free benchmark for comparing allocators side by side.
 *
 * Each thread owns a working set of slots and keeps replacing random slots with
 * fresh blocks of random size. A quarter of the frees are handed to another thread,
 * which frees the block itself, so every allocator pays for remote frees the way a
 * server's does. Only plain malloc and free are called: LD_PRELOAD decides which
 * allocator serves them, and the run names the allocator it found mapped, so a
 * mistyped library path cannot pass unnoticed.
 *
 * Thread state is private to its thread except the inbox, which other threads push
 * onto (lock-free) and only its owner empties. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* ------------------------------------------------------------------------------
   Workload constants
------------------------------------------------------------------------------ */

/* Request sizes run from 16 B to 4 KiB: the small-object range a thread cache
 * exists for. See churn_size() for the distribution. */
#define CHURN_MIN_SIZE 16
#define CHURN_OCTAVES 8 /* 16 << 8 == 4096 */

/* One free in four is remote (done by another thread): enough that the
 * cross-thread path matters in the total, as in a server handing requests
 * between threads, without making the benchmark only about that path. */
#define CHURN_REMOTE_MASK 3

/* Remote blocks travel in batches of this many, one atomic push per batch, so the
 * handoff costs a small fraction of the frees it carries. */
#define CHURN_BATCH 32

/* A thread looks at its inbox every this many operations. Looking is one load of
 * a line that changes only once per batch; the interval bounds how long handed-over
 * blocks wait (and so the memory they hold) while their new owner is running. */
#define CHURN_DRAIN_EVERY 16

/* Bytes written at the head of each block: one cache line. With the last byte
 * also written, every page a block spans is touched (so peak RSS is honest)
 * without memset of whole blocks dominating the timing. */
#define CHURN_TOUCH 64

/* How long a thread that has finished its operations sleeps between emptying its
 * inbox: short next to a scheduler time slice, long next to a drain. */
static const struct timespec churn_idle_nap = {0, 50000}; /* 50 us */

#define CHURN_CACHE_LINE 64
#define CHURN_MAX_THREADS 1024

/* Defaults: 8 threads oversubscribe a small machine on purpose (a server has more
 * threads than cores); 2000 live blocks per thread (~0.5 MiB of requests);
 * 2,000,000 replacements per thread, 16 M in all: about a second on two cores. */
#define CHURN_DEFAULT_THREADS 8
#define CHURN_DEFAULT_SLOTS_K 2.0
#define CHURN_DEFAULT_OPS 2000000
#define CHURN_DEFAULT_SEED 42

/* ------------------------------------------------------------------------------
   Types
------------------------------------------------------------------------------ */

typedef struct churn_opts_s {
  unsigned threads;
  size_t slots;  /* live blocks per thread */
  uint64_t ops;  /* replacements per thread: one free and one malloc each */
  uint64_t seed; /* the run is reproducible but for the order remote frees arrive */
} churn_opts_t;

/* A block on its way to another thread is linked through its own first word, so
 * the handoff needs no memory of its own. */
typedef struct churn_link_s {
  struct churn_link_s *next;
} churn_link_t;

typedef struct churn_slot_s {
  unsigned char *p; /* never NULL once the thread has filled its working set */
  size_t size;      /* what was asked for */
} churn_slot_t;

typedef struct churn_thread_s churn_thread_t;

/* Shared by all threads; read-only once the threads run, but for pushing. */
typedef struct churn_run_s {
  churn_opts_t opts;
  churn_thread_t *threads;
  pthread_barrier_t start; /* threads + main: the clock starts when all are ready */
  atomic_uint pushing;     /* threads that may still push; 0: inboxes are final */
} churn_run_t;

struct churn_thread_s {
  /* Written by any thread (push), exchanged to NULL by the owner (drain). Away
   * from the owner's private fields so pushes do not disturb them. */
  _Alignas(CHURN_CACHE_LINE) _Atomic(churn_link_t *) inbox;
  atomic_size_t pending; /* blocks pushed and not yet drained: the backlog */
  /* Private to the owner from here on. */
  _Alignas(CHURN_CACHE_LINE) churn_run_t *run;
  pthread_t tid;
  unsigned index;
  uint64_t rng;
  churn_slot_t *slots;
  churn_link_t **out_head; /* per target thread: the batch being filled */
  churn_link_t **out_tail;
  unsigned *out_count;
  uint64_t remote_frees; /* blocks this thread handed to others */
  uint64_t max_backlog;  /* most blocks found waiting in the inbox at once */
  uint64_t stalls;       /* times a full inbox made this thread wait */
};

/* ------------------------------------------------------------------------------
   Random numbers: splitmix64, fast and good enough to pick sizes and slots
------------------------------------------------------------------------------ */

static uint64_t churn_rand(uint64_t *state) {
  uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* The size distribution, skewed toward small as real programs are: an octave k in
 * 0..7 is the smaller of two uniform draws, so P(k) = (15 - 2k) / 64 (23% for
 * 16-32 B down to 1.6% for 2-4 KiB); within the octave the size is uniform in
 * [16 << k, 32 << k]. Mean 281 B, median 87 B, 90th percentile 778 B. */
static size_t churn_size(uint64_t r) {
  unsigned a = (unsigned)(r & (CHURN_OCTAVES - 1));
  unsigned b = (unsigned)((r >> 3) & (CHURN_OCTAVES - 1));
  unsigned k = a < b ? a : b;
  size_t lo = (size_t)CHURN_MIN_SIZE << k;
  return lo + (size_t)((r >> 8) % (lo + 1));
}

/* ------------------------------------------------------------------------------
   Blocks: written when allocated, checked when freed, so a broken allocator fails
   here instead of producing a number
------------------------------------------------------------------------------ */

static uint64_t churn_tag(const void *p, size_t size) {
  return ((uint64_t)(uintptr_t)p ^ (uint64_t)size) * UINT64_C(0x9e3779b97f4a7c15);
}

static void block_fill(unsigned char *p, size_t size) {
  uint64_t tag = churn_tag(p, size);
  size_t head = size < CHURN_TOUCH ? size : CHURN_TOUCH;
  memset(p, (int)(tag >> 56), head);
  memcpy(p, &tag, sizeof tag);
  p[size - 1] = (unsigned char)tag;
}

static void block_check(const unsigned char *p, size_t size) {
  uint64_t tag = churn_tag(p, size), seen;
  memcpy(&seen, p, sizeof seen);
  if (seen != tag || p[size - 1] != (unsigned char)tag) {
    fprintf(stderr, "churn: block %p of %zu bytes was overwritten while live\n",
            (const void *)p, size);
    abort();
  }
}

/* ------------------------------------------------------------------------------
   Remote frees: per-target batches, pushed whole onto the target's inbox
------------------------------------------------------------------------------ */

static void inbox_drain(churn_thread_t *self);

/* The backlog of a thread is bounded by its working set: with more threads than
 * cores the owner may be off the CPU for a whole time slice, and blocks piling up
 * for it meanwhile are memory no allocator can reuse; unbounded, that pile (not
 * the allocator) would decide peak RSS. A producer that finds the target full
 * waits, emptying its own inbox meanwhile so two threads waiting on each other
 * still progress. Then blocks in flight are at most as many as live ones. */
static void inbox_push(churn_thread_t *self, churn_thread_t *to, churn_link_t *first,
                       churn_link_t *last, size_t count) {
  const size_t cap = self->run->opts.slots;
  if (atomic_load_explicit(&to->pending, memory_order_relaxed) >= cap) {
    self->stalls++;
    do {
      inbox_drain(self);
      nanosleep(&churn_idle_nap, NULL);
    } while (atomic_load_explicit(&to->pending, memory_order_relaxed) >= cap);
  }
  atomic_fetch_add_explicit(&to->pending, count, memory_order_relaxed);
  churn_link_t *head = atomic_load_explicit(&to->inbox, memory_order_relaxed);
  do {
    last->next = head;
  } while (!atomic_compare_exchange_weak_explicit(&to->inbox, &head, first,
                                                  memory_order_release,
                                                  memory_order_relaxed));
}

/* Only the owner empties its inbox, and it takes the whole chain at once, so the
 * push above cannot suffer ABA. The cheap relaxed look first keeps an empty inbox
 * from costing an exclusive cache line every time. */
static void inbox_drain(churn_thread_t *self) {
  if (atomic_load_explicit(&self->inbox, memory_order_relaxed) == NULL) return;
  churn_link_t *l = atomic_exchange_explicit(&self->inbox, NULL, memory_order_acquire);
  uint64_t count = 0;
  while (l != NULL) {
    churn_link_t *next = l->next;
    free(l);
    l = next;
    count++;
  }
  atomic_fetch_sub_explicit(&self->pending, count, memory_order_relaxed);
  if (count > self->max_backlog) self->max_backlog = count;
}

static void outbox_flush(churn_thread_t *self, unsigned target) {
  if (self->out_count[target] == 0) return;
  inbox_push(self, &self->run->threads[target], self->out_head[target],
             self->out_tail[target], self->out_count[target]);
  self->out_head[target] = self->out_tail[target] = NULL;
  self->out_count[target] = 0;
}

static void free_remote(churn_thread_t *self, unsigned char *p, uint64_t r) {
  unsigned n = self->run->opts.threads;
  unsigned target = (self->index + 1 + (unsigned)(r % (n - 1))) % n;
  churn_link_t *l = (churn_link_t *)(void *)p;
  l->next = self->out_head[target];
  self->out_head[target] = l;
  if (self->out_tail[target] == NULL) self->out_tail[target] = l;
  self->remote_frees++;
  if (++self->out_count[target] == CHURN_BATCH) outbox_flush(self, target);
}

/* ------------------------------------------------------------------------------
   The thread body
------------------------------------------------------------------------------ */

static unsigned char *block_new(churn_thread_t *self, churn_slot_t *s) {
  size_t size = churn_size(churn_rand(&self->rng));
  unsigned char *p = malloc(size);
  if (p == NULL) {
    fprintf(stderr, "churn: malloc(%zu) failed: %s\n", size, strerror(errno));
    exit(1);
  }
  block_fill(p, size);
  s->p = p;
  s->size = size;
  return p;
}

static void *churn_thread(void *arg) {
  churn_thread_t *self = arg;
  const churn_opts_t *o = &self->run->opts;
  const size_t slots = o->slots;
  const int remote_ok = o->threads > 1;

  /* Setup, outside the clock: the full working set, so that every timed operation
   * is one free and one malloc in steady state. */
  for (size_t i = 0; i < slots; i++) block_new(self, &self->slots[i]);
  pthread_barrier_wait(&self->run->start);

  for (uint64_t op = 0; op < o->ops; op++) {
    uint64_t r = churn_rand(&self->rng);
    churn_slot_t *s = &self->slots[r % slots];
    block_check(s->p, s->size);
    if (remote_ok && ((r >> 40) & CHURN_REMOTE_MASK) == 0) {
      free_remote(self, s->p, r >> 42);
    } else {
      free(s->p);
    }
    block_new(self, s);
    if (op % CHURN_DRAIN_EVERY == 0) inbox_drain(self);
  }

  /* Hand over what is still batched, then keep freeing what others send until
   * nobody can push any more: a thread that finished early must not sit on the
   * blocks of those still running (that would be memory no allocator could
   * reuse, charged to all of them in peak RSS). Sleeping between looks leaves the
   * cores to the threads still working. */
  for (unsigned t = 0; t < o->threads; t++) outbox_flush(self, t);
  atomic_fetch_sub_explicit(&self->run->pushing, 1, memory_order_acq_rel);
  while (atomic_load_explicit(&self->run->pushing, memory_order_acquire) != 0) {
    inbox_drain(self);
    nanosleep(&churn_idle_nap, NULL);
  }
  inbox_drain(self);
  for (size_t i = 0; i < slots; i++) {
    block_check(self->slots[i].p, self->slots[i].size);
    free(self->slots[i].p);
  }
  return NULL;
}

/* ------------------------------------------------------------------------------
   Which allocator is this? The one whose library is mapped (else glibc's)
------------------------------------------------------------------------------ */

static const char *const churn_known[] = {"brisk", "jemalloc", "tcmalloc", "mimalloc"};
#define CHURN_KNOWN (sizeof churn_known / sizeof churn_known[0])

/* Writes the names found, '+'-joined (two would be a broken setup and should show),
 * or "glibc" when none of them is mapped. */
static void detect_allocator(char *out, size_t cap) {
  int found[CHURN_KNOWN] = {0};
  char line[4096];
  FILE *f = fopen("/proc/self/maps", "r");
  if (f != NULL) {
    while (fgets(line, sizeof line, f) != NULL) {
      const char *base = strrchr(line, '/');
      if (base == NULL) continue;
      for (size_t i = 0; i < CHURN_KNOWN; i++) {
        char lib[32];
        snprintf(lib, sizeof lib, "/lib%s", churn_known[i]);
        if (strncmp(base, lib, strlen(lib)) == 0) found[i] = 1;
      }
    }
    fclose(f);
  }
  out[0] = '\0';
  for (size_t i = 0; i < CHURN_KNOWN; i++) {
    if (!found[i]) continue;
    if (out[0] != '\0') strncat(out, "+", cap - strlen(out) - 1);
    strncat(out, churn_known[i], cap - strlen(out) - 1);
  }
  if (out[0] == '\0') snprintf(out, cap, "glibc");
}

/* ------------------------------------------------------------------------------
   Options and main
------------------------------------------------------------------------------ */

static void usage(FILE *f) {
  fprintf(f,
          "usage: churn [-t THREADS] [-s K] [-n OPS] [-seed SEED]\n"
          "  -t THREADS  threads (default %d)\n"
          "  -s K        live blocks per thread, in thousands (default %.0f: %.0f blocks)\n"
          "  -n OPS      replacements per thread, each one free and one malloc\n"
          "              (default %d; suffixes k and m multiply by 10^3 and 10^6)\n"
          "  -seed SEED  random seed (default %d)\n"
          "Prints one line of key=value. Sizes 16 B..4 KiB, skewed small; one free in\n"
          "four is done by another thread.\n",
          CHURN_DEFAULT_THREADS, CHURN_DEFAULT_SLOTS_K, CHURN_DEFAULT_SLOTS_K * 1000,
          CHURN_DEFAULT_OPS, CHURN_DEFAULT_SEED);
}

static double parse_number(const char *flag, const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end == 'k' || *end == 'K') {
    v *= 1e3;
    end++;
  } else if (*end == 'm' || *end == 'M') {
    v *= 1e6;
    end++;
  }
  if (errno != 0 || end == s || *end != '\0' || !(v >= 0)) {
    fprintf(stderr, "churn: bad value for %s: '%s'\n", flag, s);
    exit(2);
  }
  return v;
}

static void parse_opts(int argc, char **argv, churn_opts_t *o) {
  double slots_k = CHURN_DEFAULT_SLOTS_K;
  o->threads = CHURN_DEFAULT_THREADS;
  o->ops = CHURN_DEFAULT_OPS;
  o->seed = CHURN_DEFAULT_SEED;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "churn: '%s' needs a value\n", a);
      usage(stderr);
      exit(2);
    }
    const char *v = argv[++i];
    if (strcmp(a, "-t") == 0) {
      o->threads = (unsigned)parse_number(a, v);
    } else if (strcmp(a, "-s") == 0) {
      slots_k = parse_number(a, v);
    } else if (strcmp(a, "-n") == 0) {
      o->ops = (uint64_t)parse_number(a, v);
    } else if (strcmp(a, "-seed") == 0 || strcmp(a, "--seed") == 0) {
      o->seed = (uint64_t)parse_number(a, v);
    } else {
      fprintf(stderr, "churn: unknown option '%s'\n", a);
      usage(stderr);
      exit(2);
    }
  }
  o->slots = (size_t)(slots_k * 1000 + 0.5);
  if (o->threads < 1 || o->threads > CHURN_MAX_THREADS || o->slots < 1) {
    fprintf(stderr, "churn: need 1..%d threads and at least one slot\n", CHURN_MAX_THREADS);
    exit(2);
  }
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of all threads of the process, user and system. */
static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

int main(int argc, char **argv) {
  churn_run_t run;
  parse_opts(argc, argv, &run.opts);
  const unsigned n = run.opts.threads;

  char allocator[64];
  detect_allocator(allocator, sizeof allocator);

  /* Setup memory comes from the allocator under test too; it is allocated before
   * the clock starts and is small next to the working sets. */
  run.threads = aligned_alloc(CHURN_CACHE_LINE, n * sizeof(churn_thread_t));
  if (run.threads == NULL) {
    fprintf(stderr, "churn: out of memory\n");
    return 1;
  }
  memset(run.threads, 0, n * sizeof(churn_thread_t));
  pthread_barrier_init(&run.start, NULL, n + 1);
  atomic_init(&run.pushing, n);

  for (unsigned t = 0; t < n; t++) {
    churn_thread_t *th = &run.threads[t];
    atomic_init(&th->inbox, NULL);
    atomic_init(&th->pending, 0);
    th->run = &run;
    th->index = t;
    th->rng = run.opts.seed ^ (UINT64_C(0xd1b54a32d192ed03) * (t + 1));
    th->slots = calloc(run.opts.slots, sizeof(churn_slot_t));
    th->out_head = calloc(n, sizeof(churn_link_t *));
    th->out_tail = calloc(n, sizeof(churn_link_t *));
    th->out_count = calloc(n, sizeof(unsigned));
    if (th->slots == NULL || th->out_head == NULL || th->out_tail == NULL ||
        th->out_count == NULL) {
      fprintf(stderr, "churn: out of memory\n");
      return 1;
    }
  }
  for (unsigned t = 0; t < n; t++) {
    int err = pthread_create(&run.threads[t].tid, NULL, churn_thread, &run.threads[t]);
    if (err != 0) {
      fprintf(stderr, "churn: pthread_create: %s\n", strerror(err));
      return 1;
    }
  }

  pthread_barrier_wait(&run.start);
  double t0 = now_seconds(), c0 = cpu_seconds();
  uint64_t remote = 0, backlog = 0, stalls = 0;
  for (unsigned t = 0; t < n; t++) {
    pthread_join(run.threads[t].tid, NULL);
    remote += run.threads[t].remote_frees;
    stalls += run.threads[t].stalls;
    if (run.threads[t].max_backlog > backlog) backlog = run.threads[t].max_backlog;
  }
  double seconds = now_seconds() - t0, cpu = cpu_seconds() - c0;

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  uint64_t ops = run.opts.ops * n;
  /* mops_per_cpu_s divides by the CPU time the threads used instead of the wall
   * time: on a machine shared with other work it moves much less than
   * mops_per_s. max_backlog and stalls are there to read the rest by: how many
   * blocks waited for a descheduled thread at worst, and how often that made a
   * producer wait. */
  printf("churn allocator=%s threads=%u slots=%zu ops=%" PRIu64 " remote_frees=%" PRIu64
         " max_backlog=%" PRIu64 " stalls=%" PRIu64 " seed=%" PRIu64
         " seconds=%.3f cpu_seconds=%.3f mops_per_s=%.3f mops_per_cpu_s=%.3f"
         " peak_rss_kib=%ld\n",
         allocator, n, run.opts.slots, ops, remote, backlog, stalls, run.opts.seed, seconds,
         cpu, seconds > 0 ? (double)ops / seconds / 1e6 : 0.0,
         cpu > 0 ? (double)ops / cpu / 1e6 : 0.0, ru.ru_maxrss);

  for (unsigned t = 0; t < n; t++) {
    free(run.threads[t].slots);
    free(run.threads[t].out_head);
    free(run.threads[t].out_tail);
    free(run.threads[t].out_count);
  }
  free(run.threads);
  pthread_barrier_destroy(&run.start);
  return 0;
}
