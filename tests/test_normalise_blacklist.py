"""Normalisations bpm, rpgc and scale, and blacklists, on every reading path: each value against
plain numpy over the arrays read through zarr.

T (a sample's total coverage) is the numpy sum of its whole total arrays; with a blacklist, of
the positions outside it (a boolean mask built here from the BED lines, overlapping ones
included). Stores have chunks of 64 and contigs that are not multiples of it, so regions, bins,
blacklisted intervals and runs cross chunk boundaries and touch first and last bases. A store
without records (the `bamstore` attribute removed, as in a store QuantNado wrote) has its T
computed by a reduction, which must give the same values.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from bamfactory import write_bam
from support import BIN, assert_clean_refusal

from bamstore.api import BamStore
from bamstore.errors import QueryError
from bamstore.query import CoverageSource, profile, summarize_frame
from bamstore.query.blacklist import Blacklist
from bamstore.query.normalise import total_coverage
from bamstore.simulate import make_bam

CONTIGS = [("chr1", 6000), ("chr2", 1300), ("chr3", 700)]
CHUNK = 64
NAMES = ["a", "b", "c", "z"]  # z: no reads
FACTORS = {"a": 0.5, "b": 1.75, "c": 3.0}
G = 2_500_000
# overlapping and touching lines, a contig's first and last base, a whole contig, chunk edges
BLACKLIST = [
    ("chr1", 0, 10),
    ("chr1", 60, 70),
    ("chr1", 65, 130),
    ("chr1", 130, 131),
    ("chr1", 5990, 6000),
    ("chr2", 640, 700),
    ("chr3", 0, 700),
    ("chrUn_x", 5, 10),  # a contig the store lacks: blacklists nothing
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("norm")
    bams = [
        make_bam(folder / f"{name}.bam", 900, CONTIGS, seed=seed, threads=1)
        for seed, name in enumerate(NAMES[:3], start=51)
    ]
    bams.append(write_bam(folder / "z.bam", [], CONTIGS))
    out = folder / "cov.zarr"
    built = BamStore.from_bam_files(
        bams,
        store_path=out,
        chunk_len=CHUNK,
        stranded={"b": "U", "c": "R"},
        filter_chromosomes=False,
    )
    built.set_scale_factors(FACTORS)
    return out


@pytest.fixture(scope="module")
def unrecorded(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same store without the `bamstore` record (no per-contig sums, no scale factors)."""
    copy = tmp_path_factory.mktemp("norec") / "cov.zarr"
    shutil.copytree(store, copy)
    doc = json.loads((copy / "zarr.json").read_text())
    del doc["attributes"]["bamstore"]
    (copy / "zarr.json").write_text(json.dumps(doc))
    return copy


@pytest.fixture(scope="module")
def blacklist_bed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bl") / "blacklist.bed"
    path.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in BLACKLIST))
    return path


def arrays(store: Path, suffix: str = "") -> dict[str, np.ndarray]:
    group = zarr.open_group(str(store), mode="r")
    return {c: np.asarray(group[c + suffix][...]).astype(np.int64) for c, _ in CONTIGS}


def masks() -> dict[str, np.ndarray]:
    out = {c: np.zeros(n, dtype=bool) for c, n in CONTIGS}
    for c, s, e in BLACKLIST:
        if c in out:
            out[c][s:e] = True
    return out


def oracle_total(store: Path, blacklist: bool) -> np.ndarray:
    total = arrays(store)
    mask = masks()
    return np.array(
        [
            sum(
                int(total[c][row][~mask[c]].sum() if blacklist else total[c][row].sum())
                for c in total
            )
            for row in range(len(NAMES))
        ],
        dtype=np.float64,
    )


