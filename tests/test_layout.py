"""A built store, opened with plain zarr, meets every item of QuantNado's writer checklist (the
layout described in bamstore/layout/: attributes, arrays, chunking, codecs and metadata
arrays that QuantNado's readers need), and our encoder writes the bytes zarr would."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from support import TEST_DATA
from zarr.codecs import BloscCodec

from bamstore import layout
from bamstore.engine.build import build_store
from bamstore.engine.extract import ExtractOptions

SAMPLES = ["chip_a", "chip_b", "atac_se", "rna_r"]


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("layout") / "demo.zarr"
    build_store([TEST_DATA / "samplesheet.csv"], out, ExtractOptions(chunk_len=16_384), jobs=2)
    return out


def test_writer_checklist(demo_store: Path) -> None:
    root = zarr.open_group(str(demo_store), mode="r")
    # 1. a zarr v3 group at X.zarr
    assert demo_store.suffix == ".zarr"
    assert json.loads((demo_store / "zarr.json").read_text())["zarr_format"] == 3
    attrs = dict(root.attrs)
    chromsizes = attrs["chromsizes"]
    n = len(SAMPLES)
    # 2. one (n, L) uint32 array per kept contig, chunks (1, chunk_len), fill 0
    assert list(chromsizes) == ["chr1", "chr2", "chrM"]  # 'primary' drops chrUn_test
    for contig, length in chromsizes.items():
        arr = root[contig]
        assert arr.shape == (n, length)
        assert arr.chunks == (1, attrs["chunk_len"])
        assert arr.dtype == np.uint32
        assert arr.fill_value == 0
    # 3. _fwd/_rev for every contig iff any sample is stranded (rna_r is)
    for contig, length in chromsizes.items():
        for suffix in ("_fwd", "_rev"):
            assert root[contig + suffix].shape == (n, length)
    # 4. metadata group with its four arrays
    meta = root["metadata"]
    assert meta["completed"].dtype == np.bool_ and meta["completed"].shape == (n,)
    assert meta["sparsity"].dtype == np.float32 and np.isnan(meta["sparsity"].fill_value)
    assert meta["sample_hashes"].dtype == np.uint8 and meta["sample_hashes"].shape == (n, 16)
    assert meta["total_reads"].dtype == np.int64
    # 5. every root attribute of the table, with an exact sample_names_hash
    for key in layout.ROOT_ATTRS:
        assert key in attrs, key
    assert attrs["sample_names"] == SAMPLES
    expected_hash = hashlib.sha256("|".join(SAMPLES).encode()).hexdigest()[:16]
    assert attrs["sample_names_hash"] == expected_hash
    assert attrs["chromosomes"] == sorted(chromsizes)
    assert attrs["n_samples"] == n and attrs["bin_size"] == 1
    assert attrs["structure"] == "per-chromosome (sample x position)"
    assert attrs["construction_compression"] == "default"
    assert attrs["stranded"] == {"chip_a": "", "chip_b": "", "atac_se": "", "rna_r": "R"}
    assert attrs["average_sparsity"] == pytest.approx(float(np.nanmean(meta["sparsity"][:])))
    # 6. metadata as metadata_<col> lists of strings; input columns are not metadata
    assert attrs["metadata_condition"] == ["treated", "control", "treated", "control"]
    assert attrs["metadata_replicate"] == ["1", "1", "2", "2"]
    assert not any(k in attrs for k in ("metadata_bam", "metadata_bai", "metadata_strandedness"))
    # 7. completed only once rows are final
    assert meta["completed"][:].all()
    # 8. no extra root members: contigs, their strand arrays, metadata
    members = sorted(name for name, _ in root.members())
    expected = sorted([*layout.coverage_array_names(chromsizes, True), "metadata"])
    assert members == expected
    # our own settings live in one attribute
    assert attrs["bamstore"]["settings"]["exclude_flags"] == 0x704


def test_sample_hashes_are_md5_of_first_16_kib(demo_store: Path) -> None:
    hashes = zarr.open_group(str(demo_store), mode="r")["metadata"]["sample_hashes"][:]
    for row, name in enumerate(SAMPLES):
        digest = hashlib.md5((TEST_DATA / f"{name}.bam").read_bytes()[:16384]).digest()
        assert bytes(hashes[row]) == digest


def test_unstranded_samples_have_empty_strand_rows(demo_store: Path) -> None:
    root = zarr.open_group(str(demo_store), mode="r")
    for contig in root.attrs["chromsizes"]:
        fwd, rev, total = root[contig + "_fwd"][:], root[contig + "_rev"][:], root[contig][:]
        assert not fwd[:3].any() and not rev[:3].any()
        np.testing.assert_array_equal(fwd[3] + rev[3], total[3])
        assert fwd[3].any()


@pytest.mark.parametrize("profile", sorted(layout.COMPRESSION_PROFILES))
def test_encoder_bytes_equal_zarr_bytes(tmp_path: Path, profile: str) -> None:
    chunk_len = 65_536  # 16 blosc blocks of BLOSC_BLOCK_BYTES
    rng = np.random.default_rng(0)
    values = np.repeat(rng.poisson(5, chunk_len // 8), 8).astype(np.uint32)
    prof = layout.compression_profile(profile)
    compressors = (
        BloscCodec(
            cname="zstd",
            clevel=prof.blosc_clevel,
            shuffle="shuffle",
            blocksize=layout.BLOSC_BLOCK_BYTES,
        )
        if prof.blosc_clevel is not None
        else None
    )
    arr = zarr.create_array(
        str(tmp_path / "x.zarr"),
        shape=(1, chunk_len),
        chunks=(1, chunk_len),
        dtype="uint32",
        fill_value=0,
        compressors=compressors,
    )
    arr[0, :] = values
    chunk_file = tmp_path / "x.zarr" / "c" / "0" / "0"
    written = chunk_file.read_bytes()
    ours = prof.encoder().encode(values)
    if prof.blosc_clevel is None:
        assert ours == written
    else:
        # c-blosc's header (version, flags, typesize, nbytes, blocksize); the zstd bytes equal
        # c-blosc's only when libzstd is numcodecs' version, so the frame is read back instead
        assert ours[:12] == written[:12]
        assert int.from_bytes(written[8:12], "little") == layout.BLOSC_BLOCK_BYTES
        assert abs(len(ours) - len(written)) <= len(written) // 100
        chunk_file.write_bytes(ours)
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "x.zarr"))[0, :], values)
    doc = json.loads((tmp_path / "x.zarr" / "zarr.json").read_text())
    assert doc == layout.coverage_array_document(1, chunk_len, chunk_len, prof)


EDGE_CHUNKS = {
    "one item": np.array([7], np.uint32),
    "31 items (under blosc's 128-byte minimum)": np.arange(31, dtype=np.uint32),
    "32 items (the minimum)": np.arange(32, dtype=np.uint32),
    "zeros": np.zeros(65_536, np.uint32),
    "incompressible": np.random.default_rng(1).integers(0, 2**32, 65_536, dtype=np.uint32),
    "a short last block": np.random.default_rng(2).poisson(3, 5_000).astype(np.uint32),
    "an incompressible block then zeros": np.concatenate(
        [
            np.random.default_rng(3).integers(0, 2**32, 3_000, dtype=np.uint32),
            np.zeros(9_000, np.uint32),
        ]
    ),
    "high bytes": (np.random.default_rng(4).poisson(3, 40_000) + 2**24).astype(np.uint32),
}


@pytest.mark.parametrize("profile", ["default", "fast"])
@pytest.mark.parametrize("what", sorted(EDGE_CHUNKS))
def test_encoded_frames_decode_as_cblosc_frames(profile: str, what: str) -> None:
    """`_bloscframe` against c-blosc (numcodecs) on the frames' edge cases: stored as they are
    (small, incompressible), blocks stored raw, a short last block; the same header fields."""
    import numcodecs

    values = EDGE_CHUNKS[what]
    prof = layout.compression_profile(profile)
    cblosc = numcodecs.Blosc(
        cname="zstd", clevel=prof.blosc_clevel, shuffle=1, blocksize=layout.BLOSC_BLOCK_BYTES
    )
    ours, theirs = prof.encoder().encode(values), bytes(cblosc.encode(values))
    decoded = np.frombuffer(cblosc.decode(ours), dtype=np.uint32)
    np.testing.assert_array_equal(decoded, values)
    assert ours[:12] == theirs[:12]  # version, flags (memcpyed or not), sizes
    assert int.from_bytes(ours[12:16], "little") == len(ours)
    assert len(ours) <= len(values) * 4 + 16


def test_zstd_frames_carry_no_content_size() -> None:
    """Every zstd frame of a blosc block leaves out its content size (blosc's header has it):
    one byte less per block. A frame whose header says the size would fail here."""
    values = np.repeat(np.random.default_rng(6).poisson(4, 16_384), 4).astype(np.uint32)
    frame = layout.compression_profile("default").encoder().encode(values)
    blocksize = int.from_bytes(frame[8:12], "little")
    nblocks = -(-len(values) * 4 // blocksize)
    assert nblocks == 16
    for j in range(nblocks):
        start = int.from_bytes(frame[16 + 4 * j : 20 + 4 * j], "little")
        length = int.from_bytes(frame[start : start + 4], "little")
        assert length < blocksize  # compressed, not stored raw
        zstd = frame[start + 4 : start + 4 + length]
        assert zstd[:4] == b"\x28\xb5\x2f\xfd"  # zstd's magic number
        descriptor = zstd[4]
        assert descriptor >> 6 == 0 and not descriptor & 0x20  # no content size, not single-segment


def test_encoder_threads_get_frames_of_their_own() -> None:
    """One encoder shared by threads (as extraction shares it) writes what one thread writes."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    chunks = [np.repeat(rng.poisson(4, 8_192), 8).astype(np.uint32) for _ in range(16)]
    encoder = layout.compression_profile("default").encoder()
    alone = [layout.compression_profile("default").encoder().encode(c) for c in chunks]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(encoder.encode, chunks * 4)) == alone * 4


