/* Options: BRISK_* environment variables, read once at start-up into brisk__opt.
 * getenv is not usable that early (brisk starts inside the dynamic loader, before
 * libc has set up environ), so the environment is read from /proc/self/environ
 * with plain system calls, falling back to environ where /proc is missing. A bad
 * value warns on stderr and keeps the default; it never stops the program. */
#define _GNU_SOURCE
#include "internal.h"

#include <fcntl.h>
#include <strings.h>
#include <unistd.h>

brisk_options_t brisk__opt;

void brisk__options_defaults(brisk_options_t *o) {
  memset(o, 0, sizeof *o);
  o->sbrk = true;
  o->stats = false;
  o->verbose = false;
  o->tcache_bytes = (size_t)2 << 20;
  o->tcache_total = (size_t)64 << 20;
  o->purge_delay_ms = 1000;
  o->purge_thread = true;
  o->large_mmap_bytes = (size_t)128 << 20;
  o->heap_grow = (size_t)4 << 20;
  o->numa = BRISK_NUMA_AUTO;
}

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

static bool parse_numa(const char *s, size_t len, uint8_t *out) {
  static const char *const names[] = {[BRISK_NUMA_AUTO] = "auto", [BRISK_NUMA_OFF] = "off",
                                      [BRISK_NUMA_INTERLEAVE] = "interleave"};
  for (uint8_t i = 0; i < 3; i++)
    if (strlen(names[i]) == len && strncasecmp(s, names[i], len) == 0) { *out = i; return true; }
  return false;
}

typedef enum { OPT_BOOL, OPT_SIZE, OPT_MS, OPT_NUMA } opt_kind_t;
typedef struct {
  const char *name;
  opt_kind_t kind;
  size_t offset;
} opt_desc_t;

#define OPT(n, k, f) {n, k, offsetof(brisk_options_t, f)}
static const opt_desc_t opt_table[] = {
  OPT("SBRK", OPT_BOOL, sbrk),
  OPT("STATS", OPT_BOOL, stats),
  OPT("VERBOSE", OPT_BOOL, verbose),
  OPT("TCACHE_BYTES", OPT_SIZE, tcache_bytes),
  OPT("TCACHE_TOTAL", OPT_SIZE, tcache_total),
  OPT("PURGE_DELAY_MS", OPT_MS, purge_delay_ms),
  OPT("PURGE_THREAD", OPT_BOOL, purge_thread),
  OPT("LARGE_MMAP", OPT_SIZE, large_mmap_bytes),
  OPT("HEAP_GROW", OPT_SIZE, heap_grow),
  OPT("NUMA", OPT_NUMA, numa),
};

static void warn(const char *what, const char *entry, size_t len) {
  char name[96];
  size_t n = len < sizeof name - 1 ? len : sizeof name - 1;
  memcpy(name, entry, n);
  name[n] = 0;
  brisk__printf_err("brisk: warning: %s '%s' (ignored)\n", what, name);
}

void brisk__options_parse_entry(brisk_options_t *o, const char *entry, size_t len) {
  if (len < 6 || memcmp(entry, "BRISK_", 6) != 0) return;
  const char *eq = memchr(entry, '=', len);
  if (eq == NULL) return;
  const char *name = entry + 6;
  size_t name_len = (size_t)(eq - name);
  const char *val = eq + 1;
  size_t val_len = len - (size_t)(val - entry);
  for (size_t i = 0; i < sizeof opt_table / sizeof opt_table[0]; i++) {
    const opt_desc_t *d = &opt_table[i];
    if (strlen(d->name) != name_len || memcmp(d->name, name, name_len) != 0) continue;
    char *field = (char *)o + d->offset;
    uint64_t v;
    bool b;
    switch (d->kind) {
    case OPT_BOOL:
      if (parse_bool(val, val_len, &b)) *(bool *)field = b;
      else warn("bad boolean in", entry, len);
      return;
    case OPT_SIZE:
      if (brisk__parse_size(val, val_len, &v)) *(size_t *)field = (size_t)v;
      else warn("bad size in", entry, len);
      return;
    case OPT_MS:
      if (brisk__parse_size(val, val_len, &v)) *(uint64_t *)field = v;
      else warn("bad number in", entry, len);
      return;
    case OPT_NUMA:
      if (!parse_numa(val, val_len, (uint8_t *)field)) warn("bad NUMA mode (auto, off, interleave) in", entry, len);
      return;
    }
  }
  warn("unknown option", entry, len);
}

/* Stream /proc/self/environ through a fixed buffer; an entry longer than the
 * buffer cannot be a brisk option we know and is skipped. */
static bool parse_proc_environ(brisk_options_t *o) {
  int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  size_t have = 0;
  bool skipping = false;
  for (;;) {
    ssize_t r = read(fd, buf + have, sizeof buf - have);
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
  close(fd);
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
