"""The reading benchmark: bamstore against the tools and files the store replaces, with the
reading goals checked (PASS/FAIL) in one run.

Same data on every side: the consolidated store of the main BAM as N samples, and bigWigs
exported from that store by `bamstore export` (zeros written, so every reader reads exactly our
coverage). The anchors run in a Python >= 3.12 venv of their own (anchors_env.py): deeptools
4.0.0, pbzarr 0.7.0, pyBigWig, pybigtools; "today's" bamstore (the baseline commit) in another.
Timed as subprocesses (run.py's `measure`: wall, CPU, peak RSS):
  - extraction of the main BAM: `bamstore extract --threads 2`, the baseline's, and pbzarr's
    `import_bam` (time and store size);
  - `bamstore summarize` of 100,000 x 1 kb regions vs deeptools 4 `multiBigwigSummary BED-file`,
    and with 10,000 and 1,000,000 regions (peak RSS must not follow the count);
  - `bamstore profile` of 10,000 points (-1000/+1000 bp, 50 bp bins) vs `computeMatrix
    reference-point` with the same window, bins and reference point;
  - `bamstore export --format bigwig` of one sample (and `bamCoverage --binSize 1` with
    `--bamcoverage`);
  - the store served over loopback HTTP (Range requests, kept-alive connections as nginx and
    S3): summarize of 10,000 regions, there and locally.
Timed in-process (window_bench.py, one process per reader, best of 5): random 2 kb windows with
BamStore.extract_region, pyBigWig and pybigtools; across 4, all and 100 samples; batched with
extract_regions and iter_regions; and through BamStore.open(URL), from a server that keeps
connections alive and from one that closes each (HTTP/1.0, as `python -m http.server`).
Outside the timing every side's values are compared, and QuantNado 0.4.3 reads the store.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from window_bench import (
    BATCH,
    COHORT,
    COHORT_WINDOWS,
    PASSES,
    WINDOW_LEN,
    WINDOW_SEED,
    WINDOWS,
    WindowRow,
    link_copies,
    loopback,
    make_cohort,
    same_sums,
    time_windows,
    times,
    write_windows,
)

REGIONS = 100_000
REGION_LEN = 1000
SMALL_REGIONS = 10_000
LARGE_REGIONS = 1_000_000
POINTS = 10_000
FLANK = 1000
PROFILE_BIN = 50
EXTRACT_REPEAT = 5  # alternating runs of extract and the baseline's (goal 5a)
SEED = 13
# the goals (benchmarks/README.md, "Reading goals")
SPEED_TARGET = 10.0  # profile and summarize: x faster than deeptools 4.0
RSS_LIMIT_MIB = 150  # profile and summarize peak RSS
ONE_SAMPLE_TARGET = 3.0  # a 2 kb window of one sample: x faster than pyBigWig
FOUR_SAMPLE_LIMIT = 2.0  # a window of 4 samples: at most x the one-sample time
COHORT_TARGET = 10.0  # a window of 100 samples: x faster than 100 bigWigs
REMOTE_LIMIT = 3.0  # over loopback HTTP: at most x the local time
EXTRACT_LIMIT = 1.1  # extract time and store size: at most x the baseline's
PBZARR_SCRIPT = (
    "import shutil, sys\n"
    "import pbzarr\n"
    "out, bam = sys.argv[1], sys.argv[2]\n"
    "shutil.rmtree(out, ignore_errors=True)\n"
    "pbzarr.create_store(out)\n"
    "pbzarr.import_bam(out, 'depth', [bam], workers=2, overlap='none')\n"
)
QUANTNADO_SCRIPT = (
    "import json, sys\n"
    "import numpy as np\n"
    "from quantnado.dataset.store_bam import BamStore\n"
    "store = BamStore.open(sys.argv[1])\n"
    "regions = json.loads(sys.argv[2])\n"
    "values = [np.asarray(store.extract_region(r, as_xarray=False)) for r in regions]\n"
    "np.savez(sys.argv[3], *values)\n"
    "print(json.dumps(list(store.sample_names)))\n"
)


@dataclass
class Anchors:
    """Where the anchors live: the anchors' venv (deeptools 4, pbzarr, pyBigWig, pybigtools),
    the baseline's bamstore and QuantNado's venv; each None with the reason in its text."""

    python: Path | None = None
    text: str = "not installed"
    baseline: Path | None = None
    baseline_text: str = "not installed"
    quantnado: Path | None = None
    quantnado_text: str = "not run"

    def tool(self, name: str) -> str | None:
        return None if self.python is None else str(self.python.parent / name)


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
class Goal:
    number: str
    text: str
    measured: str
    ok: bool | None  # None: not measured (an anchor missing)

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else ("PASS" if self.ok else "FAIL")


@dataclass
class ReadReport:
    pairs: list[Pair] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)  # rows without a deeptools twin
    checks: list[tuple[str, str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    windows: dict[str, WindowRow] = field(default_factory=dict)
    extraction: dict[str, Any] = field(default_factory=dict)  # run.Row by who extracts
    sizes: dict[str, int] = field(default_factory=dict)  # store bytes by who extracts
    remote: list[Pair] = field(default_factory=list)  # (local row, remote row) pairs
    goals: list[Goal] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for *_, ok in self.checks)


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


@dataclass
class Section:
    """What every part of the section reads and runs with; `timed` is run.py's `measure`,
    `store_bytes` its tree_bytes."""

    timed: Callable[..., Any]
    alternating: Callable[..., list[Any]]  # run.py's measure_alternating
    store_bytes: Callable[[Path], int]
    bamstore: str
    store: Path  # the build store of the main BAM as N samples
    main_bam: Path
    contigs: Sequence[tuple[str, int]]
    samples: Sequence[str]
    work: Path
    repeat: int
    threads: int
    anchors: Anchors
    report: ReadReport = field(default_factory=ReadReport)

    @property
    def t(self) -> str:
        return str(self.threads)

    @property
    def python(self) -> str:
        """bamstore's Python (the in-process window timers run in it)."""
        return str(Path(self.bamstore).parent / "python")


