/* numa_probe: where do an allocator's pages land on a multi-node machine?
 *
 * The probe discovers the NUMA nodes from /sys/devices/system/node, starts one
 * thread per node that has CPUs (pinned to that node's CPUs) and runs scenarios in
 * which those threads allocate, touch, free and reallocate blocks. After each
 * checked allocation phase a thread touches every page its blocks cover and asks
 * the kernel which node holds each of them (move_pages with no target nodes, with
 * get_mempolicy(MPOL_F_NODE|MPOL_F_ADDR) on a sample as a cross-check). A thread's
 * expected node is its own node, or the nearest node with memory when its node has
 * none.
 *
 * The allocator is whatever malloc, calloc, realloc and free resolve to, so
 * LD_PRELOAD picks it. The probe's own bookkeeping lives in mmap'd memory, so the
 * allocator under test sees only the blocks being measured (and what libc's
 * pthread_create asks for). No hwloc and no libnuma: raw syscalls only.
 *
 * Threads of a scenario phase are created for that phase and exit at its end, so a
 * thread-caching allocator flushes what they freed to its shared level, where
 * another node's thread may be handed it.
 *
 * Exit status: 0 done (and, with --assert, every thread had >= 95% of its pages on
 * its expected node); 1 an assertion failed or calloc returned non-zero memory;
 * 2 the probe could not measure (bad option, syscall refused, the mmap control
 * failed); 77 one NUMA node: nothing to prove. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MPOL_F_NODE
#define MPOL_F_NODE (1 << 0)
#endif
#ifndef MPOL_F_ADDR
#define MPOL_F_ADDR (1 << 1)
#endif

/* Enough for any VM case and for most real machines; more nodes are an error. */
#define MAX_NODES 64
/* The share of a thread's pages that must be on its expected node (--assert). */
#define MIN_LOCAL_PCT 95.0
/* Bytes of small blocks (16 B - 32 KiB) each thread allocates per phase: several
 * MiB spans many pages and size classes, yet touches quickly under TCG. */
#define SMALL_MIX_BYTES (4u << 20)
#define SMALL_MIN 16u
#define SMALL_MAX (32u << 10)
/* Large blocks: 256 KiB - 8 MiB, about 20 MiB per thread and phase. */
#define LARGE_MIX_BYTES (20u << 20)
#define LARGE_MIN (256u << 10)
#define LARGE_MAX (8u << 20)
/* calloc: small and medium sizes up to 1 MiB. */
#define CALLOC_MIX_BYTES (6u << 20)
#define CALLOC_MAX (1u << 20)
/* Every REALLOC_EVERY-th small block is grown to its size by realloc. */
#define REALLOC_EVERY 8
/* Pages per move_pages call. */
#define STAT_BATCH 1024
/* One page in SAMPLE_EVERY is also read with get_mempolicy; both must agree. */
#define SAMPLE_EVERY 64
/* Upper bound on blocks per phase: the smallest mixes average ~4 KiB per block. */
#define MAX_BLOCKS 65536

/* ------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------- */

static void die(const char *what)
{
  fprintf(stderr, "numa_probe: %s: %s\n", what, strerror(errno));
  exit(2);
}

/* Bookkeeping memory straight from the kernel, never from the allocator. */
static void *xmap(size_t bytes)
{
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    die("mmap");
  return p;
}

static double now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* xorshift64*: the same seed gives the same mix of sizes on every node. */
static uint64_t rng_next(uint64_t *s)
{
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1DULL;
}

/* Reads a small sysfs file into buf; false when it does not exist. */
static bool read_file(const char *path, char *buf, size_t cap)
{
  FILE *f = fopen(path, "r");
  if (!f)
    return false;
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  fclose(f);
  return true;
}

/* Parses a kernel list ("0-3,8,10-11") and calls add(i) for each member. */
static bool parse_list(const char *s, void (*add)(int, void *), void *ctx)
{
  while (*s && !isdigit((unsigned char)*s))
    s++;
  while (*s) {
    char *end;
    long lo = strtol(s, &end, 10), hi = lo;
    if (end == s)
      return false;
    s = end;
    if (*s == '-') {
      hi = strtol(s + 1, &end, 10);
      s = end;
    }
    for (long i = lo; i <= hi; i++)
      add((int)i, ctx);
    while (*s == ',' || isspace((unsigned char)*s))
      s++;
  }
  return true;
}

