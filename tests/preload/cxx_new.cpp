// The C++ allocation operators under a preloaded malloc: every standard form of
// operator new and delete, over-aligned types, containers churned across threads,
// and the failure rules (std::bad_alloc, nothrow nullptr, std::set_new_handler).
// Built against libstdc++ only; brisk, when preloaded, interposes the operators.
//
// usage: cxx_new [--expect-provider SUBSTRING]
//   With the option, also checks that the dynamic linker resolves malloc, free,
//   operator new and operator delete to a shared object whose path contains
//   SUBSTRING.
#include <dlfcn.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

int failures = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                            \
    }                                                                        \
  } while (0)

// Keeps the compiler from proving a new/delete pair dead and removing it.
template <typename T>
void escape(T *p) {
  __asm__ volatile("" : : "r"(p) : "memory");
}

bool aligned_to(const void *p, std::size_t a) {
  return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0;
}

// Fills n bytes with a pattern derived from seed, and checks it back.
void fill(void *p, std::size_t n, unsigned seed) {
  auto *b = static_cast<unsigned char *>(p);
  for (std::size_t i = 0; i < n; i++) b[i] = static_cast<unsigned char>(seed + i * 31);
}
bool intact(const void *p, std::size_t n, unsigned seed) {
  auto *b = static_cast<const unsigned char *>(p);
  for (std::size_t i = 0; i < n; i++)
    if (b[i] != static_cast<unsigned char>(seed + i * 31)) return false;
  return true;
}

struct Plain {
  std::uint64_t a, b;
  Plain() : a(0x1234), b(0x5678) {}
};

struct alignas(64) Line {
  unsigned char bytes[64];
};

struct alignas(4096) Page {
  unsigned char bytes[4096];
  int tag;
};

static_assert(alignof(Line) == 64, "Line must be over-aligned");
static_assert(alignof(Page) == 4096, "Page must be page-aligned");

// A type with a destructor, so new[] stores a cookie in front of the array.
struct Counted {
  static int live;
  int v;
  Counted() : v(7) { ++live; }
  ~Counted() { --live; }
};
int Counted::live = 0;

struct alignas(128) CountedAligned {
  static int live;
  unsigned char pad[100];
  CountedAligned() : pad() { ++live; }
  ~CountedAligned() { --live; }
};
int CountedAligned::live = 0;

void test_plain_forms() {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{24}, std::size_t{1000},
                        std::size_t{70000}, std::size_t{3} << 20}) {
    void *p = ::operator new(n);
    CHECK(p != nullptr);
    CHECK(aligned_to(p, __STDCPP_DEFAULT_NEW_ALIGNMENT__));
    fill(p, n, 1);
    CHECK(intact(p, n, 1));
    ::operator delete(p);

    void *q = ::operator new[](n);
    fill(q, n, 2);
    CHECK(intact(q, n, 2));
    ::operator delete[](q);

    // Sized deallocation, scalar and array.
    void *r = ::operator new(n);
    fill(r, n, 3);
    CHECK(intact(r, n, 3));
    ::operator delete(r, n);
    void *s = ::operator new[](n);
    fill(s, n, 4);
    ::operator delete[](s, n);

    // nothrow forms.
    void *t = ::operator new(n, std::nothrow);
    CHECK(t != nullptr);
    fill(t, n, 5);
    CHECK(intact(t, n, 5));
    ::operator delete(t, std::nothrow);
    void *u = ::operator new[](n, std::nothrow);
    CHECK(u != nullptr);
    ::operator delete[](u, std::nothrow);
  }

  // new-expressions: the compiler picks the sized forms for complete types.
  Plain *p = new Plain;
  escape(p);
  CHECK(p->a == 0x1234 && p->b == 0x5678);
  delete p;
  Plain *arr = new Plain[1000];
  escape(arr);
  CHECK(arr[999].b == 0x5678);
  delete[] arr;
  Counted *c = new Counted[333];
  escape(c);
  CHECK(Counted::live == 333 && c[332].v == 7);
  delete[] c;
  CHECK(Counted::live == 0);
  Plain *np = new (std::nothrow) Plain;
  CHECK(np != nullptr);
  escape(np);
  delete np;
  int *ints = new (std::nothrow) int[5000]();
  CHECK(ints != nullptr && ints[4999] == 0);
  escape(ints);
  delete[] ints;
}

