/* Size classes: the table that maps a request to a class, and per class the span
 * size and the batch moved between thread caches and spans. Filled once
 * at start (init.c) and read-only after; the fast path reads brisk__class_table
 * before start-up too, where every entry is 0: class 0's thread-cache list is
 * always empty, so such a call falls to the slow path, which starts brisk.
 *
 * Classes: 16, 32, ..., 128 (16-byte steps), then 8 per doubling: 144, 160, ...,
 * 256, 288, ..., 512, ... up to BRISK_SMALL_MAX. A request just above a class
 * boundary 2^k wastes at most 2^(k-3) - 1 bytes, under 1/8 of it. */
#include "size_class.h"

brisk_class_info_t brisk__classes[BRISK_CLASSES];
uint8_t brisk__class_table[BRISK_CLASS_TABLE_MAX / 16 + 1];
uint8_t brisk__class_table2[(BRISK_SMALL_MAX >> BRISK_CLASS_TABLE2_SHIFT) + 1];

/* Thread caches move objects in batches of about this many bytes: enough to pay
 * for a refill's trip to the spans, little enough that a thread holding one batch of every
 * class stays small. */
#define BATCH_BYTES (32 * 1024)
#define BATCH_MIN 2
#define BATCH_MAX 64

static inline unsigned floor_log2(size_t x) { return 63u - (unsigned)__builtin_clzll(x); }

static size_t class_size_of(unsigned cls) {
  if (cls <= BRISK_CLASS_STEP_MAX / 16) return (size_t)cls * 16;
  unsigned j = cls - BRISK_CLASS_STEP_MAX / 16 - 1; /* 0-based among the doublings */
  unsigned k = 7 + j / 8;                            /* 2^7 = 128 */
  unsigned m = j % 8 + 1;
  return ((size_t)1 << k) + (size_t)m * ((size_t)1 << (k - 3));
}

unsigned brisk__size_to_class_slow(size_t size) {
  if (size <= BRISK_CLASS_STEP_MAX) return size == 0 ? 1 : (unsigned)((size + 15) >> 4);
  size_t s = size - 1;
  unsigned k = floor_log2(s); /* >= 7 */
  unsigned m = (unsigned)(s >> (k - 3)) & 7;
  return BRISK_CLASS_STEP_MAX / 16 + (k - 7) * 8 + m + 1;
}

/* Spans start on a brisk page and objects sit at multiples of their size, so a
 * class whose size is a multiple of align gives aligned objects. aligned_next[k]
 * [cls] is the first class from cls on whose size is a multiple of 2^(k+5) (0 if
 * none): memalign costs two table reads, not a search with divisions. */
#define ALIGN_MIN_SHIFT 5 /* 16 and below: every class */
#define ALIGN_SHIFTS (BRISK_PAGE_SHIFT - ALIGN_MIN_SHIFT + 1)
static uint8_t aligned_next[ALIGN_SHIFTS][BRISK_CLASSES];

static void aligned_init(void) {
  for (unsigned k = 0; k < ALIGN_SHIFTS; k++) {
    uint32_t mask = ((uint32_t)1 << (k + ALIGN_MIN_SHIFT)) - 1;
    unsigned next = 0;
    for (unsigned cls = BRISK_CLASSES - 1; cls >= 1; cls--) {
      if ((brisk__classes[cls].size & mask) == 0) next = cls;
      aligned_next[k][cls] = (uint8_t)next;
    }
  }
}

unsigned brisk__size_to_class_aligned(size_t size, size_t align) {
  if (size > BRISK_SMALL_MAX || align > BRISK_PAGE_SIZE) return 0;
  unsigned cls = brisk__size_to_class(size ? size : 1);
  if (align <= BRISK_ALIGN) return cls;
  return aligned_next[63u - (unsigned)__builtin_clzll(align) - ALIGN_MIN_SHIFT][cls];
}

/* The span's length: of the lengths from the fewest pages that hold a few
 * objects up to four times that, the shortest that leaves at most 1/32 of the
 * span unused at its end, or else the one that leaves the least. The tail is
 * lost for as long as the span lives, in every span of the class: a program
 * that keeps thousands of blocks of one size (sqlite3's page cache: blocks of
 * 4368 B in class 4608) paid it on top of the class's rounding, up to 12.5 %
 * where the rule was the fewest pages under 1/8. A longer span costs no more
 * memory until its objects are carved, which refills do a batch at a time. */
#define SPAN_TAIL_MAX_DIV 32
static uint32_t span_pages_for(size_t size) {
  size_t min_bytes = size * 4 > BRISK_PAGE_SIZE ? size * 4 : BRISK_PAGE_SIZE;
  size_t first = (min_bytes + BRISK_PAGE_SIZE - 1) / BRISK_PAGE_SIZE, best = first;
  for (size_t pages = first; pages <= 4 * first; pages++) {
    size_t bytes = pages * BRISK_PAGE_SIZE, best_bytes = best * BRISK_PAGE_SIZE;
    if (bytes % size <= bytes / SPAN_TAIL_MAX_DIV) return (uint32_t)pages;
    if ((bytes % size) * best_bytes < (best_bytes % size) * bytes) best = pages; /* a smaller share left */
  }
  return (uint32_t)best;
}

void brisk__size_class_init(void) {
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) {
    brisk_class_info_t *c = &brisk__classes[cls];
    size_t size = class_size_of(cls);
    c->size = (uint32_t)size;
    size_t batch = BATCH_BYTES / size;
    c->batch = (uint32_t)(batch < BATCH_MIN ? BATCH_MIN : batch > BATCH_MAX ? BATCH_MAX : batch);
    c->span_pages = span_pages_for(size);
    c->span_objs = (uint32_t)(c->span_pages * BRISK_PAGE_SIZE / size);
    c->rot = (uint32_t)__builtin_ctzll(size);
    uint64_t odd = size >> c->rot, inv = odd; /* odd * odd == 1 mod 8: 3 bits right */
    for (int i = 0; i < 5; i++) inv *= 2 - odd * inv; /* Newton: 6, 12, 24, 48, 96 bits */
    c->inv = inv;
    c->limit = c->span_objs * c->size;
  }
  brisk_assert(class_size_of(BRISK_CLASSES - 1) == BRISK_SMALL_MAX);
  for (unsigned cls = 1; cls < BRISK_CLASSES; cls++) /* what makes the 128-byte table exact */
    brisk_assert(class_size_of(cls) <= BRISK_CLASS_TABLE_MAX || class_size_of(cls) % ((size_t)1 << BRISK_CLASS_TABLE2_SHIFT) == 0);
  _Static_assert(sizeof(brisk_class_info_t) == 32, "class info indexed by shift");
  aligned_init();
  /* Written last: the table being non-zero is what lets fast paths hit. */
  for (size_t i = 0; i <= BRISK_CLASS_TABLE_MAX / 16; i++)
    brisk__class_table[i] = (uint8_t)brisk__size_to_class_slow(i * 16);
  for (size_t i = (BRISK_CLASS_TABLE_MAX >> BRISK_CLASS_TABLE2_SHIFT) + 1; i <= BRISK_SMALL_MAX >> BRISK_CLASS_TABLE2_SHIFT; i++)
    brisk__class_table2[i] = (uint8_t)brisk__size_to_class_slow(i << BRISK_CLASS_TABLE2_SHIFT);
}
