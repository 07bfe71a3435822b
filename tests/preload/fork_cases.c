/* Two fork deadlocks that glibc's own malloc tests find, as programs to run
 * with brisk preloaded. A watchdog turns a hang into a failure with a message.
 *
 *   fork_cases stdio   (tst-malloc-fork-deadlock) for 3 s, 4 threads fork in a loop while
 *                      8 threads getline() a 50,000-byte line (realloc under the
 *                      FILE's lock) and one thread runs fflush(NULL) (which holds
 *                      stdio's list lock while it waits for each FILE's lock).
 *                      A prepare handler that takes the allocator's locks before
 *                      glibc's fork takes the list lock closes a cycle.
 *   fork_cases signal  (tst-mallocfork2) a single-threaded process allocates in
 *                      a loop while another process sends it signals; the handler
 *                      forks. The interrupted malloc may hold a lock, and a
 *                      prepare handler that waits for it waits for itself.
 *
 * Prints "OK <mode> forks=N" and exits 0 when every thread finished. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_S 20

static const char *mode;

static void watchdog(int sig) {
  (void)sig;
  static const char msg[] = "FAIL fork_cases: no progress for 20 s: deadlock\n";
  if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
  _exit(2);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------------
   stdio
------------------------------------------------------------------------------ */
#define FORKERS 4
#define READERS 8
#define STDIO_SECONDS 3.0
#define LINE_BYTES 50000

static atomic_int stop;
static atomic_int forks_done;
static char *line_text; /* LINE_BYTES of 'x' and a newline */

static void *forker(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      exit(1);
    }
    if (pid == 0) {
      /* The child's allocator must work: no lock left held by a thread that is gone. */
      void *p = malloc(100);
      void *q = malloc(200000);
      free(p);
      free(q);
      _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "FAIL fork_cases: child %d ended with status %#x\n", (int)pid, status);
      exit(1);
    }
    atomic_fetch_add(&forks_done, 1);
  }
  return NULL;
}

static void *reader(void *arg) {
  (void)arg;
  FILE *f = fmemopen(line_text, LINE_BYTES + 1, "r");
  if (f == NULL) {
    perror("fmemopen");
    exit(1);
  }
  while (!atomic_load(&stop)) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f); /* grows the buffer with realloc, FILE locked */
    if (n != LINE_BYTES + 1) {
      fprintf(stderr, "FAIL fork_cases: getline read %zd bytes\n", n);
      exit(1);
    }
    free(line);
    rewind(f);
  }
  fclose(f);
  return NULL;
}

/* Paced a little: in a tight loop the flusher would hold the list lock nearly
 * all the time and starve the forks (glibc's own malloc too). */
static void *flusher(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    fflush(NULL);
    usleep(500);
  }
  return NULL;
}

static int run_stdio(void) {
  line_text = malloc(LINE_BYTES + 1);
  memset(line_text, 'x', LINE_BYTES);
  line_text[LINE_BYTES] = '\n';
  pthread_t f[FORKERS], r[READERS], fl;
  for (int i = 0; i < READERS; i++) pthread_create(&r[i], NULL, reader, NULL);
  pthread_create(&fl, NULL, flusher, NULL);
  for (int i = 0; i < FORKERS; i++) pthread_create(&f[i], NULL, forker, NULL);
  double end = now_s() + STDIO_SECONDS;
  while (now_s() < end) usleep(10000);
  atomic_store(&stop, 1); /* a deadlocked thread never sees it: the watchdog ends the run */
  for (int i = 0; i < FORKERS; i++) pthread_join(f[i], NULL);
  for (int i = 0; i < READERS; i++) pthread_join(r[i], NULL);
  pthread_join(fl, NULL);
  free(line_text);
  int forks = atomic_load(&forks_done);
  if (forks < 1) {
    fprintf(stderr, "FAIL fork_cases: only %d forks in %.0f s\n", forks, STDIO_SECONDS);
    return -1;
  }
  return forks;
}

/* ------------------------------------------------------------------------------
   signal
------------------------------------------------------------------------------ */
#define SIGNAL_FORKS 300
#define SIGNAL_SECONDS 20.0

static volatile sig_atomic_t handler_forks, handler_failed;

static void fork_in_handler(int sig) {
  (void)sig;
  int saved = errno;
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    handler_failed = 1;
  handler_forks++;
  errno = saved;
}

static int run_signal(void) {
  pid_t parent = getpid();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fork_in_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  /* The signals come from another process: a thread would make this process
   * multithreaded, which is the other guarantee. */
  pid_t sender = fork();
  if (sender == 0) {
    for (;;) {
      if (getppid() != parent || kill(parent, SIGUSR1) != 0) _exit(0);
      usleep(200);
    }
  }
  /* Bursts that go past the thread cache to the spans and the page
   * heap, large blocks, and malloc_trim, which holds the heap lock across its
   * madvise calls: the handler often lands with a lock held. */
  static const size_t sizes[] = {16, 48, 200, 1000, 5000, 30000, 70000, 300000};
  enum { BURST = 2000 };
  static void *burst[BURST];
  unsigned seed = 1;
  double end = now_s() + SIGNAL_SECONDS;
  while (handler_forks < SIGNAL_FORKS && now_s() < end) {
    seed = seed * 1103515245u + 12345u;
    size_t size = sizes[(seed >> 16) % (sizeof sizes / sizeof *sizes)];
    int n = size > 10000 ? BURST / 20 : BURST;
    for (int i = 0; i < n; i++) {
      burst[i] = malloc(size);
      if (burst[i] == NULL) {
        fprintf(stderr, "FAIL fork_cases: malloc failed\n");
        return -1;
      }
      memset(burst[i], 1, 16);
    }
    for (int i = 0; i < n; i++) free(burst[i]);
    if ((seed >> 12) % 4 == 0) malloc_trim(0);
    alarm(WATCHDOG_S);
  }
  kill(sender, SIGKILL);
  waitpid(sender, NULL, 0);
  if (handler_failed) {
    fprintf(stderr, "FAIL fork_cases: a child forked in the handler failed\n");
    return -1;
  }
  if (handler_forks < 50) {
    fprintf(stderr, "FAIL fork_cases: only %d forks in the handler\n", (int)handler_forks);
    return -1;
  }
  return (int)handler_forks;
}

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "stdio") != 0 && strcmp(argv[1], "signal") != 0)) {
    fprintf(stderr, "usage: fork_cases stdio|signal\n");
    return 2;
  }
  mode = argv[1];
  signal(SIGALRM, watchdog);
  alarm(WATCHDOG_S);
  int forks = strcmp(mode, "stdio") == 0 ? run_stdio() : run_signal();
  if (forks < 0) return 1;
  printf("OK %s forks=%d\n", mode, forks);
  return 0;
}
