"""Sharded and unsharded stores (`--shard`) hold the same values, and everything that reads or
moves rows works on both.

Values: for every kernel and chunk length (1, 7, 64, 4096, 1,048,576), the same BAMs extracted
both ways hold identical arrays (read through zarr), equal to samtools depth, and identical
records: each shard's inner chunks are the very bytes of the unsharded chunk files, so the
digests agree. Then: the zarr.json texts, conversion in merge (as bytes, both ways), damaged
shards named by validate (quick and full) and merge, inspect, resume, and the writer's ordering
of windows that finish out of order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from bamfactory import EDGE_CONTIGS, RANDOM_CONTIGS, samtools_depth

from bamstore import layout
from bamstore.engine import shard
from bamstore.engine.kernel import available_kernels
from bamstore.engine.merge import merge_stores
from bamstore.engine.rows import ArrayLayout, DocumentTexts
from bamstore.engine.store import read_store_info
from bamstore.engine.validate import validate_store
from bamstore.errors import InputError

KERNELS = available_kernels()
CHUNK_LENS = [1, 7, 64, 4096, 1_048_576]


def arrays_of(store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(store), mode="r")
    return {
        name: np.asarray(group[name][...])
        for name in group.array_keys()  # coverage arrays (the metadata group is a group)
    }


def record_without_layout(store: Path) -> dict:
    record = read_store_info(store).record
    assert record is not None
    data = record.to_json()
    assert data["settings"].pop("shard") in (True, False)
    data.pop("version")
    for sample in data["samples"].values():
        sample["source"].pop("path")
    return data


def assert_same_store(unsharded: Path, sharded: Path) -> None:
    a, b = arrays_of(unsharded), arrays_of(sharded)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert record_without_layout(unsharded) == record_without_layout(sharded)
    assert read_store_info(unsharded).sharded is False
    assert read_store_info(sharded).sharded is True
    assert zarr.open_group(str(sharded), mode="r")[next(iter(b))].shards is not None


@pytest.mark.parametrize("chunk_len", CHUNK_LENS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_same_values_every_kernel_and_chunk_length(edge_bam, extract, kernel, chunk_len) -> None:
    """The edge BAM (contig ends, chunk boundaries, every CIGAR case), stranded, both ways."""
    stores = {
        sharded: extract(
            edge_bam, "e", kernel=kernel, chunk_len=chunk_len, strandedness="R", shard=sharded
        )
        for sharded in (False, True)
    }
    assert_same_store(stores[False], stores[True])
    expected = samtools_depth(edge_bam, EDGE_CONTIGS)
    got = arrays_of(stores[True])
    for contig, _ in EDGE_CONTIGS:
        np.testing.assert_array_equal(got[contig][0], expected[contig], err_msg=contig)
    assert validate_store(stores[True]).ok


@pytest.mark.parametrize("chunk_len", CHUNK_LENS[1:])
def test_same_values_random_reads_with_threads(random_bam, extract, chunk_len) -> None:
    """Longer contigs with many windows, four encoding threads: windows finish out of order
    and the shard still receives them in column order."""
    unsharded = extract(random_bam, "r", chunk_len=chunk_len, strandedness="F", threads=4)
    sharded = extract(random_bam, "r", chunk_len=chunk_len, strandedness="F", threads=4, shard=True)
    assert_same_store(unsharded, sharded)
    files = [p for p in sharded.rglob("c/*/*") if p.is_file() and "metadata" not in p.parts]
    assert len(files) <= 3 * len(RANDOM_CONTIGS)  # at most one per array per sample row


def test_document_texts_are_the_documents() -> None:
    profile = layout.compression_profile("default")
    for sharded in (False, True):
        texts = DocumentTexts(5, 4096, profile, sharded)
        for length in (1, 4095, 4096, 4097, 248_956_422):
            want = ArrayLayout(length, 4096, sharded).document(5, profile)
            assert texts.text(length) == json.dumps(want, indent=2), (sharded, length)


# ---------------------------------------------------------------------------- merge


@pytest.fixture
def mixed_parts(random_bam, random_se_bam, extract) -> dict[str, Path]:
    return {
        "u1": extract(random_bam, "u1", chunk_len=5000),
        "s2": extract(random_se_bam, "s2", chunk_len=5000, shard=True),
        "s3": extract(random_bam, "s3", chunk_len=5000, strandedness="R", shard=True),
    }


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every decoding path fail: blosc, and zarr's sharding codec."""
    import numcodecs
    from zarr.codecs import ShardingCodec

    def refuse(*_args, **_kwargs):
        raise AssertionError("merge decoded a chunk")

    monkeypatch.setattr(numcodecs.Blosc, "decode", refuse)
    for method in ("_decode_single", "_decode_partial_single"):
        monkeypatch.setattr(ShardingCodec, method, refuse)


