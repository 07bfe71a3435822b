// A C++ library that a C program dlopens (tests/preload/cxx_plugin_host.c): the
// way Python loads C++ extension modules. libbrisk.so does not load libstdc++
// itself, so its operator new must find the C++ runtime at the time of failure
// and throw a std::bad_alloc that this code can catch.
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <new>

namespace {

int handler_calls;
void counting_handler() {
  if (++handler_calls == 3) std::set_new_handler(nullptr); // then operator new throws
}

// Too large for any allocator, and not a constant the compiler could fold.
std::size_t impossible() {
  volatile std::size_t n = static_cast<std::size_t>(1) << 60;
  return n;
}

void escape(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

int fail(const char *what) {
  std::printf("FAIL: %s\n", what);
  return 1;
}

} // namespace

extern "C" __attribute__((visibility("default"))) int cxx_plugin_run(void) {
  // Ordinary use: the C++ runtime is loaded by now, brisk serves the blocks.
  char *small = new char[100];
  std::memset(small, 1, 100);
  delete[] small;

  try {
    char *p = new char[impossible()];
    escape(p);
    return fail("new of 2^60 bytes returned");
  } catch (const std::bad_alloc &e) {
    if (std::strcmp(e.what(), "std::bad_alloc") != 0) return fail("bad_alloc::what()");
  }

  try {
    struct alignas(64) line {
      char b[64];
    };
    line *p = new line[impossible() / 64];
    escape(p);
    return fail("aligned new of 2^60 bytes returned");
  } catch (const std::bad_alloc &) {
  }

  char *q = new (std::nothrow) char[impossible()];
  if (q != nullptr) return fail("nothrow new of 2^60 bytes returned a block");

  std::set_new_handler(counting_handler);
  try {
    char *p = new char[impossible()];
    escape(p);
    return fail("new with a handler returned");
  } catch (const std::bad_alloc &) {
  }
  if (handler_calls != 3) return fail("the new-handler was not called three times");
  return 0;
}
