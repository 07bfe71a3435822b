/* The OS layer: every system call brisk makes goes through here, so the rest of
 * the allocator never sees errno from the kernel and a port touches one file.
 * Nothing here allocates; messages are formatted into stack buffers and written
 * with write(2), which is safe from inside malloc and after a heap corruption.
 *
 * Nothing here is a cancellation point either. libc's write, open, read and
 * nanosleep are, and a thread with a cancel pending would unwind out of the
 * middle of malloc (holding a lock, or past a detected corruption that must
 * abort). The calls that libc makes cancellable go to the kernel directly
 * through syscall(), which never acts on a pending cancel. */
#define _GNU_SOURCE
#include "os.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

size_t brisk__os_page = 4096;

void brisk__os_init(void) {
  long ps = sysconf(_SC_PAGESIZE);
  if (ps > 0) brisk__os_page = (size_t)ps;
}

/* ------------------------------------------------------------------------------
   Mapping names: every mapping brisk makes is named once, right after it is
   made, so that /proc/PID/smaps and maps show it as [anon:brisk:heap] and the
   like. The kernel keeps the name on the VMA (mremap moves it along; a VMA
   split keeps it on both parts) and does not merge a named VMA with an unnamed
   neighbour. A kernel without CONFIG_ANON_VMA_NAME answers EINVAL: brisk then
   stops asking, one failed call per process. Program-break memory is named as
   well, but the kernel shows the initial break's VMA as [heap] whatever its
   name (fs/proc/task_mmu.c tests for the heap before the name), so brisk's part
   of [heap] is found by address (brisk_get_regions), not by name.
------------------------------------------------------------------------------ */
#define BRISK_PR_SET_VMA 0x53564d41 /* PR_SET_VMA, Linux 5.17 */
#define BRISK_PR_SET_VMA_ANON_NAME 0

static const char *const vma_names[] = {
    [BRISK_VMA_HEAP] = "brisk:heap",
    [BRISK_VMA_LARGE] = "brisk:large",
    [BRISK_VMA_META] = "brisk:meta",
    [BRISK_VMA_GUARD] = "brisk:guard",
};
static atomic_bool vma_names_refused; /* the kernel said EINVAL once */

static void vma_name(void *p, size_t size, brisk_vma_t kind) {
  if (atomic_load_explicit(&vma_names_refused, memory_order_relaxed)) return;
  int saved = errno;
  if (prctl(BRISK_PR_SET_VMA, BRISK_PR_SET_VMA_ANON_NAME, (unsigned long)p, (unsigned long)size,
            (unsigned long)vma_names[kind]) != 0 &&
      errno == EINVAL)
    atomic_store_explicit(&vma_names_refused, true, memory_order_relaxed);
  errno = saved;
}

bool brisk__os_vma_names_work(void) { return !atomic_load_explicit(&vma_names_refused, memory_order_relaxed); }

