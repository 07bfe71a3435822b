/* The page heap: splitting, coalescing, purging, and the sbrk -> mmap fallback. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include <pthread.h>
#include <sched.h>

#include "internal.h"

static int setup(void **state) {
  (void)state;
  brisk_free(brisk_malloc(1));
  return 0;
}

static size_t resident_pages(void *p, size_t bytes) {
  size_t os = (size_t)sysconf(_SC_PAGESIZE), n = bytes / os, count = 0;
  unsigned char vec[4096];
  assert_true(n <= sizeof vec);
  assert_int_equal(mincore(p, bytes, vec), 0);
  for (size_t i = 0; i < n; i++) count += vec[i] & 1;
  return count;
}

/* A span comes out with its first and last page in the map (what coalescing
 * neighbours read) and the pages between clear, for small.c to write. */
static void test_alloc_splits_and_maps_its_ends(void **state) {
  (void)state;
  brisk_span_t *s = brisk__heap_alloc(0, 5);
  assert_non_null(s);
  assert_int_equal(s->npages, 5);
  assert_int_equal(s->start % BRISK_PAGE_SIZE, 0);
  assert_int_equal(s->state, BRISK_SPAN_SMALL);
  assert_ptr_equal(brisk__pagemap_get((void *)(s->start + 100)), s);
  assert_ptr_equal(brisk__pagemap_get((void *)(s->start + 4 * BRISK_PAGE_SIZE + 100)), s);
  for (size_t i = 1; i < 4; i++) assert_null(brisk__pagemap_get((void *)(s->start + i * BRISK_PAGE_SIZE + 100)));
  brisk__heap_free(s);
}

static void test_free_neighbours_coalesce_into_one_span(void **state) {
  (void)state;
  brisk_span_t *a = brisk__heap_alloc(0, 3), *b = brisk__heap_alloc(0, 3), *c = brisk__heap_alloc(0, 3);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  uintptr_t as = a->start, bs = b->start, cs = c->start;
  assert_int_equal(bs, as + 3 * BRISK_PAGE_SIZE);
  assert_int_equal(cs, bs + 3 * BRISK_PAGE_SIZE);
  brisk__heap_free(a);
  brisk__heap_free(c);
  brisk_span_t *left = brisk__pagemap_get((void *)as);
  assert_non_null(left);
  assert_int_equal(left->state, BRISK_SPAN_FREE);
  brisk__heap_free(b); /* joins both neighbours */
  brisk_span_t *all = brisk__pagemap_get((void *)as);
  assert_non_null(all);
  assert_int_equal(all->state, BRISK_SPAN_FREE);
  assert_int_equal(all->start, as);
  assert_true(all->npages >= 9);
  /* pages that became interior are no longer in the map */
  assert_null(brisk__pagemap_get((void *)bs));
  assert_null(brisk__pagemap_get((void *)cs));
  assert_ptr_equal(brisk__pagemap_get((void *)(all->start + (all->npages - 1) * BRISK_PAGE_SIZE)), all);
}

static void test_idle_free_pages_are_given_back(void **state) {
  (void)state;
  const size_t pages = 64, bytes = pages * BRISK_PAGE_SIZE;
  brisk_span_t *s = brisk__heap_alloc(0, pages);
  assert_non_null(s);
  void *p = (void *)s->start;
  memset(p, 0xab, bytes);
  assert_int_equal(resident_pages(p, bytes), bytes / (size_t)sysconf(_SC_PAGESIZE));
  uint64_t free0, ret0, sb;
  brisk__heap_stats(&free0, &ret0, &sb);
  brisk__heap_free(s);
  uint64_t now = brisk__os_now_ms();
  /* not idle long enough yet: nothing happens */
  brisk__heap_purge(now, 60000);
  assert_true(resident_pages(p, bytes) > 0);
  assert_true(brisk__heap_purge(now + 60000, 60000) >= bytes);
  assert_int_equal(resident_pages(p, bytes), 0);
  uint64_t free1, ret1;
  brisk__heap_stats(&free1, &ret1, &sb);
  assert_true(ret1 >= ret0 + bytes);
}

static void test_trim_returns_small_heap_memory(void **state) {
  (void)state;
  enum { N = 20000 };
  static void *blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = brisk_malloc(512);
    memset(blocks[i], 1, 512);
  }
  for (int i = 0; i < N; i++) brisk_free(blocks[i]);
  brisk_trim();
  brisk_stats_t st;
  brisk_get_stats(&st);
  assert_true(st.heap_free < 1024 * 1024);
  assert_true(st.returned >= (uint64_t)N * 512 / 2);
}

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
  fclose(f);
  return resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* A program frees a big working set and then makes no further call: the purge
 * thread still gives the memory back after the delay. */
