"""Shards written by `bamstore.engine.shard` are the files zarr-python writes, and read back
through it.

For each chunk length (1, 7, 64, 4096, 1,048,576), a contig length that is a multiple of it and
one that is not, and each compression profile: three rows (runs of zeros with full-range uint32
values, an all-zero row, a row with an empty inner chunk and its first and last base set) are
written with ShardWriter, then compared with plain zarr: values, the array document, the shard
files zarr writes for the same data, and each inner chunk against zarr's unsharded chunk file.
"""

from __future__ import annotations

import itertools
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.engine import shard

MIB = 1_048_576
CASES = [
    (1, 37),
    (7, 70),
    (7, 75),
    (64, 640),
    (64, 1000),
    (4096, 3 * 4096),
    (4096, 5 * 4096 + 17),
    (MIB, 2 * MIB),
    (MIB, 2 * MIB + 12_345),
]
PROFILES = ["default", "fast", "none"]
ARRAY = "chr1"


def coverage_rows(seed: int, length: int, chunk_len: int) -> np.ndarray:
    """Three rows: runs of zeros and values; all zeros; first/last base set, inner chunk 1 empty."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((3, length), dtype=layout.COVERAGE_DTYPE)
    for r in (0, 2):
        cuts = np.sort(rng.choice(np.arange(1, length + 1), size=min(length, 12), replace=False))
        start = 0
        for i, stop in enumerate(cuts):
            if i % 2:  # every other run is a run of zeros
                high = 2**32 if rng.random() < 0.3 else 50
                rows[r, start:stop] = rng.integers(0, high, stop - start, dtype=np.uint64)
            start = stop
    rows[2, 0] = 1
    rows[2, -1] = 2**32 - 1
    if layout.n_chunks(length, chunk_len) >= 3:
        rows[2, chunk_len : 2 * chunk_len] = 0
    return rows


def padded_chunks(row: np.ndarray, chunk_len: int) -> list[np.ndarray]:
    """The row cut into (chunk_len,) chunks, the last padded with the fill value as zarr does."""
    n = layout.n_chunks(len(row), chunk_len)
    padded = np.zeros(n * chunk_len, dtype=row.dtype)
    padded[: len(row)] = row
    return [padded[c * chunk_len : (c + 1) * chunk_len] for c in range(n)]


def write_sharded(store: Path, rows: np.ndarray, chunk_len: int, profile: str) -> None:
    """What extraction will do: declare the array, then stream each row's non-empty chunks."""
    prof = layout.compression_profile(profile)
    length = rows.shape[1]
    layout.write_json(store / layout.ZARR_JSON, layout.group_document())
    layout.write_json(
        store / ARRAY / layout.ZARR_JSON,
        shard.sharded_array_document(len(rows), length, chunk_len, prof),
    )
    encoder = prof.encoder()
    n_inner = shard.inner_chunks_per_shard(length, chunk_len)
    for r, row in enumerate(rows):
        with shard.ShardWriter(shard.shard_path(store, ARRAY, r), n_inner) as writer:
            for col, chunk in enumerate(padded_chunks(row, chunk_len)):
                if chunk.any():
                    writer.append(col, encoder.encode(chunk))


def zarr_compressors(profile: str) -> BloscCodec | None:
    clevel = layout.compression_profile(profile).blosc_clevel
    if clevel is None:
        return None
    return BloscCodec(
        typesize=4,
        cname="zstd",
        clevel=clevel,
        shuffle="shuffle",
        blocksize=layout.BLOSC_BLOCK_BYTES,
    )


def write_with_zarr(store: Path, rows: np.ndarray, chunk_len: int, profile: str, sharded: bool):
    group = zarr.open_group(LocalStore(store), mode="w", zarr_format=3)
    length = rows.shape[1]
    arr = group.create_array(
        ARRAY,
        shape=rows.shape,
        chunks=(1, chunk_len),
        shards=(1, shard.shard_len(length, chunk_len)) if sharded else None,
        dtype="uint32",
        fill_value=0,
        compressors=zarr_compressors(profile),
    )
    arr[...] = rows


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != layout.ZARR_JSON
    }