/* ------------------------------------------------------------------------------
 * Topology, from sysfs
 * ---------------------------------------------------------------------------- */

struct node {
  int id;              /* the kernel's node number (os index) */
  cpu_set_t cpus;
  int ncpus;
  long mem_kb;         /* MemTotal; 0 for a memory-less node */
  int package;         /* physical package of its first CPU, -1 without CPUs */
  int dist[MAX_NODES]; /* to nodes[j], in the order of nodes[] */
  int expected;        /* node id a thread here should get memory from */
};

static struct node nodes[MAX_NODES];
static int nnodes;

static void add_node(int id, void *ctx)
{
  (void)ctx;
  if (nnodes == MAX_NODES) {
    fprintf(stderr, "numa_probe: more than %d nodes\n", MAX_NODES);
    exit(2);
  }
  nodes[nnodes++].id = id;
}

static void add_cpu(int cpu, void *ctx)
{
  struct node *n = ctx;
  CPU_SET(cpu, &n->cpus);
  n->ncpus++;
}

/* The distance file lists one distance per online node, in increasing node order,
 * which is the order of nodes[]. */
static void read_topology(void)
{
  char buf[8192], path[128];
  if (!read_file("/sys/devices/system/node/online", buf, sizeof buf)) {
    fprintf(stderr, "numa_probe: no /sys/devices/system/node/online (sysfs mounted?)\n");
    exit(2);
  }
  if (!parse_list(buf, add_node, NULL) || nnodes == 0) {
    fprintf(stderr, "numa_probe: cannot parse the online node list '%s'\n", buf);
    exit(2);
  }
  for (int i = 0; i < nnodes; i++) {
    struct node *n = &nodes[i];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/cpulist", n->id);
    if (read_file(path, buf, sizeof buf))
      parse_list(buf, add_cpu, n);
    n->package = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
      if (CPU_ISSET(c, &n->cpus)) {
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", c);
        if (read_file(path, buf, sizeof buf))
          n->package = atoi(buf);
        break;
      }
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/meminfo", n->id);
    if (read_file(path, buf, sizeof buf)) {
      char *m = strstr(buf, "MemTotal:");
      if (m)
        n->mem_kb = strtol(m + strlen("MemTotal:"), NULL, 10);
    }
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/distance", n->id);
    if (read_file(path, buf, sizeof buf)) {
      char *s = buf, *end;
      for (int j = 0; j < nnodes; j++, s = end) {
        n->dist[j] = (int)strtol(s, &end, 10);
        if (end == s) {
          fprintf(stderr, "numa_probe: short distance row for node %d\n", n->id);
          exit(2);
        }
      }
    } else {
      for (int j = 0; j < nnodes; j++)
        n->dist[j] = i == j ? 10 : 20;
    }
  }
  /* Own node if it has memory, else the nearest with memory, ties to the lowest
   * id (nodes[] is in increasing id order, and only a strictly nearer one wins). */
  for (int i = 0; i < nnodes; i++) {
    struct node *n = &nodes[i];
    n->expected = -1;
    if (n->mem_kb > 0) {
      n->expected = n->id;
      continue;
    }
    int best = -1;
    for (int j = 0; j < nnodes; j++)
      if (nodes[j].mem_kb > 0 && (best < 0 || n->dist[j] < n->dist[best]))
        best = j;
    if (best >= 0)
      n->expected = nodes[best].id;
  }
}

/* MemFree of every node: a node short of free memory makes the kernel place
 * first-touched pages elsewhere, which no allocator can help. */
static void print_free_memory(const char *when)
{
  char buf[8192], path[128];
  printf("free_kb %s:", when);
  for (int i = 0; i < nnodes; i++) {
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/meminfo", nodes[i].id);
    long kb = -1;
    if (read_file(path, buf, sizeof buf)) {
      char *m = strstr(buf, "MemFree:");
      if (m)
        kb = strtol(m + strlen("MemFree:"), NULL, 10);
    }
    printf(" %d=%ld", nodes[i].id, kb);
  }
  printf("\n");
}