def oracle_divisors(store: Path, method: str, blacklist: bool) -> np.ndarray:
    """What the numpy oracle divides each sample's values by (NaN: divides by zero)."""
    if method == "scale":
        return np.array([1 / FACTORS.get(n, np.nan) for n in NAMES])
    if method in ("cpm", "rpkm"):
        lib = np.asarray(zarr.open_group(str(store), mode="r")["metadata/total_reads"][...], float)
        return np.where(lib > 0, lib / 1e6, np.nan)
    total = oracle_total(store, blacklist)
    return np.where(total > 0, total / (1e6 if method == "bpm" else G), np.nan)


# ---------------------------------------------------------------------------- T


@pytest.mark.parametrize("with_blacklist", [False, True])
def test_total_coverage_from_records_and_by_reduction(
    store: Path, unrecorded: Path, blacklist_bed: Path, with_blacklist: bool
) -> None:
    expected = oracle_total(store, with_blacklist)
    assert expected[:3].min() > 0 and expected[3] == 0
    for path in (store, unrecorded):
        source = CoverageSource.open(path)
        listed = Blacklist.read(blacklist_bed, source.chromsizes) if with_blacklist else None
        got = total_coverage(source, range(len(NAMES)), listed, threads=2)
        np.testing.assert_array_equal(got, expected)


def test_blacklist_intervals_are_merged(store: Path, blacklist_bed: Path) -> None:
    source = CoverageSource.open(store)
    listed = Blacklist.read(blacklist_bed, source.chromsizes)
    assert listed.positions() == sum(int(m.sum()) for m in masks().values())
    assert listed.starts[0].tolist() == [0, 60, 5990] and listed.ends[0].tolist() == [10, 131, 6000]


# ---------------------------------------------------------------------------- extract_region


@pytest.mark.parametrize("method", ["bpm", "rpgc", "scale", "cpm"])
@pytest.mark.parametrize("with_blacklist", [False, True])
def test_extract_region_equals_numpy(
    store: Path, blacklist_bed: Path, method: str, with_blacklist: bool
) -> None:
    bs = BamStore.open(store)
    samples = ["a", "b", "c"]
    divisor = oracle_divisors(store, method, with_blacklist)[:3]
    options = {
        "normalise": method,
        "samples": samples,
        "blacklist": blacklist_bed if with_blacklist else None,
        "effective_genome_size": G if method == "rpgc" else None,
    }
    mask = masks()
    for suffix, strand in (("", None), ("_fwd", "+"), ("_rev", "-")):
        raw = arrays(store, suffix)
        rows = [1, 2] if strand else [0, 1, 2]
        opts = {**options, "samples": [NAMES[r] for r in rows]}
        for chrom, start, end in [("chr1", 0, 6000), ("chr1", 50, 200), ("chr2", 630, 1300)]:
            got = bs.extract_region(chrom=chrom, start=start, end=end, strand=strand, **opts)
            want = (
                raw[chrom][rows, start:end] / divisor[[samples.index(NAMES[r]) for r in rows], None]
            )
            if with_blacklist:
                want[:, mask[chrom][start:end]] = np.nan
            np.testing.assert_allclose(got, want, rtol=1e-12)
    # fwd + rev = total after normalising (b and c are stranded)
    kw = {**options, "samples": ["b", "c"]}
    total = bs.extract_region("chr1:0-6,000", **kw)
    fwd = bs.extract_region("chr1:0-6,000", strand="+", **kw)
    rev = bs.extract_region("chr1:0-6,000", strand="-", **kw)
    np.testing.assert_allclose(fwd + rev, total, rtol=1e-12)


def test_extract_regions_and_iter_regions_equal_extract_region(
    store: Path, blacklist_bed: Path
) -> None:
    bs = BamStore.open(store)
    regions = [("chr1", 40, 140), ("chr2", 600, 700), ("chr3", 600, 700)]
    opts = {"normalise": "bpm", "blacklist": blacklist_bed, "samples": ["a", "c"]}
    block = bs.extract_regions(regions, **opts)
    batches = list(bs.iter_regions(pd.DataFrame(regions), batch_size=2, **opts))
    for i, (c, s, e) in enumerate(regions):
        one = bs.extract_region(chrom=c, start=s, end=e, **opts)
        np.testing.assert_array_equal(block[i], one)
    np.testing.assert_array_equal(np.concatenate([b.values for b in batches]), block)


