#!/usr/bin/env bash
# package.sh: builds brisk_VERSION_ARCH.deb with dpkg-deb (no debhelper): the
# libraries (libbrisk.so.0, libbrisk.a, libbrisk_api.a), brisk.h, the pkg-config
# files and the CMake package, the launcher and its man page, installed for /usr
# (the multiarch library directory). Depends on the libc6 that dpkg-shlibdeps finds
# the binaries need; Recommends libhwloc15, which libbrisk.so dlopens for NUMA.
# Prints the .deb's path on stdout; progress goes to stderr.
#
# usage: tools/package.sh [-o DIR] [--build-dir DIR] [--no-install]
#   -o DIR          where the .deb goes (default out/package)
#   --build-dir DIR where it is built (default build-package; configured for /usr,
#                   without the tests and benchmarks)
#   --no-install    do not apt-get install anything
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/install-deps.sh

out=out/package build=build-package do_install=1
while [[ $# -gt 0 ]]; do
  case $1 in
    -o) out=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --no-install) do_install=0; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
say() { printf 'package.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if [[ $do_install == 1 ]]; then brisk_need build package || exit 1; fi
brisk_configure "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DBRISK_TESTS=OFF -DBRISK_BENCH=OFF || die "brisk did not configure (log above)"
[[ $(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt") == /usr ]] ||
  die "$build is configured for another prefix; choose another --build-dir"
cmake --build "$build" -j2 >"$build/package-build.log" 2>&1 ||
  { cat "$build/package-build.log" >&2; die "brisk did not build (log above)"; }

version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
arch=$(dpkg --print-architecture)
[[ -n $version ]] || die "no project version in $build/CMakeCache.txt"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/stage
DESTDIR=$stage cmake --install "$build" --strip >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; die "cmake --install failed"; }
# Debian's man pages are compressed; the README stands in for a changelog.
gzip -9n "$stage"/usr/share/man/man1/brisk.1
install -D -m 644 README.md "$stage/usr/share/doc/brisk/README.md"

libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$build/CMakeCache.txt")
[[ -n $libdir && -f $stage/usr/$libdir/libbrisk.so.$version ]] ||
  die "no libbrisk.so.$version in $stage/usr/$libdir"

# The libc the binaries need, from the symbol versions they use (dpkg-shlibdeps
# reads them against libc6's symbols file). libbrisk.so.0, which the launcher
# needs, is this package's own.
mkdir -p "$work/src/debian"
printf 'Source: brisk\n\nPackage: brisk\nArchitecture: any\n' >"$work/src/debian/control"
depends=$(cd "$work/src" && dpkg-shlibdeps -O --ignore-missing-info -l"$stage/usr/$libdir" \
            -e"$stage/usr/$libdir/libbrisk.so.$version" -e"$stage/usr/bin/brisk" 2>"$work/shlibdeps.err" |
          sed -n 's/^shlibs:Depends=//p') || true
[[ $depends == *libc6* ]] ||
  { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps found no libc6 dependency ('$depends')"; }

mkdir -p "$stage/DEBIAN"
# Other packages built against libbrisk.so.0 depend on this version or later; the
# loader cache is refreshed by libc-bin's ldconfig trigger.
echo "libbrisk ${version%%.*} brisk (>= $version)" >"$stage/DEBIAN/shlibs"
echo "activate-noawait ldconfig" >"$stage/DEBIAN/triggers"
cat >"$stage/DEBIAN/control" <<EOF
Package: brisk
Version: $version
Architecture: $arch
Maintainer: brisk developers <dev@brisk.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: $depends
Recommends: libhwloc15
Section: libs
Priority: optional
Description: thread-caching malloc for multithreaded programs
 brisk replaces malloc, free, new and delete with a thread-caching allocator
 with per-NUMA-node pools. The package holds libbrisk.so.0 (preload it, or link
 it), libbrisk.a, libbrisk_api.a (the prefixed API alone), brisk.h, pkg-config
 and CMake files, and the launcher: brisk PROGRAM runs a program on brisk.
 .
 libhwloc15 gives the NUMA topology; without it brisk keeps one set of pools.
EOF
(cd "$stage" && find usr -type f -exec md5sum {} + | sort -k2) >"$stage/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/brisk_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null ||
  die "dpkg-deb could not build $deb"
say "built $deb (Depends: $depends)"
echo "$deb"