static void test_idle_memory_goes_back_without_further_calls(void **state) {
  (void)state;
  enum { N = 200000, SIZE = 1000 };
  void **blocks = calloc(N, sizeof *blocks); /* glibc's: not part of the count */
  assert_non_null(blocks);
  for (int i = 0; i < N; i++) {
    blocks[i] = brisk_malloc(SIZE);
    memset(blocks[i], 7, SIZE);
  }
  size_t peak = rss_bytes();
  for (int i = 0; i < N; i++) brisk_free(blocks[i]);
  free(blocks);
  /* two purge delays (central lists, then heap pages) and a purger period */
  struct timespec ts = {3, 500 * 1000 * 1000};
  nanosleep(&ts, NULL);
  size_t after = rss_bytes();
  if (after + (size_t)N * SIZE * 3 / 4 > peak)
    fail_msg("RSS %zu MiB at peak, still %zu MiB after idling", peak >> 20, after >> 20);
}

/* Allocate (and keep) enough 1000-byte blocks that the heap must grow by at least
 * extra bytes beyond the free pages it already has, and check every block. Runs
 * in forked children: exits on failure. */
static void grow_heap(size_t extra, brisk_stats_t *before, brisk_stats_t *after) {
  brisk_get_stats(before);
  size_t n = (size_t)((before->heap_free + before->returned + extra) / 1000);
  void *list = NULL;
  for (size_t i = 0; i < n; i++) {
    unsigned char *b = brisk_malloc(1000);
    if (b == NULL) _exit(11);
    memset(b, (int)(i & 0xff), 1000);
    *(void **)b = list; /* chain the blocks through their first word */
    list = b;
  }
  for (size_t i = n; i-- > 0;) {
    unsigned char *b = list;
    if (b[999] != (i & 0xff)) _exit(12);
    list = *(void **)b;
  }
  brisk_get_stats(after);
}

/* Grow with the program break blocked by a mapping: brisk must carry on with
 * mmap'd regions. */
