/* Free blocks: the one place that reads and writes a free block's words.
 *
 * Word 0 links to the next block of whatever list holds it (a thread cache's,
 * a span's, the remote list, an inbox message), encoded as next ^ list key;
 * word 1 holds brisk__free_key while the block is free (the double-free hint).
 * Lists move whole between the levels, so every list uses the same encoding.
 * The key is random per process and its low four bits are never zero, so a
 * plain address that a program writes into a freed block (an overflow, a use
 * after free) decodes to a misaligned pointer, and the pop that would have
 * handed it out aborts ("corrupted free list") instead of returning an address
 * the attacker chose. Slow paths that walk lists check more: that each block
 * lies in its span. Mixing in the link's own address (safe-linking) would cost
 * three more instructions per pop and push and adds little against a program
 * that can read a freed block's words: it learns the key either way. */

#ifndef BRISK_BLOCK_H
#define BRISK_BLOCK_H
#include "os.h"

#pragma GCC visibility push(hidden)

/* The keys: read by every malloc and free, written once at start-up. They fill
 * a cache line of their own, so that nothing that other threads write (a lock
 * word, a counter) shares it: next to the registry lock's word they cost free()
 * a cache miss whenever another thread had taken that lock. */
typedef struct brisk_block_keys_s {
  uintptr_t list; /* the links of free lists are stored xor this */
  uint64_t hint;  /* marks objects on free lists, to see double frees */
} __attribute__((aligned(BRISK_CACHE_LINE))) brisk_block_keys_t;
extern brisk_block_keys_t brisk__keys;
#define brisk__list_key (brisk__keys.list)
#define brisk__free_key (brisk__keys.hint)
#define BRISK_BLOCK_ALIGN_MASK ((uintptr_t)BRISK_ALIGN - 1)

static inline void *brisk__block_next_raw(const void *b) {
  return (void *)(*(const uintptr_t *)b ^ brisk__list_key);
}
static inline bool brisk__block_link_ok(const void *next) {
  return ((uintptr_t)next & BRISK_BLOCK_ALIGN_MASK) == 0;
}
/* The next block, or an abort naming call and b if b's link is not one brisk wrote. */
static inline void *brisk__block_next(const void *b, const char *call) {
  void *next = brisk__block_next_raw(b);
  if (brisk_unlikely(!brisk__block_link_ok(next))) brisk__fatal(call, "corrupted free list", b);
  return next;
}
static inline void brisk__block_set_next(void *b, const void *next) {
  *(uintptr_t *)b = (uintptr_t)next ^ brisk__list_key;
}
/* b becomes free, linked before next. */
static inline void brisk__block_push(void *b, const void *next) {
  uint64_t hint = brisk__free_key, key = brisk__list_key; /* both before the stores, which may alias them */
  ((uint64_t *)b)[1] = hint;
  *(uintptr_t *)b = (uintptr_t)next ^ key;
}
/* b leaves the free lists: the hint goes, the program owns both words. */
static inline void brisk__block_clear_hint(void *b) { ((uint64_t *)b)[1] = 0; }
static inline bool brisk__block_hinted(const void *b) { return ((const uint64_t *)b)[1] == brisk__free_key; }

#pragma GCC visibility pop
#endif /* BRISK_BLOCK_H */
