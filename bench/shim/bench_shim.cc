// bench_shim.cc: the C API of bench_shim.h over Google Benchmark (1.7).
//
// Registrations are queued by C constructors into a plain array (constant
// initialized, so no static-initialization order to worry about) and run by
// bs_main once the shim's own flags are known. Each bs_bench owns a barrier that
// orders setup -> fn on every thread -> teardown within one run; Google Benchmark
// runs one benchmark at a time, so the barrier is never shared between runs.
#include "bench_shim.h"

#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <unistd.h>

#include <atomic>

#include "brisk.h"  // brisk_stats_t only: the benchmarks do not link brisk

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

// A reusable barrier for the threads of one run (std::barrier is C++20).
class RunBarrier {
 public:
  void Wait(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    const unsigned long gen = generation_;
    if (++arrived_ == n) {
      arrived_ = 0;
      generation_++;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  unsigned long generation_ = 0;
};

// Defaults of the shim's flags; see bs_main.
constexpr int kDefaultMaxThreads = 16;

int g_max_threads = kDefaultMaxThreads;
long long g_forced_iterations = 0;  // 0: let Google Benchmark choose

void (*g_registrations[BS_MAX_REGISTRATIONS])(void);
int g_registration_count;

// The process's peak resident set (VmHWM) in MiB; 0 when /proc is unreadable.
double PeakRssMib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.compare(0, 6, "VmHWM:") == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  }
  return 0;
}

// brisk's lock counts, when brisk serves this process (brisk_get_stats is found
// at run time, so the same binary runs on every allocator); false otherwise.
bool BriskLockCounts(uint64_t *acquired, uint64_t *contended) {
  using get_stats_fn = void (*)(brisk_stats_t *);
  static get_stats_fn get = reinterpret_cast<get_stats_fn>(dlsym(RTLD_DEFAULT, "brisk_get_stats"));
  if (get == nullptr) return false;
  brisk_stats_t st;
  get(&st);
  *acquired = st.lock_acquired;
  *contended = st.lock_contended;
  return true;
}

// The shared object whose malloc this process calls: what LD_PRELOAD changed.
std::string MallocProvider() {
  void *sym = dlsym(RTLD_DEFAULT, "malloc");
  Dl_info info;
  if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return "unknown";
  return info.dli_fname;
}

std::string CpuModel() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.compare(0, 10, "model name") != 0) continue;
    std::string::size_type colon = line.find(':');
    if (colon == std::string::npos) break;
    std::string::size_type start = line.find_first_not_of(' ', colon + 1);
    return start == std::string::npos ? "" : line.substr(start);
  }
  return "unknown";
}

// Parses a positive integer flag value; false on junk.
bool ParsePositive(const char *s, long long *out) {
  char *end;
  long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0) return false;
  *out = v;
  return true;
}

}  // namespace

struct bs_bench {
  benchmark::internal::Benchmark *gb;
  bs_fn *fn;
  bs_fn *setup = nullptr;
  bs_fn *teardown = nullptr;
  void *data = nullptr;
  long long iterations = 0;
  RunBarrier barrier;
  std::atomic<long long> items{0};  // bs_items of all threads in the current run
};

struct bs_state {
  benchmark::State *s;
  bs_bench *b;
};

namespace {

std::vector<std::unique_ptr<bs_bench>> g_benches;

// Under brisk, the lead thread also reports the locks that the run's threads
// took per million items (setup and teardown left out): locks_per_Mop and
// contended_per_Mop, figures that do not depend on the core count.
void RunOne(benchmark::State &s, bs_bench *b) {
  bs_state st{&s, b};
  const bool lead = s.thread_index() == 0;
  uint64_t acquired0 = 0, contended0 = 0;
  bool counted = false;
  if (lead) {
    if (b->setup != nullptr) b->setup(&st);
    b->items = 0;
    counted = BriskLockCounts(&acquired0, &contended0);
  }
  b->barrier.Wait(s.threads());
  b->fn(&st);
  b->barrier.Wait(s.threads());
  if (lead) {
    uint64_t acquired1, contended1;
    const long long items = b->items;
    if (counted && items > 0 && BriskLockCounts(&acquired1, &contended1)) {
      const double per_mop = 1e6 / static_cast<double>(items);
      s.counters["locks_per_Mop"] = static_cast<double>(acquired1 - acquired0) * per_mop;
      s.counters["contended_per_Mop"] = static_cast<double>(contended1 - contended0) * per_mop;
    }
    if (b->teardown != nullptr) b->teardown(&st);
    // Counters are summed over threads: only thread 0 reports the process's peak.
    s.counters["peak_rss_mib"] = PeakRssMib();
  }
}

}  // namespace

extern "C" {

void bs_add_registration(void (*fn)(void)) {
  if (g_registration_count == BS_MAX_REGISTRATIONS) {
    std::fprintf(stderr, "bench_shim: more than %d registrations\n", BS_MAX_REGISTRATIONS);
    std::abort();
  }
  g_registrations[g_registration_count++] = fn;
}

bs_bench *bs_register(const char *name, bs_fn *fn) {
  auto b = std::make_unique<bs_bench>();
  bs_bench *raw = b.get();
  raw->fn = fn;
  raw->gb = benchmark::RegisterBenchmark(name, [raw](benchmark::State &s) { RunOne(s, raw); });
  g_benches.push_back(std::move(b));
  return raw;
}

void bs_arg(bs_bench *b, int64_t v) { b->gb->Arg(v); }

void bs_args(bs_bench *b, const int64_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) b->gb->Arg(v[i]);
}