void test_aligned_forms() {
  for (std::size_t a : {std::size_t{32}, std::size_t{64}, std::size_t{256}, std::size_t{4096},
                        std::size_t{65536}, std::size_t{1} << 21}) {
    const std::align_val_t al{a};
    for (std::size_t n : {std::size_t{1}, a / 2 + 1, a, 3 * a + 5, std::size_t{100000}}) {
      void *p = ::operator new(n, al);
      CHECK(aligned_to(p, a));
      fill(p, n, 6);
      CHECK(intact(p, n, 6));
      ::operator delete(p, al);

      void *q = ::operator new[](n, al);
      CHECK(aligned_to(q, a));
      fill(q, n, 7);
      ::operator delete[](q, al);

      void *r = ::operator new(n, al);
      CHECK(aligned_to(r, a));
      ::operator delete(r, n, al);  // sized and aligned
      void *s = ::operator new[](n, al);
      CHECK(aligned_to(s, a));
      ::operator delete[](s, n, al);

      void *t = ::operator new(n, al, std::nothrow);
      CHECK(t != nullptr && aligned_to(t, a));
      ::operator delete(t, al, std::nothrow);
      void *u = ::operator new[](n, al, std::nothrow);
      CHECK(u != nullptr && aligned_to(u, a));
      ::operator delete[](u, al, std::nothrow);
    }
  }

  // Over-aligned new-expressions call the align_val_t operators.
  std::vector<Line *> lines;
  std::vector<Page *> pages;
  for (int i = 0; i < 200; i++) {
    Line *l = new Line;
    CHECK(aligned_to(l, 64));
    std::memset(l->bytes, i, sizeof l->bytes);
    lines.push_back(l);
    if (i % 4 == 0) {
      Page *pg = new Page;
      CHECK(aligned_to(pg, 4096));
      pg->tag = i;
      pages.push_back(pg);
    }
  }
  for (std::size_t i = 0; i < lines.size(); i++) {
    CHECK(lines[i]->bytes[63] == static_cast<unsigned char>(i));
    delete lines[i];
  }
  for (std::size_t i = 0; i < pages.size(); i++) {
    CHECK(pages[i]->tag == static_cast<int>(i * 4));
    delete pages[i];
  }
  Line *la = new Line[77];
  CHECK(aligned_to(la, 64));
  escape(la);
  delete[] la;
  Page *pa = new Page[5];
  CHECK(aligned_to(pa, 4096));
  pa[4].tag = 4;
  escape(pa);
  delete[] pa;
  CountedAligned *ca = new CountedAligned[19];  // cookie plus over-alignment
  CHECK(aligned_to(ca, 128));
  CHECK(CountedAligned::live == 19);
  escape(ca);
  delete[] ca;
  CHECK(CountedAligned::live == 0);
  Page *pn = new (std::nothrow) Page;
  CHECK(pn != nullptr && aligned_to(pn, 4096));
  escape(pn);
  delete pn;

  // Containers of over-aligned elements go through std::allocator's aligned path.
  std::vector<Line> vl(1000);
  CHECK(aligned_to(vl.data(), 64));
  vl.resize(5000);
  CHECK(aligned_to(vl.data(), 64));
}

// Requests no allocator can satisfy. The size is laundered through a volatile so
// that the compiler cannot fold the failure away.
volatile std::size_t huge_size = static_cast<std::size_t>(PTRDIFF_MAX) / 2;

int handler_calls = 0;
void counting_handler() {
  // Called each time the allocation fails; after three calls it gives up by
  // uninstalling itself, and operator new must then throw std::bad_alloc.
  if (++handler_calls == 3) std::set_new_handler(nullptr);
}

struct TestFailure {};
void throwing_handler() { throw TestFailure(); }

void test_failure() {
  std::size_t n = huge_size;
  bool threw = false;
  try {
    void *p = ::operator new(n);
    escape(p);
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw);

  threw = false;
  try {
    char *p = new char[n];
    escape(p);
    delete[] p;
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw);

  threw = false;
  try {
    void *p = ::operator new(n, std::align_val_t{4096});
    escape(p);
    ::operator delete(p, std::align_val_t{4096});
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw);

  void *p = ::operator new(n, std::nothrow);
  CHECK(p == nullptr);
  p = ::operator new[](n, std::nothrow);
  CHECK(p == nullptr);
  p = ::operator new(n, std::align_val_t{64}, std::nothrow);
  CHECK(p == nullptr);
  char *cp = new (std::nothrow) char[n];
  CHECK(cp == nullptr);

  // The new_handler is called until it uninstalls itself, then bad_alloc.
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  threw = false;
  try {
    void *q = ::operator new(n);
    escape(q);
    ::operator delete(q);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw);
  CHECK(handler_calls == 3);
  CHECK(std::get_new_handler() == nullptr);

  // The nothrow form also calls the handler, and returns nullptr in the end.
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  p = ::operator new(n, std::nothrow);
  CHECK(p == nullptr);
  CHECK(handler_calls == 3);

  // Aligned new calls the handler too.
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  threw = false;
  try {
    void *q = ::operator new(n, std::align_val_t{256});
    escape(q);
    ::operator delete(q, std::align_val_t{256});
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw);
  CHECK(handler_calls == 3);

  // Whatever the handler throws propagates out of operator new.
  std::set_new_handler(throwing_handler);
  bool custom = false;
  try {
    void *q = ::operator new(n);
    escape(q);
    ::operator delete(q);
  } catch (const TestFailure &) {
    custom = true;
  }
  CHECK(custom);
  std::set_new_handler(nullptr);

  // A handler must not be called when the allocation succeeds.
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  void *ok = ::operator new(1 << 20);
  escape(ok);
  ::operator delete(ok);
  CHECK(handler_calls == 0);
  std::set_new_handler(nullptr);

  // Allocation works normally after all the failures.
  std::vector<int> v(1 << 20, 3);
  CHECK(v[12345] == 3);
}