def test_the_api_gives_nan_for_a_zero_divisor(store: Path) -> None:
    """extract_region keeps QuantNado's NaN for a sample with 0 reads, for every method that
    divides by the library size or T."""
    bs = BamStore.open(store)
    for method in ("cpm", "rpkm", "bpm", "rpgc"):
        g = G if method == "rpgc" else None
        got = bs.extract_region(
            "chr1:0-100", samples=["z", "a"], normalise=method, effective_genome_size=g
        )
        assert np.isnan(got[0]).all() and np.isfinite(got[1]).all()


# ---------------------------------------------------------------------------- summarize


def oracle_summary(
    store: Path,
    regions: list[tuple[str, int, int]],
    stat: str,
    method: str,
    blacklist: bool,
    rows: list[int],
) -> np.ndarray:
    raw = arrays(store)
    mask = masks()
    divisor = oracle_divisors(store, method, blacklist) if method != "none" else None
    out = np.empty((len(regions), len(rows)))
    for i, (c, s, e) in enumerate(regions):
        keep = ~mask[c][s:e] if blacklist else np.ones(e - s, bool)
        seg = raw[c][rows, s:e][:, keep].astype(np.float64)
        if seg.shape[1] == 0:
            out[i] = np.nan if (blacklist and e > s) or stat != "sum" else 0.0
            if e == s and stat == "sum" and method == "rpkm":
                out[i] = np.nan
            continue
        out[i] = getattr(seg, stat)(axis=1)
        if divisor is not None:
            out[i] /= divisor[rows]
            if method == "rpkm":
                out[i] = out[i] / (seg.shape[1] / 1000) if stat == "sum" else out[i] * 1000
    return out


REGIONS = [
    ("chr1", 0, 10),  # wholly blacklisted
    ("chr1", 0, 11),  # one position left
    ("chr1", 5, 200),  # across two blacklisted intervals and chunk edges
    ("chr1", 0, 6000),
    ("chr1", 5999, 6000),
    ("chr1", 3000, 3000),  # zero-length
    ("chr2", 600, 1300),
    ("chr3", 100, 300),  # a wholly blacklisted contig
    ("chr3", 699, 700),
]


@pytest.mark.parametrize("stat", ["mean", "sum", "max", "min"])
@pytest.mark.parametrize("method", ["none", "rpkm", "bpm", "rpgc", "scale"])
@pytest.mark.parametrize("with_blacklist", [False, True])
def test_summarize_equals_numpy(
    store: Path, blacklist_bed: Path, stat: str, method: str, with_blacklist: bool
) -> None:
    rng = np.random.default_rng(5)
    regions = list(REGIONS)
    for _ in range(60):
        c, n = CONTIGS[rng.integers(3)]
        s = int(rng.integers(0, n))
        regions.append((c, s, int(min(n, s + rng.integers(0, 300)))))
    bed = pd.DataFrame(regions, columns=["chrom", "start", "end"])
    frame = summarize_frame(
        CoverageSource.open(store),
        bed,
        stat=stat,
        normalise=method,
        samples="a,b,c",
        blacklist=blacklist_bed if with_blacklist else None,
        effective_genome_size=G if method == "rpgc" else None,
        threads=2,
    )
    want = oracle_summary(store, regions, stat, method, with_blacklist, [0, 1, 2])
    np.testing.assert_allclose(frame[["a", "b", "c"]].to_numpy(), want, rtol=1e-12)


