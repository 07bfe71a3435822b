/* Size classes (size_class.c): the request -> class table and per-class
 * figures, filled once at start (init.c) and read-only after; the inline
 * classing and object-index arithmetic of the fast paths. */

#ifndef BRISK_SIZE_CLASS_H
#define BRISK_SIZE_CLASS_H
#include "base.h"

#pragma GCC visibility push(hidden)

/* Sizes up to this are classed through a table of 16-byte steps; above, up to
 * BRISK_SMALL_MAX, through one of 128-byte steps, which is exact there since
 * every class above 1 KiB is a multiple of 128 (1152, 1280, ..., 2304, ...):
 * a table read where the arithmetic of the top four bits cost malloc seven
 * instructions more (micro/pair/2048 to 65536 under callgrind: 108.4 -> 101.5). */
#define BRISK_CLASS_TABLE_MAX 1024
#define BRISK_CLASS_TABLE2_SHIFT 7

/* 32 bytes, so free() indexes the table with a shift. */
typedef struct brisk_class_info_s {
  uint32_t size;       /* object size */
  uint32_t batch;      /* objects moved between a thread cache and spans at once */
  uint32_t span_pages; /* pages in a span of this class */
  uint32_t span_objs;  /* objects in such a span */
  uint64_t inv;        /* the inverse mod 2^64 of size's odd part (brisk__obj_index) */
  uint32_t rot;        /* size's trailing zero bits */
  uint32_t limit;      /* span_objs * size: where a span's objects end */
} brisk_class_info_t;

extern brisk_class_info_t brisk__classes[BRISK_CLASSES];
extern uint8_t brisk__class_table[BRISK_CLASS_TABLE_MAX / 16 + 1];
extern uint8_t brisk__class_table2[(BRISK_SMALL_MAX >> BRISK_CLASS_TABLE2_SHIFT) + 1];

void brisk__size_class_init(void);
unsigned brisk__size_to_class_slow(size_t size); /* any size <= BRISK_SMALL_MAX */
/* The smallest class whose size is >= size and a multiple of align (0 if none). */
unsigned brisk__size_to_class_aligned(size_t size, size_t align);

/* For size <= BRISK_SMALL_MAX (0 until the tables are filled). */
static inline unsigned brisk__size_to_class_above(size_t size) { /* size > BRISK_CLASS_TABLE_MAX */
  return brisk__class_table2[(size + ((size_t)1 << BRISK_CLASS_TABLE2_SHIFT) - 1) >> BRISK_CLASS_TABLE2_SHIFT];
}
static inline unsigned brisk__size_to_class(size_t size) {
  if (brisk_likely(size <= BRISK_CLASS_TABLE_MAX)) return brisk__class_table[(size + 15) >> 4];
  return brisk__size_to_class_above(size);
}

/* The index of the object at byte offset off of a span of class ci, or a value
 * of span_objs or more when off is not an object's start or lies past the last:
 * the exact-division test of Granlund and Montgomery. For off = q * size the
 * product with the odd part's inverse is q << rot, and rotating it back gives
 * q; for any other off the rotated product exceeds 2^64 / size, which is more
 * than span_objs. One multiply, one rotate, one compare in free(). */
static inline uint64_t brisk__obj_index_by(uint64_t inv, unsigned rot, uintptr_t off) {
  uint64_t x = (uint64_t)off * inv;
  return (x >> rot) | (x << ((64 - rot) & 63));
}
static inline uint64_t brisk__obj_index(const brisk_class_info_t *ci, uintptr_t off) {
  return brisk__obj_index_by(ci->inv, ci->rot, off);
}

#pragma GCC visibility pop
#endif /* BRISK_SIZE_CLASS_H */
