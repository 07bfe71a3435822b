/* The page map: what brisk hands out is found, anything else is not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

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

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_unknown_addresses_map_to_nothing),
    cmocka_unit_test(test_set_and_get_range),
    cmocka_unit_test(test_addresses_beyond_48_bits_are_rejected),
    cmocka_unit_test(test_every_allocated_block_is_mapped_to_its_span),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
