#!/usr/bin/env bash
# Runs one real program with brisk preloaded and decides whether the run passed.
#
# The program must (1) exit as expected, (2) print what it should, and (3) have been
# served by brisk: the JSON statistics brisk writes at exit (BRISK_STATS=json,
# BRISK_STATS_FILE=one file per process, docs/stats-schema.md) must be there, say
# "allocator": "brisk", and meet the thresholds the workload is known to reach.
# Only the program gets LD_PRELOAD; this script and the tools it uses (python3
# reads the statistics) run on the system allocator.
#
# usage: run_preloaded.sh [options] -- command [args...]
#   --lib PATH              the allocator to preload (required; "" runs it without any)
#   --no-preload            link-time brisk: run without LD_PRELOAD, still with the statistics
#   --env NAME=VALUE        extra environment for the program only (repeatable)
#   --stdin FILE            feed FILE to the program's standard input
#   --expect-status N       the exit status the program must return (default 0)
#   --expect-stdout FILE    stdout must equal FILE exactly
#   --expect-pattern ERE    stdout must match the extended regex (repeatable)
#   --min-peak BYTES        totals.peak_mapped >= BYTES (K/M/G suffixes)
#   --min-threads N         totals.threads_seen >= N
#   --min FIELD=N           totals.FIELD >= N (repeatable)
#   --max FIELD=N           totals.FIELD <= N (repeatable)
#   --no-summary            skip the statistics checks (to try the programs on another malloc)
#   --resident-check SHIM   preload SHIM (smaps_check.c) after the allocator: at exit (and when
#                           the program calls brisk_smaps_check) it compares brisk's resident
#                           total with the kernel's Rss of brisk's mappings; each process's
#                           figures must agree within 2 % and 512 KiB (the programs here
#                           differ by 16 KiB at most: pages only ever read map the kernel's
#                           zero page, which mincore sees and Rss does not count) and its
#                           layers add up exactly
#   --timeout SECONDS       kill the program after this long (default 120)
#   --workdir DIR           run the program in DIR (default: a fresh temporary dir)
set -u

SUMMARY_FIELDS="mapped peak_mapped in_use tcache central heap_free returned large_in_use \
large_cached large_blocks metadata sbrk threads threads_seen"

me=${0##*/}
fail() {
  echo "FAIL [$me]: $*" >&2
  exit 1
}

# "64M" -> 67108864. Anything else that is not a plain decimal is a usage error.
to_bytes() {
  local v=$1 mult=1
  case $v in
  *[kK]) mult=1024 v=${v%?} ;;
  *[mM]) mult=$((1024 * 1024)) v=${v%?} ;;
  *[gG]) mult=$((1024 * 1024 * 1024)) v=${v%?} ;;
  esac
  [[ $v =~ ^[0-9]+$ ]] || fail "usage: '$1' is not a byte count"
  echo $((v * mult))
}

check_field_name() {
  local f
  for f in $SUMMARY_FIELDS; do [[ $f == "$1" ]] && return 0; done
  fail "usage: '$1' is not a statistics field (one of: $SUMMARY_FIELDS)"
}

lib=unset preload=1 stdin_file='' expect_status=0 expect_stdout='' timeout_s=120
workdir='' want_summary=1 resident_shim=''
patterns=() extra_env=() mins=() maxs=()
while (($#)); do
  case $1 in
  --lib) lib=$2; shift 2 ;;
  --no-preload) preload=0; shift ;;
  --env) [[ $2 == *=* ]] || fail "usage: --env wants NAME=VALUE, got '$2'"
    extra_env+=("$2"); shift 2 ;;
  --stdin) stdin_file=$2; shift 2 ;;
  --expect-status) expect_status=$2; shift 2 ;;
  --expect-stdout) expect_stdout=$2; shift 2 ;;
  --expect-pattern) patterns+=("$2"); shift 2 ;;
  --min-peak) mins+=("peak_mapped=$(to_bytes "$2")") || exit 1; shift 2 ;;
  --min-threads) mins+=("threads_seen=$(to_bytes "$2")") || exit 1; shift 2 ;;
  --min) mins+=("${2%%=*}=$(to_bytes "${2#*=}")") || exit 1; shift 2 ;;
  --max) maxs+=("${2%%=*}=$(to_bytes "${2#*=}")") || exit 1; shift 2 ;;
  --no-summary) want_summary=0; shift ;;
  --resident-check) resident_shim=$2; shift 2 ;;
  --timeout) timeout_s=$2; shift 2 ;;
  --workdir) workdir=$2; shift 2 ;;
  --) shift; break ;;
  *) fail "usage: unknown option '$1' (the command goes after --)" ;;
  esac
