"""A reader of brisk's live-metrics files (include/brisk_metrics.h), written from
the header's layout alone, apart from the launcher's reader, so that the tests
check the format as well as the numbers. Also: the exporter started on a free
port, and fetching from it."""
import os
import struct
import subprocess
import time
import urllib.error
import urllib.request

HEADER = struct.Struct("<8sIIIIiIQQ32sQQQII16x")
ROW = struct.Struct("<32s8s72sHHiQ")
SEQ_OFFSET = 80
assert HEADER.size == 128 and ROW.size == 128


def cstr(b):
    return b.split(b"\0", 1)[0].decode()


def read(path, tries=200):
    """The file's header (a dict) and rows (a list of dicts), read under its
    sequence lock; raises if the writer never let go."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(tries):
            (s1,) = struct.unpack("<Q", os.pread(fd, 8, SEQ_OFFSET))
            if s1 & 1:
                time.sleep(0.001)
                continue
            data = os.pread(fd, os.fstat(fd).st_size, 0)
            (s2,) = struct.unpack("<Q", os.pread(fd, 8, SEQ_OFFSET))
            if s1 != s2:
                continue
            f = HEADER.unpack_from(data, 0)
            hdr = dict(magic=f[0], version=f[1], header_size=f[2], row_size=f[3], capacity=f[4], pid=f[5],
                       start_ticks=f[7], start_unix_ms=f[8], program=cstr(f[9]), seq=f[10],
                       updated_unix_ms=f[11], publications=f[12], rows=f[13])
            assert hdr["seq"] == s1, "the copy is not of the publication it was locked for"
            rows = []
            for i in range(hdr["rows"]):
                name, unit, help_, kind, _, node, value = ROW.unpack_from(data, hdr["header_size"] + i * hdr["row_size"])
                rows.append(dict(name=cstr(name), unit=cstr(unit), help=cstr(help_), kind=kind, node=node,
                                 value=value))
            return hdr, rows
        raise AssertionError(f"{path}: the sequence lock stayed taken")
    finally:
        os.close(fd)


def start_ticks(pid):
    """Field 22 of /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return int(s[s.rindex(")") + 2:].split()[19])


def write_fake(path, template, pid=None, start=None, updated_ms=None):
    """A copy of the file at template, with its pid, start time or publication time
    changed: what a process that died, or a reused pid, leaves."""
    data = bytearray(open(template, "rb").read())
    if pid is not None:
        struct.pack_into("<i", data, 24, pid)
    if start is not None:
        struct.pack_into("<Q", data, 32, start)
    if updated_ms is not None:
        struct.pack_into("<Q", data, 88, updated_ms)
    with open(path, "wb") as f:
        f.write(data)


def dead_pid():
    """The pid of a process that has just ended (and that no one reuses soon)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


class Exporter:
    """brisk exporter --listen 127.0.0.1:0, its port read from its first line."""

    def __init__(self, launcher, directory, env=None):
        self.proc = subprocess.Popen([launcher, "exporter", "--listen", "127.0.0.1:0", "--dir", directory],
                                     stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if "/metrics" not in line:
            raise AssertionError(f"the exporter said {line!r}")
        self.url = line.split(" on ", 1)[1].strip()
        self.base = self.url[: -len("/metrics")]

    def get(self, path="/metrics", accept=None, method="GET"):
        req = urllib.request.Request(self.base + path, method=method)
        if accept:
            req.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers.get("Content-Type"), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), e.read().decode()

    def stop(self):
        self.proc.terminate()
        status = self.proc.wait(timeout=10)
        self.proc.stdout.close()
        return status


OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
