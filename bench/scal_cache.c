/* scal/cache_thrash and scal/cache_scratch: false sharing caused by the allocator
 * (Hoard's cache-thrash and cache-scratch).
 *
 * cache_thrash (active): each thread allocates a small object, writes it
 * CACHE_WRITES times and frees it, over and over. An allocator that hands
 * neighbouring small blocks of one cache line to different threads makes those
 * writes bounce the line between cores.
 *
 * cache_scratch (passive): thread 0 allocates one small object per thread, side by
 * side, and hands one to each thread, which frees it and then loops as above. An
 * allocator that lets a thread reuse a block freed into its cache from another
 * thread's line shares that line with the other threads' objects.
 *
 * Item (both): one malloc, CACHE_WRITES writes to the object, one free. */
#include <stdlib.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

/* An 8-byte object: eight of them fit in one 64-byte line. */
#define CACHE_OBJECT 8
/* Writes per object: enough that the writes, where the line is shared, cost more
 * than the malloc and free. */
#define CACHE_WRITES 64

static void cache_loop(bs_state *st) {
  while (bs_keep_running(st)) {
    volatile unsigned char *p = bu_malloc(CACHE_OBJECT);
    for (int w = 0; w < CACHE_WRITES; w++) p[w % CACHE_OBJECT]++;
    free((void *)p);
  }
  bs_items(st, bs_max_iterations(st));
}

static void bench_cache_thrash(bs_state *st) { cache_loop(st); }

/* The objects thread 0 allocates for everybody; read by thread i only for its own. */
static void **scratch_objects;

static void scratch_setup(bs_state *st) {
  int n = bs_thread_count(st);
  scratch_objects = bu_malloc((size_t)n * sizeof *scratch_objects);
  for (int i = 0; i < n; i++) {
    scratch_objects[i] = bu_malloc(CACHE_OBJECT);
    bu_touch(scratch_objects[i], CACHE_OBJECT);
  }
}

static void scratch_teardown(bs_state *st) {
  free(scratch_objects);
  scratch_objects = NULL;
}

static void bench_cache_scratch(bs_state *st) {
  free(scratch_objects[bs_thread_index(st)]);
  cache_loop(st);
}

BS_REGISTRATION(cache_register)
static void cache_register(void) {
  bs_threads_sweep(bs_register("scal/cache_thrash", bench_cache_thrash));
  bs_bench *b = bs_register("scal/cache_scratch", bench_cache_scratch);
  bs_setup(b, scratch_setup);
  bs_teardown(b, scratch_teardown);
  bs_threads_sweep(b);
}
