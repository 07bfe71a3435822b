/* brisk top: the processes publishing in BRISK_METRICS=DIR, one line each,
 * redrawn every few seconds (an ANSI clear on a terminal, a blank line between
 * screens otherwise), until Ctrl-C or -n screens. Needs no curses. Growth is the
 * change of in_use since the screen before; the lock columns count over the same
 * interval (since start on the first screen).
 *
 *   brisk top [--dir DIR] [-d SECONDS] [-n SCREENS | --once] */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"

static const char top_usage[] = "usage: brisk top [--dir DIR] [-d SECONDS] [-n SCREENS | --once]\n";

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

/* "12.3M": one decimal from K up, so that a column stays 7 wide. */
static const char *human(char *buf, size_t n, double v) {
  static const char units[] = "BKMGTP";
  const char *sign = v < 0 ? "-" : "";
  if (v < 0) v = -v;
  unsigned u = 0;
  while (v >= 1024 && u < 5) v /= 1024, u++;
  if (u == 0) snprintf(buf, n, "%s%.0fB", sign, v);
  else snprintf(buf, n, "%s%.1f%c", sign, v, units[u]);
  return buf;
}

/* What the screen before showed of a process, for the growth and lock columns. */
typedef struct prev_s {
  int pid;
  uint64_t start_ticks, in_use, acquired, contended;
} prev_t;

static const prev_t *find_prev(const prev_t *p, size_t n, const metrics_snap_t *s) {
  for (size_t i = 0; i < n; i++)
    if (p[i].pid == s->hdr.pid && p[i].start_ticks == s->hdr.start_ticks) return &p[i];
  return NULL;
}

static void draw(const char *dir, double delay, const metrics_set_t *set, const prev_t *prev, size_t nprev) {
  char a[8][24];
  time_t now = time(NULL);
  char when[32];
  strftime(when, sizeof when, "%H:%M:%S", localtime(&now));
  printf("brisk top - %s - %zu process%s in %s, every %gs\n", when, set->n, set->n == 1 ? "" : "es", dir, delay);
  printf("%7s %-15s %7s %7s %7s %7s %7s %7s %7s %4s %9s %6s %8s\n", "PID", "PROGRAM", "RSS", "BRISK", "OTHER",
         "IN USE", "CACHED", "FREE", "RETURN", "THR", "LOCKS", "WAIT%", "GROWTH");
  for (size_t i = 0; i < set->n; i++) {
    const metrics_snap_t *s = &set->snaps[i];
    uint64_t rss = metrics_value(s, "rss", -1), mapped = metrics_value(s, "mapped", -1);
    uint64_t in_use = metrics_value(s, "in_use", -1), returned = metrics_value(s, "returned", -1);
    uint64_t cached = metrics_value(s, "tcache", -1) + metrics_value(s, "central", -1);
    uint64_t acquired = metrics_value(s, "lock_acquired", -1), contended = metrics_value(s, "lock_contended", -1);
    const prev_t *p = find_prev(prev, nprev, s);
    uint64_t da = p ? acquired - p->acquired : acquired, dc = p ? contended - p->contended : contended;
    /* brisk's own resident memory as the library measures it (mincore, once a
     * second); from a library without that row, what may be resident. */
    uint64_t resident = metrics_value(s, "resident", -1);
    double backed = resident ? (double)resident : (double)mapped - (double)returned;
    char growth[24] = "-";
    if (p) human(growth, sizeof growth, (double)in_use - (double)p->in_use);
    if (p && in_use > p->in_use) memmove(growth + 1, growth, strlen(growth) + 1), growth[0] = '+';
    printf("%7d %-15.15s %7s %7s %7s %7s %7s %7s %7s %4llu %9llu %5.1f%% %8s\n", (int)s->hdr.pid, s->hdr.program,
           human(a[0], 24, (double)rss), human(a[1], 24, backed), human(a[2], 24, (double)rss - backed),
           human(a[3], 24, (double)in_use), human(a[4], 24, (double)cached),
           human(a[5], 24, (double)metrics_value(s, "heap_free", -1)), human(a[6], 24, (double)returned),
           (unsigned long long)metrics_value(s, "threads", -1), (unsigned long long)da,
           da ? 100.0 * (double)dc / (double)da : 0.0, growth);
    /* A line per node, where there is more than one. */
    int nodes = 0;
    for (uint32_t r = 0; r < s->hdr.rows; r++) nodes += strcmp(s->rows[r].name, "node_mapped") == 0;
    for (uint32_t r = 0; nodes > 1 && r < s->hdr.rows; r++) {
      if (strcmp(s->rows[r].name, "node_mapped") != 0) continue;
      int node = s->rows[r].node;
      printf("%7s node %-10d mapped %s, in use %s, free %s, %llu remote frees\n", "", node,
             human(a[0], 24, (double)s->rows[r].value), human(a[1], 24, (double)metrics_value(s, "node_in_use", node)),
             human(a[2], 24, (double)metrics_value(s, "node_free", node)),
             (unsigned long long)metrics_value(s, "node_remote_frees", node));
    }
  }
  fflush(stdout);
}

int top_main(int argc, char **argv) {
  const char *dir_opt = NULL;
  double delay = 2;
  long screens = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end;
    if (strcmp(a, "--once") == 0) screens = 1;
    else if (strcmp(a, "--dir") == 0 && v) dir_opt = v, i++;
    else if (strcmp(a, "-d") == 0 && v) {
      delay = strtod(v, &end);
      if (*end || !(delay >= 0.05 && delay <= 86400)) {
        fprintf(stderr, "brisk: top: -d wants seconds (0.05 to 86400), got '%s'\n", v);
        return 2;
      }
      i++;
    } else if (strcmp(a, "-n") == 0 && v) {
      screens = strtol(v, &end, 10);
      if (*end || screens < 1) {
        fprintf(stderr, "brisk: top: -n wants a count of screens, got '%s'\n", v);
        return 2;
      }
      i++;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(top_usage, stdout);
      return 0;
    } else {
      fprintf(stderr, "brisk: top: unknown or incomplete option '%s'\n%s", a, top_usage);
      return 2;
    }
  }
  const char *dir = metrics_dir(dir_opt);
  if (dir == NULL) {
    fprintf(stderr, "brisk: top: no directory: give --dir DIR or set BRISK_METRICS\n");
    return 2;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  bool tty = isatty(1);
  prev_t *prev = NULL;
  size_t nprev = 0;
  int status = 0;
  for (long screen = 0; !stop && (screens < 0 || screen < screens); screen++) {
    if (screen > 0) {
      struct timespec ts = {(time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9)};
      while (!stop && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      }
      if (stop) break;
    }
    metrics_set_t set;
    int err = metrics_scan(dir, &set);
    if (err) {
      fprintf(stderr, "brisk: top: cannot read %s: %s\n", dir, strerror(err));
      status = 1;
      break;
    }
    if (tty) fputs("\033[H\033[2J", stdout);
    else if (screen > 0) putchar('\n');
    draw(dir, delay, &set, prev, nprev);
    free(prev);
    prev = calloc(set.n ? set.n : 1, sizeof *prev);
    nprev = prev ? set.n : 0;
    for (size_t i = 0; i < nprev; i++) {
      const metrics_snap_t *s = &set.snaps[i];
      prev[i] = (prev_t){s->hdr.pid, s->hdr.start_ticks, metrics_value(s, "in_use", -1),
                         metrics_value(s, "lock_acquired", -1), metrics_value(s, "lock_contended", -1)};
    }
    metrics_set_free(&set);
  }
  free(prev);
  metrics_forget_self();
  return status;
}