@dataclass
class Written:
    chunk_len: int
    length: int
    profile: str
    rows: np.ndarray
    ours: Path  # sharded by ShardWriter
    zarr_sharded: Path
    zarr_unsharded: Path


@pytest.fixture(
    scope="module",
    params=[(c, n, p) for c, n in CASES for p in PROFILES],
    ids=lambda case: f"chunk{case[0]}-len{case[1]}-{case[2]}",
)
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Written:
    chunk_len, length, profile = request.param
    rows = coverage_rows(chunk_len + length, length, chunk_len)
    base = tmp_path_factory.mktemp("shard")
    case = Written(
        chunk_len,
        length,
        profile,
        rows,
        base / "ours.zarr",
        base / "zarr_sharded.zarr",
        base / "zarr_unsharded.zarr",
    )
    write_sharded(case.ours, rows, chunk_len, profile)
    write_with_zarr(case.zarr_sharded, rows, chunk_len, profile, sharded=True)
    write_with_zarr(case.zarr_unsharded, rows, chunk_len, profile, sharded=False)
    return case


def test_zarr_reads_our_shards(written: Written) -> None:
    arr = zarr.open_array(LocalStore(written.ours / ARRAY, read_only=True), mode="r")
    assert arr.shape == written.rows.shape
    assert arr.chunks == (1, written.chunk_len)
    assert arr.shards == (1, shard.shard_len(written.length, written.chunk_len))
    np.testing.assert_array_equal(arr[...], written.rows)
    # single rows, the last base, and a window across the first chunk boundary, read partially
    c, n = written.chunk_len, written.length
    for r in range(3):
        np.testing.assert_array_equal(arr[r, :], written.rows[r])
        assert arr[r, n - 1] == written.rows[r, n - 1]
        lo, hi = max(0, c - 3), min(n, c + 3)
        np.testing.assert_array_equal(arr[r, lo:hi], written.rows[r, lo:hi])
    assert not shard.shard_path(written.ours, ARRAY, 1).exists()  # the all-zero row: no file


def test_array_document_is_zarrs(written: Written) -> None:
    ours = (written.ours / ARRAY / layout.ZARR_JSON).read_text()
    theirs = (written.zarr_sharded / ARRAY / layout.ZARR_JSON).read_text()
    assert json.loads(ours) == json.loads(theirs)
    assert ours == theirs  # same key order and indentation: the very same file


def same_frame(ours: bytes, theirs: bytes, profile: str) -> bool:
    """The same chunk bytes; for blosc frames, the same header and values (the zstd bytes equal
    c-blosc's only when libzstd is numcodecs' version: `layout._bloscframe`)."""
    if ours == theirs or layout.compression_profile(profile).blosc_clevel is None:
        return ours == theirs
    import numcodecs

    blosc = numcodecs.Blosc()
    return ours[:12] == theirs[:12] and bytes(blosc.decode(ours)) == bytes(blosc.decode(theirs))


def test_shard_files_are_zarrs(written: Written) -> None:
    """The same shard files as zarr's: byte for byte where the chunk bytes are, and otherwise
    the same inner chunks, in the same order, under the same index layout."""
    ours = files_under(written.ours / ARRAY)
    theirs = files_under(written.zarr_sharded / ARRAY)
    assert sorted(ours) == sorted(theirs) == ["c/0/0", "c/2/0"]
    n_inner = shard.inner_chunks_per_shard(written.length, written.chunk_len)
    for key in ours:
        if ours[key] == theirs[key]:
            continue
        # only zstd's bytes may differ: our frames leave out each block's content size, and
        # its compressed bytes depend on libzstd's version
        assert layout.compression_profile(written.profile).blosc_clevel is not None, key
        r = int(key.split("/")[1])
        mine = shard.read_shard_index(shard.shard_path(written.ours, ARRAY, r), n_inner)
        zarrs = shard.read_shard_index(shard.shard_path(written.zarr_sharded, ARRAY, r), n_inner)
        assert mine.columns() == zarrs.columns()
        a, b = dict(shard.iter_inner_chunks(mine)), dict(shard.iter_inner_chunks(zarrs))
        assert all(same_frame(a[c], b[c], written.profile) for c in a), key


