#!/usr/bin/env bash
# smoke.sh: ctest's bench_smoke. Runs every benchmark of brisk_bench for one
# iteration (two threads at most) under LD_PRELOAD=libbrisk.so, and checks that it
# exits 0, that brisk served the run (the JSON context's malloc_provider), and
# that no benchmark reported an error.
#
# usage: bench/smoke.sh BRISK_BENCH LIBBRISK_SO
set -euo pipefail

if [[ $# -ne 2 ]]; then
  sed -n '2,8p' "$0" >&2
  exit 2
fi
bench=$1 lib=$(realpath "$2")
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# scal/bulk_free's working set, scaled down: one iteration only has to run.
BENCH_BULK_MIB=16 LD_PRELOAD=$lib "$bench" --shim_iterations=1 --shim_max_threads=2 \
  --benchmark_out="$out" --benchmark_out_format=json >/dev/null

python3 - "$out" "$lib" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
lib = sys.argv[2]
provider = doc["context"].get("malloc_provider", "")
if os.path.realpath(provider) != lib:
    sys.exit(f"malloc_provider is {provider!r}, not {lib}")
runs = doc["benchmarks"]
bad = [b["name"] for b in runs if b.get("error_occurred")]
if bad:
    sys.exit("benchmarks reported errors: " + ", ".join(bad))
missing = [b["name"] for b in runs
           if "items_per_second" not in b or "peak_rss_mib" not in b]
if missing:
    sys.exit("no items_per_second or peak_rss_mib: " + ", ".join(missing))
families = {b["name"].split("/")[0] + "/" + b["name"].split("/")[1] for b in runs}
print(f"{len(runs)} benchmarks in {len(families)} families ran under {provider}")
PY
