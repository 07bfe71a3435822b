/* brisk: the launcher. Runs a program with libbrisk.so preloaded, lists the options,
 * prints the version. It links libbrisk.so itself, with a run path relative to its
 * own location (../lib, or its own directory in the build tree), so the library it
 * asks for the option table and the version is the one the dynamic loader found,
 * and that is the one it preloads: dladdr() names its file. Single-threaded; it
 * ends in execvp() or in _exit(), so its own brisk never prints exit statistics.
 *
 *   brisk [--stats[=json]] [--set NAME=VALUE]... [--] PROGRAM ARGS...
 *   brisk options | brisk --version | brisk --help
 *   brisk top ... | brisk exporter ...  (live metrics: top.c, exporter.c) */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "brisk.h"
#include "metrics.h"

/* What a usage error exits with, as most tools do; a program that cannot be run
 * gets the shell's 126 (found, not runnable) and 127 (not found). */
enum { EXIT_USAGE = 2, EXIT_CANNOT_RUN = 126, EXIT_NOT_FOUND = 127 };

static const char usage_text[] =
  "usage: brisk [--stats[=json]] [--set NAME=VALUE]... [--] PROGRAM [ARGS...]\n"
  "       brisk options      list every BRISK_ option: default, value here, meaning\n"
  "       brisk top [--dir DIR] [-d SECONDS] [-n SCREENS | --once]\n"
  "                          the processes publishing in BRISK_METRICS=DIR, live\n"
  "       brisk exporter --listen ADDR:PORT [--dir DIR]\n"
  "                          serve them over HTTP for Prometheus (GET /metrics)\n"
  "       brisk --version\n"
  "Runs PROGRAM with libbrisk.so preloaded (before any LD_PRELOAD already set).\n"
  "  --stats         statistics on stderr at exit (BRISK_STATS=1)\n"
  "  --stats=json    the same as one JSON document (BRISK_STATS=json)\n"
  "  --set N=V       set option N (BRISK_N=V), checked against the library's table\n"
  "Use -- before a PROGRAM named 'options', 'top' or 'exporter', or starting with '-'.\n";

/* Flushes and leaves without running destructors: this process's own brisk has
 * nothing to report, even when BRISK_STATS is set in the environment. */
static _Noreturn void finish(int status) {
  fflush(stdout);
  fflush(stderr);
  _exit(ferror(stdout) ? 1 : status);
}

