#!/usr/bin/env bash
# compare.sh: the scalability comparison. brisk against glibc, jemalloc, tcmalloc and
# mimalloc on the Google Benchmark suite in bench/ (one binary, brisk_bench, that does
# not link brisk: LD_PRELOAD picks the allocator; glibc runs without a preload).
#
# One process per (benchmark instance, allocator, repetition), so every peak RSS is
# that run's own. Within a repetition the allocators take turns on each instance, the
# first one rotating from instance to instance and from repetition to repetition, so
# a slow minute on a shared machine favours none. Every run is checked to have been
# served by the allocator it was meant to measure (tools/bench_report.py check: the
# malloc_provider in the JSON context, and brisk's own exit statistics); one that was
# not stops the script: it is an error, not a data point. (A benchmark whose own check
# fails under some allocator, e.g. a misaligned block, is shown as "error" in its
# cell.) The JSON files go to the output directory; tools/bench_report.py then writes
# report.md and plots/ beside them.
#
# usage: tools/compare.sh [--full | --quick] [options]   (--help for the options)
set -euo pipefail

cd "$(dirname "$0")/.."
. tools/install-deps.sh
. tools/bench-common.sh

usage() {
  cat <<'EOF'
usage: tools/compare.sh [--full | --quick] [options]
  (default)        short mode: the scal/ families at 1, 2, 4, 8 threads, 3 repetitions,
                   min time 0.1 s (about 2 minutes on 2 cores)
  --full           every benchmark (scal/ and micro/; not micro/empty, the bare loop),
                   threads up to max(16, 2 x cores), 5 repetitions, min time 0.2 s
                   (about 35 minutes on 2 cores)
  --quick          a smoke run of seconds: scal/ at 1 and 2 threads, 1 repetition,
                   min time 0.01 s
  -r REPS          repetitions (median of them in the table)
  -t THREADS       largest thread count of the scal/ sweep (1, 2, 4, ... up to it)
  --filter RE      Google Benchmark regex of the benchmarks to run (e.g. '^scal/larson')
  --allocators L   comma-separated subset of brisk,glibc,jemalloc,tcmalloc,mimalloc
  --min-time S     Google Benchmark's --benchmark_min_time, in seconds
  -o DIR           output directory (default out/bench/<UTC timestamp>)
  --build-dir DIR  where brisk and brisk_bench are built (default ./build)
  --no-build       use DIR/libbrisk.so and DIR/bench/brisk_bench as they are
  --no-install     do not apt-get install anything
Prints the Markdown table on stdout (also DIR/report.md); plots go to DIR/plots/;
progress goes to stderr.
EOF
}

mode=short reps= max_threads= filter= min_time= allocators=brisk,glibc,jemalloc,tcmalloc,mimalloc
out= build=build do_build=1 do_install=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --full) mode=full; shift ;;
    --quick) mode=quick; shift ;;
    -r) reps=$2; shift 2 ;;
    -t) max_threads=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    --allocators) allocators=$2; shift 2 ;;
    --min-time) min_time=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-install) do_install=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

cores=$(nproc)
case $mode in
  short) : "${reps:=3}" "${max_threads:=8}" "${filter:=^scal/}" "${min_time:=0.1}" ;;
  full)  : "${reps:=5}" "${max_threads:=$((2 * cores > 16 ? 2 * cores : 16))}" \
           "${filter:=-^micro/empty\$}" "${min_time:=0.2}" ;;
  quick) : "${reps:=1}" "${max_threads:=2}" "${filter:=^scal/}" "${min_time:=0.01}" ;;
esac
[[ $reps =~ ^[1-9][0-9]*$ ]] || bench_die "-r needs a positive count"
[[ $max_threads =~ ^[1-9][0-9]*$ ]] || bench_die "-t needs a positive count"
[[ $min_time =~ ^[0-9]*\.?[0-9]+$ ]] || bench_die "--min-time needs a number of seconds"
: "${out:=out/bench/$(date -u +%Y%m%dT%H%M%SZ)}"

# scal/bulk_free's working set: 1 GiB in the full mode, 256 MiB in the others (the
# same shape in a quarter of the time). BENCH_BULK_MIB set by the caller wins.
if [[ -z ${BENCH_BULK_MIB:-} ]]; then
  if [[ $mode == full ]]; then BENCH_BULK_MIB=1024; else BENCH_BULK_MIB=256; fi
