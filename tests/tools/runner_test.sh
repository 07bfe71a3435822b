#!/usr/bin/env bash
# runner_test.sh: tools/compare.sh end to end on one benchmark instance, against the
# build in $1 (libbrisk.so and bench/brisk_bench, which ctest builds): a run of
# brisk and glibc writes the JSON, the table and the plots; a "peer" library that
# does not define malloc (libm, standing in for a broken preload) is refused as an
# error, not counted.
#
# usage: tests/tools/runner_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$root/tools/compare.sh" --quick --no-install --no-build --build-dir "$build" \
  --allocators brisk,glibc --filter '^micro/pair/64$' -o "$tmp/ok" >"$tmp/ok.out" 2>"$tmp/ok.err" ||
  { cat "$tmp/ok.err" >&2; fail "the brisk and glibc run failed"; }
for f in micro_pair_64.brisk.r0.json micro_pair_64.glibc.r0.json; do
  [[ -s $tmp/ok/runs/$f ]] || fail "no $f"
done
grep -q '^| micro/pair/64 | 1 | ' "$tmp/ok/report.md" || fail "no table row in report.md"
cmp -s "$tmp/ok.out" <(echo; cat "$tmp/ok/report.md"; echo) || fail "stdout is not the table"

libm=$(gcc -print-file-name=libm.so.6)
[[ -f $libm ]] || fail "libm.so.6 not found"
status=0
MIMALLOC_LIB=$libm "$root/tools/compare.sh" --quick --no-install --no-build \
  --build-dir "$build" --allocators glibc,mimalloc --filter '^micro/pair/64$' \
  -o "$tmp/bad" >/dev/null 2>"$tmp/bad.err" || status=$?
[[ $status != 0 ]] || fail "a run served by glibc was accepted as mimalloc"
grep -q "asked for mimalloc ($libm) but malloc came from .*libc" "$tmp/bad.err" ||
  { cat "$tmp/bad.err" >&2; fail "the refusal does not say why"; }
[[ ! -e $tmp/bad/report.md ]] || fail "a report was written from a refused run"
echo "ok"
