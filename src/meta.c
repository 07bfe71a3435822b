/* Metadata: span descriptors and other internal records. They never come from
 * malloc (brisk is malloc) but from chunks mmap'd here, each between two
 * PROT_NONE guard pages so that no program block can overflow into them, and
 * kept for the life of the process; freed span descriptors go on a free list
 * for reuse. meta_lock guards everything in this file. */
#include "meta.h"
#include "pagemap.h"
#include "os.h"
#include "counters.h"

#define META_CHUNK ((size_t)256 * 1024)

/* Each chunk opens with this line, which lists it for the statistics. */
typedef struct meta_chunk_s {
  struct meta_chunk_s *next;
  size_t bytes; /* the chunk's, this line included */
} __attribute__((aligned(BRISK_CACHE_LINE))) meta_chunk_t;
_Static_assert(sizeof(meta_chunk_t) == BRISK_META_CHUNK_HEADER, "the header meta.h names");

static brisk_lock_t meta_lock = BRISK_LOCK_INIT(BRISK_RANK_META);
static char *meta_cur, *meta_end;
static brisk_span_t *span_free;
static meta_chunk_t *chunks;

static void *meta_alloc_locked(size_t size) {
  size = brisk__align_up(size, BRISK_CACHE_LINE);
  if ((size_t)(meta_end - meta_cur) < size) {
    size_t need = size + sizeof(meta_chunk_t);
    size_t chunk = need > META_CHUNK ? brisk__align_up(need, brisk__os_page) : META_CHUNK;
    meta_chunk_t *c = brisk__os_mmap_guarded(chunk);
    if (c == NULL) return NULL;
    brisk__stat_meta(chunk);
    c->bytes = chunk;
    c->next = chunks;
    chunks = c;
    meta_cur = (char *)(c + 1);
    meta_end = (char *)c + chunk;
  }
  void *r = meta_cur;
  meta_cur += size;
  return r; /* fresh mmap memory is zero */
}

void *brisk__meta_alloc(size_t size) {
  brisk__lock(&meta_lock);
  void *p = meta_alloc_locked(size);
  brisk__unlock(&meta_lock);
  return p;
}

/* The page map keeps a span's node in the low bits of its descriptor's address. */
_Static_assert(BRISK_CACHE_LINE > BRISK_PM_NODE_MASK && BRISK_MAX_NODES <= BRISK_PM_NODE_MASK + 1,
               "span descriptors must be aligned beyond the node bits");

brisk_span_t *brisk__span_new(void) {
  brisk__lock(&meta_lock);
  brisk_span_t *s = span_free;
  if (s != NULL) span_free = s->next;
  else s = meta_alloc_locked(sizeof(brisk_span_t));
  brisk__unlock(&meta_lock);
  if (s != NULL) memset(s, 0, sizeof *s);
  return s;
}

unsigned brisk__span_new_batch(brisk_span_t **list, unsigned n) {
  unsigned k = 0;
  *list = NULL;
  brisk__lock(&meta_lock);
  for (; k < n; k++) {
    brisk_span_t *s = span_free;
    if (s != NULL) span_free = s->next;
    else if ((s = meta_alloc_locked(sizeof(brisk_span_t))) == NULL) break;
    memset(s, 0, sizeof *s);
    s->next = *list;
    *list = s;
  }
  brisk__unlock(&meta_lock);
  return k;
}

void brisk__span_delete(brisk_span_t *s) {
  brisk__lock(&meta_lock);
  s->state = 0;
  s->next = span_free;
  span_free = s;
  brisk__unlock(&meta_lock);
}

void brisk__meta_fork_lock(void) { brisk__lock_fork(&meta_lock); }
void brisk__meta_fork_unlock(void) { brisk__unlock_fork(&meta_lock); }

void brisk__meta_regions(brisk_region_fn fn, void *arg) {
  brisk__lock(&meta_lock);
  for (const meta_chunk_t *c = chunks; c != NULL; c = c->next) fn(arg, (uintptr_t)c, c->bytes, BRISK_VMA_META);
  brisk__unlock(&meta_lock);
}
