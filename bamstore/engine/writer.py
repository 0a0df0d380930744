"""Create a store's skeleton and fill it: shared by extraction (one sample) and merge (many).

Coverage arrays are declared by writing their zarr.json from `layout` (fast even for 100,000
contigs); chunks are written as files by the caller, one file per chunk or, in a sharded store,
one shard per row (`ContigRows`). The four small metadata arrays go through zarr itself, so their
codecs are exactly zarr's defaults, as in QuantNado.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import zarr
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.engine import shard
from bamstore.engine.rows import ArrayLayout, DocumentTexts


class StoreWriter:
    """Writes one store under `path` (a temporary path, published by `publish.staged_output`)."""

    def __init__(
        self,
        path: Path,
        contigs: Sequence[tuple[str, int]],
        n_samples: int,
        *,
        stranded: bool,
        chunk_len: int,
        profile: layout.CompressionProfile,
        sharded: bool = False,
    ) -> None:
        if n_samples < 1:
            raise ValueError("a store needs at least one sample")
        self.path = path
        self.contigs = list(contigs)
        self.n_samples = n_samples
        self.stranded = stranded
        self.chunk_len = chunk_len
        self.profile = profile
        self.sharded = sharded
        path.mkdir(parents=True)
        layout.write_json(path / layout.ZARR_JSON, layout.group_document())
        # Written in place, not via a temporary file: the whole store is unpublished until it
        # is complete.
        texts = DocumentTexts(n_samples, chunk_len, profile, sharded)
        for contig, length in self.contigs:
            text = texts.text(length)
            for name in layout.coverage_array_names([contig], stranded):
                folder = path / name
                folder.mkdir(parents=True, exist_ok=True)
                (folder / layout.ZARR_JSON).write_text(text)
        self._made_dirs: set[Path] = set()
        self._rows: list[ContigRows] = []

    def array_layout(self, length: int) -> ArrayLayout:
        return ArrayLayout(length, self.chunk_len, self.sharded)

    def chunk_file(self, array: str, row: int, col: int) -> Path:
        path = layout.chunk_path(self.path, array, row, col)
        parent = path.parent
        if parent not in self._made_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(parent)
        return path

    def write_chunk(self, array: str, row: int, col: int, data: bytes) -> None:
        """One unsharded chunk file."""
        with open(self.chunk_file(array, row, col), "wb") as fh:
            fh.write(data)

    def contig_rows(
        self, arrays: Sequence[str], row: int, length: int, max_pending: int
    ) -> ContigRows:
        """Where row `row` of one contig's `arrays` (total, and its strands) is written, window
        by window; at most `max_pending` windows wait to be written in a sharded store."""
        rows = ContigRows(self, list(arrays), row, length, max_pending)
        if self.sharded:
            self._rows.append(rows)
        return rows

    def abort_rows(self) -> None:
        """Drop every shard not finished yet (after a failure: their open files are closed)."""
        for rows in self._rows:
            rows.abort()

    def write_metadata(self, arrays: layout.MetadataArrays) -> None:
        """The four metadata arrays, through zarr itself (its default codecs, as QuantNado)."""
        if len(arrays.completed) != self.n_samples:
            raise ValueError(
                f"metadata for {len(arrays.completed)} samples, expected {self.n_samples}"
            )
        group = zarr.open_group(LocalStore(self.path), mode="r+", zarr_format=3)
        meta = group.create_group(layout.METADATA_GROUP)
        for spec, values in arrays.items():
            arr = meta.create_array(
                spec.name, shape=spec.shape(self.n_samples), dtype=spec.dtype, fill_value=spec.fill
            )
            arr[...] = values

    def write_root_attributes(self, attrs: layout.StoreAttributes) -> None:
        """Written last, in one go: a store without them cannot be opened by QuantNado."""
        layout.write_json(self.path / layout.ZARR_JSON, layout.group_document(attrs.to_json()))


class ContigRows:
    """One sample row of one contig's arrays, written one window (chunk column) at a time by
    worker threads that finish in any order.

    The caller takes a ticket per window in column order (`take`, one thread), and any thread
    hands in that window's encoded chunks (`put`). Unsharded, each chunk file is written at
    once. Sharded, a shard must receive its chunks in column order (`shard.ShardWriter`), so
    windows are appended in ticket order: a window that finishes early waits, encoded, until
    those before it are in; `take` waits while `max_pending` windows are unwritten, which bounds
    that memory. After `finish` (no more windows), the shards are closed as soon as every window
    is in. The thread that appends also closes; a failure there is raised to it, and later
    windows are dropped. `abort` drops unfinished shards (their partial files).
    """

    def __init__(
        self, writer: StoreWriter, arrays: list[str], row: int, length: int, max_pending: int
    ) -> None:
        self.writer = writer
        self.arrays = arrays
        self.row = row
        self.max_pending = max(1, max_pending)
        n_inner = writer.array_layout(length).n_chunks
        self._shards = (
            [shard.ShardWriter(shard.shard_path(writer.path, a, row), n_inner) for a in arrays]
            if writer.sharded
            else []
        )
        self._cond = threading.Condition()
        self._taken = 0  # tickets handed out
        self._written = 0  # windows appended (in ticket order)
        self._waiting: dict[int, tuple[int, Sequence[bytes | None]]] = {}
        self._finished = False  # no more tickets will be taken
        self._closed = False  # shards closed: written, or dropped by abort

    def take(self) -> int:
        """The ticket of the next window (called in column order, by one thread)."""
        with self._cond:
            while (
                self.writer.sharded
                and self._taken - self._written >= self.max_pending
                and not self._closed
            ):
                self._cond.wait()
            ticket = self._taken
            self._taken += 1
            return ticket

    def put(self, ticket: int, col: int, chunks: Sequence[bytes | None]) -> None:
        """The window's encoded chunk of each array, in `arrays` order (None: all zeros, not
        stored). Every taken ticket must be put, also when encoding failed (all None)."""
        if not self.writer.sharded:
            for array, data in zip(self.arrays, chunks, strict=True):
                if data is not None:
                    self.writer.write_chunk(array, self.row, col, data)
            return
        with self._cond:
            self._waiting[ticket] = (col, chunks)
            try:
                self._drain()
            finally:
                self._cond.notify_all()

    def finish(self) -> None:
        """No more windows: the shards are closed once every window is in."""
        with self._cond:
            self._finished = True
            self._drain()

    def abort(self) -> None:
        with self._cond:
            if not self._closed:
                self._closed = True
                for writer in self._shards:
                    writer.abort()
            self._cond.notify_all()

    def _drain(self) -> None:
        """Append the waiting windows that are next in ticket order; close when all are in.
        Called with the lock held."""
        while self._written in self._waiting:
            col, chunks = self._waiting.pop(self._written)
            self._written += 1
            if self._closed:
                continue
            try:
                for writer, data in zip(self._shards, chunks, strict=True):
                    if data is not None:
                        writer.append(col, data)
            except BaseException:
                self.abort()
                raise
        if self._finished and self._written == self._taken and not self._closed:
            try:
                for writer in self._shards:
                    writer.close()
            except BaseException:
                self.abort()
                raise
            self._closed = True
