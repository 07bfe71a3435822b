/* Statistics: merged on demand from the layers' own counters (central per class,
 * page heap, large blocks, thread-cache registry); nothing is counted on the fast
 * paths. Thread-cache lengths are read without stopping their threads, so a
 * report taken while threads run is a close estimate, exact when they are quiet.
 * Output is formatted without malloc, into stack buffers. */
#include "internal.h"

#include <unistd.h>

typedef struct class_row_s {
  uint64_t out, free, spans, tc;
} class_row_t;

static void collect(brisk_stats_t *st, class_row_t rows[BRISK_CLASSES]) {
  memset(st, 0, sizeof *st);
  uint64_t tc_objs[BRISK_CLASSES] = {0};
  brisk__tcache_registry_stats(&st->tcache, tc_objs, &st->threads, &st->threads_seen);
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    uint64_t out, fr, spans;
    brisk__central_class_stats(cls, &out, &fr, &spans);
    uint64_t size = brisk__classes[cls].size;
    uint64_t tc = tc_objs[cls] < out ? tc_objs[cls] : out;
    st->in_use += (out - tc) * size;
    st->central += fr * size;
    if (rows) rows[cls] = (class_row_t){out - tc, fr, spans, tc};
  }
  brisk__heap_stats(&st->heap_free, &st->returned, &st->sbrk_bytes);
  brisk__large_stats(&st->large_in_use, &st->large_cached, &st->large_blocks);
  st->in_use += st->large_in_use;
  st->metadata = atomic_load_explicit(&brisk__counters.meta, memory_order_relaxed);
  st->mapped = atomic_load_explicit(&brisk__counters.mapped, memory_order_relaxed) + st->metadata;
  st->peak_mapped = atomic_load_explicit(&brisk__counters.peak_mapped, memory_order_relaxed) + st->metadata;
}

void brisk_get_stats(brisk_stats_t *out) {
  brisk__ensure_init();
  collect(out, NULL);
}

size_t brisk_get_node_stats(brisk_node_stats_t *out, size_t max) {
  brisk__ensure_init();
  unsigned nodes = brisk__numa_count();
  for (unsigned slot = 0; slot < nodes && slot < max; slot++) {
    uint64_t heap_mapped, heap_free, out_bytes, free_bytes, large_in_use, large_alone;
    brisk__heap_node_stats(slot, &heap_mapped, &heap_free);
    brisk__central_node_stats(slot, &out_bytes, &free_bytes);
    brisk__large_node_stats(slot, &large_in_use, &large_alone);
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

void brisk_print_stats(void) {
  brisk__ensure_init();
  brisk_stats_t st;
  class_row_t rows[BRISK_CLASSES];
  collect(&st, rows);
  char a[32], b[32], c[32], d[32];
  brisk__printf_err("brisk: stats for pid %d\n", (int)getpid());
  brisk__printf_err("brisk:   mapped         %s (peak %s; from sbrk %s; metadata %s)\n",
                    human(a, 32, st.mapped), human(b, 32, st.peak_mapped), human(c, 32, st.sbrk_bytes),
                    human(d, 32, st.metadata));
  brisk__printf_err("brisk:   in use         %s (large blocks %s)\n", human(a, 32, st.in_use),
                    human(b, 32, st.large_in_use));
  brisk__printf_err("brisk:   thread caches  %s in %llu threads (%llu seen)\n", human(a, 32, st.tcache),
                    (unsigned long long)st.threads, (unsigned long long)st.threads_seen);
  brisk__printf_err("brisk:   central lists  %s\n", human(a, 32, st.central));
  brisk__printf_err("brisk:   heap free      %s (returned to the OS %s)\n", human(a, 32, st.heap_free),
                    human(b, 32, st.returned));
  brisk__printf_err("brisk:   large cached   %s\n", human(a, 32, st.large_cached));
  brisk_node_stats_t nodes[BRISK_MAX_NODES];
  size_t nn = brisk_get_node_stats(nodes, BRISK_MAX_NODES);
  if (nn > 1)
    for (size_t i = 0; i < nn; i++)
      brisk__printf_err("brisk:   node %-3d       mapped %s, in use %s, free %s, %llu remote frees sent home (%u CPUs)\n",
                        (int)nodes[i].os_node, human(a, 32, nodes[i].mapped), human(b, 32, nodes[i].in_use),
                        human(c, 32, nodes[i].free), (unsigned long long)nodes[i].remote_frees,
                        (unsigned)nodes[i].cpus);
  brisk__printf_err("brisk:   %5s %7s %12s %12s %12s %7s\n", "class", "size", "in use", "tcache", "central",
                    "spans");
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    class_row_t *r = &rows[cls];
    if (r->spans == 0 && r->out == 0 && r->tc == 0) continue;
    uint64_t size = brisk__classes[cls].size;
    brisk__printf_err("brisk:   %5u %7u %12llu %12llu %12llu %7llu\n", cls, (unsigned)size,
                      (unsigned long long)(r->out * size), (unsigned long long)(r->tc * size),
                      (unsigned long long)(r->free * size), (unsigned long long)r->spans);
  }
  brisk__printf_err("brisk: summary mapped=%llu peak_mapped=%llu in_use=%llu tcache=%llu central=%llu "
                    "heap_free=%llu returned=%llu large_in_use=%llu large_cached=%llu metadata=%llu "
                    "sbrk=%llu threads=%llu threads_seen=%llu\n",
                    (unsigned long long)st.mapped, (unsigned long long)st.peak_mapped,
                    (unsigned long long)st.in_use, (unsigned long long)st.tcache,
                    (unsigned long long)st.central, (unsigned long long)st.heap_free,
                    (unsigned long long)st.returned, (unsigned long long)st.large_in_use,
                    (unsigned long long)st.large_cached, (unsigned long long)st.metadata,
                    (unsigned long long)st.sbrk_bytes, (unsigned long long)st.threads,
                    (unsigned long long)st.threads_seen);
}

/* BRISK_STATS=1: report at exit, after the program's own destructors. */
__attribute__((destructor(101))) static void stats_at_exit(void) {
  if (atomic_load_explicit(&brisk__init_state, memory_order_acquire) == 2 && brisk__opt.stats)
    brisk_print_stats();
}
