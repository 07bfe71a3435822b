#!/usr/bin/env bash
# Stands in for a program that brisk served, in run_preloaded.sh's own tests: prints
# OK and writes, as brisk would at exit (BRISK_STATS=json), a statistics document
# to BRISK_STATS_FILE (%p: this process's id) whose totals are the NAME=VALUE
# arguments.
set -eu
totals=''
for kv in "$@"; do totals+="${totals:+, }\"${kv%%=*}\": ${kv#*=}"; done
file=${BRISK_STATS_FILE//%p/$$}
printf '{"schema": 1, "allocator": "brisk", "version": "0.1", "pid": %d, "topology_source": "none",\n "totals": {%s}, "nodes": [], "classes": []}\n' \
  $$ "$totals" >"$file"
echo OK
