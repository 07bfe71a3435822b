/* The profiler's stack walk: x86-64 frames unwound from the DWARF call frame
 * information, with each code address's rule (where the frame's CFA, return
 * address and saved %rbp are) read once from the unwind tables and kept in a
 * table; libgcc's _Unwind_Backtrace costs about 2,000 instructions a frame,
 * nearly all of it finding and interpreting the same tables again at every
 * sample, where a kept rule costs a few dozen.
 *
 * Owns: the rule table (metadata memory, made at the first walk, grown by a
 * copy into a new one), written without a lock: a slot is claimed once by a
 * compare-and-swap of its key, which is published (release) after the rule,
 * and never reused, so a reader that sees an address as a key sees that
 * address's rule. Tables replaced stay in metadata, unused. A dlclose can put other code at an
 * address the table knows, so each walk first compares the loader's count of
 * removed objects with the table's, and starts a new table when it moved. In
 * the child of a multithreaded fork, where the loader's lock may be held by a
 * thread that is gone, the walks keep no table and never ask the loader.
 *
 * Also owns the kept walks (see "Recent walks"): the last walks' words and
 * frames, so that a walk from the same stack checks words instead of stepping
 * through frames; each slot behind a sequence count, written by one thread at
 * a time.
 *
 * Anything the table cannot express (signal frames, a CFA that is not %rsp or
 * %rbp plus an offset or the usual realigned one, a register rule that moves
 * %rbp or the return address elsewhere) makes that walk libgcc's, whole. */
#define _GNU_SOURCE
#include "backtrace.h"
#include "meta.h"

#include <link.h>
#include <unwind.h>

/* libgcc's lookup of the FDE covering pc (unwind-dw2-fde.h; exported by
 * libgcc_s since GCC 3.0 and in libgcc_eh.a): bases->func is the function's
 * first address, tbase and dbase the bases of text- and data-relative
 * encodings. */
struct dwarf_eh_bases {
  void *tbase, *dbase, *func;
};
extern const void *_Unwind_Find_FDE(void *pc, struct dwarf_eh_bases *bases);

/* Slots of the rule table (16 bytes each): it starts at 8 KiB, which the
 * few hundred return addresses of a small program's stacks fit and which
 * stays in the first-level cache, and doubles when half full, up to 1 MiB;
 * past three quarters of that, new rules are not kept. */
#define RULE_SLOTS_MIN 512u
#define RULE_SLOTS_MAX 65536u
/* New tables made after dlclose before the table gives up (every walk is then
 * libgcc's): a program that opens and closes libraries in a loop. */
#define RULE_TABLES_MAX 16u

/* DWARF register numbers on x86-64. */
enum { DW_RBP = 6, DW_RSP = 7, DW_RA = 16 };

/* What a rule says of its frame (the low bits of its flags). */
typedef enum {
  RULE_FRAME = 0, /* CFA, return address and %rbp as the fields say */
  RULE_END = 1,   /* the outermost frame: the return address is undefined */
  RULE_SLOW = 2,  /* not expressible here: libgcc walks this stack */
} rule_kind_t;
#define RULE_KIND 3u
#define RULE_CFA_RBP 4u    /* the CFA is based on %rbp (else %rsp) */
#define RULE_CFA_DEREF 8u  /* the CFA is the word at base + cfa_off (a realigned frame) */
#define RULE_RBP_SAVED 16u /* %rbp is saved in the frame (else unchanged) */
#define RULE_RBP_AT_RBP 32u /* ... at %rbp + rbp_off (else at CFA + rbp_off) */

/* A frame's rule, in one word so that a slot's rule is stored and loaded whole. */
typedef struct {
  int32_t cfa_off;
  int16_t rbp_off;
  int8_t ra_off; /* the return address is at CFA + ra_off */
  uint8_t flags;
} rule_t;
_Static_assert(sizeof(rule_t) == sizeof(uint64_t), "a rule is one word");

static inline uint64_t rule_word(rule_t r) {
  uint64_t w;
  memcpy(&w, &r, sizeof w);
  return w;
}

static inline rule_t word_rule(uint64_t w) {
  rule_t r;
  memcpy(&r, &w, sizeof r);
  return r;
}

/* A slot's key: 0 free, KEY_CLAIMED while its claimer stores the rule, then
 * the code address (never 1: no instruction lies on page 0). */
#define KEY_CLAIMED ((uintptr_t)1)

typedef struct {
  _Atomic uintptr_t key;
  _Atomic uint64_t rule; /* meaningful once key is the address */
} rule_slot_t;

typedef struct {
  rule_slot_t *slots;        /* mask + 1 of them, or NULL: given up */
  unsigned mask;
  _Atomic unsigned used;     /* slots claimed */
  unsigned long long subs;   /* the loader's dlpi_subs when the first table was made */
} rule_table_t;