static void print_topology(void)
{
  for (int i = 0; i < nnodes; i++) {
    const struct node *n = &nodes[i];
    printf("node=%d cpus=%d package=%d mem_kb=%ld expected=%d distance=", n->id, n->ncpus,
           n->package, n->mem_kb, n->expected);
    for (int j = 0; j < nnodes; j++)
      printf("%s%d", j ? "," : "", n->dist[j]);
    printf("\n");
  }
}

/* ------------------------------------------------------------------------------
 * Page placement, from the kernel
 * ---------------------------------------------------------------------------- */

static size_t page_size;

/* The node of one page through get_mempolicy; -1 when the kernel refuses. */
static int page_node_mempolicy(void *addr)
{
  int node = -1;
  if (syscall(SYS_get_mempolicy, &node, NULL, 0UL, addr, (unsigned long)(MPOL_F_NODE | MPOL_F_ADDR)) != 0)
    return -1;
  return node;
}

/* The nodes of n pages through move_pages (no target: query only). status[i] is a
 * node, or a negative errno for a page that is not present. */
static void page_nodes(void **pages, size_t n, int *status)
{
  for (size_t off = 0; off < n; off += STAT_BATCH) {
    unsigned long cnt = n - off < STAT_BATCH ? n - off : STAT_BATCH;
    if (syscall(SYS_move_pages, 0, cnt, pages + off, NULL, status + off, 0) != 0)
      die("move_pages");
  }
}

