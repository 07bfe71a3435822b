#!/bin/bash
# python3 under LD_PRELOAD with BRISK_PROF=1: the profile it dumps while about
# 100 MB are live must be read by google-pprof, name CPython's allocating
# functions, and total within a third of brisk's in_use (which counts the size
# classes' rounding, the profile the sizes asked for). Skipped (77) without
# google-pprof.
# Usage: prof_python.sh LIBBRISK PYTHON3 SCRIPT
set -uo pipefail
lib=$1 py=$2 script=$3
command -v google-pprof >/dev/null || { echo "google-pprof not found: skipped"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out=$(BRISK_PROF=1 BRISK_PROF_FILE= PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1 LD_PRELOAD=$lib \
      "$py" "$script" "$dir/py.heap") || { echo "$out"; echo "python3 failed"; exit 1; }
echo "$out"
read -r _ err _ in_use _ <<<"$out"
[[ $err == 0 ]] || { echo "brisk_prof_dump returned $err"; exit 1; }
text=$(google-pprof --text "$(realpath "$py")" "$dir/py.heap" 2>&1) || { echo "$text"; echo "google-pprof failed"; exit 1; }
echo "$text" | head -12
total=$(sed -n 's/^Total: \([0-9.]*\) MB$/\1/p' <<<"$text")
[[ -n $total ]] || { echo "no total in MB"; exit 1; }
grep -Eq ' (PyUnicode|PyDict|PyList|_PyObject|PyObject)' <<<"$text" || { echo "no CPython allocator named"; exit 1; }
awk -v t="$total" -v u="$in_use" 'BEGIN { r = t * 1048576 / u; printf "profile/in_use = %.2f\n", r; exit !(r > 0.67 && r < 1.33) }' ||
  { echo "the profile's total is not near in_use"; exit 1; }
echo ok