def test_profile_bins_are_means_outside_the_blacklist(store: Path, blacklist_bed: Path) -> None:
    bed = pd.DataFrame(
        [("chr1", 100, 101, "p", ".", "+"), ("chr2", 700, 900, "m", ".", "-")],
        columns=["chrom", "start", "end", "name", "score", "strand"],
    )
    got = profile(
        CoverageSource.open(store),
        bed,
        upstream=60,
        downstream=90,
        bin_size=30,
        normalise="bpm",
        blacklist=blacklist_bed,
        samples=["a", "c"],
    )
    raw, mask = arrays(store), masks()
    divisor = oracle_divisors(store, "bpm", True)
    for r, (c, lo, hi, minus) in enumerate([("chr1", 40, 190, False), ("chr2", 810, 960, True)]):
        for b in range(5):
            s = hi - (b + 1) * 30 if minus else lo + b * 30
            keep = ~mask[c][s : s + 30]
            for k, row in enumerate([0, 2]):
                vals = raw[c][row, s : s + 30][keep]
                want = vals.mean() / divisor[row] if len(vals) else np.nan
                np.testing.assert_allclose(got.matrix[k, r, b], want, rtol=1e-12)
    # [70, 100) and [100, 130) are blacklisted (60 to 131): no position left
    assert np.isnan(got.matrix[:, 0, 1:3]).all() and np.isfinite(got.matrix[:, 0, [0, 3, 4]]).all()


# ---------------------------------------------------------------------------- export


def read_bedgraph(path: Path) -> dict[str, np.ndarray]:
    """contig -> per-position values (NaN where the track has no data)."""
    out = {c: np.full(n, np.nan) for c, n in CONTIGS}
    for line in path.read_text().splitlines():
        c, s, e, v = line.split("\t")
        out[c][int(s) : int(e)] = float(v)
    return out


@pytest.mark.parametrize("bin_size", [1, 7])
def test_export_leaves_blacklisted_positions_out(
    store: Path, blacklist_bed: Path, tmp_path: Path, run_cli, bin_size: int
) -> None:
    out = tmp_path / "b.bedGraph"
    done = run_cli(
        "export",
        store,
        "--sample",
        "b",
        "--format",
        "bedgraph",
        "--normalise",
        "rpgc",
        "--effective-genome-size",
        G,
        "--blacklist",
        blacklist_bed,
        "--bin",
        bin_size,
        "-o",
        out,
    )
    assert done.returncode == 0, done.stderr
    got = read_bedgraph(out)
    raw, mask = arrays(store), masks()
    divisor = oracle_divisors(store, "rpgc", True)[1]
    for c, n in CONTIGS:
        values = raw[c][1].astype(np.float64)
        want = np.full(n, np.nan)
        for s in range(0, n, bin_size):
            keep = ~mask[c][s : s + bin_size]
            if keep.any():
                mean = values[s : s + bin_size][keep].mean()
                want[s : s + bin_size] = np.where(keep, mean / divisor, np.nan)
        np.testing.assert_allclose(got[c], want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got["chr3"]).all()  # a wholly blacklisted contig has no data


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("method", ["cpm", "rpkm", "bpm", "rpgc"])
@pytest.mark.parametrize("command", ["summarize", "profile", "export", "plot"])
def test_commands_refuse_a_zero_divisor(
    store: Path, tmp_path: Path, run_cli, method: str, command: str
) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t100\t200\n")
    out = tmp_path / ("o.png" if command == "plot" else "o.out")
    args = {
        "summarize": ["--bed", bed, "--samples", "a,z"],
        "profile": [
            "--bed",
            bed,
            "--upstream",
            10,
            "--downstream",
            10,
            "--bin",
            10,
            "--samples",
            "a,z",
        ],
        "export": ["--sample", "z", "--format", "bedgraph"],
        "plot": ["--region", "chr1:0-100", "--samples", "a,z"],
    }[command]
    extra = ["--effective-genome-size", G] if method == "rpgc" else []
    done = run_cli(command, store, *args, "--normalise", method, *extra, "-o", out)
    what = "library size" if method in ("cpm", "rpkm") else "total coverage"
    assert_clean_refusal(done)
    assert done.stderr.strip() == (
        f"bamstore: error: {store}: sample(s) z have {what} 0, so --normalise {method} would "
        "divide by zero; fix: leave them out with --samples, or use --normalise none"
    )
    assert not out.exists()