def test_inner_chunks_are_the_unsharded_chunk_files(written: Written) -> None:
    """Each inner chunk is byte-for-byte the chunk file unsharded writing makes (the same
    encoder), so digests agree; zarr's inner chunks are its chunk files too."""
    n_inner = shard.inner_chunks_per_shard(written.length, written.chunk_len)
    encoder = layout.compression_profile(written.profile).encoder()
    unsharded = files_under(written.zarr_unsharded / ARRAY)
    for r in (0, 2):
        index = shard.read_shard_index(shard.shard_path(written.ours, ARRAY, r), n_inner)
        inner = dict(shard.iter_inner_chunks(index))
        chunks = padded_chunks(written.rows[r], written.chunk_len)
        expected_cols = [c for c, chunk in enumerate(chunks) if chunk.any()]
        assert index.columns() == expected_cols
        assert inner == {c: encoder.encode(chunks[c]) for c in expected_cols}
        files = {
            int(key.split("/")[2]): data
            for key, data in unsharded.items()
            if key.startswith(f"c/{r}/")
        }
        assert sorted(files) == expected_cols
        assert all(same_frame(inner[c], files[c], written.profile) for c in files)
        digest = layout.chunk_digest((c, zlib.crc32(inner[c])) for c in inner)
        assert shard.shard_digest(shard.shard_path(written.ours, ARRAY, r), n_inner) == digest
        # zarr's own shard file parses and gives the digest of zarr's own chunk files
        zarr_digest = layout.chunk_digest(
            (col, layout.file_crc32(layout.chunk_path(written.zarr_unsharded, ARRAY, r, col)))
            for col in files
        )
        theirs = shard.shard_path(written.zarr_sharded, ARRAY, r)
        assert shard.shard_digest(theirs, n_inner) == zarr_digest
    assert shard.shard_digest(shard.shard_path(written.ours, ARRAY, 1), n_inner) == (
        layout.chunk_digest([])
    )


def test_packing_unsharded_chunk_files_gives_zarrs_shard(written: Written, tmp_path: Path) -> None:
    n_inner = shard.inner_chunks_per_shard(written.length, written.chunk_len)
    for r in range(3):
        files = layout.row_chunk_files(written.zarr_unsharded, ARRAY, r)
        packed = tmp_path / f"row{r}"
        assert shard.pack_chunk_files(files, packed, n_inner) == (r != 1)
        theirs = shard.shard_path(written.zarr_sharded, ARRAY, r)
        assert packed.exists() == theirs.exists()
        if r != 1:
            assert packed.read_bytes() == theirs.read_bytes()


# ---------------------------------------------------------------------------- damage


CHUNK_LEN = 64
LENGTH = 1000  # 16 inner chunks, the last one partial


@pytest.fixture
def one_shard(tmp_path: Path) -> tuple[Path, np.ndarray, int]:
    """A store with one sharded row; returns (store, rows, n_inner)."""
    rows = coverage_rows(7, LENGTH, CHUNK_LEN)
    store = tmp_path / "one.zarr"
    write_sharded(store, rows, CHUNK_LEN, "default")
    return store, rows, shard.inner_chunks_per_shard(LENGTH, CHUNK_LEN)


def rewrite_index(path: Path, n_inner: int, entries: np.ndarray) -> None:
    """Replace the index with `entries` and a valid CRC32C: damage the checksum cannot see."""
    data = path.read_bytes()[: -shard.index_nbytes(n_inner)]
    index = entries.astype("<u8").tobytes()
    path.write_bytes(data + index + google_crc32c.value(index).to_bytes(4, "little"))


def test_good_shard_index(one_shard: tuple[Path, np.ndarray, int]) -> None:
    store, _, n_inner = one_shard
    path = shard.shard_path(store, ARRAY, 0)
    index = shard.read_shard_index(path, n_inner)
    assert index.n_inner == n_inner == 16
    assert index.file_size == path.stat().st_size
    ranges = index.chunk_ranges()
    assert [c for c, _, _ in ranges] == index.columns()
    assert ranges[0][1] == 0 and ranges[-1][2] == index.file_size - shard.index_nbytes(n_inner)
    for (_, _, stop), (_, start, _) in itertools.pairwise(ranges):
        assert stop == start  # back to back, in column order
    empty = next(c for c in range(n_inner) if c not in index.columns())
    assert index.byte_range(empty) is None
    assert np.all(index.entries[empty] == shard.EMPTY)


