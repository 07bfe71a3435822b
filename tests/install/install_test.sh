#!/usr/bin/env bash
# install_test.sh: `cmake --install BUILD --prefix P` into a scratch prefix gives a
# tree a user can build against: every file the README's Install section names; a
# consumer program built with pkg-config (brisk, brisk-api) and with CMake
# (find_package(brisk CONFIG): brisk::brisk, brisk::static, brisk::api) that runs
# and proves what served it (tests/install/consumer/consumer.c); and the installed
# launcher, which must find the installed library, not the build's.
#
# usage: tests/install/install_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }

# The version, from the header the build took it from.
v=$(sed -n 's/^#define BRISK_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' "$root/include/brisk.h" | paste -sd.)
major=${v%%.*}
for f in "lib/libbrisk.so.$v" "lib/libbrisk.so.$major" lib/libbrisk.so lib/libbrisk.a \
         lib/libbrisk_api.a include/brisk.h lib/pkgconfig/brisk.pc lib/pkgconfig/brisk-api.pc \
         lib/cmake/brisk/brisk-config.cmake lib/cmake/brisk/brisk-config-version.cmake \
         bin/brisk share/man/man1/brisk.1; do
  [[ -e $prefix/$f ]] || fail "not installed: $f"
done
soname=$(readelf -d "$prefix/lib/libbrisk.so.$v" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == "libbrisk.so.$major" ]] || fail "SONAME is '$soname', not libbrisk.so.$major"
# The man page lists every option (it is made from the library's table).
for name in $("$prefix/bin/brisk" options | sed -n 's/^\(BRISK_[A-Z_]*\)$/\1/p'); do
  grep -q "^\.B $name\$" "$prefix/share/man/man1/brisk.1" || fail "the man page lacks $name"
done
if command -v man >/dev/null; then  # man-db is not a build dependency
  man_out=$(MANWIDTH=80 man -l "$prefix/share/man/man1/brisk.1" 2>&1 || true)
  grep -q "run a program on the brisk memory allocator" <<<"$man_out" || fail "man cannot read brisk.1: $man_out"
fi

# consumer OUTPUT: runs it, checks that the prefixed API counted its blocks (status
# 0), and prints where malloc came from.
run_consumer() {
  local out
  out=$(env -u LD_PRELOAD "$1") || { echo "$out" >&2; fail "$1 failed"; }
  sed -n 's/^malloc_from=//p' <<<"$out"
}
# Where malloc must come from: the installed libbrisk.so, or libc.
expect_from() {
  local got=$2 want=$3
  case $want in
    brisk) [[ $(realpath "$got") == "$(realpath "$prefix/lib/libbrisk.so.$v")" ]] ;;
    libc) [[ $(basename "$got") == libc.so.6 ]] ;;
    static) [[ $(realpath "$got") == "$(realpath "$1")" ]] ;;
  esac || fail "$1: malloc came from '$got', expected $want"
}

# pkg-config, found through PKG_CONFIG_PATH alone (the .pc files locate the tree
# from their own place).
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
for pc in brisk brisk-api; do
  [[ $(pkg-config --modversion $pc) == "$v" ]] || fail "pkg-config $pc says $(pkg-config --modversion $pc), not $v"
done
# shellcheck disable=SC2046 # pkg-config's output is words
gcc -o "$tmp/pc_brisk" "$here/consumer/consumer.c" $(pkg-config --cflags --libs brisk) -ldl \
  -Wl,-rpath,"$prefix/lib" || fail "cannot build with pkg-config brisk"
# shellcheck disable=SC2046
gcc -o "$tmp/pc_api" "$here/consumer/consumer.c" $(pkg-config --cflags --libs brisk-api) ||
  fail "cannot build with pkg-config brisk-api"
expect_from "$tmp/pc_brisk" "$(run_consumer "$tmp/pc_brisk")" brisk
expect_from "$tmp/pc_api" "$(run_consumer "$tmp/pc_api")" libc

# CMake: find_package(brisk CONFIG) and its three targets.
cmake -S "$here/consumer" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  >"$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log" >&2; fail "find_package(brisk CONFIG) failed"; }
cmake --build "$tmp/cm" >>"$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log" >&2; fail "the CMake consumer did not build"; }
expect_from "$tmp/cm/consumer_brisk" "$(run_consumer "$tmp/cm/consumer_brisk")" brisk
expect_from "$tmp/cm/consumer_static" "$(run_consumer "$tmp/cm/consumer_static")" static
expect_from "$tmp/cm/consumer_api" "$(run_consumer "$tmp/cm/consumer_api")" libc

# The installed launcher preloads the installed library, and a program run through
# it (the pkg-config API consumer, on libc's malloc by itself) gets brisk's.
lib=$("$prefix/bin/brisk" --version | sed -n 's/^library: //p')
[[ $lib == "$(realpath "$prefix/lib/libbrisk.so.$v")" ]] || fail "the installed launcher found '$lib'"
expect_from "$tmp/pc_api" "$("$prefix/bin/brisk" -- "$tmp/pc_api" | sed -n 's/^malloc_from=//p')" brisk
echo ok
