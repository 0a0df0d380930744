"""The read side: summarize, profile and export, each value against plain numpy over zarr.

Stores are built from generated BAMs with small chunks (64 and 7 positions, contig lengths that
are not multiples of them), so regions, windows and runs cross chunk boundaries everywhere.
Expected values are computed in the tests from whole arrays read with plain zarr
(`read_rows`) and library sizes read from `metadata/total_reads` with plain zarr; exports are
read back with two bigWig readers that share no code with pyBigWig, which writes them
(pybigtools: Rust; pybbi: the UCSC library).
"""

from __future__ import annotations

import gzip
import io
import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from bamfactory import Read, write_bam
from zarr.storage import LocalStore, WrapperStore

from bamstore.api import BamStore, MissingExtraError
from bamstore.errors import QueryError
from bamstore.query import CoverageSource, export_track, profile, summarize_frame
from bamstore.simulate import make_bam

CONTIGS = [("chr1", 6000), ("chr2", 1300), ("chr3", 700)]  # 700 = 10 chunks of 64 + 60
CHUNK = 64
NAMES = ["a", "b", "c"]
STRANDED = {"b": "F", "c": "R"}
EDGE_CONTIGS = [("chrA", 900), ("chrB", 333)]  # chunks of 7: 900 = 128 x 7 + 4
REV = 0x10
BIN = Path(__file__).resolve().parents[1] / "bin" / "bamstore"


@pytest.fixture(scope="module", params=[False, True], ids=["unsharded", "sharded"])
def sharded(request: pytest.FixtureRequest) -> bool:
    """Every read is checked on both layouts: one file per chunk, and one shard per row."""
    return request.param


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, sharded: bool) -> Path:
    """Three samples (b and c stranded), chunks of 64."""
    folder = tmp_path_factory.mktemp("query")
    bams = [
        make_bam(folder / f"{name}.bam", 1200, CONTIGS, seed=seed, threads=1)
        for seed, name in enumerate(NAMES, start=31)
    ]
    out = folder / "cov.zarr"
    BamStore.from_bam_files(bams, store_path=out, chunk_len=CHUNK, stranded=STRANDED, shard=sharded)
    return out


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory: pytest.TempPathFactory, sharded: bool) -> Path:
    """Two stranded samples with reads on the first and last base of each contig, chunks of 7."""
    folder = tmp_path_factory.mktemp("edge")
    reads = [
        [
            Read("chrA", 0, "10M"),
            Read("chrA", 3, "20M", flag=REV),
            Read("chrA", 880, "20M"),
            Read("chrA", 895, "5M", flag=REV),
            Read("chrA", 400, "4M200N4M"),
            Read("chrB", 0, "333M", flag=REV),
            Read("chrB", 320, "13M"),
        ],
        [
            Read("chrA", 0, "1M"),
            Read("chrA", 6, "2M", flag=REV),
            Read("chrA", 899, "1M", flag=REV),
            Read("chrB", 100, "50M"),
            Read("chrB", 330, "3M", flag=REV),
        ],
    ]
    bams = [
        write_bam(folder / f"e{i}.bam", rs, EDGE_CONTIGS) for i, rs in enumerate(reads, start=1)
    ]
    out = folder / "edge.zarr"
    BamStore.from_bam_files(
        bams,
        chromsizes=dict(EDGE_CONTIGS),
        store_path=out,
        chunk_len=7,
        stranded="U",
        filter_chromosomes=False,
        shard=sharded,
    )
    return out


def library_sizes(store: Path) -> np.ndarray:
    return np.asarray(zarr.open_group(str(store), mode="r")["metadata/total_reads"][...], float)


def expected_summary(
    arrays: dict[str, np.ndarray],
    regions: list[tuple[str, int, int]],
    rows: list[int],
    stat: str,
    normalise: str,
    lib: np.ndarray,
) -> np.ndarray:
    """The oracle: each region's positions of the rows, reduced by numpy."""
    out = np.empty((len(regions), len(rows)))
    for i, (chrom, start, end) in enumerate(regions):
        seg = arrays[chrom][rows, start:end].astype(np.float64)
        if end == start:  # an empty region: sum 0 (per kb: undefined), no mean, max or min
            out[i] = 0.0 if stat == "sum" and normalise != "rpkm" else np.nan
            continue
        out[i] = getattr(seg, stat)(axis=1)
        if normalise != "none":
            out[i] /= lib[rows] / 1e6
        if normalise == "rpkm":
            out[i] = out[i] / ((end - start) / 1000) if stat == "sum" else out[i] * 1000
    return out


