"""Live metrics end to end (BRISK_METRICS): metrics_probe publishes, stays quiet,
and writes its own brisk_stats_json; its file (read by metrics_file.py), the
exporter's two formats (parsed by python3-prometheus-client) and `brisk top`
must show exactly those numbers. Then: stale files of dead processes and of a
reused pid are removed by the readers, a live process that stopped publishing is
left out, the file goes at exit, a forked child publishes its own file (and its
exit leaves the parent's), and BRISK_PURGE_THREAD=0 publishes nothing.

usage: test_metrics.py LAUNCHER PROBE
The prometheus_client module is required (tools/install-deps.sh installs it):
without it the test fails."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metrics_file  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families as parse_text  # noqa: E402
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om  # noqa: E402

LAUNCHER, PROBE = sys.argv[1], sys.argv[2]
del sys.argv[1:3]

# The process rows and the JSON totals field each one is (same name), with the
# exporter's family name and whether it is a counter.
BYTES = ["mapped", "peak_mapped", "in_use", "tcache", "central", "heap_free", "returned", "large_in_use",
         "metadata", "sbrk"]
PLAIN = ["large_blocks", "threads"]
COUNTERS = ["threads_seen", "lock_acquired", "lock_contended"]
KNOWN_BYTES = 6000 * 2000 + 4 * (1 << 20)  # what the probe holds


def family(name):
    return f"brisk_{name}_bytes" if name in BYTES or name == "rss" else f"brisk_{name}"


def human(v):
    """top's size column."""
    u = 0
    v = float(v)
    while v >= 1024 and u < 5:
        v /= 1024
        u += 1
    return f"{v:.0f}B" if u == 0 else f"{v:.1f}{'BKMGTP'[u]}"


