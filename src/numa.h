/* NUMA (numa.c). brisk keeps one set of pools (orphan heaps, page-heap free
 * lists) per NUMA node that has memory; a pool is named by its
 * *slot*, 0..brisk__numa_nodes-1. Until the topology is known (and always on a
 * one-node machine or with BRISK_NUMA=off) there is one slot, 0.
 *
 * The slot count is stored under the registry lock (release) after the new
 * slots' tables. Allocations of the thread that loads the topology come from
 * the bootstrap area (boot.h). */

#ifndef BRISK_NUMA_H
#define BRISK_NUMA_H
#include "base.h"

#pragma GCC visibility push(hidden)

#define BRISK_MAX_CPUS 4096       /* CPUs above this count as slot 0's */
#define BRISK_NODEMASK_WORDS 16   /* mbind masks cover OS nodes 0..1023 */

extern unsigned brisk__numa_nodes; /* slots in use: 1 until discovery finds more */
/* Acquire: whoever sees N slots also sees their tables and pools. */
static inline unsigned brisk__numa_count(void) { return __atomic_load_n(&brisk__numa_nodes, __ATOMIC_ACQUIRE); }

/* The operating system as NUMA code sees it: one seam, so that host tests can
 * describe a machine that is not there. Every function must work without malloc
 * except topology_setup (it runs while brisk loads hwloc, see numa.c). */
struct hwloc_topology;
typedef enum {
  BRISK_BIND_PREFER,     /* fresh memory: later first touches go to the node */
  BRISK_BIND_MOVE,       /* the same, and pages already elsewhere are migrated */
  BRISK_BIND_INTERLEAVE, /* fresh memory, page by page over the mask */
} brisk_bind_t;
typedef struct brisk_numa_os_s {
  unsigned (*online_nodes)(void);                        /* a cheap count, before hwloc */
  int (*topology_setup)(struct hwloc_topology *topo);    /* before hwloc_topology_load */
  int (*current_cpu)(void);                              /* -1 when unknown */
  int (*bind)(void *p, size_t len, brisk_bind_t how, const uint64_t *mask); /* mbind; 0 or -errno */
  int (*page_node)(const void *p);                       /* OS node of a page, -1 unknown */
  long (*read_file)(const char *path, char *buf, size_t cap); /* sysfs, procfs: brisk__os_read_file */
} brisk_numa_os_t;
extern brisk_numa_os_t brisk__numa_os;

/* Called when a thread's cache is created; the second thread of a process starts
 * discovery and waits for it (the first never does: a single thread gets local
 * memory from the kernel's first touch, and start-up stays cheap). */
/* A thread's cache has started; false if NUMA discovery is still loading and the
 * thread gave up waiting for it (see BRISK_TC_UNPLACED). */
bool brisk__numa_thread_started(uint64_t threads_seen);
bool brisk__numa_published(void); /* not loading: slots, if any, are published */
uint64_t brisk__numa_giveups(void); /* threads that gave up waiting for discovery */
/* The slot of the CPU the calling thread runs on (a few ns: rseq or vDSO getcpu). */
unsigned brisk__numa_slot_now(void);
/* Bind fresh memory of a slot to its node (nothing on one node). */
void brisk__numa_bind(void *p, size_t len, unsigned slot);
/* Spread fresh memory page by page over all memory nodes. */
void brisk__numa_bind_interleave(void *p, size_t len);
/* The slot whose pools hold large blocks asked for from slot: with
 * BRISK_NUMA=interleave large blocks are mapped alone, interleaved, as slot 0's. */
unsigned brisk__numa_large_slot(unsigned slot);
int brisk__numa_slot_os_node(unsigned slot);
uint32_t brisk__numa_slot_cpus(unsigned slot);
/* Blocks that a thread of another node freed and that went home to slot. */
void brisk__numa_note_remote(unsigned slot, uint64_t n);
uint64_t brisk__numa_remote(unsigned slot);
/* Where the topology came from: nothing loaded (one node, one thread, off, or
 * no source worked), hwloc, or the kernel's sysfs. */
typedef enum { BRISK_TOPO_NONE = 0, BRISK_TOPO_HWLOC, BRISK_TOPO_SYSFS } brisk_topo_source_t;
brisk_topo_source_t brisk__numa_topology_source(void);
const char *brisk__numa_topology_source_name(void); /* "none", "hwloc", "sysfs" */
void brisk__numa_after_fork_child(void);
/* Discovery has finished, early memory adopted (or there was none to do). */
bool brisk__numa_settled(void);

#pragma GCC visibility pop
#endif /* BRISK_NUMA_H */
