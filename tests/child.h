/* Run a test body in a forked child, so that an abort inside brisk, a resource
 * limit or a broken program break stays there. Include after cmocka.h. */
#ifndef BRISK_TEST_CHILD_H
#define BRISK_TEST_CHILD_H

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* Returns the child's exit code; fails the test if it died of a signal. */
static inline int run_in_child(int (*body)(void), const char *what) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(body());
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status))
    fail_msg("%s: the child died of signal %d (%s); brisk's message, if any, is above", what,
             WTERMSIG(status), strsignal(WTERMSIG(status)));
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

/* The address space in use now, read without malloc (the harness runs on glibc's,
 * and a limit set from this figure must not be eaten by a stdio buffer). For
 * children only: exits on failure. */
static inline size_t vm_now(void) {
  char buf[64] = {0};
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0) _exit(40);
  close(fd);
  return strtoul(buf, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

static inline void set_as_limit(size_t bytes) {
  struct rlimit rl = {bytes, RLIM_INFINITY};
  if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(41);
}

#endif
