#!/usr/bin/env bash
# test.sh: the README's test command. Installs what the build and the tests need
# (apt-get, as root, only what is missing), builds everything from scratch with
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

# What the build and the tests use. python3 and sqlite3 are the real programs the
# LD_PRELOAD tests run; procps gives ps for the fork tests' diagnostics; gnuplot-nox
# lets the report-tool test check the plots. The NUMA VM tests' packages are
# installed here too, outside their ctest timeouts (tools/numa-vm.sh would install
# them itself, and fetches its kernel).
packages=(cmake make gcc g++ pkg-config libhwloc-dev libcmocka-dev libbenchmark-dev
          python3 sqlite3 procps gnuplot-nox qemu-system-x86 busybox-static cpio xz-utils
          clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) != 0 ]]; then
    echo "missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

rm -rf "$dir"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DBRISK_WERROR=ON -DBRISK_DEBUG="$debug"
cmake --build "$dir" -j"$(nproc)"
cd "$dir"
if [[ $long == 1 ]]; then
  ctest --output-on-failure
else
  ctest --output-on-failure -LE long
fi
