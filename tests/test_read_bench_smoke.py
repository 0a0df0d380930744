"""Smoke test of the reading benchmark (benchmarks/read_bench.py, window_bench.py,
window_timer.py, anchors_env.py) on tiny stores, without the anchors' venvs.

The inputs it writes must be valid for every tool, each reader the window timer drives must
read the store's values, its value checks must catch a wrong answer, the goals must say PASS,
FAIL or n/a as the numbers say, and the whole section must run end to end (with the anchors
missing). No timing assertion: `make bench` measures, never the tests.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from bamstore.engine.extract import ExtractOptions, extract_sample
from bamstore.simulate import make_bam

ROOT = Path(__file__).resolve().parents[1]
CONTIGS = [("chr1", 50_000), ("chr2", 8_000)]


def _load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))  # as when run as a script: its sibling modules
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


read_bench = _load("read_bench")
window_bench = sys.modules["window_bench"]
run = _load("run")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A BAM, its per-sample store, a 4-sample store of clones, a bigWig of the sample, and
    the per-sample store of another BAM (a wrong answer for the checks to catch)."""
    folder = tmp_path_factory.mktemp("readbench")
    bam = make_bam(folder / "main.bam", 4000, CONTIGS, seed=5, threads=1)
    other_bam = make_bam(folder / "other.bam", 4000, CONTIGS, seed=6, threads=1)
    options = ExtractOptions(chromosomes="all")
    part, other = folder / "s1.zarr", folder / "other.zarr"
    extract_sample(bam, "s1", part, options)
    extract_sample(other_bam, "s1", other, options)
    store = window_bench.make_cohort(part, folder, 4, run.bamstore_exe())
    bigwig = folder / "s1.bw"
    export = [run.bamstore_exe(), "export", str(part), "--sample", "s1", "--format", "bigwig"]
    subprocess.run([*export, "-o", str(bigwig), "-q"], check=True)
    windows = window_bench.write_windows(folder / "w.bed", CONTIGS, 40, seed=1)
    return {"bam": bam, "part": part, "other": other, "store": store, "bigwig": bigwig,
            "windows": windows, "dir": folder}  # fmt: skip


def _zarr_sums(store: Path, windows: Path, rows: list[int]) -> np.ndarray:
    """The oracle: each window's per-row sums, read with zarr."""
    group = zarr.open_group(str(store), mode="r")
    out = []
    for chrom, start, end in (line.split("\t") for line in windows.read_text().splitlines()):
        block = np.asarray(group[chrom][:, int(start) : int(end)], dtype=np.float64)
        out.append(block[rows].sum(axis=1))
    return np.array(out)


def test_inputs_fit_their_contigs(tmp_path: Path) -> None:
    regions = read_bench.write_regions(tmp_path / "r.bed", CONTIGS, 500, seed=1)
    points = read_bench.write_points(tmp_path / "p.bed", CONTIGS, 300, seed=2)
    windows = window_bench.write_windows(tmp_path / "w.bed", CONTIGS, 300, seed=3)
    sizes = dict(CONTIGS)
    rows = [line.split("\t") for line in regions.read_text().splitlines()]
    assert len(rows) == 500
    assert all(int(s) >= 0 and int(e) == int(s) + 1000 <= sizes[c] for c, s, e, _ in rows)
    flank = read_bench.FLANK
    for chrom, start, end, _, _, strand in (x.split("\t") for x in points.read_text().splitlines()):
        ref = int(start) if strand == "+" else int(end)
        assert ref - flank >= 0 and ref + flank <= sizes[chrom]
    spans = [line.split("\t") for line in windows.read_text().splitlines()]
    assert len(spans) == 300 and {c for c, _, _ in spans} == set(sizes)
    width = window_bench.WINDOW_LEN
    assert all(int(s) >= 0 and int(e) == int(s) + width <= sizes[c] for c, s, e in spans)
    again = window_bench.write_windows(tmp_path / "w2.bed", CONTIGS, 300, seed=3)
    assert again.read_text() == windows.read_text()  # a fixed seed: the same windows each run


