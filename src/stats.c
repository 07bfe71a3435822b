/* Statistics: merged on demand from the layers' own counters (small spans per class,
 * page heap, large blocks, thread-cache registry); nothing is counted on the fast
 * paths. Thread-cache lengths are read without stopping their threads, so a
 * report taken while threads run is a close estimate, exact when they are quiet.
 * Two reports, text and JSON (schema in docs/stats-schema.md), both written
 * without malloc: formatted into stack buffers, then into the caller's buffer or
 * out to a file descriptor through os.c. */
#include "stats.h"
#include "guard.h"
#include "thread_cache.h"
#include "small.h"
#include "large.h"
#include "page_heap.h"
#include "numa.h"
#include "boot.h"
#include "size_class.h"
#include "meta.h"
#include "pagemap.h"
#include "options.h"
#include "os.h"
#include "counters.h"
#include "init.h" /* upward: brisk__ensure_init, brisk__init_state */

typedef struct class_row_s {
  uint64_t out, free, spans, tc;
} class_row_t;

/* A sum of the large blocks' records (counters.h), read while threads change
 * them: a block freed by one thread after another took it may be seen freed
 * and not yet taken, and a negative sum reads as 0. */
static inline uint64_t large_figure(uint64_t sum) { return sum > INT64_MAX ? 0 : sum; }

/* guarded (NULL: not wanted): the live guarded blocks' bytes and number. */
static void collect(brisk_stats_t *st, class_row_t rows[BRISK_CLASSES], uint64_t guarded[2]) {
  memset(st, 0, sizeof *st);
  brisk_lock_counts_t mine = brisk__lock_counts; /* before the report takes any lock */
  uint64_t tc_objs[BRISK_CLASSES] = {0};
  uint64_t tc_bytes;
  brisk__tcache_registry_stats(&tc_bytes, tc_objs, &st->threads, &st->threads_seen);
  brisk__tcache_lock_stats(&st->lock_acquired, &st->lock_contended, &mine);
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    uint64_t out, fr, spans;
    brisk__small_class_stats(cls, &out, &fr, &spans);
    uint64_t size = brisk__classes[cls].size;
    uint64_t tc = tc_objs[cls] < out ? tc_objs[cls] : out;
    st->in_use += (out - tc) * size;
    st->central += fr * size;
    st->tcache += tc * size; /* as clamped, so that the classes add up to it */
    if (rows) rows[cls] = (class_row_t){out - tc, fr, spans, tc};
  }
  brisk__heap_stats(&st->heap_free, &st->returned, &st->sbrk_bytes);
  brisk_large_counts_t large;
  brisk__tcache_large_counts(&large);
  st->large_in_use = large_figure(large.bytes);
  st->large_blocks = large_figure(large.count);
  st->large_cached = 0; /* freed large blocks are free runs of the page heap */
  st->in_use += st->large_in_use;
  uint64_t g[2];
  brisk__guard_stats(&g[0], &g[1]); /* small blocks all the same, outside the classes */
  st->in_use += g[0];
  if (guarded) guarded[0] = g[0], guarded[1] = g[1];
  st->metadata = atomic_load_explicit(&brisk__counters.meta, memory_order_relaxed);
  st->mapped = atomic_load_explicit(&brisk__counters.mapped, memory_order_relaxed) + st->metadata;
  st->peak_mapped = atomic_load_explicit(&brisk__counters.peak_mapped, memory_order_relaxed) + st->metadata;
}

/* The locks a report takes are not the program's allocation work: they are left
 * out (the calling thread's counts are put back), so two reports of a quiet
 * process agree. */
void brisk_get_stats(brisk_stats_t *out) {
  brisk__ensure_init();
  brisk_lock_counts_t mine = brisk__lock_counts;
  collect(out, NULL, NULL);
  brisk__lock_counts = mine;
}

