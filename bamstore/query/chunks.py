"""Coverage arrays read straight from their chunk files, locally or over HTTP/S3: the read path
of every query and of `BamStore.extract_region(s)`.

Why not through zarr: a query reads many small pieces (a 2 kb window, 10,000 profile windows,
100,000 BED regions), and zarr decodes a whole chunk (1 Mi positions, 4 MiB) for each and adds
about 1 ms of per-call machinery. Here each coverage array has a `ChunkTable` (`_chunkread`)
that knows, per chunk, where its bytes are and where each of its blosc blocks starts; a window
decodes only the blocks it touches (16 KiB each in stores written since format 3), in C,
without the GIL. zarr stays the oracle of the tests and the fallback for arrays in any other
layout (`ArrayFormat.of` returns None for those).

Where the bytes come from:
  - local stores: chunk files, or one shard per row whose index is read once per row; the C
    code preads each block it needs;
  - http(s):// and s3:// stores (fsspec): one request per chunk (a whole chunk file, or one
    inner chunk's byte range of a shard, whose index is fetched once per shard), issued
    concurrently for all the chunks a query needs; the compressed chunk is kept in the table
    (within its memory budget) and decoded block by block like a local one.

A chunk file that the store's record lists but that is missing, or a chunk that cannot be
decoded, is a `DamagedStoreError` naming the file: never zeros.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bamstore import layout
from bamstore.engine import shard
from bamstore.errors import DamagedStoreError
from bamstore.query import _chunkread
from bamstore.storage import StoreFiles

Result = _chunkread.Result
INDEX_BUDGET = 64 * 2**20  # bytes of chunk headers (and remote frames) kept per array
REMOTE_BUDGET = 256 * 2**20  # the same for arrays read over the network (frames kept)
VALIDATE_FIX = "run `bamstore validate {store}` to list the damage, then rebuild that sample"
MAX_RELOADS = 8  # reads retried after another thread evicted what they needed


@dataclass(frozen=True)
class ArrayFormat:
    """How one coverage array's chunks are stored, from its zarr.json: (1, chunk_len) uint32
    chunks, fill 0, '/' keys, little-endian bytes then blosc (or nothing), each row in chunk
    files or in one shard of inner chunks."""

    length: int
    n_rows: int
    chunk_len: int
    compressed: bool
    sharded: bool

    @property
    def n_chunks(self) -> int:
        return layout.n_chunks(self.length, self.chunk_len)

    @classmethod
    def of(cls, document: dict[str, Any]) -> ArrayFormat | None:
        """The format of an array document, None if it is not one read here."""
        try:
            shape = document["shape"]
            outer = document["chunk_grid"]["configuration"]["chunk_shape"]
            keys = document["chunk_key_encoding"]
            codecs = document["codecs"]
            if (
                document.get("zarr_format") != 3
                or document.get("node_type") != "array"
                or document.get("data_type") != "uint32"
                or document.get("fill_value") != 0
                or document["chunk_grid"].get("name") != "regular"
                or keys.get("name") != "default"
                or keys.get("configuration", {}).get("separator", "/") != "/"
                or len(shape) != 2
                or document.get("storage_transformers")
            ):
                return None
            sharded = len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed"
            if sharded:
                config = codecs[0]["configuration"]
                inner = config["chunk_shape"]
                chunk_codecs = config["codecs"]
                index_codecs = [c.get("name") for c in config["index_codecs"]]
                n_inner = layout.n_chunks(int(shape[1]), int(inner[1]))
                if (
                    index_codecs != ["bytes", "crc32c"]
                    or config.get("index_location", "end") != "end"
                    or list(outer) != [1, n_inner * int(inner[1])]
                ):
                    return None
            else:
                inner, chunk_codecs = outer, codecs
            compressed = _plain_codecs(chunk_codecs)
            if compressed is None or int(inner[0]) != 1 or int(inner[1]) < 1:
                return None
            return cls(int(shape[1]), int(shape[0]), int(inner[1]), compressed, sharded)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return None


def _plain_codecs(codecs: Sequence[Any]) -> bool | None:
    """True for little-endian bytes then blosc, False for bytes alone, None for anything else
    (blosc frames that are not zstd are still read: `_chunkread` hands them back to numcodecs)."""
    names = [c.get("name") for c in codecs]
    if not names or names[0] != "bytes":
        return None
    if codecs[0].get("configuration", {}).get("endian", "little") != "little":
        return None
    if names == ["bytes"]:
        return False
    if names == ["bytes", "blosc"]:
        return True
    return None


class Presence:
    """Which chunks of one row the store's record says exist: `columns` exactly (format 3),
    or only whether the row has any (`any_data`, from its coverage sum), or nothing (a store
    without a record). A missing chunk file is damage only if the record lists it."""

    __slots__ = ("any_data", "columns")

    def __init__(self, columns: frozenset[int] | None = None, any_data: bool | None = None):
        self.columns = columns
        self.any_data = any_data

    def expects(self, col: int) -> bool:
        return self.columns is not None and col in self.columns

    def expects_row(self) -> bool:
        """Whether the row must have a file at all (its shard, in a sharded array)."""
        if self.columns is not None:
            return bool(self.columns)
        return bool(self.any_data)


UNKNOWN_PRESENCE = Presence()


class CoverageArray:
    """One coverage array of a store, read through a `ChunkTable`.

    `presence(row)` says which chunks the record lists for a row. Reads are thread-safe: each
    thread decodes with its own scratch buffers; loading is serialised by a lock.
    """

    def __init__(
        self,
        files: StoreFiles,
        name: str,
        fmt: ArrayFormat,
        presence: Callable[[int], Presence],
        store_label: str,
    ):
        self.files = files
        self.name = name
        self.format = fmt
        self.presence = presence
        self.store_label = store_label
        budget = REMOTE_BUDGET if files.remote else INDEX_BUDGET
        self.table = _chunkread.ChunkTable(fmt.n_rows, fmt.n_chunks, fmt.chunk_len, budget)
        self._local = threading.local()
        self._load_lock = threading.Lock()
        self._shard_indexes: OrderedDict[int, shard.ShardIndex | None] = OrderedDict()
        self._max_shard_indexes = max(16, INDEX_BUDGET // shard.index_nbytes(fmt.n_chunks))

    # ------------------------------------------------------------ errors

    def _key(self, row: int, col: int) -> str:
        col = shard.SHARD_COLUMN if self.format.sharded else col
        return f"{self.name}/{layout.CHUNK_FOLDER}/{row}/{col}"

    def damaged(self, row: int, col: int, problem: str) -> DamagedStoreError:
        return DamagedStoreError(
            self.files.path(self._key(row, col)),
            problem,
            VALIDATE_FIX.format(store=self.store_label),
        )

    def _raise_for(self, result: int, row: int, col: int, errno_: int = 0) -> None:
        what = "shard" if self.format.sharded else "chunk file"
        if result == Result.MISSING:
            raise self.damaged(row, col, f"{what} is missing, but the store's record lists it")
        if result == Result.DAMAGED:
            raise self.damaged(row, col, f"{what} is damaged: its data cannot be decoded")
        if result == Result.IO_ERROR:
            raise OSError(errno_, os.strerror(errno_), self.files.path(self._key(row, col)))
        raise RuntimeError(f"chunk reader result {result} for ({row}, {col})")

    # ------------------------------------------------------------ loading

    def _scratch(self, threads: int = 1) -> Any:
        """This calling thread's reading state, reading with `threads` threads (the rows of a
        read split between them)."""
        kept = getattr(self._local, "scratches", None)
        if kept is None:
            kept = self._local.scratches = {}
        scratch = kept.get(threads)
        if scratch is None:
            scratch = kept[threads] = _chunkread.Scratch(threads)
        return scratch

    def ensure(self, rows: np.ndarray, cols: np.ndarray | range) -> None:
        """Load the table entries of rows x cols (unique columns) that are not loaded yet."""
        pairs: list[tuple[int, int]] = []
        if isinstance(cols, range):
            pairs = self.table.unloaded(rows, cols.start, cols.stop - 1)
        else:
            for col in cols.tolist():
                pairs += self.table.unloaded(rows, col, col)
        if not pairs:
            return
        with self._load_lock:
            self.table.evict()
            pairs = [p for p in pairs if self.table.state(*p) == 0]
            if self.format.sharded:
                self._load_sharded(pairs)
            else:
                self._load_files(pairs)

    def _load_files(self, pairs: list[tuple[int, int]]) -> None:
        fmt = self.format
        if not self.files.remote:
            # the paths as bytes from one prefix: a Path per chunk cost 13 us, a third of a load
            prefix = os.fsencode(self.files.path(f"{self.name}/{layout.CHUNK_FOLDER}")) + b"/"
            for row, col in pairs:
                path = b"%s%d/%d" % (prefix, row, col)
                if fmt.compressed:
                    result = self.table.load_frame(row, col, path, 0, -1)
                else:
                    result = self._load_raw_file(row, col, path)
                self._settle(row, col, result, lambda r=row, c=col: self._file_bytes(r, c))
            return
        datas = self.files.fetch([self._key(r, c) for r, c in pairs], [None] * len(pairs))
        for (row, col), data in zip(pairs, datas, strict=True):
            if isinstance(data, FileNotFoundError):
                result = Result.MISSING
            elif isinstance(data, Exception):
                raise data
            elif fmt.compressed:
                result = self.table.load_frame_bytes(row, col, data)
            else:
                result = self.table.load_raw_bytes(row, col, data)
            self._settle(row, col, result, lambda d=data: d)

    def _load_raw_file(self, row: int, col: int, path: bytes) -> int:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return Result.MISSING
        if size != self.format.chunk_len * 4:
            return Result.DAMAGED
        self.table.load_raw(row, col, path, 0)
        return Result.OK

    def _file_bytes(self, row: int, col: int) -> bytes:
        data = self.files.fetch([self._key(row, col)], [None])[0]
        if isinstance(data, Exception):
            raise data
        return data

    def _settle(self, row: int, col: int, result: int, raw: Callable[[], bytes]) -> None:
        """Act on the result of loading (row, col): a missing chunk is zeros unless the record
        lists it; a frame not read by `_chunkread` is decoded whole through numcodecs."""
        if result == Result.OK:
            return
        if result == Result.MISSING and not self.presence(row).expects(col):
            self.table.set_absent(row, col)
            return
        if result == Result.UNSUPPORTED:
            import numcodecs  # only for blosc frames that are not zstd (not written by bamstore)

            try:
                values = np.frombuffer(numcodecs.Blosc().decode(raw()), dtype="<u4")
            except (RuntimeError, ValueError):
                result = Result.DAMAGED
            else:
                if len(values) == self.format.chunk_len:
                    self.table.set_decoded(row, col, values)
                    return
                result = Result.DAMAGED
        self._raise_for(result, row, col, self.table.failed_errno)

    def _shard_index(self, row: int) -> shard.ShardIndex | None:
        """The index of row `row`'s shard (cached), None if the row has none (all zeros)."""
        if row in self._shard_indexes:
            self._shard_indexes.move_to_end(row)
            return self._shard_indexes[row]
        n_inner = self.format.n_chunks
        key = self._key(row, 0)
        index: shard.ShardIndex | None
        if self.files.remote:
            tail = self.files.fetch([key], [(-shard.index_nbytes(n_inner), None)])[0]
            if isinstance(tail, FileNotFoundError):
                index = None
            elif isinstance(tail, Exception):
                raise tail
            else:
                index = self._parse_remote_index(row, tail)
        else:
            try:
                index = shard.read_shard_index(Path(self.files.path(key)), n_inner)
            except FileNotFoundError:
                index = None
            except shard.DamagedShardError as exc:
                raise self.damaged(row, 0, f"shard is damaged: {exc.reason}") from None
        if index is None and self.presence(row).expects_row():
            raise self.damaged(row, 0, "shard is missing, but the store's record lists it")
        self._shard_indexes[row] = index
        while len(self._shard_indexes) > self._max_shard_indexes:
            self._shard_indexes.popitem(last=False)
        return index

    def _parse_remote_index(self, row: int, tail: bytes) -> shard.ShardIndex:
        n_inner = self.format.n_chunks
        size = shard.index_nbytes(n_inner)
        if len(tail) < size:
            raise self.damaged(row, 0, "shard is damaged: shorter than its index")
        tail = tail[-size:]  # a server that ignores Range sends the whole file
        try:
            path = Path(self.files.path(self._key(row, 0)))
            return shard.parse_shard_index(tail, path, n_inner, None)
        except shard.DamagedShardError as exc:
            raise self.damaged(row, 0, f"shard is damaged: {exc.reason}") from None

    def _load_sharded(self, pairs: list[tuple[int, int]]) -> None:
        fetch: list[tuple[int, int, tuple[int, int]]] = []
        for row, col in pairs:
            index = self._shard_index(row)
            span = None if index is None else index.byte_range(col)
            if span is None:
                if self.presence(row).expects(col):
                    raise self.damaged(
                        row, col, f"shard lacks inner chunk {col}, which the store's record lists"
                    )
                self.table.set_absent(row, col)
                continue
            if not self.files.remote:
                path = os.fsencode(self.files.path(self._key(row, col)))
                start, end = span
                if self.format.compressed:
                    result = self.table.load_frame(row, col, path, start, end - start)
                elif end - start != self.format.chunk_len * 4:
                    result = Result.DAMAGED
                else:
                    self.table.load_raw(row, col, path, start)
                    result = Result.OK
                self._settle(row, col, result, lambda p=path, s=span: _read_span(p, s))
            else:
                fetch.append((row, col, span))
        if fetch:
            datas = self.files.fetch([self._key(r, c) for r, c, _ in fetch], [s for *_, s in fetch])
            for (row, col, _span), data in zip(fetch, datas, strict=True):
                if isinstance(data, Exception):
                    if isinstance(data, FileNotFoundError):
                        raise self.damaged(row, col, "shard went missing while it was read")
                    raise data
                if self.format.compressed:
                    result = self.table.load_frame_bytes(row, col, data)
                else:
                    result = self.table.load_raw_bytes(row, col, data)
                self._settle(row, col, result, lambda d=data: d)

    # ------------------------------------------------------------ reading

    def _retrying(
        self,
        rows: np.ndarray,
        cols: np.ndarray | range,
        read: Callable[[Any], int],
        threads: int = 1,
    ) -> None:
        """Load, then read; load again what another thread evicted meanwhile."""
        threads = max(1, min(threads, len(rows)))
        for _ in range(MAX_RELOADS):
            self.ensure(rows, cols)
            scratch = self._scratch(threads)
            before = scratch.blocks_decoded
            result = read(scratch)
            _count_blocks(scratch.blocks_decoded - before)
            if result == Result.OK:
                return
            row, col = scratch.failed_row, scratch.failed_col
            if result != Result.NEED_LOAD:
                if result == Result.MISSING and not self.presence(row).expects(col):
                    raise self.damaged(row, col, "chunk file disappeared while it was read")
                self._raise_for(result, row, col, scratch.failed_errno)
        raise RuntimeError(f"{self.name}: chunks evicted faster than they can be read")

    def windows(
        self, rows: Sequence[int], starts: Sequence[int], width: int, threads: int = 1
    ) -> np.ndarray:
        """(windows, rows, width) uint32: positions [start, start + width) of each row, the
        rows split between `threads` threads."""
        rows_a = np.ascontiguousarray(rows, dtype=np.int64)
        starts_a = np.ascontiguousarray(starts, dtype=np.int64)
        out = np.empty((len(starts_a), len(rows_a), width), dtype=np.uint32)
        if width == 0 or len(starts_a) == 0 or len(rows_a) == 0:
            return out
        if len(starts_a) == 1:  # one window (extract_region): its columns without numpy
            start = int(starts_a[0])
            chunk_len = self.format.chunk_len
            cols: np.ndarray | range = range(
                start // chunk_len, (start + width - 1) // chunk_len + 1
            )
        else:
            cols = columns_of(starts_a, starts_a + width, self.format.chunk_len)
        self._retrying(
            rows_a,
            cols,
            lambda s: self.table.read_windows(rows_a, starts_a, width, out, s),
            threads,
        )
        return out

    def reduce(
        self,
        rows: Sequence[int],
        starts: np.ndarray,
        ends: np.ndarray,
        how: int,
        out: np.ndarray,
        threads: int = 1,
    ) -> None:
        """Fold the sum/max/min (`_chunkread.Reduction`) of positions [starts[p], ends[p]) of
        each row into out[row index, p] (int64, holding the starting values), the rows split
        between `threads` threads."""
        rows_a = np.ascontiguousarray(rows, dtype=np.int64)
        starts_a = np.ascontiguousarray(starts, dtype=np.int64)
        ends_a = np.ascontiguousarray(ends, dtype=np.int64)
        keep = ends_a > starts_a
        if not keep.any() or len(rows_a) == 0:
            return
        cols = columns_of(starts_a, ends_a, self.format.chunk_len)
        self._retrying(
            rows_a,
            cols,
            lambda s: self.table.reduce_pieces(rows_a, starts_a, ends_a, how, out, s),
            threads,
        )