static void *os_mmap(size_t size) {
  int saved = errno;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

/* Over-map by the alignment and cut the excess on both sides: the kernel gives no
 * alignment beyond its page, and 1 GiB alignments must work. */
void *brisk__os_mmap_aligned(size_t size, size_t align, brisk_vma_t kind) {
  char *p;
  uintptr_t start;
  if (align <= brisk__os_page) {
    p = os_mmap(size);
    start = (uintptr_t)p;
  } else {
    size_t total = size + align;
    if (total < size) return NULL;
    p = os_mmap(total);
    if (p == NULL) return NULL;
    start = brisk__align_up((uintptr_t)p, align);
    size_t head = start - (uintptr_t)p;
    size_t tail = total - head - size;
    if (head) brisk__os_munmap(p, head);
    if (tail) brisk__os_munmap((char *)start + size, tail);
  }
  if (p != NULL) vma_name((void *)start, size, kind);
  return p == NULL ? NULL : (void *)start;
}

/* Memory for brisk's own records (span descriptors, page-map leaves), with a
 * PROT_NONE page on each side. The kernel puts mappings next to each other, so
 * without the guards a program's large block could end right below a record
 * and an overflow of a few bytes would rewrite it; with them, it faults. Never
 * unmapped. */
void *brisk__os_mmap_guarded(size_t size) {
  size_t page = brisk__os_page;
  size = brisk__align_up(size, page);
  int saved = errno;
  char *p = mmap(NULL, size + 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    errno = saved;
    return NULL;
  }
  if (mprotect(p + page, size, PROT_READ | PROT_WRITE) != 0) {
    munmap(p, size + 2 * page);
    errno = saved;
    return NULL;
  }
  errno = saved;
  vma_name(p, size + 2 * page, BRISK_VMA_META);
  return p + page;
}

void brisk__os_munmap(void *p, size_t size) {
  int saved = errno;
  munmap(p, size);
  errno = saved;
}

void *brisk__os_mremap(void *p, size_t old_size, size_t new_size) {
  int saved = errno;
  void *q = mremap(p, old_size, new_size, MREMAP_MAYMOVE);
  errno = saved;
  return q == MAP_FAILED ? NULL : q;
}

void *brisk__os_sbrk(size_t size) {
  if (size > (size_t)INTPTR_MAX) return NULL;
  int saved = errno;
  void *p = sbrk((intptr_t)size);
  errno = saved;
  if (p == (void *)-1) return NULL;
  if (size > 0) vma_name(p, size, BRISK_VMA_HEAP);
  return p;
}

/* ------------------------------------------------------------------------------
   Undoing a growth: the page heap hands sbrk'd memory back when it finds no
   metadata for it, and large.c puts a block moved by mremap back in its place.
------------------------------------------------------------------------------ */

/* Lower the break by size bytes; false if the kernel refused. */
bool brisk__os_sbrk_release(size_t size) {
  if (size > (size_t)INTPTR_MAX) return false;
  int saved = errno;
  void *p = sbrk(-(intptr_t)size);
  errno = saved;
  return p != (void *)-1;
}

/* Move the pages of [from, from + len) to `to` without copying, only if nothing
 * is mapped at [to, to + len): a reservation there first (MAP_FIXED_NOREPLACE
 * fails on any mapping; a kernel before 4.17 takes the address as a hint, and
 * another answer means the place is taken), which mremap then replaces. False,
 * nothing moved, if the place is taken or the address space has no room for
 * the reservation. */
bool brisk__os_move_to(void *from, size_t len, void *to) {
  int saved = errno;
  void *r = mmap(to, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  bool ok = r == to;
  if (!ok && r != MAP_FAILED) munmap(r, len);
  if (ok && mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to) == MAP_FAILED) {
    munmap(to, len);
    ok = false;
  }
  errno = saved;
  return ok;
}

void brisk__os_purge(void *p, size_t size) {
  uintptr_t start = brisk__align_up((uintptr_t)p, brisk__os_page);
  uintptr_t end = ((uintptr_t)p + size) & ~(uintptr_t)(brisk__os_page - 1);
  if (end <= start) return;
  int saved = errno;
  madvise((void *)start, end - start, MADV_DONTNEED);
  errno = saved;
}

/* ------------------------------------------------------------------------------
   Residency (the statistics' "resident" figures): mincore over a range, window
   by window into a vector on the stack, and the resident OS pages handed to fn
   as runs of consecutive ones. A range that is not mapped whole (a block being
   moved by mremap right now) counts as not resident: the figure is a close one
   while threads run, exact when they are quiet.
------------------------------------------------------------------------------ */
bool brisk__os_mincore(uintptr_t start, size_t len, unsigned char *vec) {
  size_t n = (len + brisk__os_page - 1) / brisk__os_page;
  int saved = errno;
  bool ok = mincore((void *)start, len, vec) == 0;
  errno = saved;
  if (!ok) memset(vec, 0, n);
  return ok;
}

uint64_t brisk__os_vec_runs(const unsigned char *vec, uintptr_t base, uintptr_t from, uintptr_t end,
                            brisk_resident_fn fn, void *arg) {
  size_t page = brisk__os_page, n = (end - base + page - 1) / page;
  uint64_t total = 0;
  for (size_t i = 0; i < n;) {
    if (!(vec[i] & 1)) {
      i++;
      continue;
    }
    size_t j = i;
    while (j < n && (vec[j] & 1)) j++;
    uintptr_t a = base + i * page, b = base + j * page;
    if (a < from) a = from;
    if (b > end) b = end;
    if (b > a) {
      total += b - a;
      if (fn) fn(arg, a, b - a);
    }
    i = j;
  }
  return total;
}

uint64_t brisk__os_resident(uintptr_t start, size_t len, brisk_resident_fn fn, void *arg) {
  unsigned char vec[BRISK_RESIDENT_WINDOW];
  uint64_t total = 0;
  for (uintptr_t at = start, end = start + len; at < end;) {
    uintptr_t base = at & ~(uintptr_t)(brisk__os_page - 1);
    uintptr_t stop = base + BRISK_RESIDENT_WINDOW * brisk__os_page < end ? base + BRISK_RESIDENT_WINDOW * brisk__os_page
                                                                         : end;
    brisk__os_mincore(base, stop - base, vec);
    total += brisk__os_vec_runs(vec, base, at, stop, fn, arg);
    at = stop;
  }
  return total;
}

/* brisk's own threads (purging, NUMA discovery) are detached, run with every
 * signal blocked so that the program's handlers never run on them, and are named
 * so that they can be told apart in a debugger or top. */
bool brisk__os_thread_start(void *(*fn)(void *), size_t stack, const char *name) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits the mask */
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, stack);
  int err = pthread_create(&t, &attr, fn, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err == 0) pthread_setname_np(t, name);
  return err == 0;
}

