#!/usr/bin/env python3
"""bench_report.py: Google Benchmark JSON from tools/compare.sh -> Markdown and plots.

The runner writes one JSON file per (benchmark instance, allocator, repetition) and
tags each in Google Benchmark's own context (--benchmark_context=bench_allocator=...,
bench_rep=..., bench_mode=...), so a file says by itself what it measured; file names
carry no meaning here. Two commands:

  report [-o FILE] [--plots DIR] PATH...   the table: per instance, each allocator's
      median throughput (Mops/s) and peak RSS (MiB), brisk's ratio to the best other
      allocator, a geometric-mean row; PNG plots (gnuplot) of throughput and RSS
      against threads for every benchmark run at several thread counts.
  check --allocator NAME --lib PATH [--stats FILE] JSON   exit 1 unless the run was
      served by the allocator it was meant to measure (see check_run).
  check --list FILE   the same for every line "allocator<TAB>lib<TAB>json<TAB>stats"
      of FILE, in one process (the runner checks each round of runs this way).
  items-per-iteration JSON   "name items" per benchmark of a fixed-iteration run.
  instructions FILE   the Markdown table of tools/callgrind.sh from its lines
      "benchmark allocator N1 callgrind-file-1 N2 callgrind-file-2 items-per-iteration
      json-file-1 json-file-2" (a run whose benchmark reported an error shows "error").

Only the Python standard library is used.
"""

import argparse
import glob
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys

# Columns come in this order; allocators not listed here follow alphabetically.
KNOWN_ORDER = ["brisk", "glibc", "jemalloc", "tcmalloc", "mimalloc"]
# One colour per allocator in every plot; brisk's line is also drawn thicker.
COLOURS = {"brisk": "#c0001a", "glibc": "#707070", "jemalloc": "#1f5fbf",
           "tcmalloc": "#2e9a2e", "mimalloc": "#e08000"}
SUBJECT = "brisk"


class ReportError(Exception):
    pass


# --- reading -------------------------------------------------------------------------


# brisk's statistics of a run (BRISK_STATS_FILE) sit beside its JSON under this suffix.
STATS_SUFFIX = ".stats.json"


