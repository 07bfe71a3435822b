/* Live metrics (BRISK_METRICS=DIR): the process's statistics in a small shared
 * file, DIR/brisk.PID (layout in include/brisk_metrics.h), for `brisk top` and
 * `brisk exporter`. The purge thread is the only writer: it makes the file at its
 * first tick and rewrites the rows at every tick (100 ms) under the header's
 * sequence lock; the exit destructor removes it. No socket, no thread of its own,
 * and nothing on the allocation paths: with BRISK_METRICS unset the purge thread
 * reads one byte of the options per tick.
 *
 * The rows are the two tables below: one line each, the value read from the
 * statistics (brisk_get_stats, brisk_get_node_stats) by its offset, so a row is
 * added by adding its line. Nothing here calls malloc (it runs inside the
 * allocator): the rows are written straight into the mapping. A forked child
 * inherits the parent's mapping; it never writes there, and publishes its own
 * file once its own purge thread runs. */
#include "metrics.h"
#include "stats.h"
#include "options.h"
#include "os.h"

#include "brisk_metrics.h"

/* The process's figures, the statistics and what only this file reads. */
typedef struct proc_values_s {
  brisk_stats_t st;
  uint64_t rss;         /* resident bytes of the whole process, /proc/self/statm */
  brisk_resident_t res; /* brisk's own resident bytes by layer, measured every RESIDENT_TICKS */
} proc_values_t;

/* Ticks between two measurements of the resident figures: a measurement costs
 * time in proportion to the heap (some 8 ms for 1 GiB), too much for every
 * tick; once a second keeps the purge thread's share under 1 % of a CPU. */
#define RESIDENT_TICKS 10u

typedef struct metric_def_s {
  const char *name, *unit, *help;
  uint16_t kind;
  size_t offset; /* of a uint64_t in proc_values_t or brisk_node_stats_t */
} metric_def_t;

#define GAUGE BRISK_METRIC_GAUGE
#define COUNTER BRISK_METRIC_COUNTER
#define PROC_ROW(name, unit, kind, field, help) {name, unit, help, kind, offsetof(proc_values_t, field)}
static const metric_def_t proc_rows[] = {
  PROC_ROW("rss", "bytes", GAUGE, rss, "resident memory of the whole process (/proc/PID/statm)"),
  PROC_ROW("mapped", "bytes", GAUGE, st.mapped, "address space brisk holds from the OS, metadata included"),
  PROC_ROW("peak_mapped", "bytes", GAUGE, st.peak_mapped, "high-water mark of mapped"),
  PROC_ROW("in_use", "bytes", GAUGE, st.in_use, "bytes in blocks handed to the program"),
  PROC_ROW("tcache", "bytes", GAUGE, st.tcache, "bytes free in thread caches"),
  PROC_ROW("central", "bytes", GAUGE, st.central, "bytes free in the size classes' spans"),
  PROC_ROW("heap_free", "bytes", GAUGE, st.heap_free, "free page-heap pages still backed by memory"),
  PROC_ROW("returned", "bytes", GAUGE, st.returned, "free page-heap pages given back to the OS"),
  PROC_ROW("large_in_use", "bytes", GAUGE, st.large_in_use, "bytes in large blocks in use (part of in_use)"),
  PROC_ROW("large_blocks", "", GAUGE, st.large_blocks, "large blocks in use"),
  PROC_ROW("metadata", "bytes", GAUGE, st.metadata, "bytes of span and page-map metadata"),
  PROC_ROW("sbrk", "bytes", GAUGE, st.sbrk_bytes, "part of mapped that came from sbrk"),
  PROC_ROW("threads", "", GAUGE, st.threads, "threads that have a cache now"),
  PROC_ROW("threads_seen", "", COUNTER, st.threads_seen, "thread caches created since start"),
  PROC_ROW("lock_acquired", "", COUNTER, st.lock_acquired, "brisk locks taken by the program's threads"),
  PROC_ROW("lock_contended", "", COUNTER, st.lock_contended, "of those, the ones that waited"),
  PROC_ROW("resident", "bytes", GAUGE, res.total, "resident bytes of brisk's own mappings (mincore, once a second)"),
  PROC_ROW("resident_in_use", "bytes", GAUGE, res.in_use, "resident bytes of small blocks in use"),
  PROC_ROW("resident_tcache", "bytes", GAUGE, res.tcache, "resident bytes of thread caches and spare large blocks"),
  PROC_ROW("resident_central", "bytes", GAUGE, res.central, "resident bytes of free small blocks and unused span ends"),
  PROC_ROW("resident_heap_free", "bytes", GAUGE, res.heap_free, "resident bytes of free page-heap runs"),
  PROC_ROW("resident_large", "bytes", GAUGE, res.large, "resident bytes of large blocks in use"),
  PROC_ROW("resident_guarded", "bytes", GAUGE, res.guarded, "resident bytes of the guarded blocks' pool"),
  PROC_ROW("resident_metadata", "bytes", GAUGE, res.metadata, "resident bytes of brisk's metadata"),
};
#define NODE_ROW(name, unit, kind, field, help) {name, unit, help, kind, offsetof(brisk_node_stats_t, field)}
static const metric_def_t node_rows[] = {
  NODE_ROW("node_mapped", "bytes", GAUGE, mapped, "bytes mapped for this NUMA node"),
  NODE_ROW("node_in_use", "bytes", GAUGE, in_use, "bytes of this node in use or in thread caches"),
  NODE_ROW("node_free", "bytes", GAUGE, free, "bytes of this node free in its pools, still backed"),
  NODE_ROW("node_remote_frees", "", COUNTER, remote_frees, "blocks freed on another node and sent home here"),
};
#undef PROC_ROW
#undef NODE_ROW
#define PROC_ROWS (sizeof proc_rows / sizeof proc_rows[0])
#define NODE_ROWS (sizeof node_rows / sizeof node_rows[0])
#define METRICS_CAPACITY (PROC_ROWS + NODE_ROWS * BRISK_MAX_NODES)