size_t brisk_get_node_stats(brisk_node_stats_t *out, size_t max) {
  brisk__ensure_init();
  unsigned nodes = brisk__numa_count();
  brisk_large_counts_t large;
  brisk__tcache_large_counts(&large);
  for (unsigned slot = 0; slot < nodes && slot < max; slot++) {
    uint64_t heap_mapped, heap_free, out_bytes, free_bytes;
    brisk__heap_node_stats(slot, &heap_mapped, &heap_free);
    brisk__small_node_stats(slot, &out_bytes, &free_bytes);
    uint64_t large_in_use = large_figure(large.node[slot]), large_alone = brisk__large_node_alone(slot);
    out[slot] = (brisk_node_stats_t){
        .os_node = brisk__numa_slot_os_node(slot),
        .cpus = brisk__numa_slot_cpus(slot),
        .mapped = heap_mapped + large_alone,
        .in_use = out_bytes + large_in_use,
        .free = free_bytes + heap_free,
        .remote_frees = brisk__numa_remote(slot),
    };
  }
  return nodes;
}

/* ------------------------------------------------------------------------------
   Residency: what of brisk's mappings is in RAM, by layer. Measured, not
   counted: brisk knows what it mapped, but a page counts only once touched and
   stops counting when madvise gives it back, and no counter on a fast path
   could follow that. So each call asks the kernel (mincore, os.c) about every
   mapping the layers list, and gives each resident byte to the layer that owns
   it: a heap byte to its span's state (the page heap's walk, under its lock),
   the others to their mapping's kind. The one estimate is inside a size class's
   span: its resident bytes below the bump pointer are split between the blocks
   out of the span and those free in it in proportion to their numbers (a free
   list is in no address order, so which pages hold which blocks is unknown),
   and the class's bytes out between the program and the thread caches in
   proportion to the class's blocks in each; the bytes at and above the bump
   pointer are free in the span. The parts are integers that add up to the
   total exactly. Static data (the page map's root, the slot-0 orphan heap) and
   thread-local caches are the C library's mappings, not brisk's, and are not
   counted. brisk__stats_resident is the one entry: the JSON, the text report
   and brisk_get_resident all come through it.
------------------------------------------------------------------------------ */
typedef struct resident_acc_s {
  brisk_resident_t r;
  uint64_t out[BRISK_CLASSES]; /* resident bytes of blocks out of the spans of each class */
} resident_acc_t;

static void resident_span(void *arg, const brisk_span_t *s, uintptr_t a, size_t len) {
  resident_acc_t *acc = arg;
  uint8_t state = s != NULL ? __atomic_load_n(&s->state, __ATOMIC_RELAXED) : (uint8_t)BRISK_SPAN_FREE;
  switch (state) {
  case BRISK_SPAN_SMALL: {
    /* The owner's fields, read as they are (a span just made may not have
     * its class or bump pointer yet: then it is all free in the span). */
    unsigned cls = __atomic_load_n(&s->cls, __ATOMIC_RELAXED);
    uintptr_t bump = __atomic_load_n(&s->bump, __ATOMIC_RELAXED);
    uint64_t used = __atomic_load_n(&s->used, __ATOMIC_RELAXED);
    uint64_t nfree = __atomic_load_n(&s->nfree, __ATOMIC_RELAXED);
    uint64_t below = bump > a ? (bump - a < len ? bump - a : len) : 0;
    if (cls == 0 || cls >= BRISK_CLASSES) below = 0;
    uint64_t fr = used + nfree ? (uint64_t)((unsigned __int128)below * nfree / (used + nfree)) : below;
    acc->r.central += len - below + fr;
    acc->out[cls < BRISK_CLASSES ? cls : 0] += below - fr;
    break;
  }
  case BRISK_SPAN_LARGE: acc->r.large += len; break;
  case BRISK_SPAN_SPARE: acc->r.tcache += len; break; /* a thread keeps it for its next request */
  default: acc->r.heap_free += len; break;            /* FREE, FREEING, or between owners */
  }
}

static void resident_region(void *arg, uintptr_t start, size_t len, brisk_vma_t kind) {
  resident_acc_t *acc = arg;
  acc->r.mapped += len;
  acc->r.regions++;
  if (kind == BRISK_VMA_HEAP) return; /* measured span by span (brisk__heap_resident) */
  uint64_t bytes = brisk__os_resident(start, len, NULL, NULL);
  if (kind == BRISK_VMA_LARGE) acc->r.large += bytes;
  else if (kind == BRISK_VMA_GUARD) acc->r.guarded += bytes;
  else acc->r.metadata += bytes;
}

/* Every mapping brisk holds, layer by layer (each under its own lock). */
static void each_region(brisk_region_fn fn, void *arg) {
  brisk__heap_regions(fn, arg);
  brisk__large_regions(fn, arg);
  brisk__guard_regions(fn, arg);
  brisk__meta_regions(fn, arg);
  brisk__pagemap_regions(fn, arg);
  brisk__boot_regions(fn, arg);
}

