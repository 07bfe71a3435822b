/* scal/thread_churn: short-lived threads, as in a server that spawns a thread per
 * task. Each benchmark thread, per iteration, starts a worker thread that
 * allocates CHURN_BLOCKS small blocks, frees three quarters of them itself and
 * exits; the benchmark thread joins it and frees the last quarter. Measures what
 * an allocator pays to set up and retire a thread's cache, and to free blocks
 * whose allocating thread is gone.
 *
 * Item: one block allocated and freed (CHURN_BLOCKS per iteration);
 * threads_per_second counts the worker threads. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "shim/bench_shim.h"

#define CHURN_BLOCKS 256
#define CHURN_KEPT (CHURN_BLOCKS / 4) /* left for the joining thread to free */
#define CHURN_SEED 0xc4a2

typedef struct {
  uint64_t rng;
  void *blocks[CHURN_BLOCKS];
} churn_task_t;

static void *churn_worker(void *arg) {
  churn_task_t *t = arg;
  for (int i = 0; i < CHURN_BLOCKS; i++) {
    size_t size = bu_small_size(bu_rand(&t->rng), 5);
    t->blocks[i] = bu_malloc(size);
    bu_touch(t->blocks[i], size);
  }
  for (int i = CHURN_KEPT; i < CHURN_BLOCKS; i++) free(t->blocks[i]);
  return NULL;
}

static void bench_thread_churn(bs_state *st) {
  churn_task_t task;
  task.rng = bu_seed(CHURN_SEED, bs_thread_index(st));
  while (bs_keep_running(st)) {
    pthread_t tid;
    int err = pthread_create(&tid, NULL, churn_worker, &task);
    if (err != 0) {
      bs_error(st, strerror(err));
      continue;
    }
    pthread_join(tid, NULL);
    for (int i = 0; i < CHURN_KEPT; i++) free(task.blocks[i]);
  }
  bs_items(st, bs_max_iterations(st) * CHURN_BLOCKS);
  bs_counter(st, "threads_per_second", (double)bs_max_iterations(st), BS_RATE);
}

BS_REGISTRATION(thread_churn_register)
static void thread_churn_register(void) {
  bs_threads_sweep(bs_register("scal/thread_churn", bench_thread_churn));
}
