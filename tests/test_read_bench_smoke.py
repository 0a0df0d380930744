"""Smoke test of the reading benchmark's helpers (benchmarks/read_bench.py), in seconds.

The inputs it writes must be valid for both tools, its value checks must catch a wrong answer,
and its table must carry the ratios. No timing: `make bench` measures, never the tests.
"""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTIGS = [("chr1", 50_000), ("chr2", 8_000)]


def _load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


read_bench = _load("read_bench")


def test_regions_and_points_fit_their_contigs(tmp_path: Path) -> None:
    regions = read_bench.write_regions(tmp_path / "r.bed", CONTIGS, 500, seed=1)
    points = read_bench.write_points(tmp_path / "p.bed", CONTIGS, 300, seed=2)
    sizes = dict(CONTIGS)
    rows = [line.split("\t") for line in regions.read_text().splitlines()]
    assert len(rows) == 500
    assert all(int(s) >= 0 and int(e) == int(s) + 1000 <= sizes[c] for c, s, e, _ in rows)
    flank = read_bench.FLANK
    for chrom, start, end, _, _, strand in (x.split("\t") for x in points.read_text().splitlines()):
        ref = int(start) if strand == "+" else int(end)
        assert ref - flank >= 0 and ref + flank <= sizes[chrom]


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


def test_table_has_the_ratios() -> None:
    run = _load("run")
    ours = run.Row("bamstore summarize", "100 regions", runs=[run.RunStats(2.0, 3.0, 200 * 1024)])
    theirs = run.Row("multiBigwigSummary", "100 regions", runs=[run.RunStats(50.0, 60.0, 1024)])
    export = run.Row("bamstore export", "1 sample", runs=[run.RunStats(9.0, 9.0, 1024)])
    report = read_bench.ReadReport(
        pairs=[read_bench.Pair(export, None, "bigWig"), read_bench.Pair(ours, theirs, "summary")],
        checks=[("values", "agree", True)],
    )
    text = "\n".join(read_bench.format_read_section(report))
    assert "**25.0×**" in text
    assert "| summary: ≥ 10× faster than deeptools | 2.00 s vs 50.00 s = 25.0× | **PASS** |" in text
    assert "- values: PASS: agree" in text
    assert report.ok
    assert not read_bench.ReadReport(checks=[("values", "differ", False)]).ok


@pytest.mark.parametrize("worst", [0.0, 1.0])
def test_tolerance_is_relative_plus_absolute(worst: float) -> None:
    a = np.array([0.0, 1000.0])
    b = a + worst * (5e-7 + 1e-6 * np.abs(a))
    assert read_bench._worst_excess(a, b) == pytest.approx(worst)