@pytest.mark.parametrize("shard_out", [None, True, False], ids=["as-first", "shard", "no-shard"])
def test_mixed_parts_are_converted_as_bytes(
    mixed_parts, tmp_path, monkeypatch, read_rows, shard_out
) -> None:
    """Parts in either layout merge into one layout (the first part's unless given); rows
    stored the other way are packed into shards or cut into chunk files, never decoded."""
    parts = list(mixed_parts.values())
    forbid_decoding(monkeypatch)
    result = merge_stores(parts, tmp_path / "m.zarr", shard=shard_out)
    monkeypatch.undo()
    sharded = bool(shard_out)  # None: as the first part, which is unsharded
    assert result.sharded is sharded and read_store_info(result.out).sharded is sharded
    n_arrays = 3 * len(RANDOM_CONTIGS)
    converted = {None: 2, True: 1, False: 2}[shard_out]  # parts stored the other way
    # every converted part's non-empty rows: s2 is unstranded (its strand rows are empty)
    assert result.rows_converted > 0
    assert result.rows_converted <= converted * n_arrays
    assert validate_store(result.out).ok
    for contig, _ in RANDOM_CONTIGS:
        merged = read_rows(result.out, contig)
        for row, part in enumerate(parts):
            np.testing.assert_array_equal(merged[row], read_rows(part, contig)[0])
        np.testing.assert_array_equal(
            read_rows(result.out, contig + "_rev")[2], read_rows(parts[2], contig + "_rev")[0]
        )


def test_sharded_merge_links_each_shard(mixed_parts, tmp_path) -> None:
    parts = [mixed_parts["s2"], mixed_parts["s3"]]
    result = merge_stores(parts, tmp_path / "m.zarr")
    assert result.sharded and result.rows_converted == 0 and result.chunks_copied == 0
    for row, part in enumerate(parts):
        for contig, _ in RANDOM_CONTIGS:
            src, dst = shard.shard_path(part, contig, 0), shard.shard_path(result.out, contig, row)
            assert os.path.samefile(src, dst)
    copied = merge_stores(parts, tmp_path / "c.zarr", copy=True)
    assert copied.chunks_copied == result.chunks_linked and copied.chunks_linked == 0
    assert validate_store(copied.out).ok


# ---------------------------------------------------------------------------- damage


@pytest.fixture
def sharded_store(random_bam, random_se_bam, extract, tmp_path) -> Path:
    parts = [
        extract(random_bam, "a", chunk_len=4096, shard=True),
        extract(random_se_bam, "b", chunk_len=4096, shard=True),
    ]
    return merge_stores(parts, tmp_path / "cohort.zarr", copy=True).out


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:-7])
    elif how == "index":
        path.write_bytes(data[:-20] + bytes([data[-20] ^ 0xFF]) + data[-19:])
    else:  # a chunk's bytes: the index still reads, the digest does not match
        path.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])


@pytest.mark.parametrize("how", ["truncated", "index", "chunk"])
def test_damaged_shard_is_named(sharded_store: Path, how: str, tmp_path: Path) -> None:
    victim = shard.shard_path(sharded_store, "chr2", 1)
    damage(victim, how)
    quick = validate_store(sharded_store, quick=True)
    full = validate_store(sharded_store)
    if how == "chunk":  # only full validation (digests, decoding) sees inside a chunk
        assert quick.ok
        assert full.problems[0].startswith(
            "sample 'b', array 'chr2': chunk files do not match what extraction wrote (digest "
        )
        assert full.problems[0].endswith(" chunks)")  # "...; a shard of N chunks)"
        assert all(p.startswith("sample 'b'") for p in full.problems), full.problems
    else:
        reason = "truncated" if how == "truncated" else "fails its CRC32C check"
        for report in (quick, full):
            assert len(report.problems) == 1, report.problems
            assert report.problems[0].startswith(
                "sample 'b', array 'chr2': shard chr2/c/1/0 is damaged: "
            )
            assert reason in report.problems[0]
    # merging the damaged store names the same shard, in the store it came from
    with pytest.raises(InputError) as err:
        merge_stores([sharded_store], tmp_path / "again.zarr")
    line = err.value.problems[0].line()
    if how == "chunk":
        assert "sample 'b', array 'chr2': chunk files do not match" in line
    else:
        assert f"sample 'b', array 'chr2': shard {victim} is damaged" in line
    assert not (tmp_path / "again.zarr").exists()


def test_layout_departures_are_named(sharded_store: Path) -> None:
    leftover = shard.shard_path(sharded_store, "chr1", 0).with_name("0.partial")
    leftover.write_bytes(b"x")
    assert validate_store(sharded_store, quick=True).problems == [
        "array 'chr1': unexpected file c/0/0.partial"
    ]
    leftover.unlink()
    doc_path = sharded_store / "chr3" / layout.ZARR_JSON
    info = read_store_info(sharded_store)
    unsharded = ArrayLayout(700, info.chunk_len, False).document(
        2, layout.compression_profile("default")
    )
    doc_path.write_text(json.dumps(unsharded))
    assert validate_store(sharded_store, quick=True).problems == [
        "array 'chr3': its zarr.json is unsharded, but the store is recorded as sharded"
    ]


