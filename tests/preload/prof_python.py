# Heap profile of a real program: python3 on malloc alone (PYTHONMALLOC=malloc)
# holds about 100 MB of dicts, lists and strings, writes its heap profile through
# brisk_prof_dump (ctypes) and prints brisk's in_use at that moment.
import ctypes
import json
import sys


def build_dicts():
    return [dict((str(i), [j] * 10) for i in range(100)) for j in range(3000)]


def build_strings():
    return ["x" * (i % 500) + str(i) for i in range(200000)]


a = build_dicts()
b = build_strings()
lib = ctypes.CDLL(None)
buf = ctypes.create_string_buffer(1 << 16)
lib.brisk_stats_json(buf, len(buf))
in_use = json.loads(buf.value)["totals"]["in_use"]
err = lib.brisk_prof_dump(sys.argv[1].encode())
print("dump", err, "in_use", in_use, len(a), len(b))