/* The coarse clock is read from the vDSO in a few nanoseconds; its resolution
 * (a few ms) is plenty for delays of a second. */
uint64_t brisk__os_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t brisk__os_random(void) {
  uint64_t r = 0;
  int saved = errno;
  /* libc's getrandom is a cancellation point; the system call is not */
  if (syscall(SYS_getrandom, &r, sizeof r, GRND_NONBLOCK) != (long)sizeof r) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() << 32 ^ (uintptr_t)&r;
  }
  errno = saved;
  return r | 1; /* never zero: zero is what fresh memory holds */
}

void brisk__os_write(int fd, const char *s, size_t n) {
  int saved = errno;
  while (n > 0) {
    long w = syscall(SYS_write, fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    s += w;
    n -= (size_t)w;
  }
  errno = saved;
}

int brisk__os_open_read(const char *path) {
  int saved = errno;
  long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  errno = saved;
  return fd < 0 ? -1 : (int)fd;
}

long brisk__os_read(int fd, void *buf, size_t n) {
  int saved = errno;
  long r;
  do r = syscall(SYS_read, fd, buf, n);
  while (r < 0 && errno == EINTR);
  errno = saved;
  return r;
}

void brisk__os_write_err(const char *s, size_t n) { brisk__os_write(2, s, n); }

/* A report file (BRISK_STATS_FILE): created or truncated; -1 on failure. */
int brisk__os_create_file(const char *path) {
  int saved = errno;
  long fd = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  errno = saved;
  return fd < 0 ? -1 : (int)fd;
}

void brisk__os_close(int fd) {
  int saved = errno;
  syscall(SYS_close, fd);
  errno = saved;
}

/* A whole small file (sysfs, /proc) into buf, NUL-terminated: its length, or -1. */
long brisk__os_read_file(const char *path, char *buf, size_t cap) {
  int fd = cap > 0 ? brisk__os_open_read(path) : -1;
  if (fd < 0) return -1;
  size_t have = 0;
  long r = 0;
  while (have < cap - 1 && (r = brisk__os_read(fd, buf + have, cap - 1 - have)) > 0) have += (size_t)r;
  brisk__os_close(fd);
  buf[have] = 0;
  return r < 0 ? -1 : (long)have;
}

void brisk__os_sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  int saved = errno;
  while (syscall(SYS_nanosleep, &ts, &ts) != 0 && errno == EINTR) {
  }
  errno = saved;
}

/* Give the CPU to another thread (a waiter whose wait is short and bounded). */
void brisk__os_yield(void) { syscall(SYS_sched_yield); }

