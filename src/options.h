/* Options (options.c): read once from the environment at start into brisk__opt,
 * which is read-only after (no lock). */

#ifndef BRISK_OPTIONS_H
#define BRISK_OPTIONS_H
#include "base.h"

#pragma GCC visibility push(hidden)

typedef enum { BRISK_NUMA_AUTO = 0, BRISK_NUMA_OFF, BRISK_NUMA_INTERLEAVE } brisk_numa_mode_t;
/* BRISK_STATS: no report, the text report, or one JSON document (stats.c). */
typedef enum { BRISK_STATS_OFF = 0, BRISK_STATS_TEXT, BRISK_STATS_JSON } brisk_stats_mode_t;
/* BRISK_NUMA_SOURCE: where discovery reads the topology (numa.c). */
typedef enum { BRISK_NUMA_SOURCE_AUTO = 0, BRISK_NUMA_SOURCE_HWLOC, BRISK_NUMA_SOURCE_SYSFS } brisk_numa_source_t;
#define BRISK_PATH_OPT_MAX 256 /* a path option's bytes, NUL included */

typedef struct brisk_options_s {
  bool sbrk;                 /* BRISK_SBRK: grow the small heap with sbrk */
  uint8_t stats;             /* BRISK_STATS: brisk_stats_mode_t, the report at exit */
  char stats_file[BRISK_PATH_OPT_MAX]; /* BRISK_STATS_FILE: the report's file ("": stderr) */
  uint8_t numa_source;       /* BRISK_NUMA_SOURCE: brisk_numa_source_t */
  bool verbose;              /* BRISK_VERBOSE: warn about fallbacks */
  size_t tcache_bytes;       /* BRISK_TCACHE_BYTES: a thread cache's budget */
  size_t tcache_total;       /* BRISK_TCACHE_TOTAL: all thread caches together */
  uint64_t purge_delay_ms;   /* BRISK_PURGE_DELAY_MS: idle time before memory goes back */
  bool purge_thread;         /* BRISK_PURGE_THREAD: purge from a background thread */
  size_t large_mmap_bytes;   /* BRISK_LARGE_MMAP: large blocks from this size up are mapped alone */
  size_t heap_grow;          /* BRISK_HEAP_GROW: bytes the page heap grows by at once */
  size_t heap_shards;        /* BRISK_HEAP_SHARDS: arenas per NUMA slot; 0: on demand, up to 2 per CPU, at most 8 */
  uint8_t numa;              /* BRISK_NUMA: brisk_numa_mode_t */
  size_t guard_sample;       /* BRISK_GUARD_SAMPLE: mean bytes between guarded blocks; 0 off */
  bool prof;                 /* BRISK_PROF: sample a heap profile */
  size_t prof_sample;        /* BRISK_PROF_SAMPLE: mean bytes between profiled allocations */
  char prof_file[BRISK_PATH_OPT_MAX];    /* BRISK_PROF_FILE: the profile written at exit */
  char prof_trigger[BRISK_PATH_OPT_MAX]; /* BRISK_PROF_TRIGGER: a dump when this file appears */
  char metrics[BRISK_PATH_OPT_MAX];      /* BRISK_METRICS: the directory of the live-metrics file */
} brisk_options_t;

extern brisk_options_t brisk__opt;
void brisk__options_init(void);
/* Parse one "NAME=value" environment entry into opt (exposed for the tests). */
void brisk__options_parse_entry(brisk_options_t *opt, const char *entry, size_t len);
void brisk__options_defaults(brisk_options_t *opt);
/* Parse a size with an optional K/M/G suffix; false if malformed. */
bool brisk__parse_size(const char *s, size_t len, uint64_t *out);

#pragma GCC visibility pop
#endif /* BRISK_OPTIONS_H */
