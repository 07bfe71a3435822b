#!/usr/bin/env bash
# install_deps_test.sh: tools/install-deps.sh without installing anything. A missing
# package is found (and an installed one is not), an unknown group is an error, a
# caller that is not root gets one line naming the packages and installs nothing;
# brisk_configure configures afresh a directory that a failed configure left with
# a cache and no Makefile (the bug that broke the second run of tools/compare.sh),
# one whose cache belongs to another source tree, and leaves no cache when the
# configure fails.
#
# usage: tests/tools/install_deps_test.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$root"
. tools/install-deps.sh

BRISK_DEPS[fake]="brisk-no-such-package-xyz dpkg"
[[ $(brisk_deps_missing fake) == brisk-no-such-package-xyz ]] || fail "missing: '$(brisk_deps_missing fake)'"
status=0; brisk_deps_missing no-such-group 2>/dev/null || status=$?
[[ $status == 2 ]] || fail "an unknown group gave status $status"
# As a user: one line, status 1, no apt-get.
id() { echo 1000; }
apt-get() { touch "$tmp/apt-ran"; }
status=0; brisk_need fake 2>"$tmp/err" || status=$?
[[ $status == 1 ]] || fail "brisk_need as a user gave status $status"
grep -q 'missing packages: brisk-no-such-package-xyz (run this as root' "$tmp/err" || fail "message: $(cat "$tmp/err")"
[[ ! -e $tmp/apt-ran ]] || fail "apt-get ran for a user"
brisk_want fake 2>/dev/null || fail "brisk_want failed for a user"
unset -f id apt-get

# brisk_configure on what a failed configure leaves: a cache, no Makefile.
args=(-DBRISK_TESTS=OFF -DBRISK_BENCH=OFF)
mkdir -p "$tmp/stale/CMakeFiles"
printf 'CMAKE_HOME_DIRECTORY:INTERNAL=%s\n' "$root" >"$tmp/stale/CMakeCache.txt"
brisk_configure "$tmp/stale" "${args[@]}" 2>"$tmp/err" || { cat "$tmp/err" >&2; fail "stale cache: configure failed"; }
[[ -f $tmp/stale/Makefile || -f $tmp/stale/build.ninja ]] || fail "stale cache: no Makefile after brisk_configure"
grep -q 'configuring afresh' "$tmp/err" || fail "stale cache: not reported"
# A configured directory is left as it is.
touch "$tmp/stale/marker"
brisk_configure "$tmp/stale" "${args[@]}" 2>"$tmp/err" || fail "configured dir: brisk_configure failed"
[[ ! -s $tmp/err && -e $tmp/stale/marker && -f $tmp/stale/Makefile ]] || fail "configured dir was touched: $(cat "$tmp/err")"
# A cache of another tree (a moved checkout) would make cmake refuse.
sed -i "s|^CMAKE_HOME_DIRECTORY:INTERNAL=.*|CMAKE_HOME_DIRECTORY:INTERNAL=$tmp/elsewhere|" "$tmp/stale/CMakeCache.txt"
brisk_configure "$tmp/stale" "${args[@]}" 2>"$tmp/err" || fail "foreign cache: configure failed"
grep -q "^CMAKE_HOME_DIRECTORY:INTERNAL=$root\$" "$tmp/stale/CMakeCache.txt" || fail "foreign cache kept"
# A configure that fails leaves no cache for the next run to trip on.
status=0; brisk_configure "$tmp/bad" -DCMAKE_C_COMPILER=/nonexistent/cc >/dev/null 2>&1 || status=$?
[[ $status != 0 ]] || fail "a configure with no compiler succeeded"
[[ ! -e $tmp/bad/CMakeCache.txt ]] || fail "a failed configure left its cache"
echo ok
