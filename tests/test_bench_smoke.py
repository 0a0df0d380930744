"""Smoke test of the benchmark harness (benchmarks/run.py) on a tiny generated BAM.

It runs the harness's correctness check, size helpers and table formatting in seconds. No
timing assertions: the speed targets (benchmarks/README.md) are measured by `make bench`,
never here.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from bamstore.engine.extract import ExtractOptions, extract_sample
from bamstore.engine.merge import merge_stores
from bamstore.options import CountingMode
from bamstore.simulate import make_bam

ROOT = Path(__file__).resolve().parents[1]
CONTIGS = [("chr1", 30_000), ("chr2", 12_000)]
CHUNK_LEN = 4096  # several chunk boundaries per contig


def _load_harness():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # as when run as a script: its sibling modules
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


bench = _load_harness()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bench")
    bam = make_bam(folder / "tiny.bam", 3000, CONTIGS, seed=3, threads=1)
    other = make_bam(folder / "other.bam", 3000, CONTIGS, seed=4, threads=1)
    options = ExtractOptions(chromosomes="all", chunk_len=CHUNK_LEN)
    parts = []
    for name in ("a", "b"):
        parts.append(folder / f"{name}.zarr")
        extract_sample(bam, name, parts[-1], options)
    merged = folder / "merged.zarr"
    merge_stores(parts, merged)
    return {"bam": bam, "other": other, "store": parts[0], "merged": merged, "dir": folder}


def test_store_matches_pysam_depth(tiny: dict[str, Path]) -> None:
    result = bench.check_store_against_depth(tiny["store"], tiny["bam"], full_contigs=["chr2"])
    assert result.ok, result.mismatches
    assert result.full_contigs == ["chr2"]
    assert result.positions >= 12_000 and result.nonzero > 0
    assert result.summary().startswith("PASS")


def test_a_wrong_store_is_caught(tiny: dict[str, Path]) -> None:
    result = bench.check_store_against_depth(tiny["store"], tiny["other"])
    assert not result.ok
    assert result.mismatches and "store" in result.mismatches[0]
    assert result.n_mismatches >= len(result.mismatches)
    assert result.summary().startswith("FAIL")


@pytest.mark.parametrize(
    "counting",
    [CountingMode("fragments"), CountingMode("fragments", extend=150), CountingMode("cutsites")],
    ids=["fragments", "extend", "cutsites"],
)
def test_mode_stores_match_the_bench_oracle(tiny: dict[str, Path], counting: CountingMode) -> None:
    store = tiny["dir"] / f"{counting.mode}-{counting.extend}.zarr"
    options = ExtractOptions(chromosomes="all", chunk_len=CHUNK_LEN, counting=counting)
    extract_sample(tiny["bam"], "m", store, options)
    result = bench.check_mode_store(store, tiny["bam"], "chr2")
    assert result.ok, result.mismatches
    assert result.positions == 12_000 and result.nonzero > 0
    wrong = bench.check_mode_store(store, tiny["other"], "chr2")  # another BAM's oracle
    assert not wrong.ok and wrong.summary().startswith("FAIL")


def test_windows_hold_ends_and_chunk_boundaries() -> None:
    windows = bench.check_windows([("c", 10_000)], CHUNK_LEN, random_windows=4, window=16)
    covered = {p for start, end in windows["c"] for p in range(start, end)}
    for pos in (0, 9_999, CHUNK_LEN - 1, CHUNK_LEN, 2 * CHUNK_LEN - 1, 2 * CHUNK_LEN):
        assert pos in covered
    spans = windows["c"]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))  # merged, sorted


def test_merged_rows_equal_the_part(tiny: dict[str, Path]) -> None:
    result = bench.check_rows_equal(tiny["merged"], tiny["store"])
    assert result.ok, result.mismatches


def test_size_helpers(tiny: dict[str, Path]) -> None:
    ours = bench.tree_bytes(tiny["store"], only_chunks=True)
    equivalent = bench.reencode_quantnado_default(tiny["store"], tiny["dir"] / "qn.zarr")
    assert 0 < ours <= bench.tree_bytes(tiny["store"])
    assert equivalent > 0


def test_bigwig_holds_the_same_coverage(tiny: dict[str, Path]) -> None:
    pyBigWig = pytest.importorskip("pyBigWig")
    import zarr

    out = tiny["dir"] / "cov.bw"
    assert bench.write_bigwig(tiny["store"], out) == out.stat().st_size > 0
    group = zarr.open_group(str(tiny["store"]), mode="r")
    bw = pyBigWig.open(str(out))
    try:
        for contig, length in CONTIGS:
            want = np.asarray(group[contig][0, :]).astype(float)
            got = np.nan_to_num(np.asarray(bw.values(contig, 0, length)), nan=0.0)
            assert np.array_equal(got, want)
    finally:
        bw.close()


@pytest.mark.parametrize("launcher", ["gnu-time", "python"])
def test_run_once_measures_a_child(launcher: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if launcher == "gnu-time" and bench.rss_launcher() != "gnu-time":
        pytest.skip("GNU time is not installed")
    monkeypatch.setattr(bench, "rss_launcher", lambda: launcher)
    stats = bench.run_once([sys.executable, "-c", "print(42)"])
    assert stats.stdout.strip() == "42"
    assert stats.wall > 0 and stats.cpu >= 0 and stats.maxrss_kib > 0
    # the child's own peak, not this (larger) test process's: 64 MiB allocated shows up
    big = bench.run_once(
        [sys.executable, "-c", "b = bytearray(64 << 20); b[::4096] = b'x' * 16384"]
    )
    assert big.maxrss_kib - stats.maxrss_kib > 60 * 1024
    with pytest.raises(bench.BenchError, match="exit 3"):
        bench.run_once([sys.executable, "-c", "import sys; sys.exit(3)"])


def test_the_harness_own_cpu_is_not_another_process_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loopback server in the harness (here: a thread that spins) works while the command
    runs: its CPU is measured and reported apart, not as another process keeping the machine
    busy."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        stats = bench.run_once([sys.executable, "-c", "import time; time.sleep(0.5)"])
    finally:
        stop.set()
        worker.join()
    assert stats.harness_cpu > 0.05  # the spinning thread, measured

    # the machine was busy for 3 CPU-s: the command's own, the harness's and others'
    busy, own = iter([10.0, 13.0]), iter([5.0, 5.5])
    monkeypatch.setattr(bench, "machine_busy_seconds", lambda: next(busy))
    monkeypatch.setattr(bench, "harness_cpu_seconds", lambda: next(own))
    stats = bench.run_once([sys.executable, "-c", "pass"])
    assert stats.harness_cpu == pytest.approx(0.5)
    assert stats.other_cpu == pytest.approx(3.0 - stats.cpu - 0.5)


def test_table_formatting() -> None:
    def row(label: str, wall: float, **kw) -> object:
        r = bench.Row(label, "main BAM", reads=5_000_000, **kw)
        r.runs = [bench.RunStats(wall + d, wall, 100 * 1024) for d in (0.0, 0.1, -0.1)]
        return r

    rows = [
        row("samtools view -c", 1.0),
        bench.missing_row("mosdepth -n", "main BAM", "not installed"),
        row("pysam.depth -a", 8.0),
        row("bamstore extract --threads 2", 2.0, note="main"),
        row("bamstore merge", 0.5, compare=False),
        bench.Row(
            "QuantNado reference (recorded figure)",
            "8 × 10.6 s",
            reads=40_000_000,
            status="reference, not measured",
            reference_wall=84.8,
        ),
    ]
    report = bench.Report(
        machine=["date: today", "machine: test"],
        setup=["main BAM: tiny"],
        rows=rows,
        targets=[bench.Target("1", "extract ≤ mosdepth", "n/a", "n/a")],
        sizes=[("store", bench.fmt_bytes(1234), "note")],
        checks=[("store vs depth", "PASS: 10 positions (5 covered)")],
    )
    text = bench.format_report(report)
    lines = text.splitlines()
    table = [line for line in lines if line.startswith("| ")]
    header = table[0]
    assert "median wall s" in header and "peak RSS MiB" in header and "reads/s" in header
    assert all(f"× {a}" in header for a in bench.ANCHORS)
    width = header.count("|")
    assert all(line.count("|") == width for line in table[:7])  # every row has every column
    extract = next(line for line in table if line.startswith("| bamstore extract"))
    assert "| 2.00 |" in extract and "| 2.00× |" in extract  # vs samtools view -c
    assert "not installed" in extract  # the mosdepth ratio
    assert "| 0.25× |" in extract  # vs pysam.depth -a
    mosdepth = next(line for line in table if line.startswith("| mosdepth -n"))
    assert "not installed" in mosdepth
    merge = next(line for line in table if line.startswith("| bamstore merge"))
    assert "| 0.50 |" in merge and "—" in merge
    assert "reference, not measured" in text and "84.80" in text
    assert "| 1 | extract ≤ mosdepth | n/a | **n/a** |" in text
    assert "## Correctness" in text and "PASS: 10 positions" in text
