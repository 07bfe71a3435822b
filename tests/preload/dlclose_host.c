/* dlclose of libbrisk.so must leave the process working. brisk registers a
 * pthread-key destructor for its thread caches and may start its purge thread;
 * both point into the library's code, so the library must stay mapped after
 * dlclose (it is linked -z nodelete). Here a thread that used brisk outlives the
 * dlclose and exits after it (the key destructor runs), and the purge thread,
 * started by 24 MiB freed, gets time to wake up.
 *
 * usage: dlclose_host PATH-TO-libbrisk.so; prints OK. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);
static malloc_fn b_malloc;
static free_fn b_free;
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;

static void *user(void *arg) {
  (void)arg;
  void *p = b_malloc(100);
  memset(p, 1, 100);
  b_free(p); /* this thread now has a brisk cache and a key value */
  pthread_mutex_lock(&gate); /* held by main until after dlclose */
  pthread_mutex_unlock(&gate);
  return NULL; /* the key destructor runs here */
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  b_malloc = (malloc_fn)dlsym(lib, "brisk_malloc");
  b_free = (free_fn)dlsym(lib, "brisk_free");
  if (b_malloc == NULL || b_free == NULL) return 1;
  enum { N = 24 };
  void *big[N];
  for (int i = 0; i < N; i++) memset(big[i] = b_malloc(1 << 20), 2, 1 << 20);
  for (int i = 0; i < N; i++) b_free(big[i]); /* enough idle memory to start the purge thread */
  pthread_mutex_lock(&gate);
  pthread_t t;
  if (pthread_create(&t, NULL, user, NULL) != 0) return 1;
  usleep(100 * 1000);
  if (dlclose(lib) != 0) {
    fprintf(stderr, "dlclose: %s\n", dlerror());
    return 1;
  }
  pthread_mutex_unlock(&gate);
  pthread_join(t, NULL);
  sleep(2); /* the purge thread wakes at least once */
  puts("OK");
  return 0;
}