__attribute__((format(printf, 2, 3))) static _Noreturn void die(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("brisk: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  finish(status);
}

/* The file of the libbrisk.so this process runs on: the one to preload. */
static const char *library_path(void) {
  Dl_info info;
  if (dladdr((void *)brisk_version, &info) == 0 || info.dli_fname == NULL || info.dli_fname[0] == 0)
    die(1, "cannot tell which file libbrisk.so was loaded from");
  char *abs = realpath(info.dli_fname, NULL);
  return abs != NULL ? abs : info.dli_fname;
}

static void print_version(void) {
  int v = brisk_version();
  printf("brisk %d.%d.%d\nlibrary: %s\n", v / 10000, v / 100 % 100, v % 100, library_path());
  if (v != BRISK_VERSION)
    fprintf(stderr, "brisk: warning: the launcher is %s but the library it found is %d.%d.%d\n",
            BRISK_VERSION_STRING, v / 10000, v / 100 % 100, v % 100);
}

/* One paragraph per option, from the library's own table. --man gives the same as
 * roff, for the man page's ENVIRONMENT section (the build makes it). */
static void print_options(int roff) {
  size_t n = brisk_option_count();
  if (!roff) printf("%zu options, read from the environment when brisk starts:\n", n);
  for (size_t i = 0; i < n; i++) {
    const brisk_option_t *o = brisk_option_get(i);
    if (roff) {
      printf(".TP\n.B BRISK_%s\n%s.\nValues: %s; default: %s.\n", o->name, o->meaning, o->values,
             o->default_value);
      continue;
    }
    char var[64];
    snprintf(var, sizeof var, "BRISK_%s", o->name);
    const char *now = getenv(var);
    printf("\n%s\n  default  %s\n", var, o->default_value);
    if (now == NULL) printf("  here     (not set: the default)\n");
    else if (brisk_option_check(o->name, now) != 0) printf("  here     %s (refused: the default applies)\n", now);
    else printf("  here     %s\n", now);
    printf("  values   %s\n  meaning  %s\n", o->values, o->meaning);
  }
}

/* --set NAME=VALUE: NAME with or without BRISK_, in any case; checked against the
 * table so that a typo fails here instead of warning in the program. */
static void set_option(const char *arg) {
  const char *eq = strchr(arg, '=');
  if (eq == NULL || eq == arg) die(EXIT_USAGE, "--set wants NAME=VALUE, got '%s'", arg);
  char name[64];
  size_t len = (size_t)(eq - arg);
  if (len >= 6 && strncasecmp(arg, "BRISK_", 6) == 0) arg += 6, len -= 6;
  if (len == 0 || len >= sizeof name) die(EXIT_USAGE, "unknown option '%s'", arg);
  for (size_t i = 0; i < len; i++) name[i] = (char)toupper((unsigned char)arg[i]);
  name[len] = 0;
  switch (brisk_option_check(name, eq + 1)) {
  case 0: break;
  case ENOENT: die(EXIT_USAGE, "unknown option '%s' ('brisk options' lists them)", name);
  default: {
    for (size_t i = 0; i < brisk_option_count(); i++)
      if (strcmp(brisk_option_get(i)->name, name) == 0)
        fprintf(stderr, "brisk: BRISK_%s takes %s\n", name, brisk_option_get(i)->values);
    die(EXIT_USAGE, "bad value '%s' for BRISK_%s", eq + 1, name);
  }
  }
  char var[80];
  snprintf(var, sizeof var, "BRISK_%s", name);
  if (setenv(var, eq + 1, 1) != 0) die(1, "setenv %s: %s", var, strerror(errno));
}

/* LD_PRELOAD = the library, then what was there (without the library twice). The
 * loader splits the list at spaces and colons, so a path with either cannot go in. */
static void preload(const char *lib) {
  if (strpbrk(lib, " :") != NULL)
    die(1, "cannot preload %s: LD_PRELOAD cannot hold a path with a space or a colon", lib);
  const char *old = getenv("LD_PRELOAD");
  size_t cap = strlen(lib) + (old ? strlen(old) : 0) + 2;
  char *list = malloc(cap);
  if (list == NULL) die(1, "out of memory");
  strcpy(list, lib);
  if (old != NULL) {
    char *copy = strdup(old), *save = NULL;
    if (copy == NULL) die(1, "out of memory");
    for (char *t = strtok_r(copy, " :", &save); t != NULL; t = strtok_r(NULL, " :", &save)) {
      if (strcmp(t, lib) == 0) continue;
      strcat(list, ":");
      strcat(list, t);
    }
  }
  if (setenv("LD_PRELOAD", list, 1) != 0) die(1, "setenv LD_PRELOAD: %s", strerror(errno));
}

int main(int argc, char **argv) {
  int i = 1;
  if (argc < 2) {
    fputs(usage_text, stderr);
    finish(EXIT_USAGE);
  }
  if (strcmp(argv[1], "options") == 0) {
    int man = argc == 3 && strcmp(argv[2], "--man") == 0;
    if (argc > 2 && !man) die(EXIT_USAGE, "options takes no argument (to run a program named options: brisk -- options)");
    print_options(man);
    finish(0);
  }
  if (strcmp(argv[1], "top") == 0) finish(top_main(argc - 1, argv + 1));
  if (strcmp(argv[1], "exporter") == 0) finish(exporter_main(argc - 1, argv + 1));
  if (strcmp(argv[1], "--version") == 0) {
    print_version();
    finish(0);
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(usage_text, stdout);
    finish(0);
  }
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) { i++; break; }
    if (strcmp(a, "--stats") == 0) setenv("BRISK_STATS", "1", 1);
    else if (strcmp(a, "--stats=json") == 0) setenv("BRISK_STATS", "json", 1);
    else if (strcmp(a, "--set") == 0) {
      if (++i == argc) die(EXIT_USAGE, "--set wants NAME=VALUE");
      set_option(argv[i]);
    } else if (strncmp(a, "--set=", 6) == 0) set_option(a + 6);
    else if (a[0] == '-') die(EXIT_USAGE, "unknown option '%s' (brisk --help)", a);
    else break;
  }
  if (i == argc) die(EXIT_USAGE, "no program to run (brisk --help)");
  preload(library_path());
  fflush(stdout);
  execvp(argv[i], argv + i);
  die(errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN, "cannot run %s: %s", argv[i], strerror(errno));
}