fi
export BENCH_BULK_MIB

# --- what it needs ---------------------------------------------------------------

if [[ $do_install == 1 ]]; then
  brisk_need build bench || exit 1
  brisk_want peers
fi
command -v python3 >/dev/null || bench_die "python3 is missing (apt-get install python3)"

if [[ $do_build == 1 ]]; then
  bench_build_brisk "$build"
fi
brisk_bench=$(bench_program "$build" "$do_build") || exit 1

bench_allocators "$build" "$allocators"

# --- the instances ---------------------------------------------------------------

shim_args=(--shim_max_threads="$max_threads")
mapfile -t instances < <(env -u LD_PRELOAD "$brisk_bench" "${shim_args[@]}" \
  --benchmark_list_tests=true --benchmark_filter="$filter")
[[ ${#instances[@]} -gt 0 ]] || bench_die "no benchmark matches --filter '$filter'"

# Runs left in the directory by another comparison would join this one's table.
if compgen -G "$out/runs/*.json" >/dev/null; then
  bench_die "$out/runs already holds runs; choose another -o"
fi
mkdir -p "$out/runs"
n=${#names[@]}
total=$((${#instances[@]} * n * reps))
load=$(cut -d' ' -f1 /proc/loadavg)
bench_say "mode $mode: ${#instances[@]} benchmark instances x ${names[*]} x $reps repetition(s)" \
          "= $total runs, min time $min_time s; output in $out"
bench_say "machine: $cores cores, $(bench_cpu_model), load $load"
if awk -v l="$load" -v c="$cores" 'BEGIN { exit !(l > c / 2) }'; then
  bench_say "warning: the machine is busy (load $load on $cores cores); expect noisy numbers"
fi

# One run of instance $3 on allocator $1 (library $2, "" for glibc, version $6) in
# repetition $4; appends its line to the round's check list $5. brisk writes its JSON
# statistics to $base.stats.json at exit (after the benchmark's JSON), which the check
# requires as proof it served the run.
run_one() {
  local name=$1 lib=$2 inst=$3 rep=$4 list=$5 version=$6
  local base
  base="$out/runs/$(tr -c 'A-Za-z0-9\n' '_' <<<"$inst").$name.r$rep"
  local stats=()
  [[ $name == brisk ]] && stats=(BRISK_STATS=json BRISK_STATS_FILE="$base.stats.json")
  if ! env -u LD_PRELOAD ${lib:+LD_PRELOAD="$lib"} "${stats[@]}" \
       "$brisk_bench" "${shim_args[@]}" --benchmark_filter="^$(bench_regex_escape "$inst")\$" \
       --benchmark_min_time="$min_time" --benchmark_out="$base.json" \
       --benchmark_out_format=json \
       --benchmark_context="bench_allocator=$name,bench_rep=$rep,bench_mode=$mode,bench_min_time=$min_time,bench_version=${version//,/;}" \
       >/dev/null 2>"$base.err"; then
    tail -20 "$base.err" >&2
    bench_die "$inst failed under $name (LD_PRELOAD=${lib:-none}); see $base.err"
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$lib" "$base.json" "${stats:+$base.stats.json}" >>"$list"
}

start=$SECONDS done_runs=0
list="$out/runs/.check"
for ((r = 0; r < reps; r++)); do
  for k in "${!instances[@]}"; do
    inst=${instances[$k]}
    : >"$list"
    for ((j = 0; j < n; j++)); do
      i=$(((r + k + j) % n))
      run_one "${names[$i]}" "${libs[$i]}" "$inst" "$r" "$list" "${versions[$i]}"
    done
    python3 tools/bench_report.py check --list "$list" ||
      bench_die "a run failed its check (above): not a data point, so the comparison stops"
    done_runs=$((done_runs + n))
    bench_say "  [$done_runs/$total, $((SECONDS - start)) s] repetition $((r + 1))/$reps: $inst"
  done
done
rm -f "$list"

# --- the report ------------------------------------------------------------------

python3 tools/bench_report.py report -o "$out/report.md" --plots "$out/plots" "$out/runs"
echo
cat "$out/report.md"
echo
bench_say "$total runs in $((SECONDS - start)) s. Table: $out/report.md; plots: $out/plots/;" \
          "raw Google Benchmark JSON: $out/runs/"