static _Atomic(rule_table_t *) table;
/* Set in the child of a multithreaded fork: no dl_iterate_phdr, no table. */
static atomic_bool no_loader;
static _Atomic unsigned tables_made; /* after a dlclose: not counting growth */
static _Atomic uint64_t rules_read, fallbacks;

/* ------------------------------------------------------------------------------
   Reading the call frame information
------------------------------------------------------------------------------ */

typedef struct {
  const uint8_t *p, *end;
  bool bad;
} cursor_t;

static uint64_t get_uleb(cursor_t *c) {
  uint64_t v = 0;
  unsigned shift = 0;
  while (c->p < c->end) {
    uint8_t b = *c->p++;
    if (shift < 64) v |= (uint64_t)(b & 0x7f) << shift;
    shift += 7;
    if (!(b & 0x80)) return v;
  }
  c->bad = true;
  return 0;
}

static int64_t get_sleb(cursor_t *c) {
  int64_t v = 0;
  unsigned shift = 0;
  while (c->p < c->end) {
    uint8_t b = *c->p++;
    if (shift < 64) v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
    shift += 7;
    if (!(b & 0x80)) {
      if (shift < 64 && (b & 0x40)) v |= (int64_t)(~0ull << shift);
      return v;
    }
  }
  c->bad = true;
  return 0;
}

static uint64_t get_fixed(cursor_t *c, unsigned bytes) {
  if ((size_t)(c->end - c->p) < bytes) {
    c->bad = true;
    return 0;
  }
  uint64_t v = 0;
  memcpy(&v, c->p, bytes); /* little-endian */
  c->p += bytes;
  return v;
}

/* Skips a pointer in DW_EH_PE encoding enc (its value is not needed: libgcc has
 * found the function's start already). */
static void skip_encoded(cursor_t *c, uint8_t enc) {
  if (enc == 0xff) return; /* DW_EH_PE_omit */
  switch (enc & 0x0f) {
    case 0x00: get_fixed(c, 8); break;           /* absptr */
    case 0x01: case 0x09: get_uleb(c); break;    /* (s)uleb128 */
    case 0x02: case 0x0a: get_fixed(c, 2); break;
    case 0x03: case 0x0b: get_fixed(c, 4); break;
    case 0x04: case 0x0c: get_fixed(c, 8); break;
    default: c->bad = true;
  }
}

/* The value of a range in encoding enc's format, with no base applied. */
static uint64_t get_range(cursor_t *c, uint8_t enc) {
  switch (enc & 0x0f) {
    case 0x00: case 0x04: case 0x0c: return get_fixed(c, 8);
    case 0x01: return get_uleb(c);
    case 0x09: return (uint64_t)get_sleb(c);
    case 0x02: case 0x0a: return get_fixed(c, 2);
    case 0x03: case 0x0b: return get_fixed(c, 4);
    default: c->bad = true; return 0;
  }
}

/* The rules of the three registers that matter, as the CFA program leaves them. */
typedef struct {
  unsigned cfa_reg;
  int64_t cfa_off;
  bool cfa_deref;      /* CFA = *(cfa_reg + cfa_off) */
  bool cfa_other;      /* a CFA rule not expressible here */
  enum { REG_SAME, REG_AT_CFA, REG_AT_RBP, REG_UNDEF, REG_OTHER } rbp, ra;
  int64_t rbp_off, ra_off;
} cfa_state_t;

typedef struct {
  uint64_t code_align;
  int64_t data_align;
  unsigned ra_reg;
  uint8_t fde_enc;
  bool has_aug_data, signal_frame;
  cursor_t insns; /* the CIE's initial instructions */
} cie_t;

/* A DWARF expression's block (its length first), stepped over in c. */
static cursor_t take_block(cursor_t *c) {
  uint64_t len = get_uleb(c);
  if (c->bad || (size_t)(c->end - c->p) < len) {
    c->bad = true;
    return (cursor_t){c->p, c->p, true};
  }
  cursor_t e = {c->p, c->p + len, false};
  c->p += len;
  return e;
}

/* A register's rule from DW_CFA_expression: only "the word at %rbp + n" is
 * kept (a realigned frame's saved %rbp). */
static void reg_expression(cfa_state_t *s, unsigned reg, cursor_t *c) {
  cursor_t e = take_block(c);
  if (c->bad) return;
  size_t len = (size_t)(e.end - e.p);
  if (reg != DW_RBP && reg != DW_RA) return;
  bool ok = false;
  int64_t off = 0;
  if (len >= 2 && e.p[0] == 0x76) { /* DW_OP_breg6 */
    e.p++;
    off = get_sleb(&e);
    ok = !e.bad && e.p == e.end;
  }
  if (reg == DW_RBP && ok) {
    s->rbp = REG_AT_RBP;
    s->rbp_off = off;
  } else if (reg == DW_RBP) {
    s->rbp = REG_OTHER;
  } else {
    s->ra = REG_OTHER;
  }
}

