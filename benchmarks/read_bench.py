"""The reading benchmark: bamstore summarize/profile/export against deeptools.

Same data on both sides: the consolidated store of the main BAM as N samples, and N bigWigs
exported from that store by `bamstore export` (so deeptools reads exactly our coverage, zeros
written). Timed, each as a subprocess (run.py's `measure`):
  - `bamstore summarize` of 100,000 x 1 kb regions vs `multiBigwigSummary BED-file`;
  - the same summarize with 10,000 and 1,000,000 regions (peak RSS must not follow the count);
  - `bamstore profile` of 10,000 points (-1000/+1000 bp, 50 bp bins) vs `computeMatrix
    reference-point` with the same window, bins and reference point;
  - `bamstore export --format bigwig` of one sample, and with `--bamcoverage` deeptools'
    `bamCoverage --binSize 1` on the BAM (about 100 s per million reads here: opt-in).
Outside the timing, the values of both sides are compared (deeptools reads our bigWigs through
pyBigWig's `stats` and `values`, in float32).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REGIONS = 100_000
REGION_LEN = 1000
SMALL_REGIONS = 10_000
LARGE_REGIONS = 1_000_000
POINTS = 10_000
FLANK = 1000
PROFILE_BIN = 50
SPEED_TARGET = 10.0  # x faster than deeptools
SEED = 13


@dataclass
class Pair:
    """One of ours next to the deeptools command that does the same job."""

    ours: Any  # run.Row
    theirs: Any | None  # run.Row, or None when not measured
    what: str

    @property
    def speedup(self) -> float | None:
        if self.theirs is None or not self.theirs.runs or not self.ours.runs:
            return None
        return self.theirs.wall / self.ours.wall


@dataclass
class ReadReport:
    pairs: list[Pair] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)  # rows without a deeptools twin
    checks: list[tuple[str, str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for *_, ok in self.checks)


def deeptools_exe(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def write_regions(path: Path, contigs: Sequence[tuple[str, int]], n: int, seed: int) -> Path:
    """n regions of REGION_LEN, contigs by length, sorted as a BED usually is."""
    rng = np.random.default_rng(seed)
    lengths = np.array([length for _, length in contigs], dtype=np.float64)
    which = rng.choice(len(contigs), size=n, p=lengths / lengths.sum())
    rows = []
    for i, (name, length) in enumerate(contigs):
        starts = np.sort(rng.integers(0, length - REGION_LEN, size=int((which == i).sum())))
        rows += [f"{name}\t{s}\t{s + REGION_LEN}\tr{i}_{j}\n" for j, s in enumerate(starts)]
    path.write_text("".join(rows))
    return path


def write_points(path: Path, contigs: Sequence[tuple[str, int]], n: int, seed: int) -> Path:
    """n one-base features (TSS-like) with random strands, windows inside their contig."""
    rng = np.random.default_rng(seed)
    lengths = np.array([length for _, length in contigs], dtype=np.float64)
    which = rng.choice(len(contigs), size=n, p=lengths / lengths.sum())
    rows = []
    for i, (name, length) in enumerate(contigs):
        count = int((which == i).sum())
        starts = np.sort(rng.integers(FLANK, length - FLANK - 1, size=count))
        strands = rng.choice(["+", "-"], size=count)
        rows += [
            f"{name}\t{s}\t{s + 1}\tp{i}_{j}\t0\t{st}\n"
            for j, (s, st) in enumerate(zip(starts, strands, strict=True))
        ]
    path.write_text("".join(rows))
    return path


def run_read_benchmark(
    *,
    timed: Callable[..., Any],
    bamstore: str,
    store: Path,
    main_bam: Path,
    contigs: Sequence[tuple[str, int]],
    samples: Sequence[str],
    work: Path,
    repeat: int,
    threads: int,
    bamcoverage: bool,
    deeptools: bool = True,
) -> ReadReport:
    report = ReadReport()
    work.mkdir(parents=True, exist_ok=True)
    t = str(threads)
    regions = write_regions(work / "regions.bed", contigs, REGIONS, SEED)
    small = write_regions(work / "regions_10k.bed", contigs, SMALL_REGIONS, SEED + 1)
    large = write_regions(work / "regions_1M.bed", contigs, LARGE_REGIONS, SEED + 2)
    points = write_points(work / "points.bed", contigs, POINTS, SEED + 3)
    n = len(samples)
    report.setup.append(
        f"reading: the build store of the main BAM as {n} samples; {REGIONS:,} regions of "
        f"{REGION_LEN:,} bp and {POINTS:,} points (random strand, -{FLANK}/+{FLANK} bp, "
        f"{PROFILE_BIN} bp bins), uniform over the genome; deeptools reads {n} bigWigs made by "
        "`bamstore export` from the same store (zeros written), with -p "
        f"{threads}; bamstore with --threads {threads}"
    )

    # --- export: one sample timed, the others made once for deeptools
    bigwigs = [work / f"{s}.bw" for s in samples]
    export_cmd = [bamstore, "export", store, "--sample", samples[0], "--format", "bigwig"]
    export_row = timed(
        f"bamstore export --format bigwig --threads {t}",
        "1 sample of the store, every base, to a bigWig",
        [*export_cmd, "--threads", t, "-o", bigwigs[0], "-q"],
        repeat,
        compare=False,
    )
    for sample, out in zip(samples[1:], bigwigs[1:] if deeptools else [], strict=False):
        subprocess.run(
            [
                bamstore,
                "export",
                str(store),
                "--sample",
                sample,
                "--format",
                "bigwig",
                "--threads",
                t,
                "-o",
                str(out),
                "-q",
            ],
            check=True,
        )
    coverage = deeptools_exe("bamCoverage") if deeptools else None
    cov_row = None
    if bamcoverage and coverage:
        cov_row = timed(
            f"bamCoverage --binSize 1 -p {t}",
            "the main BAM (1 sample) to a bigWig, every base",
            [coverage, "-b", main_bam, "-o", work / "bamcoverage.bw", "--binSize", "1", "-p", t],
            1,
            warmups=0,
            compare=False,
        )
    elif not bamcoverage:
        report.notes.append(
            "bamCoverage --binSize 1 not run (about 100 s per million reads here; "
            "--bamcoverage adds it)"
        )
    report.pairs.append(Pair(export_row, cov_row, "bigWig of one sample"))

    # --- summarize vs multiBigwigSummary
    ours_tsv = work / "summary.tsv"
    summary_row = timed(
        f"bamstore summarize --threads {t}",
        f"{REGIONS:,} regions x {n} samples, mean",
        [bamstore, "summarize", store, "--bed", regions, "--threads", t, "-o", ours_tsv, "-q"],
        repeat,
        compare=False,
    )
    summary_tool = deeptools_exe("multiBigwigSummary") if deeptools else None
    theirs_row = None
    theirs_tsv = work / "mbs.tsv"
    if summary_tool:
        theirs_row = timed(
            f"multiBigwigSummary BED-file -p {t}",
            f"{REGIONS:,} regions x {n} bigWigs, mean",
            [
                summary_tool,
                "BED-file",
                "-b",
                *bigwigs,
                "--BED",
                regions,
                "-p",
                t,
                "-o",
                work / "mbs.npz",
                "--outRawCounts",
                theirs_tsv,
            ],
            repeat,
            compare=False,
        )
    elif deeptools:
        report.notes.append("deeptools is not installed: pip install '.[bench]'")
    else:
        report.notes.append("deeptools not run (--no-deeptools)")
    report.pairs.append(Pair(summary_row, theirs_row, f"summary of {REGIONS:,} regions"))
    for path, count in ((small, SMALL_REGIONS), (large, LARGE_REGIONS)):
        report.extra.append(
            timed(
                f"bamstore summarize --threads {t}",
                f"{count:,} regions x {n} samples, mean (memory vs region count)",
                [
                    bamstore,
                    "summarize",
                    store,
                    "--bed",
                    path,
                    "--threads",
                    t,
                    "-o",
                    work / f"summary_{count}.tsv",
                    "-q",
                ],
                1,
                compare=False,
            )
        )

    # --- profile vs computeMatrix reference-point
    ours_npz = work / "profile.npz"
    profile_row = timed(
        f"bamstore profile --threads {t}",
        f"{POINTS:,} points x {n} samples, {2 * FLANK // PROFILE_BIN} bins",
        [
            bamstore,
            "profile",
            store,
            "--bed",
            points,
            "--upstream",
            FLANK,
            "--downstream",
            FLANK,
            "--bin",
            PROFILE_BIN,
            "--threads",
            t,
            "-o",
            ours_npz,
            "-q",
        ],
        repeat,
        compare=False,
    )
    matrix_tool = deeptools_exe("computeMatrix") if deeptools else None
    theirs_matrix = work / "cm.gz"
    matrix_row = None
    if matrix_tool:
        matrix_row = timed(
            f"computeMatrix reference-point -p {t}",
            f"{POINTS:,} points x {n} bigWigs, {2 * FLANK // PROFILE_BIN} bins",
            [
                matrix_tool,
                "reference-point",
                "-S",
                *bigwigs,
                "-R",
                points,
                "-a",
                FLANK,
                "-b",
                FLANK,
                "--binSize",
                PROFILE_BIN,
                "-p",
                t,
                "-o",
                theirs_matrix,
            ],
            repeat,
            compare=False,
        )
    report.pairs.append(Pair(profile_row, matrix_row, f"profile of {POINTS:,} points"))

    # --- the same numbers (outside the timing)
    if theirs_row is not None:
        report.checks += compare_summaries(ours_tsv, theirs_tsv, bigwigs, samples)
    if matrix_row is not None:
        report.checks.append(compare_profiles(ours_npz, theirs_matrix))
    rss = [r.rss_mib for r in [*report.extra, summary_row] if r.rss_mib is not None]
    if rss:
        report.notes.append(
            "summarize peak RSS for 10k / 100k / 1M regions: "
            + " / ".join(
                f"{r.rss_mib:.0f} MiB" for r in (report.extra[0], summary_row, report.extra[1])
            )
        )
    return report


def compare_summaries(
    ours: Path, theirs: Path, bigwigs: Sequence[Path], samples: Sequence[str]
) -> list[tuple[str, str, bool]]:
    """Our means vs the exact means of the same bigWigs (pyBigWig `stats(exact=True)`, on the
    first 2,000 regions), and how far multiBigwigSummary's are from them: it calls `stats`
    without `exact`, which answers from the bigWig's zoom levels, an approximation."""
    import pandas as pd
    import pyBigWig

    key = ["chrom", "start", "end"]
    mine = pd.read_csv(ours, sep="\t").drop(columns="name").drop_duplicates(key)
    head = mine.head(2000)
    exact = np.empty((len(head), len(samples)))
    for j, path in enumerate(bigwigs):
        bw = pyBigWig.open(str(path))
        for i, (chrom, start, end) in enumerate(head[key].itertuples(index=False)):
            exact[i, j] = bw.stats(chrom, int(start), int(end), exact=True)[0]
        bw.close()
    worst = _worst_excess(head[list(samples)].to_numpy(dtype=np.float64), exact)
    checks = [
        (
            "summarize vs pyBigWig stats(exact=True) on the exported bigWigs",
            f"{len(head):,} regions x {len(samples)} samples; largest difference {worst:.2f} of "
            "the tolerance (1e-6 relative + 5e-7: bigWigs hold float32)",
            worst <= 1.0,
        )
    ]
    other = pd.read_csv(theirs, sep="\t")
    other.columns = [*key, *samples]
    merged = mine.merge(other.drop_duplicates(key), on=key, suffixes=("", "_dt"))
    a = merged[list(samples)].to_numpy(dtype=np.float64)
    b = merged[[f"{s}_dt" for s in samples]].to_numpy(dtype=np.float64)
    rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-12)
    off = float(np.mean(_excess(a, b) > 1.0)) if a.size else float("nan")
    checks.append(
        (
            "multiBigwigSummary vs the exact means (information)",
            f"{len(merged):,} of {len(mine):,} distinct regions matched; {off:.1%} of its values "
            f"differ beyond the tolerance, median relative difference {np.nanmedian(rel):.1e}, "
            f"largest {np.nanmax(rel):.1e}: deeptools 3.5 reads bigWig zoom levels "
            "(pyBigWig stats without exact=True), so its means are approximate",
            len(merged) == len(mine),
        )
    )
    return checks


