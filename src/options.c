/* Options: BRISK_* environment variables, read once at start-up into brisk__opt,
 * by one table (below) that also gives the defaults and the public listing.
 * getenv is not usable that early (brisk starts inside the dynamic loader, before
 * libc has set up environ), so the environment is read from /proc/self/environ
 * with plain system calls, falling back to environ where /proc is missing. A bad
 * value warns on stderr and keeps the default; it never stops the program. */
#define _GNU_SOURCE
#include "options.h"
#include "os.h"

#include <fcntl.h>
#include <strings.h>
#include <unistd.h>

brisk_options_t brisk__opt;

bool brisk__parse_size(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;
  size_t i = 0;
  if (len == 0) return false;
  for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (i == 0) return false;
  unsigned shift = 0;
  if (i < len) {
    switch (s[i] | 0x20) {
    case 'k': shift = 10; break;
    case 'm': shift = 20; break;
    case 'g': shift = 30; break;
    default: return false;
    }
    i++;
    if (i < len && (s[i] | 0x20) == 'i') i++; /* KiB */
    if (i < len && (s[i] | 0x20) == 'b') i++;
  }
  if (i != len) return false;
  if (shift && v > (UINT64_MAX >> shift)) return false;
  *out = v << shift;
  return true;
}

static bool parse_bool(const char *s, size_t len, bool *out) {
  static const char *const yes[] = {"1", "yes", "true", "on"};
  static const char *const no[] = {"0", "no", "false", "off"};
  for (unsigned i = 0; i < 4; i++) {
    if (strlen(yes[i]) == len && strncasecmp(s, yes[i], len) == 0) { *out = true; return true; }
    if (strlen(no[i]) == len && strncasecmp(s, no[i], len) == 0) { *out = false; return true; }
  }
  return false;
}

/* Options that name one of a few words. */
static bool parse_word(const char *s, size_t len, const char *const *names, uint8_t n, uint8_t *out) {
  for (uint8_t i = 0; i < n; i++)
    if (names[i] != NULL && strlen(names[i]) == len && strncasecmp(s, names[i], len) == 0) { *out = i; return true; }
  return false;
}

/* A boolean's words too for BRISK_STATS, whose 1 predates its json. */
static bool parse_stats(const char *s, size_t len, uint8_t *out) {
  static const char *const names[] = {[BRISK_STATS_OFF] = NULL, [BRISK_STATS_TEXT] = "text",
                                      [BRISK_STATS_JSON] = "json"};
  bool b;
  if (parse_bool(s, len, &b)) { *out = b ? BRISK_STATS_TEXT : BRISK_STATS_OFF; return true; }
  return parse_word(s, len, names, 3, out);
}

static bool parse_numa_source(const char *s, size_t len, uint8_t *out) {
  static const char *const names[] = {[BRISK_NUMA_SOURCE_AUTO] = "auto", [BRISK_NUMA_SOURCE_HWLOC] = "hwloc",
                                      [BRISK_NUMA_SOURCE_SYSFS] = "sysfs"};
  return parse_word(s, len, names, 3, out);
}

/* A path is copied: the entry lives in a buffer that is reused. */
static bool parse_path(const char *s, size_t len, char *out) {
  if (len >= BRISK_PATH_OPT_MAX) return false;
  memcpy(out, s, len);
  out[len] = 0;
  return true;
}

static bool parse_numa(const char *s, size_t len, uint8_t *out) {
  static const char *const names[] = {[BRISK_NUMA_AUTO] = "auto", [BRISK_NUMA_OFF] = "off",
                                      [BRISK_NUMA_INTERLEAVE] = "interleave"};
  for (uint8_t i = 0; i < 3; i++)
    if (strlen(names[i]) == len && strncasecmp(s, names[i], len) == 0) { *out = i; return true; }
  return false;
}

/* ------------------------------------------------------------------------------
   The option table. Each option is one row: its name after BRISK_, how its value
   is read, the field of brisk_options_t it sets, its default spelt as the
   environment would spell it, and one line on what it does. The defaults are
   parsed from the row by the same code as the environment (so a default cannot
   be one the parser would refuse), and the rows are what brisk_option_get()
   returns: `brisk options` lists them and a test holds the README's table to
   them. An option is added by adding its field to brisk_options_t and its row
   here, and its line to the README's table.
------------------------------------------------------------------------------ */
typedef enum { OPT_BOOL, OPT_SIZE, OPT_NUMBER, OPT_MS, OPT_NUMA, OPT_STATS, OPT_PATH, OPT_NUMA_SOURCE, OPT_DIR } opt_kind_t;