/* The CFA from DW_CFA_def_cfa_expression: only "the word at %rbp + n" (what gcc
 * emits for a frame it realigned) is kept. */
static void cfa_expression(cfa_state_t *s, cursor_t *c) {
  cursor_t e = take_block(c);
  if (c->bad) return;
  size_t len = (size_t)(e.end - e.p);
  if (len >= 3 && e.p[0] == 0x76) {
    e.p++;
    int64_t off = get_sleb(&e);
    if (!e.bad && e.p + 1 == e.end && e.p[0] == 0x06) { /* DW_OP_deref */
      s->cfa_reg = DW_RBP;
      s->cfa_off = off;
      s->cfa_deref = true;
      s->cfa_other = false;
      return;
    }
  }
  s->cfa_other = true;
}

static void set_offset_rule(cfa_state_t *s, unsigned reg, int64_t off) {
  if (reg == DW_RBP) s->rbp = REG_AT_CFA, s->rbp_off = off;
  if (reg == DW_RA) s->ra = REG_AT_CFA, s->ra_off = off;
}

static void set_rule(cfa_state_t *s, unsigned reg, int kind) {
  if (reg == DW_RBP) s->rbp = kind;
  if (reg == DW_RA) s->ra = kind;
}

/* Runs a CFA program from loc until the row that covers target. init is the
 * state after the CIE's instructions (for DW_CFA_restore); NULL while running
 * those. Returns false on anything it cannot read. */
#define STATE_STACK 8
static bool run_cfa(const cie_t *cie, cursor_t c, uintptr_t loc, uintptr_t target,
                    cfa_state_t *s, const cfa_state_t *init) {
  cfa_state_t saved[STATE_STACK];
  unsigned depth = 0;
  while (c.p < c.end && !c.bad) {
    uint8_t op = *c.p++;
    uint64_t adv = 0;
    bool advance = false;
    unsigned reg;
    switch (op >> 6) {
      case 1: adv = op & 0x3f; advance = true; break; /* DW_CFA_advance_loc */
      case 2: set_offset_rule(s, op & 0x3f, (int64_t)get_uleb(&c) * cie->data_align); continue;
      case 3: /* DW_CFA_restore */
        reg = op & 0x3f;
        if (init == NULL) return false;
        if (reg == DW_RBP) s->rbp = init->rbp, s->rbp_off = init->rbp_off;
        if (reg == DW_RA) s->ra = init->ra, s->ra_off = init->ra_off;
        continue;
      default: break;
    }
    if (!advance) {
      switch (op) {
        case 0x00: break; /* nop */
        case 0x01: return false; /* set_loc: not emitted by gcc or clang for x86-64 */
        case 0x02: adv = get_fixed(&c, 1); advance = true; break;
        case 0x03: adv = get_fixed(&c, 2); advance = true; break;
        case 0x04: adv = get_fixed(&c, 4); advance = true; break;
        case 0x05:
          reg = (unsigned)get_uleb(&c);
          set_offset_rule(s, reg, (int64_t)get_uleb(&c) * cie->data_align);
          break;
        case 0x06: /* restore_extended */
          reg = (unsigned)get_uleb(&c);
          if (init == NULL) return false;
          if (reg == DW_RBP) s->rbp = init->rbp, s->rbp_off = init->rbp_off;
          if (reg == DW_RA) s->ra = init->ra, s->ra_off = init->ra_off;
          break;
        case 0x07: set_rule(s, (unsigned)get_uleb(&c), REG_UNDEF); break;
        case 0x08: set_rule(s, (unsigned)get_uleb(&c), REG_SAME); break;
        case 0x09: /* register: rbp or the return address kept in another register */
          reg = (unsigned)get_uleb(&c);
          get_uleb(&c);
          set_rule(s, reg, REG_OTHER);
          break;
        case 0x0a:
          if (depth == STATE_STACK) return false;
          saved[depth++] = *s;
          break;
        case 0x0b: /* restore_state: the CFA comes back with the registers' rules,
                    * as libgcc does and as gcc's epilogue CFI assumes */
          if (depth == 0) return false;
          *s = saved[--depth];
          break;
        case 0x0c:
          s->cfa_reg = (unsigned)get_uleb(&c);
          s->cfa_off = (int64_t)get_uleb(&c);
          s->cfa_deref = s->cfa_other = false;
          break;
        case 0x0d: s->cfa_reg = (unsigned)get_uleb(&c); s->cfa_deref = s->cfa_other = false; break;
        case 0x0e: s->cfa_off = (int64_t)get_uleb(&c); break;
        case 0x0f: cfa_expression(s, &c); break;
        case 0x10: reg = (unsigned)get_uleb(&c); reg_expression(s, reg, &c); break;
        case 0x11: reg = (unsigned)get_uleb(&c); set_offset_rule(s, reg, get_sleb(&c) * cie->data_align); break;
        case 0x12:
          s->cfa_reg = (unsigned)get_uleb(&c);
          s->cfa_off = get_sleb(&c) * cie->data_align;
          s->cfa_deref = s->cfa_other = false;
          break;
        case 0x13: s->cfa_off = get_sleb(&c) * cie->data_align; break;
        case 0x14: case 0x15: /* val_offset(_sf): a value, not a place */
          reg = (unsigned)get_uleb(&c);
          if (op == 0x14) get_uleb(&c); else get_sleb(&c);
          set_rule(s, reg, REG_OTHER);
          break;
        case 0x16: { /* val_expression */
          reg = (unsigned)get_uleb(&c);
          take_block(&c);
          set_rule(s, reg, REG_OTHER);
          break;
        }
        case 0x2e: get_uleb(&c); break; /* GNU_args_size */
        case 0x2f: /* GNU_negative_offset_extended */
          reg = (unsigned)get_uleb(&c);
          set_offset_rule(s, reg, -(int64_t)get_uleb(&c) * cie->data_align);
          break;
        default: return false;
      }
    }
    if (advance) {
      loc += adv * cie->code_align;
      if (loc > target) break;
    }
  }
  return !c.bad;
}