static int blocked_break(void) {
  size_t os = (size_t)sysconf(_SC_PAGESIZE);
  uintptr_t brk_now = (uintptr_t)sbrk(0);
  void *wall = (void *)((brk_now + os - 1) & ~(os - 1));
  if (mmap(wall, os, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != wall) return 10;
  brisk_stats_t before, after;
  grow_heap(30u << 20, &before, &after);
  if (after.sbrk_bytes != before.sbrk_bytes) return 13;
  if (after.mapped < before.mapped + (30u << 20)) return 14;
  return 0;
}

static void test_blocked_break_falls_back_to_mmap(void **state) {
  (void)state;
  assert_int_equal(run_in_child(blocked_break, "blocked_break"), 0);
}

/* BRISK_VERBOSE's warning about the failed sbrk is written under the heap lock:
 * a thread with a cancel pending must not unwind there holding it, or the next
 * heap growth hangs (the hardening issue's H2). */
static volatile int warned_and_returned;
static void *grow_with_cancel_pending(void *arg) {
  (void)arg;
  pthread_cancel(pthread_self());
  brisk_stats_t before, after;
  grow_heap(8u << 20, &before, &after); /* sbrk fails: the warning */
  warned_and_returned = 1;
  pthread_testcancel();
  return NULL;
}

static int verbose_warning_with_cancel_pending(void) {
  alarm(30); /* a hang below ends the child with SIGALRM */
  size_t os = (size_t)sysconf(_SC_PAGESIZE);
  uintptr_t brk_now = (uintptr_t)sbrk(0);
  void *wall = (void *)((brk_now + os - 1) & ~(os - 1));
  if (mmap(wall, os, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != wall) return 10;
  brisk__opt.verbose = 1;
  pthread_t t;
  void *ret = NULL;
  if (pthread_create(&t, NULL, grow_with_cancel_pending, NULL) != 0) return 11;
  pthread_join(t, &ret);
  if (!warned_and_returned || ret != PTHREAD_CANCELED) return 12;
  brisk_stats_t before, after;
  grow_heap(8u << 20, &before, &after); /* the heap lock must be free */
  return 0;
}

static void test_verbose_warning_in_thread_with_cancel_pending_leaves_heap_usable(void **state) {
  (void)state;
  assert_int_equal(run_in_child(verbose_warning_with_cancel_pending, "verbose_cancel"), 0);
}

static int sbrk_off(void) {
  brisk__opt.sbrk = false;
  brisk_stats_t before, after;
  grow_heap(20u << 20, &before, &after);
  if (after.sbrk_bytes != before.sbrk_bytes) return 1;
  return after.mapped >= before.mapped + (20u << 20) ? 0 : 2;
}

static void test_sbrk_option_off_uses_mmap_only(void **state) {
  (void)state;
  assert_int_equal(run_in_child(sbrk_off, "sbrk_off"), 0);
}

/* ------------------------------------------------------------------------------
   Other users of the program break. brisk's os.c calls sbrk, and this file's
   definition takes the place of libc's (glibc's __sbrk does the work), so that
   a test can move the break between two of brisk's calls as another thread's
   sbrk would. The harness's own malloc calls glibc's internal sbrk, not this.
------------------------------------------------------------------------------ */
extern void *__sbrk(intptr_t increment);
static bool cut_in;    /* take a byte just before brisk's next growing sbrk */
static bool cut_after; /* take a byte just after it */

void *sbrk(intptr_t increment) {
  if (increment > 0 && cut_in) {
    cut_in = false;
    if (__sbrk(1) == (void *)-1) return (void *)-1;
  }
  void *p = __sbrk(increment);
  if (increment > 0 && cut_after && p != (void *)-1) {
    cut_after = false;
    __sbrk(1);
  }
  return p;
}

static uintptr_t brk_now(void) { return (uintptr_t)__sbrk(0); }

static uint64_t sbrk_total(void) {
  uint64_t free_bytes, returned, sb;
  brisk__heap_stats(&free_bytes, &returned, &sb);
  return sb;
}

/* A request longer than every free run, so that the heap must grow for it. */
static size_t beyond_free_runs(void) {
  uint64_t free_bytes, returned, sb;
  brisk__heap_stats(&free_bytes, &returned, &sb);
  return (size_t)((free_bytes + returned) / BRISK_PAGE_SIZE) + 2 * brisk__opt.heap_grow / BRISK_PAGE_SIZE;
}

/* The program takes the break to a chunk boundary plus extra bytes: brisk's
 * last chunk does not end at the break any more. */
static void program_moves_break(size_t extra) {
  uintptr_t b = brk_now();
  if (__sbrk((intptr_t)(brisk__align_up(b + 1, BRISK_HEAP_CHUNK_ALIGN) - b + extra)) == (void *)-1) _exit(50);
}

/* Memory that the break gave and brisk does not count as its own (the other
 * users' bytes aside): padding below a chunk only, less than the chunk alignment
 * a chunk (a lost chunk is BRISK_HEAP_GROW, 4 MiB, or more). */
static bool nothing_lost(uintptr_t brk0, uint64_t sb0, size_t others, unsigned chunks) {
  uint64_t moved = brk_now() - brk0 - others, counted = sbrk_total() - sb0;
  return moved >= counted && moved - counted < chunks * BRISK_HEAP_CHUNK_ALIGN;
}

/* Another thread's sbrk between brisk's look at the break and its growth leaves
 * the chunk off its boundary: brisk must take the missing piece (or cut the
 * chunk) rather than drop the chunk, and go on growing with sbrk (the hardening
 * issue's L3: the chunk was lost and the heap went to mmap for good). */
static int break_taken_between_brisk_calls(void) {
  program_moves_break(0); /* brisk pads nothing: a byte taken is a misaligned chunk */
  size_t n = beyond_free_runs();
  uintptr_t b0 = brk_now();
  uint64_t sb0 = sbrk_total();
  cut_in = true;
  brisk_span_t *s = brisk__heap_alloc(0, n);
  if (s == NULL) return 1;
  if (cut_in) return 2; /* brisk did not call sbrk */
  if (s->start % BRISK_PAGE_SIZE != 0) return 3;
  if (!nothing_lost(b0, sb0, 1, 1)) return 4;
  if (sbrk_total() < sb0 + n * BRISK_PAGE_SIZE) return 5;
  uint64_t sb1 = sbrk_total();
  brisk_span_t *t = brisk__heap_alloc(0, beyond_free_runs());
  if (t == NULL) return 6;
  if (sbrk_total() == sb1) return 7; /* the heap went on with mmap */
  memset((void *)s->start, 1, BRISK_PAGE_SIZE);
  memset((void *)t->start, 2, BRISK_PAGE_SIZE);
  brisk__heap_free(s);
  brisk__heap_free(t);
  return 0;
}

static void test_break_moved_between_brisk_calls_loses_nothing_and_sbrk_goes_on(void **state) {
  (void)state;
  assert_int_equal(run_in_child(break_taken_between_brisk_calls, "break_taken_between_brisk_calls"), 0);
}

/* Span descriptors held so that the metadata chunk is used up. */
static brisk_span_t *held[1 << 16];
static size_t held_count;

/* Use up the metadata: descriptors until a fresh chunk is mapped, then the rest
 * of that chunk, so that the next descriptor needs a new mapping. */
static void use_up_metadata(void) {
  uint64_t m0 = atomic_load(&brisk__counters.meta);
  do {
    if (held_count == sizeof held / sizeof *held) _exit(51);
    held[held_count++] = brisk__span_new();
  } while (atomic_load(&brisk__counters.meta) == m0);
  size_t per = (size_t)(atomic_load(&brisk__counters.meta) - m0 - BRISK_META_CHUNK_HEADER) /
               brisk__align_up(sizeof(brisk_span_t), BRISK_CACHE_LINE);
  for (size_t i = 1; i < per; i++) {
    if (held_count == sizeof held / sizeof *held) _exit(52);
    held[held_count++] = brisk__span_new();
  }
}

static void give_back_metadata(void) {
  while (held_count > 0) brisk__span_delete(held[--held_count]);
}

/* The break grows but no metadata can be had for the chunk (the address-space
 * limit leaves room for the chunk, not for a metadata mapping): the chunk must
 * go back to the break, or, where another user has moved the break past it, be
 * kept and taken by the next growth. The hardening issue's L3: it was "kept for
 * the next try" and forgotten, and the failed retry made the fallback sticky. */
static int metadata_fails_after_sbrk(bool break_moves_on) {
  use_up_metadata();
  program_moves_break(1); /* no free run at the break: the chunk is all new */
  size_t n = beyond_free_runs();
  uintptr_t b0 = brk_now();
  uint64_t sb0 = sbrk_total();
  set_as_limit(vm_now() + (n + 1) * BRISK_PAGE_SIZE + 64 * 1024);
  cut_after = break_moves_on;
  if (brisk__heap_alloc(0, n) != NULL) return 1; /* no descriptor for the chunk */
  if (cut_after) return 2;                       /* brisk did not call sbrk */
  set_as_limit(RLIM_INFINITY);
  give_back_metadata();
  size_t others = break_moves_on ? 1 : 0;
  if (!break_moves_on && !nothing_lost(b0, sb0, others, 1)) return 3; /* given back */
  brisk_span_t *s = brisk__heap_alloc(0, n);
  if (s == NULL) return 4;
  if (sbrk_total() < sb0 + n * BRISK_PAGE_SIZE) return 5; /* by sbrk again */
  if (!nothing_lost(b0, sb0, others, 2)) return 6;        /* the kept chunk is in use */
  memset((void *)s->start, 3, BRISK_PAGE_SIZE);
  brisk__heap_free(s);
  return 0;
}

static int metadata_fails_after_sbrk_at_the_break(void) { return metadata_fails_after_sbrk(false); }
static int metadata_fails_after_sbrk_below_the_break(void) { return metadata_fails_after_sbrk(true); }

static void test_sbrk_chunk_without_metadata_goes_back_to_the_break(void **state) {
  (void)state;
  assert_int_equal(run_in_child(metadata_fails_after_sbrk_at_the_break, "metadata_fails_at_the_break"), 0);
}

static void test_sbrk_chunk_without_metadata_below_a_moved_break_is_kept(void **state) {
  (void)state;
  assert_int_equal(run_in_child(metadata_fails_after_sbrk_below_the_break, "metadata_fails_below_the_break"), 0);
}

/* The program's own use of the break fills an address-space limit, so brisk's
 * sbrk fails; once the program lowers the break again, the heap grows with sbrk
 * again instead of staying on mmap for good (the hardening issue's L3). */
static int break_freed_by_its_other_user(void) {
  size_t n = beyond_free_runs(), mine = 36u << 20;
  set_as_limit(vm_now() + (40u << 20));
  if (__sbrk((intptr_t)mine) == (void *)-1) return 1;
  if (brisk__heap_alloc(0, n) != NULL) return 2; /* neither the break nor mmap has room */
  if (__sbrk(-(intptr_t)mine) == (void *)-1) return 3;
  set_as_limit(RLIM_INFINITY);
  uint64_t sb0 = sbrk_total();
  brisk_span_t *s = brisk__heap_alloc(0, n);
  if (s == NULL) return 4;
  if (sbrk_total() == sb0) return 5; /* less than n pages where a free run ends at the break */
  brisk__heap_free(s);
  return 0;
}

static void test_sbrk_is_tried_again_once_the_break_has_moved(void **state) {
  (void)state;
  assert_int_equal(run_in_child(break_freed_by_its_other_user, "break_freed_by_its_other_user"), 0);
}

/* sbrk failed once (a mapping above the break), so the heap grows with mmap.
 * When mmap fails too, sbrk is tried again before the heap gives up: the mapping
 * may be gone, and the break needs less when a free run ends at it. */
static int sbrk_as_last_resort(void) {
  size_t os = (size_t)sysconf(_SC_PAGESIZE);
  program_moves_break(os); /* the new chunk joins no free run below it */
  size_t n = beyond_free_runs(), k = 2 * brisk__opt.heap_grow / BRISK_PAGE_SIZE;
  uint64_t sb0 = sbrk_total(), grown = brisk__align_up(n * BRISK_PAGE_SIZE, BRISK_HEAP_CHUNK_ALIGN);
  brisk_span_t *s1 = brisk__heap_alloc(0, n);
  if (s1 == NULL) return 1;
  if (sbrk_total() != sb0 + grown) return 2;
  uintptr_t top = s1->start;
  brisk__heap_free(s1); /* a free run of n pages or more that ends at the break */
  void *wall = (void *)brk_now();
  if (mmap(wall, os, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != wall) return 3;
  brisk_span_t *s2 = brisk__heap_alloc(0, n + k); /* sbrk fails: mmap */
  if (s2 == NULL) return 4;
  if (sbrk_total() != sb0 + grown) return 5;
  munmap(wall, os);
  set_as_limit(vm_now() + k * BRISK_PAGE_SIZE + (1u << 20)); /* the k pages, not n + k */
  brisk_span_t *s3 = brisk__heap_alloc(0, n + k);
  if (s3 == NULL) return 6;
  if (s3->start != top) return 7; /* the free run, grown at the break */
  set_as_limit(RLIM_INFINITY);
  brisk__heap_free(s2);
  brisk__heap_free(s3);
  return 0;
}

static void test_sbrk_is_tried_again_when_mmap_fails(void **state) {
  (void)state;
  assert_int_equal(run_in_child(sbrk_as_last_resort, "sbrk_as_last_resort"), 0);
}

/* The program moves the break between brisk's growths (its own sbrk, in one
 * thread): brisk pads to its chunk boundary, goes on with sbrk, and neither
 * side's memory overlaps the other's. */
static int break_shared_with_the_program(void) {
  enum { ROUNDS = 4 };
  unsigned char *mine[ROUNDS];
  brisk_span_t *s[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    mine[r] = __sbrk(100);
    if (mine[r] == (void *)-1) return 1;
    memset(mine[r], r + 1, 100);
    uint64_t sb0 = sbrk_total();
    size_t n = beyond_free_runs();
    s[r] = brisk__heap_alloc(0, n);
    if (s[r] == NULL) return 2;
    if (sbrk_total() < sb0 + n * BRISK_PAGE_SIZE) return 3;
    memset((void *)s[r]->start, 0xee, n * BRISK_PAGE_SIZE);
  }
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < 100; i++)
      if (mine[r][i] != r + 1) return 4;
    brisk__heap_free(s[r]);
  }
  return 0;
}

static void test_break_shared_with_the_program_keeps_both_apart(void **state) {
  (void)state;
  assert_int_equal(run_in_child(break_shared_with_the_program, "break_shared_with_the_program"), 0);
}

/* ------------------------------------------------------------------------------
   Arenas. tests/unit.cmake runs this file twice: with BRISK_HEAP_SHARDS=3 (the
   threads are dealt three arenas round robin) and with the default (arenas on
   demand). These run last: the ones above count the break's growth exactly, in
   one arena.
------------------------------------------------------------------------------ */

static bool dealt(void) { return brisk__opt.heap_shards != 0; }

/* Runs of at most this many pages come from the thread's own arena (page_heap.c,
 * SHARDED_MAX_PAGES). */
#define ARENA_RUN_PAGES ((size_t)(1 << 20) / BRISK_PAGE_SIZE)
#define GROW_RUNS_MAX 4096

typedef struct {
  size_t npages;       /* the large run the thread takes */
  bool write, keep;    /* write it (resident); keep it (else free it) */
  /* grow: take (and keep) runs until one makes the heap grow; that one is the job's */
  bool grow;
  brisk_span_t *taken[GROW_RUNS_MAX];
  unsigned ntaken;
  brisk_span_t *span;  /* out: the run, if kept */
  uintptr_t start;     /* out: its address */
  uint16_t arena, small_arena; /* out: its arena, and that of a small span the thread took */
} arena_job_t;

static void *arena_worker(void *arg) {
  arena_job_t *j = arg;
  bool zeroed;
  brisk_span_t *s = NULL;
  while (j->grow && j->ntaken < GROW_RUNS_MAX) {
    uint64_t sb = sbrk_total();
    s = brisk__heap_alloc_large(0, j->npages, &zeroed);
    if (s == NULL) return NULL;
    j->taken[j->ntaken++] = s;
    if (sbrk_total() != sb) break;
    s = NULL;
  }
  if (!j->grow) s = brisk__heap_alloc_large(0, j->npages, &zeroed);
  brisk_span_t *small = brisk__heap_alloc(0, 1);
  if (s == NULL || small == NULL) return NULL;
  j->start = s->start;
  j->arena = s->arena;
  j->small_arena = small->arena;
  brisk__heap_free(small);
  if (j->write) memset((void *)s->start, 0x5a, j->npages * BRISK_PAGE_SIZE);
  if (j->keep) j->span = s;
  else brisk__heap_free_large(s);
  return NULL;
}

static void run_arena_job(arena_job_t *j) {
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, arena_worker, j), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_not_equal(j->arena, 0);
}