typedef enum { METRICS_NONE = 0, METRICS_LIVE, METRICS_FAILED, METRICS_CLOSED } metrics_state_t;

/* Written by the purge thread (and by the exit destructor, which closes). */
static atomic_int state; /* a metrics_state_t */
static brisk_metrics_header_t *hdr;
static size_t map_size;
static int owner_pid; /* the process whose file hdr is: a forked child's differs */
static char path[BRISK_PATH_OPT_MAX + 32];

bool brisk__metrics_wanted(void) { return brisk__opt.metrics[0] != 0 && brisk__opt.purge_thread; }

static void put_str(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  memset(dst + n, 0, cap - n);
}

static void put_row(brisk_metric_row_t *r, const metric_def_t *d, int node, uint64_t value) {
  put_str(r->name, sizeof r->name, d->name);
  put_str(r->unit, sizeof r->unit, d->unit);
  put_str(r->help, sizeof r->help, d->help);
  r->kind = d->kind;
  r->reserved = 0;
  r->node = node;
  r->value = value;
}

static uint64_t field(const void *base, size_t offset) {
  uint64_t v;
  memcpy(&v, (const char *)base + offset, sizeof v);
  return v;
}

/* /proc/self/statm: "size resident ..." in pages. */
static uint64_t read_rss(void) {
  char buf[128];
  if (brisk__os_read_file("/proc/self/statm", buf, sizeof buf) <= 0) return 0;
  const char *s = buf;
  while (*s && *s != ' ') s++;
  uint64_t pages = 0;
  for (s++; *s >= '0' && *s <= '9'; s++) pages = pages * 10 + (uint64_t)(*s - '0');
  return pages * brisk__os_page;
}

/* Field 22 of /proc/self/stat, the start time in clock ticks since boot: with the
 * pid it names this process, and no later one that gets the same pid. The
 * fields are counted from the last ')', since the program's name may hold any. */
static uint64_t read_start_ticks(void) {
  char buf[1024];
  if (brisk__os_read_file("/proc/self/stat", buf, sizeof buf) <= 0) return 0;
  const char *s = NULL;
  for (const char *p = buf; *p; p++)
    if (*p == ')') s = p;
  if (s == NULL) return 0;
  unsigned fieldno = 2; /* the ')' ends field 2 */
  for (s++; *s && fieldno < 22; s++)
    if (*s == ' ') fieldno++;
  uint64_t v = 0;
  for (; *s >= '0' && *s <= '9'; s++) v = v * 10 + (uint64_t)(*s - '0');
  return v;
}

static void read_program(char *out, size_t cap) {
  char buf[64];
  long n = brisk__os_read_file("/proc/self/comm", buf, sizeof buf);
  if (n <= 0) {
    put_str(out, cap, "?");
    return;
  }
  if (buf[n - 1] == '\n') buf[n - 1] = 0;
  put_str(out, cap, buf);
}

/* One publication: the rows, then the header's counts, between the two
 * increments of seq. The statistics are read first, outside the lock, so that a
 * reader waits only for the copy. */
