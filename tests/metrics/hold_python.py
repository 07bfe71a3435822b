"""Python under brisk (PYTHONMALLOC=malloc) for tests/metrics/live_preload.py:
about 40 MB of small objects (dicts, strings, tuples) held until standard input
closes, checked then, and OK printed."""
import sys

data = [{"k": f"item-{i:08d}", "v": (i, str(i * i)), "l": [i] * 3} for i in range(150_000)]
blob = [bytes([i % 256]) * 1000 for i in range(8_000)]
print("READY", flush=True)
sys.stdin.read()
ok = all(d["v"][1] == str(d["v"][0] ** 2) for d in data) and sum(b[0] for b in blob) == sum(i % 256 for i in range(8_000))
print("OK" if ok else "FAIL")
sys.exit(0 if ok else 1)