/* The span whose pages hold address p, found from its first page (the page map
 * keeps only the first and last page of a free run). */
static brisk_span_t *run_at(uintptr_t p) {
  for (uintptr_t pg = p & ~(uintptr_t)(BRISK_PAGE_SIZE - 1);; pg -= BRISK_PAGE_SIZE) {
    brisk_span_t *s = brisk__pagemap_get((void *)pg);
    if (s != NULL) {
      assert_true(s->start <= p && p < s->start + s->npages * BRISK_PAGE_SIZE);
      return s;
    }
  }
}

/* Every free run given back: no arena has a resident one, so that each thread
 * takes its runs from its own arena. */
static void purge_everything(void) { brisk__heap_purge(brisk__os_now_ms() + 3600 * 1000, 0); }

/* The arena this thread takes runs from (after purge_everything). */
static uint16_t my_arena(void) {
  brisk_span_t *s = brisk__heap_alloc(0, 1);
  assert_non_null(s);
  uint16_t a = s->arena;
  brisk__heap_free(s);
  return a;
}

/* Threads are dealt the arenas round robin: six threads in a row take all of
 * slot 0's (one more thread that starts in between, the purger, cannot change
 * that); a thread's small spans and large runs come from the same one; a run
 * freed by another thread goes back to the arena its pages are in. */
