/* Options: parsing of BRISK_* entries, sizes with suffixes, bad values kept out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "internal.h"

static void parse(brisk_options_t *o, const char *entry) { brisk__options_parse_entry(o, entry, strlen(entry)); }

static void test_sizes_take_suffixes(void **state) {
  (void)state;
  uint64_t v;
  assert_true(brisk__parse_size("123", 3, &v));
  assert_int_equal(v, 123);
  assert_true(brisk__parse_size("4K", 2, &v));
  assert_int_equal(v, 4096);
  assert_true(brisk__parse_size("8MiB", 4, &v));
  assert_int_equal(v, 8u << 20);
  assert_true(brisk__parse_size("2g", 2, &v));
  assert_int_equal(v, (uint64_t)2 << 30);
  assert_false(brisk__parse_size("", 0, &v));
  assert_false(brisk__parse_size("K", 1, &v));
  assert_false(brisk__parse_size("12X", 3, &v));
  assert_false(brisk__parse_size("99999999999999999999", 20, &v));
  assert_false(brisk__parse_size("99999999999G", 12, &v));
}

static void test_entries_set_their_option(void **state) {
  (void)state;
  brisk_options_t o;
  brisk__options_defaults(&o);
  assert_true(o.sbrk);
  assert_int_equal(o.purge_delay_ms, 1000);
  parse(&o, "BRISK_SBRK=0");
  parse(&o, "BRISK_STATS=yes");
  parse(&o, "BRISK_PURGE_DELAY_MS=250");
  parse(&o, "BRISK_TCACHE_BYTES=1M");
  parse(&o, "BRISK_TCACHE_TOTAL=256M");
  parse(&o, "BRISK_LARGE_MMAP=0");
  parse(&o, "BRISK_HEAP_GROW=16m");
  assert_false(o.sbrk);
  assert_true(o.stats);
  assert_int_equal(o.purge_delay_ms, 250);
  assert_int_equal(o.tcache_bytes, 1u << 20);
  assert_int_equal(o.tcache_total, 256u << 20);
  assert_int_equal(o.large_mmap_bytes, 0);
  assert_int_equal(o.heap_grow, 16u << 20);
  assert_int_equal(o.numa, BRISK_NUMA_AUTO);
  parse(&o, "BRISK_NUMA=interleave");
  assert_int_equal(o.numa, BRISK_NUMA_INTERLEAVE);
  parse(&o, "BRISK_NUMA=OFF");
  assert_int_equal(o.numa, BRISK_NUMA_OFF);
  parse(&o, "BRISK_NUMA=auto");
  assert_int_equal(o.numa, BRISK_NUMA_AUTO);
}

static void test_bad_values_keep_the_default(void **state) {
  (void)state;
  brisk_options_t o, d;
  brisk__options_defaults(&o);
  brisk__options_defaults(&d);
  parse(&o, "BRISK_SBRK=maybe");
  parse(&o, "BRISK_PURGE_DELAY_MS=soon");
  parse(&o, "BRISK_TCACHE_BYTES=-1");
  parse(&o, "BRISK_NUMA=local");
  parse(&o, "BRISK_NO_SUCH_OPTION=1");
  parse(&o, "BRISKET=1");
  parse(&o, "PATH=/usr/bin");
  assert_memory_equal(&o, &d, sizeof o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_sizes_take_suffixes),
    cmocka_unit_test(test_entries_set_their_option),
    cmocka_unit_test(test_bad_values_keep_the_default),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
