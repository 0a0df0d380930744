"""One row of a coverage array on disk, in either layout: what merge, validate, the writer and
the readers ask of a row.

Unsharded (QuantNado's own layout), row r of array A is one file per stored chunk, `A/c/r/<col>`;
sharded (`--shard`), it is one shard file `A/c/r/0` holding the same chunks
(`bamstore.engine.shard`).
Either way a stored chunk is the same encoded bytes, so the digest recorded at extraction
(`layout.chunk_digest` of (column, CRC32 of the bytes)) does not depend on the layout, and a row
moves between stores, and between layouts, without decoding: files are hard-linked or copied,
chunk files are packed into a shard, a shard is cut into chunk files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bamstore import layout
from bamstore.engine import shard


@dataclass(frozen=True)
class ArrayLayout:
    """How the rows of one coverage array are stored: its contig's length, the chunk length,
    and whether each row is one shard."""

    length: int
    chunk_len: int
    sharded: bool

    @property
    def n_chunks(self) -> int:
        """Chunks per row (inner chunks per shard when sharded)."""
        return layout.n_chunks(self.length, self.chunk_len)

    def document(self, n_samples: int, profile: layout.CompressionProfile) -> dict[str, Any]:
        """The array's zarr.json."""
        if self.sharded:
            return shard.sharded_array_document(n_samples, self.length, self.chunk_len, profile)
        return layout.coverage_array_document(n_samples, self.length, self.chunk_len, profile)

    def files(self, store: Path, array: str, row: int) -> dict[int, Path]:
        """The row's files by name: chunk files by column, or {0: its shard}; {} if the row is
        all zeros (nothing stored)."""
        if self.sharded:
            path = shard.shard_path(store, array, row)
            return {shard.SHARD_COLUMN: path} if path.is_file() else {}
        return layout.row_chunk_files(store, array, row)

    def chunk_crcs(self, store: Path, array: str, row: int) -> list[tuple[int, int]]:
        """(column, CRC32 of the encoded bytes) of every stored chunk: what extraction recorded.
        Raises shard.DamagedShardError for a shard whose index cannot be read."""
        if self.sharded:
            path = shard.shard_path(store, array, row)
            return shard.shard_chunk_crcs(path, self.n_chunks) if path.is_file() else []
        return [
            (col, layout.file_crc32(path))
            for col, path in layout.row_chunk_files(store, array, row).items()
        ]

    def columns(self, store: Path, array: str, row: int) -> list[int]:
        """Columns of the stored chunks, in order (shard.DamagedShardError as `chunk_crcs`)."""
        if self.sharded:
            path = shard.shard_path(store, array, row)
            return shard.read_shard_index(path, self.n_chunks).columns() if path.is_file() else []
        return sorted(layout.row_chunk_files(store, array, row))

    def is_row_file(self, name: str) -> bool:
        """Whether a file called `name` in a row's folder is one this layout writes there."""
        if not (name.isdigit() and str(int(name)) == name):
            return False
        return int(name) == shard.SHARD_COLUMN if self.sharded else int(name) < self.n_chunks


def is_sharded_document(document: dict[str, Any]) -> bool:
    """Whether an array's zarr.json stores each row as one shard."""
    codecs = document.get("codecs") or [{}]
    return len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed"


def chunk_codecs(document: dict[str, Any]) -> list[Any]:
    """The codecs that encode one (1, chunk_len) chunk: the inner codecs of a sharded array.
    Rows move between stores as bytes only if these agree."""
    if is_sharded_document(document):
        return list(document["codecs"][0].get("configuration", {}).get("codecs", []))
    return list(document.get("codecs", []))


def place_row(
    array: str,
    source: tuple[Path, int, ArrayLayout],
    target: tuple[Path, int, ArrayLayout],
    place_file: Callable[[Path, Path], None],
) -> tuple[list[tuple[int, int]], bool]:
    """Make row `target` (store, row, layout) of `array` hold row `source`; nothing is decoded.

    In the same layout each file is placed by `place_file` (a hard link or a copy); otherwise
    the chunk files are packed into a shard or the shard is cut into chunk files, as bytes.
    Returns the (column, CRC32) of the chunks as placed, read back from the target (for the
    caller to check against the digest recorded at extraction), and whether the row was
    converted. Raises shard.DamagedShardError for a shard that cannot be read.
    """
    src, src_row, src_layout = source
    dst, dst_row, dst_layout = target
    if (src_layout.length, src_layout.chunk_len) != (dst_layout.length, dst_layout.chunk_len):
        raise ValueError(f"{array}: a row cannot move between arrays of other shapes")
    files = src_layout.files(src, array, src_row)
    if not files:
        return [], False
    folder = layout.row_folder(dst, array, dst_row)
    folder.mkdir(parents=True, exist_ok=True)
    converted = src_layout.sharded != dst_layout.sharded
    if not converted:
        for name, path in files.items():
            place_file(path, folder / str(name))
    elif dst_layout.sharded:
        shard.pack_chunk_files(files, shard.shard_path(dst, array, dst_row), dst_layout.n_chunks)
    else:
        shard.unpack_shard(files[shard.SHARD_COLUMN], src_layout.n_chunks, folder)
    return dst_layout.chunk_crcs(dst, array, dst_row), converted


class DocumentTexts:
    """The zarr.json text of a store's coverage arrays, serialised once for all contig lengths.

    The documents of one store differ only in the contig length (and, sharded, the shard length
    derived from it); json.dumps with indent runs in Python, ~0.2 ms a document: 20 s for
    100,000 contigs. So one document is serialised with markers in place of the two numbers and
    each contig's text is made by replacing them (tests/test_store_layouts.py compares the
    texts with the documents).
    """

    LENGTH = 987_654_321_987_654_321
    SHARD_LEN = 987_654_321_987_654_323

    def __init__(
        self, n_samples: int, chunk_len: int, profile: layout.CompressionProfile, sharded: bool
    ) -> None:
        self.chunk_len = chunk_len
        self.sharded = sharded
        document = ArrayLayout(self.LENGTH, chunk_len, sharded).document(n_samples, profile)
        if sharded:
            document["chunk_grid"]["configuration"]["chunk_shape"][1] = self.SHARD_LEN
        self._template = json.dumps(document, indent=2, allow_nan=False)
        assert self._template.count(str(self.LENGTH)) == 1
        assert self._template.count(str(self.SHARD_LEN)) == int(sharded)

    def text(self, length: int) -> str:
        text = self._template.replace(str(self.LENGTH), str(int(length)))
        if self.sharded:
            text = text.replace(str(self.SHARD_LEN), str(shard.shard_len(length, self.chunk_len)))
        return text