/* What each kind accepts, for the listing (brisk_option_t.values). */
#define OPT_VALUES_OPT_BOOL "0|1 (also no|yes, off|on, false|true)"
#define OPT_VALUES_OPT_SIZE "bytes, with an optional K, M or G suffix"
#define OPT_VALUES_OPT_NUMBER "a whole number"
#define OPT_VALUES_OPT_MS "milliseconds"
#define OPT_VALUES_OPT_NUMA "auto|off|interleave"
#define OPT_VALUES_OPT_STATS "0|1|text|json"
#define OPT_VALUES_OPT_PATH "a file name; %p is the pid"
#define OPT_VALUES_OPT_NUMA_SOURCE "auto|hwloc|sysfs"
#define OPT_VALUES_OPT_DIR "a directory"

typedef struct {
  brisk_option_t info;  /* what the API shows: name, values, default, meaning */
  opt_kind_t kind;
  size_t offset;        /* of the field in brisk_options_t */
} opt_row_t;

#define OPT(name, kind, field, def, meaning) \
  {{name, OPT_VALUES_##kind, def, meaning}, kind, offsetof(brisk_options_t, field)}
static const opt_row_t opt_table[] = {
  OPT("SBRK", OPT_BOOL, sbrk, "1", "grow the small-object heap with sbrk; 0: mmap only"),
  OPT("STATS", OPT_STATS, stats, "0", "statistics at exit: 1 or text, json (docs/stats-schema.md)"),
  OPT("STATS_FILE", OPT_PATH, stats_file, "", "write the statistics to this file instead of stderr"),
  OPT("VERBOSE", OPT_BOOL, verbose, "0", "report fallbacks and the NUMA table on stderr"),
  OPT("TCACHE_BYTES", OPT_SIZE, tcache_bytes, "8M", "one thread cache's budget"),
  OPT("TCACHE_TOTAL", OPT_SIZE, tcache_total, "64M", "the budget of all thread caches together"),
  OPT("PURGE_DELAY_MS", OPT_MS, purge_delay_ms, "1000", "idle time before memory goes back to the OS"),
  OPT("PURGE_THREAD", OPT_BOOL, purge_thread, "1", "purge on time from a background thread"),
  OPT("LARGE_MMAP", OPT_SIZE, large_mmap_bytes, "128M", "large blocks from this size up are mapped alone"),
  OPT("HEAP_GROW", OPT_SIZE, heap_grow, "4M", "how much the page heap asks the OS for at a time"),
  OPT("HEAP_SHARDS", OPT_NUMBER, heap_shards, "0", "page-heap arenas per NUMA node, each with its own lock, dealt to threads round robin; 0: on demand, to threads that find theirs busy (up to 2 per CPU, at most 8)"),
  OPT("NUMA", OPT_NUMA, numa, "auto", "NUMA policy: pools per node, or off, or interleaved large blocks"),
  OPT("NUMA_SOURCE", OPT_NUMA_SOURCE, numa_source, "auto", "where the NUMA topology comes from: hwloc, else sysfs"),
  OPT("GUARD_SAMPLE", OPT_SIZE, guard_sample, "128M", "mean bytes allocated between blocks put before a guard page; 0: none"),
  OPT("PROF", OPT_BOOL, prof, "0", "sample a heap profile of the live allocations (README, Heap profiles)"),
  OPT("PROF_SAMPLE", OPT_SIZE, prof_sample, "512K", "mean bytes allocated between profiled allocations; 0: none"),
  OPT("PROF_FILE", OPT_PATH, prof_file, "brisk.%p.heap", "the heap profile written at exit"),
  OPT("PROF_TRIGGER", OPT_PATH, prof_trigger, "", "write the heap profile when this file appears, then remove it"),
  OPT("METRICS", OPT_DIR, metrics, "", "publish live statistics in DIR/brisk.PID for brisk top and brisk exporter"),
};
#undef OPT
#define OPT_COUNT (sizeof opt_table / sizeof opt_table[0])

/* Sets row d's field in o from value s; false (o unchanged) if s is malformed. */
static bool opt_set(brisk_options_t *o, const opt_row_t *d, const char *s, size_t len) {
  char *field = (char *)o + d->offset;
  uint64_t v;
  bool b;
  switch (d->kind) {
  case OPT_BOOL:
    if (!parse_bool(s, len, &b)) return false;
    *(bool *)field = b;
    return true;
  case OPT_SIZE:
    if (!brisk__parse_size(s, len, &v) || v > SIZE_MAX) return false;
    *(size_t *)field = (size_t)v;
    return true;
  case OPT_NUMBER:
    for (size_t i = 0; i < len; i++)
      if (s[i] < '0' || s[i] > '9') return false;
    if (!brisk__parse_size(s, len, &v) || v > SIZE_MAX) return false;
    *(size_t *)field = (size_t)v;
    return true;
  case OPT_MS:
    if (!brisk__parse_size(s, len, &v)) return false;
    *(uint64_t *)field = v;
    return true;
  case OPT_NUMA:
    return parse_numa(s, len, (uint8_t *)field);
  case OPT_STATS:
    return parse_stats(s, len, (uint8_t *)field);
  case OPT_PATH:
  case OPT_DIR:
    return parse_path(s, len, field);
  case OPT_NUMA_SOURCE:
    return parse_numa_source(s, len, (uint8_t *)field);
  }
  return false;
}

static const opt_row_t *opt_find(const char *name, size_t len) {
  for (size_t i = 0; i < OPT_COUNT; i++)
    if (strlen(opt_table[i].info.name) == len && memcmp(opt_table[i].info.name, name, len) == 0)
      return &opt_table[i];
  return NULL;
}

void brisk__options_defaults(brisk_options_t *o) {
  memset(o, 0, sizeof *o);
  for (size_t i = 0; i < OPT_COUNT; i++) {
    bool ok = opt_set(o, &opt_table[i], opt_table[i].info.default_value,
                      strlen(opt_table[i].info.default_value));
    brisk_assert(ok);
    (void)ok;
  }
}

static void warn(const char *what, const char *entry, size_t len) {
  char name[96];
  size_t n = len < sizeof name - 1 ? len : sizeof name - 1;
  memcpy(name, entry, n);
  name[n] = 0;
  brisk__printf_err("brisk: warning: %s '%s' (ignored)\n", what, name);
}

/* The warning for a bad value of each kind. */
static const char *const opt_bad[] = {
  [OPT_BOOL] = "bad boolean in",
  [OPT_SIZE] = "bad size in",
  [OPT_NUMBER] = "bad number in",
  [OPT_MS] = "bad number in",
  [OPT_NUMA] = "bad NUMA mode (auto, off, interleave) in",
  [OPT_STATS] = "bad statistics mode (0, 1, text, json) in",
  [OPT_PATH] = "path too long in",
  [OPT_DIR] = "path too long in",
  [OPT_NUMA_SOURCE] = "bad NUMA topology source (auto, hwloc, sysfs) in",
};

void brisk__options_parse_entry(brisk_options_t *o, const char *entry, size_t len) {
  if (len < 6 || memcmp(entry, "BRISK_", 6) != 0) return;
  const char *eq = memchr(entry, '=', len);
  if (eq == NULL) return;
  const char *name = entry + 6;
  const char *val = eq + 1;
  const opt_row_t *d = opt_find(name, (size_t)(eq - name));
  if (d == NULL) warn("unknown option", entry, len);
  else if (!opt_set(o, d, val, len - (size_t)(val - entry))) warn(opt_bad[d->kind], entry, len);
}

/* The public side of the table, and the version beside it: what the `brisk`
 * launcher (launcher/brisk.c) asks the library it is about to preload. */
int brisk_version(void) { return BRISK_VERSION; }

size_t brisk_option_count(void) { return OPT_COUNT; }

const brisk_option_t *brisk_option_get(size_t i) { return i < OPT_COUNT ? &opt_table[i].info : NULL; }

int brisk_option_check(const char *name, const char *value) {
  const opt_row_t *d = opt_find(name, strlen(name));
  if (d == NULL) return ENOENT;
  brisk_options_t scratch;
  return opt_set(&scratch, d, value, strlen(value)) ? 0 : EINVAL;
}

/* Stream /proc/self/environ through a fixed buffer; an entry longer than the
 * buffer cannot be a brisk option we know and is skipped. */
static bool parse_proc_environ(brisk_options_t *o) {
  int fd = brisk__os_open_read("/proc/self/environ");
  if (fd < 0) return false;
  char buf[4096];
  size_t have = 0;
  bool skipping = false;
  for (;;) {
    long r = brisk__os_read(fd, buf + have, sizeof buf - have);
    if (r <= 0) break;
    have += (size_t)r;
    size_t start = 0;
    for (size_t i = 0; i < have; i++) {
      if (buf[i] != 0) continue;
      if (!skipping) brisk__options_parse_entry(o, buf + start, i - start);
      skipping = false;
      start = i + 1;
    }
    if (start == 0 && have == sizeof buf) { /* one huge entry */
      skipping = true;
      have = 0;
    } else {
      memmove(buf, buf + start, have - start);
      have -= start;
    }
  }
  brisk__os_close(fd);
  return true;
}

extern char **environ;

void brisk__options_init(void) {
  int saved = errno;
  brisk__options_defaults(&brisk__opt);
  if (!parse_proc_environ(&brisk__opt) && environ != NULL)
    for (char **e = environ; *e != NULL; e++) brisk__options_parse_entry(&brisk__opt, *e, strlen(*e));
  if (brisk__opt.heap_grow < BRISK_PAGE_SIZE) brisk__opt.heap_grow = BRISK_PAGE_SIZE;
  errno = saved;
}
