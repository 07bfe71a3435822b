/* A C program that loads C++ code with dlopen, privately (RTLD_LOCAL, as Python
 * loads extension modules), so libstdc++ arrives after libbrisk.so was relocated.
 * Runs the library's checks of operator new's failure path (cxx_plugin.cpp). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PLUGIN.so\n", argv[0]);
    return 2;
  }
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  int (*run)(void);
  *(void **)&run = dlsym(lib, "cxx_plugin_run");
  if (run == NULL) {
    fprintf(stderr, "dlsym: %s\n", dlerror());
    return 2;
  }
  /* Some allocation of the C program's own before and after. */
  char *s = malloc(1000);
  memset(s, 2, 1000);
  int rc = run();
  free(s);
  if (rc == 0) puts("OK");
  return rc;
}