static void test_threads_are_dealt_arenas_and_runs_go_back_to_theirs(void **state) {
  (void)state;
  if (!dealt()) skip();
  enum { THREADS = 6 };
  const unsigned n = (unsigned)brisk__opt.heap_shards; /* BRISK_HEAP_SHARDS */
  assert_true(n >= 2 && n <= 3);
  static arena_job_t j[THREADS];
  bool seen[4] = {false};
  for (int i = 0; i < THREADS; i++) {
    purge_everything();
    j[i] = (arena_job_t){.npages = 2, .keep = true};
    run_arena_job(&j[i]);
    assert_int_equal(j[i].small_arena, j[i].arena);
    assert_true(j[i].arena >= 1 && j[i].arena <= n); /* slot 0's arenas */
    seen[j[i].arena] = true;
  }
  for (unsigned a = 1; a <= n; a++) assert_true(seen[a]);
  for (int i = 0; i < THREADS; i++) {
    brisk__heap_free_large(j[i].span); /* by this thread, not the one that took it */
    brisk_span_t *run = run_at(j[i].start);
    assert_int_equal(run->state, BRISK_SPAN_FREE);
    assert_int_equal(run->arena, j[i].arena);
  }
}

/* A thread whose own arena has no resident run long enough takes another
 * arena's resident run rather than grow: the pages a thread freed serve the
 * next thread's request while they are still in memory. */
