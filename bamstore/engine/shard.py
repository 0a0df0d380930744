"""Sharded coverage arrays: one file per sample row per contig, in zarr v3's sharding format.

Unsharded, a store holds one file per (1, chunk_len) chunk: ~3,000 per sample for a human genome,
too many for HPC filesystems and object stores at cohort scale. Sharded, each row of a contig
array is one shard file `c/<row>/0` holding the row's inner chunks, which keep the (1, chunk_len)
shape and the codecs of `layout.CompressionProfile`, so QuantNado's readers (which read through
zarr-python) see the same array. The shard format is zarr v3's `sharding_indexed` codec as
zarr-python 3 writes it by default: inner chunks back to back in column order (zarr's Morton
order, which for a (1, n) grid is column order), then the index, n x (offset, nbytes) as
little-endian uint64 with 2^64-1 twice for an empty chunk, then the CRC32C of the index.

Why not zarr's own sharding codec: it builds the whole shard in memory and encodes through
asyncio, while extraction produces one encoded chunk at a time in worker threads. `ShardWriter`
streams chunks to the file as they come and keeps only the index (16 bytes per inner chunk). The
files are byte-identical to zarr-python's (tests/test_shard.py compares them).

Why a shard file is replaced, never rewritten in place: merge hard-links shard files between
stores, so writing into an existing file would change every store that links it. Like zarr's
LocalStore, the writer writes a sibling `.partial` file and renames it over the shard.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import google_crc32c  # zarr's own CRC32C (a dependency of zarr): the C implementation
import numpy as np
from deflate import crc32

from bamstore import layout

SHARD_COLUMN = 0  # one shard spans the whole contig, so the outer grid has one column
EMPTY = 2**64 - 1  # an index entry (offset, nbytes) of an inner chunk that is not stored
INDEX_ENTRY_BYTES = 16  # offset and nbytes, little-endian uint64 each
CHECKSUM_BYTES = 4  # CRC32C of the index, little-endian
PARTIAL_SUFFIX = ".partial"


# ---------------------------------------------------------------------------- the array document


def inner_chunks_per_shard(length: int, chunk_len: int) -> int:
    """Inner chunks in a shard that covers a whole contig of `length` bases."""
    if length < 1 or chunk_len < 1:
        raise ValueError(f"contig length {length} and chunk_len {chunk_len} must be positive")
    return layout.n_chunks(length, chunk_len)


def shard_len(length: int, chunk_len: int) -> int:
    """Positions covered by the one shard of a row: whole inner chunks, so >= `length`."""
    return inner_chunks_per_shard(length, chunk_len) * chunk_len


def index_nbytes(n_inner: int) -> int:
    """Bytes of the shard index at the end of every shard file, checksum included."""
    return n_inner * INDEX_ENTRY_BYTES + CHECKSUM_BYTES


def sharding_codec(chunk_len: int, profile: layout.CompressionProfile) -> dict[str, Any]:
    """The `sharding_indexed` codec as zarr-python 3 writes it for `shards=..., chunks=...`."""
    return {
        "name": "sharding_indexed",
        "configuration": {
            "chunk_shape": [1, chunk_len],
            "codecs": profile.codecs(),
            "index_codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "crc32c"},
            ],
            "index_location": "end",
        },
    }


def sharded_array_document(
    n_samples: int, length: int, chunk_len: int, profile: layout.CompressionProfile
) -> dict[str, Any]:
    """The zarr.json of one sharded coverage array: the unsharded document, with one shard per
    row covering the contig as the outer chunk and the (1, chunk_len) chunks inside it."""
    document = layout.coverage_array_document(n_samples, length, chunk_len, profile)
    document["chunk_grid"] = {
        "name": "regular",
        "configuration": {"chunk_shape": [1, shard_len(length, chunk_len)]},
    }
    document["codecs"] = [sharding_codec(chunk_len, profile)]
    return document


def shard_path(store: Path, array: str, row: int) -> Path:
    return layout.chunk_path(store, array, row, SHARD_COLUMN)


# ---------------------------------------------------------------------------- writing


class ShardWriter:
    """Streams one row's encoded inner chunks into its shard file, in column order.

    `append(col, data)` writes `data` (the chunk's bytes from `layout.ChunkEncoder`) at the end
    of the file and records (offset, nbytes); columns must increase, so the file is the one
    zarr-python writes (and independent of the number of worker threads). All-zero chunks are
    simply not appended. `close()` writes the index and its CRC32C and renames the file into
    place; a row without chunks leaves no file (and removes an old one), as zarr does with
    `write_empty_chunks=False`. `abort()` (or leaving a `with` block by an exception) removes
    the partial file. Memory: the index, 16 bytes per inner chunk. Not thread-safe: one writer
    per row, fed by one thread at a time.
    """

    def __init__(self, path: Path, n_inner: int) -> None:
        if n_inner < 1:
            raise ValueError(f"a shard holds at least one inner chunk, not {n_inner}")
        self.path = Path(path)
        self.n_inner = n_inner
        self._partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self._index = np.full((n_inner, 2), EMPTY, dtype="<u8")
        self._file: BinaryIO | None = None
        self._end = 0  # bytes written so far = offset of the next chunk
        self._last_col = -1
        self._closed = False

    @property
    def n_chunks(self) -> int:
        """Inner chunks appended so far."""
        return int(np.count_nonzero(self._index[:, 0] != EMPTY))

    def append(self, col: int, data: bytes) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: shard already closed")
        if not self._last_col < col < self.n_inner:
            raise ValueError(
                f"{self.path}: inner chunk {col} out of order (after {self._last_col}; "
                f"{self.n_inner} per shard): append chunks in increasing column order"
            )
        if not data:
            raise ValueError(f"{self.path}: inner chunk {col} is empty; an encoded chunk never is")
        if self._file is None:
            self._partial.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._partial, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._file.write(data)
        self._index[col] = (self._end, len(data))
        self._end += len(data)
        self._last_col = col

    def close(self) -> bool:
        """Finish the shard; True if a file was written (False: every inner chunk is empty)."""
        if self._closed:
            raise ValueError(f"{self.path}: shard already closed")
        self._closed = True
        if self._file is None:
            self.path.unlink(missing_ok=True)
            return False
        try:
            index = self._index.tobytes()
            self._file.write(index)
            self._file.write(google_crc32c.value(index).to_bytes(CHECKSUM_BYTES, "little"))
            self._file.close()
            os.replace(self._partial, self.path)
        except BaseException:
            self.abort()
            raise
        return True

    def abort(self) -> None:
        """Drop what was written; the shard at `path` (if any) is left as it was."""
        self._closed = True
        if self._file is not None:
            self._file.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()


def pack_chunk_files(chunk_files: Mapping[int, Path], path: Path, n_inner: int) -> bool:
    """Make the shard of a row from its unsharded chunk files, by column; nothing is decoded
    (an unsharded chunk file is the inner chunk's bytes). False: no chunks, so no file."""
    with ShardWriter(path, n_inner) as writer:
        for col in sorted(chunk_files):
            writer.append(col, Path(chunk_files[col]).read_bytes())
        return writer.close()


def unpack_shard(path: Path, n_inner: int, folder: Path) -> list[int]:
    """Cut the shard at `path` into the unsharded chunk files of its row, `folder/<col>`, as
    bytes (the reverse of `pack_chunk_files`); returns the columns written. Raises
    DamagedShardError if its index cannot be read."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as fh:
        index = _read_index(fh, Path(path), n_inner)
        for col, data in _chunks(fh, index):
            with open(folder / str(col), "wb") as out:
                out.write(data)
    return index.columns()


# ---------------------------------------------------------------------------- reading


class DamagedShardError(ValueError):
    """A shard file whose index is unreadable: truncated, altered, or for another contig."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ShardIndex:
    """The index of one shard file: which inner chunks it stores, at which bytes."""

    path: Path
    entries: np.ndarray  # (n_inner, 2) uint64: offset, nbytes; EMPTY twice if not stored
    file_size: int

    @property
    def n_inner(self) -> int:
        return len(self.entries)

    def columns(self) -> list[int]:
        """Inner chunks present, in column order."""
        return np.flatnonzero(self.entries[:, 0] != EMPTY).tolist()

    def byte_range(self, col: int) -> tuple[int, int] | None:
        """[start, stop) of inner chunk `col` in the file, None if it is not stored."""
        offset, nbytes = (int(v) for v in self.entries[col])
        return None if offset == EMPTY else (offset, offset + nbytes)

    def chunk_ranges(self) -> list[tuple[int, int, int]]:
        """(column, start, stop) of every stored inner chunk."""
        present = self.entries[:, 0] != EMPTY
        cols = np.flatnonzero(present)
        starts = self.entries[present, 0]
        stops = starts + self.entries[present, 1]
        return list(zip(cols.tolist(), starts.tolist(), stops.tolist(), strict=True))


def read_shard_index(path: Path, n_inner: int) -> ShardIndex:
    """Read and check the index of the shard at `path` without reading its chunks.

    Raises DamagedShardError if the file is shorter than an index, the index's CRC32C does not
    match (a truncated file, appended bytes, an altered index, or a shard of a contig with
    another number of inner chunks), an entry is half empty, or the chunks do not tile the bytes
    before the index exactly (as every zarr-written shard does). Damage inside a chunk's bytes is
    left to the digest (`shard_chunk_crcs`).
    """
    with open(path, "rb") as fh:
        return _read_index(fh, Path(path), n_inner)


def _read_index(fh: BinaryIO, path: Path, n_inner: int) -> ShardIndex:
    size_needed = index_nbytes(n_inner)
    size = os.fstat(fh.fileno()).st_size
    if size < size_needed:
        raise DamagedShardError(
            path,
            f"{size} bytes, shorter than the index of {n_inner} inner chunks "
            f"({size_needed} bytes): truncated",
        )
    fh.seek(size - size_needed)
    return parse_shard_index(fh.read(size_needed), path, n_inner, size)


def parse_shard_index(raw: bytes, path: Path, n_inner: int, size: int | None) -> ShardIndex:
    """The index of a shard from its last `index_nbytes(n_inner)` bytes `raw`, checked as
    `read_shard_index` says. `size` is the shard file's size; None (a remote shard fetched by
    its last bytes alone) leaves out the check that the chunks tile the bytes before the index:
    each chunk is then checked when it is decoded."""
    size_needed = index_nbytes(n_inner)
    if len(raw) != size_needed:
        raise DamagedShardError(path, f"the index is {len(raw)} bytes, not {size_needed}")
    index, checksum = raw[:-CHECKSUM_BYTES], raw[-CHECKSUM_BYTES:]
    if google_crc32c.value(index) != int.from_bytes(checksum, "little"):
        raise DamagedShardError(
            path,
            "the shard index fails its CRC32C check: the file is truncated or altered "
            f"(or not a shard of {n_inner} inner chunks)",
        )
    entries = np.frombuffer(index, dtype="<u8").reshape(n_inner, 2)
    empty = entries == EMPTY
    if np.any(empty[:, 0] != empty[:, 1]):
        raise DamagedShardError(path, "the shard index has half-empty entries")
    if size is None:
        return ShardIndex(path, entries.copy(), -1)
    present = entries[~empty[:, 0]]
    data_end = size - size_needed
    order = np.argsort(present[:, 0], kind="stable")
    starts, nbytes = present[order, 0], present[order, 1]
    # uint64 sums may wrap for garbage entries, but only where an equality below then fails:
    # if all hold, the starts grow from 0 by sizes <= data_end, and no sum wrapped.
    tiles = (
        len(present) > 0
        and int(starts[0]) == 0
        and bool(np.all(nbytes > 0))
        and bool(np.all(nbytes <= data_end))
        and bool(np.all(starts[1:] == starts[:-1] + nbytes[:-1]))
        and int(starts[-1]) + int(nbytes[-1]) == data_end
    )
    if not tiles:
        raise DamagedShardError(
            path,
            f"the shard index does not describe the {data_end} bytes before it "
            f"({len(present)} inner chunks listed)",
        )
    return ShardIndex(path, entries.copy(), size)


def _chunks(fh: BinaryIO, index: ShardIndex) -> Iterator[tuple[int, bytes]]:
    for col, start, stop in index.chunk_ranges():
        fh.seek(start)
        data = fh.read(stop - start)
        if len(data) != stop - start:
            raise DamagedShardError(index.path, "the file shrank while it was read")
        yield col, data


def iter_inner_chunks(index: ShardIndex) -> Iterator[tuple[int, bytes]]:
    """(column, encoded bytes) of every stored inner chunk, one chunk in memory at a time."""
    with open(index.path, "rb") as fh:
        yield from _chunks(fh, index)


def shard_chunk_crcs(path: Path, n_inner: int) -> list[tuple[int, int]]:
    """(column, CRC32 of the encoded bytes) of every stored inner chunk: what extraction
    records per chunk, whatever the layout. Index and chunks are read through one open file,
    so a shard replaced meanwhile is read whole, old or new. Raises DamagedShardError."""
    with open(path, "rb") as fh:
        index = _read_index(fh, Path(path), n_inner)
        return [(col, crc32(data)) for col, data in _chunks(fh, index)]


def shard_digest(path: Path, n_inner: int) -> str:
    """`layout.chunk_digest` of one row stored as a shard; equal to the digest of the same row
    stored unsharded, since inner chunks are the unsharded chunk files' bytes. A missing file
    is an all-zero row (the digest of no chunks)."""
    if not Path(path).exists():
        return layout.chunk_digest([])
    return layout.chunk_digest(shard_chunk_crcs(path, n_inner))
