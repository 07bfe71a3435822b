"""A mixed Python workload for the resident check (run on malloc alone:
PYTHONMALLOC=malloc). Dicts, lists and strings of many sizes, 8-40 MiB
bytearrays written in part, four threads that build and drop their own data,
and a check of brisk's resident figure against the kernel's while all of it is
live (brisk_smaps_check, from the preloaded smaps_check library), then another
once most of it is freed; the library checks once more at exit. Prints OK."""
import ctypes
import random
import threading

check = ctypes.CDLL(None).brisk_smaps_check
check.argtypes = [ctypes.c_char_p]
check.restype = ctypes.c_int

rng = random.Random(12)
table = {f"k{i}": "v" * rng.randrange(1, 400) for i in range(150_000)}
rows = [[rng.random() for _ in range(rng.randrange(1, 40))] for _ in range(40_000)]
big = [bytearray(n << 20) for n in (8, 24, 40)]
for b in big:  # written in part: the rest stays untouched, and must not count
    for off in range(0, len(b) // 2, 4096):
        b[off] = 1

kept = []


def worker(seed):
    r = random.Random(seed)
    mine = [bytes(r.randrange(1, 5000)) for _ in range(20_000)]
    kept.append(mine[::3])


threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()

if check(b"live") != 0:
    raise SystemExit("brisk_smaps_check failed")
del table, rows, kept[:]
big.pop()
if check(b"freed") != 0:
    raise SystemExit("brisk_smaps_check failed")
print("OK")
