#!/usr/bin/env bash
# callgrind.sh: instructions per operation of the single-thread micro benchmarks,
# brisk against glibc, jemalloc, tcmalloc and mimalloc: the figure that stays put on
# a noisy machine. Callgrind, unlike memcheck, does not replace malloc: the
# LD_PRELOADed allocator really runs, and every run is checked as compare.sh checks
# its runs (malloc_provider in the JSON context; brisk's exit statistics).
#
# Each benchmark runs twice under valgrind --tool=callgrind, in its own process,
# with the shim's fixed iteration counts N1 and N2 (--shim_iterations), and the
# table gives (Ir(N2) - Ir(N1)) / ((N2 - N1) x items per iteration): start-up, the
# benchmark's setup and Google Benchmark's fixed costs cancel, and so do the first
# N1 iterations (warm-up: caches filling, first pages). What stays is the steady
# operation plus the benchmark loop's own per-iteration work (the shim's keep-running
# call, and e.g. touching the block). N1 and N2 are scaled per benchmark to about
# --ops operations, using the items per iteration of a native run.
#
# usage: tools/callgrind.sh [options]   (--help for the options)
set -euo pipefail

cd "$(dirname "$0")/.."
. tools/install-deps.sh
. tools/bench-common.sh

usage() {
  cat <<'EOF'
usage: tools/callgrind.sh [options]
  --filter RE      Google Benchmark regex of the benchmarks (default: the single-thread
                   malloc+free pairs, calloc, memalign, aligned_alloc and batch benchmarks)
  --ops N          operations counted between the two runs (default 20000)
  --allocators L   comma-separated subset of brisk,glibc,jemalloc,tcmalloc,mimalloc
  -j J             callgrind processes at once (default: the number of cores; the
                   counts do not depend on load)
  -o DIR           keep the callgrind and JSON files in DIR (default: a temporary one)
  --build-dir DIR  where brisk and brisk_bench are built (default ./build)
  --no-build       use DIR/libbrisk.so and DIR/bench/brisk_bench as they are
  --no-install     do not apt-get install anything
Prints a Markdown table on stdout; progress goes to stderr.
EOF
}

filter='^micro/((pair|calloc|memalign|aligned_alloc|batch_lifo|batch_fifo)/|empty$)'
ops=20000 allocators=brisk,glibc,jemalloc,tcmalloc,mimalloc jobs=$(nproc)
out= build=build do_build=1 do_install=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --filter) filter=$2; shift 2 ;;
    --ops) ops=$2; shift 2 ;;
    --allocators) allocators=$2; shift 2 ;;
    -j) jobs=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-install) do_install=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $ops =~ ^[1-9][0-9]*$ ]] || bench_die "--ops needs a positive count"
[[ $jobs =~ ^[1-9][0-9]*$ ]] || bench_die "-j needs a positive count"

if [[ $do_install == 1 ]]; then
  brisk_need build bench callgrind || exit 1
  brisk_want peers
fi
command -v valgrind >/dev/null || bench_die "valgrind is not installed (apt-get install valgrind)"
[[ $do_build == 1 ]] && bench_build_brisk "$build"
brisk_bench=$(bench_program "$build" "$do_build") || exit 1
bench_allocators "$build" "$allocators"

if [[ -n $out ]]; then
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi

mapfile -t benches < <(env -u LD_PRELOAD "$brisk_bench" --benchmark_list_tests=true \
  --benchmark_filter="$filter")
[[ ${#benches[@]} -gt 0 ]] || bench_die "no benchmark matches --filter '$filter'"

# fixed_filter: the runs below, named with their fixed iteration count
# (fixed_name_regex in tools/bench-common.sh).
fixed_filter() {
  local alt
  alt=$(for b in "$@"; do fixed_name_regex "$b"; done | paste -sd'|')
  printf '^(%s)$' "$alt"
}

# Items per iteration of each benchmark (a batch benchmark does many operations per
# iteration), from one native run of 100 fixed iterations: items_per_second times the
# seconds per iteration.
declare -A per_iter
native="$out/native.json"
env -u LD_PRELOAD "$brisk_bench" --shim_iterations=100 \
  --benchmark_filter="$(fixed_filter "${benches[@]}")" \
  --benchmark_out="$native" --benchmark_out_format=json >/dev/null 2>"$out/native.err" ||
  { cat "$out/native.err" >&2; bench_die "the native calibration run failed"; }
while read -r name items; do
  per_iter[$name]=$items
done < <(python3 tools/bench_report.py items-per-iteration "$native")

# One callgrind run: allocator $1 (library $2), benchmark $3 with $4 iterations.
# Writes $base.json, $base.err, $base.cg and its exit status in $base.rc; run in the
# background, several at once.
run_callgrind() {
  local name=$1 lib=$2 bench=$3 iters=$4 base=$5 status=0
  local stats=()
  [[ $name == brisk ]] && stats=(BRISK_STATS=json BRISK_STATS_FILE="$base.stats.json")
  env -u LD_PRELOAD ${lib:+LD_PRELOAD="$lib"} "${stats[@]}" \
    valgrind --tool=callgrind --callgrind-out-file="$base.cg" \
    "$brisk_bench" --shim_iterations="$iters" \
    --benchmark_filter="$(fixed_filter "$bench")" \
    --benchmark_out="$base.json" --benchmark_out_format=json \
    --benchmark_context="bench_allocator=$name,bench_rep=0,bench_mode=callgrind" \
    >/dev/null 2>"$base.err" || status=$?
  echo "$status" >"$base.rc"
}

list="$out/check" rows="$out/rows"
: >"$list"
: >"$rows"
bases=()
bench_say "callgrind: ${#benches[@]} benchmarks x ${names[*]}, 2 runs each, $jobs at a time"
for bench in "${benches[@]}"; do
  items=${per_iter[$(bare_name "$bench")]:-} # bench_report.py names them without the segment
  [[ -n $items ]] || bench_die "the calibration run did not report $bench"
  n1=$(( (ops / 4 + items - 1) / items ))
  n2=$(( n1 + (ops + items - 1) / items ))
  for i in "${!names[@]}"; do
    name=${names[$i]}
    slug="$(tr -c 'A-Za-z0-9\n' '_' <<<"$bench").$name"
    for n in "$n1" "$n2"; do
      while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n || true; done
      run_callgrind "$name" "${libs[$i]}" "$bench" "$n" "$out/$slug.$n" &
      bases+=("$out/$slug.$n")
      stats_file=''
      [[ $name == brisk ]] && stats_file=$out/$slug.$n.stats.json
      printf '%s\t%s\t%s\t%s\n' "$name" "${libs[$i]}" "$out/$slug.$n.json" "$stats_file" >>"$list"
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$bench" "$name" "$n1" \
      "$out/$slug.$n1.cg" "$n2" "$out/$slug.$n2.cg" "$items" "$out/$slug.$n1.json" \
      "$out/$slug.$n2.json" >>"$rows"
  done
done
wait
for base in "${bases[@]}"; do
  [[ $(cat "$base.rc" 2>/dev/null) == 0 ]] ||
    { tail -20 "$base.err" >&2; bench_die "callgrind run $base failed"; }
done
python3 tools/bench_report.py check --list "$list" ||
  bench_die "a run failed its check (above): not a data point"
python3 tools/bench_report.py instructions "$rows"
