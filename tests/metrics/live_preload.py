"""A real program under LD_PRELOAD=libbrisk.so with BRISK_METRICS set, checked
while it runs: its file appears (named for its pid, its program name in it) and
reaches the in_use the workload is known to hold; the exporter serves it
(OpenMetrics, parsed by python3-prometheus-client) and `brisk top` lists it;
when its standard input closes it exits as expected and the file is gone.
Only the program gets LD_PRELOAD.

usage: live_preload.py --launcher BRISK --lib LIBBRISK --program NAME --min-in-use BYTES
                       [--stdin FILE] [--expect-stdout FILE | --expect-last LINE]
                       [--env NAME=VALUE]... -- COMMAND..."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metrics_file  # noqa: E402

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om  # noqa: E402

WAIT_S = 60  # for the workload to reach its in_use: a loaded machine is slow


def fail(msg):
    print(f"FAIL [live_preload.py]: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--launcher", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--program", required=True)
    ap.add_argument("--min-in-use", type=int, required=True)
    ap.add_argument("--stdin")
    ap.add_argument("--expect-stdout")
    ap.add_argument("--expect-last")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("command", nargs="+")
    a = ap.parse_args()
    if shutil.which(a.command[0]) is None:
        fail(f"required program '{a.command[0]}' is not installed")

    tmp = tempfile.mkdtemp(prefix="brisk-live.")
    d = os.path.join(tmp, "m")
    os.mkdir(d)
    env = dict(os.environ, LD_PRELOAD=a.lib, BRISK_METRICS=d)
    env.pop("BRISK_STATS", None)
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    out_path = os.path.join(tmp, "stdout")
    err_path = os.path.join(tmp, "stderr")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(a.command, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env, cwd=tmp)
    exporter = None
    try:
        if a.stdin:
            with open(a.stdin, "rb") as f:
                proc.stdin.write(f.read())
            proc.stdin.flush()
        path = os.path.join(d, f"brisk.{proc.pid}")
        deadline = time.monotonic() + WAIT_S
        in_use = -1
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                fail(f"{a.command[0]} exited ({proc.returncode}) before its metrics showed: "
                     f"{open(err_path).read()[-2000:]}")
            if os.path.exists(path):
                hdr, rows = metrics_file.read(path)
                if hdr["program"] != a.program:
                    fail(f"the file names the program {hdr['program']!r}, not {a.program!r}")
                in_use = next(r["value"] for r in rows if r["name"] == "in_use" and r["node"] == -1)
                if in_use >= a.min_in_use:
                    break
            time.sleep(0.1)
        else:
            fail(f"in_use reached {in_use}, not {a.min_in_use}, within {WAIT_S} s (file: {os.path.exists(path)})")
        print(f"{a.program}: pid {proc.pid} published in_use={in_use}")

        exporter = metrics_file.Exporter(a.launcher, d)
        status, ctype, body = exporter.get(accept=metrics_file.OPENMETRICS)
        if status != 200:
            fail(f"the exporter answered {status}")
        samples = {s.name: s for fam in parse_om(body) for s in fam.samples
                   if s.labels.get("pid") == str(proc.pid) and "node" not in s.labels}
        s = samples.get("brisk_in_use_bytes")
        if s is None or s.labels["program"] != a.program or s.value < a.min_in_use:
            fail(f"the exporter's brisk_in_use_bytes for pid {proc.pid}: {s}")
        for name in ("brisk_rss_bytes", "brisk_mapped_bytes", "brisk_lock_acquired_total"):
            if name not in samples:
                fail(f"the exporter has no {name} for pid {proc.pid}")
        if samples["brisk_mapped_bytes"].value < s.value:
            fail("mapped < in_use")
        top = subprocess.run([a.launcher, "top", "--once", "--dir", d], capture_output=True, text=True, timeout=30)
        line = [ln for ln in top.stdout.splitlines() if ln.split()[:2] == [str(proc.pid), a.program]]
        if top.returncode != 0 or len(line) != 1:
            fail(f"brisk top does not list {proc.pid} {a.program}:\n{top.stdout}{top.stderr}")
        print(line[0])

        proc.stdin.close()
        status = proc.wait(timeout=WAIT_S)
        if status != 0:
            fail(f"exit status {status}: {open(err_path).read()[-2000:]}")
        got = open(out_path).read()
        if a.expect_stdout and got != open(a.expect_stdout).read():
            fail(f"stdout differs from {a.expect_stdout}:\n{got[-2000:]}")
        if a.expect_last and (not got.splitlines() or got.splitlines()[-1] != a.expect_last):
            fail(f"stdout does not end in {a.expect_last!r}:\n{got[-2000:]}")
        if os.path.exists(path):
            fail(f"{path} is still there after the exit")
        left = os.listdir(d)
        if left:
            fail(f"files left in the metrics directory: {left}")
        print("OK")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if exporter:
            exporter.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
