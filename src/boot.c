/* The bootstrap area: memory for the allocations of a thread that is loading
 * the NUMA topology (numa.c's discovery, and hwloc's own mallocs), which must not
 * come from pools whose node is not known yet. Chunks are mapped apart from the
 * heaps and never reused; free() of a block does nothing (realloc copies it
 * out). boot_lock (rank BOOT) guards the chunks and the cursor. Beside meta.c:
 * it takes only span descriptors and page-map entries. */
#include "boot.h"
#include "counters.h"
#include "meta.h"
#include "os.h"
#include "pagemap.h"

#define BOOT_CHUNK ((size_t)1 << 20)
#define BOOT_HEADER 16

static brisk_lock_t boot_lock = BRISK_LOCK_INIT(BRISK_RANK_BOOT);
static uintptr_t boot_cur, boot_end;
static _Atomic uint64_t boot_count; /* blocks served: read without the lock */
static brisk_span_t *boot_chunks; /* every chunk's span, linked through next */

static bool boot_grow_locked(size_t need) {
  size_t bytes = brisk__align_up(need > BOOT_CHUNK ? need : BOOT_CHUNK, BRISK_PAGE_SIZE);
  void *p = brisk__os_mmap_aligned(bytes, BRISK_PAGE_SIZE, BRISK_VMA_META);
  if (p == NULL) return false;
  brisk_span_t *s = brisk__span_new();
  if (s == NULL || !brisk__pagemap_set((uintptr_t)p >> BRISK_PAGE_SHIFT, bytes / BRISK_PAGE_SIZE, s)) {
    if (s) brisk__span_delete(s);
    brisk__os_munmap(p, bytes);
    return false;
  }
  s->start = (uintptr_t)p;
  s->npages = bytes / BRISK_PAGE_SIZE;
  s->map_size = bytes;
  s->state = BRISK_SPAN_BOOT;
  s->next = boot_chunks;
  boot_chunks = s;
  brisk__stat_meta(bytes);
  boot_cur = (uintptr_t)p;
  boot_end = (uintptr_t)p + bytes;
  return true;
}

/* align 0: the size's own power-of-two alignment (16 to a page), which is what
 * brisk__alloc_aligned expects of a block of a size class. */
void *brisk__boot_alloc(size_t size, size_t align) {
  if (size > PTRDIFF_MAX / 2) {
    errno = ENOMEM;
    return NULL;
  }
  if (align == 0) align = size & (~size + 1);
  if (align < BRISK_ALIGN) align = BRISK_ALIGN;
  if (align > brisk__os_page && size <= BRISK_SMALL_MAX) align = brisk__os_page;
  size_t need = size + align + BOOT_HEADER;
  brisk__lock(&boot_lock);
  if (boot_end - boot_cur < need && !boot_grow_locked(need)) {
    brisk__unlock(&boot_lock);
    errno = ENOMEM;
    return NULL;
  }
  uintptr_t p = brisk__align_up(boot_cur + BOOT_HEADER, align);
  ((size_t *)p)[-1] = size;
  boot_cur = p + (size ? size : 1);
  atomic_fetch_add_explicit(&boot_count, 1, memory_order_relaxed);
  brisk__unlock(&boot_lock);
  return (void *)p; /* fresh mmap memory: zero, as calloc needs */
}

size_t brisk__boot_usable(const void *p) { return ((const size_t *)p)[-1]; }

void brisk__boot_regions(brisk_region_fn fn, void *arg) {
  brisk__lock(&boot_lock);
  for (const brisk_span_t *s = boot_chunks; s != NULL; s = s->next) fn(arg, s->start, s->map_size, BRISK_VMA_META);
  brisk__unlock(&boot_lock);
}

uint64_t brisk__boot_count(void) { return atomic_load_explicit(&boot_count, memory_order_relaxed); }

void brisk__boot_fork_lock(void) { brisk__lock_fork(&boot_lock); }
void brisk__boot_fork_unlock(void) { brisk__unlock_fork(&boot_lock); }

