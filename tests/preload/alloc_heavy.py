"""An allocation-heavy Python workload for the preload tests.

Run with PYTHONMALLOC=malloc so that every object, small ones included, comes from
the preloaded malloc rather than pymalloc's arenas. Each phase computes a result
that is checked against a constant (the workload is deterministic: seeded RNGs, no
iteration over sets or hash order), so a corrupted block shows up as a wrong digest
rather than passing silently. Prints OK and exits 0 on success.
"""
import gc
import hashlib
import random
import sys
import threading

failures = []


def check(name, got, want):
    if got != want:
        failures.append(f"{name}: got {got!r}, want {want!r}")
        print(f"FAIL {name}: got {got!r}, want {want!r}", file=sys.stderr)


def digest(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, (bytes, bytearray, memoryview)) else repr(p).encode())
    return h.hexdigest()[:16]


# Dicts: 200k string keys, then delete two thirds and refill, so the table resizes
# both ways and the key strings churn.
def phase_dicts():
    d = {}
    for i in range(200_000):
        d[f"key-{i:07d}-{i * 7919 % 100_003}"] = (i, str(i * i), [i] * (i % 5))
    for i in range(0, 200_000, 3):
        del d[f"key-{i:07d}-{i * 7919 % 100_003}"]
    for i in range(0, 200_000, 3):
        if i % 2:
            d[f"new-{i}"] = {"i": i, "s": "x" * (i % 97)}
    total = 0
    for k in sorted(d):
        v = d[k]
        total += v["i"] + len(v["s"]) if isinstance(v, dict) else v[0] + len(v[1]) + len(v[2])
    return len(d), total


# Lists: nested lists, sorting, slicing and in-place growth and shrinking.
def phase_lists():
    rng = random.Random(12345)
    rows = [[rng.randrange(1_000_000) for _ in range(rng.randrange(1, 64))] for _ in range(20_000)]
    for r in rows:
        r.sort()
    flat = [x for r in rows for x in r]
    flat.sort(reverse=True)
    del flat[::2]
    flat.extend(flat[:1000] * 50)
    return len(flat), sum(flat) % 1_000_000_007, digest(flat[:100], flat[-100:])


# Strings: joins, replaces, splits and formatting producing many temporaries.
def phase_strings():
    words = [f"w{i:05d}" * (1 + i % 9) for i in range(50_000)]
    text = " ".join(words)
    text = text.replace("w0", "W-zero-").upper()
    parts = text.split(" ")
    lengths = sum(len(p) for p in parts)
    big = "".join(p[::-1] for p in parts[::7])
    return len(text), len(parts), lengths, digest(big.encode())


# Big buffers: a 50 MiB bytearray filled with a pattern, grown to 64 MiB (realloc of
# a large block), copied, sliced, and hashed.
def phase_bytearrays():
    mib = 1 << 20
    pattern = bytes(range(251))  # a prime length, so the pattern never lines up with pages
    buf = bytearray(50 * mib)
    view = memoryview(buf)
    for off in range(0, len(buf), 1 << 16):
        chunk = pattern * (((1 << 16) // 251) + 1)
        view[off:off + (1 << 16)] = chunk[: min(1 << 16, len(buf) - off)]
    view.release()
    d1 = digest(buf)
    buf.extend(b"\xa5" * (14 * mib))
    copy = bytes(buf)
    mid = copy[25 * mib:40 * mib]
    d2 = digest(copy)
    d3 = digest(mid)
    del buf[: 10 * mib]
    d4 = digest(buf[-mib:])
    return len(copy), d1, d2, d3, d4


class Node:
    def __init__(self, value, nxt):
        self.value = value
        self.next = nxt
        self.payload = [value] * (value % 7)


class Slotted:
    __slots__ = ("a", "b", "c")

    def __init__(self, a, b, c):
        self.a, self.b, self.c = a, b, c


# Object churn: many short-lived objects, reference cycles for the collector.
def phase_objects():
    acc = 0
    for rnd in range(20):
        head = None
        for i in range(10_000):
            head = Node(rnd * 10_000 + i, head)
        objs = [Slotted(i, str(i), (i, i)) for i in range(10_000)]
        cycles = []
        for i in range(2_000):
            a, b = {}, {}
            a["other"], b["other"] = b, a
            a["v"] = i
            cycles.append(a)
        n = head
        while n is not None:
            acc += n.value + len(n.payload)
            n = n.next
        acc += sum(o.a + len(o.b) for o in objs)
        acc += sum(c["other"]["other"]["v"] for c in cycles)
        del head, objs, cycles, n
        gc.collect()
    return acc


# Threads: each builds and tears down its own structures; results are compared with
# the same function run on the main thread and with constants.
def thread_work(seed):
    rng = random.Random(seed)
    d = {}
    for i in range(60_000):
        k = rng.randrange(30_000)
        if k in d and rng.random() < 0.5:
            del d[k]
        else:
            d[k] = bytes(rng.randrange(256) for _ in range(k % 48))
    return digest(sorted((k, v) for k, v in d.items()))


def phase_threads():
    seeds = [101, 202, 303, 404]
    results = [None] * len(seeds)

    def run(i):
        try:
            results[i] = thread_work(seeds[i])
        except BaseException as e:  # a MemoryError must fail the test, not vanish
            results[i] = f"exception {e!r}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(seeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, thread_work(seeds[0])


EXPECTED = {
    # Computed with glibc's, jemalloc's and tcmalloc's malloc; python3.11.
    "dicts": (166666, 16669768980),
    "lists": (369482, 695426424, "d7e7e60548786b92"),
    "strings": (1799919, 50000, 1749920, "806dbffff121270c"),
    "bytearrays": (67108864, "975365ab6f125634", "5492626e4289bda2", "67ed7f1c20e6c235",
                   "16c7f1d8a38b4b84"),
    "objects": 21041157794,
    "threads": ["c10c5835ec3f4e21", "ca52d6f115300ae8", "670c21512529d070", "1fb2e3beb471b632"],
}


def main():
    got = {
        "dicts": phase_dicts(),
        "lists": phase_lists(),
        "strings": phase_strings(),
        "bytearrays": phase_bytearrays(),
        "objects": phase_objects(),
    }
    results, main_thread = phase_threads()
    got["threads"] = results
    check("threads agree with the main thread", results[0], main_thread)
    if "--print" in sys.argv:
        for k, v in got.items():
            print(f"    {k!r}: {v!r},")
        return 0
    for k, v in got.items():
        check(k, v, EXPECTED[k])
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