def run_read_benchmark(s: Section, *, bamcoverage: bool, deeptools: bool = True) -> ReadReport:
    """Every row of the section, its value checks and its goals."""
    report, timed, anchors, t = s.report, s.timed, s.anchors, s.t
    s.work.mkdir(parents=True, exist_ok=True)
    report.setup += [
        f"reading: the build store of the main BAM as {len(s.samples)} samples (default "
        "layout); bigWigs made from it by `bamstore export` (zeros written); bamstore with "
        f"--threads {t}, deeptools with -p {t}",
        f"anchors' venv: {anchors.text}",
        f"baseline (today's extract): {anchors.baseline_text}",
        f"QuantNado: {anchors.quantnado_text}",
    ]
    part = extraction_rows(s)

    # --- export: one sample timed, the others made once for deeptools
    bigwigs = [s.work / f"{name}.bw" for name in s.samples]
    export = [s.bamstore, "export", s.store, "--format", "bigwig", "--threads", t, "-q"]
    export_row = timed(
        f"bamstore export --format bigwig --threads {t}",
        "1 sample of the store, every base, to a bigWig",
        [*export, "--sample", s.samples[0], "-o", bigwigs[0]],
        s.repeat,
        compare=False,
    )
    use_deeptools = deeptools and anchors.python is not None
    for sample, out in zip(s.samples[1:], bigwigs[1:] if use_deeptools else [], strict=False):
        subprocess.run([*map(str, export), "--sample", sample, "-o", str(out)], check=True)
    coverage = anchors.tool("bamCoverage") if deeptools else None
    cov_row = None
    if bamcoverage and coverage:
        cov_row = timed(
            f"bamCoverage --binSize 1 -p {t} (deeptools 4.0)",
            "the main BAM (1 sample) to a bigWig, every base",
            [
                coverage,
                "-b",
                s.main_bam,
                "-o",
                s.work / "bamcoverage.bw",
                "--binSize",
                "1",
                "-p",
                t,
            ],
            1,
            warmups=0,
            compare=False,
        )
    elif not bamcoverage:
        report.notes.append("bamCoverage --binSize 1 not run (--bamcoverage adds it)")
    report.pairs.append(Pair(export_row, cov_row, "bigWig of one sample"))

    window_rows(s, part, bigwigs[0])
    deeptools_pairs(s, bigwigs, deeptools)
    if not deeptools:
        report.notes.append("deeptools not run (--no-deeptools)")
    remote_rows(s)
    quantnado_check(s)
    report.goals = goals(report)
    return report


