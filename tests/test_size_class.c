/* Size classes: the rounding bound the design promises, for every small size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "internal.h"

static int setup(void **state) {
  (void)state;
  brisk_free(brisk_malloc(1)); /* starts brisk: tables filled */
  return 0;
}

static void test_every_small_size_rounds_within_bound(void **state) {
  (void)state;
  for (size_t size = 1; size <= BRISK_SMALL_MAX; size++) {
    unsigned cls = brisk__size_to_class(size);
    assert_true(cls >= 1 && cls < BRISK_CLASSES);
    assert_int_equal(cls, brisk__size_to_class_slow(size));
    size_t got = brisk__classes[cls].size;
    assert_true(got >= size);
    if (size < 128) {
      assert_int_equal(got, (size + 15) & ~(size_t)15); /* 16-byte steps */
    } else {
      /* waste under 1/8 of the request */
      if ((got - size) * 8 > size) fail_msg("size %zu -> %zu wastes too much", size, got);
    }
    /* the smallest such class: the one below is too small */
    if (cls > 1) assert_true(brisk__classes[cls - 1].size < size);
  }
}

static void test_classes_are_16_byte_multiples_and_increasing(void **state) {
  (void)state;
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    assert_int_equal(brisk__classes[cls].size % BRISK_ALIGN, 0);
    if (cls > 1) assert_true(brisk__classes[cls].size > brisk__classes[cls - 1].size);
  }
  assert_int_equal(brisk__classes[BRISK_CLASSES - 1].size, BRISK_SMALL_MAX);
  assert_int_equal(brisk__size_to_class(0), 1);
}

static void test_spans_waste_under_an_eighth_and_batches_bounded(void **state) {
  (void)state;
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    const brisk_class_info_t *c = &brisk__classes[cls];
    size_t bytes = (size_t)c->span_pages * BRISK_PAGE_SIZE;
    assert_int_equal(c->span_objs, bytes / c->size);
    assert_true(c->span_objs >= 1);
    assert_true((bytes - (size_t)c->span_objs * c->size) * 8 <= bytes);
    assert_true(c->batch >= 2 && c->batch <= 64);
  }
}

/* A span's unused tail: at most 1/32 of it where a length from the fewest pages
 * that hold four objects (one page at least) up to four times that allows it,
 * and then the shortest such length. */
static void test_span_tails_are_short(void **state) {
  (void)state;
  unsigned tight = 0;
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    const brisk_class_info_t *c = &brisk__classes[cls];
    size_t four = 4 * (size_t)c->size > BRISK_PAGE_SIZE ? 4 * (size_t)c->size : BRISK_PAGE_SIZE;
    size_t first = (four + BRISK_PAGE_SIZE - 1) / BRISK_PAGE_SIZE, shortest = 0;
    for (size_t pages = first; pages <= 4 * first && shortest == 0; pages++)
      if ((pages * BRISK_PAGE_SIZE) % c->size * 32 <= pages * BRISK_PAGE_SIZE) shortest = pages;
    if (shortest == 0) continue; /* none: the least tail of them, bounded by the test above */
    if (c->span_pages != shortest) fail_msg("class %u (%u B): %u pages, %zu would do", cls, c->size, c->span_pages, shortest);
    tight++;
  }
  assert_true(tight >= BRISK_CLASSES - 2); /* every class but 1664 B */
}

/* free() tests an offset by one multiply and a rotate: an object's start gives
 * its index, every other offset (inside an object, past the span's last, or
 * far beyond, as an address with high bits set gives) an index past the span. */
static void test_object_index_is_exact_over_span(void **state) {
  (void)state;
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    const brisk_class_info_t *c = &brisk__classes[cls];
    uint64_t limit = (uint64_t)c->span_objs * c->size;
    for (uint64_t off = 0; off < limit + 2 * c->size; off++) {
      uint64_t idx = brisk__obj_index(c, off);
      bool start = off % c->size == 0 && off < limit;
      if ((idx < c->span_objs) != start || (start && idx != off / c->size))
        fail_msg("class %u off %llu index %llu", cls, (unsigned long long)off, (unsigned long long)idx);
    }
    for (uint64_t far = (uint64_t)1 << 48; far < ((uint64_t)1 << 48) + 4 * c->size; far += 16)
      if (brisk__obj_index(c, far) < c->span_objs) fail_msg("class %u far offset %llu", cls, (unsigned long long)far);
  }
}

static void test_aligned_class_gives_aligned_multiples(void **state) {
  (void)state;
  for (size_t align = 32; align <= BRISK_PAGE_SIZE; align <<= 1) {
    for (size_t size = 1; size <= 20000; size += 37) {
      unsigned cls = brisk__size_to_class_aligned(size, align);
      assert_true(cls != 0);
      assert_int_equal(brisk__classes[cls].size % align, 0);
      assert_true(brisk__classes[cls].size >= size);
      for (unsigned c = brisk__size_to_class(size); c < cls; c++) /* the smallest such class */
        assert_int_not_equal(brisk__classes[c].size % align, 0);
    }
  }
  assert_int_equal(brisk__size_to_class_aligned(100, 2 * BRISK_PAGE_SIZE), 0);
  assert_int_equal(brisk__size_to_class_aligned(BRISK_SMALL_MAX + 1, 64), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_every_small_size_rounds_within_bound),
    cmocka_unit_test(test_classes_are_16_byte_multiples_and_increasing),
    cmocka_unit_test(test_spans_waste_under_an_eighth_and_batches_bounded),
    cmocka_unit_test(test_span_tails_are_short),
    cmocka_unit_test(test_object_index_is_exact_over_span),
    cmocka_unit_test(test_aligned_class_gives_aligned_multiples),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
