#!/bin/bash
# The pprofs read brisk's heap profile: test_prof writes one (mode "write"), and
# `google-pprof --text` (Debian google-perftools) and, where it is installed,
# `go tool pprof -text` (Debian golang-go) must resolve the allocation sites'
# functions from it (through the MAPPED_LIBRARIES section and the binary's
# symbols). Skipped (77) where google-pprof is missing (tools/install-deps.sh
# installs it).
# Usage: prof_pprof.sh TEST_PROF_BINARY   (with BRISK_PROF=1 in the environment)
set -uo pipefail
bin=$1
if ! command -v google-pprof >/dev/null; then
  echo "google-pprof not found: skipped"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" write "$dir/p.heap" || { echo "test_prof write failed"; exit 1; }

# check NAME OUTPUT: every live site named with its bytes, the freed one with none
check() {
  local name=$1 out=$2 site
  echo "$out"
  for site in site_small site_mid site_big site_realloc site_calloc site_aligned site_half site_thread; do
    grep -Eq "^ +[0-9.]+[kMGB]* +[0-9.]+% .* $site\$" <<<"$out" || { echo "$name names no $site"; exit 1; }
  done
  if grep -Eq "^ +[1-9][0-9.]*[kMGB]* .* site_freed\$" <<<"$out"; then echo "$name: site_freed has live bytes"; exit 1; fi
}

out=$(google-pprof --text "$bin" "$dir/p.heap" 2>&1) || { echo "$out"; echo "google-pprof failed"; exit 1; }
check google-pprof "$out"
if command -v go >/dev/null; then
  out=$(HOME=$dir GOCACHE=$dir/go go tool pprof -text "$bin" "$dir/p.heap" 2>&1) ||
    { echo "$out"; echo "go tool pprof failed"; exit 1; }
  check "go tool pprof" "$out"
else
  echo "go not found: go tool pprof not tried"
fi
echo "ok"