static int cmp_ptr(const void *a, const void *b)
{
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

struct block {
  unsigned char *p;
  size_t size;
};

/* What one thread saw in one scenario. */
struct result {
  const char *scenario;
  int node, expected;
  size_t pages, local, absent, mismatch;
  size_t calloc_dirty; /* calloc'd bytes that were not zero */
  size_t on[MAX_NODES]; /* pages per node id, to show where the others went */
  uintptr_t stray_lo, stray_hi; /* the lowest and highest page not on the expected node */
  size_t stray_runs;            /* runs of consecutive such pages, in address order */
};

/* Every page the blocks cover, deduplicated, is looked up; the blocks have been
 * written by the calling thread, so every page is present. */
static void check_blocks(struct result *r, const struct block *b, size_t nb)
{
  size_t cap = 0;
  for (size_t i = 0; i < nb; i++)
    cap += b[i].size / page_size + 2;
  void **pages = xmap(cap * sizeof *pages);
  int *status = xmap(cap * sizeof *status);
  size_t n = 0;
  for (size_t i = 0; i < nb; i++) {
    uintptr_t first = (uintptr_t)b[i].p & ~(page_size - 1);
    uintptr_t last = ((uintptr_t)b[i].p + b[i].size - 1) & ~(page_size - 1);
    for (uintptr_t a = first; a <= last; a += page_size)
      pages[n++] = (void *)a;
  }
  qsort(pages, n, sizeof *pages, cmp_ptr);
  size_t u = 0;
  for (size_t i = 0; i < n; i++)
    if (u == 0 || pages[i] != pages[u - 1])
      pages[u++] = pages[i];
  page_nodes(pages, u, status);
  for (size_t i = 0; i < u; i++) {
    if (status[i] < 0 || status[i] >= MAX_NODES)
      r->absent++;
    else
      r->on[status[i]]++;
    if (status[i] == r->expected) {
      r->local++;
    } else {
      uintptr_t a = (uintptr_t)pages[i];
      if (r->stray_runs == 0 || a < r->stray_lo)
        r->stray_lo = a;
      if (r->stray_runs == 0 || a > r->stray_hi)
        r->stray_hi = a;
      if (i == 0 || status[i - 1] == r->expected ||
          (uintptr_t)pages[i - 1] + page_size != a)
        r->stray_runs++;
    }
    if (i % SAMPLE_EVERY == 0 && status[i] >= 0 && page_node_mempolicy(pages[i]) != status[i])
      r->mismatch++;
  }
  r->pages += u;
  munmap(pages, cap * sizeof *pages);
  munmap(status, cap * sizeof *status);
}

/* ------------------------------------------------------------------------------
 * Block mixes
 * ---------------------------------------------------------------------------- */

enum mix { MIX_SMALL, MIX_LARGE, MIX_CALLOC };

/* Sizes spread evenly over the powers of two between lo and hi, so that every size
 * class range gets blocks; the seed fixes the sequence. */
static size_t mix_sizes(enum mix m, uint64_t seed, size_t *sizes)
{
  size_t lo = m == MIX_LARGE ? LARGE_MIN : SMALL_MIN;
  size_t hi = m == MIX_LARGE ? LARGE_MAX : m == MIX_CALLOC ? CALLOC_MAX : SMALL_MAX;
  size_t budget = m == MIX_LARGE ? LARGE_MIX_BYTES : m == MIX_CALLOC ? CALLOC_MIX_BYTES
                                                                     : SMALL_MIX_BYTES;
  int classes = 0;
  while ((lo << classes) < hi)
    classes++;
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  size_t n = 0, total = 0;
  while (total < budget && n < MAX_BLOCKS) {
    size_t base = lo << (rng_next(&s) % (uint64_t)classes);
    size_t size = base + rng_next(&s) % base;
    if (size > hi)
      size = hi;
    sizes[n++] = size;
    total += size;
  }
  return n;
}

/* Allocates the mix (malloc, some small blocks grown through realloc, or calloc
 * when zeroed) and writes every byte: the thread touches each page it will be
 * measured on. calloc'd blocks are checked for zeroes first. */
static size_t mix_alloc(enum mix m, uint64_t seed, struct block *b, struct result *r,
                        unsigned char fill, bool zeroed)
{
  size_t *sizes = xmap(MAX_BLOCKS * sizeof *sizes);
  size_t n = mix_sizes(m, seed, sizes);
  for (size_t i = 0; i < n; i++) {
    size_t size = sizes[i];
    unsigned char *p;
    if (zeroed) {
      p = calloc(1, size);
      if (p)
        for (size_t k = 0; k < size; k++)
          r->calloc_dirty += p[k] != 0;
    } else if (m == MIX_SMALL && i % REALLOC_EVERY == 0) {
      p = malloc(size / 2);
      if (p) {
        memset(p, fill, size / 2);
        unsigned char *q = realloc(p, size);
        if (!q)
          free(p);
        p = q;
      }
    } else {
      p = malloc(size);
    }
    if (!p) {
      fprintf(stderr, "numa_probe: allocation of %zu bytes failed\n", size);
      exit(2);
    }
    memset(p, fill, size);
    b[i] = (struct block){p, size};
  }
  munmap(sizes, MAX_BLOCKS * sizeof *sizes);
  return n;
}

static void mix_free(struct block *b, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(b[i].p);
}

/* ------------------------------------------------------------------------------
 * Pinned threads
 * ---------------------------------------------------------------------------- */

/* Nodes with CPUs, in node order: the threads of every scenario. */
static int workers[MAX_NODES];
static int nworkers;

struct task {
  int widx; /* index into workers[] */
  void (*fn)(struct task *);
  const char *scenario;
  enum mix mix;
  uint64_t seed;
  struct block *blocks; /* MAX_BLOCKS, mmap'd */
  size_t nblocks;
  struct block **handoff; /* cross: where this thread's blocks go, read by another */
  size_t *handoff_n;
  pthread_barrier_t *barrier;
  struct result *result;
};

static void *task_main(void *arg)
{
  struct task *t = arg;
  t->fn(t);
  return NULL;
}

/* Runs tasks[0..n) at once, each on its own thread pinned to its node's CPUs,
 * and waits for all of them. */
static void run_pinned(struct task *tasks, int n)
{
  pthread_t tid[MAX_NODES];
  for (int i = 0; i < n; i++) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    const struct node *nd = &nodes[workers[tasks[i].widx]];
    if ((errno = pthread_attr_setaffinity_np(&attr, sizeof nd->cpus, &nd->cpus)) != 0)
      die("pthread_attr_setaffinity_np");
    if ((errno = pthread_create(&tid[i], &attr, task_main, &tasks[i])) != 0)
      die("pthread_create");
    pthread_attr_destroy(&attr);
  }
  for (int i = 0; i < n; i++)
    pthread_join(tid[i], NULL);
}