def special_regions(contigs: list[tuple[str, int]], chunk: int) -> list[tuple[str, int, int]]:
    """First and last base, whole contigs, exact chunks, pieces across boundaries, empty."""
    out: list[tuple[str, int, int]] = []
    for name, length in contigs:
        out += [
            (name, 0, 1),
            (name, length - 1, length),
            (name, 0, length),
            (name, chunk, 2 * chunk),
            (name, chunk - 1, chunk + 1),
            (name, length - length % chunk - 1, length),
            (name, length // 2, length // 2),
        ]
    return out


def random_regions(
    contigs: list[tuple[str, int]], n: int, seed: int, max_len: int = 400
) -> list[tuple[str, int, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        name, length = contigs[rng.integers(len(contigs))]
        start = int(rng.integers(0, length))
        out.append((name, start, int(min(length, start + rng.integers(0, max_len)))))
    return out


def write_bed(path: Path, regions: list[tuple], extra: bool = True) -> Path:
    """BED lines with a name and, when `extra`, score, strand and a 7th column."""
    lines = []
    for i, region in enumerate(regions):
        chrom, start, end = region[:3]
        strand = region[3] if len(region) > 3 else "+"
        tail = f"\tr{i}\t0\t{strand}\textra" if extra else ""
        lines.append(f"{chrom}\t{start}\t{end}{tail}\n")
    path.write_text("".join(lines))
    return path


def full_arrays(
    read_rows: Callable[[Path, str], np.ndarray], store: Path, contigs: list[tuple[str, int]]
) -> dict[str, dict[str | None, np.ndarray]]:
    """strand (None, fwd, rev) -> contig -> the whole (samples x length) array."""
    out: dict[str | None, dict[str, np.ndarray]] = {None: {}, "fwd": {}, "rev": {}}
    for name, _ in contigs:
        out[None][name] = read_rows(store, name)
        out["fwd"][name] = read_rows(store, name + "_fwd")
        out["rev"][name] = read_rows(store, name + "_rev")
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------- summarize


@pytest.mark.parametrize("strand", [None, "fwd", "rev"])
@pytest.mark.parametrize("normalise", ["none", "cpm", "rpkm"])
@pytest.mark.parametrize("stat", ["mean", "sum", "max", "min"])
def test_summarize_equals_numpy_over_the_store(
    store: Path, read_rows, tmp_path: Path, stat: str, normalise: str, strand: str | None
) -> None:
    regions = special_regions(CONTIGS, CHUNK) + random_regions(CONTIGS, 300, seed=5)
    bed = write_bed(tmp_path / "regions.bed", regions)
    got = BamStore.open(store).summarize(
        bed, stat=stat, normalise=normalise, strand=strand, threads=2
    )
    rows = [0, 1, 2] if strand is None else [1, 2]  # with a strand: the stranded samples
    want = expected_summary(
        full_arrays(read_rows, store, CONTIGS)[strand],
        regions,
        rows,
        stat,
        normalise,
        library_sizes(store),
    )
    assert list(got.columns) == ["chrom", "start", "end", "name"] + [NAMES[r] for r in rows]
    assert list(zip(got.chrom, got.start, got.end, strict=True)) == regions  # input order
    assert list(got.name) == [f"r{i}" for i in range(len(regions))]
    values = got[[NAMES[r] for r in rows]].to_numpy()
    if normalise == "none" and stat != "mean":
        np.testing.assert_array_equal(values, want)
    else:
        np.testing.assert_allclose(values, want, rtol=1e-12, equal_nan=True)
    assert np.isfinite(values[[i for i, r in enumerate(regions) if r[2] > r[1]]]).all()


def test_summarize_first_last_base_and_chunks_of_7(edge_store: Path, read_rows, tmp_path):
    regions = special_regions(EDGE_CONTIGS, 7) + random_regions(
        EDGE_CONTIGS, 200, seed=9, max_len=40
    )
    bed = write_bed(tmp_path / "edge.bed", regions, extra=False)
    arrays = full_arrays(read_rows, edge_store, EDGE_CONTIGS)
    assert arrays[None]["chrA"][:, [0, -1]].all() and arrays[None]["chrB"][:, -1].all()
    for strand in (None, "fwd", "rev"):
        for stat in ("mean", "sum", "max", "min"):
            got = summarize_frame(
                CoverageSource.open(edge_store), bed, stat=stat, strand=strand, threads=2
            )
            want = expected_summary(
                arrays[strand], regions, [0, 1], stat, "none", library_sizes(edge_store)
            )
            np.testing.assert_allclose(got[["e1", "e2"]].to_numpy(), want, equal_nan=True)
    assert (got.name == ".").all()


def many_regions_in_few_chunks(tmp_path: Path) -> Path:
    """Thousands of regions in chunks 0..16 of chr1 and chunks 9 and 10 of chr3."""
    rng = np.random.default_rng(1)
    starts = rng.integers(0, 1000, size=3000)
    regions = [("chr1", int(s), int(s) + 30) for s in starts] + [("chr3", 600, 700)]
    return write_bed(tmp_path / "many.bed", regions)


NEEDED_CHUNKS = [("chr1", c) for c in range(0, 1030 // CHUNK + 1)] + [("chr3", 9), ("chr3", 10)]


def test_summarize_decodes_each_block_once(
    store: Path, tmp_path: Path, read_rows, monkeypatch, sharded: bool
) -> None:
    """Thousands of regions in few chunks: each stored chunk the regions touch is loaded once
    (its header), each of its blocks decoded once (a 64-position chunk is one block here), and,
    sharded, each row's shard index is read once."""
    from bamstore.engine import shard
    from bamstore.query import chunks

    loaded: list[tuple[str, int, int]] = []
    indexes: list[Path] = []
    real_files, real_sharded = chunks.CoverageArray._load_files, chunks.CoverageArray._load_sharded
    real_index = shard.read_shard_index

    def count_files(self, pairs):
        loaded.extend((self.name, r, c) for r, c in pairs)
        return real_files(self, pairs)

    def count_sharded(self, pairs):
        loaded.extend((self.name, r, c) for r, c in pairs)
        return real_sharded(self, pairs)

    def count_index(path, n_inner):
        indexes.append(Path(path))
        return real_index(path, n_inner)

    rows = {contig: read_rows(store, contig) for contig in ("chr1", "chr3")}
    monkeypatch.setattr(chunks.CoverageArray, "_load_files", count_files)
    monkeypatch.setattr(chunks.CoverageArray, "_load_sharded", count_sharded)
    monkeypatch.setattr(shard, "read_shard_index", count_index)
    before = chunks.blocks_decoded()
    summarize_frame(CoverageSource.open(store), many_regions_in_few_chunks(tmp_path), stat="max")
    decoded = chunks.blocks_decoded() - before
    monkeypatch.undo()
    stored = [
        (contig, r, c)
        for contig, c in NEEDED_CHUNKS
        for r in range(3)
        if rows[contig][r, c * CHUNK : (c + 1) * CHUNK].any()
    ]
    assert sorted(loaded) == sorted({(a, r, c) for a, c in NEEDED_CHUNKS for r in range(3)})
    assert decoded == len(stored)
    if sharded:
        assert sorted(indexes) == sorted(set(indexes))
        assert len(indexes) == len({(contig, r) for contig, r, _ in stored})
    else:
        assert indexes == []


def test_block_reader_and_zarr_read_the_same(store: Path, tmp_path: Path, sharded: bool) -> None:
    """Stores bamstore writes (blosc and uncompressed) take the block reader and read what
    zarr reads; a zarr store of another kind (a wrapper) is read through zarr, the same."""
    bams = [make_bam(tmp_path / f"n{i}.bam", 300, CONTIGS, seed=70 + i, threads=1) for i in (0, 1)]
    plain = tmp_path / "plain.zarr"
    BamStore.from_bam_files(
        bams, store_path=plain, chunk_len=CHUNK, construction_compression="none", shard=sharded
    )
    for path, rows in ((store, [2, 0]), (plain, [1, 0])):
        source = CoverageSource.open(path)
        group = zarr.open_group(str(path), mode="r")
        for name, length in CONTIGS:
            assert source.coverage(name) is not None
            got = source.read(name, rows, 0, length)
            np.testing.assert_array_equal(got, group[name].oindex[rows, :])
    wrapped = zarr.open_group(store=WrapperStore(LocalStore(store, read_only=True)), mode="r")
    through_zarr = CoverageSource.from_group(str(store), wrapped)
    assert through_zarr.coverage("chr1") is None
    np.testing.assert_array_equal(
        through_zarr.read("chr1", [0, 2], 5, 4000),
        CoverageSource.open(store).read("chr1", [0, 2], 5, 4000),
    )


def test_summarize_cli_tsv(store: Path, tmp_path: Path, run_cli, read_rows) -> None:
    regions = [*random_regions(CONTIGS, 50, seed=2), ("chr3", 699, 700), ("chr2", 5, 5)]
    bed = write_bed(tmp_path / "r.bed", regions)
    out = tmp_path / "out.tsv"
    done = run_cli("summarize", store, "--bed", bed, "--stat", "sum", "--samples", "c,a", "-o", out)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "chrom\tstart\tend\tname\tc\ta"
    table = pd.read_csv(out, sep="\t")
    want = expected_summary(
        full_arrays(read_rows, store, CONTIGS)[None],
        regions,
        [2, 0],
        "sum",
        "none",
        library_sizes(store),
    )
    np.testing.assert_array_equal(table[["c", "a"]].to_numpy(), want)
    assert "." not in lines[1].split("\t")[4]  # sums of depths print as integers
    # stdin, mean with CPM to stdout: the API's numbers, printed so they read back exactly
    piped = subprocess.run(
        [
            sys.executable,
            str(BIN),
            "summarize",
            str(store),
            "--bed",
            "-",
            "--normalise",
            "cpm",
            "--threads",
            "2",
            "-o",
            "-",
        ],
        input=bed.read_text(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    api = BamStore.open(store).summarize(bed, normalise="cpm")
    streamed = pd.read_csv(io.StringIO(piped.stdout), sep="\t")
    pd.testing.assert_frame_equal(streamed, api, check_dtype=False)


FIX_SKIP = (
    "fix: use the store's contig names and lengths, or --missing skip (or nan) for such lines"
)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "chr1\t100",
            "has 2 column(s); BED needs at least 3 (chrom, start, end); "
            "fix: separate the columns with tabs",
        ),
        (
            "chr1",
            "has 1 column(s); BED needs at least 3 (chrom, start, end); "
            "fix: separate the columns with tabs",
        ),
        (
            "chr1\t200\t100",
            "start 200 is greater than end 100; "
            "fix: BED is 0-based with the end exclusive: start <= end",
        ),
        (
            "chr1\t1.5\t100",
            "start '1.5' is not a non-negative integer; "
            "fix: BED coordinates are 0-based whole numbers",
        ),
        (
            "chr1\t-5\t100",
            "start '-5' is not a non-negative integer; "
            "fix: BED coordinates are 0-based whole numbers",
        ),
        (
            "chr1\t10\t1e3",
            "end '1e3' is not a non-negative integer; "
            "fix: BED coordinates are 0-based whole numbers",
        ),
        ("chrZ\t1\t2", f"contig 'chrZ' is not in the store (it has chr1, chr2, chr3); {FIX_SKIP}"),
        (
            "chr3\t650\t701",
            f"region chr3:650-701 ends past the end of chr3 (length 700); {FIX_SKIP}",
        ),
        ("chr1\t1\t2\tx\t0\t*", "strand '*' is not +, - or .; fix: use +, - or ."),
    ],
)
def test_bad_bed_lines_exit_2_naming_the_line(
    store: Path, tmp_path: Path, run_cli, line: str, message: str
) -> None:
    bed = tmp_path / "bad.bed"
    bed.write_text(f"# a comment\nchr1\t0\t10\tok\n\n{line}\nchr1\t0\t5\n")  # bad line: 4
    out = tmp_path / "out.tsv"
    out.write_text("an earlier table\n")
    done = run_cli("summarize", store, "--bed", bed, "-o", out)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"bamstore: error: {bed} line 4: {message}"]
    assert out.read_text() == "an earlier table\n"  # not replaced, nothing half-written
    assert not list(tmp_path.glob(".*partial"))


def test_skip_missing_warns_with_the_count(store: Path, tmp_path: Path, run_cli) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t0\t10\nchrZ\t1\t2\nchr3\t690\t701\nchr2\t5\t9\nchrY\t1\t2\n")
    out = tmp_path / "out.tsv"
    done = run_cli("summarize", store, "--bed", bed, "--skip-missing", "-o", out)
    assert done.returncode == 0, done.stderr
    warning = [x for x in done.stderr.splitlines() if x.startswith("warning:")]
    assert warning == [
        f"warning: {bed}: skipped 3 BED line(s) outside the store (2 on contigs the store "
        f"lacks, 1 past a contig's end); first: {bed} line 2: contig 'chrZ' is not in the "
        "store (it has chr1, chr2, chr3)"
    ]
    table = pd.read_csv(out, sep="\t")
    assert list(zip(table.chrom, table.start, strict=True)) == [("chr1", 0), ("chr2", 5)]


def test_summarize_refuses_bad_choices(store: Path, tmp_path: Path, run_cli) -> None:
    bed = write_bed(tmp_path / "r.bed", [("chr1", 0, 10)])
    done = run_cli("summarize", store, "--bed", bed, "--samples", "a,zz", "-o", tmp_path / "o")
    assert done.returncode == 2
    assert "sample 'zz' is not in the store; fix: choose from a, b, c" in done.stderr
    done = run_cli("summarize", store, "--bed", bed, "--strand", "fwd", "--samples", "a", "-o", "-")
    assert done.returncode == 2
    assert "sample(s) a were not built stranded" in done.stderr
    done = run_cli("summarize", tmp_path / "nope.zarr", "--bed", bed, "-o", "-")
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"bamstore: error: {tmp_path / 'nope.zarr'}: store does not exist; fix: check the path"
    )
    done = run_cli("summarize", store, "--bed", tmp_path / "missing.bed", "-o", "-")
    assert done.returncode == 2 and "BED file does not exist" in done.stderr
    done = run_cli("summarize", store, "--bed", bed, "-o", tmp_path / "no" / "such" / "o.tsv")
    assert done.returncode == 2 and "its folder does not exist" in done.stderr


def test_summarize_reads_gzip_and_dataframes(store: Path, tmp_path: Path) -> None:
    regions = random_regions(CONTIGS, 20, seed=3)
    plain = write_bed(tmp_path / "r.bed", regions)
    packed = tmp_path / "r.bed.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    bs = BamStore.open(store)
    want = bs.summarize(plain, stat="max")
    pd.testing.assert_frame_equal(bs.summarize(packed, stat="max"), want)
    frame = pd.DataFrame(regions, columns=["chrom", "start", "end"])
    got = bs.summarize(frame, stat="max")
    pd.testing.assert_frame_equal(got.drop(columns="name"), want.drop(columns="name"))
    with pytest.raises(QueryError, match="unknown statistic 'median'"):
        bs.summarize(plain, stat="median")


# ---------------------------------------------------------------------------- profile


def expected_profile(
    arrays: dict[str, np.ndarray], points: list[tuple], rows: list[int], up: int, down: int, b: int
) -> np.ndarray:
    """The oracle: the window cut out and, on -, reversed, then averaged in bins of b."""
    out = np.empty((len(rows), len(points), (up + down) // b))
    for i, (chrom, start, end, strand) in enumerate(points):
        if strand == "-":
            values = arrays[chrom][rows, end - down : end + up][:, ::-1]
        else:
            values = arrays[chrom][rows, start - up : start + down]
        out[:, i, :] = values.reshape(len(rows), -1, b).mean(axis=2)
    return out


@pytest.mark.parametrize("normalise", ["none", "cpm", "rpkm"])
@pytest.mark.parametrize("strand", [None, "fwd", "rev"])
def test_profile_equals_numpy_both_orientations(
    store: Path, read_rows, tmp_path: Path, strand: str | None, normalise: str
) -> None:
    up, down, b = 60, 140, 20
    rng = np.random.default_rng(4)
    points: list[tuple] = [
        ("chr1", up, up + 5, "+"),  # window starts at the contig's first base
        ("chr1", 6000 - 300, 6000 - up, "-"),  # window ends at its last base
        ("chr3", 700 - down, 700 - down, "."),  # + window ending at the last base
        ("chr3", 0, down, "-"),  # - window starting at the first base
    ]
    for _ in range(150):
        chrom, length = CONTIGS[rng.integers(len(CONTIGS))]
        start = int(rng.integers(300, length - 300))
        points.append((chrom, start, start + int(rng.integers(0, 200)), "+-."[rng.integers(3)]))
    bed = write_bed(tmp_path / "points.bed", points)
    result = BamStore.open(store).profile(
        bed,
        upstream=up,
        downstream=down,
        bin_size=b,
        normalise=normalise,
        strand=strand,
        threads=2,
    )
    rows = [0, 1, 2] if strand is None else [1, 2]
    want = expected_profile(
        full_arrays(read_rows, store, CONTIGS)[strand], points, rows, up, down, b
    )
    if normalise != "none":
        want = want / (library_sizes(store)[rows] / 1e6)[:, None, None]
        if normalise == "rpkm":
            want = want * 1000
    assert result.matrix.dtype == np.float64 and result.matrix.shape == want.shape
    np.testing.assert_allclose(result.matrix, want, rtol=1e-12)
    assert result.samples == [NAMES[r] for r in rows]
    assert list(result.regions["strand"]) == [p[3] for p in points]
    assert list(result.regions["line"]) == list(range(1, len(points) + 1))


def test_profile_in_many_batches_equals_numpy(
    store: Path, read_rows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 7 regions (the default budget holds thousands): the matrix is the same,
    regions in input order across batch edges, with a skipped line inside a batch."""
    profile_module = sys.modules["bamstore.query.profile"]  # the package exports the function
    up, down, b = 40, 60, 20
    bins = (up + down) // b
    monkeypatch.setattr(profile_module, "BATCH_BYTES", 8 * bins * 3 * 7)
    rng = np.random.default_rng(11)
    points: list[tuple] = []
    for _ in range(50):
        chrom, length = CONTIGS[rng.integers(len(CONTIGS))]
        start = int(rng.integers(100, length - 100))
        points.append((chrom, start, start + 1, "+-"[rng.integers(2)]))
    bed = write_bed(tmp_path / "points.bed", [*points[:10], ("chr1", 0, 1, "+"), *points[10:]])
    got = profile(
        CoverageSource.open(store),
        bed,
        upstream=up,
        downstream=down,
        bin_size=b,
        missing="skip",
        threads=2,
    )
    want = expected_profile(
        full_arrays(read_rows, store, CONTIGS)[None], points, [0, 1, 2], up, down, b
    )
    np.testing.assert_allclose(got.matrix, want, rtol=1e-12)
    assert got.skipped == 1
    assert list(got.regions["line"]) == [*range(1, 11), *range(12, 52)]


def test_profile_edges_with_chunks_of_7(edge_store: Path, read_rows, tmp_path: Path) -> None:
    points = [
        ("chrA", 0, 3, "+"),
        ("chrA", 880, 900, "-"),
        ("chrB", 321, 333, "+"),
        ("chrB", 0, 12, "-"),
        ("chrA", 450, 451, "."),
    ]
    bed = write_bed(tmp_path / "p.bed", points)
    arrays = full_arrays(read_rows, edge_store, EDGE_CONTIGS)
    for strand in (None, "fwd", "rev"):
        got = profile(
            CoverageSource.open(edge_store),
            bed,
            upstream=0,
            downstream=12,
            bin_size=3,
            strand=strand,
        )
        want = expected_profile(arrays[strand], points, [0, 1], 0, 12, 3)
        np.testing.assert_allclose(got.matrix, want, rtol=1e-12)
        assert got.matrix[:, :2].any()  # the first and last bases are covered


def test_profile_cli_npz_plot_and_errors(store: Path, tmp_path: Path, run_cli, read_rows) -> None:
    points = [("chr1", 1000, 1001, "+"), ("chr2", 600, 700, "-"), ("chr1", 3000, 3010, ".")]
    bed = write_bed(tmp_path / "p.bed", points)
    out, png = tmp_path / "m.npz", tmp_path / "heat.png"
    done = run_cli(
        "profile",
        store,
        "--bed",
        bed,
        "--upstream",
        100,
        "--downstream",
        50,
        "--bin",
        25,
        "--normalise",
        "cpm",
        "--samples",
        "b,a",
        "-o",
        out,
        "--plot",
        png,
    )
    assert done.returncode == 0, done.stderr
    with np.load(out) as npz:  # loads without pickle
        assert npz["matrix"].shape == (2, 3, 6) and npz["matrix"].dtype == np.float64
        assert list(npz["samples"]) == ["b", "a"]
        assert list(npz["regions"]["chrom"]) == ["chr1", "chr2", "chr1"]
        assert list(npz["regions"]["name"]) == ["r0", "r1", "r2"]
        assert (int(npz["upstream"]), int(npz["downstream"]), int(npz["bin_size"])) == (100, 50, 25)
        assert str(npz["normalise"]) == "cpm"
        assert list(npz["bin_starts"]) == [-100, -75, -50, -25, 0, 25]
        want = expected_profile(
            full_arrays(read_rows, store, CONTIGS)[None], points, [1, 0], 100, 50, 25
        )
        want /= (library_sizes(store)[[1, 0]] / 1e6)[:, None, None]
        np.testing.assert_allclose(npz["matrix"], want, rtol=1e-12)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = run_cli(
        "profile",
        store,
        "--bed",
        bed,
        "--upstream",
        100,
        "--downstream",
        50,
        "--bin",
        30,
        "-o",
        out,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "bamstore: error: --upstream 100 is not a multiple of --bin 30 (a bin would straddle "
        "the reference point or hang off the window); fix: use --upstream 90 or 120, or a "
        "--bin that divides both"
    )
    near = write_bed(tmp_path / "near.bed", [("chr1", 10, 20, "+"), ("chr2", 1290, 1295, "-")])
    done = run_cli(
        "profile",
        store,
        "--bed",
        near,
        "--upstream",
        100,
        "--downstream",
        50,
        "--bin",
        25,
        "-o",
        out,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"bamstore: error: {near} line 1: window chr1:-90-60 starts before the start of chr1; "
        f"{FIX_SKIP}"
    )
    done = run_cli(
        "profile",
        store,
        "--bed",
        near,
        "--upstream",
        100,
        "--downstream",
        50,
        "--bin",
        25,
        "--skip-missing",
        "-o",
        out,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "skipped 2 BED line(s) outside the store (1 before a contig's start, 1 past a contig's "
        "end)" in done.stderr
    )
    with np.load(out) as npz:
        assert npz["matrix"].shape == (3, 0, 6)


# ---------------------------------------------------------------------------- export


def read_bedgraph(path: Path, contigs: list[tuple[str, int]]) -> dict[str, np.ndarray]:
    """Per-position values from a bedGraph; positions without a line stay NaN."""
    out = {name: np.full(length, np.nan) for name, length in contigs}
    for line in path.read_text().splitlines():
        chrom, start, end, value = line.split("\t")
        out[chrom][int(start) : int(end)] = float(value)
    return out


def bigwig_runs(path: Path, chrom: str) -> list[tuple[int, int, float]]:
    import pybigtools

    return [tuple(r) for r in pybigtools.open(str(path)).records(chrom)]


def bedgraph_runs(path: Path, chrom: str) -> list[tuple[int, int, float]]:
    runs = []
    for line in path.read_text().splitlines():
        c, s, e, v = line.split("\t")
        if c == chrom:
            runs.append((int(s), int(e), float(np.float32(v))))
    return runs


@pytest.mark.parametrize("strand", [None, "fwd", "rev"])
def test_export_reads_back_as_the_store_row(
    edge_store: Path, store: Path, read_rows, tmp_path: Path, strand: str | None
) -> None:
    import bbi
    import pybigtools

    for path, contigs, sample, row in (
        (store, CONTIGS, "c", 2),
        (edge_store, EDGE_CONTIGS, "e1", 0),
    ):
        bw, bg = tmp_path / f"{sample}.bw", tmp_path / f"{sample}.bedGraph"
        bs = BamStore.open(path)
        bs.to_bigwig(bw, sample, strand=strand, threads=2)
        bs.to_bedgraph(bg, sample, strand=strand)
        reader = pybigtools.open(str(bw))
        assert reader.chroms() == dict(contigs)
        from_text = read_bedgraph(bg, contigs)
        for chrom, length in contigs:
            want = read_rows(path, chrom if strand is None else f"{chrom}_{strand}")[row]
            np.testing.assert_array_equal(reader.values(chrom, 0, length, fillna=None), want)
            np.testing.assert_array_equal(
                bbi.fetch(str(bw), chrom, 0, length, missing=np.nan), want
            )
            np.testing.assert_array_equal(from_text[chrom], want)
            runs = bigwig_runs(bw, chrom)
            assert runs == bedgraph_runs(bg, chrom)  # the same runs, zeros included, in both
            values = [v for _, _, v in runs]
            assert all(a != b for a, b in itertools.pairwise(values))  # merged
            assert runs[0][0] == 0 and runs[-1][1] == length


def test_export_normalised_binned_and_subsets(store: Path, read_rows, tmp_path: Path, run_cli):
    import pybigtools

    lib = library_sizes(store)[1]
    bw, bg = tmp_path / "b.bw", tmp_path / "b.bg"
    for fmt, out in (("bigwig", bw), ("bedgraph", bg)):
        done = run_cli(
            "export",
            store,
            "--sample",
            "b",
            "--format",
            fmt,
            "--normalise",
            "rpkm",
            "--bin",
            10,
            "--chromosomes",
            "chr3,chr2",
            "-o",
            out,
        )
        assert done.returncode == 0, done.stderr
    reader = pybigtools.open(str(bw))
    assert reader.chroms() == {"chr2": 1300, "chr3": 700}  # store order, chosen contigs only
    text = read_bedgraph(bg, [("chr1", 6000), ("chr2", 1300), ("chr3", 700)])
    assert np.isnan(text["chr1"]).all()
    for chrom, length in (("chr2", 1300), ("chr3", 700)):
        row = read_rows(store, chrom)[1].astype(np.float64)
        bins = np.array([row[i : i + 10].mean() for i in range(0, length, 10)])
        want = np.repeat(bins, 10)[:length] / (lib / 1e6) * 1000
        np.testing.assert_allclose(text[chrom], want, rtol=1e-12)  # bedGraph: float64 text
        got = reader.values(chrom, 0, length, fillna=None)
        np.testing.assert_array_equal(got, want.astype(np.float32))  # bigWig: nearest float32
    # --skip-zeros leaves the zero runs out of both formats alike
    sparse_bw, sparse_bg = tmp_path / "s.bw", tmp_path / "s.bg"
    bs = BamStore.open(store)
    bs.to_bigwig(sparse_bw, "a", skip_zeros=True)
    bs.to_bedgraph(sparse_bg, "a", skip_zeros=True)
    for chrom, length in CONTIGS:
        row = read_rows(store, chrom)[0].astype(np.float64)
        runs = bigwig_runs(sparse_bw, chrom)
        assert runs == bedgraph_runs(sparse_bg, chrom) and all(v != 0 for *_, v in runs)
        got = pybigtools.open(str(sparse_bw)).values(chrom, 0, length, fillna=None)
        np.testing.assert_array_equal(got, np.where(row == 0, np.nan, row))


def test_export_errors_and_missing_extra(store: Path, tmp_path: Path, run_cli, monkeypatch):
    done = run_cli("export", store, "--sample", "zz", "--format", "bigwig", "-o", tmp_path / "x.bw")
    assert done.returncode == 2 and "sample 'zz' is not in the store" in done.stderr
    done = run_cli(
        "export",
        store,
        "--sample",
        "a",
        "--format",
        "bigwig",
        "--strand",
        "fwd",
        "-o",
        tmp_path / "x.bw",
    )
    assert done.returncode == 2 and "sample(s) a were not built stranded" in done.stderr
    done = run_cli(
        "export",
        store,
        "--sample",
        "a",
        "--format",
        "bedgraph",
        "--chromosomes",
        "chr9",
        "-o",
        tmp_path / "x.bg",
    )
    assert done.returncode == 2 and "has no contig 'chr9'" in done.stderr
    assert not list(tmp_path.iterdir())
    monkeypatch.setitem(__import__("sys").modules, "pyBigWig", None)
    with pytest.raises(MissingExtraError) as info:
        export_track(CoverageSource.open(store), "a", tmp_path / "y.bw")
    assert info.value.line() == (
        "bamstore export --format bigwig needs pyBigWig; fix: pip install 'bamstore[bigwig]'"
    )
    assert not list(tmp_path.iterdir())


def test_batches_give_the_same_table(store: Path, tmp_path: Path) -> None:
    """The BED is read in batches (memory bound); batch edges change nothing."""
    from bamstore.query.summarize import summarize, to_frame

    regions = random_regions(CONTIGS, 120, seed=12)
    bed = write_bed(tmp_path / "r.bed", regions)
    source = CoverageSource.open(store)
    whole = to_frame(summarize(source, bed, stat="min", threads=2))
    batched = to_frame(summarize(source, bed, stat="min", threads=2, batch_size=7))
    pd.testing.assert_frame_equal(batched, whole)
    assert list(zip(batched.chrom, batched.start, batched.end, strict=True)) == regions
