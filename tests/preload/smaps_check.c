/* Preloaded after libbrisk.so (run_preloaded.sh --resident-check): at exit, and
 * whenever the program calls brisk_smaps_check(label) (python through ctypes),
 * compares brisk's resident total (brisk_get_resident) with what the kernel
 * says: the Rss of every VMA in /proc/self/smaps that overlaps one of brisk's
 * mappings (brisk_get_regions), found by address because some kernels refuse
 * mapping names. One line per check goes to SMAPS_CHECK_FILE (%p: the
 * pid), for the driver to judge; the parts brisk attributes go with it.
 *
 * Nothing here allocates: a heap allocation between the two readings would be
 * one of the bytes measured. The kernel's figure is read before and after
 * brisk's, and the check is taken again (up to TRIES times) until both
 * readings and brisk's mappings agree, so that a purge by brisk's background
 * thread between them cannot pass for a miscount. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brisk.h"

#define MAX_REGIONS (1u << 16)
#define SMAPS_CAP ((size_t)32 << 20) /* bss: only the bytes read are touched */
#define TRIES 20

static brisk_region_t regions[MAX_REGIONS];
static char smaps[SMAPS_CAP];

typedef size_t (*get_resident_fn)(brisk_resident_t *, size_t);
typedef size_t (*get_regions_fn)(brisk_region_t *, size_t);

typedef struct kernel_view_s {
  uint64_t rss;     /* bytes: Rss of the VMAs that overlap brisk's mappings */
  uint64_t outside; /* bytes of those VMAs outside brisk's mappings */
  unsigned vmas;    /* how many VMAs */
  unsigned named;   /* VMAs named [anon:brisk:...] */
  int ok;
} kernel_view_t;

/* Shell sort by start: qsort may allocate. */
static void sort_regions(size_t n) {
  for (size_t gap = n / 2; gap > 0; gap /= 2)
    for (size_t i = gap; i < n; i++) {
      brisk_region_t t = regions[i];
      size_t j = i;
      for (; j >= gap && regions[j - gap].start > t.start; j -= gap) regions[j] = regions[j - gap];
      regions[j] = t;
    }
}

/* Bytes of [lo, hi) covered by the sorted regions. */
static uint64_t covered(size_t n, uint64_t lo, uint64_t hi) {
  size_t a = 0, b = n; /* the first region that ends after lo */
  while (a < b) {
    size_t m = (a + b) / 2;
    if (regions[m].start + regions[m].length <= lo) a = m + 1;
    else b = m;
  }
  uint64_t bytes = 0;
  for (size_t i = a; i < n && regions[i].start < hi; i++) {
    uint64_t s = regions[i].start > lo ? regions[i].start : lo;
    uint64_t e = regions[i].start + regions[i].length < hi ? regions[i].start + regions[i].length : hi;
    if (e > s) bytes += e - s;
  }
  return bytes;
}

static size_t read_smaps(void) {
  int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  size_t have = 0;
  ssize_t r;
  while (have < SMAPS_CAP - 1 && (r = read(fd, smaps + have, SMAPS_CAP - 1 - have)) > 0) have += (size_t)r;
  close(fd);
  smaps[have] = 0;
  return have;
}

static kernel_view_t kernel_view(size_t n) {
  kernel_view_t v = {0, 0, 0, 0, 0};
  size_t len = read_smaps();
  if (len == 0 || len >= SMAPS_CAP - 1) return v;
  int in = 0; /* the current VMA overlaps brisk's mappings */
  for (char *line = smaps; line < smaps + len;) {
    char *nl = strchr(line, '\n');
    if (nl == NULL) nl = smaps + len;
    *nl = 0;
    unsigned long long lo, hi, kb;
    int name_at = 0;
    if (sscanf(line, "%llx-%llx %*s %*s %*s %*s %n", &lo, &hi, &name_at) == 2) {
      uint64_t c = covered(n, lo, hi);
      in = c > 0;
      if (in) {
        v.vmas++;
        v.outside += (hi - lo) - c;
        if (name_at > 0 && strncmp(line + name_at, "[anon:brisk:", 12) == 0) v.named++;
      }
    } else if (in && sscanf(line, "Rss: %llu kB", &kb) == 1) {
      v.rss += kb * 1024;
    }
    line = nl + 1;
  }
  v.ok = 1;
  return v;
}

static size_t get_regions(get_regions_fn fn, uint64_t *mapped) {
  size_t n = fn(regions, MAX_REGIONS);
  if (n > MAX_REGIONS) return 0;
  sort_regions(n);
  *mapped = 0;
  for (size_t i = 0; i < n; i++) *mapped += regions[i].length;
  return n;
}

static void out_line(const char *text) {
  const char *tmpl = getenv("SMAPS_CHECK_FILE");
  int fd = 2;
  if (tmpl != NULL && tmpl[0]) {
    char path[512];
    const char *at = strstr(tmpl, "%p");
    if (at != NULL)
      snprintf(path, sizeof path, "%.*s%d%s", (int)(at - tmpl), tmpl, (int)getpid(), at + 2);
    else
      snprintf(path, sizeof path, "%s", tmpl);
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) fd = 2;
  }
  ssize_t w = write(fd, text, strlen(text));
  (void)w;
  if (fd != 2) close(fd);
}

__attribute__((visibility("default"))) int brisk_smaps_check(const char *label) {
  char line[1024];
  get_resident_fn resident = (get_resident_fn)dlsym(RTLD_DEFAULT, "brisk_get_resident");
  get_regions_fn list = (get_regions_fn)dlsym(RTLD_DEFAULT, "brisk_get_regions");
  if (resident == NULL || list == NULL) {
    snprintf(line, sizeof line, "label=%s pid=%d error=not-on-brisk\n", label, (int)getpid());
    out_line(line);
    return -1;
  }
  brisk_resident_t r;
  kernel_view_t before = {0}, after = {0};
  size_t n = 0;
  uint64_t mapped = 0, mapped2 = 0;
  int tries = 0;
  for (; tries < TRIES; tries++) {
    n = get_regions(list, &mapped);
    before = kernel_view(n);
    resident(&r, sizeof r);
    size_t n2 = get_regions(list, &mapped2);
    after = kernel_view(n2);
    if (n > 0 && n2 == n && mapped2 == mapped && before.ok && after.ok && before.rss == after.rss) break;
  }
  uint64_t parts = r.in_use + r.tcache + r.central + r.heap_free + r.large + r.guarded + r.metadata;
  snprintf(line, sizeof line,
           "label=%s pid=%d brisk_resident=%llu smaps_rss=%llu stable=%d tries=%d regions=%zu mapped=%llu "
           "vmas=%u named=%u outside=%llu parts=%llu in_use=%llu tcache=%llu central=%llu heap_free=%llu "
           "large=%llu guarded=%llu metadata=%llu\n",
           label, (int)getpid(), (unsigned long long)r.total, (unsigned long long)after.rss, tries < TRIES,
           tries + 1, n, (unsigned long long)mapped, after.vmas, after.named, (unsigned long long)after.outside,
           (unsigned long long)parts, (unsigned long long)r.in_use, (unsigned long long)r.tcache,
           (unsigned long long)r.central, (unsigned long long)r.heap_free, (unsigned long long)r.large,
           (unsigned long long)r.guarded, (unsigned long long)r.metadata);
  out_line(line);
  return 0;
}

__attribute__((destructor)) static void check_at_exit(void) { brisk_smaps_check("exit"); }