static struct task make_task(int widx, void (*fn)(struct task *), const char *scenario,
                             enum mix mix, uint64_t seed, struct result *r)
{
  const struct node *nd = &nodes[workers[widx]];
  if (r)
    *r = (struct result){.scenario = scenario, .node = nd->id, .expected = nd->expected};
  return (struct task){.widx = widx, .fn = fn, .scenario = scenario, .mix = mix,
                       .seed = seed, .blocks = xmap(MAX_BLOCKS * sizeof(struct block)),
                       .result = r};
}

static void drop_task(struct task *t)
{
  munmap(t->blocks, MAX_BLOCKS * sizeof(struct block));
}

/* Allocate, touch, measure, free. */
static void task_measure(struct task *t)
{
  t->nblocks = mix_alloc(t->mix, t->seed, t->blocks, t->result, 0x5A, t->mix == MIX_CALLOC);
  check_blocks(t->result, t->blocks, t->nblocks);
  mix_free(t->blocks, t->nblocks);
}

/* Allocate the same sizes with malloc (never calloc: the receiver's calloc must
 * clear what is left here), fill them with non-zero bytes, free. */
static void task_donate(struct task *t)
{
  struct result scratch = {0};
  t->nblocks = mix_alloc(t->mix, t->seed, t->blocks, &scratch, 0xA5, false);
  mix_free(t->blocks, t->nblocks);
}

/* cross: allocate; hand the blocks to the next thread, free the previous thread's
 * blocks (remote frees); allocate again and measure that. */
static void task_cross(struct task *t)
{
  struct result scratch = {0};
  t->nblocks = mix_alloc(MIX_SMALL, t->seed, t->blocks, &scratch, 0xC3, false);
  *t->handoff = t->blocks;
  *t->handoff_n = t->nblocks;
  pthread_barrier_wait(t->barrier);
  /* handoff[] is indexed by producer; this thread frees its predecessor's blocks. */
  struct task *prev = t - 1;
  if (t->widx == 0)
    prev = t + (nworkers - 1);
  mix_free(*prev->handoff, *prev->handoff_n);
  pthread_barrier_wait(t->barrier);
  struct block *again = xmap(MAX_BLOCKS * sizeof *again);
  size_t n = mix_alloc(MIX_SMALL, t->seed + 1000, again, t->result, 0x3C, false);
  check_blocks(t->result, again, n);
  mix_free(again, n);
  munmap(again, MAX_BLOCKS * sizeof *again);
}

/* control: pages from mmap, first touched here. This is the kernel's own
 * placement; if it is not local the measurement itself cannot be trusted. No huge
 * pages: the kernel merges the threads' adjacent mappings into one VMA, and a huge
 * page straddling two of them would be placed whole by whichever thread touched
 * it first. */
static void task_control(struct task *t)
{
  size_t bytes = SMALL_MIX_BYTES;
  unsigned char *p = xmap(bytes);
  madvise(p, bytes, MADV_NOHUGEPAGE);
  memset(p, 1, bytes);
  struct block b = {p, bytes};
  check_blocks(t->result, &b, 1);
  munmap(p, bytes);
}

/* ------------------------------------------------------------------------------
 * Scenarios
 * ---------------------------------------------------------------------------- */

#define MAX_RESULTS (MAX_NODES * 8)
static struct result results[MAX_RESULTS];
static int nresults;

static struct result *new_result(void)
{
  if (nresults == MAX_RESULTS) {
    fprintf(stderr, "numa_probe: too many results\n");
    exit(2);
  }
  return &results[nresults++];
}