void brisk__stats_resident(brisk_resident_t *out) {
  resident_acc_t acc;
  memset(&acc, 0, sizeof acc);
  each_region(resident_region, &acc);
  brisk__heap_resident(resident_span, &acc);
  acc.r.central += acc.out[0];
  uint64_t tc_objs[BRISK_CLASSES] = {0}, tc_bytes, live, seen;
  brisk__tcache_registry_stats(&tc_bytes, tc_objs, &live, &seen);
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    if (acc.out[cls] == 0) continue;
    uint64_t objs, fr, spans;
    brisk__small_class_stats(cls, &objs, &fr, &spans);
    uint64_t tc = tc_objs[cls] < objs ? tc_objs[cls] : objs;
    uint64_t cached = objs ? (uint64_t)((unsigned __int128)acc.out[cls] * tc / objs) : 0;
    acc.r.tcache += cached;
    acc.r.in_use += acc.out[cls] - cached;
  }
  acc.r.total = acc.r.in_use + acc.r.tcache + acc.r.central + acc.r.heap_free + acc.r.large + acc.r.guarded +
                acc.r.metadata;
  *out = acc.r;
}

size_t brisk_get_resident(brisk_resident_t *out, size_t size) {
  brisk__ensure_init();
  brisk_lock_counts_t mine = brisk__lock_counts; /* as in brisk_get_stats */
  brisk_resident_t r;
  brisk__stats_resident(&r);
  brisk__lock_counts = mine;
  if (out != NULL) memcpy(out, &r, size < sizeof r ? size : sizeof r);
  return sizeof r;
}

typedef struct region_list_s {
  brisk_region_t *out;
  size_t max, n;
} region_list_t;

static void region_put(void *arg, uintptr_t start, size_t len, brisk_vma_t kind) {
  region_list_t *l = arg;
  if (l->n < l->max) l->out[l->n] = (brisk_region_t){start, len, (uint32_t)kind, 0};
  l->n++;
}

size_t brisk_get_regions(brisk_region_t *out, size_t max) {
  brisk__ensure_init();
  brisk_lock_counts_t mine = brisk__lock_counts;
  region_list_t l = {out, out != NULL ? max : 0, 0};
  each_region(region_put, &l);
  brisk__lock_counts = mine;
  return l.n;
}

/* ------------------------------------------------------------------------------
   The report writer: into a buffer (brisk_stats_json, snprintf's contract: the
   length it would need, never more than cap bytes written) or out to a file
   descriptor through a buffer that is flushed whenever it fills.
------------------------------------------------------------------------------ */
typedef struct report_s {
  char *buf;
  size_t cap;   /* bytes of buf */
  size_t pos;   /* bytes of buf in use */
  size_t total; /* bytes the report has produced so far */
  int fd;       /* -1: the report stays in buf */
} report_t;

#define REPORT_PIECE 320 /* the longest piece one rep_printf formats (a text line) */
#define REPORT_STREAM 4096 /* the buffer of a report written to a file descriptor */

static void rep_put(report_t *r, const char *s, size_t n) {
  r->total += n;
  while (n > 0) {
    size_t room = r->fd >= 0 ? r->cap - r->pos : (r->cap > r->pos + 1 ? r->cap - 1 - r->pos : 0);
    size_t k = n < room ? n : room;
    memcpy(r->buf + r->pos, s, k);
    r->pos += k;
    s += k;
    n -= k;
    if (r->fd < 0) return; /* what does not fit is only counted */
    if (r->pos == r->cap) {
      brisk__os_write(r->fd, r->buf, r->pos);
      r->pos = 0;
    }
  }
}

__attribute__((format(printf, 2, 3))) static void rep_printf(report_t *r, const char *fmt, ...) {
  char piece[REPORT_PIECE];
  va_list ap;
  va_start(ap, fmt);
  int n = brisk__vsnprintf(piece, sizeof piece, fmt, ap);
  va_end(ap);
  rep_put(r, piece, (size_t)n < sizeof piece ? (size_t)n : sizeof piece - 1);
}

static void rep_finish(report_t *r) {
  if (r->fd >= 0) {
    if (r->pos) brisk__os_write(r->fd, r->buf, r->pos);
    r->pos = 0;
  } else if (r->cap > 0) {
    r->buf[r->pos] = 0;
  }
}