/* Parses the CIE at p (its length word first). */
static bool parse_cie(const uint8_t *p, cie_t *cie) {
  uint32_t len32;
  memcpy(&len32, p, 4);
  if (len32 == 0xffffffffu) return false; /* 64-bit DWARF: not in .eh_frame */
  cursor_t c = {p + 4, p + 4 + len32, false};
  if (get_fixed(&c, 4) != 0) return false; /* CIE id */
  unsigned version = (unsigned)get_fixed(&c, 1);
  const char *aug = (const char *)c.p;
  size_t aug_len = strnlen(aug, (size_t)(c.end - c.p));
  c.p += aug_len + 1;
  if (c.p > c.end) return false;
  cie->code_align = get_uleb(&c);
  cie->data_align = get_sleb(&c);
  cie->ra_reg = version == 1 ? (unsigned)get_fixed(&c, 1) : (unsigned)get_uleb(&c);
  cie->fde_enc = 0; /* absptr */
  cie->has_aug_data = aug_len > 0 && aug[0] == 'z';
  cie->signal_frame = false;
  if (cie->has_aug_data) {
    uint64_t dlen = get_uleb(&c);
    const uint8_t *after = c.p + dlen;
    for (size_t i = 1; i < aug_len && !c.bad; i++) {
      switch (aug[i]) {
        case 'R': cie->fde_enc = (uint8_t)get_fixed(&c, 1); break;
        case 'L': get_fixed(&c, 1); break;
        case 'P': { uint8_t enc = (uint8_t)get_fixed(&c, 1); skip_encoded(&c, enc & 0x7f); break; }
        case 'S': cie->signal_frame = true; break;
        case 'B': break;
        default: return false; /* an augmentation not known: its data cannot be skipped safely */
      }
    }
    if (after > c.end) return false;
    c.p = after;
  } else if (aug_len > 0) {
    return false; /* an augmentation without its length ("eh" of old gcc) */
  }
  cie->insns = c;
  return !c.bad;
}

/* The rule for code address at (exact for the innermost frame; a return
 * address minus one for the others), read from the unwind tables. */
