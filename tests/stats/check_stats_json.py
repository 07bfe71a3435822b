#!/usr/bin/env python3
"""Validate brisk's JSON statistics against the schema documented in
docs/stats-schema.md: the field tables there are parsed, so the documentation and
the code cannot drift apart unnoticed.

  check_stats_json.py --schema docs/stats-schema.md FILE...
      validate each file (one JSON document each)
  check_stats_json.py --schema docs/stats-schema.md --probe PROGRAM
      run PROGRAM (tests/stats/stats_json_probe) with BRISK_STATS=json and
      BRISK_STATS_FILE=DIR/stats.%p.json; validate the document it prints
      (brisk_stats_json) and the one brisk writes at exit; then run it with
      BRISK_STATS=1 into a file and check the text report went there, not to
      stderr, and names the topology source

Checks: every documented field present with its JSON type, no undocumented
field, `schema` == 1, `allocator` == "brisk", nodes numbered by position, classes
increasing, and the sums the schema says hold (the quiet-process ones too: the
probe's documents are taken with one thread left).
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

ROW = re.compile(r"^\| `([a-z_]+(?:\[\])?(?:\.[a-z_]+)?)` \| (integer|string|object|array) \|")
TYPES = {"integer": int, "string": str, "object": dict, "array": list}
SOURCES = {"none", "hwloc", "sysfs"}


class Invalid(Exception):
    pass


def load_schema(path):
    """{"top": {field: type}, "totals": {...}, "nodes": {...}, "classes": {...}}"""
    schema = {"top": {}, "totals": {}, "resident": {}, "nodes": {}, "classes": {}}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = ROW.match(line)
            if not m:
                continue
            name, typ = m.group(1), m.group(2)
            if "." in name:
                group, field = name.split(".", 1)
                group = group.rstrip("[]")
                schema[group][field] = typ
            else:
                schema["top"][name] = typ
    for group, fields in schema.items():
        if not fields:
            raise Invalid(f"{path}: no fields documented for {group}")
    return schema


def check_fields(where, obj, fields):
    if not isinstance(obj, dict):
        raise Invalid(f"{where}: not an object")
    for name, typ in fields.items():
        if name not in obj:
            raise Invalid(f"{where}: documented field {name!r} is missing")
        value = obj[name]
        want = TYPES[typ]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise Invalid(f"{where}.{name}: {value!r} is not a JSON {typ}")
    extra = sorted(set(obj) - set(fields))
    if extra:
        raise Invalid(f"{where}: fields not in the schema: {', '.join(extra)}")


def validate(doc, schema, where, quiet=True):
    check_fields(where, doc, schema["top"])
    if doc["schema"] != 1:
        raise Invalid(f"{where}: schema {doc['schema']}, expected 1")
    if doc["allocator"] != "brisk":
        raise Invalid(f"{where}: allocator {doc['allocator']!r}")
    if doc["topology_source"] not in SOURCES:
        raise Invalid(f"{where}: topology_source {doc['topology_source']!r}")
    if not re.fullmatch(r"\d+\.\d+", doc["version"]):
        raise Invalid(f"{where}: version {doc['version']!r}")
    t = doc["totals"]
    check_fields(f"{where}.totals", t, schema["totals"])
    for name, value in t.items():
        if value < 0:
            raise Invalid(f"{where}.totals.{name} is negative")
    res = doc["resident"]
    check_fields(f"{where}.resident", res, schema["resident"])
    layers = ("in_use", "tcache", "central", "heap_free", "large", "guarded", "metadata")
    if sum(res[k] for k in layers) != res["total"] or res["total"] > res["mapped"]:
        raise Invalid(f"{where}.resident: the layers {[res[k] for k in layers]} do not add up to "
                      f"total {res['total']} (at most mapped {res['mapped']})")
    if not doc["nodes"]:
        raise Invalid(f"{where}: no nodes")
    for i, n in enumerate(doc["nodes"]):
        check_fields(f"{where}.nodes[{i}]", n, schema["nodes"])
        if n["slot"] != i:
            raise Invalid(f"{where}.nodes[{i}].slot is {n['slot']}")
    last = 0
    for i, c in enumerate(doc["classes"]):
        check_fields(f"{where}.classes[{i}]", c, schema["classes"])
        if not last < c["class"] <= 80:
            raise Invalid(f"{where}.classes[{i}]: class {c['class']} out of order or range")
        last = c["class"]
        for field in ("in_use", "tcache", "central"):
            if c[field] % c["size"]:
                raise Invalid(f"{where}.classes[{i}].{field} is not a multiple of its size")

    def same(what, got, want):
        if got != want:
            raise Invalid(f"{where}: {what}: {got} != {want}")

    cls = doc["classes"]
    same("in_use = classes + large + guarded",
         sum(c["in_use"] for c in cls) + t["large_in_use"] + t["guarded_in_use"], t["in_use"])
    same("tcache = classes", sum(c["tcache"] for c in cls), t["tcache"])
    same("central = classes", sum(c["central"] for c in cls), t["central"])
    if t["peak_mapped"] < t["mapped"] or t["sbrk"] > t["mapped"]:
        raise Invalid(f"{where}: mapped {t['mapped']}, peak {t['peak_mapped']}, sbrk {t['sbrk']}")
    if quiet:
        nodes = doc["nodes"]
        same("nodes in_use + guarded = in_use + tcache", sum(n["in_use"] for n in nodes) + t["guarded_in_use"],
             t["in_use"] + t["tcache"])
        same("nodes free = central + heap_free + large_cached", sum(n["free"] for n in nodes),
             t["central"] + t["heap_free"] + t["large_cached"])


def validate_file(path, schema):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise Invalid(f"{path}: not one JSON document: {e}") from None
    validate(doc, schema, path)
    return doc


def probe(program, schema):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, BRISK_STATS="json", BRISK_STATS_FILE=os.path.join(tmp, "stats.%p.json"))
        run = subprocess.run([program], env=env, capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            raise Invalid(f"{program} failed ({run.returncode}): {run.stderr.strip()}")
        if run.stderr.strip():
            raise Invalid(f"{program}: unexpected stderr (the report belongs in the file): {run.stderr.strip()}")
        try:
            live = json.loads(run.stdout)
        except json.JSONDecodeError as e:
            raise Invalid(f"brisk_stats_json output is not JSON: {e}") from None
        validate(live, schema, "brisk_stats_json")
        files = glob.glob(os.path.join(tmp, "stats.*.json"))
        if len(files) != 1:
            raise Invalid(f"expected one file from BRISK_STATS_FILE, found {files}")
        at_exit = validate_file(files[0], schema)
        if files[0] != os.path.join(tmp, f"stats.{at_exit['pid']}.json"):
            raise Invalid(f"{files[0]}: %p did not become the pid {at_exit['pid']}")
        if live["pid"] != at_exit["pid"] or live["totals"]["threads_seen"] < 4:
            raise Invalid("the documents do not describe the probe (pid, threads_seen)")

        # The text report follows BRISK_STATS_FILE as well.
        text_path = os.path.join(tmp, "stats.txt")
        env = dict(os.environ, BRISK_STATS="1", BRISK_STATS_FILE=text_path)
        run = subprocess.run([program], env=env, capture_output=True, text=True, timeout=60)
        if run.returncode != 0 or "brisk:" in run.stderr:
            raise Invalid(f"text run: status {run.returncode}, stderr {run.stderr.strip()!r}")
        with open(text_path, encoding="utf-8") as f:
            text = f.read()
        if not re.search(r"^brisk: summary .* topology_source=(none|hwloc|sysfs)$", text, re.M):
            raise Invalid(f"{text_path}: no summary line naming the topology source")
    print(f"ok: brisk_stats_json and the at-exit document ({len(live['classes'])} classes, "
          f"{len(live['nodes'])} node(s), topology {live['topology_source']}) and the text file")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--probe")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    try:
        schema = load_schema(args.schema)
        if args.probe:
            probe(args.probe, schema)
        for path in args.files:
            validate_file(path, schema)
            print(f"ok: {path}")
        if not args.probe and not args.files:
            raise Invalid("nothing to check")
    except Invalid as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