/* Everything both reports show, taken at one moment. */
typedef struct snapshot_s {
  brisk_stats_t st;
  class_row_t rows[BRISK_CLASSES];
  brisk_node_stats_t nodes[BRISK_MAX_NODES];
  size_t nnodes;
  uint64_t guarded[2]; /* the live guarded blocks: bytes, number */
  brisk_resident_t res;
} snapshot_t;

static void snapshot(snapshot_t *s) {
  brisk__ensure_init();
  brisk_lock_counts_t mine = brisk__lock_counts; /* as in brisk_get_stats */
  collect(&s->st, s->rows, s->guarded);
  s->nnodes = brisk_get_node_stats(s->nodes, BRISK_MAX_NODES);
  if (s->nnodes > BRISK_MAX_NODES) s->nnodes = BRISK_MAX_NODES;
  brisk__stats_resident(&s->res);
  brisk__lock_counts = mine;
}

static bool row_used(const class_row_t *r) { return r->spans || r->out || r->tc || r->free; }

/* ------------------------------------------------------------------------------
   Text
------------------------------------------------------------------------------ */

/* "12.3 MiB": a human size into buf. */
static const char *human(char *buf, size_t n, uint64_t v) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  unsigned u = 0;
  uint64_t whole = v, tenth = 0;
  while (whole >= 1024 && u < 4) {
    tenth = (whole % 1024) * 10 / 1024;
    whole /= 1024;
    u++;
  }
  if (u == 0) brisk__snprintf(buf, n, "%llu B", (unsigned long long)v);
  else brisk__snprintf(buf, n, "%llu.%llu %s", (unsigned long long)whole, (unsigned long long)tenth, unit[u]);
  return buf;
}

static void report_text(report_t *r, const snapshot_t *s) {
  const brisk_stats_t *st = &s->st;
  char a[32], b[32], c[32], d[32];
  rep_printf(r, "brisk: stats for pid %d\n", brisk__os_pid());
  rep_printf(r, "brisk:   mapped         %s (peak %s; from sbrk %s; metadata %s)\n",
             human(a, 32, st->mapped), human(b, 32, st->peak_mapped), human(c, 32, st->sbrk_bytes),
             human(d, 32, st->metadata));
  rep_printf(r, "brisk:   in use         %s (large blocks %s; %llu guarded, %s)\n", human(a, 32, st->in_use),
             human(b, 32, st->large_in_use), (unsigned long long)s->guarded[1], human(c, 32, s->guarded[0]));
  rep_printf(r, "brisk:   thread caches  %s in %llu threads (%llu seen)\n", human(a, 32, st->tcache),
             (unsigned long long)st->threads, (unsigned long long)st->threads_seen);
  rep_printf(r, "brisk:   free in spans  %s\n", human(a, 32, st->central));
  rep_printf(r, "brisk:   heap free      %s (returned to the OS %s)\n", human(a, 32, st->heap_free),
             human(b, 32, st->returned));
  rep_printf(r, "brisk:   large cached   %s\n", human(a, 32, st->large_cached));
  const brisk_resident_t *res = &s->res;
  rep_printf(r, "brisk:   resident       %s of %s mapped in %llu mappings (measured: mincore)\n",
             human(a, 32, res->total), human(b, 32, res->mapped), (unsigned long long)res->regions);
  rep_printf(r, "brisk:     in use %s, thread caches %s, free in spans %s, heap free %s\n", human(a, 32, res->in_use),
             human(b, 32, res->tcache), human(c, 32, res->central), human(d, 32, res->heap_free));
  rep_printf(r, "brisk:     large blocks %s, guarded %s, metadata %s\n", human(a, 32, res->large),
             human(b, 32, res->guarded), human(c, 32, res->metadata));
  rep_printf(r, "brisk:   locks          %llu taken, %llu of them contended\n",
             (unsigned long long)st->lock_acquired, (unsigned long long)st->lock_contended);
  rep_printf(r, "brisk:   NUMA           %u pool%s, topology source %s\n", (unsigned)s->nnodes,
             s->nnodes == 1 ? "" : "s", brisk__numa_topology_source_name());
  if (s->nnodes > 1)
    for (size_t i = 0; i < s->nnodes; i++) {
      const brisk_node_stats_t *n = &s->nodes[i];
      rep_printf(r, "brisk:   node %-3d       mapped %s, in use %s, free %s, %llu remote frees sent home (%u CPUs)\n",
                 (int)n->os_node, human(a, 32, n->mapped), human(b, 32, n->in_use), human(c, 32, n->free),
                 (unsigned long long)n->remote_frees, (unsigned)n->cpus);
    }
  rep_printf(r, "brisk:   %5s %7s %12s %12s %12s %7s\n", "class", "size", "in use", "tcache", "central", "spans");
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    const class_row_t *row = &s->rows[cls];
    if (row->spans == 0 && row->out == 0 && row->tc == 0) continue;
    uint64_t size = brisk__classes[cls].size;
    rep_printf(r, "brisk:   %5u %7u %12llu %12llu %12llu %7llu\n", cls, (unsigned)size,
               (unsigned long long)(row->out * size), (unsigned long long)(row->tc * size),
               (unsigned long long)(row->free * size), (unsigned long long)row->spans);
  }
  rep_printf(r, "brisk: summary mapped=%llu peak_mapped=%llu in_use=%llu tcache=%llu central=%llu "
                "heap_free=%llu returned=%llu large_in_use=%llu large_cached=%llu metadata=%llu "
                "sbrk=%llu threads=%llu threads_seen=%llu topology_source=%s\n",
             (unsigned long long)st->mapped, (unsigned long long)st->peak_mapped,
             (unsigned long long)st->in_use, (unsigned long long)st->tcache,
             (unsigned long long)st->central, (unsigned long long)st->heap_free,
             (unsigned long long)st->returned, (unsigned long long)st->large_in_use,
             (unsigned long long)st->large_cached, (unsigned long long)st->metadata,
             (unsigned long long)st->sbrk_bytes, (unsigned long long)st->threads,
             (unsigned long long)st->threads_seen, brisk__numa_topology_source_name());
}