void bs_arg_range(bs_bench *b, int64_t lo, int64_t hi, int mult) {
  b->gb->RangeMultiplier(mult)->Range(lo, hi);
}

void bs_arg_dense(bs_bench *b, int64_t lo, int64_t hi, int64_t step) {
  for (int64_t v = lo; v <= hi; v += step) b->gb->Arg(v);
}

void bs_threads(bs_bench *b, int n) { b->gb->Threads(n); }

void bs_threads_sweep(bs_bench *b) {
  for (int n = 1; n < g_max_threads; n *= 2) b->gb->Threads(n);
  b->gb->Threads(g_max_threads);
  b->gb->UseRealTime();
}

void bs_real_time(bs_bench *b) { b->gb->UseRealTime(); }
void bs_setup(bs_bench *b, bs_fn *setup) { b->setup = setup; }
void bs_teardown(bs_bench *b, bs_fn *teardown) { b->teardown = teardown; }
void bs_data(bs_bench *b, void *data) { b->data = data; }
void bs_iterations(bs_bench *b, int64_t n) { b->iterations = n; }

void bs_time_unit(bs_bench *b, bs_unit unit) {
  switch (unit) {
    case BS_NS: b->gb->Unit(benchmark::kNanosecond); break;
    case BS_US: b->gb->Unit(benchmark::kMicrosecond); break;
    case BS_MS: b->gb->Unit(benchmark::kMillisecond); break;
  }
}

int bs_keep_running(bs_state *st) { return st->s->KeepRunning(); }
void bs_pause(bs_state *st) { st->s->PauseTiming(); }
void bs_resume(bs_state *st) { st->s->ResumeTiming(); }

int64_t bs_get_arg(const bs_state *st, size_t i) { return st->s->range(i); }
int bs_thread_index(const bs_state *st) { return st->s->thread_index(); }
int bs_thread_count(const bs_state *st) { return st->s->threads(); }
int64_t bs_max_iterations(const bs_state *st) { return st->s->max_iterations; }
void *bs_get_data(const bs_state *st) { return st->b->data; }

void bs_items(bs_state *st, int64_t items) {
  st->s->SetItemsProcessed(items);
  st->b->items += items;
  // Averaged over threads, items / (this thread's iterations) is the process's
  // items over its total iterations: what one GB "iteration" is worth.
  const double per_iter = static_cast<double>(items) / static_cast<double>(st->s->max_iterations);
  st->s->counters["items_per_iter"] = benchmark::Counter(per_iter, benchmark::Counter::kAvgThreads);
}
void bs_bytes(bs_state *st, int64_t bytes) { st->s->SetBytesProcessed(bytes); }

void bs_counter(bs_state *st, const char *name, double value, int flags) {
  int gb_flags = benchmark::Counter::kDefaults;
  if (flags & BS_RATE) gb_flags |= benchmark::Counter::kIsRate;
  if (flags & BS_AVG_THREADS) gb_flags |= benchmark::Counter::kAvgThreads;
  st->s->counters[name] = benchmark::Counter(value, static_cast<benchmark::Counter::Flags>(gb_flags));
}

void bs_error(bs_state *st, const char *msg) { st->s->SkipWithError(msg); }

int bs_main(int argc, char **argv) {
  // Take the shim's flags out of argv: Google Benchmark rejects flags it does not know.
  int kept = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    long long v;
    if (std::strncmp(a, "--shim_max_threads=", 19) == 0) {
      if (!ParsePositive(a + 19, &v) || v > 4096) {
        std::fprintf(stderr, "bench_shim: bad %s (want 1..4096)\n", a);
        return 2;
      }
      g_max_threads = static_cast<int>(v);
    } else if (std::strncmp(a, "--shim_iterations=", 18) == 0) {
      if (!ParsePositive(a + 18, &v)) {
        std::fprintf(stderr, "bench_shim: bad %s (want a positive count)\n", a);
        return 2;
      }
      g_forced_iterations = v;
    } else if (std::strncmp(a, "--shim_", 7) == 0) {
      std::fprintf(stderr,
                   "bench_shim: unknown flag %s\n"
                   "shim flags: --shim_max_threads=N (default %d), --shim_iterations=N\n",
                   a, kDefaultMaxThreads);
      return 2;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  argv[argc] = nullptr;

  for (int i = 0; i < g_registration_count; i++) g_registrations[i]();
  for (auto &b : g_benches) {
    long long n = g_forced_iterations > 0 ? g_forced_iterations : b->iterations;
    if (n > 0) b->gb->Iterations(n);
  }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::AddCustomContext("malloc_provider", MallocProvider());
  benchmark::AddCustomContext("cpus_online", std::to_string(sysconf(_SC_NPROCESSORS_ONLN)));
  benchmark::AddCustomContext("cpu_model", CpuModel());
  // A filter that matches nothing is a caller's mistake, not an empty success.
  const size_t ran = benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return ran > 0 ? 0 : 1;
}

}  // extern "C"