def json_files(paths):
    """Every *.json under the given directories, plus the files given directly; in
    directories, not brisk's statistics beside the runs (*.stats.json, see check)."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(f for f in glob.glob(os.path.join(p, "**", "*.json"), recursive=True)
                            if not f.endswith(STATS_SUFFIX))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise ReportError(f"{p}: no such file or directory")
    if not files:
        raise ReportError("no JSON files in " + " ".join(paths))
    return files


def load_run(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: not a Google Benchmark JSON file ({e})")
    if not isinstance(doc, dict) or "context" not in doc or "benchmarks" not in doc:
        raise ReportError(f"{path}: not a Google Benchmark JSON file (no context/benchmarks)")
    return doc


def iterations(doc, path):
    """The per-run entries (aggregates such as _median are left out). An entry that
    reports an error (the benchmark's own check failed, e.g. a misaligned block) is
    kept, marked error_occurred: it is shown as an error, never as a number."""
    runs = []
    for b in doc["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration":
            continue
        if not b.get("error_occurred"):
            for key in ("items_per_second", "peak_rss_mib"):
                if key not in b:
                    raise ReportError(f"{path}: {b.get('name')} reports no {key}")
        runs.append(b)
    if not runs:
        raise ReportError(f"{path}: no benchmark ran (wrong filter?)")
    return runs


def split_name(name):
    """('scal/threadtest', 4) from 'scal/threadtest/real_time/threads:4'. The real_time
    and iterations:N markers say how GB timed it, not what ran: the table leaves
    them out."""
    parts = name.split("/")
    threads = None
    kept = []
    for p in parts:
        m = re.fullmatch(r"threads:(\d+)", p)
        if m:
            threads = int(m.group(1))
        elif p not in ("real_time", "process_time", "manual_time") and \
                not re.fullmatch(r"iterations:\d+", p):
            kept.append(p)
    return "/".join(kept), threads


def natural_key(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def allocator_order(names):
    known = [a for a in KNOWN_ORDER if a in names]
    return known + sorted(n for n in names if n not in KNOWN_ORDER)


class Results:
    """Samples per (benchmark, threads) and allocator, and what the runs say about the
    machine and the mode."""

    def __init__(self):
        self.samples = {}  # (bench, threads) -> allocator -> [(items/s, MiB)]
        self.errors = {}  # (bench, threads) -> allocator -> [error message]
        self.allocators = set()
        self.reps = set()
        self.modes = set()
        self.min_times = set()
        self.dates = []
        self.cores = set()
        self.cpus = set()
        self.versions = {}  # allocator -> {version}
        self.locks = {}  # (bench, threads) -> [(locks, contended) per million items], brisk's
        # (bench, threads) -> counter -> allocator -> [MiB]: the RSS figures a
        # benchmark reports besides its peak (scal/bulk_free's RSS after idling)
        self.rss_counters = {}

    def add_file(self, path):
        doc = load_run(path)
        ctx = doc["context"]
        alloc = ctx.get("bench_allocator")
        if not alloc:
            raise ReportError(f"{path}: no bench_allocator in the context "
                              "(not written by tools/compare.sh)")
        self.allocators.add(alloc)
        if ctx.get("bench_version"):
            self.versions.setdefault(alloc, set()).add(ctx["bench_version"])
        self.reps.add(str(ctx.get("bench_rep", "?")))
        if ctx.get("bench_mode"):
            self.modes.add(ctx["bench_mode"])
        if ctx.get("bench_min_time"):
            self.min_times.add(ctx["bench_min_time"])
        if ctx.get("date"):
            self.dates.append(ctx["date"])
        if "num_cpus" in ctx:
            self.cores.add(str(ctx["num_cpus"]))
        cpu = ctx.get("cpu_model") or ctx.get("model_name")
        if cpu:
            self.cpus.add(cpu)
        for b in iterations(doc, path):
            bench, threads = split_name(b["name"])
            if threads is None:
                threads = int(b.get("threads", 1))
            row = self.samples.setdefault((bench, threads), {})
            if b.get("error_occurred"):
                self.errors.setdefault((bench, threads), {}).setdefault(alloc, []).append(
                    b.get("error_message") or "no message")
                continue
            row.setdefault(alloc, []).append(
                (float(b["items_per_second"]), float(b["peak_rss_mib"])))
            if alloc == SUBJECT and "locks_per_Mop" in b:
                self.locks.setdefault((bench, threads), []).append(
                    (float(b["locks_per_Mop"]), float(b.get("contended_per_Mop", 0))))
            for name, value in b.items():
                if name.startswith("rss_") and name.endswith("_mib"):
                    self.rss_counters.setdefault((bench, threads), {}).setdefault(
                        name, {}).setdefault(alloc, []).append(float(value))

    def rows(self):
        # The scalability families first: they are what the comparison is about.
        return sorted(self.samples, key=lambda k: (not k[0].startswith("scal/"),
                                                   natural_key(k[0]), k[1]))

    def failed(self, key, alloc):
        return bool(self.errors.get(key, {}).get(alloc))

    def medians(self, key, alloc):
        """Median throughput (Mops/s) and peak RSS (MiB); None when the allocator did
        not run the instance, or failed the benchmark's check in any repetition (its
        other repetitions measured a broken allocator)."""
        cell = self.samples[key].get(alloc)
        if not cell or self.failed(key, alloc):
            return None
        return (statistics.median(s[0] for s in cell) / 1e6,
                statistics.median(s[1] for s in cell))


# --- the table -----------------------------------------------------------------------


def fmt_mops(v):
    if v is None:
        return "-"
    if v < 1:  # three significant digits: large-block rows run at thousands per second
        return f"{v:.3g}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_mib(v):
    return "-" if v is None else f"{v:.1f}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}"


def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def best_other(meds, allocs, index, pick):
    """The best value among the allocators other than brisk, and whose it is."""
    others = [(meds[a][index], a) for a in allocs if a != SUBJECT and meds[a] is not None]
    if not others:
        return None, None
    return pick(others)


def mark(text, is_best):
    return f"**{text}**" if is_best else text


def header_lines(res):
    dates = sorted(res.dates)
    when = "unknown date"
    if dates:
        when = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    cores = "/".join(sorted(res.cores)) or "?"
    cpu = "; ".join(sorted(res.cpus)) or "CPU model not reported"
    reps = len(res.reps)
    mode = ", ".join(sorted(res.modes)) or "unknown"
    min_time = (", min time " + "/".join(sorted(res.min_times)) + " s") if res.min_times else ""
    lines = [
        f"Machine: {cores} cores, {cpu}. Runs: {when}.",
        f"Mode: {mode}; {reps} repetition{'s' if reps != 1 else ''}, median of each"
        f"{min_time}; one process per benchmark instance, allocator and repetition.",
    ]
    if res.versions:
        lines.append("Versions: " + ", ".join(
            f"{a} {'/'.join(sorted(res.versions[a]))}"
            for a in allocator_order(res.versions)) + ".")
    return lines


def render(res):
    allocs = allocator_order(res.allocators)
    has_subject = SUBJECT in allocs and len(allocs) > 1
    out = header_lines(res)
    out.append("")
    out.append("Throughput in Mops/s (higher is better) and peak RSS in MiB (lower is "
               "better); the best in each row is bold.")
    if has_subject:
        out.append("The last two columns divide brisk's median by the best other "
                   "allocator's: throughput above 1 and RSS below 1 favour brisk.")
    out.append("")
    head = ["benchmark", "threads"] + [f"{a} Mops/s" for a in allocs] + \
        [f"{a} MiB" for a in allocs]
    if has_subject:
        head += ["brisk/best Mops/s", "brisk/best MiB"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|---|---:|" + "---:|" * (len(head) - 2))

    per_alloc_tp = {a: [] for a in allocs}
    per_alloc_rss = {a: [] for a in allocs}
    tp_ratios, rss_ratios = [], []
    behind, heavier = [], []
    complete = 0
    for key in res.rows():
        bench, threads = key
        meds = {a: res.medians(key, a) for a in allocs}
        present = [a for a in allocs if meds[a] is not None]
        top_tp = max((meds[a][0] for a in present), default=None)
        low_rss = min((meds[a][1] for a in present), default=None)

        def cell(a, index, fmt, best):
            if meds[a] is not None:
                return mark(fmt(meds[a][index]), meds[a][index] == best)
            return "error" if res.failed(key, a) else "-"
        cells = [bench, str(threads)]
        cells += [cell(a, 0, fmt_mops, top_tp) for a in allocs]
        cells += [cell(a, 1, fmt_mib, low_rss) for a in allocs]
        if has_subject:
            tp_ratio = rss_ratio = None
            if meds[SUBJECT] is not None:
                bt, bt_who = best_other(meds, allocs, 0, max)
                br, br_who = best_other(meds, allocs, 1, min)
                if bt:
                    tp_ratio = meds[SUBJECT][0] / bt
                    if tp_ratio < 1:
                        behind.append((tp_ratio, bench, threads, bt_who))
                if br:
                    rss_ratio = meds[SUBJECT][1] / br
                    if rss_ratio > 1:
                        heavier.append((rss_ratio, bench, threads, br_who))
            tp_ratios.append(tp_ratio)
            rss_ratios.append(rss_ratio)
            cells += [fmt_ratio(tp_ratio), fmt_ratio(rss_ratio)]
        out.append("| " + " | ".join(cells) + " |")
        if len(present) == len(allocs):
            complete += 1
            for a in allocs:
                per_alloc_tp[a].append(meds[a][0])
                per_alloc_rss[a].append(meds[a][1])

    # Per-allocator means only over the rows every allocator ran, so that the
    # columns compare like with like; the ratio means use every row that has one.
    cells = ["geometric mean", f"{complete} rows"]
    cells += [fmt_mops(geomean(per_alloc_tp[a])) for a in allocs]
    cells += [fmt_mib(geomean(per_alloc_rss[a])) for a in allocs]
    if has_subject:
        cells += [fmt_ratio(geomean(tp_ratios)), fmt_ratio(geomean(rss_ratios))]
    out.append("| " + " | ".join(cells) + " |")

    if has_subject:
        ranked = [r for r in tp_ratios if r is not None]
        weighed = [r for r in rss_ratios if r is not None]
        out.append("")
        out.append(f"brisk has the highest throughput in {sum(r >= 1 for r in ranked)} of "
                   f"{len(ranked)} rows and the smallest peak RSS in "
                   f"{sum(r <= 1 for r in weighed)} of {len(weighed)}.")
        if behind:
            out.append("")
            out.append("Slower than the best other allocator:")
            for ratio, bench, threads, who in sorted(behind):
                out.append(f"- {bench}, {threads} thread{'s' if threads != 1 else ''}: "
                           f"{ratio:.2f} of {who}")
        if heavier:
            out.append("")
            out.append("More peak RSS than the leanest other allocator:")
            for ratio, bench, threads, who in sorted(heavier, reverse=True):
                out.append(f"- {bench}, {threads} thread{'s' if threads != 1 else ''}: "
                           f"{ratio:.2f}x {who}")
    out += render_rss_counters(res, allocs)
    if res.errors:
        out.append("")
        out.append("Failed the benchmark's own check (shown as error, not counted):")
        for key in res.rows():
            bench, threads = key
            for a in allocs:
                msgs = res.errors.get(key, {}).get(a)
                if msgs:
                    runs = len(msgs) + len(res.samples[key].get(a, []))
                    out.append(f"- {bench}, {threads} thread{'s' if threads != 1 else ''}, "
                               f"{a}: {'; '.join(sorted(set(msgs)))} "
                               f"({len(msgs)} of {runs} runs)")
    out += render_locks(res)
    return "\n".join(out) + "\n"


def render_locks(res):
    """brisk's lock acquisitions per million operations, medians, the contended ones
    in brackets: one row per benchmark, one column per thread count. Figures that do
    not depend on the core count (the shim reads them from brisk_get_stats)."""
    if not res.locks:
        return []
    benches = sorted({b for b, _ in res.locks}, key=natural_key)
    threads = sorted({t for _, t in res.locks})
    out = ["", "brisk's lock acquisitions per million operations (medians; contended "
           "ones in brackets):", "",
           "| benchmark | " + " | ".join(f"{t} thr" for t in threads) + " |",
           "|---|" + "---:|" * len(threads)]
    for bench in benches:
        cells = []
        for t in threads:
            cell = res.locks.get((bench, t))
            if not cell:
                cells.append("-")
                continue
            acq = statistics.median(c[0] for c in cell)
            con = statistics.median(c[1] for c in cell)
            cells.append(f"{acq:,.0f} ({con:,.0f})")
        out.append(f"| {bench} | " + " | ".join(cells) + " |")
    return out


def render_rss_counters(res, allocs):
    """Lines of a second table for the RSS figures that benchmarks report besides
    the peak (counters rss_*_mib): medians per allocator, the leanest bold, and
    brisk over the leanest other allocator. Empty when no run reported one."""
    if not res.rss_counters:
        return []
    has_subject = SUBJECT in allocs and len(allocs) > 1
    out = ["", "Other RSS figures in MiB (lower is better; the leanest in each row is "
           "bold): rss_idle_mib is RSS 0.5 s into idleness, rss_burst_mib after a short "
           "burst of activity that follows it.", ""]
    head = ["benchmark", "threads", "figure"] + [f"{a} MiB" for a in allocs]
    if has_subject:
        head.append("brisk/best MiB")
    out.append("| " + " | ".join(head) + " |")
    out.append("|---|---:|---|" + "---:|" * (len(head) - 3))
    for key in sorted(res.rss_counters, key=lambda k: (natural_key(k[0]), k[1])):
        for name in sorted(res.rss_counters[key]):
            by_alloc = res.rss_counters[key][name]
            meds = {a: statistics.median(by_alloc[a]) if by_alloc.get(a) and
                    not res.failed(key, a) else None for a in allocs}
            present = [meds[a] for a in allocs if meds[a] is not None]
            low = min(present, default=None)
            cells = [key[0], str(key[1]), name]
            cells += [mark(fmt_mib(meds[a]), meds[a] == low) if meds[a] is not None
                      else "-" for a in allocs]
            if has_subject:
                others = [meds[a] for a in allocs if a != SUBJECT and meds[a] is not None]
                ratio = None
                if meds[SUBJECT] is not None and others and min(others) > 0:
                    ratio = meds[SUBJECT] / min(others)
                cells.append(fmt_ratio(ratio))
            out.append("| " + " | ".join(cells) + " |")
    return out


# --- plots ---------------------------------------------------------------------------


def slug(name):
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def gp_quote(s):
    return "'" + s.replace("'", "''") + "'"


def plot(res, plot_dir):
    """One PNG of throughput and one of peak RSS against threads per benchmark that ran
    at several thread counts. Returns [(benchmark, throughput png, rss png)]; empty,
    with a message, when gnuplot is missing."""
    families = {}
    for bench, threads in res.rows():
        families.setdefault(bench, []).append(threads)
    families = {b: t for b, t in families.items() if len(t) > 1}
    if not families:
        return []
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("bench_report: gnuplot is not installed, so no plots were written "
              "(apt-get install gnuplot-nox, or run tools/compare.sh as root)",
              file=sys.stderr)
        return []
    os.makedirs(plot_dir, exist_ok=True)
    allocs = allocator_order(res.allocators)
    made = []
    for bench, threads in families.items():
        base = os.path.join(plot_dir, slug(bench))
        with open(base + ".dat", "w", encoding="utf-8") as f:
            f.write("threads " + " ".join(allocs) + "\n")
            for t in threads:
                meds = [res.medians((bench, t), a) for a in allocs]
                f.write(f"{t} " + " ".join(f"{m[0]:.6g} {m[1]:.6g}" if m else "? ?"
                                          for m in meds) + "\n")
        script = []
        for what, col, label, png in (("throughput", 0, "Mops/s", base + ".png"),
                                      ("peak RSS", 1, "MiB", base + "-rss.png")):
            lines = ", ".join(
                f"{gp_quote(base + '.dat')} using 1:{2 + 2 * i + col} with linespoints "
                f"lw {3 if a == SUBJECT else 1.5} pt 7 ps 0.6 "
                + (f"lc rgb {gp_quote(COLOURS[a])} " if a in COLOURS else "")
                + f"title {gp_quote(a)}" for i, a in enumerate(allocs))
            cores = "/".join(sorted(res.cores))
            title = f"{bench}: {what}" + (f" ({cores} cores)" if cores else "")
            script += [
                "set terminal pngcairo size 640,400 font ',9'",
                f"set output {gp_quote(png)}",
                f"set title {gp_quote(title)} noenhanced",
                "set xlabel 'threads'",
                f"set ylabel {gp_quote(label)}",
                "set logscale x 2",
                "set yrange [0:*]",
                "set grid",
                "set key outside right",
                "set datafile missing '?'",
                "set style data linespoints",
                f"plot {lines}",
                "unset output",
            ]
        with open(base + ".gp", "w", encoding="utf-8") as f:
            f.write("\n".join(script) + "\n")
        r = subprocess.run([gnuplot, base + ".gp"], capture_output=True, text=True)
        if r.returncode != 0:
            raise ReportError(f"gnuplot failed on {base}.gp: {r.stderr.strip()}")
        os.remove(base + ".gp")
        made.append((bench, base + ".png", base + "-rss.png"))
    return made


# --- verification --------------------------------------------------------------------


def check_brisk_stats(path, stats_path):
    """Raise ReportError unless `stats_path` holds the JSON statistics that brisk
    writes at exit with BRISK_STATS=json BRISK_STATS_FILE=... (docs/stats-schema.md),
    from a brisk that served allocations: only an initialized brisk writes them."""
    try:
        with open(stats_path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ReportError(f"{path}: brisk wrote no statistics at exit ({e.strerror}: "
                          f"{stats_path}): it did not serve this run") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: brisk's statistics ({stats_path}) are not one JSON "
                          f"document: {e}") from None
    if not isinstance(doc, dict) or doc.get("allocator") != "brisk" or \
            not isinstance(doc.get("schema"), int):
        raise ReportError(f"{path}: {stats_path} is not brisk's statistics")
    if doc["schema"] != 1:
        raise ReportError(f"{path}: {stats_path} has schema {doc['schema']}; this tool reads 1")
    totals = doc.get("totals", {})
    if not totals.get("mapped") or not totals.get("threads_seen"):
        raise ReportError(f"{path}: brisk's statistics ({stats_path}) show no memory mapped "
                          f"or no thread served: it did not serve this run")


def check_run(path, allocator, lib, stats_path=None):
    """Raise ReportError unless JSON file `path` is a clean run of `allocator`:
    tagged with it, its malloc_provider is `lib` (same file after symlinks; with lib
    empty, glibc's libc.so), a benchmark ran (one that reported an error counts: the
    table shows the error); for brisk, also the JSON statistics that brisk writes
    at exit (check_brisk_stats)."""
    doc = load_run(path)
    ctx = doc["context"]
    tag = ctx.get("bench_allocator")
    if tag != allocator:
        raise ReportError(f"{path}: tagged bench_allocator={tag}, expected {allocator}")
    provider = ctx.get("malloc_provider")
    if not provider:
        raise ReportError(f"{path}: no malloc_provider in the context")
    if lib:
        if not os.path.exists(provider) or \
                os.path.realpath(provider) != os.path.realpath(lib):
            raise ReportError(f"{path}: asked for {allocator} ({lib}) but malloc came "
                              f"from {provider}")
    elif not re.fullmatch(r"libc(\.so\.\d+|-[\d.]+\.so)", os.path.basename(provider)):
        raise ReportError(f"{path}: asked for {allocator} (no preload) but malloc came "
                          f"from {provider}")
    for b in iterations(doc, path):
        if b.get("error_occurred"):
            print(f"note: {b['name']} under {allocator} failed its own check: "
                  f"{b.get('error_message')} (the table shows it as an error)", file=sys.stderr)
    if allocator == SUBJECT:
        if stats_path is None:
            raise ReportError(f"{path}: a brisk run needs its statistics file (--stats) "
                              f"to check")
        check_brisk_stats(path, stats_path)


# --- instruction counts (tools/callgrind.sh) ------------------------------------------


def base_name(name):
    """The name without the iterations:N segment that a fixed iteration count adds."""
    return "/".join(p for p in name.split("/") if not re.fullmatch(r"iterations:\d+", p))


def items_per_iteration(path):
    """{benchmark: items per iteration} of a run: the shim's items_per_iter counter;
    without it, items_per_second is a rate over the time the benchmark is measured by
    (real time for real_time benchmarks, else CPU time), so rate x seconds per
    iteration is the count per iteration."""
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    result = {}
    for b in iterations(load_run(path), path):
        if b.get("error_occurred"):
            raise ReportError(f"{path}: {b['name']} failed: {b.get('error_message')}")
        key = "real_time" if "/real_time" in b["name"] else "cpu_time"
        items = b.get("items_per_iter") or \
            b["items_per_second"] * b[key] * scale[b.get("time_unit", "ns")]
        n = round(items)
        if n < 1 or abs(items - n) > 0.01 * n:
            raise ReportError(f"{path}: {b['name']}: {items:.3f} items per iteration "
                              "is not a whole number")
        result[base_name(b["name"])] = n
    return result


def callgrind_total(path):
    """Callgrind's instruction total ("totals:", or "summary:" in older versions)."""
    totals = summary = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("totals:"):
                    totals = int(line.split()[1])
                elif line.startswith("summary:"):
                    summary = int(line.split()[1])
    except OSError as e:
        raise ReportError(f"{path}: {e}")
    if totals is None and summary is None:
        raise ReportError(f"{path}: no instruction total")
    return totals if totals is not None else summary