/* membarrier(2)'s commands (linux/membarrier.h), since Linux 4.14. */
#define MEMBARRIER_PRIVATE_EXPEDITED (1 << 3)
#define MEMBARRIER_REGISTER_PRIVATE_EXPEDITED (1 << 4)

bool brisk__os_membarrier(void) {
  static _Atomic int registered; /* 0 not yet, 1 yes, -1 the kernel refused */
  int state = atomic_load_explicit(&registered, memory_order_acquire);
  if (state < 0) return false;
  int saved = errno;
  if (state == 0 || syscall(SYS_membarrier, MEMBARRIER_PRIVATE_EXPEDITED, 0, 0) != 0) {
    /* Not registered yet, or in a forked child (the registration is the
     * address space's): register, then try once more. */
    bool ok = syscall(SYS_membarrier, MEMBARRIER_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
              syscall(SYS_membarrier, MEMBARRIER_PRIVATE_EXPEDITED, 0, 0) == 0;
    atomic_store_explicit(&registered, ok ? 1 : -1, memory_order_release);
    errno = saved;
    return ok;
  }
  errno = saved;
  return true;
}

/* Sleep while *addr holds val, at most ms (a wake-up, a signal or a spurious
 * return may end it sooner: callers re-check their condition). */
void brisk__os_wait_while(atomic_int *addr, int val, uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  int saved = errno;
  syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
  errno = saved;
}

void brisk__os_wake_all(atomic_int *addr) {
  int saved = errno;
  syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
  errno = saved;
}

/* Locks (base.h): spin this many rounds on a taken lock before sleeping. A
 * round is a load and a pause; the sections the locks guard are short, so a
 * holder that is running lets go within a few, and one that was preempted is
 * waited for in the kernel. */
#define LOCK_SPINS 100

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

void brisk__lock_wait(brisk_lock_t *l) {
  for (int i = 0; i < LOCK_SPINS; i++) {
    cpu_relax();
    if (atomic_load_explicit(&l->state, memory_order_relaxed) == BRISK_LOCK_FREE && brisk__lock_take(l)) return;
  }
  /* From here the lock is left WAITED whenever this thread takes it, since
   * other sleepers may remain: a release then makes one futex call too many
   * at worst, never one too few. */
  int saved = errno;
  while (atomic_exchange_explicit(&l->state, BRISK_LOCK_WAITED, memory_order_acquire) != BRISK_LOCK_FREE)
    syscall(SYS_futex, &l->state, FUTEX_WAIT_PRIVATE, BRISK_LOCK_WAITED, NULL, NULL, 0);
  errno = saved;
}

void brisk__lock_wake(brisk_lock_t *l) {
  int saved = errno;
  syscall(SYS_futex, &l->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  errno = saved;
}

int brisk__os_pid(void) { return (int)getpid(); }

/* ------------------------------------------------------------------------------
   Guard pages (guard.c): address space reserved inaccessible, opened and closed
   page by page, and the SIGSEGV handler that tells brisk's faults from others.
------------------------------------------------------------------------------ */

/* PROT_NONE, not counted against the commit limit until opened; aligned as asked
 * (a power of two, at least the OS page). */
void *brisk__os_reserve(size_t size, size_t align) {
  size_t total = size + align;
  if (total < size) return NULL;
  int saved = errno;
  char *p = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  errno = saved;
  if (p == MAP_FAILED) return NULL;
  uintptr_t start = brisk__align_up((uintptr_t)p, align);
  size_t head = start - (uintptr_t)p, tail = total - head - size;
  if (head) brisk__os_munmap(p, head);
  if (tail) brisk__os_munmap((char *)start + size, tail);
  vma_name((void *)start, size, BRISK_VMA_GUARD);
  return (void *)start;
}

bool brisk__os_open_pages(void *p, size_t size) {
  int saved = errno;
  int r = mprotect(p, size, PROT_READ | PROT_WRITE);
  errno = saved;
  return r == 0;
}

/* Back to inaccessible, and the pages' contents dropped: a new mapping over the
 * range gives both in one call, and zero pages when it is opened again. */
void brisk__os_close_pages(void *p, size_t size) {
  int saved = errno;
  void *q = mmap(p, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (q == MAP_FAILED) { /* out of mappings: the same effect in two calls */
    mprotect(p, size, PROT_NONE);
    madvise(p, size, MADV_DONTNEED);
  } else {
    vma_name(p, size, BRISK_VMA_GUARD); /* a new VMA: the pool's name again */
  }
  errno = saved;
}

/* ------------------------------------------------------------------------------
   NUMA: the calls behind numa.c's seam (brisk_numa_os_t)
------------------------------------------------------------------------------ */

/* glibc 2.35+ registers rseq for every thread and exports where its area is: the
 * kernel keeps cpu_id there, a load instead of a call. */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

int brisk__os_current_cpu(void) {
  if (&__rseq_size != NULL && __rseq_size >= 8) {
    int32_t cpu = *(volatile int32_t *)((char *)__builtin_thread_pointer() + __rseq_offset + 4);
    if (cpu >= 0) return cpu;
  }
  return sched_getcpu();
}

unsigned brisk__os_cpu_count(void) {
  uint64_t mask[16]; /* 1024 CPUs */
  int saved = errno;
  long r = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
  errno = saved;
  if (r <= 0) return 1;
  unsigned n = 0;
  for (long i = 0; i < r / 8; i++) n += (unsigned)__builtin_popcountll(mask[i]);
  return n > 0 ? n : 1;
}

int brisk__os_mbind(void *p, size_t len, int mode, const uint64_t *mask, unsigned long maxnode, unsigned flags) {
  int saved = errno;
  long r = syscall(SYS_mbind, p, len, mode, mask, maxnode, flags);
  int err = r == 0 ? 0 : -errno;
  errno = saved;
  return err;
}

/* get_mempolicy's flags (linux/mempolicy.h; numaif.h is libnuma's, which brisk
 * does not use): the node of the page at the address given. */
#define OS_MPOL_F_NODE (1 << 0)
#define OS_MPOL_F_ADDR (1 << 1)

int brisk__os_page_node(const void *p) {
  int node = -1, saved = errno;
  if (syscall(SYS_get_mempolicy, &node, NULL, 0ul, p, (unsigned long)(OS_MPOL_F_NODE | OS_MPOL_F_ADDR)) != 0) node = -1;
  errno = saved;
  return node;
}

/* "0xADDR (object+0xOFFSET)", the object being the executable or library that
 * holds the code, so that addr2line can name the line; the address alone where
 * the loader knows no object. dladdr takes the loader's lock, which no brisk lock
 * is ever held under. */
void brisk__os_describe_code(const void *pc, char *buf, size_t n) {
  Dl_info info;
  if (pc != NULL && dladdr(pc, &info) != 0 && info.dli_fname != NULL && info.dli_fname[0] != 0)
    brisk__snprintf(buf, n, "%p (%s+0x%zx)", pc, info.dli_fname, (size_t)((uintptr_t)pc - (uintptr_t)info.dli_fbase));
  else
    brisk__snprintf(buf, n, "%p", pc);
}

static brisk_fault_fn fault_fn;
static struct sigaction fault_prev;

/* 1 for a write, 0 for a read, -1 where the architecture does not say. */
static int fault_access(const void *uc) {
#if defined(__x86_64__)
  return (((const ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] & 2) ? 1 : 0;
#else
  (void)uc;
  return -1;
#endif
}

/* A fault brisk does not claim goes where it would have gone without brisk: to
 * the handler installed before, or to the default action (the faulting
 * instruction runs again with it in place; a signal sent by kill is raised
 * again). */
static void fault_handler(int sig, siginfo_t *si, void *uc) {
  int saved = errno;
  fault_fn((uintptr_t)si->si_addr, fault_access(uc)); /* returns only if not brisk's */
  errno = saved;
  if (fault_prev.sa_flags & SA_SIGINFO) {
    fault_prev.sa_sigaction(sig, si, uc);
    return;
  }
  if (fault_prev.sa_handler == SIG_DFL || fault_prev.sa_handler == SIG_IGN) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
    if (si->si_code <= 0) raise(sig);
    return;
  }
  fault_prev.sa_handler(sig);
}

/* fn sees every SIGSEGV first. Called at each guarded allocation: a handler the
 * program installed since (or a reset to the default) is put behind brisk's, so
 * that brisk's faults are reported and every other fault still reaches it. A
 * fault between the program's sigaction and brisk's next call goes to the
 * program's handler alone. */
bool brisk__os_catch_faults(brisk_fault_fn fn) {
  struct sigaction cur;
  int saved = errno;
  int r = sigaction(SIGSEGV, NULL, &cur);
  if (r == 0 && !((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == fault_handler)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    fault_fn = fn;
    r = sigaction(SIGSEGV, &sa, &fault_prev);
  }
  errno = saved;
  return r == 0;
}

/* ------------------------------------------------------------------------------
   A formatter that needs no heap: %s %c %d %u %zu %llu %p %x and a field width.
------------------------------------------------------------------------------ */
static size_t fmt_uint(char *tmp, unsigned long long v, unsigned base) {
  size_t n = 0;
  do {
    unsigned d = (unsigned)(v % base);
    tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= base;
  } while (v);
  return n;
}

static int vformat(char *buf, size_t cap, const char *fmt, va_list ap) {
  size_t o = 0;
#define PUT(ch) do { if (o + 1 < cap) buf[o] = (ch); o++; } while (0)
  for (const char *f = fmt; *f; f++) {
    if (*f != '%') { PUT(*f); continue; }
    f++;
    bool left = false;
    if (*f == '-') { left = true; f++; }
    size_t width = 0;
    while (*f >= '0' && *f <= '9') width = width * 10 + (size_t)(*f++ - '0');
    int longs = 0;
    bool zsize = false;
    while (*f == 'l') { longs++; f++; }
    if (*f == 'z') { zsize = true; f++; }
    char tmp[32];
    const char *s = tmp;
    size_t n = 0;
    bool reversed = true;
    switch (*f) {
    case 's': s = va_arg(ap, const char *); if (!s) s = "(null)"; n = strlen(s); reversed = false; break;
    case 'c': tmp[0] = (char)va_arg(ap, int); n = 1; reversed = false; break;
    case 'd': {
      long long v = longs ? va_arg(ap, long long) : va_arg(ap, int);
      unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
      n = fmt_uint(tmp, u, 10);
      if (v < 0) tmp[n++] = '-';
      break;
    }
    case 'u': case 'x': {
      unsigned long long v = zsize ? va_arg(ap, size_t)
                           : longs ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned);
      n = fmt_uint(tmp, v, *f == 'x' ? 16 : 10);
      break;
    }
    case 'p': {
      n = fmt_uint(tmp, (uintptr_t)va_arg(ap, void *), 16);
      tmp[n++] = 'x';
      tmp[n++] = '0';
      break;
    }
    case '%': tmp[0] = '%'; n = 1; reversed = false; break;
    default: tmp[0] = '?'; n = 1; reversed = false; break;
    }
    if (!left) for (size_t i = n; i < width; i++) PUT(' ');
    for (size_t i = 0; i < n; i++) PUT(reversed ? s[n - 1 - i] : s[i]);
    if (left) for (size_t i = n; i < width; i++) PUT(' ');
  }
  if (cap) buf[o < cap ? o : cap - 1] = 0;
#undef PUT
  return (int)o;
}

int brisk__vsnprintf(char *buf, size_t n, const char *fmt, va_list ap) { return vformat(buf, n, fmt, ap); }

int brisk__snprintf(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = vformat(buf, n, fmt, ap);
  va_end(ap);
  return r;
}

void brisk__printf_err(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int r = vformat(buf, sizeof buf, fmt, ap);
  va_end(ap);
  brisk__os_write_err(buf, (size_t)r < sizeof buf ? (size_t)r : sizeof buf - 1);
}

/* Heap corruption: one line naming the call and the address, then abort. Nothing
 * on this path may touch the heap it has just found broken. */
void brisk__fatal(const char *call, const char *what, const void *p) {
  brisk__printf_err("brisk: %s: %s %p\n", call, what, p);
  abort();
}

void brisk__assert_fail(const char *c, const char *file, int line) {
  brisk__printf_err("brisk: assertion failed: %s (%s:%d)\n", c, file, line);
  abort();
}

/* ------------------------------------------------------------------------------
   Robust mutexes: a thread's registration (thread_cache.c) holds one for the
   thread's whole life, and the kernel marks it owner-died when the thread ends,
   whether or not the thread's TLS destructors ran. None of these calls blocks.
------------------------------------------------------------------------------ */

/* False where the kernel or libc has no robust futexes: the caller then never
 * learns of a thread's death. */
bool brisk__os_robust_init(pthread_mutex_t *m) {
  pthread_mutexattr_t attr;
  int saved = errno;
  bool ok = pthread_mutexattr_init(&attr) == 0;
  ok = ok && pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) == 0;
  ok = ok && pthread_mutex_init(m, &attr) == 0;
  pthread_mutexattr_destroy(&attr);
  if (!ok) pthread_mutex_init(m, NULL); /* a plain mutex, still lockable */
  errno = saved;
  return ok;
}

/* The mutex is fresh and the caller its first and only owner: it never waits. */
void brisk__os_robust_hold(pthread_mutex_t *m) {
  int saved = errno;
  pthread_mutex_lock(m);
  errno = saved;
}

void brisk__os_robust_release(pthread_mutex_t *m) {
  int saved = errno;
  pthread_mutex_unlock(m);
  errno = saved;
}

/* Whether m's owner lives, without waiting: a trylock. An owner that died
 * leaves the mutex to the caller, which makes it consistent and unlocks it. */
brisk_robust_t brisk__os_robust_probe(pthread_mutex_t *m) {
  int saved = errno;
  int r = pthread_mutex_trylock(m);
  brisk_robust_t st = BRISK_ROBUST_HELD;
  if (r == EOWNERDEAD) {
    pthread_mutex_consistent(m);
    pthread_mutex_unlock(m);
    st = BRISK_ROBUST_OWNER_DIED;
  } else if (r == 0) {
    pthread_mutex_unlock(m);
    st = BRISK_ROBUST_FREE;
  }
  errno = saved;
  return st;
}
/* ------------------------------------------------------------------------------
   Heap profiles (prof.c): the profile's file, and the trigger file that asks for
   one. /proc/self/maps is read with brisk__os_open_read and brisk__os_read.
------------------------------------------------------------------------------ */

/* As brisk__os_create_file, but a failure says why: -errno. */
int brisk__os_create_file_err(const char *path) {
  int saved = errno;
  long fd = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = errno;
  errno = saved;
  return fd < 0 ? -(err ? err : EIO) : (int)fd;
}

bool brisk__os_file_exists(const char *path) {
  int saved = errno;
  long r = syscall(SYS_faccessat, AT_FDCWD, path, F_OK, 0);
  errno = saved;
  return r == 0;
}

void brisk__os_remove_file(const char *path) {
  int saved = errno;
  syscall(SYS_unlinkat, AT_FDCWD, path, 0);
  errno = saved;
}
/* ------------------------------------------------------------------------------
   The live-metrics file (metrics.c): made under a temporary name, sized, mapped
   shared, then renamed into place, so that a reader never sees it half made.
------------------------------------------------------------------------------ */

/* Read-write, created or truncated; -1 on failure. */
int brisk__os_create_rw(const char *path) {
  int saved = errno;
  long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  errno = saved;
  return fd < 0 ? -1 : (int)fd;
}

bool brisk__os_truncate(int fd, size_t size) {
  int saved = errno;
  long r = syscall(SYS_ftruncate, fd, (long)size);
  errno = saved;
  return r == 0;
}

/* The file's first size bytes, shared with every process that maps it. */
void *brisk__os_map_shared(int fd, size_t size) {
  int saved = errno;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

bool brisk__os_rename(const char *from, const char *to) {
  int saved = errno;
  long r = syscall(SYS_renameat, AT_FDCWD, from, AT_FDCWD, to);
  errno = saved;
  return r == 0;
}

/* The wall clock, for readers in other processes (the monotonic clock is the
 * same for them only on the same boot). */
uint64_t brisk__os_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