@pytest.mark.parametrize(
    "cut", [1, 4, 16, 17, "index", "index+1", "all-but-one", "everything"], ids=str
)
def test_truncated_shard_is_detected(one_shard: tuple[Path, np.ndarray, int], cut) -> None:
    store, _, n_inner = one_shard
    path = shard.shard_path(store, ARRAY, 0)
    size = path.stat().st_size
    drop = {
        "index": shard.index_nbytes(n_inner),
        "index+1": shard.index_nbytes(n_inner) + 1,
        "all-but-one": size - 1,
        "everything": size,
    }.get(cut, cut)
    os.truncate(path, size - drop)
    with pytest.raises(shard.DamagedShardError, match="truncated"):
        shard.read_shard_index(path, n_inner)
    with pytest.raises(shard.DamagedShardError):
        shard.shard_digest(path, n_inner)


def test_appended_bytes_are_detected(one_shard: tuple[Path, np.ndarray, int]) -> None:
    store, _, n_inner = one_shard
    path = shard.shard_path(store, ARRAY, 0)
    with open(path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(shard.DamagedShardError, match="CRC32C"):
        shard.read_shard_index(path, n_inner)


@pytest.mark.parametrize("where", ["first entry", "last entry", "checksum"])
def test_altered_index_is_detected(one_shard: tuple[Path, np.ndarray, int], where: str) -> None:
    store, _, n_inner = one_shard
    path = shard.shard_path(store, ARRAY, 0)
    data = bytearray(path.read_bytes())
    start = len(data) - shard.index_nbytes(n_inner)
    pos = {"first entry": start, "last entry": len(data) - 5, "checksum": len(data) - 1}[where]
    data[pos] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(shard.DamagedShardError, match="CRC32C"):
        shard.read_shard_index(path, n_inner)


def test_shard_of_another_contig_length_is_detected(
    one_shard: tuple[Path, np.ndarray, int],
) -> None:
    store, _, n_inner = one_shard
    path = shard.shard_path(store, ARRAY, 0)
    for wrong in (n_inner - 1, n_inner + 1):
        with pytest.raises(shard.DamagedShardError):
            shard.read_shard_index(path, wrong)


@pytest.mark.parametrize("damage", ["half empty", "overlap", "gap", "past the end", "zero size"])
def test_inconsistent_index_with_valid_checksum(
    one_shard: tuple[Path, np.ndarray, int], damage: str
) -> None:
    store, _, n_inner = one_shard
    path = shard.shard_path(store, ARRAY, 0)
    index = shard.read_shard_index(path, n_inner)
    entries = index.entries.copy()
    first, second = index.columns()[:2]
    if damage == "half empty":
        entries[first, 1] = shard.EMPTY
    elif damage == "overlap":
        entries[second, 0] -= 1
    elif damage == "gap":
        entries[second, 0] += 1
    elif damage == "past the end":
        entries[index.columns()[-1], 1] += 1
    else:
        entries[first, 1] = 0
    rewrite_index(path, n_inner, entries)
    reason = "half-empty entries" if damage == "half empty" else "does not describe"
    with pytest.raises(shard.DamagedShardError, match=reason):
        shard.read_shard_index(path, n_inner)


def test_damaged_chunk_bytes_change_the_digest(one_shard: tuple[Path, np.ndarray, int]) -> None:
    """Bytes inside a chunk are not covered by the index checksum; the digest catches them."""
    store, _, n_inner = one_shard
    path = shard.shard_path(store, ARRAY, 0)
    before = shard.shard_digest(path, n_inner)
    data = bytearray(path.read_bytes())
    data[20] ^= 0x01
    path.write_bytes(bytes(data))
    shard.read_shard_index(path, n_inner)  # the index itself is intact
    assert shard.shard_digest(path, n_inner) != before


def test_swapped_rows_change_the_digest(one_shard: tuple[Path, np.ndarray, int]) -> None:
    store, _, n_inner = one_shard
    row0, row2 = shard.shard_path(store, ARRAY, 0), shard.shard_path(store, ARRAY, 2)
    assert shard.shard_digest(row0, n_inner) != shard.shard_digest(row2, n_inner)


# ---------------------------------------------------------------------------- the writer's contract


def test_columns_must_increase(tmp_path: Path) -> None:
    path = tmp_path / "c" / "0" / "0"
    writer = shard.ShardWriter(path, 4)
    writer.append(1, b"x")
    for bad in (1, 0, 4, -1):
        with pytest.raises(ValueError, match="out of order"):
            writer.append(bad, b"y")
    with pytest.raises(ValueError, match="empty"):
        writer.append(2, b"")
    writer.append(3, b"zz")
    assert writer.n_chunks == 2
    assert writer.close()
    index = shard.read_shard_index(path, 4)
    assert index.chunk_ranges() == [(1, 0, 1), (3, 1, 3)]
    with pytest.raises(ValueError, match="closed"):
        writer.append(3, b"x")


def test_empty_row_writes_no_file_and_removes_an_old_one(tmp_path: Path) -> None:
    """zarr deletes a shard whose chunks all become empty; so does ShardWriter."""
    rows = np.zeros((1, 100), dtype=layout.COVERAGE_DTYPE)
    rows[0, 5] = 3
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    write_sharded(ours, rows, 16, "default")
    write_with_zarr(theirs, rows, 16, "default", sharded=True)
    assert shard.shard_path(ours, ARRAY, 0).exists() and shard.shard_path(theirs, ARRAY, 0).exists()
    write_sharded(ours, rows * 0, 16, "default")
    arr = zarr.open_array(LocalStore(theirs / ARRAY), mode="r+")
    arr[0, :] = 0
    assert not shard.shard_path(theirs, ARRAY, 0).exists()
    assert not shard.shard_path(ours, ARRAY, 0).exists()
    assert files_under(ours / ARRAY) == {}


def test_failed_write_leaves_the_old_shard_and_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "c" / "0" / "0"
    with shard.ShardWriter(path, 3) as writer:
        writer.append(0, b"old")
    old = path.read_bytes()
    with pytest.raises(RuntimeError), shard.ShardWriter(path, 3) as writer:
        writer.append(0, b"new")
        raise RuntimeError("encoder failed")
    assert path.read_bytes() == old
    assert sorted(p.name for p in path.parent.iterdir()) == ["0"]


def test_rewriting_a_hard_linked_shard_leaves_the_other_store_alone(tmp_path: Path) -> None:
    """Merge links shard files between stores; a later write must replace, not overwrite."""
    path = tmp_path / "a" / "c" / "0" / "0"
    with shard.ShardWriter(path, 2) as writer:
        writer.append(0, b"first")
    linked = tmp_path / "b_0"
    os.link(path, linked)
    with shard.ShardWriter(path, 2) as writer:
        writer.append(1, b"second")
    assert shard.read_shard_index(linked, 2).columns() == [0]
    assert shard.read_shard_index(path, 2).columns() == [1]


def test_writer_memory_is_the_index_only(tmp_path: Path) -> None:
    """The writer holds 16 bytes per inner chunk, never the chunks it wrote."""
    writer = shard.ShardWriter(tmp_path / "s", 239)
    payload = b"\1" * 100_000
    for col in range(0, 239, 10):
        writer.append(col, payload)
    held = [v for v in vars(writer).values() if isinstance(v, (bytes, bytearray, np.ndarray))]
    assert sum(getattr(v, "nbytes", len(v)) for v in held) == 239 * 16
    writer.close()
    assert (tmp_path / "s").stat().st_size == 24 * 100_000 + shard.index_nbytes(239)


def test_document_rejects_empty_contig() -> None:
    with pytest.raises(ValueError, match="positive"):
        shard.sharded_array_document(1, 0, 64, layout.compression_profile("default"))