static void test_resident_run_of_another_arena_serves_before_the_heap_grows(void **state) {
  (void)state;
  if (!dealt()) skip(); /* threads need to be in arenas apart */
  const size_t npages = ARENA_RUN_PAGES;
  static arena_job_t j;
  uint16_t mine;
  for (int tries = 0;; tries++) { /* a thread dealt another arena than this one's */
    assert_true(tries < 3);
    purge_everything(); /* no resident run anywhere */
    mine = my_arena();
    j = (arena_job_t){.npages = npages, .write = true};
    run_arena_job(&j);
    if (j.arena != mine) break;
  }
  uint64_t free0, ret0, sb0, free1, ret1, sb1;
  brisk__heap_stats(&free0, &ret0, &sb0);
  bool zeroed;
  brisk_span_t *s = brisk__heap_alloc_large(0, npages, &zeroed);
  assert_non_null(s);
  brisk__heap_stats(&free1, &ret1, &sb1);
  assert_int_equal(s->start, j.start);
  assert_int_equal(s->arena, j.arena); /* lent: its pages stay the other arena's */
  assert_false(zeroed);
  assert_int_equal(sb1, sb0);
  assert_int_equal(((unsigned char *)s->start)[npages * BRISK_PAGE_SIZE - 1], 0x5a);
  brisk__heap_free_large(s);
  assert_int_equal(brisk__pagemap_get((void *)j.start)->arena, j.arena);
}

