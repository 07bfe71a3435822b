// C++ operator new and delete in every standard form, served by brisk.
// Failure follows the standard: call the installed new-handler and retry; with
// none, throw std::bad_alloc (or return nullptr for the nothrow forms).
//
// libbrisk.so does not depend on libstdc++: loading it cost every C program
// run under LD_PRELOAD about 0.4 ms, two thirds of brisk's start-up. Only the
// failure path needs the C++ runtime, and its references to it are weak. A C++
// program links libstdc++, which the loader maps before it relocates
// libbrisk.so, so they bind. A C program that later dlopens C++ code (Python
// and its extension modules) leaves them null; then the failure path finds
// libstdc++ with dlopen and throws std::bad_alloc by the Itanium C++ ABI's
// calls. What it cannot do there is catch, so the nothrow forms return null
// without calling the new-handler (which may throw). libbrisk.a is built from
// the same file with strong references: a static link takes libstdc++.a member
// by member, and only a strong reference brings a member in.
#include <cstddef>
#include <new>

#include <dlfcn.h>

#include "brisk.h"

#define BRISK_EXPORT __attribute__((visibility("default")))
#define brisk_likely(x) __builtin_expect(!!(x), 1)

#if BRISK_CXX_RUNTIME_WEAK /* libbrisk.so; libbrisk.a keeps them strong (CMakeLists.txt) */
__asm__(".weak _ZSt15get_new_handlerv\n\t"
        ".weak _ZTISt9bad_alloc\n\t"
        ".weak _ZTVSt9bad_alloc\n\t"
        ".weak _ZNSt9bad_allocD1Ev\n\t"
        ".weak __cxa_allocate_exception\n\t"
        ".weak __cxa_throw\n\t"
        ".weak __cxa_begin_catch\n\t"
        ".weak __cxa_end_catch\n\t"
        ".weak __gxx_personality_v0");
// The typeinfo of std::bad_alloc stands for the whole runtime: a weak object's
// address may be null, which the compiler knows (it cannot assume so of the
// functions <new> declares).
extern "C" const char brisk_cxx_runtime __asm__("_ZTISt9bad_alloc") __attribute__((weak));
static inline bool cxx_runtime_linked() { return &brisk_cxx_runtime != nullptr; }
#else
static inline bool cxx_runtime_linked() { return true; }
#endif
extern "C" __attribute__((noreturn)) void brisk__fatal(const char *call, const char *what, const void *p);
// Weak as in numa.c: a static program does not get dlopen pulled in for this.
extern "C" __typeof__(dlopen) dlopen __attribute__((weak));
extern "C" __typeof__(dlsym) dlsym __attribute__((weak));

namespace {

// The runtime looked up at the time of need (see the top of the file).
struct cxx_runtime {
  std::new_handler (*get_new_handler)();
  void *(*allocate_exception)(std::size_t);
  void (*throw_exception)(void *, void *, void (*)(void *));
  void *bad_alloc_type;
  void **bad_alloc_vtable;
  void (*bad_alloc_dtor)(void *);
};

bool find_runtime(cxx_runtime *rt) {
  if (dlopen == nullptr || dlsym == nullptr) return false;
  void *lib = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL); /* the loaded one, if any; kept */
  if (lib == nullptr) return false;
  *reinterpret_cast<void **>(&rt->get_new_handler) = dlsym(lib, "_ZSt15get_new_handlerv");
  *reinterpret_cast<void **>(&rt->allocate_exception) = dlsym(lib, "__cxa_allocate_exception");
  *reinterpret_cast<void **>(&rt->throw_exception) = dlsym(lib, "__cxa_throw");
  rt->bad_alloc_type = dlsym(lib, "_ZTISt9bad_alloc");
  rt->bad_alloc_vtable = static_cast<void **>(dlsym(lib, "_ZTVSt9bad_alloc"));
  *reinterpret_cast<void **>(&rt->bad_alloc_dtor) = dlsym(lib, "_ZNSt9bad_allocD1Ev");
  return rt->get_new_handler && rt->allocate_exception && rt->throw_exception && rt->bad_alloc_type &&
         rt->bad_alloc_vtable && rt->bad_alloc_dtor;
}

// throw std::bad_alloc() spelled out: the object is its vtable pointer, which
// points past the vtable's offset-to-top and typeinfo slots.
[[noreturn]] void throw_bad_alloc(const cxx_runtime &rt) {
  void *e = rt.allocate_exception(sizeof(std::bad_alloc));
  *static_cast<void ***>(e) = rt.bad_alloc_vtable + 2;
  rt.throw_exception(e, rt.bad_alloc_type, rt.bad_alloc_dtor);
  __builtin_unreachable();
}

__attribute__((noinline, cold)) void *new_retry_unlinked(std::size_t size, std::size_t align, bool nothrow) {
  if (nothrow) return nullptr;
  cxx_runtime rt;
  if (!find_runtime(&rt))
    brisk__fatal("operator new", "out of memory and no C++ runtime found to throw std::bad_alloc; bytes asked",
                 reinterpret_cast<void *>(size));
  for (;;) {
    void *p = align ? brisk_aligned_alloc(align, size) : brisk_malloc(size);
    if (p != nullptr) return p;
    std::new_handler handler = rt.get_new_handler();
    if (handler == nullptr) throw_bad_alloc(rt);
    handler();
  }
}

__attribute__((noinline)) void *new_retry(std::size_t size, std::size_t align, bool nothrow) {
  if (!cxx_runtime_linked()) return new_retry_unlinked(size, align, nothrow);
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