// Containers churned by several threads; each thread's result is deterministic and
// compared with the same computation on the main thread.
std::uint64_t container_work(unsigned seed) {
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&x]() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  std::map<std::uint64_t, std::string> m;
  std::unordered_map<std::string, std::vector<std::uint32_t>> um;
  std::vector<std::string> strs;
  std::uint64_t sum = 0;
  for (int i = 0; i < 60000; i++) {
    std::uint64_t r = next();
    std::uint64_t key = r % 5000;
    switch (r >> 61) {
      case 0:
      case 1:
        m[key] = std::string(static_cast<std::size_t>(r >> 40) % 300,
                             static_cast<char>('a' + key % 26));
        break;
      case 2:
        m.erase(key);
        break;
      case 3: {
        auto &vec = um["k" + std::to_string(key % 700)];
        vec.resize(static_cast<std::size_t>(r >> 50) % 2000, static_cast<std::uint32_t>(key));
        break;
      }
      case 4:
        um.erase("k" + std::to_string(key % 700));
        break;
      case 5:
        strs.push_back(std::to_string(r) + std::string(static_cast<std::size_t>(key % 100), 'z'));
        break;
      default:
        if (!strs.empty()) {
          sum += strs.back().size();
          strs.pop_back();
        }
        break;
    }
  }
  for (const auto &kv : m) sum = sum * 31 + kv.first + kv.second.size();
  std::map<std::string, std::size_t> sorted;
  for (const auto &kv : um) {
    std::uint64_t s = 0;
    for (std::uint32_t e : kv.second) s += e;
    sorted[kv.first] = kv.second.size() + s;
  }
  for (const auto &kv : sorted) sum = sum * 31 + kv.second + kv.first.size();
  for (const auto &s : strs) sum += s.size();
  return sum;
}

constexpr int kThreads = 6;
constexpr int kRounds = 3;

void test_containers_across_threads() {
  std::uint64_t want[kThreads];
  for (int t = 0; t < kThreads; t++) want[t] = container_work(static_cast<unsigned>(t + 1));

  std::atomic<int> bad{0};
  for (int round = 0; round < kRounds; round++) {
    std::vector<std::thread> threads;
    // Blocks created by one thread and destroyed by another: each thread fills a
    // vector of strings that the main thread frees after the join.
    std::vector<std::vector<std::string>> handoff(kThreads);
    for (int t = 0; t < kThreads; t++) {
      threads.emplace_back([t, &want, &bad, &handoff]() {
        if (container_work(static_cast<unsigned>(t + 1)) != want[t]) bad++;
        for (int i = 0; i < 5000; i++) handoff[t].push_back(std::string(16 + i % 200, 'h'));
      });
    }
    for (auto &th : threads) th.join();
    for (int t = 0; t < kThreads; t++) {
      CHECK(handoff[t].size() == 5000);
      CHECK(handoff[t][4999].size() == 16 + 4999 % 200);
    }
  }
  CHECK(bad.load() == 0);
}

void test_provider(const char *want) {
  // The definition that wins symbol resolution for each name; with brisk preloaded
  // it must be libbrisk's, not libc's or libstdc++'s. dlsym rather than taking the
  // address, which in a non-PIE program would name the program's own PLT stub.
  static const char *const names[] = {"malloc", "free", "_Znwm" /* operator new(size_t) */,
                                      "_ZdlPv" /* operator delete(void*) */};
  for (const char *name : names) {
    void *addr = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    if (addr == nullptr || dladdr(addr, &info) == 0 || info.dli_fname == nullptr) {
      std::fprintf(stderr, "no definition found for %s\n", name);
      ++failures;
      continue;
    }
    if (std::strstr(info.dli_fname, want) == nullptr) {
      std::fprintf(stderr, "%s comes from %s, not from a '%s' library\n", name, info.dli_fname,
                   want);
      ++failures;
    }
  }
}

}  // namespace

int main(int argc, char **argv) {
  const char *provider = nullptr;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--expect-provider") == 0 && i + 1 < argc) {
      provider = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--expect-provider SUBSTRING]\n", argv[0]);
      return 2;
    }
  }
  if (provider) test_provider(provider);
  test_plain_forms();
  test_aligned_forms();
  test_failure();
  test_containers_across_threads();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::puts("OK");
  return 0;
}
