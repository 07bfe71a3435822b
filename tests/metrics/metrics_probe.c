/* Runs on brisk (libbrisk.so linked in) with BRISK_METRICS=DIR set by the test
 * (tests/metrics/test_metrics.py). It allocates a known amount (6,000 blocks of
 * 2,000 bytes, 4 large blocks of 1 MiB, in two threads), trims, waits until its
 * purge thread has published twice since (it reads its own DIR/brisk.PID), then
 * writes brisk_stats_json to the file named by its argument and prints
 * "READY PID". From there on it stays quiet (no call into brisk at all) until
 * its standard input closes, so the file, the exporter and top must show exactly
 * the numbers of that JSON; then it exits normally, and the file must go.
 *
 *   metrics_probe JSON_OUT     the above
 *   metrics_probe --brief      allocate, wait 300 ms, exit (the file is never made
 *                              when the purge thread is off)
 *   metrics_probe --fork       once published, fork a child that exits at once (the
 *                              parent's file must stay), then one that allocates
 *                              until it publishes its own file (named for its pid),
 *                              and exits (its file must go, the parent's stay);
 *                              prints "FORK OK" */
#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "brisk.h"
#include "brisk_metrics.h"

#define SMALL_BLOCKS 3000 /* per thread */
#define SMALL_SIZE 2000
#define LARGE_BLOCKS 2 /* per thread */
#define LARGE_SIZE (1u << 20)
#define WAIT_MS 20000 /* for the publications: far longer than two ticks */

static void *keep[2][SMALL_BLOCKS + LARGE_BLOCKS];

static void *work(void *arg) {
  void **mine = arg;
  for (int i = 0; i < SMALL_BLOCKS + LARGE_BLOCKS; i++) {
    size_t size = i < SMALL_BLOCKS ? SMALL_SIZE : LARGE_SIZE;
    mine[i] = malloc(size);
    if (mine[i] == NULL) abort();
    memset(mine[i], 7, size);
  }
  return NULL;
}

static void fail(const char *what) {
  fprintf(stderr, "metrics_probe: %s\n", what);
  exit(1);
}

/* The publications counter of this process's own file, or -1 while it is absent. */
static long long publications(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  brisk_metrics_header_t h;
  ssize_t n = pread(fd, &h, sizeof h, 0);
  close(fd);
  return n == (ssize_t)sizeof h ? (long long)__atomic_load_n(&h.publications, __ATOMIC_RELAXED) : -1;
}

static void wait_published(const char *path) {
  for (int waited = 0; publications(path) < 1; waited += 10) {
    if (waited > WAIT_MS) fail("the metrics file was not published within 20 s");
    nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
  }
}

static void metrics_path(char *out, size_t n, const char *dir, int pid) {
  snprintf(out, n, "%s/" BRISK_METRICS_PREFIX "%d", dir, pid);
}

static int fork_checks(const char *dir) {
  char mine[4096], theirs[4096];
  metrics_path(mine, sizeof mine, dir, (int)getpid());
  wait_published(mine);
  pid_t a = fork();
  if (a < 0) fail("fork");
  if (a == 0) exit(0); /* destructors run: the parent's file is not this one's to remove */
  int st;
  if (waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("the first child failed");
  if (publications(mine) < 0) fail("a child's exit removed the parent's file");
  pid_t b = fork();
  if (b < 0) fail("fork");
  if (b == 0) {
    /* Large blocks call the purge tick, which starts this child's purge thread. */
    metrics_path(theirs, sizeof theirs, dir, (int)getpid());
    static void *blocks[64];
    for (int i = 0, waited = 0; publications(theirs) < 1; i = (i + 1) % 64, waited += 20) {
      if (waited > WAIT_MS) fail("the child did not publish within 20 s");
      free(blocks[i]);
      blocks[i] = malloc(LARGE_SIZE);
      if (blocks[i] == NULL) fail("malloc");
      nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
    }
    int fd = open(theirs, O_RDONLY | O_CLOEXEC);
    brisk_metrics_header_t h;
    if (fd < 0 || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || h.pid != getpid()) fail("the child's file is not its own");
    close(fd);
    exit(0);
  }
  if (waitpid(b, &st, 0) != b || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("the second child failed");
  metrics_path(theirs, sizeof theirs, dir, (int)b);
  if (access(theirs, F_OK) == 0) fail("the child's file outlived it");
  if (publications(mine) < 0) fail("the child's exit removed the parent's file");
  puts("FORK OK");
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) fail("usage: metrics_probe JSON_OUT | --brief | --fork");
  const char *dir = getenv("BRISK_METRICS");
  if (dir == NULL) fail("BRISK_METRICS is not set");
  pthread_t t;
  if (pthread_create(&t, NULL, work, keep[1]) != 0) fail("pthread_create");
  work(keep[0]);
  pthread_join(t, NULL);
  if (strcmp(argv[1], "--fork") == 0) return fork_checks(dir);
  if (strcmp(argv[1], "--brief") == 0) {
    nanosleep(&(struct timespec){0, 300 * 1000000L}, NULL);
    return 0;
  }
  char path[4096], json[16384];
  snprintf(path, sizeof path, "%s/" BRISK_METRICS_PREFIX "%d", dir, (int)getpid());
  int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) fail("cannot create the JSON file");
  brisk_trim(); /* the page heap settles: nothing is left for the decay to move */
  /* From here on nothing that allocates: plain system calls only. */
  long long first = -1, now;
  for (int waited = 0; (now = publications(path)) < 0 || first < 0 || now < first + 2; waited += 10) {
    if (first < 0 && now >= 0) first = now;
    if (waited > WAIT_MS) fail("the metrics file was not published twice within 20 s");
    nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
  }
  size_t len = brisk_stats_json(json, sizeof json);
  if (len >= sizeof json) fail("the JSON does not fit");
  if (write(out, json, len) != (ssize_t)len || close(out) != 0) fail("cannot write the JSON file");
  char line[64];
  int n = snprintf(line, sizeof line, "READY %d\n", (int)getpid());
  if (write(1, line, (size_t)n) != n) fail("cannot write to stdout");
  char buf[256];
  while (read(0, buf, sizeof buf) > 0) {
  }
  return 0;
}