def test_edge_chunk_is_padded_to_full_size(tmp_path: Path, edge_bam: Path, extract) -> None:
    """zarr stores edge chunks at full chunk size; a store with `none` shows it directly."""
    store = extract(edge_bam, chunk_len=64, compression="none")
    last = store / "c1" / "c" / "0" / str((1000 - 1) // 64)
    assert last.stat().st_size == 64 * 4
    assert zarr.open_group(str(store), mode="r")["c1"][0, 990:1000].tolist() == [1] * 5 + [2] * 5


def test_the_record_reads_back_as_written_and_names_what_it_cannot_read(tmp_path: Path) -> None:
    """The typed root attributes round-trip through JSON; a setting an older record lacks reads
    as its default; an unknown setting or another format version is refused by name."""
    out = tmp_path / "r.zarr"
    build_store([TEST_DATA / "samplesheet.csv"], out, ExtractOptions(chunk_len=8192))
    raw = json.loads((out / "zarr.json").read_text())["attributes"]
    attrs = layout.StoreAttributes.from_json(raw)
    assert attrs.to_json() == raw
    assert (
        attrs.bamstore is not None
        and attrs.settings == ExtractOptions(chunk_len=8192).store_settings()
    )
    older = json.loads(json.dumps(raw))
    del older["bamstore"]["settings"]["count_deletions"]
    assert layout.StoreAttributes.from_json(older).settings == attrs.settings
    newer = json.loads(json.dumps(raw))
    newer["bamstore"]["settings"]["strand_rule"] = "x"
    assert layout.StoreAttributes.from_json(newer).record_problem == (
        "its 'bamstore' record has unknown setting(s) strand_rule"
    )
    other = json.loads(json.dumps(raw))
    other["bamstore"]["format_version"] = 1
    assert layout.StoreAttributes.from_json(other).record_problem == (
        "its 'bamstore' record is format version 1, this bamstore reads versions 2 and 3"
    )
    assert raw["bamstore"]["format_version"] == layout.FORMAT_VERSION == 3
    # a version 2 record has no fragment-length filter and no scale factors: they read as unset
    version2 = json.loads(json.dumps(raw))
    version2["bamstore"]["format_version"] = 2
    for name in ("min_fragment_len", "max_fragment_len"):
        del version2["bamstore"]["settings"][name]
    for sample in version2["bamstore"]["samples"].values():
        del sample["scale_factor"]
    older_record = layout.StoreAttributes.from_json(version2).bamstore
    assert older_record is not None and older_record.format_version == 2
    assert dataclasses.replace(older_record, format_version=3) == attrs.bamstore
    assert attrs.settings.min_fragment_len is attrs.settings.max_fragment_len is None
    assert all(r.scale_factor is None for r in attrs.bamstore.samples.values())
    bad_factor = json.loads(json.dumps(raw))
    bad_factor["bamstore"]["samples"]["chip_a"]["scale_factor"] = -1
    assert layout.StoreAttributes.from_json(bad_factor).record_problem == (
        "its 'bamstore' record has scale factor -1, not a positive number"
    )
    # a record of format 2 (no chunk columns) reads, its rows' chunks unknown
    samples = raw["bamstore"]["samples"]
    assert all(record["columns"] for record in samples.values())
    before = json.loads(json.dumps(raw))
    before["bamstore"]["format_version"] = 2
    for record in before["bamstore"]["samples"].values():
        for key in ("columns", "fwd_columns", "rev_columns"):
            record.pop(key, None)
    record = layout.StoreAttributes.from_json(before).bamstore
    assert record is not None
    rows = [row for r in record.samples.values() for row in r.rows(["chr1"], False)]
    assert rows and all(row.columns is None for row in rows)
    record = attrs.bamstore.samples["rna_r"]
    names = attrs.contig_names
    moved = record.in_order(names, names[1:] + names[:1])
    assert moved.contig_sums == record.contig_sums[1:] + record.contig_sums[:1]
    assert moved.in_order(names[1:] + names[:1], names) == record
