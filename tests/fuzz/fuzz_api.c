/* libFuzzer over brisk's prefixed API, with a shadow model. The input is a
 * program of operations (malloc, calloc, realloc, reallocarray, the aligned
 * forms, free, free_sized, usable_size, trim) on 64 slots; the model knows each
 * live block's requested size and the byte pattern written into it, and checks
 * after every operation what a correct allocator guarantees:
 *   - a block is aligned (16, or the alignment asked for) and its usable size
 *     covers the request;
 *   - no two live blocks overlap;
 *   - a block's contents stay as written until it is freed (realloc keeps the
 *     common prefix), and calloc's block is zero up to its usable size;
 *   - impossible requests fail with ENOMEM (EINVAL for a bad alignment).
 * brisk is built here with its debug assertions on, so an internal invariant
 * that breaks aborts too. The harness itself runs on glibc's malloc.
 *
 * Run by the test command for BRISK_FUZZ_SECONDS (CMake, default 60); by hand:
 *   build/tests/fuzz/fuzz_api -max_total_time=3600 [corpus-dir] */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brisk.h"

#define SLOTS 64
/* Bytes of a block the model fills and checks at each end: enough to catch
 * overlap and corruption without making a 4 MiB block cost 4 MiB per check. */
#define CHECKED 4096

typedef struct {
  unsigned char *p;
  size_t size, align;
  unsigned char seed;
} slot_t;

static slot_t slots[SLOTS];

static void die(const char *what, size_t i, const void *p, size_t size) {
  fprintf(stderr, "fuzz_api: %s (slot %zu, %p, size %zu)\n", what, i, p, size);
  abort();
}

static unsigned char pattern(unsigned char seed, size_t off) { return (unsigned char)(seed + off * 131u); }

/* The checked offsets of a block: the first and last CHECKED bytes. */
#define FOR_CHECKED(size, off)                                                           \
  for (size_t off = 0; off < (size); off = (off + 1 == CHECKED && (size) > 2 * CHECKED) ? (size) - CHECKED : off + 1)

/* Whether offset off of a block of size bytes is one that fill() wrote. */
static int filled(size_t size, size_t off) { return off < CHECKED || size <= 2 * CHECKED || off >= size - CHECKED; }

static void fill(slot_t *s) {
  FOR_CHECKED(s->size, off) s->p[off] = pattern(s->seed, off);
}

static void verify(size_t i) {
  slot_t *s = &slots[i];
  FOR_CHECKED(s->size, off) if (s->p[off] != pattern(s->seed, off)) die("contents changed", i, s->p, s->size);
}

static void adopt(size_t i, void *p, size_t size, size_t align, unsigned char seed) {
  if (((uintptr_t)p & (align - 1)) != 0) die("misaligned", i, p, size);
  if (brisk_usable_size(p) < size) die("usable size below the request", i, p, size);
  uintptr_t a = (uintptr_t)p, b = a + (size ? size : 1);
  for (size_t j = 0; j < SLOTS; j++) {
    if (j == i || slots[j].p == NULL) continue;
    uintptr_t c = (uintptr_t)slots[j].p, d = c + (slots[j].size ? slots[j].size : 1);
    if (a < d && c < b) die("overlaps another live block", i, p, size);
  }
  slots[i] = (slot_t){p, size, align, seed};
}

static void release(size_t i, int sized) {
  if (slots[i].p == NULL) return;
  verify(i);
  if (sized && slots[i].align <= 16) brisk_free_sized(slots[i].p, slots[i].size);
  else brisk_free(slots[i].p);
  slots[i].p = NULL;
}

/* A size from two bytes: mostly small, sometimes up to a few MiB. */
static size_t size_of(const uint8_t *b) {
  unsigned v = (unsigned)b[0] << 8 | b[1];
  switch (v >> 14) {
  case 0: return v & 0x3ff;                         /* 0..1 KiB */
  case 1: return (v & 0x3fff) * 4;                  /* ..64 KiB */
  case 2: return (size_t)(v & 0x3fff) * 64;         /* ..1 MiB */
  default: return (size_t)(v & 0x3fff) * 256 + 1;   /* ..4 MiB */
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  for (size_t at = 0; at + 4 <= len; at += 4) {
    const uint8_t *op = data + at;
    size_t i = op[1] % SLOTS;
    size_t size = size_of(op + 2);
    unsigned char seed = (unsigned char)(op[0] ^ op[3]);
    switch (op[0] % 10) {
    case 0: /* malloc */
    case 1: {
      release(i, 0);
      void *p = brisk_malloc(size);
      if (p == NULL) die("malloc failed", i, p, size);
      adopt(i, p, size, 16, seed);
      fill(&slots[i]);
      break;
    }
    case 2: { /* calloc: zero up to the usable size */
      release(i, 0);
      size_t n = (op[3] & 7) + 1, each = size / n;
      unsigned char *p = brisk_calloc(n, each);
      if (p == NULL) die("calloc failed", i, p, n * each);
      size_t usable = brisk_usable_size(p);
      FOR_CHECKED(usable, off) if (p[off] != 0) die("calloc block not zero", i, p, off);
      adopt(i, p, n * each, 16, seed);
      fill(&slots[i]);
      break;
    }
    case 3: { /* realloc keeps the common prefix */
      if (slots[i].p == NULL || slots[i].align > 16) break;
      verify(i);
      slot_t old = slots[i];
      unsigned char *p = brisk_realloc(old.p, size);
      if (size == 0) { /* frees, as glibc does */
        slots[i].p = NULL;
        if (p != NULL) brisk_free(p);
        break;
      }
      if (p == NULL) die("realloc failed", i, old.p, size);
      size_t keep = old.size < size ? old.size : size;
      slots[i].p = NULL;
      FOR_CHECKED(keep, off) if (filled(old.size, off) && p[off] != pattern(old.seed, off))
        die("realloc lost contents", i, p, keep);
      adopt(i, p, size, 16, seed);
      fill(&slots[i]);
      break;
    }
    case 4: { /* the aligned forms */
      release(i, 0);
      size_t align = (size_t)1 << (op[3] % 17); /* 1 B .. 64 KiB */
      void *p = NULL;
      if (op[3] & 0x80) {
        int rc = brisk_posix_memalign(&p, align, size);
        if (align < sizeof(void *)) {
          if (rc != EINVAL) die("posix_memalign accepted a bad alignment", i, p, align);
          break;
        }
        if (rc != 0) die("posix_memalign failed", i, p, size);
      } else {
        p = brisk_memalign(align, size);
        if (p == NULL) die("memalign failed", i, p, size);
      }
      adopt(i, p, size, align < 16 ? 16 : align, seed);
      fill(&slots[i]);
      break;
    }
    case 5:
      release(i, 0);
      break;
    case 6:
      release(i, 1);
      break;
    case 7: /* impossible requests */
      errno = 0;
      if (brisk_reallocarray(NULL, SIZE_MAX / 2, 3 + (op[3] & 3)) != NULL || errno != ENOMEM)
        die("reallocarray overflow did not fail with ENOMEM", i, NULL, 0);
      errno = 0;
      if (brisk_malloc(SIZE_MAX - size) != NULL || errno != ENOMEM) die("huge malloc did not fail", i, NULL, 0);
      break;
    case 8:
      if (slots[i].p != NULL) verify(i);
      break;
    default:
      if ((op[3] & 15) == 0) brisk_trim();
      break;
    }
  }
  for (size_t i = 0; i < SLOTS; i++) release(i, (int)(i & 1));
  return 0;
}
