/* Reading the live-metrics files of BRISK_METRICS=DIR (layout and locking in
 * include/brisk_metrics.h): each DIR/brisk.PID is mapped read-only and copied
 * under its sequence lock. A file whose process is gone (kill(pid, 0) says
 * ESRCH), or whose pid now names another process (a start time in /proc/PID/stat
 * that is not the file's), is removed; so is a temporary file such a process left
 * half made. A file of a process that lives but has not published for
 * STALE_AFTER_MS (it exec'd a program without brisk, or is stopped) is left out
 * but kept. Single-threaded, like the launcher. */
#define _GNU_SOURCE
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Ten times the longest a live process's purge thread takes between ticks. */
#define STALE_AFTER_MS 30000
/* A writer holds the lock for microseconds: this many tries (1 ms apart) mean it
 * died inside (and the process is checked again next time). */
#define SEQ_TRIES 200

const char *metrics_dir(const char *opt) {
  if (opt != NULL && opt[0]) return opt;
  const char *env = getenv("BRISK_METRICS");
  return env != NULL && env[0] ? env : NULL;
}

/* Field 22 of /proc/PID/stat; 0 if it cannot be read (another pid namespace). */
static uint64_t start_ticks(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "re");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *s = strrchr(buf, ')');
  if (s == NULL) return 0;
  unsigned field = 2;
  for (s++; *s && field < 22; s++)
    if (*s == ' ') field++;
  return strtoull(s, NULL, 10);
}

typedef enum { PROC_LIVE, PROC_GONE } proc_state_t;

static proc_state_t process_state(int pid, uint64_t ticks) {
  if (pid <= 0) return PROC_GONE;
  if (kill(pid, 0) != 0 && errno == ESRCH) return PROC_GONE;
  uint64_t now = start_ticks(pid);
  return now != 0 && ticks != 0 && now != ticks ? PROC_GONE : PROC_LIVE;
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The header and rows of a mapped file, consistent; false if the writer stayed
 * inside its lock through every try. */
static bool copy_locked(const char *map, size_t size, metrics_snap_t *out) {
  const brisk_metrics_header_t *h = (const brisk_metrics_header_t *)map;
  const _Atomic uint64_t *seq = (const _Atomic uint64_t *)&h->seq;
  for (int tries = 0; tries < SEQ_TRIES; tries++) {
    uint64_t s1 = atomic_load_explicit(seq, memory_order_acquire);
    if (s1 & 1) {
      nanosleep(&(struct timespec){0, 1000000}, NULL);
      continue;
    }
    memcpy(&out->hdr, map, sizeof out->hdr);
    uint32_t rows = out->hdr.rows <= out->hdr.capacity ? out->hdr.rows : 0;
    size_t bytes = (size_t)rows * BRISK_METRICS_ROW_SIZE;
    if (BRISK_METRICS_HEADER_SIZE + bytes > size) return false;
    brisk_metric_row_t *r = realloc(out->rows, bytes ? bytes : 1);
    if (r == NULL) return false;
    out->rows = r;
    memcpy(r, map + BRISK_METRICS_HEADER_SIZE, bytes);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(seq, memory_order_relaxed) != s1) continue;
    out->hdr.rows = rows;
    for (uint32_t i = 0; i < rows; i++) { /* the strings end inside their fields */
      r[i].name[sizeof r[i].name - 1] = 0;
      r[i].unit[sizeof r[i].unit - 1] = 0;
      r[i].help[sizeof r[i].help - 1] = 0;
    }
    out->hdr.program[sizeof out->hdr.program - 1] = 0;
    return true;
  }
  return false;
}

typedef enum { READ_OK, READ_SKIP, READ_REMOVE } read_result_t;

