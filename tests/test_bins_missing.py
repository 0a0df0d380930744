"""summarize --bins N (genome-wide bins) and --missing error|skip|nan, with the naming-style hint:
each value against plain numpy over the arrays read through zarr, each message whole."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from support import assert_clean_refusal

from bamstore.api import BamStore
from bamstore.query import CoverageSource, profile, summarize_frame
from bamstore.query.regions import naming_hint
from bamstore.simulate import make_bam

CONTIGS = [("chr1", 6000), ("chr2", 1300), ("chr3", 700)]
CHUNK = 64


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bins")
    bams = [
        make_bam(folder / f"{name}.bam", 800, CONTIGS, seed=seed, threads=1)
        for seed, name in enumerate("ab", start=71)
    ]
    out = folder / "cov.zarr"
    BamStore.from_bam_files(bams, store_path=out, chunk_len=CHUNK, filter_chromosomes=False)
    return out


def arrays(store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(store), mode="r")
    return {c: np.asarray(group[c][...]).astype(np.float64) for c, _ in CONTIGS}


def read_tsv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), sep="\t", keep_default_na=False, na_values=["nan"])


@pytest.mark.parametrize("size", [1, 64, 100, 1300, 7000])
@pytest.mark.parametrize("stat", ["mean", "sum", "max", "min"])
def test_bins_equal_numpy(store: Path, size: int, stat: str) -> None:
    frame = summarize_frame(CoverageSource.open(store), bins=size, stat=stat, batch_size=50)
    raw = arrays(store)
    rows = []
    for c, n in CONTIGS:
        for s in range(0, n, size):
            e = min(n, s + size)
            rows.append((c, s, e, *getattr(raw[c][:, s:e], stat)(axis=1)))
    want = pd.DataFrame(rows, columns=["chrom", "start", "end", "a", "b"])
    assert (
        frame[["chrom", "start", "end"]].values.tolist()
        == want[["chrom", "start", "end"]].values.tolist()
    )
    assert (frame["name"] == ".").all()
    np.testing.assert_allclose(
        frame[["a", "b"]].to_numpy(), want[["a", "b"]].to_numpy(), rtol=1e-12
    )


def test_bins_cli_chromosomes_and_normalisation(store: Path, run_cli) -> None:
    done = run_cli(
        "summarize",
        store,
        "--bins",
        500,
        "--chromosomes",
        "chr3,chr2",
        "--normalise",
        "cpm",
        "-o",
        "-",
    )
    assert done.returncode == 0, done.stderr
    frame = read_tsv(done.stdout)
    assert frame["chrom"].tolist() == ["chr2"] * 3 + ["chr3"] * 2  # the store's order
    assert frame["end"].tolist() == [500, 1000, 1300, 500, 700]
    raw = arrays(store)
    lib = np.asarray(zarr.open_group(str(store), mode="r")["metadata/total_reads"][...], float)
    for i, (c, s, e) in enumerate(frame[["chrom", "start", "end"]].itertuples(index=False)):
        want = raw[c][:, s:e].mean(axis=1) / (lib / 1e6)
        np.testing.assert_allclose(frame.loc[i, ["a", "b"]].to_numpy(float), want, rtol=1e-15)
    assert re.fullmatch(
        r"-: 5 bin\(s\) of 500 bp x 2 sample\(s\), mean, cpm \(\d+ block\(s\) decoded\)",
        done.stderr.strip(),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --bed BED or --bins N; fix: regions from a BED, or bins of N bp"),
        (
            ["--bins", 10, "--bed", "x.bed"],
            "give --bed BED or --bins N; fix: regions from a BED, or bins of N bp",
        ),
        (
            ["--bins", 10, "--chromosomes", "chrX"],
            "{store}: has no contig 'chrX'; fix: choose from chr1, chr2, chr3",
        ),
        (
            ["--bed", "x.bed", "--chromosomes", "chr1"],
            "--chromosomes applies to --bins; fix: leave it out with --bed",
        ),
    ],
)
def test_bins_refusals(store: Path, tmp_path: Path, run_cli, args: list, message: str) -> None:
    (tmp_path / "x.bed").write_text("chr1\t0\t10\n")
    done = run_cli("summarize", store, *args, "-o", "out.tsv", cwd=tmp_path)
    assert_clean_refusal(done)
    assert done.stderr.strip() == "bamstore: error: " + message.format(store=store)
    assert not (tmp_path / "out.tsv").exists()


BED = "chr1\t0\t100\ta\nchrX\t5\t10\tb\nchr2\t1290\t1310\tc\nchr3\t600\t700\td\n"


def test_missing_nan_keeps_every_line(store: Path, tmp_path: Path, run_cli) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text(BED)
    done = run_cli("summarize", store, "--bed", bed, "--missing", "nan", "--stat", "sum", "-o", "-")
    assert done.returncode == 0, done.stderr
    frame = read_tsv(done.stdout)
    assert frame["name"].tolist() == ["a", "b", "c", "d"]
    raw = arrays(store)
    np.testing.assert_array_equal(
        frame.loc[0, ["a", "b"]].to_numpy(float), raw["chr1"][:, :100].sum(1)
    )
    np.testing.assert_array_equal(
        frame.loc[3, ["a", "b"]].to_numpy(float), raw["chr3"][:, 600:].sum(1)
    )
    assert frame.loc[[1, 2], ["a", "b"]].isna().all().all()
    lines = [line.split("\t")[4:] for line in done.stdout.splitlines()[1:]]
    assert all(v.isdigit() for v in lines[0] + lines[3])  # sums stay whole numbers
    assert lines[1] == lines[2] == ["nan", "nan"]
    assert done.stderr.splitlines()[0] == (
        f"warning: {bed}: wrote NaN for 2 BED line(s) outside the store (1 on contigs the store "
        f"lacks, 1 past a contig's end); first: {bed} line 2: contig 'chrX' is not in the store "
        "(it has chr1, chr2, chr3)"
    )


def test_skip_missing_is_an_alias_of_missing_skip(store: Path, tmp_path: Path, run_cli) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text(BED)
    alias = run_cli("summarize", store, "--bed", bed, "--skip-missing", "-o", "-")
    named = run_cli("summarize", store, "--bed", bed, "--missing", "skip", "-o", "-")
    assert alias.returncode == named.returncode == 0
    assert alias.stdout == named.stdout and alias.stderr == named.stderr
    assert read_tsv(alias.stdout)["name"].tolist() == ["a", "d"]
    clash = run_cli(
        "summarize", store, "--bed", bed, "--skip-missing", "--missing", "nan", "-o", "-"
    )
    assert_clean_refusal(clash)
    assert clash.stderr.strip() == (
        "bamstore: error: --skip-missing and --missing nan disagree; fix: give one of them "
        "(--skip-missing is --missing skip)"
    )


def test_profile_missing_nan_rows(store: Path, tmp_path: Path) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t500\t501\ta\nchr1\t5\t6\tb\nchrX\t500\t501\tc\n")
    got = profile(
        CoverageSource.open(store), bed, upstream=20, downstream=20, bin_size=10, missing="nan"
    )
    assert got.regions["name"].tolist() == ["a", "b", "c"]
    assert np.isnan(got.matrix[:, 1:, :]).all() and np.isfinite(got.matrix[:, 0, :]).all()
    raw = arrays(store)
    np.testing.assert_allclose(got.matrix[:, 0, 0], raw["chr1"][:, 480:490].mean(1))


def test_naming_style_is_named(store: Path, tmp_path: Path, run_cli) -> None:
    bed = tmp_path / "ensembl.bed"
    bed.write_text("1\t0\t10\n2\t5\t10\n")
    done = run_cli("summarize", store, "--bed", bed, "-o", "-")
    assert_clean_refusal(done)
    assert done.stderr.strip() == (
        f"bamstore: error: {bed} line 1: contig '1' is not in the store (it has chr1, chr2, "
        "chr3); the store names contigs in the other style (there '1' is 'chr1'); fix: use the "
        "store's contig names and lengths, or --missing skip (or nan) for such lines"
    )
    skipped = run_cli("summarize", store, "--bed", bed, "--missing", "skip", "-o", "-")
    assert skipped.returncode == 0
    assert skipped.stderr.splitlines()[0] == (
        f"warning: {bed}: skipped 2 BED line(s) outside the store (2 on contigs the store "
        "lacks); the store names contigs in the other style (there '1' is 'chr1', '2' is "
        f"'chr2'); first: {bed} line 1: contig '1' is not in the store (it has chr1, chr2, "
        "chr3); the store names contigs in the other style (there '1' is 'chr1')"
    )


def test_naming_hint_both_ways() -> None:
    ucsc = {"chr1": 1, "chrM": 1, "chrX": 1}
    ensembl = {"1": 1, "MT": 1, "X": 1}
    assert naming_hint(["1", "MT", "X"], ucsc) == (
        "; the store names contigs in the other style (there '1' is 'chr1', 'MT' is 'chrM', "
        "'X' is 'chrX')"
    )
    assert naming_hint(["chrM", "chr1"], ensembl) == (
        "; the store names contigs in the other style (there 'chrM' is 'MT', 'chr1' is '1')"
    )
    assert naming_hint(["1", "chrUn"], ucsc) == ""  # not every line: no hint
