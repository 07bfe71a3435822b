/* Heap profiles (BRISK_PROF): the records of the sampled allocations that are
 * still live, grouped by call stack, and the writer of gperftools' heap profile
 * text format (read by google-pprof and go tool pprof). alloc.c decides which
 * allocations are sampled and hangs each record on its block (a large span, or
 * a guarded slot), whose free hands it back here.
 *
 * Owns: the stack table (a hash of unique stacks, never freed) and the records
 * (a free list), all in metadata memory, guarded by prof_lock (rank PROF: taken
 * with no lock held, or after the guard lock is dropped; meta's lock nests in
 * it). Stacks are captured before the lock, by backtrace.c; a per-thread flag
 * makes the allocations that libgcc's unwinder makes plain ones. */
#include "prof.h"
#include "backtrace.h"
#include "meta.h"
#include "options.h"
#include "os.h"
#include "stats.h" /* upward: brisk__expand_path */
#include "init.h" /* upward: brisk__init_state */

/* Frames kept per stack: enough for the callers that tell sites apart, as
 * gperftools keeps 30 or so. */
#define PROF_MAX_DEPTH 32
/* Frames unwound to find the caller of malloc: brisk's own take a few. */
#define PROF_RAW_DEPTH (PROF_MAX_DEPTH + 8)
/* Hash buckets of the stack table: chains stay short up to tens of thousands
 * of unique stacks; 32 KiB of metadata, made at the first sample. */
#define PROF_BUCKETS 4096u
/* Records made at a time when the free list is empty. */
#define PROF_REC_BATCH 256u

typedef struct prof_stack_s {
  struct prof_stack_s *next; /* hash chain */
  uint64_t hash;
  uint64_t live_objs, live_bytes;   /* sampled and not freed */
  uint64_t alloc_objs, alloc_bytes; /* every sample since the start */
  uint32_t depth;
  uintptr_t pcs[]; /* return addresses, the caller of malloc first */
} prof_stack_t;

struct brisk_prof_rec_s {
  prof_stack_t *stack; /* NULL while on the free list */
  size_t size;         /* the size asked for */
  brisk_prof_rec_t *next_free;
};

static brisk_lock_t prof_lock = BRISK_LOCK_INIT(BRISK_RANK_PROF);
static prof_stack_t **buckets;     /* PROF_BUCKETS chains, or NULL before the first sample */
static brisk_prof_rec_t *free_recs;
static uint64_t dumps;             /* profiles written on the trigger so far */
/* Set while this thread captures a stack or writes a profile. */
static __thread uint8_t prof_busy;

bool brisk__prof_ready(void) { return brisk__opt.prof && brisk__opt.prof_sample != 0 && !prof_busy; }

/* ------------------------------------------------------------------------------
   Stacks
------------------------------------------------------------------------------ */

/* The stack from the caller of malloc (site) outwards, into out; its depth.
 * Frames before site are brisk's own; if site is not among the frames (a
 * caller without unwind tables), the stack is kept whole. */
static unsigned stack_capture(const void *site, uintptr_t out[PROF_MAX_DEPTH]) {
  uintptr_t raw[PROF_RAW_DEPTH];
  unsigned got = brisk__unwind(raw, PROF_RAW_DEPTH);
  unsigned from = 0;
  while (from < got && raw[from] != (uintptr_t)site) from++;
  if (from == got) from = 0;
  unsigned n = 0;
  if (got == 0 && site != NULL) out[n++] = (uintptr_t)site;
  for (unsigned i = from; i < got && n < PROF_MAX_DEPTH; i++) out[n++] = raw[i];
  return n;
}

