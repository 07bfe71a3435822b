# shellcheck shell=bash
# Shared by tools/compare.sh and tools/callgrind.sh (sourced, not run): where each
# allocator's library is, how to get brisk and brisk_bench built. brisk comes from a
# build directory; the peers are the Debian packages (installed by tools/install-deps.sh,
# group peers, which must name the same packages as BENCH_PEERS).
# Every function reports on stderr, so stdout stays the table.

# name  Debian package  soname. Override a path with JEMALLOC_LIB=..., and so on.
BENCH_PEERS=(
  "jemalloc libjemalloc2 libjemalloc.so.2"
  "tcmalloc libtcmalloc-minimal4 libtcmalloc_minimal.so.4"
  "mimalloc libmimalloc2.0 libmimalloc.so.2"
)

bench_say() { printf '%s\n' "$*" >&2; }
bench_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The library of a peer; status 1 when it is not installed, 2 (with a message) when
# an override names a file that does not exist.
bench_peer_lib() {
  local want=$1 name pkg soname override path dir
  for entry in "${BENCH_PEERS[@]}"; do
    read -r name pkg soname <<<"$entry"
    [[ $name == "$want" ]] || continue
    override="${name^^}_LIB"
    if [[ -n ${!override:-} ]]; then
      if [[ ! -f ${!override} ]]; then
        bench_say "error: $override=${!override} does not exist"
        return 2
      fi
      echo "${!override}"
      return 0
    fi
    path=$(dpkg -L "$pkg" 2>/dev/null | grep -m1 "/$soname\$" || true)
    if [[ -n $path && -f $path ]]; then
      echo "$path"
      return 0
    fi
    for dir in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 \
               /usr/lib /usr/local/lib; do
      if [[ -f $dir/$soname ]]; then
        echo "$dir/$soname"
        return 0
      fi
    done
    return 1
  done
  bench_say "error: unknown peer '$want'"
  return 2
}

# Fill the arrays names, libs and versions with the allocators of the comma-separated
# list $2, in its order: brisk from build directory $1, glibc as "" (no preload), and
# the installed peers (a missing one is left out with a note). A version is the
# Debian package's (brisk: the git commit; a peer given by *_LIB: its file name).
bench_allocators() {
  local build=$1 name lib status
  names=() libs=() versions=()
  for name in ${2//,/ }; do
    case $name in
      brisk)
        [[ -f $build/libbrisk.so ]] ||
          bench_die "$build/libbrisk.so does not exist (build it, or drop --no-build)"
        names+=(brisk) libs+=("$(realpath "$build/libbrisk.so")")
        versions+=("$(git describe --always --dirty 2>/dev/null || echo unknown)") ;;
      glibc) names+=(glibc) libs+=("") versions+=("$(bench_pkg_version libc6)") ;;
      jemalloc|tcmalloc|mimalloc)
        status=0
        lib=$(bench_peer_lib "$name") || status=$?
        case $status in
          0) names+=("$name") libs+=("$lib") versions+=("$(bench_peer_version "$name" "$lib")") ;;
          1) bench_say "note: $name is not installed; leaving it out" ;;
          *) exit 1 ;;
        esac ;;
      *) bench_die "unknown allocator '$name' (brisk, glibc, jemalloc, tcmalloc, mimalloc)" ;;
    esac
  done
  [[ ${#names[@]} -gt 0 ]] || bench_die "no allocator to run"
}

# The installed version of Debian package $1 ("unknown" when dpkg does not know it).
bench_pkg_version() {
  local v
  v=$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null) || true
  echo "${v:-unknown}"
}

# The version of peer $1 whose library is $2: its package's, or the file's name when
# an override points elsewhere.
bench_peer_version() {
  local name pkg soname
  for entry in "${BENCH_PEERS[@]}"; do
    read -r name pkg soname <<<"$entry"
    [[ $name == "$1" ]] || continue
    if dpkg -L "$pkg" 2>/dev/null | grep -qx "$2"; then
      bench_pkg_version "$pkg"
    else
      basename "$2"
    fi
  done
}

# A Google Benchmark filter regex that matches the string $1 literally.
bench_regex_escape() {
  sed 's/[][\\.*^$+?(){}|]/\\&/g' <<<"$1"
}

# With a fixed iteration count Google Benchmark names every benchmark with an
# /iterations:N segment: after the arguments and before /real_time, /process_time or
# /threads:N (scal/larson/iterations:N/real_time/threads:1), in place of the one a
# benchmark with its own count lists already (scal/large_churn/iterations:400/...).
bare_name() {
  sed -E 's#/iterations:[0-9]+##' <<<"$1"
}

fixed_name_regex() {
  local name head tail
  name=$(bare_name "$1")
  name=$(sed -E 's#/(real_time|process_time|threads:)#@@&#' <<<"$name")
  head=${name%%@@*}
  tail=${name#"$head"}
  tail=${tail#@@}
  printf '%s/iterations:[0-9]+%s\n' "$(bench_regex_escape "$head")" "$(bench_regex_escape "$tail")"
}

# Build libbrisk.so in $1 (configured as Release, without the tests, if not
# configured yet, or afresh when an earlier configure failed: brisk_configure in
# tools/install-deps.sh). A brisk that does not build stops the script: a comparison
# without it, or with a stale library, would answer a question nobody asked.
bench_build_brisk() {
  local build=$1 log="$1/brisk-build.log"
  brisk_configure "$build" -DCMAKE_BUILD_TYPE=Release -DBRISK_TESTS=OFF ||
    bench_die "brisk did not configure (log above)"
  if ! cmake --build "$build" -j2 --target brisk >>"$log" 2>&1; then
    cat "$log" >&2
    bench_die "brisk did not build (log above)"
  fi
  local type
  type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
  [[ $type == Release ]] ||
    bench_say "warning: $build is a '$type' build; brisk's numbers are not a Release build's"
  return 0
}

# Print the path of brisk_bench, the benchmark binary, built in $1 when $2 is 1 (the
# project configured there by bench_build_brisk; the binary does not link brisk, so
# one build serves every allocator). With $2 = 0 it must already exist.
bench_program() {
  local build=$1 do_build=$2 log="$1/bench-build.log" prog="$1/bench/brisk_bench"
  if [[ $do_build == 1 ]]; then
    if ! cmake --build "$build" -j2 --target brisk_bench >"$log" 2>&1; then
      cat "$log" >&2
      bench_die "brisk_bench did not build (log above)"
    fi
  fi
  [[ -x $prog ]] || bench_die "$prog does not exist (build it, or drop --no-build)"
  echo "$prog"
}

# The CPU model, as /proc/cpuinfo names it.
bench_cpu_model() {
  sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1
}
