#!/usr/bin/env python3
"""Tests of tools/bench_report.py, the report and verification half of tools/compare.sh.

data/ holds runs in Google Benchmark 1.7 JSON as compare.sh writes them: two allocators,
a benchmark at two thread counts with three repetitions each, a micro benchmark with
two, and outliers placed so that a mean or the wrong repetition gives another table.
expected_report.md is that table, checked by hand (medians, ratios, geometric means);
its header comes from the fixtures' context, so the comparison is byte for byte.

Run by ctest (tests/tools.cmake) or directly: python3 tests/tools/test_bench_report.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOOL = os.path.join(ROOT, "tools", "bench_report.py")
DATA = os.path.join(HERE, "data")


def run_tool(*args, env=None):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          env=env)


class ReportTable(unittest.TestCase):
    def test_table_is_the_expected_markdown(self):
        r = run_tool("report", DATA)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(HERE, "expected_report.md"), encoding="utf-8") as f:
            expected = f.read()
        self.assertEqual(r.stdout, expected)

    def test_file_order_does_not_change_the_table(self):
        files = sorted(os.path.join(DATA, f) for f in os.listdir(DATA))
        a = run_tool("report", *files)
        b = run_tool("report", *reversed(files))
        self.assertEqual(a.returncode, 0, a.stderr)
        self.assertEqual(a.stdout, b.stdout)

    def test_untagged_file_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            doc = load(os.path.join(DATA, "glibc.r0.micro_pair_64.json"))
            del doc["context"]["bench_allocator"]
            path = write(tmp, "untagged.json", doc)
            r = run_tool("report", path)
            self.assertEqual(r.returncode, 1)
            self.assertIn("no bench_allocator", r.stderr)

    def test_a_failed_repetition_makes_the_cell_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            for f in os.listdir(DATA):
                shutil.copy(os.path.join(DATA, f), tmp)
            doc = load(os.path.join(tmp, "glibc.r1.micro_pair_64.json"))
            b = doc["benchmarks"][0]
            for key in ("items_per_second", "peak_rss_mib"):
                del b[key]
            b.update(error_occurred=True, error_message="misaligned block")
            write(tmp, "glibc.r1.micro_pair_64.json", doc)
            r = run_tool("report", tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("| micro/pair/64 | 1 | **205** | error | **2.2** | error | - | - |",
                      r.stdout)
        self.assertIn("- micro/pair/64, 1 thread, glibc: misaligned block (1 of 2 runs)",
                      r.stdout)
        # The geometric means keep to the rows every allocator ran.
        self.assertIn("| geometric mean | 2 rows |", r.stdout)

    def test_brisks_lock_counts_get_a_table_of_medians(self):
        with tempfile.TemporaryDirectory() as tmp:
            for f in os.listdir(DATA):
                shutil.copy(os.path.join(DATA, f), tmp)
            for rep, (locks, contended) in enumerate([(900, 2), (1500, 9), (1100, 4)]):
                name = f"brisk.r{rep}.scal_threadtest_real_time_threads2.json"
                doc = load(os.path.join(tmp, name))
                doc["benchmarks"][0].update(locks_per_Mop=locks, contended_per_Mop=contended)
                write(tmp, name, doc)
            r = run_tool("report", tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("brisk's lock acquisitions per million operations", r.stdout)
        self.assertIn("| scal/threadtest | 1,100 (4) |", r.stdout)

    def test_rss_counters_get_their_own_table_of_medians(self):
        with tempfile.TemporaryDirectory() as tmp:
            for f in os.listdir(DATA):
                shutil.copy(os.path.join(DATA, f), tmp)
            # brisk's three repetitions of one row report 30, 10, 20 MiB after idling
            # (median 20), glibc's two 50 and 70 (median 60).
            for alloc, values in (("brisk", (30, 10, 20)), ("glibc", (50, 70))):
                for rep, v in enumerate(values):
                    name = f"{alloc}.r{rep}.scal_threadtest_real_time_threads2.json"
                    doc = load(os.path.join(tmp, name))
                    doc["benchmarks"][0]["rss_idle_mib"] = v
                    write(tmp, name, doc)
            r = run_tool("report", tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("| benchmark | threads | figure | brisk MiB | glibc MiB | brisk/best MiB |",
                      r.stdout)
        self.assertIn("| scal/threadtest | 2 | rss_idle_mib | **20.0** | 60.0 | 0.33 |", r.stdout)
        # Rows without the counter are not in the second table.
        self.assertNotIn("| scal/threadtest | 1 | rss_idle_mib |", r.stdout)

    def test_plots_are_pngs_or_a_clear_message(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "report.md")
            r = run_tool("report", "-o", out, "--plots", os.path.join(tmp, "plots"), DATA)
            self.assertEqual(r.returncode, 0, r.stderr)
            if shutil.which("gnuplot") is None:
                self.assertIn("gnuplot is not installed", r.stderr)
                return
            for name in ("scal_threadtest.png", "scal_threadtest-rss.png"):
                with open(os.path.join(tmp, "plots", name), "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            # Only the benchmark run at several thread counts gets a plot.
            self.assertFalse(os.path.exists(os.path.join(tmp, "plots", "micro_pair_64.png")))
            with open(out, encoding="utf-8") as f:
                self.assertIn("(plots/scal_threadtest.png)", f.read())

    def test_without_gnuplot_the_table_is_still_written(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "report.md")
            empty = os.path.join(tmp, "bin")
            os.mkdir(empty)
            r = run_tool("report", "-o", out, "--plots", os.path.join(tmp, "plots"), DATA,
                         env=dict(os.environ, PATH=empty))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("gnuplot is not installed, so no plots were written", r.stderr)
            with open(out, encoding="utf-8") as f:
                text = f.read()
            self.assertIn("| scal/threadtest | 2 |", text)
            self.assertNotIn("Plots", text)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write(directory, name, doc):
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    return path


class AllocatorCheck(unittest.TestCase):
    """compare.sh keeps a run only if `check` accepts it."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        # A library file and a symlink to it: LD_PRELOAD may name either.
        self.lib = os.path.join(self.tmp, "libbrisk.so.0")
        open(self.lib, "w").close()
        self.link = os.path.join(self.tmp, "libbrisk.so")
        os.symlink(self.lib, self.link)
        self.other = os.path.join(self.tmp, "libjemalloc.so.2")
        open(self.other, "w").close()
        # What brisk writes at exit with BRISK_STATS=json (from tests/stats/stats_json_probe).
        self.stats = os.path.join(self.tmp, "run.stats.json")
        shutil.copy(os.path.join(HERE, "brisk.stats.json"), self.stats)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def run_json(self, allocator, provider, **bench_changes):
        doc = load(os.path.join(DATA, "brisk.r0.micro_pair_64.json"))
        doc["context"]["bench_allocator"] = allocator
        doc["context"]["malloc_provider"] = provider
        doc["benchmarks"][0].update(bench_changes)
        return write(self.tmp, "run.json", doc)

    def check(self, path, allocator, lib, stats=None):
        args = ["check", "--allocator", allocator, "--lib", lib, path]
        if stats:
            args[1:1] = ["--stats", stats]
        return run_tool(*args)

    def test_accepts_the_intended_library_through_a_symlink(self):
        r = self.check(self.run_json("brisk", self.link), "brisk", self.lib, self.stats)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_rejects_a_run_served_by_another_library(self):
        r = self.check(self.run_json("brisk", self.other), "brisk", self.lib, self.stats)
        self.assertEqual(r.returncode, 1)
        self.assertIn("malloc came from " + self.other, r.stderr)

    def test_rejects_glibc_when_a_preload_was_asked_for(self):
        path = self.run_json("jemalloc", "/lib/x86_64-linux-gnu/libc.so.6")
        r = self.check(path, "jemalloc", self.other)
        self.assertEqual(r.returncode, 1)
        self.assertIn("malloc came from", r.stderr)

    def test_glibc_run_must_be_served_by_libc(self):
        ok = self.check(self.run_json("glibc", "/lib/x86_64-linux-gnu/libc.so.6"), "glibc", "")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        bad = self.check(self.run_json("glibc", self.other), "glibc", "")
        self.assertEqual(bad.returncode, 1)

    def test_rejects_a_file_tagged_with_another_allocator(self):
        r = self.check(self.run_json("glibc", self.lib), "brisk", self.lib, self.stats)
        self.assertEqual(r.returncode, 1)
        self.assertIn("tagged bench_allocator=glibc", r.stderr)

    def test_brisk_run_needs_brisks_exit_statistics(self):
        missing = os.path.join(self.tmp, "never-written.stats.json")
        r = self.check(self.run_json("brisk", self.lib), "brisk", self.lib, missing)
        self.assertEqual(r.returncode, 1)
        self.assertIn("brisk wrote no statistics at exit", r.stderr)
        r = self.check(self.run_json("brisk", self.lib), "brisk", self.lib)
        self.assertEqual(r.returncode, 1)
        self.assertIn("needs its statistics file", r.stderr)

    def test_brisk_statistics_must_be_brisks_and_show_service(self):
        doc = load(self.stats)
        cases = [("cut.stats.json", None, "not one JSON document"),
                 ("other.stats.json", dict(doc, allocator="jemalloc"), "is not brisk's statistics"),
                 ("newer.stats.json", dict(doc, schema=2), "has schema 2"),
                 ("idle.stats.json", dict(doc, totals=dict(doc["totals"], mapped=0)),
                  "show no memory mapped")]
        for name, content, why in cases:
            path = os.path.join(self.tmp, name)
            with open(path, "w") as f:
                if content is None:
                    f.write(json.dumps(doc)[:40])
                else:
                    json.dump(content, f)
            r = self.check(self.run_json("brisk", self.lib), "brisk", self.lib, path)
            self.assertEqual(r.returncode, 1, name)
            self.assertIn(why, r.stderr)

    def test_report_skips_statistics_beside_the_runs(self):
        runs = os.path.join(self.tmp, "runs")
        os.mkdir(runs)
        shutil.copy(os.path.join(DATA, "brisk.r0.micro_pair_64.json"), runs)
        shutil.copy(self.stats, os.path.join(runs, "brisk.r0.micro_pair_64.stats.json"))
        r = run_tool("report", runs)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_a_benchmark_error_is_kept_and_reported(self):
        # The allocator served the run; the benchmark caught it misbehaving: that is a
        # result for the table, not a reason to stop.
        path = self.run_json("brisk", self.lib, error_occurred=True, error_message="oom")
        r = self.check(path, "brisk", self.lib, self.stats)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("failed its own check: oom", r.stderr)

    def test_rejects_a_run_without_peak_rss(self):
        doc = load(os.path.join(DATA, "brisk.r0.micro_pair_64.json"))
        doc["context"]["malloc_provider"] = self.lib
        del doc["benchmarks"][0]["peak_rss_mib"]
        r = self.check(write(self.tmp, "norss.json", doc), "brisk", self.lib, self.stats)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no peak_rss_mib", r.stderr)

    def test_one_bad_run_fails_a_check_list(self):
        # The runner checks a round of runs in one process.
        good = self.run_json("glibc", "/lib/x86_64-linux-gnu/libc.so.6")
        bad_doc = load(good)
        bad_doc["context"]["malloc_provider"] = self.other
        bad = write(self.tmp, "bad.json", bad_doc)
        listing = os.path.join(self.tmp, "list")
        with open(listing, "w") as f:
            f.write(f"glibc\t\t{good}\t\n")
        self.assertEqual(run_tool("check", "--list", listing).returncode, 0)
        with open(listing, "a") as f:
            f.write(f"glibc\t\t{bad}\t\n")
        r = run_tool("check", "--list", listing)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.json", r.stderr)