def columns_of(starts: np.ndarray, ends: np.ndarray, chunk_len: int) -> np.ndarray:
    """Every chunk column that intervals [starts, ends) touch (empty ones: none)."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return np.zeros(0, dtype=np.int64)
    first = starts // chunk_len
    last = (ends - 1) // chunk_len
    if np.all(first == last):
        if len(first) > 1 and np.all(first[1:] >= first[:-1]):  # sorted: no hashing
            return first[np.r_[True, first[1:] != first[:-1]]]
        return np.unique(first)
    count = last - first + 1
    step = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return np.unique(np.repeat(first, count) + step)


def _read_span(path: bytes, span: tuple[int, int]) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(span[0])
        return fh.read(span[1] - span[0])


# ------------------------------------------------------------ counts and parallel reads

_BLOCKS = [0]
_BLOCKS_LOCK = threading.Lock()


def _count_blocks(n: int) -> None:
    with _BLOCKS_LOCK:
        _BLOCKS[0] += n


def blocks_decoded() -> int:
    """Blosc blocks decoded by every reader of this process so far (tests hold reads to
    "each block once" with it)."""
    return _BLOCKS[0]


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def pool(threads: int) -> ThreadPoolExecutor:
    """One shared pool of reading threads (grown to the largest `threads` asked for)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < threads:
            _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bamstore-read")
        return _POOL


def split(n: int, parts: int) -> list[slice]:
    """`parts` contiguous slices covering range(n) (fewer when n is small)."""
    parts = max(1, min(parts, n))
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]