static rule_t rule_read(uintptr_t at) {
  rule_t slow = {.flags = RULE_SLOW};
  struct dwarf_eh_bases bases;
  const uint8_t *fde = _Unwind_Find_FDE((void *)at, &bases);
  if (fde == NULL) return (rule_t){.flags = RULE_END}; /* no tables: libgcc would stop here too */
  uint32_t len32, cie_off;
  memcpy(&len32, fde, 4);
  memcpy(&cie_off, fde + 4, 4);
  if (len32 == 0xffffffffu || cie_off == 0) return slow;
  cie_t cie;
  if (!parse_cie(fde + 4 - cie_off, &cie) || cie.signal_frame || cie.ra_reg != DW_RA) return slow;
  cursor_t c = {fde + 8, fde + 4 + len32, false};
  skip_encoded(&c, cie.fde_enc & 0x7f);          /* pc_begin: bases.func has it */
  get_range(&c, cie.fde_enc);                    /* pc_range */
  if (cie.has_aug_data) {
    uint64_t dlen = get_uleb(&c);
    c.p += dlen;
  }
  if (c.bad || c.p > c.end) return slow;
  cfa_state_t init = {.rbp = REG_SAME, .ra = REG_UNDEF};
  uintptr_t func = (uintptr_t)bases.func;
  if (!run_cfa(&cie, cie.insns, func, func, &init, NULL)) return slow; /* CIE: before any code */
  cfa_state_t s = init;
  if (!run_cfa(&cie, c, func, at, &s, &init)) return slow;

  if (s.ra == REG_UNDEF) return (rule_t){.flags = RULE_END};
  if (s.cfa_other || (s.cfa_reg != DW_RSP && s.cfa_reg != DW_RBP) || (s.cfa_deref && s.cfa_reg != DW_RBP) ||
      s.cfa_off < INT32_MIN || s.cfa_off > INT32_MAX || s.ra != REG_AT_CFA || s.ra_off < INT8_MIN ||
      s.ra_off > INT8_MAX || s.rbp == REG_OTHER || s.rbp == REG_UNDEF || s.rbp_off < INT16_MIN ||
      s.rbp_off > INT16_MAX)
    return slow;
  return (rule_t){.cfa_off = (int32_t)s.cfa_off,
                  .rbp_off = (int16_t)s.rbp_off,
                  .ra_off = (int8_t)s.ra_off,
                  .flags = (uint8_t)(RULE_FRAME | (s.cfa_reg == DW_RBP ? RULE_CFA_RBP : 0) |
                                     (s.cfa_deref ? RULE_CFA_DEREF : 0) | (s.rbp != REG_SAME ? RULE_RBP_SAVED : 0) |
                                     (s.rbp == REG_AT_RBP ? RULE_RBP_AT_RBP : 0))};
}

/* ------------------------------------------------------------------------------
   The rule table
------------------------------------------------------------------------------ */

static inline unsigned slot_of(const rule_table_t *t, uintptr_t at) {
  return (unsigned)((at * 0x9e3779b97f4a7c15ull) >> 40) & t->mask;
}

static int subs_of(struct dl_phdr_info *info, size_t size, void *arg) {
  unsigned long long *subs = arg;
  if (size < offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) return -1;
  *subs = info->dlpi_subs;
  return 1; /* the first object is enough: the count is the loader's */
}

/* A table of slots slots (0: none, every rule read each time) for the
 * loader's count subs, holding what old holds (NULL: empty). NULL when
 * metadata is exhausted. */
static rule_table_t *table_make(unsigned slots, unsigned long long subs, const rule_table_t *old) {
  rule_table_t *t = brisk__meta_alloc(sizeof *t);
  if (t == NULL) return NULL;
  t->subs = subs;
  t->mask = slots ? slots - 1 : 0;
  t->slots = slots ? brisk__meta_alloc(slots * sizeof *t->slots) : NULL;
  atomic_init(&t->used, 0);
  if (old == NULL || t->slots == NULL || old->slots == NULL) return t;
  /* Rules kept in old after this copy are lost, to be read again: the table
   * is a cache. */
  unsigned used = 0;
  for (unsigned i = 0; i <= old->mask; i++) {
    uintptr_t k = atomic_load_explicit(&old->slots[i].key, memory_order_acquire);
    if (k <= KEY_CLAIMED) continue;
    uint64_t w = atomic_load_explicit(&old->slots[i].rule, memory_order_relaxed);
    unsigned j = slot_of(t, k);
    while (atomic_load_explicit(&t->slots[j].key, memory_order_relaxed) != 0) j = (j + 1) & t->mask;
    atomic_store_explicit(&t->slots[j].rule, w, memory_order_relaxed);
    atomic_store_explicit(&t->slots[j].key, k, memory_order_relaxed);
    used++;
  }
  atomic_store_explicit(&t->used, used, memory_order_relaxed);
  return t;
}

/* The table for this walk: made at the first, remade after a dlclose, grown
 * when half full. Several threads may get here at once: one table wins, the
 * others' memory stays in metadata unused. */
static rule_table_t *table_now(void) {
  if (atomic_load_explicit(&no_loader, memory_order_relaxed)) return NULL;
  unsigned long long subs = 0;
  if (dl_iterate_phdr(subs_of, &subs) != 1) return NULL;
  rule_table_t *t = atomic_load_explicit(&table, memory_order_acquire), *nt;
  if (t != NULL && t->subs == subs) {
    unsigned slots = t->mask + 1;
    if (t->slots == NULL || slots >= RULE_SLOTS_MAX ||
        atomic_load_explicit(&t->used, memory_order_relaxed) < slots / 2)
      return t;
    nt = table_make(2 * slots, subs, t);
  } else {
    bool give_up = atomic_fetch_add_explicit(&tables_made, 1, memory_order_relaxed) >= RULE_TABLES_MAX;
    nt = table_make(give_up ? 0 : RULE_SLOTS_MIN, subs, NULL);
  }
  if (nt == NULL) return t != NULL && t->subs == subs ? t : NULL;
  if (atomic_compare_exchange_strong_explicit(&table, &t, nt, memory_order_acq_rel, memory_order_acquire)) return nt;
  return t; /* another thread's table won */
}