@pytest.mark.parametrize(
    ("tool", "args", "samples"),
    [
        ("region", ["STORE", "s1"], ["s1"]),
        ("region", ["STORE", "all"], None),
        ("regions", ["STORE", "all", "16"], None),
        ("iter", ["STORE", "c002,s1", "16"], ["c002", "s1"]),
        ("pybigwig", ["BIGWIG", "BIGWIG"], ["s1", "s1"]),
        ("pybigtools", ["BIGWIG"], ["s1"]),
    ],
)
def test_window_timer_reads_the_stored_values(tiny, tool: str, args: list[str], samples) -> None:
    """Every reader the timer drives gives each window's values: its per-sample sums equal
    zarr's reading of the store (of the part, for the bigWig exported from it)."""
    paths = {"STORE": str(tiny["store"]), "BIGWIG": str(tiny["bigwig"])}
    timer = [sys.executable, str(window_bench.TIMER), str(tiny["windows"]), "--passes", "1"]
    out = subprocess.run(
        [*timer, "--check", "40", tool, *(paths.get(a, a) for a in args)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["windows"] == 40 and len(result["seconds"]) == 1
    assert result["ms_per_window"] > 0 and result["windows_per_s"] > 0
    source = tiny["part"] if tool.startswith("py") else tiny["store"]
    names = list(zarr.open_group(str(source), mode="r").attrs["sample_names"])
    rows = list(range(len(names))) if samples is None else [names.index(n) for n in samples]
    want = _zarr_sums(source, tiny["windows"], rows)
    assert want.sum() > 0
    np.testing.assert_array_equal(np.array(result["check"]), want)


def test_a_cohort_of_clones_holds_the_part_in_every_row(tiny) -> None:
    group = zarr.open_group(str(tiny["store"]), mode="r")
    part = zarr.open_group(str(tiny["part"]), mode="r")
    assert sorted(group.attrs["sample_names"]) == ["c002", "c003", "c004", "s1"]
    for chrom, _ in CONTIGS:
        want = np.asarray(part[chrom][0, :])
        assert np.count_nonzero(want)
        assert (np.asarray(group[chrom][:, :]) == want).all()
    copies = window_bench.link_copies(tiny["bigwig"], tiny["dir"] / "copies", 3)
    assert [p.stat().st_ino for p in copies] == [tiny["bigwig"].stat().st_ino] * 3


def test_value_checks_catch_a_difference(tiny) -> None:
    sums = np.arange(12, dtype=float).reshape(4, 3)
    row = functools.partial(window_bench.WindowRow, "r", "w")
    same = row(result={"check": sums.tolist()})
    assert window_bench.same_sums(same, row(result={"check": sums.tolist()})) is None
    wrong = sums.copy()
    wrong[2, 1] += 1
    assert "window 2, sample 1" in window_bench.same_sums(same, row(result={"check": wrong}))
    narrow = row(result={"check": sums[:, :1].tolist()})
    assert window_bench.same_sums(narrow, same, slice(0, 1)) is None
    assert window_bench.same_sums(narrow, same) is not None  # shapes differ
    assert window_bench.same_sums(same, row(status="not installed")) == "not measured"
    equal = read_bench.same_store_values(tiny["part"], tiny["part"])
    assert equal[2] and "equal" in equal[1]
    differ = read_bench.same_store_values(tiny["part"], tiny["other"])
    assert not differ[2] and "differs" in differ[1]


def test_profile_check_catches_a_wrong_matrix(tmp_path: Path) -> None:
    regions = np.array(
        [("chr1", 10, 11, "a", "+", 1), ("chr2", 20, 21, "b", "-", 2)],
        dtype=[
            ("chrom", "U4"),
            ("start", "i8"),
            ("end", "i8"),
            ("name", "U1"),
            ("strand", "U1"),
            ("line", "i8"),
        ],
    )
    matrix = np.arange(2 * 2 * 3, dtype=np.float64).reshape(2, 2, 3) / 3  # samples x regions x bins
    ours = tmp_path / "m.npz"
    np.savez(ours, matrix=matrix, regions=regions)

    def computematrix(values: np.ndarray) -> Path:
        out = tmp_path / "cm.gz"
        with gzip.open(out, "wt") as fh:
            fh.write('@{"upstream":[1]}\n')
            for i, r in enumerate(regions):
                cells = "\t".join(f"{v:f}" for v in values[:, i, :].reshape(-1))
                fh.write(f"{r['chrom']}\t{r['start']}\t{r['end']}\t{r['name']}\t0\t+\t{cells}\n")
        return out

    assert read_bench.compare_profiles(ours, computematrix(matrix))[2]
    wrong = matrix.copy()
    wrong[1, 1, 2] += 0.01
    assert not read_bench.compare_profiles(ours, computematrix(wrong))[2]


@pytest.mark.parametrize("worst", [0.0, 1.0])
def test_tolerance_is_relative_plus_absolute(worst: float) -> None:
    a = np.array([0.0, 1000.0])
    b = a + worst * (5e-7 + 1e-6 * np.abs(a))
    assert read_bench._worst_excess(a, b) == pytest.approx(worst)


def _row(label: str, wall: float, rss_mib: float = 50.0, **kw):
    return run.Row(label, "scope", runs=[run.RunStats(wall, wall, int(rss_mib * 1024))], **kw)


def _window(ms: float | None, status: str = "", per_second: float = 1000.0):
    result = None if ms is None else {"ms_per_window": ms, "windows_per_s": per_second}
    return window_bench.WindowRow("reader", "windows", result=result, status=status)


def _report(**changes) -> object:
    """A report whose every goal passes; `changes` replaces window rows by key."""
    windows = {
        "one": _window(0.05),
        "pybigwig": _window(0.2),
        "four": _window(0.08),
        "cohort": _window(1.0),
        "cohort_bw": _window(20.0),
        "regions": _window(0.02),
        "iter": _window(0.03),
        "remote": _window(0.1),
    }
    windows.update(changes)
    windows["remote"].requests = 44.0
    remote = _row("summarize URL", 2.0, note="258 requests per run")
    return read_bench.ReadReport(
        pairs=[
            read_bench.Pair(_row("export", 9.0), None, "bigWig"),
            read_bench.Pair(_row("summarize", 2.0, 90), _row("mbs", 50.0), "summary of 100"),
            read_bench.Pair(_row("profile", 1.0, 120), _row("cm", 20.0), "profile of 10"),
        ],
        remote=[read_bench.Pair(_row("summarize", 1.0), remote, "summary of 10")],
        windows=windows,
        extraction={"ours": _row("extract", 2.0), "baseline": _row("extract 09b518b", 2.0)},
        sizes={"ours": 105, "baseline": 100},
        checks=[
            ("windows: extract_regions vs extract_region, 4 samples", "equal", True),
            ("windows: iter_regions vs extract_region, 4 samples", "equal", True),
            ("QuantNado 0.4.3 reads the store", "6 of 6 regions equal ours", True),
        ],
    )


def test_goals_pass_fail_and_not_measured() -> None:
    report = _report()
    verdicts = {g.number: g.verdict for g in read_bench.goals(report)}
    assert verdicts == {
        k: "PASS" for k in ("1a", "1b", "1c", "2a", "2b", "2c", "3", "4a", "4b", "5a", "5b", "5c")
    }
    assert not run.any_failed(run.Report([], [], [], [], [], [], read=_with_goals(report)))

    slow = _report(one=_window(0.1), cohort=_window(3.0), remote=_window(0.5))
    slow.extraction["ours"] = _row("extract", 2.3)
    slow.sizes["ours"] = 111
    slow.pairs[2].ours = _row("profile", 3.0, 151)
    slow.checks[1] = ("windows: iter_regions vs extract_region, 4 samples", "differ", False)
    slow.checks[2] = ("QuantNado 0.4.3 reads the store", "failed: KeyError", False)
    goals = {g.number: g for g in read_bench.goals(slow)}
    assert {k for k, g in goals.items() if g.verdict == "FAIL"} == {
        "1a", "1c", "2b", "2c", "3", "4b", "5a", "5b", "5c"
    }  # fmt: skip
    assert goals["1a"].measured == "0.100 vs 0.200 ms = 2.0×"
    assert goals["1b"].verdict == "PASS"  # 0.08 vs 0.1: 4 samples cost less than 2x
    assert run.any_failed(run.Report([], [], [], [], [], [], read=_with_goals(slow)))

    missing = _report(pybigwig=_window(None, "not installed: needs Python >= 3.12, none found"))
    missing.pairs[1].theirs = None
    missing.extraction.pop("baseline")
    goals = {g.number: g for g in read_bench.goals(missing)}
    assert goals["1a"].verdict == goals["2a"].verdict == goals["5a"].verdict == "n/a"
    assert "needs Python >= 3.12" in goals["1a"].measured
    assert not run.any_failed(run.Report([], [], [], [], [], [], read=_with_goals(missing)))


def _with_goals(report):
    report.goals = read_bench.goals(report)
    return report


def test_table_has_the_rows_and_verdicts() -> None:
    report = _with_goals(_report())
    report.windows["pybigwig"].versus = "4.00× BamStore's time"
    text = "\n".join(read_bench.format_read_section(report))
    assert "**25.0×**" in text  # summarize vs multiBigwigSummary
    assert "| 1a | a 2 kb window of 1 sample ≥ 3× faster than pyBigWig | 0.050 vs 0.200 ms" in text
    assert "4.00× BamStore's time" in text
    assert "44 HTTP requests per pass" in text
    assert "| extract 09b518b | 2.00 |" in text
    window_lines = [line for line in text.splitlines() if line.startswith("| reader |")]
    assert len(window_lines) == 1 + len(report.windows)  # the header and one line per reader
    assert text.count("**PASS**") == 12


def test_baseline_of_an_unknown_commit_is_not_installed(tmp_path: Path) -> None:
    anchors_env = _load("anchors_env")
    exe, why = anchors_env.ensure_baseline(tmp_path / "venv", "0" * 40)
    assert exe is None and "is not a commit" in why
    assert not (tmp_path / "venv").exists()
    assert all("==" in pin for pin in anchors_env.ANCHOR_PACKAGES)


def test_the_section_runs_end_to_end(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row of the section on the tiny store, each command run once, with the anchors
    missing: its rows say so, its goals are n/a, and ours are measured and checked."""
    for name, value in (
        ("REGIONS", 200),
        ("SMALL_REGIONS", 100),
        ("LARGE_REGIONS", 300),
        ("POINTS", 50),
        ("WINDOWS", 30),
        ("COHORT", 3),
        ("COHORT_WINDOWS", 10),
    ):
        monkeypatch.setattr(read_bench, name, value)

    def timed(label: str, scope: str, cmd, repeat: int, **kw):
        kw["warmups"] = 0
        return run.measure(label, scope, cmd, 1, **kw)

    work = tiny["dir"] / "work"
    why = "not installed: needs Python >= 3.12, none found"
    section = read_bench.Section(
        timed=timed,
        alternating=lambda jobs, repeat: run.measure_alternating(jobs, 1, warmups=0),
        store_bytes=run.tree_bytes,
        bamstore=run.bamstore_exe(),
        store=tiny["store"],
        main_bam=tiny["bam"],
        contigs=CONTIGS,
        samples=list(zarr.open_group(str(tiny["store"]), mode="r").attrs["sample_names"]),
        work=work,
        repeat=1,
        threads=2,
        anchors=read_bench.Anchors(text=why, baseline_text=why, quantnado_text=why),
    )
    report = read_bench.run_read_benchmark(section, bamcoverage=False, deeptools=False)
    assert report.ok, [c for c in report.checks if not c[2]]
    checks = {what for what, _, _ in report.checks}
    assert {
        "windows: extract_region: s1 of 4 samples vs alone",
        "windows: extract_regions vs extract_region, 4 samples",
        "windows: iter_regions vs extract_region, 4 samples",
        "windows: a sample of the 3-sample store vs s1",
        "remote summarize vs local",
        "windows: over HTTP vs local, 1 sample",
        "windows: over HTTP/1.0 vs local, 1 sample",
    } <= checks
    assert report.windows["remote"].requests > 0
    assert report.windows["remote_close"].requests > 0
    assert report.windows["cohort"].result["windows"] == 10
    assert report.windows["pybigwig"].status == why
    assert report.sizes["ours"] > 0 and set(report.extraction) == {"ours"}
    verdicts = {g.number: g.verdict for g in report.goals}
    assert verdicts["1a"] == verdicts["1c"] == verdicts["2a"] == verdicts["5a"] == "n/a"
    assert verdicts["3"] == "PASS" and verdicts["5c"] == "n/a"
    assert {verdicts["1b"], verdicts["4a"], verdicts["4b"], verdicts["2c"]} <= {"PASS", "FAIL"}
    text = "\n".join(read_bench.format_read_section(report))
    assert "### Reading goals" in text and why in text


def test_alternating_runs_interleave(tmp_path: Path) -> None:
    """measure_alternating runs A B A B ... after one warm-up of each, one row per command."""
    log = tmp_path / "order"
    jobs = [(name, "scope", ["sh", "-c", f"echo {name} >> {log}"]) for name in ("a", "b")]
    rows = run.measure_alternating(jobs, 3)
    assert log.read_text().split() == ["a", "b"] * 4
    assert [r.label for r in rows] == ["a", "b"] and all(len(r.runs) == 3 for r in rows)