/* Every thread at once: one measured task each. */
static void scenario_all(const char *name, void (*fn)(struct task *), enum mix mix)
{
  struct task tasks[MAX_NODES];
  for (int i = 0; i < nworkers; i++)
    tasks[i] = make_task(i, fn, name, mix, (uint64_t)i + 1, new_result());
  run_pinned(tasks, nworkers);
  for (int i = 0; i < nworkers; i++)
    drop_task(&tasks[i]);
}

/* Round robin: the next node's thread allocates, touches and frees the mix and
 * exits; then this node's thread allocates the same mix and is measured. Every
 * node with CPUs is a receiver once. */
static void scenario_reuse(const char *name, enum mix mix)
{
  for (int i = 0; i < nworkers; i++) {
    int donor = (i + 1) % nworkers;
    uint64_t seed = 100 + (uint64_t)i;
    struct task d = make_task(donor, task_donate, name, mix, seed, NULL);
    run_pinned(&d, 1);
    drop_task(&d);
    struct task r = make_task(i, task_measure, name, mix, seed, new_result());
    run_pinned(&r, 1);
    drop_task(&r);
  }
}

static void scenario_cross(void)
{
  struct task tasks[MAX_NODES];
  struct block *handoff[MAX_NODES];
  size_t handoff_n[MAX_NODES];
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, (unsigned)nworkers);
  for (int i = 0; i < nworkers; i++) {
    tasks[i] = make_task(i, task_cross, "cross", MIX_SMALL, 200 + (uint64_t)i, new_result());
    tasks[i].handoff = &handoff[i];
    tasks[i].handoff_n = &handoff_n[i];
    tasks[i].barrier = &barrier;
  }
  run_pinned(tasks, nworkers);
  for (int i = 0; i < nworkers; i++)
    drop_task(&tasks[i]);
  pthread_barrier_destroy(&barrier);
}

static double pct(const struct result *r)
{
  return r->pages ? 100.0 * (double)r->local / (double)r->pages : 0.0;
}

static void print_result(const struct result *r)
{
  printf("scenario=%s thread_node=%d expected=%d pages=%zu local=%zu pct=%.1f", r->scenario,
         r->node, r->expected, r->pages, r->local, pct(r));
  if (r->local < r->pages) {
    const char *sep = " others=";
    for (int id = 0; id < MAX_NODES; id++)
      if (id != r->expected && r->on[id]) {
        printf("%s%d:%zu", sep, id, r->on[id]);
        sep = ",";
      }
  }
  if (r->absent || r->mismatch)
    printf(" absent=%zu mismatch=%zu", r->absent, r->mismatch);
  if (r->stray_runs)
    printf(" strays=%#lx-%#lx runs=%zu", (unsigned long)r->stray_lo,
           (unsigned long)(r->stray_hi + page_size), r->stray_runs);
  printf("\n");
}

static void print_new_results(void)
{
  static int printed;
  while (printed < nresults)
    print_result(&results[printed++]);
}

/* The kernel's view of every mapping (policy and pages per node), for a failure
 * report: it shows whether the stray pages sit in a range bound to another node
 * or were placed by first touch. */
static void print_numa_maps(void)
{
  FILE *f = fopen("/proc/self/numa_maps", "r");
  if (!f)
    return;
  char line[512];
  while (fgets(line, sizeof line, f))
    printf("numa_maps: %s", line);
  fclose(f);
}

/* ------------------------------------------------------------------------------
 * Self-check: on every node with CPUs, first-touched mmap pages read back the
 * same node through both syscalls, and it is the expected node.
 * ---------------------------------------------------------------------------- */

static void task_self_check(struct task *t)
{
  unsigned char *p = xmap(page_size * 4);
  memset(p, 1, page_size * 4);
  struct result *r = t->result;
  for (int k = 0; k < 4; k++) {
    void *a = p + k * page_size;
    int st = -1;
    if (syscall(SYS_move_pages, 0, 1UL, &a, NULL, &st, 0) != 0)
      st = -errno - 1000;
    int gm = page_node_mempolicy(a);
    printf("self-check: thread_node=%d expected=%d page=%d get_mempolicy=%d move_pages=%d\n",
           r->node, r->expected, k, gm, st);
    r->pages++;
    if (gm == st && gm == r->expected)
      r->local++;
  }
  munmap(p, page_size * 4);
}

