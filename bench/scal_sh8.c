/* scal/sh8: the shape of MicroQuill's sh8bench, blocks freed by other threads.
 * The threads form a ring: each allocates a batch of blocks (sizes sweeping
 * 1..1063 bytes), hands it to the next thread, and frees the batch that the
 * previous thread handed to it. Every thread both allocates and frees, and
 * every block is freed by a thread other than its allocator (with one thread,
 * by itself), but for at most one batch per thread at the very end, when the
 * next thread may have stopped. This is the remote-free path at full rate in all directions at
 * once, unlike scal/prodcons, where half the threads only allocate.
 *
 * Item: one block allocated by one thread and freed by another. */
#include <stdatomic.h>
#include <stdlib.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

#define SH8_BATCH 256
#define SH8_MAX_SIZE 1063
#define SH8_SIZE_STEP 97
#define SH8_LINE 64

/* One mailbox per thread, written by its owner (the batch it hands on) and
 * emptied by the next thread: full holds the batch until that thread takes it. */
typedef struct {
  _Alignas(SH8_LINE) atomic_int full;
  void *blocks[SH8_BATCH];
} sh8_box_t;

static sh8_box_t *sh8_boxes;
/* Threads that have run all their iterations: the others stop waiting for them. */
static atomic_int sh8_done;

static void sh8_setup(bs_state *st) {
  size_t n = (size_t)bs_thread_count(st);
  sh8_boxes = aligned_alloc(SH8_LINE, n * sizeof *sh8_boxes);
  if (sh8_boxes == NULL) bu_oom("aligned_alloc", n * sizeof *sh8_boxes);
  for (size_t i = 0; i < n; i++) atomic_init(&sh8_boxes[i].full, 0);
  atomic_store(&sh8_done, 0);
}

/* What is still in a box at the end goes too. */
static void sh8_teardown(bs_state *st) {
  for (int i = 0; i < bs_thread_count(st); i++)
    if (atomic_load(&sh8_boxes[i].full))
      for (int j = 0; j < SH8_BATCH; j++) free(sh8_boxes[i].blocks[j]);
  free(sh8_boxes);
  sh8_boxes = NULL;
}

static void bench_sh8(bs_state *st) {
  const int index = bs_thread_index(st), count = bs_thread_count(st);
  sh8_box_t *mine = &sh8_boxes[index];
  sh8_box_t *prev = &sh8_boxes[(index + count - 1) % count];
  void *batch[SH8_BATCH];
  size_t size = (size_t)index % SH8_MAX_SIZE + 1;
  long long freed = 0, iter = 0;
  const long long last = bs_max_iterations(st);
  while (bs_keep_running(st)) {
    for (int i = 0; i < SH8_BATCH; i++) {
      batch[i] = bu_malloc(size);
      bu_touch(batch[i], size);
      size = (size + SH8_SIZE_STEP - 1) % SH8_MAX_SIZE + 1;
    }
    unsigned spins = 0;
    int handed = 1;
    while (handed && atomic_load_explicit(&mine->full, memory_order_acquire)) {
      if (atomic_load_explicit(&sh8_done, memory_order_acquire)) {
        /* the next thread may have finished: this last batch stays home */
        for (int i = 0; i < SH8_BATCH; i++) free(batch[i]);
        handed = 0;
        break;
      }
      /* The next thread has not taken the last batch: take our own inbox
       * meanwhile, so that a ring of waiting threads cannot stall. */
      if (atomic_load_explicit(&prev->full, memory_order_acquire)) {
        for (int i = 0; i < SH8_BATCH; i++) free(prev->blocks[i]);
        atomic_store_explicit(&prev->full, 0, memory_order_release);
        freed += SH8_BATCH;
      }
      bu_wait_step(&spins);
    }
    if (handed) {
      for (int i = 0; i < SH8_BATCH; i++) mine->blocks[i] = batch[i];
      atomic_store_explicit(&mine->full, 1, memory_order_release);
    }
    if (atomic_load_explicit(&prev->full, memory_order_acquire)) {
      for (int i = 0; i < SH8_BATCH; i++) free(prev->blocks[i]);
      atomic_store_explicit(&prev->full, 0, memory_order_release);
      freed += SH8_BATCH;
    }
    /* Said in the last iteration: the final bs_keep_running waits for all threads. */
    if (++iter == last) atomic_fetch_add_explicit(&sh8_done, 1, memory_order_release);
  }
  bs_items(st, freed);
}

BS_REGISTRATION(sh8_register)
static void sh8_register(void) {
  bs_bench *b = bs_register("scal/sh8", bench_sh8);
  bs_setup(b, sh8_setup);
  bs_teardown(b, sh8_teardown);
  bs_threads_sweep(b);
}