/* Two arenas' chunks that the break lays end to end: their free runs stay
 * apart, each in its own arena, where one heap would have joined them. Thread x
 * takes runs until its arena grows at the break, then thread y (another arena)
 * does: y's new chunk starts where x's ends. */
static void test_free_runs_of_two_arenas_never_coalesce(void **state) {
  (void)state;
  if (!dealt()) skip();
  static arena_job_t x, y;
  purge_everything();
  x = (arena_job_t){.npages = ARENA_RUN_PAGES, .grow = true, .keep = true};
  run_arena_job(&x);
  uintptr_t x_end = brk_now(); /* x's chunk is the last the break gave */
  for (int tries = 0;; tries++) { /* a thread dealt another arena than x's */
    assert_true(tries < 3);
    y = (arena_job_t){.npages = ARENA_RUN_PAGES, .grow = true, .keep = true};
    run_arena_job(&y);
    if (y.arena != x.arena) break;
    for (unsigned i = 0; i < y.ntaken; i++) brisk__heap_free_large(y.taken[i]);
    x_end = brk_now();
  }
  assert_int_equal(y.start, x_end);
  for (unsigned i = 0; i < x.ntaken; i++) brisk__heap_free_large(x.taken[i]);
  for (unsigned i = 0; i < y.ntaken; i++) brisk__heap_free_large(y.taken[i]);
  /* y's run starts where it did, x's ends where it did: not one run */
  brisk_span_t *ry = run_at(y.start), *rx = run_at(x_end - BRISK_PAGE_SIZE);
  assert_int_equal(ry->state, BRISK_SPAN_FREE);
  assert_int_equal(rx->state, BRISK_SPAN_FREE);
  assert_int_equal(ry->arena, y.arena);
  assert_int_equal(rx->arena, x.arena);
  assert_int_equal(ry->start, y.start);
  assert_true(rx->start + rx->npages * BRISK_PAGE_SIZE == x_end);
}

typedef struct {
  brisk_span_t *span[2];
  uint16_t arena;
} spans_job_t;

static void *spans_worker(void *arg) {
  spans_job_t *j = arg;
  for (int i = 0; i < 2; i++) {
    j->span[i] = brisk__heap_alloc(0, 2);
    if (j->span[i] == NULL) return NULL;
  }
  j->arena = j->span[0]->arena;
  return NULL;
}

/* Spans freed in one batch (small.c's, of the spans one release empties): each
 * is a free run of the arena its pages are in afterwards, and the slots come
 * back cleared. With dealt arenas, the batch mixes spans of two of them,
 * interleaved. */
static void test_batch_free_returns_each_span_to_its_arena(void **state) {
  (void)state;
  static spans_job_t other;
  uint16_t mine = 0;
  for (int tries = 0;; tries++) {
    assert_true(tries < 4);
    purge_everything();
    mine = my_arena();
    purge_everything(); /* my_arena's run too: the worker takes from its own arena */
    other = (spans_job_t){{NULL, NULL}, 0};
    if (!dealt()) break;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, spans_worker, &other), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_non_null(other.span[1]);
    if (other.arena != mine) break;
    brisk__heap_free(other.span[0]);
    brisk__heap_free(other.span[1]);
  }
  /* Three of this thread's spans, with the worker's between them when dealt. */
  brisk_span_t *v[5];
  unsigned n = 0;
  for (int i = 0; i < 3; i++) {
    v[n] = brisk__heap_alloc(0, 3);
    assert_non_null(v[n]);
    assert_int_equal(v[n]->arena, mine);
    n++;
    if (dealt() && i < 2) v[n++] = other.span[i];
  }
  uintptr_t start[5];
  uint16_t arena[5];
  for (unsigned i = 0; i < n; i++) start[i] = v[i]->start, arena[i] = v[i]->arena;
  brisk__heap_free_batch(v, n);
  for (unsigned i = 0; i < n; i++) {
    assert_null(v[i]);
    brisk_span_t *run = run_at(start[i]);
    assert_int_equal(run->state, BRISK_SPAN_FREE);
    assert_int_equal(run->arena, arena[i]);
  }
  if (dealt()) assert_int_not_equal(arena[1], arena[0]); /* the batch did mix two arenas */
}

