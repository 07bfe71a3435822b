/* Options: parsing of BRISK_* entries, sizes with suffixes, bad values kept out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
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
  assert_int_equal(o.stats, BRISK_STATS_TEXT);
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

static void test_stats_report_options(void **state) {
  (void)state;
  brisk_options_t o;
  brisk__options_defaults(&o);
  assert_int_equal(o.stats, BRISK_STATS_OFF);
  assert_string_equal(o.stats_file, "");
  assert_int_equal(o.numa_source, BRISK_NUMA_SOURCE_AUTO);
  parse(&o, "BRISK_STATS=json");
  assert_int_equal(o.stats, BRISK_STATS_JSON);
  parse(&o, "BRISK_STATS=0");
  assert_int_equal(o.stats, BRISK_STATS_OFF);
  parse(&o, "BRISK_STATS=Text");
  assert_int_equal(o.stats, BRISK_STATS_TEXT);
  parse(&o, "BRISK_STATS_FILE=/tmp/brisk.%p.json");
  assert_string_equal(o.stats_file, "/tmp/brisk.%p.json");
  parse(&o, "BRISK_NUMA_SOURCE=sysfs");
  assert_int_equal(o.numa_source, BRISK_NUMA_SOURCE_SYSFS);
  parse(&o, "BRISK_NUMA_SOURCE=hwloc");
  assert_int_equal(o.numa_source, BRISK_NUMA_SOURCE_HWLOC);
  /* A path that does not fit is refused whole, never cut. */
  char entry[BRISK_PATH_OPT_MAX + 32] = "BRISK_STATS_FILE=";
  memset(entry + strlen(entry), 'x', BRISK_PATH_OPT_MAX);
  entry[sizeof entry - 1] = 0;
  parse(&o, entry);
  assert_string_equal(o.stats_file, "/tmp/brisk.%p.json");
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
  parse(&o, "BRISK_STATS=yaml");
  parse(&o, "BRISK_NUMA_SOURCE=libnuma");
  parse(&o, "BRISK_NO_SUCH_OPTION=1");
  parse(&o, "BRISKET=1");
  parse(&o, "PATH=/usr/bin");
  assert_memory_equal(&o, &d, sizeof o);
}

static void test_option_table_lists_each_option_once(void **state) {
  (void)state;
  size_t n = brisk_option_count();
  assert_true(n >= 10);
  assert_null(brisk_option_get(n));
  for (size_t i = 0; i < n; i++) {
    const brisk_option_t *o = brisk_option_get(i);
    assert_non_null(o);
    assert_true(o->name[0] != 0 && o->values[0] != 0 && o->meaning[0] != 0);
    /* Each row's default is a value its own parser accepts. */
    assert_int_equal(brisk_option_check(o->name, o->default_value), 0);
    for (size_t j = 0; j < i; j++) assert_string_not_equal(brisk_option_get(j)->name, o->name);
  }
}

static void test_defaults_are_the_rows_defaults(void **state) {
  (void)state;
  brisk_options_t o, from_rows;
  brisk__options_defaults(&o);
  assert_int_equal(o.tcache_bytes, 8u << 20);
  assert_int_equal(o.tcache_total, 64u << 20);
  assert_int_equal(o.large_mmap_bytes, 128u << 20);
  assert_int_equal(o.heap_grow, 4u << 20);
  assert_true(o.purge_thread);
  assert_false(o.stats);
  /* Parsing every row's default as an environment entry changes nothing. */
  brisk__options_defaults(&from_rows);
  for (size_t i = 0; i < brisk_option_count(); i++) {
    char entry[128];
    const brisk_option_t *r = brisk_option_get(i);
    snprintf(entry, sizeof entry, "BRISK_%s=%s", r->name, r->default_value);
    parse(&from_rows, entry);
  }
  assert_memory_equal(&o, &from_rows, sizeof o);
}

static void test_option_check_names_the_error(void **state) {
  (void)state;
  assert_int_equal(brisk_option_check("NUMA", "interleave"), 0);
  assert_int_equal(brisk_option_check("HEAP_GROW", "16M"), 0);
  assert_int_equal(brisk_option_check("NUMA", "local"), EINVAL);
  assert_int_equal(brisk_option_check("SBRK", "maybe"), EINVAL);
  assert_int_equal(brisk_option_check("PURGE_DELAY_MS", ""), EINVAL);
  assert_int_equal(brisk_option_check("NO_SUCH_OPTION", "1"), ENOENT);
  assert_int_equal(brisk_option_check("numa", "off"), ENOENT); /* names are upper case */
  assert_int_equal(brisk_option_check("", "1"), ENOENT);
}

static void test_version_is_the_headers(void **state) {
  (void)state;
  assert_int_equal(brisk_version(), BRISK_VERSION);
  char s[32];
  snprintf(s, sizeof s, "%d.%d.%d", BRISK_VERSION_MAJOR, BRISK_VERSION_MINOR, BRISK_VERSION_PATCH);
  assert_string_equal(s, BRISK_VERSION_STRING);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_sizes_take_suffixes),
    cmocka_unit_test(test_entries_set_their_option),
    cmocka_unit_test(test_stats_report_options),
    cmocka_unit_test(test_bad_values_keep_the_default),
    cmocka_unit_test(test_option_table_lists_each_option_once),
    cmocka_unit_test(test_defaults_are_the_rows_defaults),
    cmocka_unit_test(test_option_check_names_the_error),
    cmocka_unit_test(test_version_is_the_headers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