static uint64_t stack_hash(const uintptr_t *pcs, unsigned n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  for (unsigned i = 0; i < n; i++) {
    h ^= pcs[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  }
  return h;
}

/* Under prof_lock: the table's entry for this stack, made if new; NULL when
 * metadata is exhausted. */
static prof_stack_t *stack_find(const uintptr_t *pcs, unsigned n) {
  if (buckets == NULL && (buckets = brisk__meta_alloc(PROF_BUCKETS * sizeof *buckets)) == NULL) return NULL;
  uint64_t h = stack_hash(pcs, n);
  prof_stack_t **b = &buckets[h % PROF_BUCKETS];
  for (prof_stack_t *s = *b; s != NULL; s = s->next)
    if (s->hash == h && s->depth == n && memcmp(s->pcs, pcs, n * sizeof *pcs) == 0) return s;
  prof_stack_t *s = brisk__meta_alloc(sizeof *s + n * sizeof *pcs);
  if (s == NULL) return NULL;
  s->hash = h;
  s->depth = n;
  memcpy(s->pcs, pcs, n * sizeof *pcs);
  s->next = *b;
  *b = s;
  return s;
}

/* ------------------------------------------------------------------------------
   Records
------------------------------------------------------------------------------ */

/* Under prof_lock. */
static brisk_prof_rec_t *rec_take(void) {
  if (free_recs == NULL) {
    brisk_prof_rec_t *batch = brisk__meta_alloc(PROF_REC_BATCH * sizeof *batch);
    if (batch == NULL) return NULL;
    for (unsigned i = 0; i < PROF_REC_BATCH; i++) {
      batch[i].next_free = free_recs;
      free_recs = &batch[i];
    }
  }
  brisk_prof_rec_t *r = free_recs;
  free_recs = r->next_free;
  return r;
}

brisk_prof_rec_t *brisk__prof_record(size_t size, const void *site) {
  uintptr_t pcs[PROF_MAX_DEPTH];
  prof_busy = 1; /* the unwinder's first use loads its tables, and may malloc */
  unsigned n = stack_capture(site, pcs);
  brisk_prof_rec_t *r = NULL;
  brisk__lock(&prof_lock);
  prof_stack_t *s = stack_find(pcs, n);
  if (s != NULL && (r = rec_take()) != NULL) {
    r->stack = s;
    r->size = size;
    s->live_objs++;
    s->live_bytes += size;
    s->alloc_objs++;
    s->alloc_bytes += size;
  }
  brisk__unlock(&prof_lock);
  prof_busy = 0;
  return r;
}

static void rec_drop(brisk_prof_rec_t *r, bool unsampled) {
  if (r == NULL) return;
  brisk__lock(&prof_lock);
  prof_stack_t *s = r->stack;
  s->live_objs--;
  s->live_bytes -= r->size;
  if (unsampled) {
    s->alloc_objs--;
    s->alloc_bytes -= r->size;
  }
  r->stack = NULL;
  r->next_free = free_recs;
  free_recs = r;
  brisk__unlock(&prof_lock);
}

void brisk__prof_forget(brisk_prof_rec_t *r) { rec_drop(r, false); }
void brisk__prof_cancel(brisk_prof_rec_t *r) { rec_drop(r, true); }

void brisk__prof_fork_lock(void) { brisk__lock_fork(&prof_lock); }
void brisk__prof_fork_unlock(void) { brisk__unlock_fork(&prof_lock); }

/* ------------------------------------------------------------------------------
   The profile: gperftools' legacy heap format, which both pprofs read.

     heap profile: <live objs>: <live bytes> [<objs>: <bytes>] @ heap_v2/<rate>
     <live objs>: <live bytes> [<objs>: <bytes>] @ 0x<pc> 0x<pc> ...   (per stack)

     MAPPED_LIBRARIES:
     <the contents of /proc/self/maps>

   The counts are the samples themselves; heap_v2/<rate> tells pprof that each
   sample of average size a stands for 1 / (1 - exp(-a / rate)) of its kind, and
   it scales them back. Written with no malloc: lines go through a stack buffer.
------------------------------------------------------------------------------ */
#define PROF_OUT_BUF 4096
#define PROF_LINE_MAX (64 + PROF_MAX_DEPTH * 20)

typedef struct {
  int fd;
  size_t len;
  char buf[PROF_OUT_BUF];
} out_t;

static void out_flush(out_t *o) {
  brisk__os_write(o->fd, o->buf, o->len);
  o->len = 0;
}

static void out_line(out_t *o, const char *s, size_t n) {
  if (o->len + n > sizeof o->buf) out_flush(o);
  memcpy(o->buf + o->len, s, n);
  o->len += n;
}

static void out_counts(out_t *o, const char *head, uint64_t lo, uint64_t lb, uint64_t ao, uint64_t ab) {
  char line[96];
  int n = brisk__snprintf(line, sizeof line, "%s%llu: %llu [%llu: %llu] @", head, (unsigned long long)lo,
                          (unsigned long long)lb, (unsigned long long)ao, (unsigned long long)ab);
  out_line(o, line, (size_t)n);
}

/* Under prof_lock. */
static void profile_write(out_t *o) {
  uint64_t lo = 0, lb = 0, ao = 0, ab = 0;
  for (unsigned i = 0; buckets != NULL && i < PROF_BUCKETS; i++)
    for (const prof_stack_t *s = buckets[i]; s != NULL; s = s->next) {
      lo += s->live_objs;
      lb += s->live_bytes;
      ao += s->alloc_objs;
      ab += s->alloc_bytes;
    }
  out_counts(o, "heap profile: ", lo, lb, ao, ab);
  char line[PROF_LINE_MAX];
  int n = brisk__snprintf(line, sizeof line, " heap_v2/%zu\n", brisk__opt.prof_sample);
  out_line(o, line, (size_t)n);
  for (unsigned i = 0; buckets != NULL && i < PROF_BUCKETS; i++)
    for (const prof_stack_t *s = buckets[i]; s != NULL; s = s->next) {
      out_counts(o, "", s->live_objs, s->live_bytes, s->alloc_objs, s->alloc_bytes);
      size_t len = 0;
      for (uint32_t d = 0; d < s->depth; d++)
        len += (size_t)brisk__snprintf(line + len, sizeof line - len, " %p", (void *)s->pcs[d]);
      line[len++] = '\n';
      out_line(o, line, len);
    }
  static const char maps_head[] = "\nMAPPED_LIBRARIES:\n";
  out_line(o, maps_head, sizeof maps_head - 1);
  out_flush(o);
  int fd = brisk__os_open_read("/proc/self/maps");
  if (fd < 0) return;
  long r;
  while ((r = brisk__os_read(fd, o->buf, sizeof o->buf)) > 0) brisk__os_write(o->fd, o->buf, (size_t)r);
  brisk__os_close(fd);
}

/* The profile into the file at path: 0, or an errno value. */
static int profile_dump(const char *path) {
  if (!brisk__opt.prof) return EINVAL;
  int fd = brisk__os_create_file_err(path);
  if (fd < 0) return -fd;
  out_t o;
  o.fd = fd;
  o.len = 0;
  prof_busy = 1;
  brisk__lock(&prof_lock);
  profile_write(&o);
  brisk__unlock(&prof_lock);
  prof_busy = 0;
  brisk__os_close(fd);
  return 0;
}

int brisk_prof_dump(const char *path) {
  if (atomic_load_explicit(&brisk__init_state, memory_order_acquire) != 2) return EINVAL;
  if (path == NULL || path[0] == 0) return EINVAL;
  return profile_dump(path);
}

/* BRISK_PROF_FILE, %p expanded, with suffix (a trigger's sequence number). */
static void dump_to_file(const char *suffix) {
  char path[BRISK_PATH_OPT_MAX + 64];
  if (!brisk__expand_path(brisk__opt.prof_file, path, sizeof path - 32)) {
    brisk__printf_err("brisk: BRISK_PROF_FILE '%s' is too long once expanded\n", brisk__opt.prof_file);
    return;
  }
  size_t n = strlen(path);
  memcpy(path + n, suffix, strlen(suffix) + 1);
  int err = profile_dump(path);
  if (err != 0) brisk__printf_err("brisk: cannot write the heap profile to '%s' (errno %d)\n", path, err);
}

void brisk__prof_at_exit(void) {
  if (atomic_load_explicit(&brisk__init_state, memory_order_acquire) != 2 || !brisk__opt.prof ||
      brisk__opt.prof_file[0] == 0)
    return;
  dump_to_file("");
}

/* The trigger's dumps are numbered, so that each one stays. */
void brisk__prof_poll(void) {
  if (!brisk__opt.prof || brisk__opt.prof_trigger[0] == 0 || brisk__opt.prof_file[0] == 0) return;
  if (!brisk__os_file_exists(brisk__opt.prof_trigger)) return;
  char suffix[32];
  brisk__snprintf(suffix, sizeof suffix, ".%llu", (unsigned long long)++dumps);
  dump_to_file(suffix);
  brisk__os_remove_file(brisk__opt.prof_trigger);
}