def test_normalisation_refusals(store: Path, unrecorded: Path, tmp_path: Path, run_cli) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t100\t200\n")
    cases = [
        (
            [store, "--normalise", "scale"],
            f"{store}: sample(s) z have no scale factor, so --normalise scale cannot be applied; "
            f"fix: set them with `bamstore scale-factors {store} --set FILE.tsv`, or choose other "
            "samples",
        ),
        (
            [store, "--normalise", "rpgc"],
            "--normalise rpgc needs --effective-genome-size; fix: give the mappable genome size "
            "in bases (e.g. 2913022398 for GRCh38)",
        ),
        (
            [store, "--normalise", "cpm", "--effective-genome-size", 100],
            "--effective-genome-size applies to --normalise rpgc only; fix: leave it out, or use "
            "--normalise rpgc",
        ),
        (
            [unrecorded, "--normalise", "scale", "--samples", "a"],
            f"{unrecorded}: sample(s) a have no scale factor, so --normalise scale cannot be "
            f"applied; fix: set them with `bamstore scale-factors {unrecorded} --set FILE.tsv`, "
            "or choose other samples",
        ),
        (
            [store, "--samples", ""],
            "--samples '' names no sample; fix: give comma-separated sample names, or leave "
            "--samples out for every sample",
        ),
        (
            [store, "--samples", " , "],
            "--samples ' , ' names no sample; fix: give comma-separated sample names, or leave "
            "--samples out for every sample",
        ),
    ]
    for args, message in cases:
        done = run_cli("summarize", *args, "--bed", bed, "-o", tmp_path / "o.tsv")
        assert_clean_refusal(done)
        assert done.stderr.strip() == f"bamstore: error: {message}", args


def test_a_store_without_records_normalises_by_reduction(
    store: Path, unrecorded: Path, blacklist_bed: Path
) -> None:
    options = {"normalise": "bpm", "blacklist": blacklist_bed, "samples": ["a", "b", "c"]}
    bed = pd.DataFrame(REGIONS, columns=["chrom", "start", "end"])
    with_records = summarize_frame(CoverageSource.open(store), bed, **options)
    without = summarize_frame(CoverageSource.open(unrecorded), bed, **options)
    pd.testing.assert_frame_equal(with_records, without)


# ---------------------------------------------------------------------------- blacklist BEDs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "chr1\t10\t5\n",
            "{bed} line 1: start 10 is greater than end 5; fix: BED is 0-based with the end "
            "exclusive: start <= end",
        ),
        (
            "chr1\t0\t10\nchr2\t1290\t1301\n",
            "{bed} line 2: blacklisted region chr2:1290-1301 ends past the end of chr2 (length "
            "1300); fix: use a blacklist made for the store's assembly",
        ),
        (
            "1\t0\t10\n2\t5\t6\n",
            "{bed}: no blacklist line names a contig of the store (it names 1, 2); the store "
            "names contigs in the other style (there '1' is 'chr1', '2' is 'chr2'); fix: use a "
            "blacklist with the store's contig names",
        ),
        (
            "chrX\t0\t10\n",
            "{bed}: no blacklist line names a contig of the store (it names chrX); fix: use a "
            "blacklist with the store's contig names",
        ),
        (
            "chr1\t0\n",
            "{bed} line 1: has 2 column(s); BED needs at least 3 (chrom, start, end); "
            "fix: separate the columns with tabs",
        ),
    ],
)
def test_bad_blacklists_are_refused(
    store: Path, tmp_path: Path, run_cli, text: str, message: str
) -> None:
    bed = tmp_path / "bl.bed"
    bed.write_text(text)
    regions = tmp_path / "r.bed"
    regions.write_text("chr1\t0\t100\n")
    for command in (
        ["summarize", store, "--bed", regions, "-o", tmp_path / "o.tsv"],
        ["export", store, "--sample", "a", "--format", "bedgraph", "-o", tmp_path / "o.bg"],
    ):
        done = run_cli(*command, "--blacklist", bed)
        assert_clean_refusal(done)
        assert done.stderr.strip() == "bamstore: error: " + message.format(bed=bed)


