#!/usr/bin/env python
"""The core benchmark: bamstore against samtools, mosdepth, pysam.depth and QuantNado.

    make bench                             # full run (about 7 min the first time, then 4.5)
    .venv/bin/python benchmarks/run.py --quick

Generates (and caches under benchmarks/.cache/) a deterministic 5 M-record paired-end BAM over
155 Mbp in four contigs and a 5 M-record BAM on one 250 Mbp contig; runs every command as a
subprocess, once to warm up and then --repeat times, measuring wall time, user+sys CPU and peak
RSS of the child with os.wait4; prints one markdown table plus the checks of the speed and
memory targets (benchmarks/README.md) and saves it to benchmarks/results/latest.md. Outside the
timing it checks the benchmarked stores against `pysam.depth -a`; a mismatch makes the run exit 1.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from anchors_env import ensure_anchors, ensure_baseline
from quantnado_env import ensure_quantnado
from read_bench import Anchors, ReadReport, Section, format_read_section, run_read_benchmark

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"

MAIN_CONTIGS = [
    ("chr1", 60_000_000),
    ("chr2", 50_000_000),
    ("chr3", 30_000_000),
    ("chr4", 15_000_000),
]
QUICK_MAIN_CONTIGS = [
    ("chr1", 12_000_000),
    ("chr2", 10_000_000),
    ("chr3", 6_000_000),
    ("chr4", 3_000_000),
]
MEM_CONTIGS = [("chr1", 250_000_000)]  # hg38 chr1 length, rounded
MAIN_SEED, MEM_SEED = 7, 8
RSS_TARGET_MIB = 300
MODE_TARGET = 1.2  # fragments and cut sites within 1.2x the wall time of read mode
COUNTING_MODES = ("fragments", "cutsites")
BUSY_CORES = 0.1  # other processes using more than this during a run: flagged in the table
MERGE_TARGET = 0.10
BUILD_TARGET = 3.0
# QuantNado's BamStore.from_bam_files took about 10.6 s per 5 M reads on this machine kind
QUANTNADO_REFERENCE_S = 10.6
QUANTNADO_REFERENCE_READS = 5_000_000
QUANTNADO_SCRIPT = (
    "import sys\n"
    "from quantnado.dataset.store_bam import BamStore\n"
    "BamStore.from_bam_files(sys.argv[2:], store_path=sys.argv[1], overwrite=True)\n"
)
PYSAM_DEPTH_SCRIPT = "import sys, pysam; pysam.depth(*sys.argv[1:])"

ANCHORS = ("samtools view -c", "mosdepth -n", "mosdepth -n -t 1", "pysam.depth -a")
# the reading section's "today's extract": the commit before the block reader and format 3
BASELINE = "09b518b"


class BenchError(RuntimeError):
    """A benchmarked command failed: the run stops (exit 1)."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- measuring


@dataclass
class RunStats:
    wall: float  # seconds
    cpu: float  # user + sys seconds of the child and its waited-for descendants
    maxrss_kib: int  # ru_maxrss: the largest single process among them
    stdout: str = ""
    other_cpu: float = 0.0  # CPU seconds the rest of the machine used meanwhile (/proc/stat)
    # CPU seconds of this harness meanwhile: the loopback server of the remote rows (else ~0)
    harness_cpu: float = 0.0


def machine_busy_seconds() -> float | None:
    """CPU seconds user processes have used since boot, None if /proc is unavailable.

    /proc/stat's busy time (all but idle, iowait and interrupts) less that of kernel threads
    (kthreadd, pid 2, and its children): those include the writeback of our own output, which
    is no other process competing for the cores.
    """
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal
    ticks = [int(x) for x in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4] - ticks[5] - ticks[6]
    kernel = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if entry.name == "2" or stat[1] == "2":  # kthreadd and its children
            kernel += int(stat[11]) + int(stat[12])  # utime, stime
    return (busy - kernel) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(limit: float, window: float = 5.0) -> float | None:
    """Wait (at most `limit` s) for `window` s in which other processes use < BUSY_CORES.

    Returns the cores they used in the last window (None without /proc/stat). On a shared
    machine this keeps a run from starting in the middle of someone else's test suite.
    """
    deadline = time.monotonic() + limit
    while True:
        before = machine_busy_seconds()
        time.sleep(window)
        after = machine_busy_seconds()
        if before is None or after is None:
            return None
        load = (after - before) / window
        if load < BUSY_CORES or time.monotonic() >= deadline:
            return load
        log(f"waiting for a quiet machine: other processes use {load:.1f} cores")


class QuietWaiter:
    """Waits for a quiet machine within one budget of seconds for the whole run."""

    def __init__(self, budget: float) -> None:
        self.remaining = budget
        self.waited = 0.0

    def wait(self, limit: float, window: float = 2.0) -> float | None:
        limit = min(limit, self.remaining)
        if limit <= 0:
            return None
        started = time.monotonic()
        load = wait_for_quiet(limit, window)
        spent = time.monotonic() - started
        self.remaining -= spent
        self.waited += spent
        return load


# A child's ru_maxrss is never below the peak RSS of the process that forked it (Linux folds
# the old address space's high-water mark into it at exec, vfork included), and this harness
# holds numpy, pysam and zarr, and generated the BAMs in-process. So the measured command is
# started by a small launcher that forks it and reports ru_maxrss from its own os.wait4: GNU
# time (about 1 MiB itself) when installed, else `python -S` (a floor of about 8 MiB).
GNU_TIME = "/usr/bin/time"
PY_LAUNCHER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    try:\n"
    "        os.execvp(sys.argv[2], sys.argv[2:])\n"
    "    finally:\n"
    "        os._exit(127)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "with open(sys.argv[1], 'w') as fh:\n"
    "    fh.write(str(usage.ru_maxrss))\n"
    "code = os.waitstatus_to_exitcode(status)\n"
    "sys.exit(code if code >= 0 else 128 - code)\n"
)


@functools.cache
def rss_launcher() -> str:
    """'gnu-time' or 'python': how run_once starts the measured command."""
    try:
        out = subprocess.run([GNU_TIME, "--version"], capture_output=True, timeout=30)
        if b"GNU" in out.stdout + out.stderr:
            return "gnu-time"
    except (OSError, subprocess.SubprocessError):
        pass
    return "python"


def launcher_argv(argv: list[str], rss_file: Path) -> list[str]:
    if rss_launcher() == "gnu-time":
        return [GNU_TIME, "-f", "%M", "-o", str(rss_file), *argv]
    return [sys.executable, "-S", "-c", PY_LAUNCHER, str(rss_file), *argv]


