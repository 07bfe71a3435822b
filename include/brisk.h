/* brisk: a thread-caching malloc for multithreaded servers.
 *
 * The prefixed API below works whether or not brisk also replaces the system
 * allocator (libbrisk.so under LD_PRELOAD, or libbrisk.a linked in). Blocks from
 * one family must be released by the same family: brisk_free() for brisk_malloc(),
 * and, when brisk interposes, free() for both. */
#ifndef BRISK_H
#define BRISK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define BRISK_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#define BRISK_ALLOC_SIZE(...) __attribute__((alloc_size(__VA_ARGS__)))
#else
#define BRISK_MALLOC_ATTR
#define BRISK_ALLOC_SIZE(...)
#endif

#if defined(__GNUC__)
#define BRISK_API __attribute__((visibility("default")))
#else
#define BRISK_API
#endif

/* The version: CMakeLists.txt takes the project's (the .so's name, the pkg-config
 * files, the package, the launcher) from these three lines. brisk_version() is the
 * library's own BRISK_VERSION: a program can compare it with the header's. */
#define BRISK_VERSION_MAJOR 0
#define BRISK_VERSION_MINOR 1
#define BRISK_VERSION_PATCH 0
#define BRISK_VERSION (BRISK_VERSION_MAJOR * 10000 + BRISK_VERSION_MINOR * 100 + BRISK_VERSION_PATCH)
#define BRISK_VERSION_STR_(x) #x
#define BRISK_VERSION_STR(x) BRISK_VERSION_STR_(x)
#define BRISK_VERSION_STRING BRISK_VERSION_STR(BRISK_VERSION_MAJOR) "." \
  BRISK_VERSION_STR(BRISK_VERSION_MINOR) "." BRISK_VERSION_STR(BRISK_VERSION_PATCH)

/* Allocation. All results are 16-byte aligned; failure is NULL with errno ENOMEM. */
BRISK_API BRISK_MALLOC_ATTR BRISK_ALLOC_SIZE(1) void *brisk_malloc(size_t size);
BRISK_API BRISK_MALLOC_ATTR BRISK_ALLOC_SIZE(1, 2) void *brisk_calloc(size_t n, size_t size);
BRISK_API BRISK_ALLOC_SIZE(2) void *brisk_realloc(void *p, size_t size);
BRISK_API BRISK_ALLOC_SIZE(2, 3) void *brisk_reallocarray(void *p, size_t n, size_t size);
BRISK_API void brisk_free(void *p);
/* Free with the size (and alignment) the block was asked for; a wrong size aborts. */
BRISK_API void brisk_free_sized(void *p, size_t size);
BRISK_API void brisk_free_aligned_sized(void *p, size_t alignment, size_t size);

/* Aligned allocation: any power-of-two alignment up to 1 GiB and beyond. */
BRISK_API BRISK_MALLOC_ATTR BRISK_ALLOC_SIZE(2) void *brisk_aligned_alloc(size_t alignment, size_t size);
BRISK_API BRISK_MALLOC_ATTR BRISK_ALLOC_SIZE(2) void *brisk_memalign(size_t alignment, size_t size);
BRISK_API int brisk_posix_memalign(void **memptr, size_t alignment, size_t size);
BRISK_API BRISK_MALLOC_ATTR BRISK_ALLOC_SIZE(1) void *brisk_valloc(size_t size);
BRISK_API BRISK_MALLOC_ATTR void *brisk_pvalloc(size_t size);

/* The number of bytes usable at p (at least what was asked for); 0 for NULL. */
BRISK_API size_t brisk_usable_size(const void *p);

/* Return every free page brisk can give back to the OS now (the calling thread's
 * cache and the empty spans it keeps, orphaned spans that emptied, idle
 * page-heap spans, cached large spans). Returns 1 if
 * memory was released, 0 otherwise, like glibc's malloc_trim. */
BRISK_API int brisk_trim(void);

/* Statistics, merged from all threads on demand. Byte counts. */
typedef struct brisk_stats_s {
  uint64_t mapped;        /* address space brisk holds from the OS, metadata included */
  uint64_t peak_mapped;   /* high-water mark of mapped */
  uint64_t in_use;        /* bytes in blocks handed to the program (rounded to class size) */
  uint64_t tcache;        /* bytes free in thread caches */
  uint64_t central;       /* bytes free in the spans of the size classes (not in caches) */
  uint64_t heap_free;     /* free page-heap pages still backed by memory */
  uint64_t returned;      /* free page-heap pages given back with madvise */
  uint64_t large_in_use;  /* bytes in large blocks (above 64 KiB) in use */
  uint64_t large_cached;  /* always 0: freed large blocks are free page-heap runs (heap_free) */
  uint64_t large_blocks;  /* large blocks in use */
  uint64_t metadata;      /* bytes of span and page-map metadata */
  uint64_t sbrk_bytes;    /* part of mapped that came from sbrk */
  uint64_t threads;       /* threads that currently have a cache */
  uint64_t threads_seen;  /* thread caches created since start */
  uint64_t lock_acquired;  /* brisk locks taken by the program's threads */
  uint64_t lock_contended; /* of those, the ones that found the lock taken and waited */
} brisk_stats_t;

BRISK_API void brisk_get_stats(brisk_stats_t *out);

/* Per NUMA node: one entry for each node whose memory brisk keeps pools for (one
 * entry on a one-node machine, or before a second thread has started). */