# ---------------------------------------------------------------------------- extraction


def extraction_rows(s: Section) -> Path:
    """`bamstore extract --threads 2` of the main BAM, the baseline's and pbzarr's import_bam,
    one after the other in this run; their store sizes. Returns our per-sample store."""
    report, timed, anchors, bamstore = s.report, s.timed, s.anchors, s.bamstore
    bam, work, repeat, store_bytes = s.main_bam, s.work, s.repeat, s.store_bytes
    scope = "the main BAM, one sample (default settings, --chromosomes all)"
    extract = ["extract", "--bam", bam, "--sample", "s1", "--chromosomes", "all"]
    extract += ["--threads", "2", "--overwrite", "-q"]
    ours = work / "extract-ours.zarr"
    ours_job = ("bamstore extract --threads 2", scope, [bamstore, *extract, "--out", ours])
    if anchors.baseline is not None:  # runs alternate: their ratio is goal 5a
        baseline = work / "extract-baseline.zarr"
        label = f"bamstore extract --threads 2 ({anchors.baseline_text})"
        baseline_job = (label, scope, [anchors.baseline, *extract, "--out", baseline])
        rows = s.alternating([ours_job, baseline_job], EXTRACT_REPEAT if repeat > 1 else repeat)
        report.extraction["ours"], report.extraction["baseline"] = rows
        report.sizes["baseline"] = store_bytes(baseline)
        report.checks.append(same_store_values(ours, baseline))
    else:
        report.extraction["ours"] = timed(*ours_job, repeat)
    report.sizes["ours"] = store_bytes(ours)
    if anchors.python is not None:
        pbz = work / "pbzarr.zarr"
        report.extraction["pbzarr"] = timed(
            "pbzarr.import_bam(workers=2, overlap='none')",
            "the main BAM, one sample (per-base depth, pbzarr's defaults)",
            [anchors.python, "-c", PBZARR_SCRIPT, pbz, bam],
            repeat,
        )
        report.sizes["pbzarr"] = store_bytes(pbz)
    return ours


def same_store_values(ours: Path, baseline: Path) -> tuple[str, str, bool]:
    """Our per-sample store equals the baseline's, whole smallest contig (read with zarr)."""
    import zarr

    a, b = zarr.open_group(str(ours), mode="r"), zarr.open_group(str(baseline), mode="r")
    sizes = dict(a.attrs["chromsizes"])
    contig = min(sizes, key=sizes.get)
    equal = bool(np.array_equal(a[contig][0, :], b[contig][0, :]))
    differ = sizes != dict(b.attrs["chromsizes"])
    return (
        "our extract vs the baseline's (zarr's reading)",
        f"contigs {'differ' if differ else 'the same'}; {contig} ({sizes[contig]:,} positions) "
        + ("equal" if equal else "differs"),
        equal and not differ,
    )


# ---------------------------------------------------------------------------- windows


