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
#include <stdlib.h>

#include "brisk.h"

#define MAX_REGIONS (1u << 16)
#define SMAPS_CAP ((size_t)32 << 20) /* bss: only the bytes read are touched */
#define TRIES 20

static brisk_region_t regions[MAX_REGIONS];
static char smaps[SMAPS_CAP];

#include "smaps_rss.h"

typedef size_t (*get_resident_fn)(brisk_resident_t *, size_t);

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