done
(($#)) || fail "usage: no command given (put it after --)"
for kv in "${mins[@]}" "${maxs[@]}"; do check_field_name "${kv%%=*}"; done

# The program must exist: a missing python3 or sqlite3 is a failure, never a skip.
prog=$1
if [[ $prog == */* ]]; then
  [[ -x $prog ]] || fail "required program '$prog' is missing or not executable"
else
  command -v -- "$prog" >/dev/null ||
    fail "required program '$prog' is not installed (not found in PATH=$PATH)"
fi
if ((preload)); then
  [[ $lib != unset ]] || fail "usage: --lib PATH is required (or --no-preload)"
  if [[ -n $lib && ! -f $lib ]]; then fail "allocator library '$lib' does not exist"; fi
fi
[[ -z $stdin_file || -r $stdin_file ]] || fail "stdin file '$stdin_file' is not readable"
[[ -z $expect_stdout || -r $expect_stdout ]] ||
  fail "expected-output file '$expect_stdout' is not readable"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/brisk-preload.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$scratch"' EXIT
out=$scratch/stdout err=$scratch/stderr stats_dir=$scratch/stats
mkdir "$stats_dir" || fail "mkdir failed"
resident_dir=$scratch/resident
mkdir "$resident_dir" || fail "mkdir failed"
[[ -z $resident_shim || -f $resident_shim ]] || fail "resident check library '$resident_shim' does not exist"
[[ -n $workdir ]] || { workdir=$scratch/work; mkdir "$workdir"; }

# Only `env`'s child, the program, sees LD_PRELOAD; timeout and env themselves do not.
# The subshell does not exec timeout, so that bash's "Aborted" notice for a program
# killed by a signal lands in the program's stderr file rather than in our output.
run_env=(BRISK_STATS=json "BRISK_STATS_FILE=$stats_dir/brisk.%p.json" "${extra_env[@]}")
if ((preload)) && [[ -n $lib ]]; then
  run_env=(LD_PRELOAD="$lib${resident_shim:+:$resident_shim}" "${run_env[@]}")
fi
if [[ -n $resident_shim ]]; then run_env+=("SMAPS_CHECK_FILE=$resident_dir/%p.txt"); fi
echo "run: ${run_env[*]} $* (in $workdir)"
(
  cd "$workdir" || exit 126
  if [[ -n $stdin_file ]]; then exec <"$stdin_file"; else exec </dev/null; fi
  timeout -s KILL "$timeout_s" env "${run_env[@]}" "$@"
  exit $?
) >"$out" 2>"$err"
status=$?

# The head and the tail of a long file: the first error and the last words.
show_file() {
  local n
  n=$(wc -l <"$1")
  if ((n <= 80)); then
    cat "$1"
  else
    head -n 40 "$1"
    echo "[... $((n - 80)) lines ...]"
    tail -n 40 "$1"
  fi
}

show_output() {
  echo "---- stdout ----" >&2
  show_file "$out" >&2
  echo "---- stderr ----" >&2
  show_file "$err" >&2
  echo "----------------" >&2
}

# 1. The exit status. timeout -s KILL reports 137 for the program it killed.
if ((status != expect_status)); then
  why="exit status $status, expected $expect_status"
  if ((status == 137)); then
    why="$why (killed: it ran past the ${timeout_s}s timeout, or SIGKILL)"
  elif ((status > 128)); then
    why="$why (killed by signal $((status - 128)): $(kill -l $((status - 128)) 2>/dev/null))"
  elif ((status == 127)); then
    why="$why (command not found)"
  fi
  show_output
  fail "$why"
fi

# 2. The output.
if [[ -n $expect_stdout ]] && ! cmp -s "$expect_stdout" "$out"; then
  echo "---- diff expected actual ----" >&2
  diff -u "$expect_stdout" "$out" | head -n 60 >&2
  show_output
  fail "stdout differs from $expect_stdout"
fi
for re in "${patterns[@]}"; do
  if ! grep -Eq -- "$re" "$out"; then
    show_output
    fail "stdout does not match /$re/"
  fi
done

# 2b. Resident memory: brisk's figure against the kernel's, per check of each process.
if [[ -n $resident_shim ]]; then
  if ! python3 - "$resident_dir" <<'PY'
import glob, os, sys
lines = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.txt"))):
    with open(path, encoding="utf-8") as f:
        lines += [l.split() for l in f if l.strip()]
bad = []
exits = 0
for toks in lines:
    v = dict(t.split("=", 1) for t in toks if "=" in t)
    if "error" in v:
        bad.append(f"{v.get('label')} pid {v.get('pid')}: {v['error']}")
        continue
    b, k = int(v["brisk_resident"]), int(v["smaps_rss"])
    diff = abs(b - k)
    pct = 100.0 * diff / k if k else 100.0
    print(f"resident {v['label']} pid {v['pid']}: brisk {b} smaps Rss {k} (diff {diff} B, {pct:.3f}%; "
          f"{v['regions']} mappings, {v['vmas']} VMAs, {v['named']} named; in_use {v['in_use']} tcache {v['tcache']} "
          f"central {v['central']} heap_free {v['heap_free']} large {v['large']} guarded {v['guarded']} "
          f"metadata {v['metadata']})")
    exits += v["label"] == "exit"
    if v["stable"] != "1":
        bad.append(f"{v['label']} pid {v['pid']}: the kernel's figure never held still")
    if int(v["parts"]) != b:
        bad.append(f"{v['label']} pid {v['pid']}: layers add up to {v['parts']}, not {b}")
    if diff * 100 > 2 * k or diff > 512 * 1024:
        bad.append(f"{v['label']} pid {v['pid']}: brisk {b} vs smaps {k}, off by more than 2% or 512 KiB")
if not exits:
    bad.append("no check at exit (the resident check library did not run)")
for b in bad:
    print("resident check: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
  then
    show_output
    fail "brisk's resident figure does not match the kernel's"
  fi
fi

# brisk's statistics files as one line each, "brisk.PID.json: mapped=N ...", from
# the totals of documents that say brisk wrote them; a file that is not one is a
# line saying why.
stats_lines() {
  python3 - "$stats_dir" <<'PY'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{name}: unreadable ({e})")
        continue
    if not isinstance(doc, dict) or doc.get("allocator") != "brisk" or doc.get("schema") != 1:
        print(f"{name}: not brisk's statistics (schema 1)")
        continue
    totals = doc.get("totals", {})
    print(f"{name}: " + " ".join(f"{k}={v}" for k, v in totals.items()))
PY
}

# 3. brisk served it. Several processes (a shell, children that exit) may each write
# their statistics; the run passes when one of them meets every threshold.
if ((want_summary)); then
  command -v python3 >/dev/null || fail "python3 is needed to read brisk's statistics"
  mapfile -t summaries < <(stats_lines | grep -v ': not brisk\|: unreadable')
  if ((${#summaries[@]} == 0)); then
    show_output
    stats_lines >&2
    fail "no brisk statistics at exit ($stats_dir empty or not brisk's): the program did not" \
      "run on brisk (library not preloaded or not linked, or it wrote no statistics at exit)"
  fi
  reasons=()
  for line in "${summaries[@]}"; do
    declare -A val=()
    for tok in $line; do
      [[ $tok == *=* ]] && val[${tok%%=*}]=${tok#*=}
    done
    bad=()
    for kv in "${mins[@]}"; do
      f=${kv%%=*} want=${kv#*=} got=${val[${kv%%=*}]:-}
      if [[ ! $got =~ ^[0-9]+$ ]]; then bad+=("$f missing or not a number ('$got')")
      elif ((got < want)); then bad+=("$f=$got < $want"); fi
    done
    for kv in "${maxs[@]}"; do
      f=${kv%%=*} want=${kv#*=} got=${val[${kv%%=*}]:-}
      if [[ ! $got =~ ^[0-9]+$ ]]; then bad+=("$f missing or not a number ('$got')")
      elif ((got > want)); then bad+=("$f=$got > $want"); fi
    done
    unset val
    if ((${#bad[@]} == 0)); then
      echo "program output (first 20 lines):"
      head -n 20 "$out"
      echo "served by brisk: $line"
      echo "PASS"
      exit 0
    fi
    reasons+=("  ${bad[*]}   <- $line")
  done
  show_output
  printf '%s\n' "thresholds not met by the statistics of any of ${#summaries[@]} process(es):" \
    "${reasons[@]}" >&2
  fail "brisk statistics show the workload was not served as expected"
fi
echo "program output (first 20 lines):"
head -n 20 "$out"
echo "PASS (summary not checked)"
exit 0