def window_rows(s: Section, part: Path, bigwig: Path) -> None:
    """Random 2 kb windows, in-process per reader; batched reads for loaders."""
    report, timed, anchors, bamstore = s.report, s.timed, s.anchors, s.bamstore
    store, samples, contigs, work = s.store, s.samples, s.contigs, s.work
    windows = write_windows(work / "windows.bed", contigs, WINDOWS, WINDOW_SEED)
    few = work / "windows-cohort.bed"
    few.write_text("".join(windows.read_text().splitlines(keepends=True)[:COHORT_WINDOWS]))
    four = list(samples[:4])
    rows = report.windows

    def timer(key: str, python: Any, label: str, where: str, tool: list[Any], n=WINDOWS) -> None:
        scope = f"{n:,} random {WINDOW_LEN // 1000} kb windows, {where}"
        if python is None:
            rows[key] = WindowRow(label, scope, status=anchors.text)
        else:
            path = windows if n == WINDOWS else few
            rows[key] = time_windows(timed, python, path, label, scope, tool)

    region, ours, theirs = "BamStore.extract_region", s.python, anchors.python
    timer("one", ours, f"{region}, samples=[s1]", "1 sample", ["region", store, samples[0]])
    timer("pybigwig", theirs, "pyBigWig values(numpy=True)", "1 bigWig", ["pybigwig", bigwig])
    timer("pybigtools", theirs, "pybigtools values", "1 bigWig", ["pybigtools", bigwig])
    timer("four", ours, f"{region}, {len(four)} samples", f"{len(four)} samples",
          ["region", store, ",".join(four)])  # fmt: skip
    timer("all", ours, f"{region}, all {len(samples)} samples", f"{len(samples)} samples",
          ["region", store, "all"])  # fmt: skip
    cohort = make_cohort(part, work, COHORT, bamstore)
    timer("cohort", ours, f"{region}, all {COHORT} samples", f"a {COHORT}-sample store of "
          "clones", ["region", cohort, "all"], COHORT_WINDOWS)  # fmt: skip
    copies = link_copies(bigwig, work / "cohort-bigwigs", COHORT)
    timer("cohort_bw", theirs, f"pyBigWig values(numpy=True), {COHORT} open files",
          f"{COHORT} bigWigs (hard links of one)", ["pybigwig", *copies],
          COHORT_WINDOWS)  # fmt: skip
    batch = f"{len(four)} samples, batches of {BATCH}"
    timer("regions", ours, "BamStore.extract_regions", batch,
          ["regions", store, ",".join(four), BATCH])  # fmt: skip
    timer("iter", ours, "BamStore.iter_regions(BED)", batch,
          ["iter", store, ",".join(four), BATCH])  # fmt: skip
    for key, base, what in (
        ("pybigwig", "one", "BamStore's time"),
        ("pybigtools", "one", "BamStore's time"),
        ("four", "one", "the 1-sample time"),
        ("all", "one", "the 1-sample time"),
        ("cohort_bw", "cohort", f"BamStore's time ({COHORT} samples)"),
        ("regions", "four", f"one extract_region per window ({len(four)} samples)"),
        ("iter", "four", f"one extract_region per window ({len(four)} samples)"),
    ):
        rows[key].versus = times(rows[key], rows[base], what)

    checks = [
        ("pybigwig", "one", None, "pyBigWig vs extract_region, 1 sample"),
        ("pybigtools", "one", None, "pybigtools vs extract_region, 1 sample"),
        ("four", "one", slice(0, 1), "extract_region: s1 of 4 samples vs alone"),
        ("regions", "four", None, "extract_regions vs extract_region, 4 samples"),
        ("iter", "four", None, "iter_regions vs extract_region, 4 samples"),
        ("cohort_bw", "cohort", None, f"{COHORT} bigWigs vs the {COHORT}-sample store"),
        ("cohort", "one", slice(0, 1), f"a sample of the {COHORT}-sample store vs s1"),
    ]
    for other, reference, columns, what in checks:  # other's `columns` vs all of reference's
        a, b = rows[reference], rows[other]
        if a.sums is None or b.sums is None:
            continue
        problem = same_sums(a, b, columns)
        report.checks.append(
            (
                f"windows: {what}",
                f"per-sample sums of the first {min(len(a.sums), len(b.sums))} windows "
                + ("equal" if problem is None else f"differ: {problem}"),
                problem is None,
            )
        )


# ---------------------------------------------------------------------------- deeptools


