/* The page map: brisk page number -> span descriptor, for every address brisk
 * hands out. free() reads it without a lock (two loads); an address whose root or
 * leaf entry is empty was never brisk's. Leaves are mmap'd on first use under
 * pm_lock, between guard pages (an overflowing program block faults instead of
 * rewriting entries), and never freed, so a reader never sees a leaf go away. Entries are
 * written by whoever owns the span at that moment (page heap or large lock). */
#include "pagemap.h"
#include "os.h"
#include "counters.h"

_Atomic(brisk_pm_leaf_t *) brisk__pagemap_root[(size_t)1 << BRISK_PM_ROOT_BITS];
static brisk_lock_t pm_lock = BRISK_LOCK_INIT(BRISK_RANK_PAGEMAP);

#define LEAF_MASK (((uintptr_t)1 << BRISK_PM_LEAF_BITS) - 1)

static brisk_pm_leaf_t *leaf_for(uintptr_t ri) {
  brisk_pm_leaf_t *leaf = atomic_load_explicit(&brisk__pagemap_root[ri], memory_order_acquire);
  if (brisk_likely(leaf != NULL)) return leaf;
  brisk__lock(&pm_lock);
  leaf = atomic_load_explicit(&brisk__pagemap_root[ri], memory_order_relaxed);
  if (leaf == NULL) {
    leaf = brisk__os_mmap_guarded(sizeof(brisk_pm_leaf_t)); /* guarded like all metadata */
    if (leaf != NULL) {
      brisk__stat_meta(sizeof(brisk_pm_leaf_t));
      atomic_store_explicit(&brisk__pagemap_root[ri], leaf, memory_order_release);
    }
  }
  brisk__unlock(&pm_lock);
  return leaf;
}

bool brisk__pagemap_ensure(uintptr_t first_page, size_t n) {
  if (n == 0) return true;
  uintptr_t last = first_page + n - 1;
  if ((last >> BRISK_PM_LEAF_BITS) >= ((uintptr_t)1 << BRISK_PM_ROOT_BITS)) return false;
  for (uintptr_t ri = first_page >> BRISK_PM_LEAF_BITS; ri <= last >> BRISK_PM_LEAF_BITS; ri++)
    if (leaf_for(ri) == NULL) return false;
  return true;
}

static inline void entry_store(uintptr_t pg, uint64_t e) {
  brisk_pm_leaf_t *leaf = atomic_load_explicit(&brisk__pagemap_root[pg >> BRISK_PM_LEAF_BITS],
                                               memory_order_relaxed);
  atomic_store_explicit(&leaf->entry[pg & LEAF_MASK], e, memory_order_release);
}

bool brisk__pagemap_set(uintptr_t first_page, size_t n, brisk_span_t *span) {
  if (!brisk__pagemap_ensure(first_page, n)) return false;
  for (uintptr_t pg = first_page; pg < first_page + n; pg++) entry_store(pg, (uint64_t)(uintptr_t)span);
  return true;
}

/* The leaves exist: the page heap ensured them when the region was added. */
void brisk__pagemap_set_small(uintptr_t first_page, size_t n, brisk_span_t *span, unsigned cls) {
  uint64_t base = (uint64_t)(uintptr_t)span | span->node;
  for (size_t i = 0; i < n; i++) {
    uint64_t e = base;
    if (i <= BRISK_PM_MAX_INDEX) e |= (uint64_t)cls << 56 | (uint64_t)i << 48;
    entry_store(first_page + i, e);
  }
}

void brisk__pagemap_fork_lock(void) { brisk__lock_fork(&pm_lock); }
void brisk__pagemap_fork_unlock(void) { brisk__unlock_fork(&pm_lock); }

/* Leaves are never freed and published with release: no lock needed to list them. */
void brisk__pagemap_regions(brisk_region_fn fn, void *arg) {
  size_t bytes = brisk__align_up(sizeof(brisk_pm_leaf_t), brisk__os_page);
  for (size_t ri = 0; ri < ((size_t)1 << BRISK_PM_ROOT_BITS); ri++) {
    brisk_pm_leaf_t *leaf = atomic_load_explicit(&brisk__pagemap_root[ri], memory_order_acquire);
    if (leaf != NULL) fn(arg, (uintptr_t)leaf, bytes, BRISK_VMA_META);
  }
}
