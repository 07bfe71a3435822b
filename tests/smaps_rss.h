/* The kernel's side of the residency checks (tests/test_resident.c and the
 * preloaded tests/preload/smaps_check.c): the Rss that /proc/self/smaps reports
 * for the VMAs that overlap brisk's mappings (brisk_get_regions), found by
 * address, since some kernels refuse mapping names. Nothing here allocates,
 * so that reading the kernel's figure moves none of brisk's.
 *
 * The includer defines MAX_REGIONS and SMAPS_CAP and the buffers
 *   static brisk_region_t regions[MAX_REGIONS];
 *   static char smaps[SMAPS_CAP];
 * and then includes this file. */
#ifndef BRISK_TEST_SMAPS_RSS_H
#define BRISK_TEST_SMAPS_RSS_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "brisk.h"

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

typedef size_t (*get_regions_fn)(brisk_region_t *, size_t);

/* brisk's mappings, sorted; 0 if more than MAX_REGIONS. */
static size_t get_regions(get_regions_fn fn, uint64_t *mapped) {
  size_t n = fn(regions, MAX_REGIONS);
  if (n > MAX_REGIONS) return 0;
  sort_regions(n);
  *mapped = 0;
  for (size_t i = 0; i < n; i++) *mapped += regions[i].length;
  return n;
}

#endif