static read_result_t read_file(const char *path, int name_pid, metrics_snap_t *out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return READ_SKIP;
  struct stat st;
  brisk_metrics_header_t h;
  if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
      memcmp(h.magic, BRISK_METRICS_MAGIC, sizeof h.magic) != 0 || h.version != BRISK_METRICS_VERSION ||
      h.header_size != BRISK_METRICS_HEADER_SIZE || h.row_size != BRISK_METRICS_ROW_SIZE ||
      (uint64_t)h.header_size + (uint64_t)h.capacity * h.row_size > (uint64_t)st.st_size) {
    close(fd);
    /* Not a file this reader knows; removed only if its process is gone. */
    return process_state(name_pid, 0) == PROC_GONE ? READ_REMOVE : READ_SKIP;
  }
  if (h.pid != name_pid || process_state(h.pid, h.start_ticks) == PROC_GONE) {
    close(fd);
    return READ_REMOVE;
  }
  size_t size = (size_t)st.st_size;
  void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return READ_SKIP;
  bool ok = copy_locked(map, size, out);
  munmap(map, size);
  if (!ok) return READ_SKIP;
  uint64_t now = wall_ms();
  if (now > out->hdr.updated_unix_ms && now - out->hdr.updated_unix_ms > STALE_AFTER_MS) return READ_SKIP;
  return READ_OK;
}

/* "brisk.123" -> 123, ".brisk.123.tmp" -> 123 (tmp set); 0 for other names. */
static int file_pid(const char *name, bool *tmp) {
  *tmp = name[0] == '.';
  if (*tmp) name++;
  size_t plen = strlen(BRISK_METRICS_PREFIX);
  if (strncmp(name, BRISK_METRICS_PREFIX, plen) != 0) return 0;
  char *end;
  long pid = strtol(name + plen, &end, 10);
  if (end == name + plen || pid <= 0 || pid > 0x7fffffff) return 0;
  if (*tmp ? strcmp(end, ".tmp") != 0 : *end != 0) return 0;
  return (int)pid;
}

static int by_pid(const void *a, const void *b) {
  int x = ((const metrics_snap_t *)a)->hdr.pid, y = ((const metrics_snap_t *)b)->hdr.pid;
  return (x > y) - (x < y);
}

int metrics_scan(const char *dir, metrics_set_t *out) {
  out->snaps = NULL;
  out->n = 0;
  DIR *d = opendir(dir);
  if (d == NULL) return errno;
  size_t cap = 0;
  metrics_snap_t cur = {0};
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    bool tmp;
    int pid = file_pid(e->d_name, &tmp);
    if (pid == 0) continue;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
    if (tmp) { /* being made, or left by a process that died making it */
      if (process_state(pid, 0) == PROC_GONE) unlink(path);
      continue;
    }
    if (pid == getpid()) continue; /* the launcher's own brisk */
    read_result_t r = read_file(path, pid, &cur);
    if (r == READ_REMOVE) unlink(path);
    if (r != READ_OK) continue;
    if (out->n == cap) {
      cap = cap ? 2 * cap : 16;
      metrics_snap_t *v = realloc(out->snaps, cap * sizeof *v);
      if (v == NULL) break;
      out->snaps = v;
    }
    out->snaps[out->n++] = cur;
    cur = (metrics_snap_t){0};
  }
  free(cur.rows);
  closedir(d);
  if (out->n > 1) qsort(out->snaps, out->n, sizeof *out->snaps, by_pid);
  return 0;
}

void metrics_set_free(metrics_set_t *set) {
  for (size_t i = 0; i < set->n; i++) free(set->snaps[i].rows);
  free(set->snaps);
  set->snaps = NULL;
  set->n = 0;
}

uint64_t metrics_value(const metrics_snap_t *s, const char *name, int node) {
  for (uint32_t i = 0; i < s->hdr.rows; i++)
    if (s->rows[i].node == node && strcmp(s->rows[i].name, name) == 0) return s->rows[i].value;
  return 0;
}

void metrics_forget_self(void) {
  const char *dir = getenv("BRISK_METRICS");
  if (dir == NULL || dir[0] == 0) return;
  char path[4096];
  if (snprintf(path, sizeof path, "%s/" BRISK_METRICS_PREFIX "%d", dir, (int)getpid()) < (int)sizeof path) unlink(path);
}
