// C++ operator new and delete in every standard form, served by brisk.
// Failure follows the standard: call the installed new-handler and retry; with
// none, throw std::bad_alloc (or return nullptr for the nothrow forms).
#include <cstddef>
#include <new>

#include "brisk.h"

#define BRISK_EXPORT __attribute__((visibility("default")))
#define brisk_likely(x) __builtin_expect(!!(x), 1)

namespace {

__attribute__((noinline)) void *new_retry(std::size_t size, std::size_t align, bool nothrow) {
  for (;;) {
    void *p = align ? brisk_aligned_alloc(align, size) : brisk_malloc(size);
    if (p != nullptr) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    if (nothrow) {
      try {
        handler();
      } catch (...) {
        return nullptr;
      }
    } else {
      handler();
    }
  }
}

inline void *new_impl(std::size_t size) {
  void *p = brisk_malloc(size);
  if (brisk_likely(p != nullptr)) return p;
  return new_retry(size, 0, false);
}

inline void *new_nothrow(std::size_t size) noexcept {
  void *p = brisk_malloc(size);
  if (brisk_likely(p != nullptr)) return p;
  try {
    return new_retry(size, 0, true);
  } catch (...) {
    return nullptr;
  }
}

inline void *new_aligned(std::size_t size, std::align_val_t al) {
  void *p = brisk_aligned_alloc(static_cast<std::size_t>(al), size);
  if (brisk_likely(p != nullptr)) return p;
  return new_retry(size, static_cast<std::size_t>(al), false);
}

inline void *new_aligned_nothrow(std::size_t size, std::align_val_t al) noexcept {
  void *p = brisk_aligned_alloc(static_cast<std::size_t>(al), size);
  if (brisk_likely(p != nullptr)) return p;
  try {
    return new_retry(size, static_cast<std::size_t>(al), true);
  } catch (...) {
    return nullptr;
  }
}

} // namespace

BRISK_EXPORT void *operator new(std::size_t n) { return new_impl(n); }
BRISK_EXPORT void *operator new[](std::size_t n) { return new_impl(n); }
BRISK_EXPORT void *operator new(std::size_t n, const std::nothrow_t &) noexcept { return new_nothrow(n); }
BRISK_EXPORT void *operator new[](std::size_t n, const std::nothrow_t &) noexcept { return new_nothrow(n); }
BRISK_EXPORT void *operator new(std::size_t n, std::align_val_t al) { return new_aligned(n, al); }
BRISK_EXPORT void *operator new[](std::size_t n, std::align_val_t al) { return new_aligned(n, al); }
BRISK_EXPORT void *operator new(std::size_t n, std::align_val_t al, const std::nothrow_t &) noexcept {
  return new_aligned_nothrow(n, al);
}
BRISK_EXPORT void *operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t &) noexcept {
  return new_aligned_nothrow(n, al);
}

BRISK_EXPORT void operator delete(void *p) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete[](void *p) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete(void *p, std::size_t) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete[](void *p, std::size_t) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete(void *p, std::align_val_t) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete[](void *p, std::align_val_t) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete(void *p, std::size_t, std::align_val_t) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete[](void *p, std::size_t, std::align_val_t) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept { brisk_free(p); }
BRISK_EXPORT void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept { brisk_free(p); }
