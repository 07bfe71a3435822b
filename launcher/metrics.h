/* The launcher's reader of live-metrics files (launcher/metrics.c), shared by
 * `brisk top` (top.c) and `brisk exporter` (exporter.c). */
#ifndef BRISK_LAUNCHER_METRICS_H
#define BRISK_LAUNCHER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brisk_metrics.h"

/* One process's file, copied out under its sequence lock. */
typedef struct metrics_snap_s {
  brisk_metrics_header_t hdr;
  brisk_metric_row_t *rows; /* hdr.rows of them */
} metrics_snap_t;

typedef struct metrics_set_s {
  metrics_snap_t *snaps;
  size_t n;
} metrics_set_t;

/* The directory: --dir's, else BRISK_METRICS's; NULL if neither is set. */
const char *metrics_dir(const char *opt);
/* Every live process published in dir, by pid; files of dead processes (or of a
 * process whose pid was since reused) are removed, and the launcher's own file is
 * left out. 0, or an errno for a directory that cannot be read. */
int metrics_scan(const char *dir, metrics_set_t *out);
void metrics_set_free(metrics_set_t *set);
/* The value of the row named name for node (-1: the process's row); 0 if absent. */
uint64_t metrics_value(const metrics_snap_t *s, const char *name, int node);
/* The launcher's own brisk publishes too when BRISK_METRICS is set: its file goes
 * when top or the exporter stops. */
void metrics_forget_self(void);

int top_main(int argc, char **argv);      /* brisk top */
int exporter_main(int argc, char **argv); /* brisk exporter */

#endif