def _excess(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / (5e-7 + 1e-6 * np.abs(a))


def _worst_excess(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| as a fraction of the tolerance 5e-7 + 1e-6 |a| (<= 1: agree)."""
    if not a.size:
        return float("nan")
    return float(np.nanmax(_excess(a, b)))


def compare_profiles(ours: Path, theirs: Path) -> tuple[str, str, bool]:
    """Our profile matrix vs computeMatrix's, both region-major after reshaping."""
    with np.load(ours) as npz:
        matrix = npz["matrix"]  # samples x regions x bins
        regions = npz["regions"]
    with gzip.open(theirs, "rt") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh if not line.startswith("@")]
    keys = {(r[0], int(r[1]), int(r[2])): np.array(r[6:], dtype=np.float64) for r in rows}
    n_samples, _, n_bins = matrix.shape
    worst, matched = 0.0, 0
    for i, region in enumerate(regions):
        theirs_row = keys.get((str(region["chrom"]), int(region["start"]), int(region["end"])))
        if theirs_row is None:
            continue
        matched += 1
        worst = max(worst, _worst_excess(matrix[:, i, :].reshape(-1), theirs_row))
    ok = matched == len(regions) and worst <= 1.0
    return (
        "profile vs computeMatrix reference-point",
        f"{matched:,} of {len(regions):,} regions matched, {n_samples} samples x {n_bins} bins; "
        f"largest difference {worst:.2f} of the tolerance (as above; computeMatrix prints 6 "
        "decimals)",
        ok,
    )


def format_read_section(report: ReadReport) -> list[str]:
    lines = ["", "## Reading: bamstore vs deeptools on the same coverage", ""]
    lines += [f"- {item}" for item in report.setup]
    lines += [
        "",
        "| job | command | scope | median wall s | CPU s | peak RSS MiB | runs |"
        " × faster than deeptools |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]

    def row_line(job: str, row: Any, ratio: str) -> str:
        runs = f"{len(row.runs)} (+{row.warmups} warm-up)" if row.runs else row.status
        if row.runs and row.other_load >= 0.1:
            runs += f" ⚠ others used {row.other_load:.1f} cores"
        rss = "—" if row.rss_mib is None else f"{row.rss_mib:.0f}"
        wall = "—" if row.wall is None else f"{row.wall:.2f}"
        cpu = "—" if row.cpu is None else f"{row.cpu:.2f}"
        return f"| {job} | {row.label} | {row.scope} | {wall} | {cpu} | {rss} | {runs} | {ratio} |"

    for pair in report.pairs:
        speed = pair.speedup
        lines.append(row_line(pair.what, pair.ours, "—" if speed is None else f"**{speed:.1f}×**"))
        if pair.theirs is not None:
            lines.append(row_line(pair.what, pair.theirs, "1.0×"))
    for row in report.extra:
        lines.append(row_line("memory check", row, "—"))
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    for pair in report.pairs[1:]:
        speed = pair.speedup
        verdict = "n/a" if speed is None else ("PASS" if speed >= SPEED_TARGET else "FAIL")
        measured = (
            "not measured"
            if speed is None
            else (f"{pair.ours.wall:.2f} s vs {pair.theirs.wall:.2f} s = {speed:.1f}×")
        )
        lines.append(
            f"| {pair.what}: ≥ {SPEED_TARGET:g}× faster than deeptools | {measured} "
            f"| **{verdict}** |"
        )
    if report.checks:
        lines += ["", "Same numbers (outside the timing):", ""]
        lines += [
            f"- {what}: {'PASS' if ok else 'FAIL'}: {text}" for what, text, ok in report.checks
        ]
    if report.notes:
        lines += [""] + [f"- {note}" for note in report.notes]
    return lines
