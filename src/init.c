/* Start-up, fork and purging.
 *
 * brisk starts on the first call into it, which under LD_PRELOAD comes from the
 * dynamic loader before any constructor has run: nothing here may call malloc
 * (or getenv, which is not ready yet) until brisk__init_state reads 2. The one
 * thread that wins the CAS initialises; others wait for it, which only happens
 * when a program starts threads before its first allocation.
 *
 * fork: a handler registered during start-up takes every brisk lock before the
 * fork (in the one order that the allocator itself nests them), so the child
 * never inherits a lock held by a thread that does not exist there. */
#define _GNU_SOURCE
#include "internal.h"

#include <sched.h>

atomic_int brisk__init_state;
brisk_counters_t brisk__counters;

static void fork_prepare(void) {
  brisk__lock(&brisk__registry_lock);
  brisk__central_fork_lock();
  brisk__lock(&brisk__heap_lock);
  brisk__numa_fork_lock();
  brisk__meta_fork_lock();
  brisk__pagemap_fork_lock();
}

static void fork_unlock_all(void) {
  brisk__pagemap_fork_unlock();
  brisk__meta_fork_unlock();
  brisk__numa_fork_unlock();
  brisk__unlock(&brisk__heap_lock);
  brisk__central_fork_unlock();
  brisk__unlock(&brisk__registry_lock);
}

static atomic_int purger_state; /* 0 none, 1 running, 2 could not start */

static void fork_child(void) {
  atomic_store(&purger_state, 0); /* the parent's purger does not exist here */
  brisk__numa_after_fork_child();
  brisk__tcache_after_fork_child(); /* the registry lock is still ours here */
  fork_unlock_all();
}

void brisk__init_slow(void) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&brisk__init_state, &expected, 1)) {
    while (atomic_load_explicit(&brisk__init_state, memory_order_acquire) != 2) sched_yield();
    return;
  }
  brisk__os_init();
  brisk__options_init();
  brisk__size_class_init();
  brisk__central_init();
  brisk__tcache_global_init();
  atomic_store_explicit(&brisk__init_state, 2, memory_order_release);
  /* From here on brisk can serve allocations, which pthread_atfork makes. */
  pthread_atfork(fork_prepare, fork_unlock_all, fork_child);
}

/* Make sure brisk is ready by the time main runs even in a program that never
 * allocates before it forks or starts threads. */
__attribute__((constructor(101))) static void brisk_constructor(void) { brisk__ensure_init(); }

void brisk__stat_mapped(int64_t delta) {
  uint64_t now = atomic_fetch_add_explicit(&brisk__counters.mapped, (uint64_t)delta, memory_order_relaxed) +
                 (uint64_t)delta;
  uint64_t peak = atomic_load_explicit(&brisk__counters.peak_mapped, memory_order_relaxed);
  while (delta > 0 && now > peak &&
         !atomic_compare_exchange_weak_explicit(&brisk__counters.peak_mapped, &peak, now,
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* ------------------------------------------------------------------------------
   Purging: free memory goes back to the OS on the page heap's decay (free pages
   beyond the swing of its recent use, once PURGE_TICK_MS old) and at the latest
   after BRISK_PURGE_DELAY_MS; idle central lists go back to their spans after
   the delay.

   Slow paths call the tick, and one caller at a time (the one that wins the
   timestamp) does the work, at most once per PURGE_TICK_MS. That alone never
   frees the memory of a program that releases a big working set and then goes
   quiet, so the first time PURGER_START_BYTES lie idle in the page heap (as it
   reports through brisk__purge_note_idle) brisk starts a background
   thread that ticks on its own (BRISK_PURGE_THREAD=0 turns it off). Short-lived
   programs never get there and never see the thread. It blocks every signal,
   and a forked child starts its own when it needs one.
------------------------------------------------------------------------------ */
#include <time.h>

#define PURGER_START_BYTES ((uint64_t)8 << 20)
/* The decay's step: memory freed in bulk is back within a few of them. */
#define PURGE_TICK_MS 100

static _Atomic uint64_t last_purge_ms;

static void *purger_main(void *arg) {
  (void)arg;
  for (;;) {
    uint64_t ms = PURGE_TICK_MS;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    brisk__purge_tick();
  }
  return NULL;
}

static brisk_noinline void purger_start(void) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&purger_state, &expected, 1)) return;
  if (!brisk__os_thread_start(purger_main, 64 * 1024, "brisk-purge"))
    atomic_store(&purger_state, 2); /* lazily purging slow paths remain */
}

void brisk__purge_tick(void) {
  uint64_t delay = brisk__opt.purge_delay_ms;
  uint64_t now = brisk__os_now_ms();
  uint64_t last = atomic_load_explicit(&last_purge_ms, memory_order_relaxed);
  if (now - last < (delay < PURGE_TICK_MS ? delay : PURGE_TICK_MS)) return;
  if (!atomic_compare_exchange_strong_explicit(&last_purge_ms, &last, now, memory_order_relaxed,
                                               memory_order_relaxed))
    return;
  brisk__central_drain(false);
  brisk__heap_decay(now, delay);
}

void brisk__purge_note_idle(uint64_t idle_bytes) {
  if (brisk_unlikely(idle_bytes >= PURGER_START_BYTES) && brisk__opt.purge_thread &&
      atomic_load_explicit(&purger_state, memory_order_relaxed) == 0)
    purger_start();
}

size_t brisk__purge_all(void) {
  if (brisk__tc.state == BRISK_TC_LIVE) brisk__tcache_flush(&brisk__tc);
  brisk__central_drain(true);
  uint64_t now = brisk__os_now_ms();
  size_t bytes = brisk__heap_purge(now, 0);
  atomic_store_explicit(&last_purge_ms, now, memory_order_relaxed);
  return bytes;
}