def test_inspect_shows_the_layout(sharded_store: Path, extract, random_bam, run_cli) -> None:
    plain = extract(random_bam, "p", chunk_len=4096)
    for store, sharded in ((sharded_store, True), (plain, False)):
        done = run_cli("inspect", store, "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["sharded"] is sharded and summary["settings"]["shard"] is sharded
        text = run_cli("inspect", store).stdout
        assert ("sharded: one file per sample per contig" in text) is sharded
        assert ("one file per chunk (unsharded)" in text) is not sharded


# ---------------------------------------------------------------------------- the CLI


def test_cli_shard_on_extract_build_and_merge(tmp_path: Path, run_cli, read_rows) -> None:
    from support import TEST_DATA

    common = ["--chunk-len", "4096", "--chromosomes", "all"]
    built = tmp_path / "built.zarr"
    done = run_cli("build", "--input", TEST_DATA / "samplesheet.csv", "--out", built,
                   "--shard", "--jobs", "2", *common)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "shard files linked" in done.stderr
    part = tmp_path / "extra.zarr"
    done = run_cli("extract", "--bam", TEST_DATA / "chip_a.bam", "--sample", "extra",
                   "--out", part, "--no-shard", *common)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not read_store_info(part).sharded
    grown = tmp_path / "grown.zarr"
    done = run_cli("merge", built, part, "--out", grown)
    assert done.returncode == 0, done.stderr
    assert "rows converted" in done.stderr
    info = read_store_info(grown)
    assert info.sharded and info.sample_names[-1] == "extra"
    np.testing.assert_array_equal(read_rows(grown, "chr1")[-1], read_rows(part, "chr1")[0])
    flat = tmp_path / "flat.zarr"
    done = run_cli("merge", grown, "--out", flat, "--no-shard")
    assert done.returncode == 0, done.stderr
    assert not read_store_info(flat).sharded and validate_store(flat).ok
    assert arrays_of(flat).keys() == arrays_of(grown).keys()
    for name, values in arrays_of(flat).items():
        np.testing.assert_array_equal(values, arrays_of(grown)[name], err_msg=name)


def test_resume_reuses_parts_of_the_same_layout_only(tmp_path: Path) -> None:
    """A part of the other layout is not reused by `build --resume` (it is extracted again)."""
    from support import TEST_DATA

    from bamstore.engine.build import build_store
    from bamstore.engine.extract import ExtractOptions

    sheet = [TEST_DATA / "samplesheet.csv"]
    out = tmp_path / "r.zarr"
    options = ExtractOptions(chunk_len=4096)
    sharded = dataclasses.replace(options, shard=True)
    build_store(sheet, out, options, keep_parts=True)
    again = build_store(sheet, out, sharded, overwrite=True, resume=True, keep_parts=True)
    assert again.reused == [] and len(again.extracted) == 4
    assert read_store_info(out).sharded
    third = build_store(sheet, out, sharded, overwrite=True, resume=True)
    assert len(third.reused) == 4 and third.extracted == []


# ---------------------------------------------------------------------------- writer ordering


def test_contig_rows_append_in_ticket_order(tmp_path: Path) -> None:
    """Windows put in a random order from several threads land in column order, and `take`
    waits while `max_pending` windows are unwritten."""
    from bamstore.engine.writer import StoreWriter

    contigs = [("chr1", 64 * 50)]
    writer = StoreWriter(tmp_path / "w.zarr", contigs, 1, stranded=True, chunk_len=64,
                         profile=layout.compression_profile("none"), sharded=True)  # fmt: skip
    arrays = layout.coverage_array_names(["chr1"], True)
    rows = writer.contig_rows(arrays, 0, 64 * 50, max_pending=4)
    cols = sorted(random.Random(3).sample(range(50), 30))
    tickets = []
    threads = []
    high_water = []

    def put(ticket: int, col: int) -> None:
        time.sleep(random.Random(ticket).random() / 200)
        data = np.full(64, col + 1, dtype="<u4").tobytes()
        rows.put(ticket, col, [data, None if col % 2 else data, data])

    for col in cols:
        ticket = rows.take()
        high_water.append(ticket - rows._written)
        tickets.append(ticket)
        thread = threading.Thread(target=put, args=(ticket, col))
        thread.start()
        threads.append(thread)
    rows.finish()
    for thread in threads:
        thread.join()
    assert max(high_water) <= 4
    for array, stored in zip(arrays, (cols, [c for c in cols if c % 2 == 0], cols), strict=True):
        index = shard.read_shard_index(shard.shard_path(writer.path, array, 0), 50)
        assert index.columns() == stored
        assert [start for _, start, _ in index.chunk_ranges()] == [
            256 * i for i in range(len(stored))
        ]
