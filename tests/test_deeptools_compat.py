"""bamstore against deeptools 4.0: `bamCoverage --binSize 1` with `--normalizeUsing CPM|BPM|RPGC`
and `--scaleFactor`, and `multiBigwigSummary bins`, on a BAM of plain 100M primary reads (no
clipping, none past a contig's end), so T = reads x 100 = reads x fragment length.

What deeptools 4.0 writes, measured here:
  - every value rounded to 2 decimals (then stored as float32): each position of its track
    equals our float64 value rounded to 2 decimals, as float32, exactly;
  - its BPM is 1e6 / mapped reads, its CPM (deeptools' `getScaleFactor`: the bin length
    cancels out), not 1e6 / T: our bpm (x 1e6 / T, the sum of a bpm track over the genome is
    1e6) is deeptools' BPM / the read length here;
  - its RPGC is x G / (reads x fragment length): our rpgc (x G / T);
  - `multiBigwigSummary bins` takes each bin's mean from the bigWig's zoom levels (pyBigWig's
    default, inexact `stats`): its bins are ours (from 0, the last one of a contig shorter), and
    our means equal the exact means of deeptools' own per-base track (`stats(exact=True)`).

deeptools 4.0 needs Python >= 3.12: `make deeptools` installs it in .venv-deeptools. Without it
these tests skip, saying why, unless BAMSTORE_REQUIRE_DEEPTOOLS=1 (then they fail).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import pytest
from bamfactory import Read, write_bam
from support import REPO

from bamstore.api import BamStore

DEEPTOOLS = Path(os.environ.get("BAMSTORE_DEEPTOOLS_BIN") or REPO / ".venv-deeptools" / "bin")
REQUIRED = os.environ.get("BAMSTORE_REQUIRE_DEEPTOOLS") == "1"
CONTIGS = [("chr1", 20_000), ("chr2", 7_000)]
READ_LEN = 100
G = 27_000_000  # RPGC values of ~336 per read: 2 decimals are 6 significant digits
SCALE = 0.37


@pytest.fixture(scope="module")
def deeptools() -> Path:
    if not (DEEPTOOLS / "bamCoverage").exists():
        reason = f"deeptools 4.0 not installed ({DEEPTOOLS}); run `make deeptools`"
        if REQUIRED:
            pytest.fail(f"{reason} (BAMSTORE_REQUIRE_DEEPTOOLS=1)")
        pytest.skip(reason)
    version = subprocess.run(
        [DEEPTOOLS / "bamCoverage", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == "bamCoverage 4.0.0"
    return DEEPTOOLS


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """(BAM, store, reads): plain 100M reads on both strands, the first and last base of each
    contig covered, stored in chunks of 1,024 (so chunk boundaries everywhere)."""
    folder = tmp_path_factory.mktemp("dt")
    rng = np.random.default_rng(23)
    reads = []
    for contig, length in CONTIGS:
        reads += [Read(contig, 0, "100M"), Read(contig, length - READ_LEN, "100M", flag=0x10)]
        for _ in range(length // 30):
            pos = int(rng.integers(0, length - READ_LEN + 1))
            reads.append(Read(contig, pos, "100M", flag=0x10 if rng.random() < 0.5 else 0))
    bam = write_bam(folder / "plain.bam", reads, CONTIGS)
    store = folder / "plain.zarr"
    built = BamStore.from_bam_files(
        [bam], store_path=store, chunk_len=1024, filter_chromosomes=False, bam_sample_names=["s"]
    )
    built.set_scale_factors({"s": SCALE})
    return bam, store, len(reads)


def bam_coverage(deeptools: Path, bam: Path, out: Path, *args: object) -> dict[str, np.ndarray]:
    subprocess.run(
        [deeptools / "bamCoverage", "-b", bam, "-o", out, "--binSize", "1", *map(str, args)],
        check=True,
        capture_output=True,
    )
    with pyBigWig.open(str(out)) as bw:
        return {c: np.nan_to_num(np.asarray(bw.values(c, 0, n))) for c, n in CONTIGS}


CASES = {
    "cpm": (["--normalizeUsing", "CPM"], {}),
    "bpm": (["--normalizeUsing", "BPM"], {}),
    "rpgc": (
        ["--normalizeUsing", "RPGC", "--effectiveGenomeSize", G],
        {"effective_genome_size": G},
    ),
    "scale": (["--scaleFactor", SCALE], {}),
}


@pytest.mark.parametrize("method", list(CASES))
def test_bam_coverage_normalisations(deeptools: Path, data, tmp_path: Path, method: str) -> None:
    bam, store, n_reads = data
    args, options = CASES[method]
    theirs = bam_coverage(deeptools, bam, tmp_path / "dt.bw", *args)
    bs = BamStore.open(store)
    total = sum(bs.store_attributes.bamstore.samples["s"].contig_sums)
    assert total == n_reads * READ_LEN  # T = reads x fragment length
    worst = 0.0
    for contig, _ in CONTIGS:
        ours = bs.extract_region(chrom=contig, normalise=method, **options)[0]
        if method == "bpm":  # deeptools' BPM is 1e6 / reads: ours x T / reads
            ours = ours * (total / n_reads)
        np.testing.assert_array_equal(np.float32(np.round(ours, 2)), np.float32(theirs[contig]))
        worst = max(worst, float(np.abs(ours - theirs[contig]).max()))
    assert worst <= 0.005 + np.spacing(np.float32(theirs["chr1"].max()))


def test_raw_depth_is_equal(deeptools: Path, data, tmp_path: Path) -> None:
    bam, store, _ = data
    theirs = bam_coverage(deeptools, bam, tmp_path / "dt.bw")
    bs = BamStore.open(store)
    for contig, _ in CONTIGS:
        np.testing.assert_array_equal(bs.extract_region(chrom=contig)[0], theirs[contig])


@pytest.mark.parametrize("size", [1000, 3000])
def test_multibigwigsummary_bins(deeptools: Path, data, tmp_path: Path, run_cli, size: int):
    bam, store, _ = data
    track = tmp_path / "dt.bw"
    bam_coverage(deeptools, bam, track)
    table = tmp_path / "dt.tab"
    subprocess.run(
        [
            deeptools / "multiBigwigSummary",
            "bins",
            "-b",
            track,
            "--binSize",
            str(size),
            "-o",
            tmp_path / "dt.npz",
            "--outRawCounts",
            table,
        ],
        check=True,
        capture_output=True,
    )
    theirs = pd.read_csv(table, sep="\t")
    theirs.columns = ["chrom", "start", "end", "value"]
    done = run_cli("summarize", store, "--bins", size, "-o", tmp_path / "ours.tsv")
    assert done.returncode == 0, done.stderr
    ours = pd.read_csv(tmp_path / "ours.tsv", sep="\t")
    key = ["chrom", "start", "end"]
    assert sorted(map(tuple, ours[key].values.tolist())) == sorted(
        map(tuple, theirs[key].values.tolist())
    )
    merged = ours.merge(theirs, on=key)
    with pyBigWig.open(str(track)) as bw:
        exact = [bw.stats(c, s, e, exact=True)[0] for c, s, e in merged[key].itertuples(False)]
        zoom = [bw.stats(c, s, e)[0] for c, s, e in merged[key].itertuples(False)]
    np.testing.assert_allclose(merged["s"], exact, rtol=1e-6)  # float32 track, float64 means
    np.testing.assert_allclose(merged["value"], zoom, rtol=1e-6)  # deeptools: the zoom levels
