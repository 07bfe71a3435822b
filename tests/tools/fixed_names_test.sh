#!/usr/bin/env bash
# fixed_names_test.sh: tools/callgrind.sh finds the runs it starts by the names that
# Google Benchmark gives them under a fixed iteration count (--shim_iterations), for
# micro/ and scal/ rows alike: for every benchmark of the brisk_bench in $1, the
# regex of fixed_name_regex (tools/bench-common.sh) matches its own fixed name and
# no other.
#
# usage: tests/tools/fixed_names_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
root=$(cd "$(dirname "$0")/../.." && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=../../tools/bench-common.sh
. "$root/tools/bench-common.sh"

bench=$build/bench/brisk_bench
mapfile -t bare < <(env -u LD_PRELOAD "$bench" --benchmark_list_tests=true)
mapfile -t fixed < <(env -u LD_PRELOAD "$bench" --benchmark_list_tests=true --shim_iterations=7)
[[ ${#bare[@]} -gt 100 ]] || fail "brisk_bench lists ${#bare[@]} benchmarks"
[[ ${#bare[@]} -eq ${#fixed[@]} ]] || fail "${#bare[@]} names, ${#fixed[@]} with a fixed count"
scal=0
for i in "${!bare[@]}"; do
  re="^($(fixed_name_regex "${bare[$i]}"))\$"
  matches=$(printf '%s\n' "${fixed[@]}" | grep -E "$re" || true)
  [[ $matches == "${fixed[$i]}" ]] || fail "${bare[$i]}: /$re/ matches '${matches//$'\n'/, }', not '${fixed[$i]}'"
  [[ ${bare[$i]} == scal/* ]] && scal=$((scal + 1))
done
[[ $scal -gt 0 ]] || fail "no scal/ benchmark was checked"
echo "fixed names: ${#bare[@]} benchmarks ($scal scal/) each matched by its own regex"