static void publish_rows(void) {
  static brisk_resident_t res; /* the last measurement: only the purge thread publishes */
  static unsigned ticks;
  proc_values_t v;
  brisk_node_stats_t nodes[BRISK_MAX_NODES];
  brisk_lock_counts_t mine = brisk__lock_counts; /* a report's locks are not the program's */
  if (ticks++ % RESIDENT_TICKS == 0) brisk__stats_resident(&res);
  v.res = res;
  brisk_get_stats(&v.st);
  size_t nnodes = brisk_get_node_stats(nodes, BRISK_MAX_NODES);
  brisk__lock_counts = mine;
  if (nnodes > BRISK_MAX_NODES) nnodes = BRISK_MAX_NODES;
  v.rss = read_rss();

  _Atomic uint64_t *seq = (_Atomic uint64_t *)&hdr->seq;
  uint64_t s = atomic_load_explicit(seq, memory_order_relaxed);
  atomic_store_explicit(seq, s + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release); /* odd before any row changes */
  brisk_metric_row_t *rows = (brisk_metric_row_t *)((char *)hdr + BRISK_METRICS_HEADER_SIZE);
  uint32_t n = 0;
  for (size_t i = 0; i < PROC_ROWS; i++) put_row(&rows[n++], &proc_rows[i], -1, field(&v, proc_rows[i].offset));
  for (size_t k = 0; k < nnodes; k++)
    for (size_t i = 0; i < NODE_ROWS; i++)
      put_row(&rows[n++], &node_rows[i], nodes[k].os_node, field(&nodes[k], node_rows[i].offset));
  hdr->rows = n;
  hdr->updated_unix_ms = brisk__os_wall_ms();
  hdr->publications++;
  atomic_store_explicit(seq, s + 2, memory_order_release); /* even after all of it */
}

/* The file is made under a hidden temporary name and renamed into place once it
 * holds a first publication, so that readers never see it half made. */
static bool metrics_open(void) {
  int pid = brisk__os_pid();
  char tmp[sizeof path];
  size_t dir = strlen(brisk__opt.metrics);
  if (dir + 32 > sizeof path) return false;
  brisk__snprintf(path, sizeof path, "%s/" BRISK_METRICS_PREFIX "%d", brisk__opt.metrics, pid);
  brisk__snprintf(tmp, sizeof tmp, "%s/.brisk.%d.tmp", brisk__opt.metrics, pid);
  size_t size = brisk__align_up(BRISK_METRICS_HEADER_SIZE + METRICS_CAPACITY * BRISK_METRICS_ROW_SIZE, brisk__os_page);
  int fd = brisk__os_create_rw(tmp);
  if (fd < 0) return false;
  void *m = brisk__os_truncate(fd, size) ? brisk__os_map_shared(fd, size) : NULL;
  brisk__os_close(fd);
  if (m == NULL) {
    brisk__os_remove_file(tmp);
    return false;
  }
  hdr = m;
  map_size = size;
  owner_pid = pid;
  memcpy(hdr->magic, BRISK_METRICS_MAGIC, sizeof hdr->magic);
  hdr->version = BRISK_METRICS_VERSION;
  hdr->header_size = BRISK_METRICS_HEADER_SIZE;
  hdr->row_size = BRISK_METRICS_ROW_SIZE;
  hdr->capacity = (uint32_t)METRICS_CAPACITY;
  hdr->pid = pid;
  hdr->start_ticks = read_start_ticks();
  hdr->start_unix_ms = brisk__os_wall_ms();
  read_program(hdr->program, sizeof hdr->program);
  publish_rows();
  if (!brisk__os_rename(tmp, path)) {
    brisk__os_remove_file(tmp);
    brisk__os_munmap(hdr, map_size);
    hdr = NULL;
    return false;
  }
  return true;
}

/* The purge thread, at each tick. */
void brisk__metrics_publish(void) {
  if (brisk_likely(brisk__opt.metrics[0] == 0)) return;
  int st = atomic_load_explicit(&state, memory_order_acquire);
  if (st == METRICS_LIVE && owner_pid != brisk__os_pid()) {
    /* A forked child: the mapping is the parent's file; this process makes its own. */
    brisk__os_munmap(hdr, map_size);
    hdr = NULL;
    st = METRICS_NONE;
    atomic_store(&state, METRICS_NONE);
  }
  if (st == METRICS_NONE) {
    bool ok = metrics_open();
    if (!ok)
      brisk__printf_err("brisk: warning: BRISK_METRICS: cannot make '%s/" BRISK_METRICS_PREFIX "%d'; no live metrics\n",
                        brisk__opt.metrics, brisk__os_pid());
    int expected = METRICS_NONE; /* the exit destructor may have closed meanwhile */
    if (!atomic_compare_exchange_strong(&state, &expected, ok ? METRICS_LIVE : METRICS_FAILED) && ok)
      brisk__os_remove_file(path);
    return;
  }
  if (st == METRICS_LIVE) publish_rows();
}

/* At exit: the file goes, if it is this process's (a forked child's inherited
 * mapping names its parent's). A publication still in flight writes into the
 * removed file's pages, which no reader finds any more. */
void brisk__metrics_at_exit(void) {
  if (brisk__opt.metrics[0] == 0) return;
  int st = atomic_exchange(&state, METRICS_CLOSED);
  if (st == METRICS_LIVE && owner_pid == brisk__os_pid()) brisk__os_remove_file(path);
}