void brisk_print_stats(void) {
  snapshot_t s;
  snapshot(&s);
  char buf[REPORT_STREAM];
  report_t r = {buf, sizeof buf, 0, 0, 2};
  report_text(&r, &s);
  rep_finish(&r);
}

/* ------------------------------------------------------------------------------
   JSON (docs/stats-schema.md): every value is a number or one of a few fixed
   words, so nothing needs escaping. One line per node and per class.
------------------------------------------------------------------------------ */
#define BRISK_STATS_SCHEMA 1 /* raised when a field changes meaning or goes away */

static void report_json(report_t *r, const snapshot_t *s) {
  const brisk_stats_t *st = &s->st;
  rep_printf(r, "{\"schema\": %d, \"allocator\": \"brisk\", \"version\": \"%d.%d\", \"pid\": %d,\n",
             BRISK_STATS_SCHEMA, BRISK_VERSION_MAJOR, BRISK_VERSION_MINOR, brisk__os_pid());
  rep_printf(r, " \"topology_source\": \"%s\",\n", brisk__numa_topology_source_name());
  rep_printf(r, " \"totals\": {\"mapped\": %llu, \"peak_mapped\": %llu, \"in_use\": %llu, \"tcache\": %llu, "
                "\"central\": %llu, \"heap_free\": %llu, \"returned\": %llu,\n",
             (unsigned long long)st->mapped, (unsigned long long)st->peak_mapped, (unsigned long long)st->in_use,
             (unsigned long long)st->tcache, (unsigned long long)st->central, (unsigned long long)st->heap_free,
             (unsigned long long)st->returned);
  rep_printf(r, "  \"large_in_use\": %llu, \"large_cached\": %llu, \"large_blocks\": %llu, \"metadata\": %llu, "
                "\"sbrk\": %llu, \"threads\": %llu, \"threads_seen\": %llu,\n"
                "  \"lock_acquired\": %llu, \"lock_contended\": %llu, \"guarded_in_use\": %llu, "
                "\"guarded_blocks\": %llu},\n",
             (unsigned long long)st->large_in_use, (unsigned long long)st->large_cached,
             (unsigned long long)st->large_blocks, (unsigned long long)st->metadata,
             (unsigned long long)st->sbrk_bytes, (unsigned long long)st->threads,
             (unsigned long long)st->threads_seen, (unsigned long long)st->lock_acquired,
             (unsigned long long)st->lock_contended, (unsigned long long)s->guarded[0],
             (unsigned long long)s->guarded[1]);
  const brisk_resident_t *res = &s->res;
  rep_printf(r, " \"resident\": {\"total\": %llu, \"in_use\": %llu, \"tcache\": %llu, \"central\": %llu, "
                "\"heap_free\": %llu, \"large\": %llu, \"guarded\": %llu, \"metadata\": %llu, \"mapped\": %llu, "
                "\"regions\": %llu},\n",
             (unsigned long long)res->total, (unsigned long long)res->in_use, (unsigned long long)res->tcache,
             (unsigned long long)res->central, (unsigned long long)res->heap_free, (unsigned long long)res->large,
             (unsigned long long)res->guarded, (unsigned long long)res->metadata, (unsigned long long)res->mapped,
             (unsigned long long)res->regions);
  rep_printf(r, " \"nodes\": [");
  for (size_t i = 0; i < s->nnodes; i++) {
    const brisk_node_stats_t *n = &s->nodes[i];
    rep_printf(r, "%s\n  {\"slot\": %u, \"os_node\": %d, \"cpus\": %u, \"mapped\": %llu, \"in_use\": %llu, "
                  "\"free\": %llu, \"remote_frees\": %llu}",
               i ? "," : "", (unsigned)i, (int)n->os_node, (unsigned)n->cpus, (unsigned long long)n->mapped,
               (unsigned long long)n->in_use, (unsigned long long)n->free, (unsigned long long)n->remote_frees);
  }
  rep_printf(r, "],\n \"classes\": [");
  bool first = true;
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    const class_row_t *row = &s->rows[cls];
    if (!row_used(row)) continue;
    uint64_t size = brisk__classes[cls].size;
    rep_printf(r, "%s\n  {\"class\": %u, \"size\": %u, \"in_use\": %llu, \"tcache\": %llu, \"central\": %llu, "
                  "\"spans\": %llu}",
               first ? "" : ",", cls, (unsigned)size, (unsigned long long)(row->out * size),
               (unsigned long long)(row->tc * size), (unsigned long long)(row->free * size),
               (unsigned long long)row->spans);
    first = false;
  }
  rep_printf(r, "]}\n");
}