static rule_t rule_for(rule_table_t *t, uintptr_t at) {
  if (t != NULL && t->slots != NULL) {
    /* Linear probing up to a free slot: at most three quarters are taken. */
    for (unsigned i = slot_of(t, at), probes = 0; probes <= t->mask; i = (i + 1) & t->mask, probes++) {
      uintptr_t k = atomic_load_explicit(&t->slots[i].key, memory_order_acquire);
      if (k == at) return word_rule(atomic_load_explicit(&t->slots[i].rule, memory_order_relaxed));
      if (k == 0) {
        /* Not known: read it, and keep it in this slot if no other thread
         * claims the slot first (one that reads the same address meanwhile
         * may keep a second copy further on: both are the same rule). */
        rule_t r = rule_read(at);
        atomic_fetch_add_explicit(&rules_read, 1, memory_order_relaxed);
        /* Kept up to three quarters full: the table grows at the next walk
         * from half, and a walk adds fewer rules than a quarter holds. */
        if (atomic_load_explicit(&t->used, memory_order_relaxed) < (t->mask + 1) / 4 * 3 &&
            atomic_compare_exchange_strong_explicit(&t->slots[i].key, &k, KEY_CLAIMED, memory_order_relaxed,
                                                    memory_order_relaxed)) {
          atomic_fetch_add_explicit(&t->used, 1, memory_order_relaxed);
          atomic_store_explicit(&t->slots[i].rule, rule_word(r), memory_order_relaxed);
          atomic_store_explicit(&t->slots[i].key, at, memory_order_release);
        }
        return r;
      }
    }
  }
  atomic_fetch_add_explicit(&rules_read, 1, memory_order_relaxed);
  return rule_read(at);
}

/* ------------------------------------------------------------------------------
   The walks
------------------------------------------------------------------------------ */

typedef struct {
  uintptr_t *pcs;
  unsigned n, max, skip;
} slow_walk_t;

static _Unwind_Reason_Code slow_frame(struct _Unwind_Context *ctx, void *arg) {
  slow_walk_t *w = arg;
  uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
  if (ip == 0 || w->n >= w->max) return _URC_END_OF_STACK;
  if (w->skip > 0) w->skip--;
  else w->pcs[w->n++] = ip;
  return _URC_NO_REASON;
}

/* libgcc's walk, from the caller of the caller of slow_walk: the frames of
 * slow_walk and of its caller are skipped. */
__attribute__((noinline)) static unsigned slow_walk(uintptr_t *pcs, unsigned max) {
  slow_walk_t w = {pcs, 0, max, 2};
  _Unwind_Backtrace(slow_frame, &w);
  __asm__ volatile("" ::: "memory"); /* no tail call: the frame count depends on it */
  return w.n;
}

__attribute__((noinline)) unsigned brisk__unwind_slow(uintptr_t *pcs, unsigned max) {
  unsigned n = slow_walk(pcs, max);
  __asm__ volatile("" ::: "memory");
  return n;
}

/* Sanity bounds of a step: a frame's CFA lies above its stack pointer, by less
 * than this (a larger one is a bad rule or a corrupt stack: libgcc takes over,
 * and it stops where it must). */
#define FRAME_MAX (64u << 20)

/* ------------------------------------------------------------------------------
   Recent walks

   A program samples the same few stacks over and over (a loop that allocates),
   and a walk from the same stack pointer over the same stack contents gives
   the same frames. So the last walks are kept, each as the list of words it read
   (return addresses, saved %rbp, realigned CFAs) with their values; a walk that
   starts at a kept walk's stack pointer (and %rbp, where that walk used the
   register before reading it from the stack) reads those words again, in the
   same order, and if every one still holds its value it has the kept frames, at
   a few instructions a frame instead of a rule look-up and a step each.

   Why that is safe and exact: a walk is a function of its start (the label's
   address, %rsp, %rbp), the rules, which are fixed for the loader's count of
   closed objects (a kept walk is tied to it), and the words it reads. While the
   words read so far are equal, the next word a fresh walk would read is the one
   the kept walk read next; so the check reads no word a fresh walk would not,
   stops at the first that differs (the fresh walk then runs), and when all are
   equal the frames are the fresh walk's own.

   WALKS_KEPT slots, direct-mapped by stack pointer, each behind a sequence
   count (odd while a walk is written into it): a reader copies the slot and
   uses it only if the count did not move, so it never follows an address from
   a half-written slot. A writer that finds the slot being written leaves it.
------------------------------------------------------------------------------ */

