/* A program built against an installed brisk (tests/install/install_test.sh), the
 * way a user would build one. It proves what it ran on: malloc_from names the file
 * whose malloc the dynamic linker bound (libbrisk.so when brisk replaces malloc,
 * libc otherwise), and the prefixed API must serve blocks that brisk's statistics
 * count. Exit status 0 when the library's version is the header's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <brisk.h>

int main(void) {
  void *m = dlsym(RTLD_DEFAULT, "malloc");
  Dl_info info;
  printf("malloc_from=%s\n", m && dladdr(m, &info) && info.dli_fname ? info.dli_fname : "?");

  brisk_stats_t before, after;
  brisk_get_stats(&before);
  enum { N = 64, SIZE = 4096 };
  void *blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = brisk_malloc(SIZE);
    if (blocks[i] == NULL) return 1;
    memset(blocks[i], i, SIZE);
  }
  brisk_get_stats(&after);
  printf("in_use_growth=%llu\n", (unsigned long long)(after.in_use - before.in_use));
  for (int i = 0; i < N; i++) brisk_free(blocks[i]);

  printf("version=%d header=%d (%s)\n", brisk_version(), BRISK_VERSION, BRISK_VERSION_STRING);
  return brisk_version() == BRISK_VERSION && after.in_use - before.in_use >= (unsigned long long)N * SIZE ? 0 : 1;
}
