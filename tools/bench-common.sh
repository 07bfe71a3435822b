# shellcheck shell=bash
# Shared by tools/compare.sh and tools/callgrind.sh (sourced, not run): where each
# allocator's library is, how to get the bench programs built, how to install the
# peers. brisk comes from a build directory; the peers are the Debian packages.
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

# Append the installed peers to the arrays names and libs; stop on a bad override.
bench_add_peers() {
  local peer lib status
  for peer in jemalloc tcmalloc mimalloc; do
    status=0
    lib=$(bench_peer_lib "$peer") || status=$?
    case $status in
      0) names+=("$peer") libs+=("$lib") ;;
      1) bench_say "note: $peer is not installed; skipping it" ;;
      *) exit 1 ;;
    esac
  done
}

# Install what building brisk and the bench programs needs (and $@, e.g. valgrind),
# when we are root and have apt-get; only what is missing. Without root, a missing
# tool shows up as a build error.
bench_install_build_deps() {
  local p missing=()
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null || return 0
  for p in cmake make gcc g++ "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -gt 0 ]] || return 0
  bench_say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    bench_die "could not install ${missing[*]}"
}

# Install the peers that are missing, when we are root and have apt-get. Quiet and
# idempotent; a package that cannot be installed is skipped with a note (its
# allocator is then left out of the comparison).
bench_install_peers() {
  local name pkg soname missing=() updated=0
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null || return 0
  for entry in "${BENCH_PEERS[@]}"; do
    read -r name pkg soname <<<"$entry"
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$pkg")
  done
  for pkg in "${missing[@]}"; do
    bench_say "installing $pkg"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "$pkg" >/dev/null 2>&1; then
      if [[ $updated == 0 ]]; then
        apt-get update -qq >/dev/null 2>&1 || true
        updated=1
      fi
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "$pkg" >/dev/null 2>&1 || bench_say "note: could not install $pkg; skipping it"
    fi
  done
}

# Build libbrisk.so in $1 (configured as Release, without the tests, if not
# configured yet). A brisk that does not build stops the script: a comparison
# without it, or with a stale library, would answer a question nobody asked.
bench_build_brisk() {
  local build=$1 log="$1/brisk-build.log"
  mkdir -p "$build"
  if [[ ! -f $build/CMakeCache.txt ]]; then
    if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBRISK_TESTS=OFF >"$log" 2>&1; then
      cat "$log" >&2
      bench_die "brisk did not configure (log above)"
    fi
  fi
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

# Print the directory holding up-to-date churn and pairs. From the project's build
# directory $1 when it is configured (they do not depend on the library, so they
# build even when brisk does not); otherwise bench/ is built on its own in
# $1/bench-standalone, which works while the top-level project is broken.
bench_programs() {
  local build=$1 log="$1/bench-build.log"
  mkdir -p "$build"
  : >"$log"
  if [[ -f $build/CMakeCache.txt ]] &&
     cmake --build "$build" -j2 --target churn pairs >>"$log" 2>&1 &&
     [[ -x $build/bench/churn && -x $build/bench/pairs ]]; then
    echo "$build/bench"
    return 0
  fi
  local alone="$build/bench-standalone"
  if { [[ -f $alone/CMakeCache.txt ]] ||
       cmake -S bench -B "$alone" -DCMAKE_BUILD_TYPE=Release >>"$log" 2>&1; } &&
     cmake --build "$alone" -j2 >>"$log" 2>&1; then
    echo "$alone"
    return 0
  fi
  cat "$log" >&2
  bench_die "could not build the bench programs (log above)"
}

# The value of key=value in a line of output ("" when absent).
bench_field() {
  local key=$1 line=$2
  sed -n "s/.*\\b$key=\\([^ ]*\\).*/\\1/p" <<<"$line"
}

# The median of the numbers given as arguments (mean of the middle two when even).
bench_median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) exit 1
          if (NR % 2) printf "%.6g\n", v[(NR + 1) / 2]
          else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