static int self_check(void)
{
  struct task tasks[MAX_NODES];
  struct result res[MAX_NODES];
  for (int i = 0; i < nworkers; i++)
    tasks[i] = make_task(i, task_self_check, "self-check", MIX_SMALL, 0, &res[i]);
  for (int i = 0; i < nworkers; i++)
    run_pinned(&tasks[i], 1); /* one at a time: the lines stay in order */
  int bad = 0;
  for (int i = 0; i < nworkers; i++) {
    bad += res[i].local != res[i].pages;
    drop_task(&tasks[i]);
  }
  printf("self-check: %s\n", bad ? "FAILED (the kernel's answers disagree or are not local)"
                                 : "ok");
  return bad ? 1 : 0;
}

/* --main-hop: the single-threaded start of a program whose main thread moves
 * between nodes before it starts threads. The probe re-executes itself pinned to
 * the last worker's node, so the allocator's first heap pages are touched there;
 * then main moves to the first worker's node, allocates, touches and frees a small
 * mix, and is unpinned. An allocator that files all of that early memory under
 * one node hands the first node's pages to the last node's threads later. */
#define HOP_ENV "NUMA_PROBE_HOPPED"

static void set_affinity(const cpu_set_t *cpus)
{
  if ((errno = pthread_setaffinity_np(pthread_self(), sizeof *cpus, cpus)) != 0)
    die("pthread_setaffinity_np");
}

/* Before the allocator has been used much: pin to the first-touch node, re-exec. */
static void hop_reexec(char **argv)
{
  if (getenv(HOP_ENV))
    return;
  set_affinity(&nodes[workers[nworkers - 1]].cpus);
  if (setenv(HOP_ENV, "1", 1) != 0)
    die("setenv");
  execv("/proc/self/exe", argv);
  die("execv /proc/self/exe");
}

static void hop_run(void)
{
  const struct node *from = &nodes[workers[nworkers - 1]], *to = &nodes[workers[0]];
  set_affinity(&to->cpus);
  struct block *b = xmap(MAX_BLOCKS * sizeof *b);
  struct result scratch = {0};
  size_t n = mix_alloc(MIX_SMALL, 7, b, &scratch, 0x77, false);
  mix_free(b, n);
  munmap(b, MAX_BLOCKS * sizeof *b);
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int i = 0; i < nworkers; i++)
    CPU_OR(&all, &all, &nodes[workers[i]].cpus);
  set_affinity(&all);
  printf("main_hop: started on node %d, then %zu blocks touched and freed on node %d\n",
         from->id, n, to->id);
}

/* ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
  fprintf(f,
          "usage: numa_probe [--assert] [--self-check] [--allow-one-node]\n"
          "  Measures on which NUMA node the allocator's pages land, per scenario and\n"
          "  per node thread (malloc comes from LD_PRELOAD or libc).\n"
          "  --assert      exit 1 unless every thread has >= %.0f%% of its pages on its\n"
          "                expected node in every scenario\n"
          "  --self-check  only check that page nodes can be read (works on one node)\n"
          "  --allow-one-node  run the scenarios on one node too (exercises the probe;\n"
          "                every page is local there, so it proves no placement)\n"
          "  --main-hop    first run main on the last worker node, then allocate and\n"
          "                free on the first, before any thread starts (needs 2 nodes)\n"
          "exit: 0 ok, 1 assertion failed, 2 cannot measure, 77 one node only\n",
          MIN_LOCAL_PCT);
}

int main(int argc, char **argv)
{
  bool assert_mode = false, self_check_mode = false, allow_one_node = false, main_hop = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--assert"))
      assert_mode = true;
    else if (!strcmp(argv[i], "--self-check"))
      self_check_mode = true;
    else if (!strcmp(argv[i], "--allow-one-node"))
      allow_one_node = true;
    else if (!strcmp(argv[i], "--main-hop"))
      main_hop = true;
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  page_size = (size_t)sysconf(_SC_PAGESIZE);
  read_topology();
  for (int i = 0; i < nnodes; i++)
    if (nodes[i].ncpus > 0)
      workers[nworkers++] = i;
  if (main_hop && nworkers >= 2)
    hop_reexec(argv);
  print_topology();
  /* Which library serves malloc: a preload the loader refused would otherwise
   * measure libc in silence. */
  Dl_info info;
  void *m = dlsym(RTLD_DEFAULT, "malloc");
  printf("malloc_from=%s\n", m && dladdr(m, &info) && info.dli_fname ? info.dli_fname : "?");
  if (nworkers == 0) {
    fprintf(stderr, "numa_probe: no node has CPUs\n");
    return 2;
  }
  for (int i = 0; i < nworkers; i++)
    if (nodes[workers[i]].expected < 0) {
      fprintf(stderr, "numa_probe: no node has memory\n");
      return 2;
    }
  if (self_check_mode)
    return self_check();
  if (nnodes < 2 && !allow_one_node) {
    printf("numa_probe: one NUMA node (node %d): nothing to prove, skipping\n", nodes[0].id);
    return 77;
  }

  if (main_hop && nworkers < 2) {
    fprintf(stderr, "numa_probe: --main-hop needs two nodes with CPUs\n");
    return 2;
  }
  if (main_hop)
    hop_run();
  print_free_memory("start");
  double t0 = now_ms();
  /* fresh must run first: it is the only phase the allocator meets with nothing
   * freed yet. */
  /* Lines are printed as each scenario ends, so a crash still shows how far it got. */
  scenario_all("fresh", task_measure, MIX_SMALL);
  print_new_results();
  scenario_reuse("reuse", MIX_SMALL);
  print_new_results();
  scenario_reuse("large", MIX_LARGE);
  print_new_results();
  scenario_reuse("calloc", MIX_CALLOC);
  print_new_results();
  scenario_cross();
  print_new_results();
  int control_first = nresults;
  scenario_all("control", task_control, MIX_SMALL);
  print_new_results();
  double elapsed = now_ms() - t0;
  print_free_memory("end");

  int failed = 0, dirty = 0, broken = 0;
  for (int i = 0; i < nresults; i++) {
    const struct result *r = &results[i];
    if (r->calloc_dirty) {
      printf("ERROR scenario=%s thread_node=%d: calloc returned %zu non-zero bytes\n",
             r->scenario, r->node, r->calloc_dirty);
      dirty++;
    }
    if (r->mismatch || r->absent)
      broken++;
    if (i >= control_first && pct(r) < MIN_LOCAL_PCT)
      broken++;
  }
  /* Summary: the lowest share per scenario, in the order they ran. */
  printf("summary:");
  for (int i = 0; i < nresults; i++) {
    bool first = true;
    for (int j = 0; j < i; j++)
      first &= strcmp(results[j].scenario, results[i].scenario) != 0;
    if (!first)
      continue;
    double lo = 100.0;
    for (int j = i; j < nresults; j++)
      if (!strcmp(results[j].scenario, results[i].scenario) && pct(&results[j]) < lo)
        lo = pct(&results[j]);
    printf(" %s=%.1f", results[i].scenario, lo);
  }
  printf(" nodes=%d threads=%d time_ms=%.0f\n", nnodes, nworkers, elapsed);

  if (broken) {
    printf("numa_probe: ERROR: the kernel's page nodes are inconsistent or the mmap control "
           "is not local: the measurement cannot be trusted\n");
    return 2;
  }
  if (dirty)
    return 1;
  if (assert_mode) {
    for (int i = 0; i < control_first; i++) {
      const struct result *r = &results[i];
      if (pct(r) < MIN_LOCAL_PCT) {
        printf("FAIL scenario=%s thread_node=%d expected=%d: %.1f%% of %zu pages local "
               "(< %.0f%%)\n", r->scenario, r->node, r->expected, pct(r), r->pages,
               MIN_LOCAL_PCT);
        failed++;
      }
    }
    if (failed)
      print_numa_maps();
    printf("numa_probe: %s\n", failed ? "FAIL" : "PASS");
  }
  return failed ? 1 : 0;
}
