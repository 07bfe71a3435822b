#!/usr/bin/env bash
# compare.sh: brisk against glibc, jemalloc, tcmalloc and mimalloc on bench/churn,
# side by side. Builds brisk (Release) if needed, installs missing peers when root,
# runs every allocator R times round-robin (so a slow minute on a shared machine
# hits all of them alike), and prints a Markdown table of medians. Every run must
# name the allocator it was meant to measure, or the script stops.
#
# usage: tools/compare.sh [-t THREADS] [-r REPS] [-n OPS] [-s K] [-seed S] [--quick]
#                         [--build-dir DIR] [--no-build] [--no-install] [--no-stats]
set -euo pipefail

cd "$(dirname "$0")/.."
. tools/bench-common.sh

usage() {
  cat <<'EOF'
usage: tools/compare.sh [options]
  -t THREADS       churn threads (default 8)
  -r REPS          repetitions of every allocator, round-robin (default 3)
  -n OPS           replacements per thread (default 2m; k and m suffixes)
  -s K             live blocks per thread, in thousands (default 2)
  -seed S          random seed (default 42)
  --quick          a smoke run: a tenth of the operations
  --build-dir DIR  brisk's build directory (default ./build)
  --no-build       use DIR/libbrisk.so as it is, do not (re)build it
  --no-install     do not apt-get install missing peers
  --no-stats       skip the final BRISK_STATS=1 run
Prints a Markdown table on stdout; progress goes to stderr.
EOF
}

threads=8 reps=3 ops=2000000 slots_k=2 seed=42 quick=0
build=build do_build=1 do_install=1 do_stats=1
while [[ $# -gt 0 ]]; do
  case $1 in
    -t) threads=$2; shift 2 ;;
    -r) reps=$2; shift 2 ;;
    -n) ops=$2; shift 2 ;;
    -s) slots_k=$2; shift 2 ;;
    -seed|--seed) seed=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --build-dir) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-install) do_install=0; shift ;;
    --no-stats) do_stats=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $reps =~ ^[1-9][0-9]*$ ]] || bench_die "-r needs a positive count"
if [[ $quick == 1 ]]; then
  ops=$(awk -v n="$ops" 'BEGIN { m = 1
    if (n ~ /[kK]$/) m = 1e3; if (n ~ /[mM]$/) m = 1e6
    printf "%d", n * m / 10 }')
fi

# --- the allocators --------------------------------------------------------------

if [[ $do_install == 1 ]]; then
  bench_install_build_deps
  bench_install_peers
fi

names=() libs=()
brisk_lib="$build/libbrisk.so"
have_brisk=0
if [[ $do_build == 1 ]]; then
  bench_build_brisk "$build" && have_brisk=1
elif [[ -f $brisk_lib ]]; then
  have_brisk=1
else
  bench_say "note: $brisk_lib does not exist (--no-build); comparing the peers only"
fi
if [[ $have_brisk == 1 ]]; then
  [[ -f $brisk_lib ]] || bench_die "the build succeeded but $brisk_lib is missing"
  names+=(brisk) libs+=("$(realpath "$brisk_lib")")
fi
names+=(glibc) libs+=("")
bench_add_peers

progs=$(bench_programs "$build") || exit 1
churn="$progs/churn"

# --- the runs --------------------------------------------------------------------

load=$(cut -d' ' -f1 /proc/loadavg)
cores=$(nproc)
bench_say "churn -t $threads -s $slots_k -n $ops -seed $seed; $reps round(s) of: ${names[*]}"
bench_say "machine: $cores cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), load $load"
if awk -v l="$load" -v c="$cores" 'BEGIN { exit !(l > c / 2) }'; then
  bench_say "warning: the machine is busy (load $load on $cores cores); expect noisy numbers"
fi

# One run of churn on allocator $1 (library $2, "" for glibc) and its output line.
# Anything else in LD_PRELOAD is dropped, so exactly one allocator is mapped.
run_churn() {
  local name=$1 lib=$2 out
  if ! out=$(env -u LD_PRELOAD ${lib:+LD_PRELOAD="$lib"} \
             "$churn" -t "$threads" -s "$slots_k" -n "$ops" -seed "$seed"); then
    bench_die "churn failed under $name (LD_PRELOAD=${lib:-none})"
  fi
  local got
  got=$(bench_field allocator "$out")
  [[ $got == "$name" ]] ||
    bench_die "asked for $name (LD_PRELOAD=${lib:-none}) but the run reports allocator=$got"
  echo "$out"
}

