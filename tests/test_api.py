"""The Python API (`bamstore.api.BamStore`): QuantNado's calls over our engine.

Every BAM is generated in the test's tmp dir (bamstore.simulate or a few explicit reads); the
expected values come from pysam, plain zarr or QuantNado's reader rules, never from BamStore.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pysam
import pytest
import zarr
from bamfactory import Read, write_bam
from zarr.storage import LocalStore, WrapperStore

from bamstore import api, layout
from bamstore.api import BamStore, MissingExtraError, ReadOnlyStoreError, parse_region
from bamstore.engine import build
from bamstore.engine.validate import validate_store
from bamstore.errors import InputError, InputErrors, QueryError
from bamstore.query.normalise import scaling
from bamstore.simulate import make_bam

CONTIGS = [("chr1", 30_000), ("chr2", 12_000), ("chrUn_x", 3_000)]
KEPT = {"chr1": 30_000, "chr2": 12_000}  # filter_chromosomes=True drops chrUn_x
CHUNK = 4096
NAMES = ["a", "b", "c"]
STRANDED = {"c": "R"}


@pytest.fixture(scope="module")
def bams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bams")
    return {
        name: make_bam(folder / f"{name}.bam", 1500, CONTIGS, seed=seed)
        for seed, name in enumerate(NAMES, start=11)
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, bams: dict[str, Path]) -> Path:
    """A store made by from_bam_files, shared read-only by the reading tests."""
    out = tmp_path_factory.mktemp("built") / "cov.zarr"
    BamStore.from_bam_files(
        [bams[n] for n in NAMES], store_path=out, chunk_len=CHUNK, stranded=STRANDED
    )
    return out


def count_library(bam: Path, kept: dict[str, int], exclude: int = 0x704) -> int:
    """Independent library size: primary records passing the default filter on kept contigs."""
    n = 0
    with pysam.AlignmentFile(str(bam)) as f:
        for r in f.fetch(until_eof=True):
            if r.is_unmapped or r.reference_name not in kept or r.flag & (exclude | 0x900):
                continue
            n += r.reference_start < kept[r.reference_name]
    return n


def write_reads(path: Path, contigs: list[tuple[str, int]], reads: list[tuple[str, int, str]]):
    """A sorted, indexed BAM of single-end forward reads (contig, 0-based start, CIGAR)."""
    return write_bam(path, [Read(contig, pos, cigar) for contig, pos, cigar in reads], contigs)


# ---------------------------------------------------------------------------- region strings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("chr1:1,000-2,000", ("chr1", 1000, 2000)),
        ("chr1:1000-2000", ("chr1", 1000, 2000)),
        ("chr1", ("chr1", None, None)),
        ("chr1:0-1", ("chr1", 0, 1)),
        ("chrX:1,0,0-2,00", ("chrX", 100, 200)),  # QuantNado drops every comma
        ("chr1_KI270706v1_random:5-9", ("chr1_KI270706v1_random", 5, 9)),
        ("chr9:77,418,764-78,339,335", ("chr9", 77418764, 78339335)),  # QuantNado's docstring
    ],
)
def test_region_strings_parse_as_in_quantnado(text: str, expected: tuple) -> None:
    assert parse_region(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("chr1:9-5", "must not be less than start"),
        ("chr1:-5-10", "non-negative"),
        ("chr1:100", "Invalid region format"),
        ("chr1:-10", "Invalid region format"),
        ("chr1:a-b", "Invalid region format"),
        ("chr1:10-", "Invalid region format"),
        ("HLA:A:1-5", "Invalid region format"),
    ],
)
def test_bad_region_strings_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_region(text)


def test_region_coordinates_are_0_based_end_exclusive(tmp_path: Path) -> None:
    """A read at 0-based 1000 (1-based 1001) with 10M covers chr1:1,000-1,010 and nothing else."""
    bam = write_reads(tmp_path / "one.bam", [("chr1", 5000)], [("chr1", 1000, "10M")])
    store = BamStore.from_bam_files([bam], store_path=tmp_path / "one.zarr", chunk_len=1024)
    assert store.extract_region("chr1:1,000-1,010").tolist() == [[1] * 10]
    assert store.extract_region("chr1:990-1,000").tolist() == [[0] * 10]
    assert store.extract_region("chr1:1,010-1,020").tolist() == [[0] * 10]
    same = store.extract_region(chrom="chr1", start=995, end=1015)
    assert same.tolist() == [[0] * 5 + [1] * 10 + [0] * 5]
    whole = store.extract_region("chr1")
    assert whole.shape == (1, 5000) and int(whole.sum()) == 10
    assert np.flatnonzero(whole[0]).tolist() == list(range(1000, 1010))


# ---------------------------------------------------------------------------- interoperability


def test_reads_identically_through_bamstore_zarr_and_quantnado_rules(built: Path) -> None:
    store = BamStore.open(built)
    root = zarr.open_group(str(built), mode="r")  # plain zarr, as QuantNado opens it
    attrs = root.attrs
    # QuantNado's open: required attributes, hash check, metadata group and its arrays
    names = list(attrs["sample_names"])
    assert names == NAMES == store.sample_names
    assert attrs["sample_names_hash"] == hashlib.sha256("|".join(names).encode()).hexdigest()[:16]
    assert int(attrs["chunk_len"]) == CHUNK == store.chunk_len
    assert dict(attrs["chromsizes"]) == KEPT == store.chromsizes
    assert attrs["stranded"] == {"a": "", "b": "", "c": "R"}
    meta = root["metadata"]
    assert {"completed", "sparsity", "sample_hashes", "total_reads"} <= set(meta.array_keys())
    # every root member other than metadata is a contig (or its strand array), sized as stated
    members = sorted(k for k in root if k != "metadata")
    assert members == ["chr1", "chr1_fwd", "chr1_rev", "chr2", "chr2_fwd", "chr2_rev"]
    assert store.chromosomes == ["chr1", "chr2"]  # never the _fwd/_rev arrays
    for contig, length in KEPT.items():
        assert root[contig].shape == (3, length)
        whole = np.asarray(root[contig][...])
        assert np.array_equal(store.extract_region(chrom=contig), whole)
        assert np.array_equal(
            store.extract_region(chrom=contig, samples=["c"], strand="+"),
            np.asarray(root[f"{contig}_fwd"][2:3, :]),
        )
    # QuantNado's extract_region(as_xarray=False): root[chrom][sample_indices, start:end]
    chrom, start, end = parse_region("chr1:10,000-12,345")
    expected = np.asarray(root[chrom].oindex[[2, 0], start:end])
    assert np.array_equal(store.extract_region("chr1:10,000-12,345", samples=["c", "a"]), expected)
    assert np.array_equal(store.extract_region("chr1:10,000-12,345", samples=[2, 0]), expected)
    # library_sizes and sample hashes as QuantNado derives them
    reads = np.asarray(meta["total_reads"][...], dtype=float)
    assert store.library_sizes.tolist() == reads.tolist()
    hashes = ["".join(f"{b:02x}" for b in row) for row in np.asarray(meta["sample_hashes"][...])]
    assert store.sample_hashes == hashes
    assert store.metadata["sample_hash"].tolist() == hashes
    assert validate_store(built).ok


def test_library_sizes_equal_an_independent_count(built: Path, bams: dict[str, Path]) -> None:
    sizes = BamStore.open(built).library_sizes
    assert isinstance(sizes, pd.Series) and sizes.name == "library_size"
    assert sizes.to_dict() == {n: float(count_library(bams[n], KEPT)) for n in NAMES}


def test_open_refuses_a_reordered_sample_list(built: Path, tmp_path: Path) -> None:
    """QuantNado's rule (layout.sample_names_hash_problem): the stored hash must be that of
    the sample names, else the rows may not be the samples they are named after."""
    copy = tmp_path / "reordered.zarr"
    shutil.copytree(built, copy)
    doc = json.loads((copy / "zarr.json").read_text())
    stored = doc["attributes"]["sample_names_hash"]
    doc["attributes"]["sample_names"] = ["b", "a", "c"]
    (copy / "zarr.json").write_text(json.dumps(doc))
    current = layout.sample_names_hash(["b", "a", "c"])
    with pytest.raises(ValueError) as err:
        BamStore.open(copy)
    assert str(err.value) == f"Sample names hash mismatch (stored={stored}, current={current})"
    assert isinstance(err.value, InputError)
    del doc["attributes"]["sample_names_hash"]  # a store without the hash is opened
    (copy / "zarr.json").write_text(json.dumps(doc))
    assert BamStore.open(copy).sample_names == ["b", "a", "c"]


def test_open_is_read_only_for_real(built: Path, bams: dict[str, Path]) -> None:
    before = {p: p.read_bytes() for p in built.rglob("*") if p.is_file()}
    store = BamStore.open(built)
    assert store.read_only
    writes = [
        lambda: store.set_metadata(pd.DataFrame({"sample_id": ["a"], "x": [1]})),
        lambda: store.update_metadata({"x": ["1", "2", "3"]}),
        lambda: store.remove_metadata_columns(["x"]),
        lambda: store.process_samples([bams[n] for n in NAMES]),
    ]
    for write in writes:
        with pytest.raises(ReadOnlyStoreError, match="read-only"):
            write()
    with pytest.raises(ValueError, match="read-only"):  # the zarr group itself refuses writes
        store.root["chr1"][0, :3] = 7
    with pytest.raises(ValueError, match="read-only"):
        store.root.attrs["x"] = 1
    assert {p: p.read_bytes() for p in built.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------------------- reading


def test_normalisation(built: Path) -> None:
    store = BamStore.open(built)
    raw = store.extract_region("chr1:2,000-3,000").astype(float)
    lib = store.library_sizes.to_numpy()
    cpm = store.extract_region("chr1:2,000-3,000", normalise="cpm")
    assert np.allclose(cpm, raw / (lib[:, None] / 1e6))
    rpkm = store.extract_region("chr1:2,000-3,000", normalise="RPKM")
    assert np.allclose(rpkm, cpm * 1000)  # per-position RPKM: CPM / 0.001 kb
    given = store.extract_region(
        "chr1:2,000-3,000", samples=["b"], normalise="cpm", library_sizes={"b": 2_000_000}
    )
    assert np.allclose(given, raw[1:2] / 2.0)
    zero = store.extract_region(
        "chr1:2,000-3,000", samples=["a", "b"], normalise="cpm", library_sizes={"a": 0, "b": 1e6}
    )
    assert np.isnan(zero[0]).all() and not np.isinf(zero).any()
    assert np.allclose(zero[1], raw[1])
    with pytest.raises(ValueError, match="Library sizes missing"):
        store.extract_region("chr1:0-10", normalise="cpm", library_sizes={"a": 5})
    with pytest.raises(ValueError, match="TPM"):
        store.extract_region("chr1:0-10", normalise="tpm")


def test_extract_region_errors(built: Path, tmp_path: Path, bams: dict[str, Path]) -> None:
    store = BamStore.open(built)
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"region": "chr7:0-10"}, ValueError, "Chromosome 'chr7' not in store"),
        ({"chrom": "chr1_fwd"}, ValueError, "strand='+' or '-'"),
        ({"region": "chr2:11,990-12,001"}, ValueError, "exceeds chromosome size 12000"),
        ({"chrom": "chr2", "start": -1, "end": 5}, ValueError, "must be >= 0"),
        ({"chrom": "chr2", "start": 6, "end": 5}, ValueError, "must not be less than start"),
        ({"chrom": "chr2", "start": 2.5, "end": 5}, TypeError, "must be integers"),
        ({"region": "chr1:0-5", "chrom": "chr1"}, ValueError, "either 'region' or 'chrom'"),
        ({}, ValueError, "Must specify"),
        ({"region": "chr1:0-5", "samples": ["zz"]}, ValueError, "sample 'zz' is not in the"),
        ({"region": "chr1:0-5", "samples": [3]}, ValueError, "sample 3 is not in the store"),
        ({"region": "chr1:0-5", "samples": [1.5]}, TypeError, "strings or integers"),
        ({"region": "chr1:0-5", "samples": []}, ValueError, "samples is empty"),
        ({"region": "chr1:0-5", "strand": "x"}, ValueError, "unknown strand 'x'"),
        ({"region": "chr1:0-5", "samples": ["a"], "strand": "+"}, ValueError, "not built"),
        ({"region": "chr1:0-5", "strand": "+"}, ValueError, "sample(s) a, b were not built"),
    ]
    for kwargs, kind, message in cases:
        with pytest.raises(kind, match=re.escape(message)) as err:
            store.extract_region(**kwargs)
        assert isinstance(err.value, InputError)  # the CLI reports it as bad input
    flat = BamStore.from_bam_files([bams["a"]], store_path=tmp_path / "u.zarr", chunk_len=CHUNK)
    with pytest.raises(ValueError, match="no strand arrays"):
        flat.extract_region("chr1:0-5", strand="-")
    empty = BamStore(tmp_path / "e.zarr", KEPT, ["x", "y"], chunk_len=CHUNK)
    with pytest.raises(RuntimeError, match="incomplete"):
        empty.extract_region("chr1:0-5", samples=["y"])
    without = copy.copy(flat.source)
    without.total_reads = None
    with pytest.raises(RuntimeError, match="no metadata/total_reads"):
        scaling(without, [0], "cpm")


class _CountingStore(WrapperStore):
    """Records every key zarr asks the store for."""

    keys: list[str]

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        self.keys.append(key)
        return await self._store.get(key, prototype, byte_range)


def test_reading_touches_only_the_chunks_a_region_needs(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys: list[str] = []

    def counting(path: Path, read_only: bool) -> _CountingStore:
        store = _CountingStore(LocalStore(path, read_only=read_only))
        store.keys = keys
        return store

    monkeypatch.setattr(api, "local_store", counting)
    store = BamStore.open(built)
    keys.clear()
    store.extract_region("chr1:9,000-17,000", samples=["c", "a"])
    coverage = {k for k in keys if "/c/" in k and not k.startswith("metadata/")}
    # 9,000..16,999 at chunk_len 4096 lies in columns 2, 3 and 4; rows 2 (c) and 0 (a)
    assert coverage == {f"chr1/c/{row}/{col}" for row in (2, 0) for col in (2, 3, 4)}
    assert len(keys) == len(set(keys))  # nothing is read twice
    keys.clear()
    store.extract_region("chr2:100-200", samples=["c"], strand="-")
    assert {k for k in keys if "/c/" in k} == {"chr2_rev/c/2/0"}


def test_as_xarray_gives_labelled_data(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xarray")
    store = BamStore.open(built)
    arr = store.extract_region("chr2:1,000-1,050", samples=["b", "c"], as_xarray=True)
    assert arr.dims == ("sample", "position")
    assert arr["sample"].values.tolist() == ["b", "c"]
    assert arr["position"].values.tolist() == list(range(1000, 1050))
    assert arr.attrs["chromosome"] == "chr2" and arr.attrs["start"] == 1000
    assert np.array_equal(arr.values, store.extract_region("chr2:1,000-1,050", samples=[1, 2]))
    assert arr["sample_hash"].values.tolist() == store.sample_hashes[1:]
    monkeypatch.setitem(sys.modules, "xarray", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError, match=r"bamstore\[xarray\]"):
        store.extract_region("chr2:0-5", as_xarray=True)


# ---------------------------------------------------------------------------- building


def test_constructor_creates_attaches_and_refuses(tmp_path: Path) -> None:
    store = BamStore(tmp_path / "new", KEPT, ["x", "y"], chunk_len=1000, stranded="U")
    assert store.store_path == tmp_path / "new.zarr"  # QuantNado's _normalize_path
    assert store.n_completed == 0 and store.completed_mask.tolist() == [False, False]
    assert store.library_sizes.isna().all()
    assert store.stranded == {"x": "U", "y": "U"} and store.has_strand_arrays
    assert sorted(p.name for p in store.store_path.iterdir() if p.is_dir()) == [
        "chr1",
        "chr1_fwd",
        "chr1_rev",
        "chr2",
        "chr2_fwd",
        "chr2_rev",
        "metadata",
    ]
    path = tmp_path / "new.zarr"
    with pytest.raises(FileExistsError, match="overwrite=True or resume=True"):
        BamStore(path, KEPT, ["x", "y"], overwrite=False)
    with pytest.raises(ValueError, match="read-only"):
        BamStore(path, KEPT, ["x", "y"], read_only=True)
    with pytest.raises(FileNotFoundError):
        BamStore(tmp_path / "absent.zarr", KEPT, ["x"], read_only=True)
    with pytest.raises(ValueError, match="do not match stored sample_names"):
        BamStore(path, KEPT, ["y", "x"], resume=True)
    with pytest.raises(ValueError, match="stored strandedness"):
        BamStore(path, KEPT, ["x", "y"], resume=True, stranded={"x": "R"})
    with pytest.raises(ValueError, match="disagree"):
        BamStore(path, {"chr1": 30_001, "chr2": 12_000}, ["x", "y"], resume=True)
    attached = BamStore(path, KEPT, ["x", "y"], overwrite=False, read_only=True)
    assert attached.read_only and attached.chunk_len == 1000
    assert BamStore(path, None, ["x", "y"], resume=True).stranded == {"x": "U", "y": "U"}
    with pytest.raises(ValueError, match="chromsizes is needed"):
        BamStore(tmp_path / "none.zarr", None, ["x"])
    with pytest.raises(ValueError, match="unique"):
        BamStore(tmp_path / "d.zarr", KEPT, ["x", "x"])
    with pytest.raises(ValueError, match="Unknown sample names in stranded list"):
        BamStore(tmp_path / "d.zarr", KEPT, ["x"], stranded=["q"])
    with pytest.raises(ValueError, match="stranded must be one of"):
        BamStore(tmp_path / "d.zarr", KEPT, ["x"], stranded="X")
    listed = BamStore(tmp_path / "l.zarr", KEPT, ["x", "y"], stranded=["y"], chunk_len=500)
    assert listed.stranded == {"x": "", "y": "U"}
    auto = BamStore(tmp_path / "auto.zarr", KEPT, ["x"])
    assert auto.chunk_len == 42_000  # QuantNado's estimate, capped at the genome length


def test_process_samples_fills_rows_like_a_build(
    built: Path, bams: dict[str, Path], tmp_path: Path
) -> None:
    """Rows filled two samples at a time (threads) equal the merged build, chunk for chunk."""
    store = BamStore(tmp_path / "p.zarr", KEPT, NAMES, chunk_len=CHUNK, stranded=STRANDED)
    store.process_samples([bams[n] for n in NAMES], max_workers=2)
    assert store.n_completed == 3
    reference = BamStore.open(built)
    for contig in ("chr1", "chr1_fwd", "chr2_rev"):
        assert np.array_equal(
            np.asarray(store.root[contig][...]), np.asarray(reference.root[contig][...])
        )
    assert store.library_sizes.equals(reference.library_sizes)
    assert store.sample_hashes == reference.sample_hashes
    assert validate_store(store.store_path).ok, validate_store(store.store_path).problems
    assert not list(tmp_path.glob(".p.zarr.*"))  # no parts or lock left behind


def test_resume_skips_completed_samples(
    bams: dict[str, Path], built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_extract = build.extract_sample

    def extract(bam: Path, sample: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(sample)
        if sample == "b" and os.environ.get("FAIL_B"):
            raise InputError(bam, "simulated failure")
        return real_extract(bam, sample, *args, **kwargs)

    monkeypatch.setattr(build, "extract_sample", extract)
    monkeypatch.setenv("FAIL_B", "1")
    path = tmp_path / "r.zarr"
    store = BamStore(path, KEPT, NAMES, chunk_len=CHUNK, stranded=STRANDED)
    with pytest.raises(InputErrors, match="1 of 3 sample"):
        store.process_samples([bams[n] for n in NAMES])
    assert calls == ["a", "b", "c"]
    assert store.completed_mask.tolist() == [True, False, True]
    first_chunk = layout.chunk_path(path, "chr1", 0, 0)
    inode = first_chunk.stat().st_ino
    monkeypatch.delenv("FAIL_B")
    calls.clear()
    resumed = BamStore(path, KEPT, NAMES, overwrite=False, resume=True)
    # a's BAM is gone: resuming must not even open it
    resumed.process_samples([tmp_path / "gone.bam", bams["b"], bams["c"]])
    assert calls == ["b"]
    assert resumed.completed_mask.all()
    assert first_chunk.stat().st_ino == inode  # row a untouched
    reference = BamStore.open(built)
    assert np.array_equal(np.asarray(resumed.root["chr1"][...]), reference.root["chr1"][...])
    assert validate_store(path).ok
    calls.clear()  # resume=True wins over the default overwrite=True: nothing is rebuilt
    again = BamStore.from_bam_files(
        [tmp_path / "gone.bam"] * 3,
        chromsizes=KEPT,
        store_path=path,
        bam_sample_names=NAMES,
        resume=True,
    )
    assert calls == [] and again.n_completed == 3


def test_staging_dir_builds_elsewhere_and_publishes_atomically(
    bams: dict[str, Path], built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch, out_dir = tmp_path / "scratch", tmp_path / "project"
    out_dir.mkdir()
    final = out_dir / "s.zarr"
    parts_at: list[Path] = []
    final_existed: list[bool] = []
    real_merge = build.merge_stores

    def spy(parts: list[Path], out: Path, **kwargs: Any) -> Any:
        parts_at.append(Path(parts[0]))
        final_existed.append(final.exists())
        return real_merge(parts, out, **kwargs)

    monkeypatch.setattr(build, "merge_stores", spy)
    args = ([bams[n] for n in NAMES],)
    store = BamStore.from_bam_files(
        *args, store_path=out_dir / "s", staging_dir=scratch, chunk_len=CHUNK, stranded=STRANDED
    )
    assert parts_at[0].is_relative_to(scratch)  # the per-sample writing happens on scratch
    assert final_existed == [False]  # nothing at the final path while building
    assert store.store_path == final and not store.read_only
    assert np.array_equal(np.asarray(store.root["chr2"][...]), BamStore.open(built).root["chr2"])
    assert list(scratch.iterdir()) == []  # staging copy removed
    assert sorted(p.name for p in out_dir.iterdir()) == ["s.zarr"]  # no tmp, old or lock left

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    BamStore.from_bam_files(
        [bams["a"]], store_path=out_dir / "t.zarr", local_staging=True, chunk_len=CHUNK
    )
    assert parts_at[1].is_relative_to(tmpdir) and list(tmpdir.iterdir()) == []

    # a failed rebuild leaves the published store as it was
    before = {p: p.read_bytes() for p in final.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.bam"
    bad.write_bytes(b"not a bam")
    with pytest.raises(InputErrors, match="not a BAM"):
        BamStore.from_bam_files([bams["a"], bad], store_path=final, staging_dir=scratch)
    assert {p: p.read_bytes() for p in final.rglob("*") if p.is_file()} == before
    assert list(scratch.iterdir()) == []
    with pytest.raises(ValueError, match="resume=True is not supported"):
        BamStore.from_bam_files(*args, store_path=final, staging_dir=scratch, resume=True)
    with pytest.raises(FileExistsError):
        BamStore.from_bam_files(*args, store_path=final, local_staging=True, overwrite=False)


def test_test_mode_keeps_only_chr21_chr22_chry(tmp_path: Path) -> None:
    contigs = [("chr1", 9000), ("chr21", 6000), ("chr22", 5000), ("chrY", 4000), ("chrM", 2000)]
    bam = make_bam(tmp_path / "hg.bam", 600, contigs, seed=5)
    store = BamStore.from_bam_files([bam], store_path=tmp_path / "t.zarr", test=True)
    assert store.chromosomes == ["chr21", "chr22", "chrY"]
    assert store.chromsizes == {"chr21": 6000, "chr22": 5000, "chrY": 4000}
    assert sorted(zarr.open_group(str(store.store_path), mode="r")) == [
        "chr21",
        "chr22",
        "chrY",
        "metadata",
    ]
    kept = {"chr21": 6000, "chr22": 5000, "chrY": 4000}
    assert store.library_sizes.tolist() == [float(count_library(bam, kept))]


def test_filter_chromosomes(tmp_path: Path, run_cli) -> None:
    """The API chooses contigs by bamstore's rules (the same as --chromosomes) and records the
    rule, not the contig list; QuantNado's own rule ('chr' without '_') kept chrEBV and dropped
    every Ensembl name, and ignored filter_chromosomes=False."""
    contigs = [("chr1", 8000), ("chrUn_x", 3000), ("1", 4000), ("chrEBV", 2000)]
    bam = make_bam(tmp_path / "mixed.bam", 500, contigs, seed=9)
    kept = BamStore.from_bam_files([bam], store_path=tmp_path / "f.zarr")
    assert list(kept.chromsizes) == ["chr1", "1"]  # primary chromosomes, either naming
    assert kept.attrs["bamstore"]["settings"]["chromosome_selection"] == "primary"
    every = BamStore.from_bam_files(
        [bam], store_path=tmp_path / "all.zarr", filter_chromosomes=False
    )
    assert every.chromsizes == dict(contigs)
    assert every.attrs["bamstore"]["settings"]["chromosome_selection"] == "all"
    assert every.library_sizes.tolist() == [float(count_library(bam, dict(contigs)))]
    unplaced = make_bam(tmp_path / "un.bam", 200, [("chrUn_a", 5000), ("chrEBV", 2000)], seed=3)
    with pytest.raises(InputError, match="keeps no contig"):  # never an empty store
        BamStore.from_bam_files([unplaced], store_path=tmp_path / "e.zarr")
    assert not (tmp_path / "e.zarr").exists()


def test_api_stores_and_cli_parts_record_the_same_rule_and_merge(
    tmp_path: Path, bams: dict[str, Path], run_cli
) -> None:
    """API stores recorded the joined contig list as their chromosome selection and CLI parts
    the rule, so the two could not be merged."""
    api_store = BamStore.from_bam_files(
        [bams["a"]], store_path=tmp_path / "api.zarr", chunk_len=CHUNK
    ).store_path
    part = tmp_path / "b.zarr"
    done = run_cli("extract", "--bam", bams["b"], "--sample", "b", "--out", part,
                   "--chunk-len", CHUNK)  # fmt: skip
    assert done.returncode == 0, done.stderr
    merged = tmp_path / "m.zarr"
    done = run_cli("merge", api_store, part, "--out", merged)
    assert done.returncode == 0, done.stderr
    store = BamStore.open(merged)
    assert store.sample_names == ["a", "b"] and store.chromsizes == KEPT
    assert store.attrs["bamstore"]["settings"]["chromosome_selection"] == "primary"
    assert validate_store(merged).ok


def test_metadata_methods(built: Path, tmp_path: Path, bams: dict[str, Path]) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text("sample_id,condition,her2_status\na,treated,pos\nc,control,\n")
    store = BamStore.from_bam_files(
        [bams[n] for n in NAMES],
        store_path=tmp_path / "m.zarr",
        metadata=[csv],
        chunk_len=CHUNK,
    )
    attrs = json.loads((store.store_path / "zarr.json").read_text())["attributes"]
    assert attrs["metadata_condition"] == ["treated", "", "control"]
    assert attrs["metadata_her2_status"] == [
        "pos",
        "",
        "",
    ]  # QuantNado drops columns containing "r2"
    assert store.list_metadata_columns() == ["condition", "her2_status"]
    meta = store.metadata
    assert meta.index.name == "sample_id" and meta.index.tolist() == NAMES
    assert meta["condition"].tolist()[::2] == ["treated", "control"]
    assert pd.isna(meta.loc["b", "condition"])
    assert meta["completed"].tolist() == [True, True, True]
    # merge=True keeps values of samples the new table does not name; NaN is stored as ""
    store.set_metadata(pd.DataFrame({"sample_id": ["b", "c"], "condition": ["x", np.nan]}))
    assert store.attrs["metadata_condition"] == ["treated", "x", ""]
    store.update_metadata({"batch": [1, 2, 3], "condition": {"a": "y"}})
    assert store.attrs["metadata_batch"] == ["1", "2", "3"]
    assert store.attrs["metadata_condition"] == ["y", "x", ""]
    store.remove_metadata_columns(["her2_status"])
    assert store.list_metadata_columns() == ["condition", "batch"]
    store.set_metadata(
        pd.DataFrame({"name": ["a"], "lane": [7]}), sample_column="name", merge=False
    )
    assert store.list_metadata_columns() == ["lane"]
    assert store.attrs["metadata_lane"] == ["7", "", ""]
    out_csv, out_json = tmp_path / "m.csv", tmp_path / "m.json"
    store.metadata_to_csv(out_csv)
    store.metadata_to_json(out_json)
    assert BamStore.metadata_from_csv(out_csv)["sample_id"].tolist() == NAMES
    back = BamStore.metadata_from_json(out_json)
    assert back["sample_id"].tolist() == NAMES and back["lane"].tolist()[0] == "7"
    with pytest.raises(ValueError, match="Sample column 'sample_id' not found"):
        store.set_metadata(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="would use it to relabel the samples"):
        store.set_metadata(pd.DataFrame({"s": ["a"], "sample_id": ["other"]}), sample_column="s")
    with pytest.raises(ValueError, match="Sample hash mismatch"):
        store.set_metadata(pd.DataFrame({"sample_id": ["a"], "sample_hash": ["00ff"]}))
    ok = pd.DataFrame({"sample_id": ["a"], "sample_hash": [store.sample_hashes[0]]})
    store.set_metadata(ok)
    with pytest.raises(ValueError, match="has 2 items"):
        store.update_metadata({"z": ["1", "2"]})
    assert validate_store(store.store_path).ok


def test_log_file_receives_the_build_log(bams: dict[str, Path], tmp_path: Path) -> None:
    log_file = tmp_path / "build.log"
    log_file.write_text("old content\n")
    BamStore.from_bam_files(
        [bams["a"]], store_path=tmp_path / "l.zarr", chunk_len=CHUNK, log_file=log_file
    )
    text = log_file.read_text()
    assert "old content" not in text and "published" in text


def test_process_samples_refuses_inputs_that_do_not_fit(
    bams: dict[str, Path], tmp_path: Path
) -> None:
    store = BamStore(tmp_path / "w.zarr", {"chr1": 29_000, "chr2": 12_000}, ["a"], chunk_len=CHUNK)
    with pytest.raises(ValueError, match="bam_files length"):
        store.process_samples([bams["a"], bams["b"]])
    with pytest.raises(
        InputErrors, match="'chr1' is 30000 bp in the BAM header but 29000 bp in the store"
    ):
        store.process_samples([bams["a"]])
    assert store.n_completed == 0 and not layout.row_chunk_files(store.store_path, "chr1", 0)
    doc_path = store.store_path / "zarr.json"
    doc = json.loads(doc_path.read_text())
    del doc["attributes"][layout.BAMSTORE_ATTR]  # as QuantNado writes it
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="not made by bamstore"):
        BamStore.open(store.store_path, read_only=False).process_samples([bams["a"]])


# ---------------------------------------------------------------------------- plain scripts


def _script(path: Path, body: str) -> Path:
    path.write_text("from bamstore import BamStore\n" + body)
    return path


def test_parallel_build_from_a_script_without_main_guard(
    tmp_path: Path, bams: dict[str, Path]
) -> None:
    """max_workers=2 in a script without `if __name__ == "__main__":` once ran the script
    body three times and died with BrokenProcessPool (spawned workers re-import __main__)."""
    paths = [str(bams[n]) for n in NAMES]
    script = _script(
        tmp_path / "build.py",
        'print("body")\n'
        f"store = BamStore.from_bam_files({paths!r}, store_path={str(tmp_path / 's.zarr')!r}, "
        f"chunk_len={CHUNK}, max_workers=2)\n"
        'print("complete", store.n_completed)\n',
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["body", "complete 3"]
    assert validate_store(tmp_path / "s.zarr").ok


def test_killed_resume_run_leaves_no_parts_after_a_rerun(tmp_path: Path) -> None:
    """from_bam_files(resume=True) killed and rerun once left the dead run's
    .NAME.zarr.parts-XXXX folder behind."""
    contigs = [("chr1", 2_000_000), ("chr2", 600_000)]
    paths = [
        str(make_bam(tmp_path / f"{n}.bam", 60_000, contigs, seed=30 + i, threads=1))
        for i, n in enumerate(NAMES)
    ]
    script = _script(
        tmp_path / "resume.py",
        f"BamStore.from_bam_files({paths!r}, store_path={str(tmp_path / 'r.zarr')!r}, "
        "chunk_len=2000, resume=True)\n",
    )
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if list(tmp_path.glob(".r.zarr.parts*/*")):
            break
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    assert list(tmp_path.glob(".r.zarr.parts*")), "the run ended before it could be killed"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob(".r.zarr*")) == []
    assert BamStore.open(tmp_path / "r.zarr").n_completed == 3


# ---------------------------------------------------------------------------- metadata values


def test_metadata_values_are_kept_as_written_and_never_hidden(
    tmp_path: Path, bams: dict[str, Path]
) -> None:
    """The API's own table reader guessed types: with a blank cell "1" became "1.0"; a user
    column `completed` was shadowed by the internal flag in `store.metadata`."""
    sheet = tmp_path / "meta.csv"
    sheet.write_text("sample_id,batch,lane\na,1,\nb,2,07\nc,,x\n")
    store = BamStore.from_bam_files(
        [bams[n] for n in NAMES], store_path=tmp_path / "m.zarr", metadata=sheet, chunk_len=CHUNK
    )
    assert store.attrs["metadata_batch"] == ["1", "2", ""]
    assert store.attrs["metadata_lane"] == ["", "07", "x"]
    assert store.metadata["batch"].tolist()[:2] == ["1", "2"]

    hidden = tmp_path / "hidden.csv"
    hidden.write_text("sample_id,completed\na,yes\nb,no\nc,yes\n")
    with pytest.raises(InputError) as err:
        BamStore.from_bam_files([bams["a"]], store_path=tmp_path / "h.zarr", metadata=hidden)
    assert err.value.line() == (
        "metadata: metadata column 'completed' would be hidden: readers show the store's own "
        "'completed' under that name; fix: rename the column (e.g. to completed_1)"
    )
    assert not (tmp_path / "h.zarr").exists()
    frame = pd.DataFrame({"sample_id": NAMES, "completed": ["yes", "no", "yes"]})
    with pytest.raises(ValueError, match="'completed' would be hidden"):
        store.set_metadata(frame)
    # a table that came out of metadata_to_csv goes back in: its derived columns are the
    # store's own and are left out, the rest is kept as it is
    out_csv = tmp_path / "round.csv"
    store.metadata_to_csv(out_csv)
    table = BamStore.metadata_from_csv(out_csv)  # text as written, no type guessing
    assert table["lane"].tolist() == ["", "07", "x"] and table["batch"].tolist() == ["1", "2", ""]
    assert table["completed"].tolist() == ["True"] * 3
    store.set_metadata(table)
    assert store.list_metadata_columns() == ["batch", "lane"]
    assert store.attrs["metadata_lane"] == ["", "07", "x"]
    assert store.attrs["metadata_batch"] == ["1", "2", ""]
    guessed = BamStore.metadata_from_csv(out_csv, dtype=None, keep_default_na=True)
    assert guessed["lane"].tolist()[1:] == ["07", "x"] and guessed["batch"].tolist()[0] == 1.0


def test_extract_regions_equals_extract_region_per_region(built: Path, tmp_path: Path) -> None:
    """The batched read gives, region by region, what extract_region gives: across contigs,
    chunk and block edges (chunks of 4,096 here), both contig ends, any order, with samples
    chosen, a strand, and normalised; zero-length regions are read as such."""
    store = BamStore.open(built)
    rng = np.random.default_rng(5)
    width = 700
    regions = [("chr1", 0, width), ("chr1", 30_000 - width, 30_000), ("chr2", 4096 - 350, 4446)]
    regions += [("chr2", 12_000 - width, 12_000), ("chr1", 8192 - 1, 8192 - 1 + width)]
    for _ in range(40):
        contig, length = [("chr1", 30_000), ("chr2", 12_000)][int(rng.integers(0, 2))]
        start = int(rng.integers(0, length - width + 1))
        regions.append((contig, start, start + width))
    for options in (
        {},
        {"samples": ["c", "a"]},
        {"samples": ["c"], "strand": "-"},
        {"normalise": "cpm"},
        {"samples": [1, 1], "normalise": "rpkm"},
    ):
        got = store.extract_regions(regions, **options)
        assert got.shape[0] == len(regions) and got.shape[2] == width
        for i, (contig, start, end) in enumerate(regions):
            want = store.extract_region(chrom=contig, start=start, end=end, **options)
            np.testing.assert_array_equal(got[i], want)
    strings = [f"{c}:{s}-{e}" for c, s, e in regions]
    np.testing.assert_array_equal(store.extract_regions(strings), store.extract_regions(regions))
    frame = pd.DataFrame(regions, columns=["chrom", "start", "end"])
    np.testing.assert_array_equal(store.extract_regions(frame), store.extract_regions(regions))
    assert store.extract_regions([("chr1", 5, 5), ("chr2", 0, 0)]).shape == (2, 3, 0)
    assert store.extract_region(chrom="chr1", start=5, end=5).shape == (3, 0)
    assert store.extract_region("chr1:5-5").shape == (3, 0)


def test_extract_regions_refuses_mixed_widths_and_bad_regions(built: Path) -> None:
    store = BamStore.open(built)
    with pytest.raises(QueryError, match="region 0 has 10 positions, region 1 has 11"):
        store.extract_regions([("chr1", 0, 10), ("chr1", 0, 11)])
    with pytest.raises(QueryError, match="exceeds chromosome size"):
        store.extract_regions([("chr1", 29_995, 30_005)])
    with pytest.raises(QueryError, match="not in store"):
        store.extract_regions([("chrX", 0, 10)])


def test_iter_regions_streams_a_bed_in_batches(built: Path, tmp_path: Path) -> None:
    store = BamStore.open(built)
    rng = np.random.default_rng(6)
    starts = rng.integers(0, 30_000 - 500, 23)
    bed = tmp_path / "w.bed"
    bed.write_text("".join(f"chr1\t{s}\t{s + 500}\tw{i}\n" for i, s in enumerate(starts)))
    batches = list(store.iter_regions(bed, batch_size=10, samples=["b", "c"]))
    assert [len(b.regions) for b in batches] == [10, 10, 3]
    assert all(b.samples == ["b", "c"] for b in batches)
    values = np.concatenate([b.values for b in batches])
    regions = [("chr1", int(s), int(s) + 500) for s in starts]
    np.testing.assert_array_equal(values, store.extract_regions(regions, samples=["b", "c"]))
    assert batches[0].regions.name.tolist()[:2] == ["w0", "w1"]
    frame = pd.DataFrame(regions, columns=["chrom", "start", "end"])
    again = np.concatenate([b.values for b in store.iter_regions(frame, batch_size=7)])
    np.testing.assert_array_equal(again, store.extract_regions(regions))
    bed.write_text("chr1\t0\t500\nchr1\t0\t501\n")
    with pytest.raises(QueryError, match="line 2: has 501 positions"):
        list(store.iter_regions(bed))
