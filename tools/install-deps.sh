#!/usr/bin/env bash
# install-deps.sh: the one place that installs what brisk's tools need, and the one
# place that makes a build directory usable after a failed or interrupted run. Every
# tool sources it; it can also be run: tools/install-deps.sh GROUP...
#
# Packages come in named groups (below). Only what is missing is installed, with
# apt-get, as root; `apt-get update` runs only when something is missing, at most once
# per process. Parallel callers (ctest runs the NUMA VM tests side by side) take turns
# on a lock, so dpkg's own lock never fails one of them. Not root and something
# missing: one line naming the packages and the command that installs them.
#
#   brisk_need GROUP...       required groups: status 1 (with the message) if missing
#   brisk_want GROUP...       optional groups: what cannot be installed is skipped
#   brisk_configure DIR ARGS  configure DIR with cmake ARGS unless it is configured
# shellcheck shell=bash

# The groups. build: the library and the tools' programs. test: what ctest runs
# (python3 and sqlite3 are the real programs of the LD_PRELOAD tests; python3-prometheus-client
# parses the exporter's output in the metrics tests; procps gives ps
# for the fork tests' diagnostics; gnuplot-nox the report tool's plots). bench: the
# benchmark programs and their report. callgrind: instruction counts. package: dpkg-shlibdeps, for the
# .deb's libc6 dependency (tools/package.sh). numa-vm: booting a multi-node kernel
# under qemu (tools/numa-vm.sh). peers: the other allocators compared with brisk,
# optional (one that cannot be installed is left out of the comparison).
declare -gA BRISK_DEPS=(
  [build]="cmake make gcc g++ pkg-config libhwloc-dev"
  [test]="libcmocka-dev libbenchmark-dev python3 python3-prometheus-client sqlite3 procps gnuplot-nox clang libclang-rt-14-dev google-perftools"
  [bench]="libbenchmark-dev python3 gnuplot-nox"
  [callgrind]="valgrind python3"
  [package]="dpkg-dev"
  [numa-vm]="qemu-system-x86 busybox-static cpio xz-utils"
  [peers]="libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0"
)

brisk_deps_say() { printf 'install-deps: %s\n' "$*" >&2; }

# The packages of groups $@ that are not installed, one per line (one dpkg-query
# for all: it is slow to start).
brisk_deps_missing() {
  local g want=()
  for g in "$@"; do
    [[ -n ${BRISK_DEPS[$g]+x} ]] || { brisk_deps_say "unknown group '$g' (${!BRISK_DEPS[*]})"; return 2; }
    # shellcheck disable=SC2206 # one word per package
    want+=(${BRISK_DEPS[$g]})
  done
  comm -23 <(printf '%s\n' "${want[@]}" | sort -u) \
    <(dpkg-query -W -f='${Package} ${Status}\n' "${want[@]}" 2>/dev/null |
      awk '$NF == "installed" && $(NF-1) == "ok" { print $1 }' | sort -u)
}

# apt-get install $@ under the lock; updates the package lists first (once per
# process), because a bare machine's lists are empty or stale.
BRISK_DEPS_UPDATED=0
brisk_deps_apt() {
  # A fixed path, not $TMPDIR: every installer must meet on the same lock. dpkg's
  # own lock is waited for too, in case some other apt-get holds it.
  local lock=/tmp/brisk-install-deps.lock
  (
    flock 9
    export DEBIAN_FRONTEND=noninteractive
    # An earlier install that was interrupted leaves dpkg half done, and apt-get
    # refuses to work until it is finished.
    dpkg --configure -a >/dev/null 2>&1 || brisk_deps_say "warning: dpkg --configure -a failed"
    if [[ $BRISK_DEPS_UPDATED == 0 ]]; then
      apt-get update -qq >/dev/null 2>&1 || brisk_deps_say "warning: apt-get update failed"
    fi
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "$@" \
      >/dev/null 2>&1
  ) 9>"$lock"
  local status=$?
  BRISK_DEPS_UPDATED=1
  return $status
}

# Whether this process may install: root, on a system with apt-get.
brisk_deps_can_install() {
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null && command -v dpkg-query >/dev/null
}

brisk_need() {
  command -v dpkg-query >/dev/null || {
    brisk_deps_say "not a Debian system: install by hand what these need: $*"
    return 0
  }
  local missing
  missing=$(brisk_deps_missing "$@") || return 2
  [[ -n $missing ]] || return 0
  # shellcheck disable=SC2086 # one word per package
  set -- $missing
  if ! brisk_deps_can_install; then
    brisk_deps_say "missing packages: $* (run this as root, or: sudo apt-get install $*)"
    return 1
  fi
  brisk_deps_say "installing: $*"
  brisk_deps_apt "$@" || {
    brisk_deps_say "apt-get install $* failed (run it by hand to see why)"
    return 1
  }
}

brisk_want() {
  command -v dpkg-query >/dev/null && brisk_deps_can_install || return 0
  local missing p
  missing=$(brisk_deps_missing "$@") || return 2
  for p in $missing; do
    brisk_deps_say "installing: $p"
    brisk_deps_apt "$p" || brisk_deps_say "note: could not install $p; going on without it"
  done
}

# A build directory that cmake can build in. A configure that failed or was
# interrupted leaves CMakeCache.txt without a Makefile (or build.ninja), and a cache
# made for another source tree is refused by cmake; both are wiped and configured
# afresh. A configure that fails now leaves no cache behind, so the next run starts
# clean. The configure output goes to DIR/configure.log, and on failure to stderr.
brisk_configure() {
  local dir=$1 cache=$1/CMakeCache.txt home
  shift
  if [[ -f $cache ]]; then
    home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")
    if [[ ! -f $dir/Makefile && ! -f $dir/build.ninja ]] ||
       [[ $(realpath -m "$home") != "$(pwd -P)" ]]; then
      brisk_deps_say "$dir holds the cache of an unfinished or foreign configure; configuring afresh"
      rm -rf "$cache" "$dir/CMakeFiles"
    fi
  fi
  [[ -f $cache ]] && return 0
  mkdir -p "$dir"
  if ! cmake -S . -B "$dir" "$@" >"$dir/configure.log" 2>&1; then
    cat "$dir/configure.log" >&2
    rm -rf "$cache" "$dir/CMakeFiles"
    brisk_deps_say "cmake could not configure $dir (log above)"
    return 1
  fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -uo pipefail
  if [[ $# == 0 || $1 == -h || $1 == --help ]]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    echo "groups: ${!BRISK_DEPS[*]}"
    exit 0
  fi
  brisk_need "$@"
fi
