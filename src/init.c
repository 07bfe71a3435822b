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
 * never inherits a lock held by a thread that does not exist there. Two
 * deadlocks shape it (both from glibc's own malloc tests):
 *  - stdio. glibc's fork takes the stdio list lock after the prepare handlers,
 *    and a thread may hold that lock (fflush(NULL)) while it waits for a FILE
 *    whose owner is inside realloc (getline) waiting for a brisk lock. So the
 *    prepare handler takes glibc's exported, recursive list lock first, as
 *    glibc does for its own malloc: by the time brisk's locks are held, no
 *    thread in stdio can need them. The parent releases it after glibc's own
 *    release; in the child glibc has already reset it.
 *  - fork from a signal handler that interrupted malloc. The interrupted
 *    thread holds a brisk lock, and the prepare handler would wait for itself.
 *    A process that has only ever had one thread (glibc's
 *    __libc_single_threaded: brisk's own purge and NUMA threads count) takes
 *    no lock at all: nobody else can hold one, and the child goes on exactly
 *    where the parent was, as glibc's malloc guarantees. */
#define _GNU_SOURCE
#include "init.h"
#include "metrics.h"
#include "guard.h"
#include "thread_cache.h"
#include "small.h"
#include "large.h"
#include "prof.h"
#include "backtrace.h"
#include "page_heap.h"
#include "numa.h"
#include "boot.h"
#include "size_class.h"
#include "meta.h"
#include "pagemap.h"
#include "options.h"
#include "os.h"

#include <sched.h>
#include <sys/single_threaded.h>

atomic_int brisk__init_state;

/* glibc's; weak, so that brisk links against a C library without them. */
extern void _IO_list_lock(void) __attribute__((weak));
extern void _IO_list_unlock(void) __attribute__((weak));
extern char __libc_single_threaded __attribute__((weak));

/* Whether this fork's prepare handler took the locks; only the forking thread
 * runs prepare, parent and child of one fork, under glibc's atfork lock. */
static bool fork_locked;

static void fork_prepare(void) {
  fork_locked = &__libc_single_threaded == NULL || !__libc_single_threaded;
  if (!fork_locked) return;
  if (_IO_list_lock != NULL) _IO_list_lock();
  brisk__lock_fork(&brisk__registry_lock);
  brisk__small_fork_lock();
  brisk__heap_fork_lock();
  brisk__boot_fork_lock();
  brisk__guard_fork_lock();
  brisk__prof_fork_lock();
  brisk__large_fork_lock();
  brisk__meta_fork_lock();
  brisk__pagemap_fork_lock();
}

static void fork_unlock_all(void) {
  brisk__pagemap_fork_unlock();
  brisk__meta_fork_unlock();
  brisk__large_fork_unlock();
  brisk__prof_fork_unlock();
  brisk__guard_fork_unlock();
  brisk__boot_fork_unlock();
  brisk__heap_fork_unlock();
  brisk__small_fork_unlock();
  brisk__unlock_fork(&brisk__registry_lock);
}

static void fork_parent(void) {
  if (!fork_locked) return;
  fork_unlock_all();
  if (_IO_list_unlock != NULL) _IO_list_unlock();
}

typedef enum { PURGER_NONE = 0, PURGER_RUNNING, PURGER_FAILED } purger_state_t;
static atomic_int purger_state; /* a purger_state_t */

static void fork_child(void) {
  if (!fork_locked) return; /* one thread: nothing to reset, nothing held */
  atomic_store(&purger_state, PURGER_NONE); /* the parent's purger does not exist here */
  brisk__backtrace_after_fork_child(); /* the loader's lock may be held by a thread gone */
  brisk__numa_after_fork_child();
  brisk__tcache_after_fork_child(); /* the registry lock is still ours here */
  fork_unlock_all();
  /* Takes locks of its own: only this thread exists now. */
  brisk__small_after_fork_child(brisk__tc.state == BRISK_TC_LIVE ? brisk__tc.heap : NULL);
  /* glibc reset the stdio list lock in the child before this handler ran. */
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
  brisk__small_init();
  brisk__tcache_global_init();
  atomic_store_explicit(&brisk__init_state, 2, memory_order_release);
  /* From here on brisk can serve allocations, which pthread_atfork makes. */
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Make sure brisk is ready by the time main runs even in a program that never
 * allocates before it forks or starts threads. */
static bool constructed; /* threads may be started: libc is ready (a child inherits it) */

__attribute__((constructor(101))) static void brisk_constructor(void) {
  brisk__ensure_init();
  constructed = true;
  /* The trigger file is watched and the metrics file written by the purge thread,
   * which a program that never frees much would not start; from here on threads
   * can be started safely. */
  if ((brisk__opt.prof && brisk__opt.prof_trigger[0] && brisk__opt.purge_thread) || brisk__metrics_wanted())
    brisk__purge_start();
  else if (brisk__opt.metrics[0])
    brisk__printf_err("brisk: warning: BRISK_METRICS is written by the purge thread, which BRISK_PURGE_THREAD=0 "
                      "turns off: no live metrics\n");
}

/* BRISK_PROF: the heap profile at exit, after the program's own destructors;
 * BRISK_METRICS: the live-metrics file goes. */
__attribute__((destructor(101))) static void brisk_destructor(void) {
  brisk__prof_at_exit();
  brisk__metrics_at_exit();
}

/* ------------------------------------------------------------------------------
   Purging: free memory goes back to the OS on the page heap's decay (free pages
   beyond the swing of its recent use, once PURGE_TICK_MS old) and at the latest
   after BRISK_PURGE_DELAY_MS; each tick also reaps threads that ended without
   brisk's TLS destructor (thread_cache.c) and drains the orphan heaps' inboxes
   (small.c), so spans of exited threads empty and return.

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
    brisk__os_sleep_ms(PURGE_TICK_MS);
    brisk__purge_tick();
    brisk__prof_poll();       /* BRISK_PROF_TRIGGER */
    brisk__metrics_publish(); /* BRISK_METRICS */
  }
  return NULL;
}

brisk_noinline void brisk__purge_start(void) {
  int expected = PURGER_NONE;
  if (!atomic_compare_exchange_strong(&purger_state, &expected, PURGER_RUNNING)) return;
  if (!brisk__os_thread_start(purger_main, 64 * 1024, "brisk-purge"))
    atomic_store(&purger_state, PURGER_FAILED); /* lazily purging slow paths remain */
}

void brisk__purge_tick(void) {
  uint64_t delay = brisk__opt.purge_delay_ms;
  uint64_t now = brisk__os_now_ms();
  uint64_t last = atomic_load_explicit(&last_purge_ms, memory_order_relaxed);
  if (now - last < (delay < PURGE_TICK_MS ? delay : PURGE_TICK_MS)) return;
  if (!atomic_compare_exchange_strong_explicit(&last_purge_ms, &last, now, memory_order_relaxed,
                                               memory_order_relaxed))
    return;
  brisk__tcache_reap(); /* threads that ended without brisk's TLS destructor */
  brisk__tcache_reclaim_idle(now, delay);
  brisk__small_drain();
  brisk__heap_decay(now, delay);
  /* A forked child publishes its own metrics from its own purge thread, started
   * here at its first tick (the parent's started with the program). */
  if (brisk_unlikely(brisk__opt.metrics[0]) && constructed && brisk__metrics_wanted() &&
      atomic_load_explicit(&purger_state, memory_order_relaxed) == PURGER_NONE)
    brisk__purge_start();
}

void brisk__purge_note_idle(uint64_t idle_bytes) {
  if (brisk_unlikely(idle_bytes >= PURGER_START_BYTES) && brisk__opt.purge_thread &&
      atomic_load_explicit(&purger_state, memory_order_relaxed) == PURGER_NONE)
    brisk__purge_start();
}

size_t brisk__purge_all(void) {
  if (brisk__tc.state == BRISK_TC_LIVE) brisk__tcache_flush(&brisk__tc);
  brisk__tcache_reap();
  brisk__small_drain();
  uint64_t now = brisk__os_now_ms();
  size_t bytes = brisk__heap_purge(now, 0);
  atomic_store_explicit(&last_purge_ms, now, memory_order_relaxed);
  return bytes;
}