size_t brisk_stats_json(char *buf, size_t len) {
  snapshot_t s;
  snapshot(&s);
  report_t r = {buf, buf ? len : 0, 0, 0, -1};
  report_json(&r, &s);
  rep_finish(&r);
  return r.total;
}

/* ------------------------------------------------------------------------------
   At exit
------------------------------------------------------------------------------ */

bool brisk__expand_path(const char *f, char *out, size_t cap) {
  size_t o = 0;
  for (; *f; f++) {
    char num[16];
    const char *piece = f;
    size_t n = 1;
    if (f[0] == '%' && f[1] == 'p') {
      n = (size_t)brisk__snprintf(num, sizeof num, "%d", brisk__os_pid());
      piece = num;
      f++;
    } else if (f[0] == '%' && f[1] == '%') {
      f++;
    }
    if (o + n >= cap) return false;
    memcpy(out + o, piece, n);
    o += n;
  }
  out[o] = 0;
  return true;
}

/* BRISK_STATS=1|json: report at exit, after the program's own destructors, to
 * stderr or to BRISK_STATS_FILE (stderr, with a warning, if it cannot be made). */
__attribute__((destructor(101))) static void stats_at_exit(void) {
  if (atomic_load_explicit(&brisk__init_state, memory_order_acquire) != 2 || brisk__opt.stats == BRISK_STATS_OFF)
    return;
  int fd = 2;
  if (brisk__opt.stats_file[0]) {
    char path[BRISK_PATH_OPT_MAX + 64];
    int f = brisk__expand_path(brisk__opt.stats_file, path, sizeof path) ? brisk__os_create_file(path) : -1;
    if (f >= 0) fd = f;
    else brisk__printf_err("brisk: cannot write the statistics to '%s'; they go to stderr\n", brisk__opt.stats_file);
  }
  snapshot_t s;
  snapshot(&s);
  char buf[REPORT_STREAM];
  report_t r = {buf, sizeof buf, 0, 0, fd};
  if (brisk__opt.stats == BRISK_STATS_JSON) report_json(&r, &s);
  else report_text(&r, &s);
  rep_finish(&r);
  if (fd != 2) brisk__os_close(fd);
}
