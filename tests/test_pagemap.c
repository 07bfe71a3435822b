/* The page map: what brisk hands out is found, anything else is not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "internal.h"

static void test_unknown_addresses_map_to_nothing(void **state) {
  (void)state;
  int local;
  assert_null(brisk__pagemap_get(NULL));
  assert_null(brisk__pagemap_get(&local));
  assert_null(brisk__pagemap_get((void *)0x1000));
  assert_null(brisk__pagemap_get((void *)~(uintptr_t)0));
}

static void test_set_and_get_range(void **state) {
  (void)state;
  _Alignas(64) brisk_span_t span; /* as descriptors are: the low bits hold a node */
  memset(&span, 0, sizeof span);
  uintptr_t first = ((uintptr_t)0x7ab000000000) >> BRISK_PAGE_SHIFT;
  assert_true(brisk__pagemap_set(first, 300000, &span)); /* crosses a leaf boundary */
  assert_ptr_equal(brisk__pagemap_get((void *)(first << BRISK_PAGE_SHIFT)), &span);
  assert_ptr_equal(brisk__pagemap_get((void *)(((first + 299999) << BRISK_PAGE_SHIFT) + 17)), &span);
  assert_null(brisk__pagemap_get((void *)((first + 300000) << BRISK_PAGE_SHIFT)));
  assert_null(brisk__pagemap_get((void *)((first - 1) << BRISK_PAGE_SHIFT)));
  assert_true(brisk__pagemap_set(first, 300000, NULL));
  assert_null(brisk__pagemap_get((void *)(first << BRISK_PAGE_SHIFT)));
}

static void test_addresses_beyond_48_bits_are_rejected(void **state) {
  (void)state;
  uintptr_t top = (uintptr_t)1 << BRISK_VA_BITS;
  assert_false(brisk__pagemap_ensure(top >> BRISK_PAGE_SHIFT, 1));
  assert_false(brisk__pagemap_set((top >> BRISK_PAGE_SHIFT) - 1, 2, NULL));
}

static void test_every_allocated_block_is_mapped_to_its_span(void **state) {
  (void)state;
  void *small = brisk_malloc(100);
  void *large = brisk_malloc(1 << 20);
  brisk_span_t *s = brisk__pagemap_get(small);
  assert_non_null(s);
  assert_int_equal(s->state, BRISK_SPAN_SMALL);
  assert_true((uintptr_t)small >= s->start && (uintptr_t)small < s->start + s->npages * BRISK_PAGE_SIZE);
  brisk_span_t *l = brisk__pagemap_get(large);
  assert_non_null(l);
  assert_int_equal(l->state, BRISK_SPAN_LARGE);
  assert_int_equal(l->start, (uintptr_t)large);
  /* inside a large block, past its first page, nothing is mapped */
  assert_null(brisk__pagemap_get((char *)large + 2 * BRISK_PAGE_SIZE));
  brisk_free(small);
  brisk_free(large);
}

/* The mapping of /proc/self/maps that holds addr, and its neighbours' bounds and
 * permissions; false if addr is in none. */
typedef struct {
  uintptr_t start, end;
  char perms[5];
} map_t;
static bool find_mapping(uintptr_t addr, map_t *before, map_t *at, map_t *after) {
  FILE *f = fopen("/proc/self/maps", "r");
  assert_non_null(f);
  map_t prev = {0}, cur;
  bool found = false;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    unsigned long a, b;
    if (sscanf(line, "%lx-%lx %4s", &a, &b, cur.perms) != 3) continue;
    cur.start = a;
    cur.end = b;
    if (found) {
      *after = cur;
      fclose(f);
      return true;
    }
    if (addr >= cur.start && addr < cur.end) {
      *before = prev;
      *at = cur;
      found = true;
    }
    prev = cur;
  }
  fclose(f);
  return false;
}

/* Span descriptors and page-map leaves sit between PROT_NONE pages, so that no
 * program block can end right below them (an 8-byte overflow past a large block
 * rewrote a descriptor and steered the next malloc before). */
static void expect_guarded(uintptr_t addr, const char *what) {
  map_t before, at, after;
  assert_true(find_mapping(addr, &before, &at, &after));
  if (!(before.end == at.start && strcmp(before.perms, "---p") == 0 && after.start == at.end &&
        strcmp(after.perms, "---p") == 0))
    fail_msg("%s at %#lx: mapping %#lx-%#lx %s lies between %#lx-%#lx %s and %#lx-%#lx %s, want guard pages",
             what, (unsigned long)addr, (unsigned long)at.start, (unsigned long)at.end, at.perms,
             (unsigned long)before.start, (unsigned long)before.end, before.perms, (unsigned long)after.start,
             (unsigned long)after.end, after.perms);
}

static void test_metadata_lies_between_guard_pages(void **state) {
  (void)state;
  void *blocks[64];
  for (int i = 0; i < 64; i++) blocks[i] = brisk_malloc(200000 + (size_t)i * 4096);
  brisk_span_t *s = brisk__pagemap_get(blocks[0]);
  assert_non_null(s);
  expect_guarded((uintptr_t)s, "a span descriptor");
  uintptr_t page = (uintptr_t)blocks[0] >> BRISK_PAGE_SHIFT;
  brisk_pm_leaf_t *leaf = atomic_load(&brisk__pagemap_root[page >> BRISK_PM_LEAF_BITS]);
  assert_non_null(leaf);
  expect_guarded((uintptr_t)leaf, "a page-map leaf");
  for (int i = 0; i < 64; i++) brisk_free(blocks[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_unknown_addresses_map_to_nothing),
    cmocka_unit_test(test_set_and_get_range),
    cmocka_unit_test(test_addresses_beyond_48_bits_are_rejected),
    cmocka_unit_test(test_every_allocated_block_is_mapped_to_its_span),
    cmocka_unit_test(test_metadata_lies_between_guard_pages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