def test_the_blacklist_is_an_input_not_an_output(
    store: Path, blacklist_bed: Path, tmp_path: Path, run_cli
) -> None:
    before = blacklist_bed.read_bytes()
    done = run_cli(
        "summarize", store, "--bins", 100, "--blacklist", blacklist_bed, "-o", blacklist_bed
    )
    assert_clean_refusal(done, "is one of this command's inputs")
    assert blacklist_bed.read_bytes() == before


def test_an_empty_blacklist_leaves_everything(store: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.bed"
    empty.write_text("# nothing\n")
    source = CoverageSource.open(store)
    bed = pd.DataFrame(REGIONS, columns=["chrom", "start", "end"])
    plain = summarize_frame(source, bed, normalise="bpm", samples="a,b")
    listed = summarize_frame(source, bed, normalise="bpm", samples="a,b", blacklist=empty)
    pd.testing.assert_frame_equal(plain, listed)
    with pytest.raises(QueryError, match="--blacklist is empty"):
        summarize_frame(source, bed, blacklist="")


# ---------------------------------------------------------------------------- lean and drawn


@pytest.mark.parametrize(
    "args",
    [
        [
            "summarize",
            "--bins",
            500,
            "--normalise",
            "bpm",
            "--blacklist",
            "{bl}",
            "--samples",
            "a,b",
            "-o",
            "-",
        ],
        [
            "summarize",
            "--bed",
            "{bed}",
            "--missing",
            "nan",
            "--normalise",
            "scale",
            "--samples",
            "a,b",
            "-o",
            "-",
        ],
        [
            "profile",
            "--bed",
            "{bed}",
            "--upstream",
            20,
            "--downstream",
            20,
            "--bin",
            10,
            "--normalise",
            "rpgc",
            "--effective-genome-size",
            G,
            "--blacklist",
            "{bl}",
            "--samples",
            "a",
            "--missing",
            "skip",
            "-o",
            "{tmp}/p.npz",
        ],
        [
            "export",
            "--samples",
            "a,b",
            "--format",
            "bedgraph",
            "--normalise",
            "bpm",
            "--blacklist",
            "{bl}",
            "--bin",
            5,
            "-o",
            "{tmp}/tracks",
        ],
    ],
)
def test_reading_commands_import_no_pandas_zarr_or_pysam(
    store: Path, blacklist_bed: Path, tmp_path: Path, args: list
) -> None:
    """The reading path stays lean with every new option: none of them loads pandas, zarr,
    pysam, dask or xarray (python -X importtime lists every module imported)."""
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t100\t200\nchrQ\t0\t5\n")
    filled = [str(a).format(bl=blacklist_bed, bed=bed, tmp=tmp_path) for a in args]
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN), filled[0], str(store), *filled[1:]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert loaded & {"pandas", "zarr", "pysam", "dask", "xarray"} == set()
    assert "numpy" in loaded  # the check reads the import list


def test_plot_draws_blacklisted_positions_as_gaps(
    store: Path, blacklist_bed: Path, tmp_path: Path, run_cli
) -> None:
    out = tmp_path / "p.png"
    done = run_cli(
        "plot",
        store,
        "--region",
        "chr1:0-400",
        "--normalise",
        "scale",
        "--samples",
        "a,c",
        "--blacklist",
        blacklist_bed,
        "-o",
        out,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
