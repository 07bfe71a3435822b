/* bench_shim.h: Google Benchmark for benchmarks written in C.
 *
 * A benchmark is a C function `void fn(bs_state *st)` with a timed loop
 * `while (bs_keep_running(st)) { ... }`; code before the first call and after the
 * last one is untimed (per-thread preparation and cleanup). It is registered by a
 * registration function that BS_REGISTRATION() queues at load time and the shim's
 * bs_main() runs after it has parsed its own flags, so a registration can depend
 * on them (--shim_max_threads for bs_threads_sweep).
 *
 * Threaded benchmarks: every thread runs fn. Setup (if any) runs once per run on
 * thread 0 while the others wait, before any thread enters fn; teardown runs once
 * on thread 0 after every thread has left fn. A "run" is one batch of iterations
 * (Google Benchmark runs a few of growing length to find the iteration count;
 * each gets its own setup and teardown). One benchmark runs at a time, so shared
 * state between setup, fn and teardown can live in file-scope variables.
 *
 * Output is Google Benchmark's own (--benchmark_format=json, --benchmark_out=).
 * Every benchmark gets a counter peak_rss_mib (the process's VmHWM at the end of
 * the run); the JSON context gets malloc_provider (the shared object defining the
 * malloc in use), cpus_online and cpu_model. */
#ifndef BRISK_BENCH_SHIM_H
#define BRISK_BENCH_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bs_bench bs_bench; /* a registered family: the builder calls below */
typedef struct bs_state bs_state; /* one thread's view of one run */

typedef void bs_fn(bs_state *st);

/* ---- registration ------------------------------------------------------- */

/* Queue `fn` (a `static void fn(void)` that calls bs_register) to run from
 * bs_main. At most BS_MAX_REGISTRATIONS per program. */
#define BS_MAX_REGISTRATIONS 64
void bs_add_registration(void (*fn)(void));
#define BS_REGISTRATION(fn)                                           \
  static void fn(void);                                               \
  __attribute__((constructor)) static void bs_queue_##fn(void) {      \
    bs_add_registration(fn);                                          \
  }

/* A family named `name` (e.g. "micro/pair"); argument values and thread counts
 * become name suffixes as Google Benchmark writes them. */
bs_bench *bs_register(const char *name, bs_fn *fn);

void bs_arg(bs_bench *b, int64_t v);                           /* one more value */
void bs_args(bs_bench *b, const int64_t *v, size_t n);         /* explicit list */
void bs_arg_range(bs_bench *b, int64_t lo, int64_t hi, int mult); /* lo, lo*mult, .., hi */
void bs_arg_dense(bs_bench *b, int64_t lo, int64_t hi, int64_t step);

void bs_threads(bs_bench *b, int n); /* one more thread count */
/* 1, 2, 4, ... up to --shim_max_threads, and that maximum itself. Implies
 * bs_real_time: a threaded benchmark's throughput is work per wall second. */
void bs_threads_sweep(bs_bench *b);

void bs_real_time(bs_bench *b); /* time by the wall clock, not the thread's CPU */
void bs_setup(bs_bench *b, bs_fn *setup);
void bs_teardown(bs_bench *b, bs_fn *teardown);
void bs_data(bs_bench *b, void *data); /* handed to fn as bs_get_data() */
/* A fixed iteration count per thread (--shim_iterations overrides it). */
void bs_iterations(bs_bench *b, int64_t n);
typedef enum { BS_NS, BS_US, BS_MS } bs_unit;
void bs_time_unit(bs_bench *b, bs_unit unit);

/* ---- inside a run ------------------------------------------------------- */

/* True while the timed loop should go on; one call per iteration. */
int bs_keep_running(bs_state *st);
void bs_pause(bs_state *st);  /* stop the clock (e.g. to refill) ... */
void bs_resume(bs_state *st); /* ... and start it again */

int64_t bs_get_arg(const bs_state *st, size_t i);
int bs_thread_index(const bs_state *st);
int bs_thread_count(const bs_state *st);
int64_t bs_max_iterations(const bs_state *st); /* this thread's iterations in this run */
void *bs_get_data(const bs_state *st);

/* Work done by this thread; the shim sums the threads and divides by the time,
 * so items_per_second is the total throughput of the process. Call after the loop.
 * bs_items also reports items_per_iter: all threads' items over all their
 * iterations (the "iterations" Google Benchmark reports), for tools that run a
 * fixed iteration count and want a cost per item. */
void bs_items(bs_state *st, int64_t items);
void bs_bytes(bs_state *st, int64_t bytes);

/* User counters. Values of all threads are summed; BS_RATE then divides by the
 * time, BS_AVG_THREADS by the number of threads (both: the mean per-thread rate). */
enum { BS_PLAIN = 0, BS_RATE = 1, BS_AVG_THREADS = 2 };
void bs_counter(bs_state *st, const char *name, double value, int flags);

/* Mark the run failed (Google Benchmark reports error_occurred); the caller must
 * then leave the loop (bs_keep_running returns false from then on). */
void bs_error(bs_state *st, const char *msg);

/* ---- the program -------------------------------------------------------- */

/* Parses and removes --shim_max_threads=N and --shim_iterations=N, runs the
 * queued registrations, then Google Benchmark on the remaining arguments.
 * Returns the exit status (2 on bad flags). */
int bs_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