class Instructions(unittest.TestCase):
    """tools/callgrind.sh's arithmetic: (Ir(N2) - Ir(N1)) / ((N2 - N1) x items)."""

    def test_items_per_iteration_prefers_the_shims_counter(self):
        with tempfile.TemporaryDirectory() as tmp:
            doc = load(os.path.join(DATA, "brisk.r0.micro_pair_64.json"))
            doc["benchmarks"][0]["items_per_iter"] = 1000.0
            r = run_tool("items-per-iteration", write(tmp, "batch.json", doc))
        self.assertEqual((r.returncode, r.stdout), (0, "micro/pair/64 1000\n"), r.stderr)

    def test_items_per_iteration_from_rate_and_time(self):
        r = run_tool("items-per-iteration", os.path.join(DATA, "brisk.r0.micro_pair_64.json"))
        self.assertEqual((r.returncode, r.stdout), (0, "micro/pair/64 1\n"), r.stderr)

    def test_table(self):
        with tempfile.TemporaryDirectory() as tmp:
            def cg(name, total):
                path = os.path.join(tmp, name)
                with open(path, "w") as f:
                    f.write(f"events: Ir\nfl=x\n0 1\ntotals: {total}\n")
                return path
            ok = os.path.join(DATA, "brisk.r0.micro_pair_64.json")
            rows = [("micro/empty", "brisk", 100, cg("e1", 0), 300, cg("e2", 2000), 1),
                    ("micro/empty", "mimalloc", 100, cg("f1", 0), 300, cg("f2", 2000), 1),
                    ("micro/pair/16", "brisk", 100, cg("a1", 1000), 300, cg("a2", 21000), 1),
                    ("micro/pair/16", "mimalloc", 100, cg("b1", 500), 300, cg("b2", 10500), 1),
                    ("micro/batch/10", "brisk", 10, cg("c1", 0), 30, cg("c2", 4000), 10),
                    ("micro/batch/10", "mimalloc", 10, cg("d1", 0), 30, cg("d2", 8000), 10)]
            listing = os.path.join(tmp, "rows")
            with open(listing, "w") as f:
                for row in rows:
                    f.write("\t".join(map(str, row + (ok, ok))) + "\n")
            r = run_tool("instructions", listing)
        self.assertEqual(r.returncode, 0, r.stderr)
        table = [line for line in r.stdout.splitlines() if line.startswith("| ")]
        self.assertEqual(table, [
            "| benchmark | N1 | N2 | items/iteration | brisk | mimalloc |",
            # The loop alone: first, and in neither the ratios nor the means.
            "| micro/empty | 100 | 300 | 1 | 10.0 | 10.0 |",
            "| micro/batch/10 | 10 | 30 | 10 | **20.0 (0.50)** | 40.0 (1.00) |",
            "| micro/pair/16 | 100 | 300 | 1 | 100.0 (2.00) | **50.0 (1.00)** |",
            "| geometric mean (2 rows) | | | | 44.7 (1.00) | 44.7 (1.00) |",
        ])


if __name__ == "__main__":
    unittest.main()
