/* The live-metrics file (BRISK_METRICS=DIR): its layout, shared by the process that
 * writes it (src/metrics.c) and the readers (`brisk top`, `brisk exporter`, or any
 * tool that maps the file). Native byte order; the file is for readers on the same
 * host.
 *
 * A process publishes DIR/brisk.PID: this header, then `rows` rows of
 * BRISK_METRICS_ROW_SIZE bytes. The file's size is fixed when it is made
 * (header_size + capacity * row_size); the rows in use may change from one
 * publication to the next (NUMA nodes appear), and every byte after the header's
 * fixed part (seq itself excepted) is written under a sequence lock: seq is odd
 * while the writer is at work, and a reader copies the header and rows, then
 * keeps the copy only if seq was even and the same before and after.
 *
 * A row is a named number: its name ("in_use", "node_free"), its unit ("bytes" or
 * ""), whether it is a gauge or a counter, the NUMA node it belongs to (-1: the
 * whole process) and one line of help. Readers are generic: a row added by the
 * library shows up in them without any change to them. */
#ifndef BRISK_METRICS_H
#define BRISK_METRICS_H

#include <stdint.h>

#define BRISK_METRICS_MAGIC "BRISKMT" /* 8 bytes with its NUL */
#define BRISK_METRICS_VERSION 1       /* raised when the layout changes */
#define BRISK_METRICS_PREFIX "brisk." /* the file is PREFIX then the decimal pid */

enum { BRISK_METRIC_GAUGE = 0, BRISK_METRIC_COUNTER = 1 };

#define BRISK_METRICS_NAME_MAX 32
#define BRISK_METRICS_UNIT_MAX 8
#define BRISK_METRICS_HELP_MAX 72
#define BRISK_METRICS_PROGRAM_MAX 32

typedef struct brisk_metric_row_s {
  char name[BRISK_METRICS_NAME_MAX]; /* NUL-terminated; [a-z0-9_] */
  char unit[BRISK_METRICS_UNIT_MAX]; /* "bytes", or "" for a plain number */
  char help[BRISK_METRICS_HELP_MAX]; /* one line, NUL-terminated */
  uint16_t kind;                     /* BRISK_METRIC_GAUGE or BRISK_METRIC_COUNTER */
  uint16_t reserved;
  int32_t node;                      /* the kernel's NUMA node, -1: the whole process */
  uint64_t value;
} brisk_metric_row_t;
#define BRISK_METRICS_ROW_SIZE 128

typedef struct brisk_metrics_header_s {
  /* Fixed when the file is made. */
  char magic[8];             /* BRISK_METRICS_MAGIC */
  uint32_t version;          /* BRISK_METRICS_VERSION */
  uint32_t header_size;      /* bytes before the first row */
  uint32_t row_size;         /* BRISK_METRICS_ROW_SIZE */
  uint32_t capacity;         /* rows the file has room for */
  int32_t pid;
  uint32_t reserved;
  uint64_t start_ticks;      /* the process's start, field 22 of /proc/PID/stat: tells a reused pid */
  uint64_t start_unix_ms;    /* wall clock when the file was made */
  char program[BRISK_METRICS_PROGRAM_MAX]; /* /proc/self/comm, NUL-terminated */
  /* The sequence lock, then what it guards. */
  uint64_t seq;              /* odd while being written; a reader retries */
  uint64_t updated_unix_ms;  /* wall clock of this publication */
  uint64_t publications;     /* how many times the rows were written */
  uint32_t rows;             /* rows in use, at most capacity */
  uint32_t reserved2;
  uint64_t spare[2];         /* zero: room for later fields */
} brisk_metrics_header_t;
#define BRISK_METRICS_HEADER_SIZE 128

_Static_assert(sizeof(brisk_metric_row_t) == BRISK_METRICS_ROW_SIZE, "metrics row layout");
_Static_assert(sizeof(brisk_metrics_header_t) == BRISK_METRICS_HEADER_SIZE, "metrics header layout");

#endif