declare -A mops cpu rss
n=${#names[@]}
for ((r = 0; r < reps; r++)); do
  # Each round starts one allocator later, so none always runs first (or right
  # after the same neighbour).
  for ((k = 0; k < n; k++)); do
    i=$(((r + k) % n))
    name=${names[$i]}
    line=$(run_churn "$name" "${libs[$i]}") || exit 1
    m=$(bench_field mops_per_s "$line")
    c=$(bench_field mops_per_cpu_s "$line")
    kib=$(bench_field peak_rss_kib "$line")
    mops[$name]+="$m "
    cpu[$name]+="$c "
    rss[$name]+="$kib "
    bench_say "  round $((r + 1))/$reps  $(printf '%-9s' "$name") $m Mops/s" \
              " $c Mops/CPU-s  $((kib / 1024)) MiB peak"
  done
done

# --- the table -------------------------------------------------------------------

declare -A med_mops med_cpu med_rss
for name in "${names[@]}"; do
  # shellcheck disable=SC2086 # the lists are space-separated numbers
  med_mops[$name]=$(bench_median ${mops[$name]})
  # shellcheck disable=SC2086
  med_cpu[$name]=$(bench_median ${cpu[$name]})
  # shellcheck disable=SC2086
  med_rss[$name]=$(awk -v k="$(bench_median ${rss[$name]})" 'BEGIN { printf "%.1f", k / 1024 }')
done

ratio() { # a / b with two decimals, or n/a
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'
}

echo
echo "churn: $threads threads, $slots_k k live blocks/thread, $ops ops/thread, seed $seed;" \
     "median of $reps round-robin run(s); $cores cores"
echo
# The last column divides by CPU time instead of wall time (see bench/churn.c):
# read it when the machine is shared and the wall-time column jumps around.
echo "| allocator | Mops/s (median) | peak RSS MiB (median) | throughput vs brisk | RSS vs brisk | Mops per CPU-s (median) |"
echo "|---|---:|---:|---:|---:|---:|"
for name in "${names[@]}"; do
  if [[ $have_brisk == 1 ]]; then
    tr=$(ratio "${med_mops[$name]}" "${med_mops[brisk]}")
    rr=$(ratio "${med_rss[$name]}" "${med_rss[brisk]}")
  else
    tr="n/a" rr="n/a"
  fi
  printf '| %s | %.2f | %s | %s | %s | %.2f |\n' "$name" "${med_mops[$name]}" \
    "${med_rss[$name]}" "$tr" "$rr" "${med_cpu[$name]}"
done
[[ $have_brisk == 1 ]] || echo "(brisk not built: ratios vs brisk are n/a)"

best_tp=$(for name in "${names[@]}"; do echo "${med_mops[$name]} $name"; done | sort -gr | head -1)
best_cpu=$(for name in "${names[@]}"; do echo "${med_cpu[$name]} $name"; done | sort -gr | head -1)
best_rss=$(for name in "${names[@]}"; do echo "${med_rss[$name]} $name"; done | sort -g | head -1)
echo
printf 'Fastest: %s (%.2f Mops/s). Smallest peak RSS: %s (%s MiB). Most work per CPU second: %s (%.2f Mops/CPU-s).\n' \
  "${best_tp#* }" "${best_tp%% *}" "${best_rss#* }" "${best_rss%% *}" "${best_cpu#* }" "${best_cpu%% *}"
if [[ $have_brisk == 1 ]]; then
  echo "Ratios above 1 mean more throughput, or more memory, than brisk."
fi

# --- brisk's own statistics ------------------------------------------------------

if [[ $do_stats == 1 && $have_brisk == 1 ]]; then
  echo
  echo "brisk with BRISK_STATS=1 (statistics on stderr at exit):"
  echo
  echo '```'
  status=0
  env -u LD_PRELOAD BRISK_STATS=1 LD_PRELOAD="${libs[0]}" \
    "$churn" -t "$threads" -s "$slots_k" -n "$ops" -seed "$seed" 2>&1 || status=$?
  [[ $status == 0 ]] || echo "(the stats run exited with status $status)"
  echo '```'
fi
