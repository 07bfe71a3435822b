#!/bin/bash
# google-pprof reads brisk's heap profile: test_prof writes one (mode "write"),
# and `google-pprof --text` must resolve the allocation sites' functions from it
# (through the MAPPED_LIBRARIES section and the binary's symbols). Skipped (77)
# where google-pprof is missing (Debian google-perftools; tools/install-deps.sh).
# Usage: prof_pprof.sh TEST_PROF_BINARY   (with BRISK_PROF=1 in the environment)
set -uo pipefail
bin=$1
pprof=$(command -v google-pprof || true)
if [[ -z $pprof ]]; then
  echo "google-pprof not found: skipped"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" write "$dir/p.heap" || { echo "test_prof write failed"; exit 1; }
out=$("$pprof" --text "$bin" "$dir/p.heap" 2>&1) || { echo "$out"; echo "google-pprof failed"; exit 1; }
echo "$out"
grep -q 'heap_v2\|Heap version 2' <<<"$out" || echo "(no sampling note from pprof)"
for site in site_small site_mid site_big site_realloc site_calloc site_aligned site_half site_thread; do
  grep -Eq "^ +[0-9.]+ +[0-9.]+% .* $site\$" <<<"$out" || { echo "google-pprof names no $site"; exit 1; }
done
# freed blocks hold nothing: the site has no live bytes, so pprof lists it with 0 or not at all
if grep -Eq "^ +[1-9][0-9.]* .* site_freed\$" <<<"$out"; then echo "site_freed has live bytes"; exit 1; fi
echo "ok"