def deeptools_pairs(s: Section, bigwigs: Sequence[Path], deeptools: bool) -> None:
    """summarize vs multiBigwigSummary BED-file, profile vs computeMatrix reference-point
    (deeptools 4.0 from the anchors' venv; `anchors` None: bamstore's rows only)."""
    report, timed, bamstore, store = s.report, s.timed, s.bamstore, s.store
    samples, contigs, work, t, repeat = s.samples, s.contigs, s.work, s.t, s.repeat
    anchors = s.anchors if deeptools and s.anchors.python is not None else None
    n = len(samples)
    regions = write_regions(work / "regions.bed", contigs, REGIONS, SEED)
    small = write_regions(work / "regions_10k.bed", contigs, SMALL_REGIONS, SEED + 1)
    large = write_regions(work / "regions_1M.bed", contigs, LARGE_REGIONS, SEED + 2)
    points = write_points(work / "points.bed", contigs, POINTS, SEED + 3)
    report.setup.append(
        f"summarize: {REGIONS:,} regions of {REGION_LEN:,} bp; profile: {POINTS:,} points "
        f"(random strand, -{FLANK}/+{FLANK} bp, {PROFILE_BIN} bp bins); uniform over the genome"
    )
    ours_tsv = work / "summary.tsv"
    summary_row = timed(
        f"bamstore summarize --threads {t}",
        f"{REGIONS:,} regions x {n} samples, mean",
        [bamstore, "summarize", store, "--bed", regions, "--threads", t, "-o", ours_tsv, "-q"],
        repeat,
        compare=False,
    )
    theirs_row = None
    theirs_tsv = work / "mbs.tsv"
    if anchors is not None:
        theirs_row = timed(
            f"multiBigwigSummary BED-file -p {t} (deeptools 4.0)",
            f"{REGIONS:,} regions x {n} bigWigs, mean",
            [
                anchors.tool("multiBigwigSummary"),
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

    ours_npz = work / "profile.npz"
    bins = 2 * FLANK // PROFILE_BIN
    profile_row = timed(
        f"bamstore profile --threads {t}",
        f"{POINTS:,} points x {n} samples, {bins} bins",
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
    theirs_matrix = work / "cm.gz"
    matrix_row = None
    if anchors is not None:
        matrix_row = timed(
            f"computeMatrix reference-point -p {t} (deeptools 4.0)",
            f"{POINTS:,} points x {n} bigWigs, {bins} bins",
            [
                anchors.tool("computeMatrix"),
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

    # the same numbers (outside the timing)
    if theirs_row is not None:
        report.checks += compare_summaries(ours_tsv, theirs_tsv, bigwigs, samples)
    if matrix_row is not None:
        report.checks.append(compare_profiles(ours_npz, theirs_matrix))
    report.notes.append(
        "summarize peak RSS for 10k / 100k / 1M regions: "
        + " / ".join(
            f"{r.rss_mib:.0f} MiB" for r in (report.extra[0], summary_row, report.extra[1])
        )
    )


def compare_summaries(
    ours: Path, theirs: Path, bigwigs: Sequence[Path], samples: Sequence[str]
) -> list[tuple[str, str, bool]]:
    """Our means vs the exact means of the same bigWigs (pyBigWig `stats(exact=True)`, on the
    first 2,000 regions), and how far multiBigwigSummary's are from them (deeptools 3.5 called
    `stats` without `exact`, which answers from the bigWig's zoom levels)."""
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
            f"largest {np.nanmax(rel):.1e} (deeptools 4.0's means differ as 3.5's did, which "
            "read bigWig zoom levels)",
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


# ---------------------------------------------------------------------------- remote


def remote_rows(s: Section) -> None:
    """The store over loopback HTTP (tests/servers.py: Range requests, requests counted), in
    a thread of the harness: summarize of 10,000 regions and the random windows, there and
    locally."""
    report, timed, bamstore, store = s.report, s.timed, s.bamstore, s.store
    samples, work, t, repeat = s.samples, s.work, s.t, s.repeat
    small = work / "regions_10k.bed"
    n = len(samples)
    scope = f"{SMALL_REGIONS:,} regions x {n} samples, mean"
    local_tsv, remote_tsv = work / "remote-local.tsv", work / "remote.tsv"
    local = timed(
        f"bamstore summarize --threads {t}",
        f"{scope}, local store",
        [bamstore, "summarize", store, "--bed", small, "--threads", t, "-o", local_tsv, "-q"],
        repeat,
        compare=False,
    )
    with loopback(store.parent) as (base, counts):
        url = f"{base}/{store.name}"
        before = sum(counts.values())
        remote = timed(
            f"bamstore summarize --threads {t} URL",
            f"{scope}, the store over loopback HTTP",
            [bamstore, "summarize", url, "--bed", small, "--threads", t, "-o", remote_tsv, "-q"],
            repeat,
            compare=False,
        )
        runs = remote.warmups + len(remote.runs) + remote.discarded
        remote.note = f"{(sum(counts.values()) - before) / runs:,.0f} requests per run"
        report.remote.append(Pair(local, remote, f"summary of {SMALL_REGIONS:,} regions"))
        windows = work / "windows.bed"
        row = time_windows(
            timed,
            s.python,
            windows,
            "BamStore.open(URL).extract_region, samples=[s1]",
            f"{WINDOWS:,} random {WINDOW_LEN // 1000} kb windows, 1 sample, over loopback HTTP",
            ["region", url, samples[0]],
            counts=counts,
        )
        if "one" in report.windows:
            row.versus = times(row, report.windows["one"], "the local time")
        report.windows["remote"] = row
    with loopback(store.parent, keep_alive=False) as (base, counts):
        row = time_windows(
            timed,
            s.python,
            windows,
            "BamStore.open(URL).extract_region, samples=[s1]",
            f"{WINDOWS:,} random {WINDOW_LEN // 1000} kb windows, 1 sample, over loopback "
            "HTTP/1.0 (a connection per request)",
            ["region", f"{base}/{store.name}", samples[0]],
            counts=counts,
        )
        if "one" in report.windows:
            row.versus = times(row, report.windows["one"], "the local time")
        report.windows["remote_close"] = row
    harness = max((r.harness_cpu for r in remote.runs), default=0.0)
    report.notes.append(
        f"the loopback server runs in the harness (Python threads): up to {harness:.2f} CPU-s "
        "per remote summarize run, not in the command's CPU column"
    )
    same = local_tsv.read_bytes() == remote_tsv.read_bytes()
    report.checks.append(
        (
            "remote summarize vs local",
            f"the two TSVs are {'identical' if same else 'different'}",
            same,
        )
    )
    for key, how in (("remote", "HTTP"), ("remote_close", "HTTP/1.0")):
        if "one" not in report.windows:
            break
        problem = same_sums(report.windows["one"], report.windows[key])
        report.checks.append(
            (
                f"windows: over {how} vs local, 1 sample",
                "per-sample sums " + ("equal" if problem is None else f"differ: {problem}"),
                problem is None,
            )
        )


# ---------------------------------------------------------------------------- QuantNado


def quantnado_check(s: Section) -> None:
    """QuantNado 0.4.3 opens the default store and reads regions as we do: the first bases,
    across the first chunk boundary, the last bases of the last contig, random windows."""
    report, store, contigs, anchors = s.report, s.store, s.contigs, s.anchors
    if anchors.quantnado is None:
        report.notes.append(f"QuantNado check not run: {anchors.quantnado_text}")
        return
    from bamstore.api import BamStore

    ours = BamStore.open(store)
    first, first_len = contigs[0]
    last, last_len = contigs[-1]
    edge = min(ours.chunk_len, first_len - 1000)
    rng = np.random.default_rng(SEED + 9)
    spans = [(first, 0, 2000), (first, edge - 1000, edge + 1000), (last, last_len - 1000, last_len)]
    for chrom, length in contigs[:3]:
        start = int(rng.integers(0, length - 5000))
        spans.append((chrom, start, start + 5000))
    regions = [f"{chrom}:{start}-{end}" for chrom, start, end in spans]
    out = Path(store).parent / "quantnado-regions.npz"
    done = subprocess.run(
        [str(anchors.quantnado), "-c", QUANTNADO_SCRIPT, str(store), json.dumps(regions), str(out)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        report.checks.append(
            ("QuantNado 0.4.3 reads the store", "failed: " + (tail[-1] if tail else "?"), False)
        )
        return
    names = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(out) as theirs:
        equal = [
            np.array_equal(theirs[f"arr_{i}"], ours.extract_region(r))
            for i, r in enumerate(regions)
        ]
    ok = all(equal) and names == ours.sample_names
    report.checks.append(
        (
            "QuantNado 0.4.3 reads the store (BamStore.open, extract_region)",
            f"{sum(equal)} of {len(regions)} regions equal ours (first bases, across the first "
            "chunk boundary, the last contig's end, random 5 kb), all samples; sample names "
            + ("equal" if names == ours.sample_names else f"differ: {names}"),
            ok,
        )
    )
    out.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- goals


def goals(report: ReadReport) -> list[Goal]:
    """The reading goals, each PASS, FAIL or n/a (an anchor not measured)."""
    w = report.windows
    out: list[Goal] = []

    def ratio_goal(number: str, text: str, fast: WindowRow, slow: WindowRow, target: float):
        if fast.ms is None or slow.ms is None:
            out.append(Goal(number, text, "not measured: " + (fast.status or slow.status), None))
            return
        x = slow.ms / fast.ms
        out.append(Goal(number, text, f"{fast.ms:.3f} vs {slow.ms:.3f} ms = {x:.1f}×", x >= target))

    ratio_goal(
        "1a",
        f"a 2 kb window of 1 sample ≥ {ONE_SAMPLE_TARGET:g}× faster than pyBigWig",
        w["one"],
        w["pybigwig"],
        ONE_SAMPLE_TARGET,
    )
    one, four = w["one"], w["four"]
    x = four.ms / one.ms
    out.append(
        Goal(
            "1b",
            f"a window of 4 samples ≤ {FOUR_SAMPLE_LIMIT:g}× the 1-sample time",
            f"{four.ms:.3f} vs {one.ms:.3f} ms = {x:.2f}×",
            x <= FOUR_SAMPLE_LIMIT,
        )
    )
    ratio_goal(
        "1c",
        f"a window of {COHORT} samples ≥ {COHORT_TARGET:g}× faster than "
        f"{COHORT} bigWigs (pyBigWig)",
        w["cohort"],
        w["cohort_bw"],
        COHORT_TARGET,
    )
    for pair, number in zip(report.pairs[1:], ("2a", "2b"), strict=True):
        speed = pair.speedup
        out.append(
            Goal(
                number,
                f"{pair.what} ≥ {SPEED_TARGET:g}× faster than deeptools 4.0",
                "not measured"
                if speed is None
                else f"{pair.ours.wall:.2f} s vs {pair.theirs.wall:.2f} s = {speed:.1f}×",
                None if speed is None else speed >= SPEED_TARGET,
            )
        )
    rss = {p.what.split(" of ")[0]: p.ours.rss_mib for p in report.pairs[1:]}
    out.append(
        Goal(
            "2c",
            f"peak RSS of summarize and profile ≤ {RSS_LIMIT_MIB} MiB",
            ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items()),
            all(v <= RSS_LIMIT_MIB for v in rss.values()),
        )
    )
    batched = [w[k] for k in ("regions", "iter")]
    ok = all(
        ok
        for what, _, ok in report.checks
        if what.startswith(("windows: extract_regions", "windows: iter_regions"))
    )
    out.append(
        Goal(
            "3",
            "batched reads (regions × samples × width) equal extract_region; windows/s reported",
            ", ".join(f"{r.label} {r.per_second:,.0f} windows/s" for r in batched),
            ok,
        )
    )
    for pair in report.remote:
        local, remote = pair.ours, pair.theirs
        x = remote.wall / local.wall
        out.append(
            Goal(
                "4a",
                f"{pair.what} over loopback HTTP ≤ {REMOTE_LIMIT:g}× local",
                f"{remote.wall:.2f} s vs {local.wall:.2f} s = {x:.2f}× ({remote.note})",
                x <= REMOTE_LIMIT,
            )
        )
    remote_w = w.get("remote")
    if remote_w is not None and remote_w.ms and one.ms:
        x = remote_w.ms / one.ms
        out.append(
            Goal(
                "4b",
                f"random windows over loopback HTTP ≤ {REMOTE_LIMIT:g}× local",
                f"{remote_w.ms:.3f} vs {one.ms:.3f} ms = {x:.2f}× "
                f"({remote_w.requests:,.0f} requests per {WINDOWS:,} windows)",
                x <= REMOTE_LIMIT,
            )
        )
    ours_x, base_x = report.extraction.get("ours"), report.extraction.get("baseline")
    if base_x is None:
        missing = "not measured: the baseline is not installed"
        out += [
            Goal("5a", "extract time ≤ 1.1× the baseline's", missing, None),
            Goal("5b", "store size ≤ 1.1× the baseline's", missing, None),
        ]
    else:
        x = ours_x.wall / base_x.wall
        out.append(
            Goal(
                "5a",
                f"extract time ≤ {EXTRACT_LIMIT:g}× the baseline's",
                f"{ours_x.wall:.2f} s vs {base_x.wall:.2f} s = {x:.2f}×",
                x <= EXTRACT_LIMIT,
            )
        )
        a, b = report.sizes["ours"], report.sizes["baseline"]
        out.append(
            Goal(
                "5b",
                f"store size ≤ {EXTRACT_LIMIT:g}× the baseline's",
                f"{a / 2**20:.1f} MiB vs {b / 2**20:.1f} MiB = {a / b:.3f}×",
                a / b <= EXTRACT_LIMIT,
            )
        )
    quantnado = [c for c in report.checks if c[0].startswith("QuantNado")]
    out.append(
        Goal(
            "5c",
            "QuantNado 0.4.3 reads the default store",
            quantnado[0][1] if quantnado else "not run",
            quantnado[0][2] if quantnado else None,
        )
    )
    return out


# ---------------------------------------------------------------------------- report


def _runs(row: Any) -> str:
    if not row.runs:
        return row.status
    runs = f"{len(row.runs)} (+{row.warmups} warm-up)"
    if row.discarded:
        runs += f", {row.discarded} busy run(s) re-done"
    if row.other_load >= 0.1:
        runs += f" ⚠ others used {row.other_load:.1f} cores"
    return runs


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "—" if x is None else format(x, fmt)


def format_read_section(report: ReadReport) -> list[str]:
    lines = ["", "## Reading", ""]
    lines += [f"- {item}" for item in report.setup]
    if report.windows:
        lines += [
            "",
            f"### Random windows (timed in-process, one process per reader, best of {PASSES} "
            "passes, "
            "readers opened outside the timing)",
            "",
            "| reader | windows | ms per window | windows/s | time vs | peak RSS MiB | run |",
            "|---|---|---:|---:|---|---:|---|",
        ]
        for row in report.windows.values():
            versus = row.versus or "—"
            run = row.status if row.row is None else _runs(row.row)
            if row.requests is not None:
                run += f"; {row.requests:,.0f} HTTP requests per pass"
            rss = None if row.row is None else row.row.rss_mib
            lines.append(
                f"| {row.label} | {row.scope} | {_num(row.ms, '.3f')} | "
                f"{_num(row.per_second, ',.0f')} | {versus} | {_num(rss, '.0f')} | {run} |"
            )
        lines.append(
            "\ntime vs: this row's ms per window ÷ the named row's (pyBigWig at 3.10× BamStore's "
            "time: BamStore is 3.1× faster). The 100 bigWigs are hard links of one file and the "
            "100-sample store's rows clones of one part: both read one sample's worth of pages."
        )
    if report.extraction:
        lines += [
            "",
            "### Extraction and store size (the main BAM, one sample)",
            "",
            "| command | median wall s | CPU s | peak RSS MiB | store size | runs |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for key, row in report.extraction.items():
            size = report.sizes.get(key)
            lines.append(
                f"| {row.label} | {_num(row.wall)} | {_num(row.cpu)} | {_num(row.rss_mib, '.0f')}"
                f" | {'—' if size is None else f'{size / 2**20:,.1f} MiB'} | {_runs(row)} |"
            )
    lines += [
        "",
        "### Regions and profiles (bamstore vs deeptools 4.0), export, remote",
        "",
        "| job | command | scope | median wall s | CPU s | peak RSS MiB | runs | × faster |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]

    def row_line(job: str, row: Any, ratio: str) -> str:
        label = row.label + (f" ({row.note})" if row.note else "")
        return (
            f"| {job} | {label} | {row.scope} | {_num(row.wall)} | {_num(row.cpu)} | "
            f"{_num(row.rss_mib, '.0f')} | {_runs(row)} | {ratio} |"
        )

    for pair in report.pairs:
        speed = pair.speedup
        lines.append(row_line(pair.what, pair.ours, "—" if speed is None else f"**{speed:.1f}×**"))
        if pair.theirs is not None:
            lines.append(row_line(pair.what, pair.theirs, "1.0×"))
    for row in report.extra:
        lines.append(row_line("memory check", row, "—"))
    for pair in report.remote:
        lines.append(row_line(pair.what, pair.ours, "1.0×"))
        slower = pair.theirs.wall / pair.ours.wall
        lines.append(row_line(pair.what, pair.theirs, f"{1 / slower:.2f}×"))
    if report.goals:
        lines += ["", "### Reading goals", "", "| # | goal | measured | result |"]
        lines.append("|---|---|---|---|")
        lines += [
            f"| {g.number} | {g.text} | {g.measured} | **{g.verdict}** |" for g in report.goals
        ]
    if report.checks:
        lines += ["", "Same numbers (outside the timing):", ""]
        lines += [
            f"- {what}: {'PASS' if ok else 'FAIL'}: {text}" for what, text, ok in report.checks
        ]
    if report.notes:
        lines += [""] + [f"- {note}" for note in report.notes]
    return lines