def rss_now(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class LiveMetrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="brisk-metrics.")
        cls.dir = os.path.join(cls.tmp.name, "m")
        os.mkdir(cls.dir)
        cls.json_path = os.path.join(cls.tmp.name, "probe.json")
        env = dict(os.environ, BRISK_METRICS=cls.dir)
        cls.probe = subprocess.Popen([PROBE, cls.json_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True)
        line = cls.probe.stdout.readline()
        if not line.startswith("READY "):
            cls.probe.kill()
            raise AssertionError(f"the probe said {line!r}")
        cls.pid = int(line.split()[1])
        with open(cls.json_path) as f:
            cls.stats = json.load(f)
        cls.path = os.path.join(cls.dir, f"brisk.{cls.pid}")
        cls.exporter = metrics_file.Exporter(LAUNCHER, cls.dir)

    @classmethod
    def tearDownClass(cls):
        if cls.probe.poll() is None:
            cls.probe.kill()
            cls.probe.wait()
        cls.probe.stdout.close()
        cls.exporter.stop()
        cls.tmp.cleanup()

    def test_1_file_holds_the_process_statistics(self):
        hdr, rows = metrics_file.read(self.path)
        self.assertEqual(hdr["magic"], b"BRISKMT\0")
        self.assertEqual(hdr["version"], 1)
        self.assertEqual(hdr["pid"], self.pid)
        self.assertEqual(hdr["program"], "metrics_probe")
        self.assertEqual(hdr["start_ticks"], metrics_file.start_ticks(self.pid))
        self.assertEqual(hdr["seq"] % 2, 0)
        self.assertGreaterEqual(hdr["publications"], 2)
        self.assertLess(abs(time.time() * 1000 - hdr["updated_unix_ms"]), 5000, "published within the last ticks")
        proc = {r["name"]: r for r in rows if r["node"] == -1}
        totals = self.stats["totals"]
        for name in BYTES + PLAIN + COUNTERS:
            with self.subTest(name=name):
                self.assertIn(name, proc)
                self.assertEqual(proc[name]["value"], totals[name])
                self.assertEqual(proc[name]["unit"], "bytes" if name in BYTES else "")
                self.assertEqual(proc[name]["kind"], 1 if name in COUNTERS else 0)
        self.assertGreaterEqual(totals["in_use"], KNOWN_BYTES)
        self.assertEqual(totals["threads_seen"], 2)
        # RSS: the process's own reading; the probe is quiet, so it barely moves.
        self.assertLess(abs(proc["rss"]["value"] - rss_now(self.pid)), 1 << 20)
        self.assertGreaterEqual(proc["rss"]["value"], KNOWN_BYTES)
        # Resident memory by layer (measured once a second, the probe is quiet):
        # the layers add up, and the total is the probe's own measurement.
        layers = ("in_use", "tcache", "central", "heap_free", "large", "guarded", "metadata")
        res = self.stats["resident"]
        self.assertEqual(sum(proc["resident_" + k]["value"] for k in layers), proc["resident"]["value"])
        self.assertGreaterEqual(proc["resident"]["value"], KNOWN_BYTES)
        self.assertLess(abs(proc["resident"]["value"] - res["total"]), max(res["total"] // 50, 256 << 10))
        for k in layers:
            self.assertEqual(proc["resident_" + k]["unit"], "bytes")
        nodes = {r["node"]: {} for r in rows if r["node"] >= 0}
        for r in rows:
            if r["node"] >= 0:
                nodes[r["node"]][r["name"]] = r["value"]
        self.assertEqual(len(nodes), len(self.stats["nodes"]))
        for n in self.stats["nodes"]:
            got = nodes[n["os_node"]]
            for key in ("mapped", "in_use", "free", "remote_frees"):
                self.assertEqual(got["node_" + key], n[key], key)

    def check_families(self, families, counters_named):
        """The probe's samples in parsed families equal its JSON."""
        totals = self.stats["totals"]
        found = {}
        for fam in families:
            for s in fam.samples:
                if s.labels.get("pid") == str(self.pid) and "node" not in s.labels:
                    self.assertEqual(s.labels["program"], "metrics_probe")
                    found[s.name] = (fam, s.value)
        for name in BYTES + PLAIN:
            with self.subTest(name=name):
                fam, value = found[family(name)]
                self.assertEqual(fam.type, "gauge")
                self.assertEqual(value, totals[name])
        for name in COUNTERS:
            with self.subTest(name=name):
                fam, value = found[f"brisk_{name}_total"]
                self.assertEqual(fam.type, "counter")
                self.assertEqual(fam.name, counters_named(name))
                self.assertEqual(value, totals[name])
        self.assertIn("brisk_rss_bytes", found)
        node_samples = [s for fam in families for s in fam.samples
                        if s.name == "brisk_node_in_use_bytes" and s.labels.get("pid") == str(self.pid)]
        self.assertEqual(sorted(int(s.labels["node"]) for s in node_samples),
                         sorted(n["os_node"] for n in self.stats["nodes"]))
        return found

    def test_2_exporter_openmetrics(self):
        status, ctype, body = self.exporter.get(accept=metrics_file.OPENMETRICS)
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "application/openmetrics-text; version=1.0.0; charset=utf-8")
        self.assertTrue(body.endswith("# EOF\n"))
        families = list(parse_om(body))
        found = self.check_families(families, lambda n: f"brisk_{n}")
        self.assertEqual(found["brisk_in_use_bytes"][0].unit, "bytes")

    def test_3_exporter_text_format(self):
        status, ctype, body = self.exporter.get()
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        self.assertNotIn("# EOF", body)
        self.check_families(list(parse_text(body)), lambda n: f"brisk_{n}")

    def test_4_exporter_refuses_other_requests(self):
        for path, method in (("/", "GET"), ("/metricsx", "GET"), ("/metrics", "POST"), ("/metrics/", "GET")):
            with self.subTest(path=path, method=method):
                status, _, body = self.exporter.get(path, method=method)
                self.assertEqual(status, 404)
        status, _, _ = self.exporter.get("/metrics?x=1")
        self.assertEqual(status, 200)

    def test_5_top_shows_the_numbers(self):
        out = subprocess.run([LAUNCHER, "top", "--dir", self.dir, "-n", "2", "-d", "0.2"], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        screens = out.stdout.split("\n\n")
        self.assertEqual(len(screens), 2, out.stdout)
        totals = self.stats["totals"]
        for i, screen in enumerate(screens):
            self.assertRegex(screen, r"^brisk top - \d\d:\d\d:\d\d - 1 process in ")
            lines = [ln for ln in screen.splitlines() if re.match(rf"\s*{self.pid} ", ln)]
            self.assertEqual(len(lines), 1, screen)
            cols = lines[0].split()
            head = screen.splitlines()[1].replace("IN USE", "IN_USE").split()
            row = dict(zip(head, cols))
            self.assertEqual(row["PROGRAM"], "metrics_probe")
            self.assertEqual(row["IN_USE"], human(totals["in_use"]))
            self.assertEqual(row["CACHED"], human(totals["tcache"] + totals["central"]))
            self.assertEqual(row["FREE"], human(totals["heap_free"]))
            self.assertEqual(row["RETURN"], human(totals["returned"]))
            # BRISK: the published resident figure (the probe is quiet: it holds still)
            _, rows = metrics_file.read(self.path)
            resident = {r["name"]: r["value"] for r in rows if r["node"] == -1}["resident"]
            self.assertEqual(row["BRISK"], human(resident))
            self.assertEqual(row["THR"], str(totals["threads"]))
            # Growth since the screen before: none in a quiet process; the first has none to show.
            self.assertEqual(row["GROWTH"], "-" if i == 0 else "0B")

    def test_6_stale_files_are_removed(self):
        gone = metrics_file.dead_pid()
        dead = os.path.join(self.dir, f"brisk.{gone}")
        metrics_file.write_fake(dead, self.path, pid=gone)
        half = os.path.join(self.dir, f".brisk.{gone}.tmp")
        metrics_file.write_fake(half, self.path, pid=gone)
        me = os.getpid()
        reused = os.path.join(self.dir, f"brisk.{me}")  # this pid, but not this process's start
        metrics_file.write_fake(reused, self.path, pid=me, start=metrics_file.start_ticks(me) + 1)
        _, _, body = self.exporter.get(accept=metrics_file.OPENMETRICS)
        for path in (dead, half, reused):
            self.assertFalse(os.path.exists(path), f"{path} was not removed")
        self.assertNotIn(f'pid="{gone}"', body)
        self.assertNotIn(f'pid="{me}"', body)
        self.assertIn(f'pid="{self.pid}"', body)
        self.assertTrue(os.path.exists(self.path))
        # Through top as well.
        metrics_file.write_fake(dead, self.path, pid=gone)
        out = subprocess.run([LAUNCHER, "top", "--dir", self.dir, "--once"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertFalse(os.path.exists(dead))
        self.assertNotIn(f" {gone} ", out.stdout)

    def test_7_silent_live_process_is_left_out_but_kept(self):
        me = os.getpid()
        quiet = os.path.join(self.dir, f"brisk.{me}")
        metrics_file.write_fake(quiet, self.path, pid=me, start=metrics_file.start_ticks(me),
                                updated_ms=int(time.time() * 1000) - 120_000)
        try:
            _, _, body = self.exporter.get(accept=metrics_file.OPENMETRICS)
            self.assertNotIn(f'pid="{me}"', body)
            self.assertTrue(os.path.exists(quiet))
        finally:
            os.unlink(quiet)

    def test_8_file_removed_at_exit(self):
        self.probe.stdin.close()
        self.assertEqual(self.probe.wait(timeout=30), 0)
        self.assertFalse(os.path.exists(self.path))
        _, _, body = self.exporter.get(accept=metrics_file.OPENMETRICS)
        self.assertEqual(body, "# EOF\n")

    def test_9_exporter_stops_on_sigterm(self):
        ex = metrics_file.Exporter(LAUNCHER, self.dir)
        ex.proc.send_signal(signal.SIGTERM)
        self.assertEqual(ex.proc.wait(timeout=10), 0)
        ex.proc.stdout.close()


class WithoutPurgeThread(unittest.TestCase):
    def test_purge_thread_off_publishes_nothing_and_says_so(self):
        with tempfile.TemporaryDirectory(prefix="brisk-metrics.") as d:
            env = dict(os.environ, BRISK_METRICS=d, BRISK_PURGE_THREAD="0")
            out = subprocess.run([PROBE, "--brief"], env=env, capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("BRISK_METRICS is written by the purge thread", out.stderr)
            self.assertEqual(os.listdir(d), [])

    def test_forked_children_publish_their_own_file(self):
        with tempfile.TemporaryDirectory(prefix="brisk-metrics.") as d:
            env = dict(os.environ, BRISK_METRICS=d)
            out = subprocess.run([PROBE, "--fork"], env=env, capture_output=True, text=True, timeout=60)
            self.assertEqual((out.returncode, out.stdout), (0, "FORK OK\n"), out.stderr)
            self.assertEqual(os.listdir(d), [])

    def test_unwritable_directory_warns(self):
        env = dict(os.environ, BRISK_METRICS="/nonexistent/brisk-metrics")
        out = subprocess.run([PROBE, "--brief"], env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("BRISK_METRICS: cannot make '/nonexistent/brisk-metrics/brisk.", out.stderr)

    def test_usage_errors(self):
        for args in (["top"], ["top", "-d", "x", "--dir", "/tmp"], ["exporter", "--dir", "/tmp"],
                     ["exporter", "--listen", "localhost", "--dir", "/tmp"]):
            with self.subTest(args=args):
                env = {k: v for k, v in os.environ.items() if k != "BRISK_METRICS"}
                out = subprocess.run([LAUNCHER] + args, env=env, capture_output=True, text=True, timeout=30)
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertTrue(out.stderr.startswith("brisk: "), out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