#define WALKS_KEPT 64u   /* kept walks: the distinct stacks a program samples in a loop */
#define WALK_READS 64u   /* words a kept walk may have read and frames it may have */
#define RECALL_CHUNK 16u /* addresses a recall copies out of its slot at a time */

typedef struct {
  uint64_t seq;   /* even: stable; odd: being written; 0: never written */
  uintptr_t sp;   /* 0: holds no walk */
  uintptr_t bp, subs;
  uint32_t max, m, n, bp_used;
  uintptr_t addr[WALK_READS], value[WALK_READS]; /* the words read, in order */
  uintptr_t pcs[WALK_READS];                     /* the frames found */
} kept_walk_t;

static kept_walk_t *_Atomic kept; /* WALKS_KEPT slots in metadata, made at the first walk */
static _Atomic uint64_t walks_recalled;

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

static kept_walk_t *kept_slot(uintptr_t sp) {
  kept_walk_t *k = atomic_load_explicit(&kept, memory_order_acquire);
  if (k == NULL) {
    kept_walk_t *made = brisk__meta_alloc(WALKS_KEPT * sizeof *made); /* zeroed: no slot written */
    if (made == NULL) return NULL;
    if (!atomic_compare_exchange_strong_explicit(&kept, &k, made, memory_order_acq_rel, memory_order_acquire))
      made = k; /* another thread's won; this one stays in metadata unused */
    k = made;
  }
  return &k[(unsigned)(((sp >> 3) * 0x9e3779b97f4a7c15ull) >> 58) % WALKS_KEPT];
}

/* The frames of the walk kept in e if it started at (sp, bp), checked word by
 * word against the stack; -1 when it did not or a word differs. Addresses are
 * copied out of the slot a chunk at a time and followed only once the sequence
 * count shows that the slot has not changed since the first look; the values
 * and frames are read in place, and a last look at the count vouches for them. */
static int walk_recall(kept_walk_t *e, const rule_table_t *t, uintptr_t sp, uintptr_t bp, uintptr_t *pcs,
                       unsigned max) {
  uint64_t seq = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
  if (seq == 0 || (seq & 1) || LOAD(e->sp) != sp || LOAD(e->subs) != t->subs || LOAD(e->max) != max ||
      (LOAD(e->bp_used) && LOAD(e->bp) != bp))
    return -1;
  unsigned m = LOAD(e->m), n = LOAD(e->n);
  if (m > WALK_READS || n > m || n > max) return -1;
  for (unsigned at = 0; at < m; at += RECALL_CHUNK) {
    uintptr_t addr[RECALL_CHUNK];
    unsigned c = m - at < RECALL_CHUNK ? m - at : RECALL_CHUNK;
    for (unsigned i = 0; i < c; i++) addr[i] = LOAD(e->addr[at + i]);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) != seq) return -1; /* rewritten meanwhile */
    for (unsigned i = 0; i < c; i++)
      if (*(const uintptr_t *)addr[i] != LOAD(e->value[at + i])) return -1;
  }
  for (unsigned i = 0; i < n; i++) pcs[i] = LOAD(e->pcs[i]);
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) != seq) return -1;
  atomic_fetch_add_explicit(&walks_recalled, 1, memory_order_relaxed);
  return (int)n;
}

/* Takes slot e for writing the walk about to run (false: another thread is
 * writing it; the walk is then not kept). */