def run_once(cmd: Sequence[str | os.PathLike[str]], cwd: Path | None = None) -> RunStats:
    """Run `cmd` as a child and measure it with os.wait4 (no sampling from Python).

    Wall time is taken around the child; CPU is ru_utime + ru_stime of our os.wait4 (the
    command, its waited-for children and the launcher); peak RSS is the command's ru_maxrss
    as the launcher's os.wait4 reports it. The harness's own CPU meanwhile (a loopback server
    it runs for the command) is kept apart, not counted as another process's load.
    """
    argv = [str(c) for c in cmd]
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        rss_file = Path(tmp) / "maxrss"
        busy_before = machine_busy_seconds()
        own_before = harness_cpu_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(launcher_argv(argv, rss_file), stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        busy_after = machine_busy_seconds()
        own = harness_cpu_seconds() - own_before
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        if proc.returncode != 0:
            tail = err.read().decode(errors="replace").strip().splitlines()[-15:]
            raise BenchError(
                f"command failed (exit {proc.returncode}): {' '.join(argv)}\n" + "\n".join(tail)
            )
        lines = rss_file.read_text().split() if rss_file.exists() else []
        if not lines or not lines[-1].isdigit():
            raise BenchError(f"no peak RSS reported for: {' '.join(argv)}")
        maxrss_kib = int(lines[-1])
    cpu = usage.ru_utime + usage.ru_stime
    other = 0.0
    if busy_before is not None and busy_after is not None:
        other = max(0.0, busy_after - busy_before - cpu - own)
    return RunStats(wall, cpu, maxrss_kib, stdout, other, own)


def harness_cpu_seconds() -> float:
    """CPU seconds of this process, all threads: not another process's load during a run."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Row:
    """One line of the table: a command measured `len(runs)` times (after warm-ups)."""

    label: str
    scope: str
    runs: list[RunStats] = field(default_factory=list)
    reads: int | None = None  # records processed per run, for reads/s and the anchor ratios
    note: str = ""
    status: str = ""  # "", "not installed: ...", "reference: ..." (not measured)
    reference_wall: float | None = None  # a reference number shown instead of a measurement
    warmups: int = 1
    compare: bool = True  # show reads/s and ratios
    discarded: int = 0  # runs re-done because other processes kept the machine busy

    @property
    def measured(self) -> bool:
        return bool(self.runs)

    @property
    def wall(self) -> float | None:
        if self.runs:
            return statistics.median(r.wall for r in self.runs)
        return self.reference_wall

    @property
    def cpu(self) -> float | None:
        return statistics.median(r.cpu for r in self.runs) if self.runs else None

    @property
    def rss_mib(self) -> float | None:
        return max(r.maxrss_kib for r in self.runs) / 1024 if self.runs else None

    @property
    def other_load(self) -> float:
        """Cores the rest of the machine kept busy during the measured runs (worst run)."""
        return max((r.other_cpu / r.wall for r in self.runs if r.wall > 0), default=0.0)

    @property
    def seconds_per_read(self) -> float | None:
        wall = self.wall
        return wall / self.reads if wall is not None and self.reads else None


def measure(
    label: str,
    scope: str,
    cmd: Sequence[str | os.PathLike[str]],
    repeat: int,
    *,
    reads: int | None = None,
    warmups: int = 1,
    note: str = "",
    cwd: Path | None = None,
    compare: bool = True,
    retry_busy: int = 0,
    waiter: QuietWaiter | None = None,
) -> Row:
    """Warm up, then keep `repeat` runs; a run during which other processes kept the machine
    busy is re-done (after `waiter` waited up to 30 s for quiet), at most `retry_busy` times.
    """
    row = Row(label, scope, reads=reads, note=note, warmups=warmups, compare=compare)
    for _ in range(warmups):
        run_once(cmd, cwd)
    quiet: list[RunStats] = []
    busy: list[RunStats] = []
    while len(quiet) < repeat and len(quiet) + len(busy) < repeat + retry_busy:
        stats = run_once(cmd, cwd)
        if stats.other_cpu / max(stats.wall, 1e-9) < BUSY_CORES:
            quiet.append(stats)
        else:
            busy.append(stats)
            if waiter is not None:
                waiter.wait(30)
    # prefer quiet runs; fill up with the least disturbed busy ones
    busy.sort(key=lambda r: r.other_cpu / max(r.wall, 1e-9))
    row.runs = quiet + busy[: max(0, repeat - len(quiet))]
    row.discarded = len(quiet) + len(busy) - len(row.runs)
    log(
        f"{label} [{scope}]: median {row.wall:.2f} s wall, {row.cpu:.2f} s CPU, "
        f"{row.rss_mib:.0f} MiB"
    )
    return row


def measure_alternating(
    jobs: Sequence[tuple[str, str, Sequence[str | os.PathLike[str]]]],
    repeat: int,
    *,
    warmups: int = 1,
) -> list[Row]:
    """Rows of (label, scope, cmd) jobs whose runs alternate (A B A B ...), for a ratio of
    their times: on this shared VM the same command's wall time drifts by 10-20 % within
    minutes, so back-to-back blocks of runs of each (A A A B B B) moved the extract-vs-baseline
    ratio by as much; alternating runs see the same drift."""
    rows = [Row(label, scope, warmups=warmups) for label, scope, _ in jobs]
    for _ in range(warmups):
        for *_, cmd in jobs:
            run_once(cmd)
    for _ in range(repeat):
        for row, (*_, cmd) in zip(rows, jobs, strict=True):
            row.runs.append(run_once(cmd))
    for row in rows:
        log(
            f"{row.label} [{row.scope}]: median {row.wall:.2f} s wall, {row.cpu:.2f} s CPU, "
            f"{row.rss_mib:.0f} MiB (runs alternating with {len(jobs) - 1} other command(s))"
        )
    return rows


def missing_row(label: str, scope: str, why: str) -> Row:
    log(f"{label}: {why}")
    return Row(label, scope, status=why)


# ---------------------------------------------------------------------------- inputs


@dataclass
class Config:
    quick: bool
    repeat: int
    samples: int
    main_reads: int
    main_contigs: list[tuple[str, int]]
    mem_reads: int
    mem_contigs: list[tuple[str, int]]
    threads: int = 2
    jobs: int = 2
    quantnado: bool = True
    quantnado_repeat: int = 1

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Config:
        quick = args.quick
        return cls(
            quick=quick,
            repeat=args.repeat if args.repeat is not None else (1 if quick else 3),
            samples=args.samples,
            main_reads=1_000_000 if quick else 5_000_000,
            main_contigs=QUICK_MAIN_CONTIGS if quick else MAIN_CONTIGS,
            mem_reads=1_000_000 if quick else 5_000_000,
            mem_contigs=MEM_CONTIGS,
            quantnado=not args.no_quantnado,
            quantnado_repeat=args.quantnado_repeat,
        )


def human_count(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def generate_inputs(config: Config, cache: Path, *, memory_bam: bool = True) -> tuple[Path, Path]:
    from bamstore.simulate import make_bam

    main = cache / f"main_{human_count(config.main_reads)}.bam"
    mem_mbp = sum(length for _, length in config.mem_contigs) // 1_000_000
    mem = cache / f"mem_{mem_mbp}Mbp_{human_count(config.mem_reads)}.bam"
    inputs = [(main, config.main_reads, config.main_contigs, MAIN_SEED)]
    if memory_bam:
        inputs.append((mem, config.mem_reads, config.mem_contigs, MEM_SEED))
    for path, reads, contigs, seed in inputs:
        started = time.monotonic()
        make_bam(path, reads, contigs, seed=seed, paired=True, threads=2, index=True)
        took = time.monotonic() - started
        state = f"generated in {took:.0f} s" if took > 2 else "cached"
        log(f"input {path.name}: {state}")
    return main, mem


def bam_records(bam: Path) -> int:
    """Every record of the BAM (from its index): what `samtools view -c` counts."""
    import pysam

    with pysam.AlignmentFile(str(bam)) as fh:
        return int(fh.mapped + fh.unmapped)


# ---------------------------------------------------------------------------- tools


def tool_version(argv: list[str]) -> str | None:
    """First line of `TOOL --version`, or None if it is missing or does not run."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, timeout=60)
    except OSError:
        return None
    if out.returncode != 0:
        return None
    text = (out.stdout or out.stderr).decode(errors="replace").strip().splitlines()
    return text[0] if text else ""


def bamstore_exe() -> str:
    beside = Path(sys.executable).parent / "bamstore"
    return str(beside) if beside.exists() else (shutil.which("bamstore") or "bamstore")


# ---------------------------------------------------------------------------- correctness


@dataclass
class CheckResult:
    store: str
    positions: int = 0
    nonzero: int = 0
    full_contigs: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # the first few, for the report
    n_mismatches: int = 0

    def mismatch(self, text: str, count: int = 1, max_report: int = 20) -> None:
        self.n_mismatches += count
        if len(self.mismatches) < max_report:
            self.mismatches.append(text)

    @property
    def ok(self) -> bool:
        return self.n_mismatches == 0 and self.positions > 0 and self.nonzero > 0

    def summary(self) -> str:
        full = f", full contig {', '.join(self.full_contigs)}" if self.full_contigs else ""
        state = "PASS" if self.ok else "FAIL"
        extra = ""
        if self.mismatches:
            extra = f"; {self.n_mismatches:,} mismatch(es), first: {self.mismatches[0]}"
        elif self.nonzero == 0:
            extra = "; no covered position was compared (the check would be vacuous)"
        return f"{state}: {self.positions:,} positions ({self.nonzero:,} covered){full}{extra}"


def check_windows(
    contigs: Sequence[tuple[str, int]],
    chunk_len: int,
    *,
    random_windows: int = 256,
    window: int = 16,
    seed: int = 0,
) -> dict[str, list[tuple[int, int]]]:
    """0-based half-open windows per contig: random ones, both contig ends, every chunk boundary.

    Random windows are shared out by contig length (at least 4 per contig).
    """
    rng = np.random.default_rng(seed)
    total = sum(length for _, length in contigs)
    out: dict[str, list[tuple[int, int]]] = {}
    for name, length in contigs:
        spans = [(0, min(window, length)), (max(0, length - window), length)]
        for boundary in range(chunk_len, length, chunk_len):
            spans.append((max(0, boundary - window // 2), min(length, boundary + window // 2)))
        n_random = max(4, round(random_windows * length / total))
        starts = rng.integers(0, max(1, length - window), size=n_random)
        spans += [(int(s), min(length, int(s) + window)) for s in starts]
        out[name] = merge_spans(spans)
    return out


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def depth_args(store_attrs: dict[str, Any]) -> list[str]:
    """samtools depth options for the read filter recorded in the store."""
    cov = store_attrs.get("bamstore", {}).get("settings", {})
    args = ["-a", "-G", str(cov.get("exclude_flags", 0x704)), "-Q", str(cov.get("min_mapq", 0))]
    if cov.get("count_deletions"):
        args.append("-J")
    return args


def parse_depth(text: str) -> dict[int, int]:
    values: dict[int, int] = {}
    for line in text.splitlines():
        if line:
            _, pos, depth = line.split("\t")
            values[int(pos) - 1] = int(depth)
    return values


def check_store_against_depth(
    store: Path,
    bam: Path,
    *,
    sample: str | None = None,
    random_windows: int = 256,
    window: int = 16,
    full_contigs: Sequence[str] = (),
    seed: int = 0,
) -> CheckResult:
    """Compare a store's row for `sample` with `pysam.depth -a` on a sample of positions.

    The store is read with plain zarr; depth runs with the read filter the store records.
    `full_contigs` are compared position by position over their whole length.
    """
    import pandas as pd
    import pysam
    import zarr

    group = zarr.open_group(str(store), mode="r")
    attrs = dict(group.attrs)
    names = list(attrs["sample_names"])
    row = names.index(sample) if sample is not None else 0
    contigs = [(c, int(n)) for c, n in attrs["chromsizes"].items()]
    chunk_len = int(attrs["chunk_len"])
    opts = depth_args(attrs)
    result = CheckResult(str(store))

    def compare(contig: str, start: int, got: np.ndarray, want: dict[int, int]) -> None:
        for offset, value in enumerate(got.tolist()):
            pos = start + offset
            expected = want.get(pos)
            result.positions += 1
            result.nonzero += bool(expected)
            if expected is None:
                result.mismatch(f"{contig}:{pos + 1} depth printed no value (store {value})")
            elif expected != value:
                result.mismatch(f"{contig}:{pos + 1} store {value} != depth {expected}")

    for contig, spans in check_windows(
        contigs, chunk_len, random_windows=random_windows, window=window, seed=seed
    ).items():
        array = group[contig]
        for start, end in spans:
            got = np.asarray(array[row, start:end])
            want = parse_depth(pysam.depth(*opts, "-r", f"{contig}:{start + 1}-{end}", str(bam)))
            compare(contig, start, got, want)
    for contig in full_contigs:
        length = dict(contigs)[contig]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "depth.tsv"
            pysam.depth(*opts, "-r", contig, "-o", str(out), str(bam), catch_stdout=False)
            table = pd.read_csv(
                out, sep="\t", header=None, usecols=[1, 2], dtype=np.int64
            ).to_numpy()
        got = np.asarray(group[contig][row, :])
        want = np.zeros(length, dtype=np.int64)
        want[table[:, 0] - 1] = table[:, 1]
        result.positions += length
        result.nonzero += int(np.count_nonzero(want))
        if len(table) != length:
            result.mismatch(f"{contig}: depth -a printed {len(table)} of {length} lines")
        wrong = np.flatnonzero(got != want)
        if len(wrong):
            pos = wrong[0]
            result.mismatch(
                f"{contig}:{pos + 1} store {got[pos]} != depth {want[pos]} (full contig)",
                count=len(wrong),
            )
        result.full_contigs.append(contig)
    return result


def check_rows_equal(
    store: Path, reference: Path, *, random_windows: int = 256, window: int = 16
) -> CheckResult:
    """Every row of `store` equals row 0 of the per-sample `reference` on the check windows."""
    import zarr

    group = zarr.open_group(str(store), mode="r")
    ref = zarr.open_group(str(reference), mode="r")
    attrs = dict(group.attrs)
    contigs = [(c, int(n)) for c, n in attrs["chromsizes"].items()]
    result = CheckResult(str(store))
    windows = check_windows(
        contigs, int(attrs["chunk_len"]), random_windows=random_windows, window=window
    )
    for contig, spans in windows.items():
        for start, end in spans:
            want = np.asarray(ref[contig][0, start:end])
            got = np.asarray(group[contig][:, start:end])
            result.positions += got.size
            result.nonzero += int(np.count_nonzero(got))
            for r, c in zip(*np.nonzero(got != want[None, :]), strict=True):
                result.mismatch(f"row {r} {contig}:{start + c + 1} {got[r, c]} != part {want[c]}")
    return result


def expected_mode_coverage(bam: Path, contig: str, length: int, coverage: dict) -> np.ndarray:
    """One contig's coverage in the store's counting mode, from pysam's records and numpy.

    The counting modes' rules (README: counting modes), written out independently of the
    kernels: primary records that pass the read filter; fragments from proper pairs' TLEN (> 0)
    or single-end spans (or --extend); cut sites at start+P / end-1+M, off-contig ones dropped.
    """
    import pysam

    exclude = int(coverage.get("exclude_flags", 0x704)) | 0x4 | 0x900
    min_mapq = int(coverage.get("min_mapq", 0))
    mode, extend = coverage["mode"], coverage.get("extend")
    plus, minus = coverage.get("shift") or (0, 0)
    diff = np.zeros(length + 1, dtype=np.int64)
    with pysam.AlignmentFile(str(bam)) as fh:
        for rec in fh.fetch(contig):
            flag, start = rec.flag, rec.reference_start
            if flag & exclude or rec.mapping_quality < min_mapq or start >= length:
                continue
            end = rec.reference_end or start
            if mode == "cutsites":
                site = end - 1 + minus if flag & 0x10 else start + plus
                if 0 <= site < length:
                    diff[site] += 1
                    diff[site + 1] -= 1
                continue
            if flag & 0x1:
                if not flag & 0x2 or rec.template_length <= 0:
                    continue
                first, last = start, start + rec.template_length
            elif extend:
                first, last = (end - extend, end) if flag & 0x10 else (start, start + extend)
            else:
                first, last = start, end
            first, last = max(first, 0), min(last, length)
            if first < last:
                diff[first] += 1
                diff[last] -= 1
    return np.cumsum(diff[:-1])


def check_mode_store(store: Path, bam: Path, contig: str) -> CheckResult:
    """Row 0 of a fragments/cutsites store equals `expected_mode_coverage` over a whole contig."""
    import zarr

    group = zarr.open_group(str(store), mode="r")
    attrs = dict(group.attrs)
    length = int(attrs["chromsizes"][contig])
    want = expected_mode_coverage(bam, contig, length, attrs["bamstore"]["settings"])
    got = np.asarray(group[contig][0, :])
    result = CheckResult(str(store), positions=length, nonzero=int(np.count_nonzero(want)))
    wrong = np.flatnonzero(got != want)
    if len(wrong):
        pos = wrong[0]
        result.mismatch(
            f"{contig}:{pos + 1} store {got[pos]} != oracle {want[pos]}", count=len(wrong)
        )
    result.full_contigs.append(contig)
    return result


# ---------------------------------------------------------------------------- size on disk


def tree_bytes(path: Path, *, only_chunks: bool = False) -> int:
    """Apparent bytes of every file under `path` (hard links count once per path)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            if only_chunks and (name == "zarr.json" or "metadata" in Path(root).parts):
                continue
            total += os.lstat(os.path.join(root, name)).st_size
    return total


def reencode_quantnado_default(store: Path, scratch: Path) -> int:
    """Chunk bytes of row 0 of `store` re-encoded by zarr with QuantNado's default codec.

    QuantNado (store_bam.py) creates each contig array with zarr's own pipeline and
    BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"), uint32, chunks (1, chunk_len)
    (1,048,576 on a local filesystem, as ours), and skips all-zero chunks.
    """
    import zarr
    from zarr.codecs import BloscCodec
    from zarr.storage import LocalStore

    source = zarr.open_group(str(store), mode="r")
    attrs = dict(source.attrs)
    chunk_len = int(attrs["chunk_len"])
    shutil.rmtree(scratch, ignore_errors=True)
    target = zarr.group(store=LocalStore(str(scratch)), overwrite=True, zarr_format=3)
    for contig, length in attrs["chromsizes"].items():
        array = target.create_array(
            contig,
            shape=(1, int(length)),
            chunks=(1, chunk_len),
            dtype="uint32",
            fill_value=0,
            compressors=BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
        )
        for start in range(0, int(length), chunk_len):
            end = min(int(length), start + chunk_len)
            array[0:1, start:end] = source[contig][0:1, start:end]
    return tree_bytes(scratch, only_chunks=True)


def write_bigwig(store: Path, out: Path) -> int:
    """A bigWig of row 0 (runs of equal non-zero depth, as bedGraph), via pyBigWig; its bytes."""
    import pyBigWig
    import zarr

    group = zarr.open_group(str(store), mode="r")
    attrs = dict(group.attrs)
    chunk_len = int(attrs["chunk_len"])
    contigs = [(c, int(n)) for c, n in attrs["chromsizes"].items()]
    out.unlink(missing_ok=True)
    bw = pyBigWig.open(str(out), "w")
    bw.addHeader(contigs)
    for contig, length in contigs:
        starts, ends, values = [], [], []
        for offset in range(0, length, chunk_len):
            block = np.asarray(group[contig][0, offset : min(length, offset + chunk_len)])
            edges = np.flatnonzero(np.diff(block)) + 1
            run_starts = np.concatenate([[0], edges])
            run_ends = np.concatenate([edges, [len(block)]])
            keep = block[run_starts] != 0
            starts.append(run_starts[keep] + offset)
            ends.append(run_ends[keep] + offset)
            values.append(block[run_starts[keep]])
        s, e, v = (np.concatenate(x).astype(np.int64) for x in (starts, ends, values))
        if len(s):  # join runs split at chunk boundaries
            join = np.flatnonzero((s[1:] == e[:-1]) & (v[1:] == v[:-1])) + 1
            first = np.ones(len(s), dtype=bool)
            first[join] = False
            last = np.r_[np.flatnonzero(first)[1:] - 1, len(s) - 1]
            s, e, v = s[first], e[last], v[first]
            bw.addEntries([contig] * len(s), s, ends=e, values=v.astype(np.float64))
    bw.close()
    return out.stat().st_size


# ---------------------------------------------------------------------------- report


@dataclass
class Target:
    number: str
    text: str
    measured: str
    verdict: str  # PASS, FAIL or n/a


@dataclass
class Report:
    machine: list[str]
    setup: list[str]
    rows: list[Row]
    targets: list[Target]
    sizes: list[tuple[str, str, str]]  # (what, bytes per sample, note)
    checks: list[tuple[str, str]]  # (what, summary)
    notes: list[str] = field(default_factory=list)
    read: ReadReport | None = None  # the reading section (read_bench.py)


def fmt_s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def fmt_rate(row: Row) -> str:
    spr = row.seconds_per_read
    if spr is None or not row.compare:
        return "—"
    rate = 1 / spr
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k"


def anchor_ratio(row: Row, anchor: Row | None) -> str:
    """Time per read of `row` ÷ that of the anchor (< 1: faster than the anchor)."""
    if anchor is None or anchor.status:
        return "not installed" if anchor is not None else "—"
    a, r = anchor.seconds_per_read, row.seconds_per_read
    if a is None or r is None or not row.compare:
        return "—"
    return f"{r / a:.2f}×"


def format_report(report: Report) -> str:
    lines = ["# bamstore benchmark", ""]
    lines += [f"- {item}" for item in report.machine]
    lines.append("")
    if report.rows:
        lines += _format_core(report)
    if report.read is not None:
        lines += format_read_section(report.read)
    if report.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _format_core(report: Report) -> list[str]:
    """The extraction, merge, build and size tables."""
    anchors = {row.label: row for row in report.rows if row.label in ANCHORS}
    lines = [f"- {item}" for item in report.setup]
    lines.append("")
    header = [
        "command",
        "input / scope",
        "median wall s",
        "CPU s (user+sys)",
        "peak RSS MiB",
        "reads/s",
        *[f"× {a}" for a in ANCHORS],
        "runs",
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for row in report.rows:
        label = row.label + (f" ({row.note})" if row.note else "")
        if row.status and row.reference_wall is None:
            cells = [label, row.scope, row.status] + ["—"] * (len(header) - 3)
        else:
            runs = f"{len(row.runs)} (+{row.warmups} warm-up)" if row.runs else row.status
            if row.discarded:
                runs += f", {row.discarded} busy run(s) re-done"
            if row.other_load >= BUSY_CORES:
                runs += f" ⚠ others used {row.other_load:.1f} cores"
            cells = [
                label,
                row.scope,
                fmt_s(row.wall),
                fmt_s(row.cpu),
                "—" if row.rss_mib is None else f"{row.rss_mib:.0f}",
                fmt_rate(row),
                *[anchor_ratio(row, anchors.get(a)) for a in ANCHORS],
                runs,
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "× anchor = this row's wall time per read ÷ the anchor's (below 1: faster). Wall and "
        "CPU are medians; peak RSS is the largest over the runs (the command's ru_maxrss as its "
        "launcher's os.wait4 reports it: the largest single process of its tree). ⚠ marks "
        "runs during which other processes used more "
        f"than {BUSY_CORES:g} core on average (from /proc/stat): their times are not reliable."
    )
    lines += [
        "",
        "## Targets",
        "",
        "| # | target | measured | result |",
        "|---|---|---|---|",
    ]
    for t in report.targets:
        lines.append(f"| {t.number} | {t.text} | {t.measured} | **{t.verdict}** |")
    if report.sizes:  # none with --section extract
        lines += [
            "",
            "## Size on disk",
            "",
            "| store | bytes per sample | note |",
            "|---|---:|---|",
        ]
        for what, size, note in report.sizes:
            lines.append(f"| {what} | {size} | {note} |")
    lines += ["", "## Correctness (outside the timing)", ""]
    lines += [f"- {what}: {summary}" for what, summary in report.checks]
    return lines


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB ({n:,.0f} B)"


# ---------------------------------------------------------------------------- machine


def machine_info(config: Config, quantnado: str) -> list[str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    import pysam

    from bamstore import __version__
    from bamstore.engine.kernel import default_kernel

    samtools = tool_version(["samtools", "--version"]) or "samtools not installed"
    mosdepth = tool_version(["mosdepth", "--version"]) or "mosdepth not installed"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"date: {now}{' (--quick run)' if config.quick else ''}",
        f"machine: {cpu}, {os.cpu_count()} cores ({usable} usable), {ram} RAM, "
        f"{platform.system()} {platform.release()}",
        f"versions: bamstore {__version__} (kernel: {default_kernel()}), "
        f"pysam {pysam.__version__} (bundled samtools {pysam.__samtools_version__}), "
        f"zarr {version('zarr')}, numcodecs {version('numcodecs')}, numpy {version('numpy')}, "
        f"Python {platform.python_version()}; {samtools}; {mosdepth}; "
        f"pyBigWig {version('pyBigWig')}; QuantNado: {quantnado}",
    ]


# ---------------------------------------------------------------------------- the run


def contigs_text(contigs: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{n}={length / 1e6:g} Mbp" for n, length in contigs)


def run_benchmark(config: Config, args: argparse.Namespace) -> tuple[Report, bool]:
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    main_bam, mem_bam = generate_inputs(config, cache)
    main_reads, mem_reads = bam_records(main_bam), bam_records(mem_bam)
    n = config.samples
    bamstore = bamstore_exe()
    rep = config.repeat
    rows: list[Row] = []
    notes: list[str] = []

    qn_python: Path | None = None
    qn_text = "not measured (--no-quantnado)"
    extract_only = args.section == "extract"
    if config.quantnado and not extract_only:
        qn_python, qn_text = ensure_quantnado(Path(args.quantnado_venv), args.quantnado_python)

    waiter = QuietWaiter(args.wait_quiet)
    timed = functools.partial(measure, retry_busy=args.retry_busy, waiter=waiter)
    if args.wait_quiet > 0:
        load = waiter.wait(args.wait_quiet, window=5)
        if load is not None:
            log(f"other processes use {load:.2f} cores at the start")
            notes.append(f"other processes used {load:.2f} cores just before the measurements")

    # --- anchors
    main_scope = f"main BAM ({human_count(main_reads)} records)"
    if not extract_only:
        if tool_version(["samtools", "--version"]):
            rows.append(
                timed(
                    "samtools view -c",
                    main_scope,
                    ["samtools", "view", "-c", main_bam],
                    rep,
                    reads=main_reads,
                    note="decode floor, 1 thread",
                )
            )
            counted = int(rows[-1].runs[-1].stdout.strip() or 0)
            if counted != main_reads:
                raise BenchError(f"samtools view -c counted {counted}, the index says {main_reads}")
        else:
            rows.append(missing_row("samtools view -c", main_scope, "not installed"))
        if tool_version(["mosdepth", "--version"]):
            for label, extra, note in (
                ("mosdepth -n", [], "default -t 0: 1 thread"),
                ("mosdepth -n -t 1", ["-t", "1"], "main + 1 decompression thread = the 2 cores"),
                (
                    "mosdepth -n -t 2",
                    ["-t", "2"],
                    "main + 2 decompression threads: same thread count as --threads 2",
                ),
            ):
                prefix = work / f"mosdepth{len(extra)}"
                rows.append(
                    timed(
                        label,
                        main_scope,
                        ["mosdepth", "-n", *extra, prefix, main_bam],
                        rep,
                        reads=main_reads,
                        note=note,
                    )
                )
        else:
            for label in ("mosdepth -n", "mosdepth -n -t 1"):
                rows.append(missing_row(label, main_scope, "not installed"))
        rows.append(
            timed(
                "pysam.depth -a",
                main_scope + ", every position, output to /dev/null",
                [sys.executable, "-c", PYSAM_DEPTH_SCRIPT, "-a", "-o", "/dev/null", main_bam],
                rep,
                reads=main_reads,
                note="pysam's bundled samtools depth, 1 thread, incl. Python start",
            )
        )

    # --- bamstore
    threads = str(config.threads)
    extract = [bamstore, "extract", "--chromosomes", "all", "--threads", threads, "--overwrite"]
    per_sample = work / "extract_main.zarr"
    rows.append(
        timed(
            f"bamstore extract --threads {threads}",
            main_scope,
            [*extract, "--bam", main_bam, "--sample", "s1", "--out", per_sample, "-q"],
            rep,
            reads=main_reads,
        )
    )
    extract_row = rows[-1]
    mem_store = work / "extract_mem.zarr"
    mem_scope = (
        f"memory BAM: one {contigs_text(config.mem_contigs)} contig, "
        f"{human_count(mem_reads)} records"
    )
    rows.append(
        timed(
            f"bamstore extract --threads {threads}",
            mem_scope,
            [*extract, "--bam", mem_bam, "--sample", "m1", "--out", mem_store, "-q"],
            rep,
            reads=mem_reads,
        )
    )
    mem_row = rows[-1]

    # --- streaming input: the same BAMs through a pipe, `cat | extract --bam -`
    stream_stores: dict[str, tuple[Path, Path]] = {}
    for bam, scope, reads, base, sample, file_store in (
        (main_bam, main_scope, main_reads, extract_row, "s1", per_sample),
        (mem_bam, mem_scope, mem_reads, mem_row, "m1", mem_store),
    ):
        store = work / f"extract_{bam.stem}_stream.zarr"
        command = [*extract, "--bam", "-", "--sample", sample, "--out", store, "-q"]
        row = timed(
            f"cat BAM | bamstore extract --threads {threads} --bam -",
            scope,
            ["sh", "-c", f"cat {shlex.quote(str(bam))} | {shlex.join(map(str, command))}"],
            rep,
            reads=reads,
        )
        row.note = f"{row.wall / base.wall:.2f}× the file (no index; CPU and RSS include cat)"
        rows.append(row)
        stream_stores[bam.name] = (store, file_store)

    # --- counting modes: the same BAMs counted as fragments and as cut sites
    main_mode_rows: dict[str, Row] = {}
    mem_mode_rows: dict[str, Row] = {}
    main_mode_stores: dict[str, Path] = {}
    for mode in COUNTING_MODES:
        for bam, scope, reads, base, found in (
            (main_bam, main_scope, main_reads, extract_row, main_mode_rows),
            (mem_bam, mem_scope, mem_reads, mem_row, mem_mode_rows),
        ):
            store = work / f"extract_{bam.stem}_{mode}.zarr"
            found[mode] = row = timed(
                f"bamstore extract --threads {threads} --mode {mode}",
                scope,
                [*extract, "--mode", mode, "--bam", bam, "--sample", "s1", "--out", store, "-q"],
                rep,
                reads=reads,
            )
            row.note = f"{row.wall / base.wall:.2f}× read mode"
            rows.append(row)
            if bam == main_bam:
                main_mode_stores[mode] = store

    if not extract_only:
        parts_dir = work / "parts"
        parts = [parts_dir / f"s{i + 1}.zarr" for i in range(n)]
        parts_dir.mkdir()
        parts_row = Row(
            f"{n} × bamstore extract --threads {threads}",
            f"main BAM as {n} samples, one after another (the merge inputs)",
            reads=n * main_reads,
            warmups=0,
        )
        total = RunStats(0.0, 0.0, 0)
        for i, part in enumerate(parts):
            cmd = [*extract, "--bam", main_bam, "--sample", f"s{i + 1}", "--out", part, "-q"]
            one = run_once(cmd)
            for _ in range(args.retry_busy):  # a busy run is re-done, as in measure()
                if one.other_cpu / one.wall < BUSY_CORES:
                    break
                parts_row.discarded += 1
                waiter.wait(30)
                one = min(one, run_once(cmd), key=lambda r: r.other_cpu / r.wall)
            total = RunStats(
                total.wall + one.wall,
                total.cpu + one.cpu,
                max(total.maxrss_kib, one.maxrss_kib),
                other_cpu=total.other_cpu + one.other_cpu,
            )
        parts_row.runs.append(total)
        parts_row.note = f"sum of the {n} runs"
        log(f"{parts_row.label}: {total.wall:.2f} s wall in all")
        rows.append(parts_row)

        merged = work / "merged.zarr"
        rows.append(
            timed(
                "bamstore merge",
                f"{n} per-sample stores of the main BAM",
                [bamstore, "merge", *parts, "--out", merged, "--overwrite", "-q"],
                rep,
                note="hard links",
                compare=False,
            )
        )
        merge_row = rows[-1]
        merged_copy = work / "merged_copy.zarr"
        rows.append(
            timed(
                "bamstore merge --copy",
                f"{n} per-sample stores of the main BAM",
                [bamstore, "merge", *parts, "--out", merged_copy, "--overwrite", "--copy", "-q"],
                rep,
                note="chunk files copied",
                compare=False,
            )
        )
        copy_row = rows[-1]

        sheet = work / "samples.csv"
        bai = Path(str(main_bam) + ".bai")
        sheet.write_text(
            "sample,bam,bai\n" + "".join(f"s{i + 1},{main_bam},{bai}\n" for i in range(n))
        )
        built = work / "build.zarr"
        rows.append(
            timed(
                f"bamstore build --jobs {config.jobs}",
                f"main BAM as {n} samples",
                [
                    bamstore,
                    "build",
                    "--input",
                    sheet,
                    "--out",
                    built,
                    "--jobs",
                    str(config.jobs),
                    "--chromosomes",
                    "all",
                    "--overwrite",
                    "-q",
                ],
                rep,
                reads=n * main_reads,
                note="--threads 1 per job: extract 2 samples at a time (threads), then merge",
            )
        )
        build_row = rows[-1]

        # --- QuantNado
        reference_wall = n * QUANTNADO_REFERENCE_S * main_reads / QUANTNADO_REFERENCE_READS
        qn_label = "QuantNado BamStore.from_bam_files"
        qn_scope = f"main BAM as {n} samples, one after another (max_workers=1, its default)"
        qn_row: Row | None = None
        qn_store = work / "quantnado.zarr"
        if qn_python is not None:
            inputs = work / "qn_inputs"
            inputs.mkdir()
            bams = []
            for i in range(n):  # QuantNado names samples by file stem: one link per sample
                link = inputs / f"s{i + 1}.bam"
                link.symlink_to(main_bam)
                Path(str(link) + ".bai").symlink_to(bai)
                bams.append(link)
            # warm-up: one sample (imports, page cache); then the n-sample build
            run_once([qn_python, "-c", QUANTNADO_SCRIPT, work / "qn_warmup.zarr", bams[0]])
            qn_row = measure(
                qn_label,
                qn_scope,
                [qn_python, "-c", QUANTNADO_SCRIPT, qn_store, *bams],
                config.quantnado_repeat,
                reads=n * main_reads,
                warmups=0,
                note=qn_text,
                compare=True,
                retry_busy=min(args.retry_busy, 1),  # one run takes a minute
                waiter=waiter,
            )
            qn_row.warmups = 1
            rows.append(qn_row)
        else:
            notes.append(f"QuantNado {qn_text}; target 4 uses the recorded reference figure.")
        rows.append(
            Row(
                "QuantNado reference (recorded figure)",
                f"{n} × {QUANTNADO_REFERENCE_S} s per 5 M reads, sequential",
                reads=n * main_reads,
                status="reference, not measured",
                reference_wall=reference_wall,
            )
        )

    # --- correctness (outside the timing)
    log("checking stores against pysam.depth -a")
    checks: list[tuple[str, str]] = []
    smallest = min(config.main_contigs, key=lambda c: c[1])[0]
    main_check = check_store_against_depth(per_sample, main_bam, full_contigs=[smallest])
    mem_check = check_store_against_depth(mem_store, mem_bam)
    checks += [
        ("per-sample store of the main BAM vs pysam.depth -a", main_check.summary()),
        ("store of the 250 Mbp memory BAM vs pysam.depth -a", mem_check.summary()),
    ]
    results = [main_check, mem_check]
    for mode, store in main_mode_stores.items():
        results.append(check_mode_store(store, main_bam, smallest))
        what = f"--mode {mode} store of the main BAM vs a numpy oracle from pysam records"
        checks.append((what, results[-1].summary()))
    for name, (store, file_store) in stream_stores.items():
        results.append(check_rows_equal(store, file_store))
        checks.append((f"--bam - store of {name} vs the file's store", results[-1].summary()))
    if not extract_only:
        merged_check = check_rows_equal(merged, per_sample)
        built_check = check_rows_equal(built, per_sample)
        checks += [
            (f"merged store: all {n} rows vs the per-sample store", merged_check.summary()),
            (f"built store: all {n} rows vs the per-sample store", built_check.summary()),
        ]
        results += [merged_check, built_check]
    correct = all(c.ok for c in results)

    # --- size on disk
    sizes: list[tuple[str, str, str]] = []
    if not extract_only:
        log("measuring size on disk")
        ours_total = tree_bytes(merged) / n
        ours_chunks = tree_bytes(merged, only_chunks=True) / n
        qn_equiv_chunks = reencode_quantnado_default(per_sample, work / "qn_equivalent.zarr")
        qn_equiv_total = qn_equiv_chunks + (ours_total - ours_chunks)
        chunk_len = json.loads((per_sample / "zarr.json").read_text())["attributes"]["chunk_len"]
        sizes = [
            (
                f"bamstore consolidated store ({n} samples) ÷ {n}",
                fmt_bytes(ours_total),
                f"all files; coverage chunks {fmt_bytes(ours_chunks)}",
            ),
            (
                "QuantNado default codec, same values",
                fmt_bytes(qn_equiv_total),
                "coverage re-encoded by zarr with BloscCodec(zstd, 3, shuffle), chunks "
                f"(1, {chunk_len:,}) "
                f"as QuantNado picks on a local disk: chunks {fmt_bytes(qn_equiv_chunks)}, "
                "plus the same zarr.json and metadata",
            ),
        ]
        if qn_row is not None and qn_store.exists():
            sizes.append(
                (
                    f"QuantNado's own store ({n} samples) ÷ {n}",
                    fmt_bytes(tree_bytes(qn_store) / n),
                    "measured; not the same data: bamnado 0.4.4 counts duplicates and secondary "
                    "reads, shifts by +1 and covers a spliced read as one block",
                )
            )
        try:
            bw_bytes: int | None = write_bigwig(per_sample, work / "coverage.bw")
            sizes.append(
                ("bigWig of the same coverage", fmt_bytes(bw_bytes), "pyBigWig, bedGraph runs")
            )
        except ImportError:
            bw_bytes = None
            sizes.append(("bigWig of the same coverage", "not installed", "pyBigWig is missing"))
        sizes.append(("the BAM itself", fmt_bytes(main_bam.stat().st_size), "for scale"))

    # --- targets
    targets: list[Target] = []
    mosdepth_row = next((r for r in rows if r.label == "mosdepth -n" and r.runs), None)
    if not extract_only:
        if mosdepth_row is not None:
            ratio = extract_row.wall / mosdepth_row.wall
            t1 = next((r for r in rows if r.label == "mosdepth -n -t 1" and r.runs), None)
            also = (
                f"; vs mosdepth -n -t 1 ({t1.wall:.2f} s): {extract_row.wall / t1.wall:.2f}×"
                if t1
                else ""
            )
            targets.append(
                Target(
                    "1",
                    "extract wall ≤ 1.0 × mosdepth -n (default)",
                    f"{extract_row.wall:.2f} s vs {mosdepth_row.wall:.2f} s = {ratio:.2f}×{also}",
                    verdict(ratio <= 1.0),
                )
            )
        else:
            targets.append(
                Target("1", "extract wall ≤ 1.0 × mosdepth -n", "mosdepth not installed", "n/a")
            )
    rss = mem_row.rss_mib or 0.0
    targets.append(
        Target(
            "2",
            f"extract peak RSS ≤ {RSS_TARGET_MIB} MiB, one 250 Mbp contig",
            f"{rss:.0f} MiB",
            verdict(rss <= RSS_TARGET_MIB),
        )
    )
    if not extract_only:
        merge_ratio = merge_row.wall / parts_row.wall
        targets.append(
            Target(
                "3",
                f"merge of {n} ≤ {MERGE_TARGET:.0%} of extracting them",
                f"{merge_row.wall:.2f} s vs {parts_row.wall:.2f} s = {merge_ratio:.1%} "
                f"(--copy: {copy_row.wall:.2f} s = {copy_row.wall / parts_row.wall:.1%})",
                verdict(merge_ratio <= MERGE_TARGET),
            )
        )
        if qn_row is not None:
            speedup = qn_row.wall / build_row.wall
            targets.append(
                Target(
                    "4",
                    f"build --jobs {config.jobs} of {n} ≥ {BUILD_TARGET:g}× faster than QuantNado "
                    "sequential",
                    f"{build_row.wall:.2f} s vs {qn_row.wall:.2f} s measured = {speedup:.1f}× "
                    f"(vs the reference {reference_wall:.1f} s: "
                    f"{reference_wall / build_row.wall:.1f}×)",
                    verdict(speedup >= BUILD_TARGET),
                )
            )
        else:
            speedup = reference_wall / build_row.wall
            targets.append(
                Target(
                    "4",
                    f"build --jobs {config.jobs} of {n} ≥ {BUILD_TARGET:g}× faster than QuantNado "
                    "sequential",
                    f"{build_row.wall:.2f} s vs reference {reference_wall:.1f} s (not measured) = "
                    f"{speedup:.1f}×",
                    verdict(speedup >= BUILD_TARGET),
                )
            )
        targets.append(
            Target(
                "5",
                "store bytes per sample ≤ QuantNado default codec (blosc zstd 3)",
                f"{ours_total / 1e6:.2f} MB vs {qn_equiv_total / 1e6:.2f} MB = "
                f"{ours_total / qn_equiv_total:.3f}×"
                + (f"; bigWig {bw_bytes / 1e6:.2f} MB" if bw_bytes else ""),
                verdict(ours_total <= qn_equiv_total),
            )
        )
    ratios = {mode: row.wall / extract_row.wall for mode, row in main_mode_rows.items()}
    targets.append(
        Target(
            "6",
            f"--mode fragments and cutsites wall ≤ {MODE_TARGET:g} × read mode (main BAM)",
            ", ".join(f"{m} {main_mode_rows[m].wall:.2f} s = {r:.2f}×" for m, r in ratios.items())
            + f" (reads {extract_row.wall:.2f} s)",
            verdict(all(r <= MODE_TARGET for r in ratios.values())),
        )
    )
    mode_rss = {mode: row.rss_mib or 0.0 for mode, row in mem_mode_rows.items()}
    targets.append(
        Target(
            "7",
            f"peak RSS of every mode ≤ {RSS_TARGET_MIB} MiB, one 250 Mbp contig",
            ", ".join(f"{m} {r:.0f} MiB" for m, r in mode_rss.items()) + f" (reads {rss:.0f} MiB)",
            verdict(max(mode_rss.values()) <= RSS_TARGET_MIB),
        )
    )
    targets.append(
        Target(
            "check",
            "stores equal pysam.depth -a (sampled positions, one full contig) and, in the other "
            "modes, their oracle (one full contig)",
            f"{sum(c.positions for c in results):,} positions compared",
            verdict(correct),
        )
    )

    setup = [
        f"main BAM: {main_reads:,} records ({main_reads // 2:,} pairs; ~5% duplicates, ~2% "
        f"secondary, ~2% MAPQ 0; 100 bp, mixed CIGARs with soft clips, I, D and 500 bp/5 kbp "
        f"N gaps) over {contigs_text(config.main_contigs)}; "
        f"{main_bam.stat().st_size / 2**20:.0f} MiB",
        f"memory BAM: {mem_reads:,} records on one {contigs_text(config.mem_contigs)} contig",
        f"method: every command is a subprocess run {rep}× after 1 warm-up run "
        f"(QuantNado: 1 one-sample warm-up, then {config.quantnado_repeat}× the {n}-sample "
        "build, for time); wall = median, CPU = median user+sys of the child and its "
        "waited-for children (os.wait4), peak RSS = max ru_maxrss of the command, from the "
        + (
            "os.wait4 of GNU time, which starts it"
            if rss_launcher() == "gnu-time"
            else "os.wait4 of a `python -S` launcher (so never below about 8 MiB)"
        ),
        "bamstore: output written and compressed (blosc zstd 3, chunks of 1,048,576), "
        "`--chromosomes all`; mosdepth -n writes no per-base output (its summary only) and "
        "corrects mate overlaps, so it does a little more counting and much less writing",
    ]
    if waiter.waited >= 1:
        notes.append(f"waited {waiter.waited:.0f} s in all for other processes to finish")
    busy = [r for r in rows if r.runs and r.other_load >= BUSY_CORES]
    if busy:
        worst = max(busy, key=lambda r: r.other_load)
        notes.append(
            f"⚠ the machine was not quiet: other processes used up to {worst.other_load:.1f} "
            f"cores during {len(busy)} row(s) (worst: {worst.label}); re-run for reliable numbers"
        )
    report = Report(
        machine=machine_info(config, qn_text),
        setup=setup,
        rows=rows,
        targets=targets,
        sizes=sizes,
        checks=checks,
        notes=notes,
    )
    return report, correct


def run_read_section(
    config: Config, args: argparse.Namespace, built: Path | None
) -> tuple[ReadReport, float]:
    """The reading benchmark (read_bench.py) on the store `built` by the core run, or on one
    built here from the cached main BAM when the section runs alone. Returns the report and
    the seconds spent."""
    started = time.monotonic()
    cache = Path(args.cache_dir)
    work = cache / "work_read"
    main_bam, _ = generate_inputs(config, cache, memory_bam=False)
    bamstore = bamstore_exe()
    n = config.samples
    samples = [f"s{i + 1}" for i in range(n)]
    kept = work / f"store_{main_bam.stem}_{n}.zarr"  # reused by the next --section read
    work.mkdir(parents=True, exist_ok=True)
    for old in work.iterdir():
        if old != kept:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    if built is None and kept.exists():
        built = kept
    if built is None or not built.exists():
        sheet = work / "samples.csv"
        bai = Path(str(main_bam) + ".bai")
        sheet.write_text("sample,bam,bai\n" + "".join(f"{s},{main_bam},{bai}\n" for s in samples))
        built = kept
        log(f"building the {n}-sample store for the reading benchmark")
        subprocess.run(
            [
                bamstore,
                "build",
                "--input",
                str(sheet),
                "--out",
                str(built),
                "--jobs",
                str(config.jobs),
                "--chromosomes",
                "all",
                "--overwrite",
                "-q",
            ],
            check=True,
        )
    anchors = read_anchors(config, args, cache)
    waiter = QuietWaiter(args.wait_quiet)
    if args.wait_quiet > 0:
        waiter.wait(args.wait_quiet, window=5)
    section = Section(
        timed=functools.partial(measure, retry_busy=args.retry_busy, waiter=waiter),
        alternating=measure_alternating,
        store_bytes=tree_bytes,
        bamstore=bamstore,
        store=built,
        main_bam=main_bam,
        contigs=config.main_contigs,
        samples=samples,
        work=work,
        repeat=config.repeat,
        threads=config.threads,
        anchors=anchors,
    )
    report = run_read_benchmark(
        section, bamcoverage=args.bamcoverage, deeptools=not args.no_deeptools
    )
    return report, time.monotonic() - started


def read_anchors(config: Config, args: argparse.Namespace, cache: Path) -> Anchors:
    """The reading section's anchors, installed once into venvs under the cache: deeptools
    4.0, pbzarr, pyBigWig and pybigtools; the baseline's bamstore; QuantNado (unless
    --no-quantnado). One that cannot be installed is reported, and its rows say why."""
    python, text = ensure_anchors(cache / "venv-anchors", args.anchors_python)
    baseline, baseline_text = ensure_baseline(
        cache / f"venv-baseline-{args.baseline}", args.baseline
    )
    quantnado, quantnado_text = None, "not run (--no-quantnado)"
    if config.quantnado:
        quantnado, quantnado_text = ensure_quantnado(
            Path(args.quantnado_venv), args.quantnado_python
        )
    for what, found, why in (
        ("anchors", python, text),
        ("baseline", baseline, baseline_text),
        ("QuantNado", quantnado, quantnado_text),
    ):
        log(f"{what}: {why}" if found is None else f"{what}: {why} ({found})")
    return Anchors(python, text, baseline, baseline_text, quantnado, quantnado_text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="1 M-read inputs, 1 repeat (a minute or two)"
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="measured runs per command (default 3; 1 with --quick)",
    )
    ap.add_argument(
        "--samples", type=int, default=8, help="samples for merge and build (default 8)"
    )
    ap.add_argument("--no-quantnado", action="store_true", help="do not install or run QuantNado")
    ap.add_argument(
        "--quantnado-python", default=None, help="a Python >= 3.12 for QuantNado's venv"
    )
    ap.add_argument(
        "--quantnado-venv",
        default=str(HERE.parent / ".venv-quantnado"),
        help="QuantNado's venv, shared with `make quantnado` (default .venv-quantnado)",
    )
    ap.add_argument(
        "--quantnado-repeat", type=int, default=1, help="runs of the QuantNado build (default 1)"
    )
    ap.add_argument("--cache-dir", default=str(CACHE), help="inputs and scratch stores")
    ap.add_argument("--out", default=str(RESULTS / "latest.md"), help="where the table is saved")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=180,
        help="seconds the run may spend in all waiting for other processes to go quiet, "
        "before measuring and before re-doing a disturbed run (default 180; 0: never wait)",
    )
    ap.add_argument(
        "--retry-busy",
        type=int,
        default=3,
        help="re-do up to this many runs per command that other processes disturbed (default 3)",
    )
    ap.add_argument(
        "--strict", action="store_true", help="exit 3 if a target or a reading goal FAILs"
    )
    ap.add_argument(
        "--section",
        choices=("all", "core", "extract", "read"),
        default="all",
        help="core: extraction, merge, build, size; extract: only the bamstore extract rows "
        "(every counting mode, both BAMs) and their checks, for a shared machine; read: "
        "random windows vs pyBigWig and pybigtools, batched and remote reads, summarize, "
        "profile and export vs deeptools 4.0, extract vs the baseline and pbzarr, and the "
        "reading goals; all (default): core and read",
    )
    ap.add_argument(
        "--bamcoverage",
        action="store_true",
        help="also time deeptools 4.0 bamCoverage --binSize 1 on one sample",
    )
    ap.add_argument(
        "--no-deeptools",
        action="store_true",
        help="reading section: no multiBigwigSummary or computeMatrix rows",
    )
    ap.add_argument(
        "--anchors-python",
        default=None,
        help="a Python >= 3.12 for the anchors' venv (deeptools 4.0, pbzarr, pyBigWig, "
        "pybigtools; default: found on PATH or under pyenv)",
    )
    ap.add_argument(
        "--baseline",
        default=BASELINE,
        help=f"the commit whose `bamstore extract` is today's (default {BASELINE}): time and "
        "size goals",
    )
    args = ap.parse_args(argv)
    config = Config.from_args(args)
    started = time.monotonic()
    try:
        if args.section == "read":
            report = Report(machine_info(config, "not run (--section read)"), [], [], [], [], [])
            correct = True
        else:
            report, correct = run_benchmark(config, args)
        if args.section in ("all", "read"):
            built = Path(args.cache_dir) / "work" / "build.zarr"
            read, seconds = run_read_section(config, args, built if args.section == "all" else None)
            report.read = read
            correct = correct and read.ok
            report.notes.append(f"the reading section took {seconds:.0f} s")
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    if config.quick:
        report.notes.append(
            "--quick: 1 M-read inputs and 1 run each; start-up costs weigh more at this size, so "
            "the verdicts are indicative only (the targets are defined on the full run)"
        )
    report.notes.append(f"the whole run took {time.monotonic() - started:.0f} s")
    text = format_report(report)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"saved {out}")
    if not correct:
        print(
            "bench: error: a store differs from pysam.depth -a, or bamstore's answers from "
            "another reader's (see above)",
            file=sys.stderr,
        )
        return 1
    if args.strict and any_failed(report):
        return 3
    return 0


def any_failed(report: Report) -> bool:
    """A core target or a reading goal FAILed (n/a, not measured, is no failure): what
    --strict turns into exit 3."""
    read_failed = report.read is not None and any(g.ok is False for g in report.read.goals)
    return read_failed or any(t.verdict == "FAIL" for t in report.targets)


if __name__ == "__main__":
    sys.exit(main())
