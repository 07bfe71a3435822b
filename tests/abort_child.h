/* The harness of the tests whose child must abort with one "brisk: " line
 * (test_bad_usage, test_guard): the child runs the wrong call with its stderr in
 * a pipe and SIGABRT at its default action; the parent checks the signal, that
 * exactly one line starts "brisk: <call>: ", that it names the address the
 * child reported, and its words. Include after cmocka.h and api_helpers.h;
 * call abort_child_setup() once before the tests. */
#ifndef BRISK_TEST_ABORT_CHILD_H
#define BRISK_TEST_ABORT_CHILD_H

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* A child that survives its wrong call exits with this. */
#define EXIT_SURVIVED 77

/* The address the child passes to brisk, written before the wrong call, in memory
 * shared with the parent. */
static volatile uintptr_t *reported_addr;

static void *report(void *p) {
  *reported_addr = (uintptr_t)p;
  return opaque_ptr(p);
}

typedef struct outcome_s {
  int status;
  char err[8192]; /* the child's stderr, NUL-terminated */
} outcome_t;

static void run_capturing(void (*wrong)(void), outcome_t *out) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  *reported_addr = 0;
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    /* The default action for SIGABRT whatever the harness installed, and no core. */
    signal(SIGABRT, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGABRT);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    wrong();
    _exit(EXIT_SURVIVED);
  }
  close(fds[1]);
  size_t len = 0;
  for (;;) {
    char buf[1024];
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size_t take = (size_t)n < sizeof out->err - 1 - len ? (size_t)n : sizeof out->err - 1 - len;
    memcpy(out->err + len, buf, take);
    len += take;
  }
  out->err[len] = 0;
  close(fds[0]);
  assert_int_equal(waitpid(pid, &out->status, 0), pid);
}

/* Whether line (up to its end) holds "0x<hex>" equal to addr. */
static int line_names_address(const char *line, const char *end, uintptr_t addr) {
  for (const char *s = line; s + 2 < end; s++) {
    if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X') || !isxdigit((unsigned char)s[2])) continue;
    char *stop;
    unsigned long long v = strtoull(s + 2, &stop, 16);
    if (stop > s + 2 && stop <= end && v == (unsigned long long)addr) return 1;
  }
  return 0;
}

static int line_has_word(const char *line, const char *end, const char *word) {
  size_t n = strlen(word), len = (size_t)(end - line);
  for (size_t i = 0; i + n <= len; i++)
    if (strncmp(line + i, word, n) == 0) return 1;
  return 0;
}

/* Run wrong() in a child; it must die of SIGABRT after printing one "brisk: " line
 * that starts "brisk: <call>: ", names the reported address, and holds one of
 * words (NULL-terminated; words == NULL accepts any wording). */
static void expect_abort(void (*wrong)(void), const char *call, const char *const *words) {
  static outcome_t out;
  run_capturing(wrong, &out);
  uintptr_t addr = *reported_addr;
  if (WIFEXITED(out.status)) {
    if (WEXITSTATUS(out.status) == EXIT_SURVIVED)
      fail_msg("%s on %#lx did not abort; stderr: \"%s\"", call, (unsigned long)addr, out.err);
    fail_msg("%s on %#lx: the child exited with %d, want SIGABRT; stderr: \"%s\"", call,
             (unsigned long)addr, WEXITSTATUS(out.status), out.err);
  }
  expect(WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGABRT,
         "%s on %#lx: the child died of signal %d, want SIGABRT (%d); stderr: \"%s\"", call,
         (unsigned long)addr, WTERMSIG(out.status), SIGABRT, out.err);

  const char *line = NULL, *line_end = NULL;
  int brisk_lines = 0;
  for (const char *s = out.err; *s;) {
    const char *e = strchr(s, '\n');
    if (!e) e = s + strlen(s);
    if (strncmp(s, "brisk: ", 7) == 0) {
      brisk_lines++;
      line = s;
      line_end = e;
    }
    s = *e ? e + 1 : e;
  }
  expect(brisk_lines == 1, "%s on %#lx: %d lines start with \"brisk: \", want 1; stderr: \"%s\"",
         call, (unsigned long)addr, brisk_lines, out.err);

  char prefix[64];
  snprintf(prefix, sizeof prefix, "brisk: %s: ", call);
  expect(strncmp(line, prefix, strlen(prefix)) == 0, "want a line starting \"%s\"; stderr: \"%s\"",
         prefix, out.err);
  expect(line_names_address(line, line_end, addr),
         "the line does not name the address %#lx as 0x<hex>; stderr: \"%s\"",
         (unsigned long)addr, out.err);
  if (words) {
    int found = 0;
    for (const char *const *w = words; *w; w++) found |= line_has_word(line, line_end, *w);
    expect(found, "the line names neither \"%s\" nor the other expected words; stderr: \"%s\"",
           words[0], out.err);
  }
}

/* The shared word the child reports its address in. */
static inline int abort_child_setup(void) {
  void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return -1;
  reported_addr = m;
  return 0;
}

#endif