typedef struct brisk_node_stats_s {
  int32_t os_node;        /* the kernel's node number */
  uint32_t cpus;          /* CPUs whose threads use this node's pools (0: not known yet) */
  uint64_t mapped;        /* bytes brisk mapped for this node: heap chunks and large blocks */
  uint64_t in_use;        /* bytes of this node handed out: blocks in use or in thread caches */
  uint64_t free;          /* bytes of this node free in its pools, still backed by memory */
  uint64_t remote_frees;  /* blocks freed by a thread of another node and sent home here */
} brisk_node_stats_t;

/* Fills up to max entries; returns the number of nodes (which may exceed max). */
BRISK_API size_t brisk_get_node_stats(brisk_node_stats_t *out, size_t max);
/* Print the statistics (totals, then one line per size class in use) to stderr. */
BRISK_API void brisk_print_stats(void);
/* The statistics as one JSON document (docs/stats-schema.md) in buf, NUL-terminated
 * and cut to len - 1 bytes if longer. Returns the document's length, which may be
 * len or more (like snprintf): call with len 0 (buf may be NULL) to size a buffer.
 * It does not allocate, so it may be called from anywhere malloc may. */
BRISK_API size_t brisk_stats_json(char *buf, size_t len);

/* Resident memory: how much of brisk's own mappings is in RAM now (mincore over
 * each, so that pages never touched or given back with madvise do not count),
 * and which layer holds each resident byte. The layers add up to total exactly.
 * A page of a size class's span is split between its blocks in use, in thread
 * caches and free in the span in proportion to their numbers. Costs time in
 * proportion to the heap (a page-map read per span, a mincore call per 16 MiB),
 * takes brisk's locks one at a time, and never allocates. docs/stats-schema.md,
 * "resident", says more; the figures are the JSON's "resident" object. */
typedef struct brisk_resident_s {
  uint64_t total;     /* resident bytes of brisk's mappings: the sum of the layers below */
  uint64_t in_use;    /* small blocks in use by the program */
  uint64_t tcache;    /* small blocks in thread caches, and threads' spare large blocks */
  uint64_t central;   /* free small blocks in spans, and the unused ends of spans */
  uint64_t heap_free; /* free page-heap runs not yet given back */
  uint64_t large;     /* large blocks in use: page-heap runs and blocks mapped alone */
  uint64_t guarded;   /* the pool of guarded blocks (BRISK_GUARD_SAMPLE) */
  uint64_t metadata;  /* span descriptors, page map, heap, thread and profile records, bootstrap area */
  uint64_t mapped;    /* bytes of the mappings measured (see brisk_get_regions) */
  uint64_t regions;   /* how many mappings were measured */
} brisk_resident_t;

/* Fills the first size bytes of *out (pass sizeof *out): a program built with an
 * older, shorter struct gets what it knows of. Returns the library's
 * sizeof(brisk_resident_t). */
BRISK_API size_t brisk_get_resident(brisk_resident_t *out, size_t size);

/* brisk's mappings, by address: what brisk_get_resident measures. With names
 * where the kernel takes them (CONFIG_ANON_VMA_NAME): [anon:brisk:heap] ... in
 * /proc/PID/maps; the program-break part of the heap shows as [heap]. */
typedef enum brisk_region_kind_e {
  BRISK_REGION_HEAP = 0, /* page-heap memory (sbrk or mmap): "brisk:heap" */
  BRISK_REGION_LARGE,    /* a large block mapped alone: "brisk:large" */
  BRISK_REGION_META,     /* metadata and the bootstrap area: "brisk:meta" */
  BRISK_REGION_GUARD,    /* the guarded blocks' pool: "brisk:guard" */
} brisk_region_kind_t;
typedef struct brisk_region_s {
  uintptr_t start;
  size_t length;
  uint32_t kind; /* brisk_region_kind_t */
  uint32_t reserved;
} brisk_region_t;
/* Fills up to max entries; returns how many mappings there are (may exceed max). */
BRISK_API size_t brisk_get_regions(brisk_region_t *out, size_t max);

/* With BRISK_PROF=1: write the heap profile of the sampled live allocations
 * (gperftools' heap format, for google-pprof or go tool pprof) to the file at
 * path. Returns 0, EINVAL when profiling is off or path is NULL or empty, or
 * the errno of creating the file. It does not allocate. */
BRISK_API int brisk_prof_dump(const char *path);

/* Version and options: what the `brisk` launcher asks the library. */
BRISK_API int brisk_version(void); /* BRISK_VERSION of the library */

/* The options (environment variables BRISK_<name>), one entry per row of the
 * table the library parses, in the README's order. Strings are static. */
typedef struct brisk_option_s {
  const char *name;           /* without the BRISK_ prefix, e.g. "PURGE_DELAY_MS" */
  const char *values;         /* what it accepts, e.g. "milliseconds" */
  const char *default_value;  /* as the environment would spell it, e.g. "1000" */
  const char *meaning;        /* one line */
} brisk_option_t;

BRISK_API size_t brisk_option_count(void);
/* Entry i, or NULL when i >= brisk_option_count(). */
BRISK_API const brisk_option_t *brisk_option_get(size_t i);
/* 0 if BRISK_<name>=value would be accepted; ENOENT for an unknown name, EINVAL
 * for a value the option does not accept. */
BRISK_API int brisk_option_check(const char *name, const char *value);

#ifdef __cplusplus
}
#endif
#endif /* BRISK_H */
