/* Interposition: the libc allocator's names for brisk's entry points. This file
 * compiles alloc.c into itself so that malloc, free and the others are aliases of
 * the very same code (no extra jump), and it goes only into libbrisk.so and
 * libbrisk.a; the prefixed-only library (brisk_api) builds alloc.c alone.
 * glibc's __libc_* names are covered too, for code that calls them directly. */
#define _GNU_SOURCE
#include "alloc.c"

#include <malloc.h>

#define BRISK_EXPORT __attribute__((visibility("default")))
#define ALIAS(name, target) \
  BRISK_EXPORT __typeof__(target) name __attribute__((alias(#target), copy(target)))

ALIAS(malloc, brisk_malloc);
ALIAS(free, brisk_free);
ALIAS(calloc, brisk_calloc);
ALIAS(realloc, brisk_realloc);
ALIAS(reallocarray, brisk_reallocarray);
ALIAS(memalign, brisk_memalign);
ALIAS(posix_memalign, brisk_posix_memalign);
ALIAS(aligned_alloc, brisk_aligned_alloc);
ALIAS(valloc, brisk_valloc);
ALIAS(pvalloc, brisk_pvalloc);
ALIAS(free_sized, brisk_free_sized);
ALIAS(free_aligned_sized, brisk_free_aligned_sized);
ALIAS(cfree, brisk_free);

ALIAS(__libc_malloc, brisk_malloc);
ALIAS(__libc_free, brisk_free);
ALIAS(__libc_calloc, brisk_calloc);
ALIAS(__libc_realloc, brisk_realloc);
ALIAS(__libc_memalign, brisk_memalign);
ALIAS(__libc_valloc, brisk_valloc);
ALIAS(__libc_pvalloc, brisk_pvalloc);
ALIAS(__posix_memalign, brisk_posix_memalign);

BRISK_EXPORT size_t malloc_usable_size(void *p) { return brisk_usable_size(p); }

BRISK_EXPORT int malloc_trim(size_t pad) {
  (void)pad;
  return brisk_trim();
}

BRISK_EXPORT void malloc_stats(void) { brisk_print_stats(); }

/* brisk is tuned through BRISK_* variables; glibc's knobs are accepted so that
 * programs which set them keep working, and change nothing. */
BRISK_EXPORT int mallopt(int param, int value) {
  (void)param;
  (void)value;
  return 1;
}

static size_t clamp_int(uint64_t v) { return v > (uint64_t)INT32_MAX ? (size_t)INT32_MAX : (size_t)v; }

BRISK_EXPORT struct mallinfo2 mallinfo2(void) {
  brisk_stats_t st;
  brisk_get_stats(&st);
  struct mallinfo2 mi;
  memset(&mi, 0, sizeof mi);
  uint64_t large = st.large_in_use + st.large_cached;
  uint64_t small_heap = st.mapped - large - st.metadata;
  mi.arena = small_heap;            /* non-mmapped space: the page heap */
  mi.hblks = st.large_blocks;       /* number of mmapped blocks */
  mi.hblkhd = large;                /* space in mmapped large blocks */
  mi.usmblks = st.peak_mapped;
  mi.uordblks = st.in_use;          /* allocated bytes, large included */
  mi.fordblks = st.tcache + st.central + st.heap_free + st.large_cached;
  mi.keepcost = st.heap_free;       /* what malloc_trim would release */
  return mi;
}

BRISK_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi;
  memset(&mi, 0, sizeof mi);
  mi.arena = (int)clamp_int(m2.arena);
  mi.hblks = (int)clamp_int(m2.hblks);
  mi.hblkhd = (int)clamp_int(m2.hblkhd);
  mi.usmblks = (int)clamp_int(m2.usmblks);
  mi.uordblks = (int)clamp_int(m2.uordblks);
  mi.fordblks = (int)clamp_int(m2.fordblks);
  mi.keepcost = (int)clamp_int(m2.keepcost);
  return mi;
}
