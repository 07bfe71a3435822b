#!/usr/bin/env bash
# test.sh: the README's test command. Installs what the build and the tests need
# (tools/install-deps.sh: apt-get, as root, only what is missing), builds everything from scratch with
# warnings as errors, and runs the whole default suite with ctest. The long soak
# tests are left out unless asked for.
#
# usage: tools/test.sh [--long] [--debug] [--build-dir DIR]
#   --long       also run the tests labelled 'long' (minutes)
#   --debug      build with -DBRISK_DEBUG=ON (internal assertions)
#   --build-dir  where to build (default build-test; it is wiped first)
set -euo pipefail
cd "$(dirname "$0")/.."

long=0 debug=OFF dir=build-test
while [[ $# -gt 0 ]]; do
  case $1 in
    --long) long=1; shift ;;
    --debug) debug=ON; shift ;;
    --build-dir) dir=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

# What the build and the tests use (tools/install-deps.sh; package: for the .deb
# test). The NUMA VM tests'
# packages are installed here too, outside their ctest timeouts (tools/numa-vm.sh
# would install them itself, and fetches its kernel).
. tools/install-deps.sh
brisk_need build test package numa-vm

# From scratch: nothing a failed or interrupted earlier run left in $dir is reused.
rm -rf "$dir"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DBRISK_WERROR=ON -DBRISK_DEBUG="$debug"
cmake --build "$dir" -j"$(nproc)"
cd "$dir"
if [[ $long == 1 ]]; then
  ctest --output-on-failure
else
  ctest --output-on-failure -LE long
fi
