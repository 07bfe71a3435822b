#!/usr/bin/env bash
# callgrind.sh: instructions per malloc+free pair on the fast path, brisk against
# glibc, jemalloc, tcmalloc and mimalloc. Runs bench/pairs under callgrind with N
# pairs and with none (same setup, same environment), and reports
# (Ir(N) - Ir(0)) / N as a Markdown table with the ratio to mimalloc.
#
# Callgrind, unlike memcheck, does not replace malloc: the LD_PRELOADed allocator
# really runs, and pairs' allocator= line proves it for every run.
#
# pairs holds one block of every size live, so no free empties a page; --no-hold
# measures the case where every free does (see bench/pairs.c).
#
# usage: tools/callgrind.sh [--build-dir DIR] [-n N] [--no-hold]
set -euo pipefail

cd "$(dirname "$0")/.."
. tools/bench-common.sh

usage() {
  cat <<'EOF'
usage: tools/callgrind.sh [options]
  --build-dir DIR  brisk's build directory (default ./build; configured and built if needed)
  -n N             pairs in the measured run (default 200000)
  --no-hold        keep no block of each size live (every free empties a page)
Prints a Markdown table on stdout; progress goes to stderr.
EOF
}

build=build pairs_n=200000 hold=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    -n) pairs_n=$2; shift 2 ;;
    --no-hold) hold=(--no-hold); shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $pairs_n =~ ^[1-9][0-9]*$ ]] || bench_die "-n needs a positive count"
bench_install_build_deps valgrind
bench_install_peers
command -v valgrind >/dev/null ||
  bench_die "valgrind is not installed (apt-get install valgrind)"

names=() libs=()
bench_build_brisk "$build"
names+=(brisk) libs+=("$(realpath "$build/libbrisk.so")")
names+=(glibc) libs+=("")
bench_add_peers

progs=$(bench_programs "$build") || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Total Ir of pairs $3 under allocator $1 (library $2, "" for glibc): callgrind's
# "totals:" line (older versions write only "summary:"). The run must report the
# allocator it was meant to measure.
total_ir() {
  local name=$1 lib=$2 n=$3 out="$work/$1.$3"
  local line
  if ! line=$(env -u LD_PRELOAD ${lib:+LD_PRELOAD="$lib"} \
              valgrind --tool=callgrind --callgrind-out-file="$out.cg" \
              "$progs/pairs" "$n" "${hold[@]}" 2>"$out.log"); then
    cat "$out.log" >&2
    bench_die "pairs $n failed under callgrind with $name"
  fi
  local got
  got=$(bench_field allocator "$line")
  [[ $got == "$name" ]] ||
    bench_die "asked for $name (LD_PRELOAD=${lib:-none}) but pairs reports allocator=$got"
  local ir
  ir=$(awk '$1 == "totals:" { t = $2 } $1 == "summary:" { s = $2 }
            END { print (t != "" ? t : s) }' "$out.cg")
  [[ -n $ir ]] || bench_die "no instruction total in $out.cg"
  echo "$ir"
}

declare -A ir_n ir_0 per_pair
for i in "${!names[@]}"; do
  name=${names[$i]}
  bench_say "callgrind: $name"
  ir_n[$name]=$(total_ir "$name" "${libs[$i]}" "$pairs_n") || exit 1
  ir_0[$name]=$(total_ir "$name" "${libs[$i]}" 0) || exit 1
  per_pair[$name]=$(awk -v a="${ir_n[$name]}" -v b="${ir_0[$name]}" -v n="$pairs_n" \
                    'BEGIN { printf "%.1f", (a - b) / n }')
done

ref=${per_pair[mimalloc]:-}
echo
held=$([[ ${#hold[@]} == 0 ]] && echo "one block of each size held live" ||
       echo "no block held: every free empties a page")
echo "Instructions per malloc+free pair: callgrind, N=$pairs_n, sizes 16..1024 B cycling," \
     "one byte touched, $held; includes 16 instructions of loop and calls"
echo
echo "| allocator | Ir(N) | Ir(0) | instructions/pair | vs mimalloc |"
echo "|---|---:|---:|---:|---:|"
for name in "${names[@]}"; do
  ratio=$(awk -v a="${per_pair[$name]}" -v b="$ref" \
          'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }')
  printf '| %s | %s | %s | %s | %s |\n' "$name" "${ir_n[$name]}" "${ir_0[$name]}" \
    "${per_pair[$name]}" "$ratio"
done
[[ -n $ref ]] || echo "(mimalloc not installed: ratios are n/a)"
