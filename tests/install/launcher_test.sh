#!/usr/bin/env bash
# launcher_test.sh: the brisk launcher of build BUILD_DIR. It runs a program with
# the build's libbrisk.so preloaded, first in LD_PRELOAD; --stats and --set set
# the variables; an unknown option or a refused value stops it before the program
# runs; `brisk options` lists the library's table, which must agree with the
# README's (names and defaults); --version agrees with the header, the .so's name
# and SONAME, and the library's brisk_version().
#
# usage: tests/install/launcher_test.sh BUILD_DIR CONSUMER
#   CONSUMER: tests/install/consumer/consumer.c built against libbrisk_api.a (it
#   prints where malloc came from)
set -euo pipefail
build=$(realpath "$1")
consumer=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
brisk=$build/brisk
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

v=$(sed -n 's/^#define BRISK_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' "$root/include/brisk.h" | paste -sd.)
lib=$(realpath "$build/libbrisk.so")

# --version: the header's version, and the library file it will preload, whose
# name and SONAME carry the same version.
"$brisk" --version >"$tmp/version" 2>&1 || fail "brisk --version failed"
[[ $(sed -n 1p "$tmp/version") == "brisk $v" ]] || fail "brisk --version says '$(head -1 "$tmp/version")', the header $v"
[[ $(sed -n 's/^library: //p' "$tmp/version") == "$lib" ]] || fail "brisk --version names another library: $(cat "$tmp/version")"
[[ $(basename "$lib") == "libbrisk.so.$v" ]] || fail "the library is $(basename "$lib"), not libbrisk.so.$v"
[[ $(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p') == "libbrisk.so.${v%%.*}" ]] ||
  fail "the SONAME is not libbrisk.so.${v%%.*}"
[[ $(wc -l <"$tmp/version") == 2 ]] || fail "brisk --version warns: $(cat "$tmp/version")"

# A program run through it gets brisk's malloc (the consumer alone gets libc's),
# and brisk comes first in LD_PRELOAD, before what was there.
[[ $(env -u LD_PRELOAD "$consumer" | sed -n 's/^malloc_from=//p') == */libc.so.6 ]] ||
  fail "the consumer alone is not on libc's malloc"
from=$(env -u LD_PRELOAD "$brisk" "$consumer" | sed -n 's/^malloc_from=//p')
[[ $(realpath "$from") == "$lib" ]] || fail "under the launcher malloc came from '$from', not $lib"
libm=$(gcc -print-file-name=libm.so.6)
got=$(LD_PRELOAD="$libm" "$brisk" -- printenv LD_PRELOAD)
[[ $got == "$lib:$libm" ]] || fail "LD_PRELOAD is '$got', expected '$lib:$libm'"
got=$(LD_PRELOAD="$lib $libm" "$brisk" -- printenv LD_PRELOAD)
[[ $got == "$lib:$libm" ]] || fail "brisk appears twice in LD_PRELOAD: '$got'"
"$brisk" --stats -- "$consumer" >/dev/null 2>"$tmp/stats" || fail "brisk --stats failed"
grep -q '^brisk: summary mapped=' "$tmp/stats" || fail "--stats printed no statistics: $(cat "$tmp/stats")"
[[ $("$brisk" --stats=json printenv BRISK_STATS 2>/dev/null) == json ]] || fail "--stats=json does not set BRISK_STATS=json"

# --set: names with or without BRISK_, in any case; the program sees BRISK_NAME.
[[ $("$brisk" --set PURGE_DELAY_MS=250 --set brisk_numa=off -- printenv BRISK_PURGE_DELAY_MS BRISK_NUMA |
     paste -sd' ') == "250 off" ]] || fail "--set did not set BRISK_PURGE_DELAY_MS and BRISK_NUMA"
# Refused before the program runs: status 2, one line that says why.
refused() {
  local status=0 want=$1; shift
  "$brisk" "$@" -- touch "$tmp/ran" 2>"$tmp/err" || status=$?
  [[ $status == 2 ]] || fail "brisk $* exited $status, not 2"
  [[ ! -e $tmp/ran ]] || fail "brisk $* ran the program"
  grep -q "$want" "$tmp/err" || fail "brisk $*: '$(cat "$tmp/err")' does not say '$want'"
}
refused "unknown option 'NO_SUCH'" --set NO_SUCH=1
refused "bad value 'sometimes' for BRISK_NUMA" --set NUMA=sometimes
refused "bad value '12Q' for BRISK_HEAP_GROW" --set HEAP_GROW=12Q
refused "wants NAME=VALUE" --set NUMA
refused "unknown option '--frobnicate'" --frobnicate
status=0; "$brisk" options extra >/dev/null 2>&1 || status=$?
[[ $status == 2 ]] || fail "brisk options extra gave status $status, not 2"
status=0; "$brisk" /nonexistent/program 2>/dev/null || status=$?
[[ $status == 127 ]] || fail "a missing program gave status $status, not 127"

# brisk options: every row of the library's table (its own count), with the value
# in the environment, a refused one marked.
BRISK_NUMA=interleave BRISK_STATS=sometimes "$brisk" options >"$tmp/options" || fail "brisk options failed"
count=$(sed -n 's/^\([0-9]*\) options, .*/\1/p' "$tmp/options")
[[ $count -gt 0 && $(grep -c '^BRISK_' "$tmp/options") == "$count" ]] ||
  fail "brisk options lists $(grep -c '^BRISK_' "$tmp/options") options, the table has '$count'"
grep -A2 '^BRISK_NUMA$' "$tmp/options" | grep -q '^  here     interleave$' || fail "BRISK_NUMA's value not shown"
grep -A2 '^BRISK_STATS$' "$tmp/options" | grep -q 'sometimes (refused' || fail "a refused value is not marked"
for field in default values meaning; do
  [[ $(grep -c "^  $field  " "$tmp/options") == "$count" ]] || fail "an option has no $field"
done

# The README's table and the library's: the same names, in the same order, with
# the same defaults.
# shellcheck disable=SC2016 # the backquotes are the README's
sed -n 's/^| `\(BRISK_[A-Z_]*\)` | `\([^`]*\)` |.*/\1 \2/p' "$root/README.md" >"$tmp/readme"
awk '/^BRISK_/ { name = $1 } /^  default  / { print name, $2 }' "$tmp/options" >"$tmp/table"
[[ -s $tmp/readme ]] || fail "no options table in README.md"
diff -u "$tmp/table" "$tmp/readme" >&2 || fail "README.md's options table (+) differs from the library's (-)"
echo ok
