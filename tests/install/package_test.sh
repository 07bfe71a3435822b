#!/usr/bin/env bash
# package_test.sh: tools/package.sh's .deb, installed with dpkg into a scratch root
# (its own --root and database: the machine's packages are not touched, so the test
# is safe as root in CI), used, and removed. The control fields name libc6 and
# libhwloc15; the installed launcher preloads the installed library into a program
# (it finds it relative to itself); a consumer builds against the installed
# pkg-config files; `dpkg -r` leaves nothing of the package behind.
#
# usage: tests/install/package_test.sh BUILD_DIR CONSUMER
#   BUILD_DIR: where the package is built (BUILD_DIR/package-test, kept between runs
#   like any build directory); CONSUMER: consumer.c built on the prefixed API alone
set -euo pipefail
build=$(realpath "$1")
consumer=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

deb=$("$root/tools/package.sh" --no-install -o "$tmp/out" --build-dir "$build/package-test" 2>"$tmp/package.err") ||
  { cat "$tmp/package.err" >&2; fail "tools/package.sh failed"; }
[[ -f $deb ]] || fail "tools/package.sh printed '$deb', not a file"
v=$(sed -n 's/^#define BRISK_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' "$root/include/brisk.h" | paste -sd.)
[[ $(dpkg-deb -f "$deb" Package) == brisk ]] || fail "the package is not named brisk"
[[ $(dpkg-deb -f "$deb" Version) == "$v" ]] || fail "the package's version is $(dpkg-deb -f "$deb" Version), not $v"
[[ $(basename "$deb") == "brisk_${v}_$(dpkg --print-architecture).deb" ]] || fail "the file is named $(basename "$deb")"
# libgcc-s1: the unwinder for the heap profile's stacks (prof.c)
[[ $(dpkg-deb -f "$deb" Depends) =~ ^libc6\ \(\>=\ 2\.[0-9]+\),\ libgcc-s1\ \(\>=\ [0-9.]+\)$ ]] || fail "Depends: $(dpkg-deb -f "$deb" Depends)"
[[ $(dpkg-deb -f "$deb" Recommends) == libhwloc15 ]] || fail "Recommends: $(dpkg-deb -f "$deb" Recommends)"

# A scratch root with an empty dpkg database. libc6 is not installed there, so its
# dependency is forced; the ldconfig trigger has no one to run it and is left.
r=$tmp/root admin=$tmp/root/var/lib/dpkg
mkdir -p "$admin"/{info,updates,triggers} && : >"$admin/status" && : >"$admin/available"
dpkg=(dpkg --root="$r" --force-depends --log=/dev/null)
"${dpkg[@]}" -i "$deb" >"$tmp/dpkg-i.log" 2>&1 || { cat "$tmp/dpkg-i.log" >&2; fail "dpkg -i failed"; }
"${dpkg[@]}" -s brisk | grep -q '^Status: install ok installed' || fail "dpkg does not list brisk as installed"
mapfile -t files < <("${dpkg[@]}" -L brisk)
libdir=$(dirname "$(printf '%s\n' "${files[@]}" | grep -m1 '/libbrisk\.so\.0$')")
for f in /usr/bin/brisk "$libdir/libbrisk.so.$v" "$libdir/libbrisk.a" "$libdir/libbrisk_api.a" \
         /usr/include/brisk.h "$libdir/pkgconfig/brisk.pc" "$libdir/pkgconfig/brisk-api.pc" \
         "$libdir/cmake/brisk/brisk-config.cmake" /usr/share/man/man1/brisk.1.gz; do
  [[ -e $r$f ]] || fail "the package did not install $f"
done

# The installed launcher: its version, the library it found (the installed one),
# and a program run through it gets that library's malloc.
lib=$(realpath "$r$libdir/libbrisk.so.$v")
[[ $("$r/usr/bin/brisk" --version) == "brisk $v"$'\n'"library: $lib" ]] ||
  fail "the installed launcher says: $("$r/usr/bin/brisk" --version 2>&1)"
from=$(env -u LD_PRELOAD "$r/usr/bin/brisk" --stats -- "$consumer" 2>"$tmp/stats" | sed -n 's/^malloc_from=//p')
[[ $(realpath "$from") == "$lib" ]] || fail "through the installed launcher malloc came from '$from'"
grep -q '^brisk: summary mapped=' "$tmp/stats" || fail "no statistics from the launched program"
# A consumer built against the installed pkg-config files.
# shellcheck disable=SC2046 # pkg-config's output is words
gcc -o "$tmp/pc_api" "$here/consumer/consumer.c" \
  $(PKG_CONFIG_PATH=$r$libdir/pkgconfig pkg-config --cflags --libs brisk-api) ||
  fail "cannot build against the package's brisk-api.pc"
"$tmp/pc_api" >/dev/null || fail "the consumer built against the package failed"

# Removed cleanly: dpkg forgets it and no file of it is left.
"${dpkg[@]}" -r brisk >"$tmp/dpkg-r.log" 2>&1 || { cat "$tmp/dpkg-r.log" >&2; fail "dpkg -r failed"; }
"${dpkg[@]}" -s brisk 2>/dev/null | grep -q '^Status: install ok installed' && fail "brisk is still installed"
left=$(cd "$r" && find . -path ./var/lib/dpkg -prune -o ! -type d -print)
[[ -z $left ]] || fail "dpkg -r left files behind: $left"
echo ok