static bool walk_keep_begin(kept_walk_t *e) {
  uint64_t seq = __atomic_load_n(&e->seq, __ATOMIC_RELAXED);
  if ((seq & 1) || !__atomic_compare_exchange_n(&e->seq, &seq, seq + 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
    return false;
  __atomic_thread_fence(__ATOMIC_RELEASE); /* the odd count before any word of the slot */
  STORE(e->sp, (uintptr_t)0);
  return true;
}

static inline void walk_log(kept_walk_t *e, uint32_t *m, uintptr_t addr, uintptr_t value) {
  if (e == NULL) return;
  if (*m < WALK_READS) {
    STORE(e->addr[*m], addr);
    STORE(e->value[*m], value);
  }
  (*m)++; /* past WALK_READS: too long to keep */
}

/* Publishes the walk written into e, or leaves e holding none (sp 0: the walk
 * fell back to libgcc, or read more words than a slot holds). */
static void walk_keep_end(kept_walk_t *e, bool keep, const rule_table_t *t, uintptr_t sp, uintptr_t bp,
                          bool bp_used, unsigned max, uint32_t m, const uintptr_t *pcs, unsigned n) {
  if (keep && m <= WALK_READS && n <= WALK_READS) {
    for (unsigned i = 0; i < n; i++) STORE(e->pcs[i], pcs[i]);
    STORE(e->bp, bp);
    STORE(e->subs, t->subs);
    STORE(e->max, max);
    STORE(e->bp_used, (uint32_t)bp_used);
    STORE(e->m, m);
    STORE(e->n, n);
    STORE(e->sp, sp);
  }
  __atomic_store_n(&e->seq, __atomic_load_n(&e->seq, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
}

__attribute__((noinline)) unsigned brisk__unwind(uintptr_t *pcs, unsigned max) {
  uintptr_t ip, sp, bp;
  /* The registers at label 1, which the rule for the label's address describes. */
  __asm__ volatile("lea 1f(%%rip), %0\n1:\n\tmov %%rsp, %1\n\tmov %%rbp, %2"
                   : "=&r"(ip), "=&r"(sp), "=&r"(bp));
  rule_table_t *t = table_now();
  /* Without a table (a fork child, or metadata exhausted) nothing is kept. */
  kept_walk_t *e = t != NULL ? kept_slot(sp) : NULL;
  if (e != NULL) {
    int n = walk_recall(e, t, sp, bp, pcs, max);
    if (n >= 0) return (unsigned)n;
    if (!walk_keep_begin(e)) e = NULL;
  }
  /* What the kept walk must check: every return address, and a saved %rbp only
   * once a later frame uses %rbp (most frames save it as a plain register, and
   * no later step depends on it). The start's %rbp counts where a frame uses it
   * before any is read. A word is logged after every word its address came from. */
  const uintptr_t sp0 = sp, bp0 = bp;
  bool bp_read = false, bp_pending = false, bp_used = false;
  uintptr_t bp_at = 0;
  uint32_t m = 0;
  unsigned n = 0;
  uintptr_t at = ip;
  while (n < max) {
    rule_t r = rule_for(t, at);
    unsigned kind = r.flags & RULE_KIND;
    if (kind == RULE_END) break;
    if (kind != RULE_FRAME) goto slow;
    unsigned uses_bp = RULE_CFA_RBP | ((r.flags & RULE_RBP_SAVED) ? RULE_RBP_AT_RBP : 0);
    if (r.flags & uses_bp) {
      if (!bp_read) bp_used = true;
      else if (bp_pending) walk_log(e, &m, bp_at, bp);
      bp_pending = false;
    }
    uintptr_t cfa = ((r.flags & RULE_CFA_RBP) ? bp : sp) + (intptr_t)r.cfa_off;
    if (r.flags & RULE_CFA_DEREF) { /* a realigned frame: the CFA was saved at %rbp + cfa_off */
      if (cfa - sp >= FRAME_MAX || (cfa & 7)) goto slow;
      uintptr_t at_cfa = cfa;
      cfa = *(const uintptr_t *)at_cfa;
      walk_log(e, &m, at_cfa, cfa);
    }
    if (cfa - sp - 1 >= FRAME_MAX || (cfa & 7)) goto slow; /* above sp, and near */
    uintptr_t at_ra = cfa + (intptr_t)r.ra_off;
    uintptr_t ra = *(const uintptr_t *)at_ra;
    walk_log(e, &m, at_ra, ra);
    if (r.flags & RULE_RBP_SAVED) {
      uintptr_t at_bp = ((r.flags & RULE_RBP_AT_RBP) ? bp : cfa) + (intptr_t)r.rbp_off;
      if (at_bp - sp > cfa - sp - 8 || (at_bp & 7)) goto slow; /* inside the frame */
      bp = *(const uintptr_t *)at_bp;
      bp_at = at_bp;
      bp_read = bp_pending = true;
    }
    sp = cfa;
    if (ra == 0) break;
    pcs[n++] = ra;
    at = ra - 1; /* inside the call: its row, not the next instruction's */
  }
  if (e != NULL) walk_keep_end(e, true, t, sp0, bp0, bp_used, max, m, pcs, n);
  __asm__ volatile("" ::: "memory");
  return n;
slow:
  if (e != NULL) walk_keep_end(e, false, t, 0, 0, false, max, m, pcs, 0);
  atomic_fetch_add_explicit(&fallbacks, 1, memory_order_relaxed);
  n = slow_walk(pcs, max);
  __asm__ volatile("" ::: "memory");
  return n;
}

void brisk__backtrace_after_fork_child(void) { atomic_store_explicit(&no_loader, true, memory_order_relaxed); }

uint64_t brisk__unwind_recalled(void) { return atomic_load_explicit(&walks_recalled, memory_order_relaxed); }

void brisk__unwind_counts(uint64_t *rules, uint64_t *falls) {
  *rules = atomic_load_explicit(&rules_read, memory_order_relaxed);
  *falls = atomic_load_explicit(&fallbacks, memory_order_relaxed);
}