# The benchmark loop alone (bench/micro.c): its row says what the loop adds to every
# other row; it is left out of the means and the ratios.
LOOP_BENCH = "micro/empty"


def render_instructions(rows_path, reference="mimalloc"):
    per_op = {}  # bench -> allocator -> instructions per item (None: error)
    details = {}
    failures = []
    with open(rows_path, encoding="utf-8") as f:
        for line in f:
            bench, alloc, n1, cg1, n2, cg2, items, js1, js2 = line.rstrip("\n").split("\t")
            n1, n2, items = int(n1), int(n2), int(items)
            details[bench] = (n1, n2, items)
            errors = {b.get("error_message") or "no message"
                      for js in (js1, js2) for b in iterations(load_run(js), js)
                      if b.get("error_occurred")}
            if errors:
                per_op.setdefault(bench, {})[alloc] = None
                failures.append(f"- {bench}, {alloc}: {'; '.join(sorted(errors))}")
                continue
            ir1, ir2 = callgrind_total(cg1), callgrind_total(cg2)
            if n2 <= n1:
                raise ReportError(f"{bench}: N2 ({n2}) must exceed N1 ({n1})")
            per_op.setdefault(bench, {})[alloc] = (ir2 - ir1) / ((n2 - n1) * items)
    if not per_op:
        raise ReportError(f"{rows_path}: no rows")
    allocs = allocator_order({a for row in per_op.values() for a in row})
    has_ref = reference in allocs
    out = ["Instructions per operation under callgrind (Ir): (Ir(N2) - Ir(N1)) / "
           "((N2 - N1) x items per iteration), so start-up, setup and the first N1 "
           "iterations cancel. The benchmark loop's own per-iteration work is included"
           + (f": {LOOP_BENCH}, the loop alone, shows how much." if LOOP_BENCH in per_op
              else "."),
           ""]
    if has_ref:
        out += [f"In parentheses: the ratio to {reference} (below 1: fewer instructions). "
                "The fewest in each row are bold.", ""]
    out.append("| benchmark | N1 | N2 | items/iteration | " + " | ".join(allocs) + " |")
    out.append("|---|---:|---:|---:|" + "---:|" * len(allocs))
    ratios = {a: [] for a in allocs}
    values = {a: [] for a in allocs}
    complete = 0
    for bench in sorted(per_op, key=lambda b: (b != LOOP_BENCH, natural_key(b))):
        row = {a: v for a, v in per_op[bench].items() if v is not None}
        loop = bench == LOOP_BENCH
        least = min(row.values(), default=None)
        cells = []
        for a in allocs:
            v = row.get(a)
            if v is None:
                cells.append("error" if a in per_op[bench] else "-")
                continue
            text = f"{v:.1f}"
            if loop:
                cells.append(text)
                continue
            if has_ref and reference in row and row[reference] > 0:
                ratio = v / row[reference]
                ratios[a].append(ratio)
                text += f" ({ratio:.2f})"
            cells.append(mark(text, v == least))
        if len(row) == len(allocs) and not loop:
            complete += 1
            for a in allocs:
                values[a].append(row[a])
        n1, n2, items = details[bench]
        out.append(f"| {bench} | {n1} | {n2} | {items} | " + " | ".join(cells) + " |")
    cells = []
    for a in allocs:
        g = geomean(values[a])
        text = "-" if g is None else f"{g:.1f}"
        r = geomean(ratios[a]) if has_ref else None
        if r is not None:
            text += f" ({r:.2f})"
        cells.append(text)
    out.append(f"| geometric mean ({complete} rows) | | | | " + " | ".join(cells) + " |")
    if failures:
        out += ["", "Failed the benchmark's own check (shown as error, not counted):"]
        out += failures
    return "\n".join(out) + "\n"


