/* Run a test body in a forked child, so that an abort inside brisk, a resource
 * limit or a broken program break stays there. Include after cmocka.h. */
#ifndef BRISK_TEST_CHILD_H
#define BRISK_TEST_CHILD_H

#include <signal.h>
#include <stdio.h>
#include <string.h>
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

#endif
