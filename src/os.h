/* OS layer (os.c): the system calls, numa.c's among them (its seam,
 * brisk_numa_os_t, calls these), the formatting of messages without malloc,
 * fatal errors and robust mutexes; none of its calls is a cancellation point.
 * Nothing here allocates or takes a brisk lock. */

#ifndef BRISK_OS_H
#define BRISK_OS_H
#include "base.h"

#pragma GCC visibility push(hidden)

extern size_t brisk__os_page; /* the OS page size, read at start */
void brisk__os_init(void);
void *brisk__os_mmap_aligned(size_t size, size_t align, brisk_vma_t kind); /* NULL on failure */
void *brisk__os_mmap_guarded(size_t size);              /* PROT_NONE page on each side; NULL on failure */
bool brisk__os_vma_names_work(void); /* false once the kernel refused a mapping's name */
/* Residency (mincore), for the statistics. A range that is not mapped whole (a
 * block that mremap is moving right now) reads as not resident. */
#define BRISK_RESIDENT_WINDOW 4096 /* OS pages per mincore call: 4 KiB of vector on the stack */
typedef void (*brisk_resident_fn)(void *arg, uintptr_t start, size_t len);
/* One byte per OS page of [start, start + len) into vec (bit 0: resident); start
 * OS-page aligned, len at most BRISK_RESIDENT_WINDOW pages. */
bool brisk__os_mincore(uintptr_t start, size_t len, unsigned char *vec);
/* The runs of resident pages of vec (its page 0 at base) clipped to [from, end),
 * each handed to fn (may be NULL), in address order; their bytes. */
uint64_t brisk__os_vec_runs(const unsigned char *vec, uintptr_t base, uintptr_t from, uintptr_t end,
                            brisk_resident_fn fn, void *arg);
/* The resident bytes of [start, start + len), each run also handed to fn. */
uint64_t brisk__os_resident(uintptr_t start, size_t len, brisk_resident_fn fn, void *arg);
void brisk__os_munmap(void *p, size_t size);
/* NUMA: the CPU this thread runs on (rseq's copy, else sched_getcpu); mbind
 * (0 or -errno, errno kept); the OS node of the page at p (-1: unknown). */
int brisk__os_current_cpu(void);
unsigned brisk__os_cpu_count(void); /* CPUs this thread may run on (sched_getaffinity), at least 1 */
int brisk__os_mbind(void *p, size_t len, int mode, const uint64_t *mask, unsigned long maxnode, unsigned flags);
int brisk__os_page_node(const void *p);
void *brisk__os_mremap(void *p, size_t old_size, size_t new_size); /* NULL on failure */
void *brisk__os_sbrk(size_t size);                     /* NULL on failure */
bool brisk__os_sbrk_release(size_t size);             /* lower the break; false on failure */
bool brisk__os_move_to(void *from, size_t len, void *to); /* mremap onto a free place only; false if none */
void brisk__os_purge(void *p, size_t size);            /* madvise(DONTNEED), rounded inwards */
uint64_t brisk__os_now_ms(void);                       /* a cheap monotonic clock */
bool brisk__os_thread_start(void *(*fn)(void *), size_t stack, const char *name);
uint64_t brisk__os_random(void);
void brisk__os_write(int fd, const char *s, size_t n); /* all of it, or up to an error */
void brisk__os_write_err(const char *s, size_t n);     /* stderr */
int brisk__os_open_read(const char *path);             /* fd, or -1 */
long brisk__os_read(int fd, void *buf, size_t n);      /* bytes read, 0 at the end, -1 */
int brisk__os_create_file(const char *path);           /* for writing; -1 on failure */
void brisk__os_close(int fd);
long brisk__os_read_file(const char *path, char *buf, size_t cap); /* length read, or -1 */
void brisk__os_sleep_ms(uint64_t ms);
void brisk__os_yield(void);
/* A full memory barrier on every running thread of the process (membarrier's
 * private expedited command, registered at the first call); false where the
 * kernel lacks it. */
bool brisk__os_membarrier(void);
void brisk__os_wait_while(atomic_int *addr, int val, uint64_t ms); /* futex wait, bounded */
void brisk__os_wake_all(atomic_int *addr);
int brisk__os_pid(void);
/* Guard pages (guard.c). */
void *brisk__os_reserve(size_t size, size_t align);      /* PROT_NONE; NULL on failure */
bool brisk__os_open_pages(void *p, size_t size);         /* read-write */
void brisk__os_close_pages(void *p, size_t size);        /* PROT_NONE, contents dropped */
/* Called from the SIGSEGV handler with the fault address and the access (1
 * write, 0 read, -1 unknown); returns only if the fault is not brisk's. */
typedef void (*brisk_fault_fn)(uintptr_t addr, int access);
bool brisk__os_catch_faults(brisk_fault_fn fn);
void brisk__os_describe_code(const void *pc, char *buf, size_t n); /* for reports */
/* Heap profiles (prof.c). */
int brisk__os_create_file_err(const char *path); /* like brisk__os_create_file; -errno on failure */
bool brisk__os_file_exists(const char *path);
void brisk__os_remove_file(const char *path);
/* The live-metrics file (metrics.c). */
int brisk__os_create_rw(const char *path);             /* read-write, created or truncated; -1 */
bool brisk__os_truncate(int fd, size_t size);
void *brisk__os_map_shared(int fd, size_t size);       /* MAP_SHARED read-write; NULL on failure */
bool brisk__os_rename(const char *from, const char *to);
uint64_t brisk__os_wall_ms(void);                      /* CLOCK_REALTIME */
__attribute__((noreturn, cold)) void brisk__fatal(const char *call, const char *what, const void *p);
/* Format into buf without malloc: %s %zu %llu %p %d, width for numbers. Returns length. */
int brisk__snprintf(char *buf, size_t n, const char *fmt, ...);
int brisk__vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);
void brisk__printf_err(const char *fmt, ...);
/* Robust mutexes (os.c, its last block): the thread registry's sign of life. */
typedef enum {
  BRISK_ROBUST_HELD = 0,   /* its owner lives (or the caller is the owner) */
  BRISK_ROBUST_OWNER_DIED, /* its owner ended holding it; now unlocked and consistent */
  BRISK_ROBUST_FREE,       /* nobody held it */
} brisk_robust_t;
bool brisk__os_robust_init(pthread_mutex_t *m); /* false: a plain mutex, death goes unseen */
void brisk__os_robust_hold(pthread_mutex_t *m);
void brisk__os_robust_release(pthread_mutex_t *m);
brisk_robust_t brisk__os_robust_probe(pthread_mutex_t *m); /* a trylock, never waits */

#pragma GCC visibility pop
#endif /* BRISK_OS_H */