# --- command line --------------------------------------------------------------------


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("report", help="Markdown table (and plots) from the runs")
    rp.add_argument("paths", nargs="+", help="JSON files or directories of them")
    rp.add_argument("-o", "--output", help="write the Markdown here (default stdout)")
    rp.add_argument("--plots", metavar="DIR", help="write PNG plots into DIR")
    cp = sub.add_parser("check", help="verify that a run used the intended allocator")
    cp.add_argument("--list", help="check every run listed in this file")
    cp.add_argument("--allocator")
    cp.add_argument("--lib", help="the preloaded library ('' for glibc)")
    cp.add_argument("--stats", help="brisk's JSON statistics of the run (BRISK_STATS_FILE; "
                    "required for brisk)")
    cp.add_argument("json", nargs="?")
    ip = sub.add_parser("items-per-iteration", help="items per iteration of each benchmark")
    ip.add_argument("json")
    cg = sub.add_parser("instructions", help="the instructions-per-operation table")
    cg.add_argument("rows")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "items-per-iteration":
            for name, n in items_per_iteration(args.json).items():
                print(name, n)
            return 0
        if args.cmd == "instructions":
            sys.stdout.write(render_instructions(args.rows))
            return 0
        if args.cmd == "check":
            if args.list:
                with open(args.list, encoding="utf-8") as f:
                    for line in f:
                        alloc, lib, path, stats = line.rstrip("\n").split("\t")
                        check_run(path, alloc, lib, stats or None)
            elif args.allocator is None or args.lib is None or args.json is None:
                ap.error("check needs --list, or --allocator, --lib and a JSON file")
            else:
                check_run(args.json, args.allocator, args.lib, args.stats)
            return 0
        res = Results()
        for path in json_files(args.paths):
            res.add_file(path)
        text = render(res)
        if args.plots:
            made = plot(res, args.plots)
            if made:
                rel_to = os.path.dirname(os.path.abspath(args.output)) if args.output \
                    else os.getcwd()
                text += "\nPlots (throughput and peak RSS against threads):\n\n"
                for bench, tp, rss in made:
                    text += (f"- {bench}: [throughput]({os.path.relpath(tp, rel_to)}), "
                             f"[peak RSS]({os.path.relpath(rss, rel_to)})\n")
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return 0
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
