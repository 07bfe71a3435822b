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

void brisk__central_init(void);
void brisk__tcache_global_init(void);
void brisk__tcache_after_fork_child(void);
void brisk__meta_fork_lock(void);
void brisk__meta_fork_unlock(void);
void brisk__pagemap_fork_lock(void);
void brisk__pagemap_fork_unlock(void);

static void fork_prepare(void) {
  brisk__lock(&brisk__registry_lock);
  brisk__central_fork_lock();
  brisk__lock(&brisk__heap_lock);
  brisk__lock(&brisk__large_lock);
  brisk__meta_fork_lock();
  brisk__pagemap_fork_lock();
}

static void fork_unlock_all(void) {
  brisk__pagemap_fork_unlock();
  brisk__meta_fork_unlock();
  brisk__unlock(&brisk__large_lock);
  brisk__unlock(&brisk__heap_lock);
  brisk__central_fork_unlock();
  brisk__unlock(&brisk__registry_lock);
}

static void fork_child(void) {
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
   Purging: memory idle for BRISK_PURGE_DELAY_MS goes back to the OS. There is no
   background thread: slow paths call the tick, and one caller at a time (the one
   that wins the timestamp) does the work, at most twice per delay.
------------------------------------------------------------------------------ */
static _Atomic uint64_t last_purge_ms;

void brisk__purge_tick(void) {
  uint64_t delay = brisk__opt.purge_delay_ms;
  uint64_t now = brisk__os_now_ms();
  uint64_t last = atomic_load_explicit(&last_purge_ms, memory_order_relaxed);
  if (now - last < delay / 2) return;
  if (!atomic_compare_exchange_strong_explicit(&last_purge_ms, &last, now, memory_order_relaxed,
                                               memory_order_relaxed))
    return;
  brisk__central_drain(false);
  brisk__heap_purge(now, delay);
  brisk__large_purge(now, delay);
}

size_t brisk__purge_all(void) {
  if (brisk__tc.state == BRISK_TC_LIVE) brisk__tcache_flush(&brisk__tc);
  brisk__central_drain(true);
  uint64_t now = brisk__os_now_ms();
  size_t bytes = brisk__heap_purge(now, 0);
  bytes += brisk__large_purge(now, 0);
  atomic_store_explicit(&last_purge_ms, now, memory_order_relaxed);
  return bytes;
}