/* On demand: threads that do not queue all take their runs from the slot's
 * first arena (one arena costs the least memory). */
static void test_on_demand_threads_start_in_the_first_arena(void **state) {
  (void)state;
  if (dealt()) skip();
  for (int i = 0; i < 4; i++) {
    purge_everything();
    arena_job_t j = {.npages = 2};
    run_arena_job(&j);
    assert_int_equal(j.arena, 1);
    assert_int_equal(j.small_arena, 1);
  }
}

/* A thread whose arena's lock it finds taken, round after round. */
typedef struct {
  atomic_int round;    /* set by the test: the lock is held for this round */
  atomic_int done;     /* the round the worker has finished */
  uint16_t arena[256]; /* out: the arena of each round's run */
} contend_job_t;

static void *contend_worker(void *arg) {
  contend_job_t *c = arg;
  for (int r = 1; r <= 256; r++) {
    while (atomic_load(&c->round) < r) sched_yield();
    bool zeroed;
    brisk_span_t *s = brisk__heap_alloc_large(0, 2, &zeroed); /* waits for the lock */
    if (s == NULL) return NULL;
    c->arena[r - 1] = s->arena;
    brisk__heap_free_large(s);
    atomic_store(&c->done, r);
    if (s->arena != 1) break; /* it has moved */
  }
  return NULL;
}

/* On demand: a thread that keeps finding its arena's lock taken moves to
 * another arena. The test holds every arena's lock (the fork handler's call)
 * while the thread asks for a run, round after round: after at most 16
 * (CONTENDED_MOVE) waits its next run comes from another arena than the first. */
static void test_on_demand_contended_thread_moves_to_another_arena(void **state) {
  (void)state;
  if (dealt()) skip();
  static contend_job_t c;
  pthread_t t;
  purge_everything();
  atomic_store(&c.round, 0);
  atomic_store(&c.done, 0);
  assert_int_equal(pthread_create(&t, NULL, contend_worker, &c), 0);
  int r = 1;
  for (; r <= 256; r++) {
    brisk__heap_fork_lock();
    atomic_store(&c.round, r);
    struct timespec ts = {0, 2 * 1000 * 1000}; /* time to find the lock taken */
    nanosleep(&ts, NULL);
    brisk__heap_fork_unlock();
    while (atomic_load(&c.done) < r) sched_yield();
    if (c.arena[r - 1] != 1) break;
  }
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_true(r <= 256);
  assert_true(r >= 16); /* not before it had waited 16 times */
  for (int i = 0; i < r - 1; i++) assert_int_equal(c.arena[i], 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_alloc_splits_and_maps_its_ends),
    cmocka_unit_test(test_free_neighbours_coalesce_into_one_span),
    cmocka_unit_test(test_idle_free_pages_are_given_back),
    cmocka_unit_test(test_trim_returns_small_heap_memory),
    cmocka_unit_test(test_idle_memory_goes_back_without_further_calls),
    cmocka_unit_test(test_blocked_break_falls_back_to_mmap),
    cmocka_unit_test(test_sbrk_option_off_uses_mmap_only),
    cmocka_unit_test(test_break_moved_between_brisk_calls_loses_nothing_and_sbrk_goes_on),
    cmocka_unit_test(test_sbrk_chunk_without_metadata_goes_back_to_the_break),
    cmocka_unit_test(test_sbrk_chunk_without_metadata_below_a_moved_break_is_kept),
    cmocka_unit_test(test_sbrk_is_tried_again_once_the_break_has_moved),
    cmocka_unit_test(test_sbrk_is_tried_again_when_mmap_fails),
    cmocka_unit_test(test_break_shared_with_the_program_keeps_both_apart),
    cmocka_unit_test(test_verbose_warning_in_thread_with_cancel_pending_leaves_heap_usable),
    cmocka_unit_test(test_threads_are_dealt_arenas_and_runs_go_back_to_theirs),
    cmocka_unit_test(test_resident_run_of_another_arena_serves_before_the_heap_grows),
    cmocka_unit_test(test_free_runs_of_two_arenas_never_coalesce),
    cmocka_unit_test(test_batch_free_returns_each_span_to_its_arena),
    cmocka_unit_test(test_on_demand_threads_start_in_the_first_arena),
    cmocka_unit_test(test_on_demand_contended_thread_moves_to_another_arena),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
