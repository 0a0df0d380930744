"""Sum, maximum or minimum of many intervals at once, reading each chunk once.

The one hot path under `summarize` and `profile`. Asking zarr for every interval would decode a
chunk once per interval that touches it (a 1 kb region costs a whole 4 MiB chunk per sample), so
the intervals are cut at chunk boundaries into pieces, the pieces sorted by chunk, and each chunk
column (the selected samples' chunks at one position) is fetched and decoded once; every piece in
it is then reduced by one `ufunc.reduceat` call, and the pieces are folded back into their
intervals. Output order is the caller's, whatever order the intervals came in.

Work is split into tasks of (contig, group of samples, run of chunk columns), run on `threads`
threads: zarr decodes in its own threads and numpy's reductions release the GIL. Each task
returns partial results that the calling thread folds in, so no two threads write one array.
A group of samples is as many rows as fit in `BLOCK_BYTES` of decoded chunk, which bounds memory
by the thread count, never by the number of intervals or samples. A small cache keeps the last
blocks, so batches of a sorted BED that meet in one chunk do not decode it twice.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.codecs import ShardingCodec, ShardingCodecIndexLocation
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding
from zarr.core.metadata import ArrayV3Metadata
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.engine import shard
from bamstore.errors import QueryError
from bamstore.query.source import CoverageSource

BLOCK_BYTES = 16 * 2**20  # decoded bytes per fetched block (samples x chunks), per thread
TASKS_PER_THREAD = 4  # column runs per thread: enough to balance contigs of unequal length
UINT32_MAX = np.iinfo(np.uint32).max
REDUCTIONS: dict[str, np.ufunc] = {"sum": np.add, "max": np.maximum, "min": np.minimum}


@dataclass(frozen=True)
class Intervals:
    """Half-open intervals [start, end) on contigs given by index into a list of array names."""

    contig: np.ndarray  # int64
    start: np.ndarray  # int64
    end: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.start)


def _plain_chunk_codecs(codecs: Sequence[Any]) -> bool | None:
    """Whether chunks with these codecs are the layout's: True with blosc, False without,
    None if they are anything else."""
    names = [type(codec).__name__ for codec in codecs]
    if names not in (["BytesCodec"], ["BytesCodec", "BloscCodec"]):
        return None
    if not str(getattr(codecs[0], "endian", "")).endswith("little"):
        return None
    return len(names) == 2


class LocalChunkFiles:
    """Chunks of a local array in the layout's codecs, read from their files and decoded by
    numcodecs straight into the caller's buffer.

    Why not through zarr: on this path zarr costs 2.6x the CPU of the decode itself (its asyncio
    pipeline, then a copy of every decoded chunk into the output; measured on the benchmark
    store: 6.5 ms vs 2.5 ms per 4 MiB chunk), and a summary of many regions decodes every chunk
    of every sample. Only arrays whose zarr.json says exactly what `layout` writes (uint32,
    chunks (1, chunk_len), default '/' keys, little-endian bytes then optionally blosc; or the
    same chunks in one shard per row, `LocalShardFiles`) take this path; any other array, and
    every remote store, is read through zarr. The tests read the same stores both ways and
    compare them with numpy over zarr.
    """

    def __init__(self, folder: Path, chunk_len: int, blosc: bool):
        self.folder = folder
        self.chunk_len = chunk_len
        self._codec = numcodecs.Blosc() if blosc else None

    @classmethod
    def of(cls, array: zarr.Array, chunk_len: int) -> LocalChunkFiles | None:
        """The direct reader of `array` (unsharded or sharded), or None: read through zarr."""
        store = array.store_path.store
        meta = array.metadata
        if not isinstance(store, LocalStore) or not isinstance(meta, ArrayV3Metadata):
            return None
        if not (
            array.dtype == np.dtype(np.uint32)
            and isinstance(meta.chunk_key_encoding, DefaultChunkKeyEncoding)
            and meta.chunk_key_encoding.separator == "/"
            and int(meta.fill_value) == 0
            and len(array.shape) == 2
        ):
            return None
        folder = Path(store.root) / array.store_path.path
        outer = tuple(meta.chunk_grid.chunk_shape)  # type: ignore[attr-defined]
        if len(meta.codecs) == 1 and isinstance(meta.codecs[0], ShardingCodec):
            sharding = meta.codecs[0]
            n_inner = -(-int(array.shape[1]) // chunk_len)
            blosc = _plain_chunk_codecs(sharding.codecs)
            index_codecs = [type(codec).__name__ for codec in sharding.index_codecs]
            if (
                blosc is None
                or tuple(sharding.chunk_shape) != (1, chunk_len)
                or outer != (1, n_inner * chunk_len)
                or index_codecs != ["BytesCodec", "Crc32cCodec"]
                or sharding.index_location != ShardingCodecIndexLocation.end
            ):
                return None
            return LocalShardFiles(folder, chunk_len, blosc, n_inner)
        blosc = _plain_chunk_codecs(meta.codecs)
        if blosc is None or outer != (1, chunk_len):
            return None
        return cls(folder, chunk_len, blosc)

    def _decode(self, raw: bytes, view: np.ndarray) -> None:
        if self._codec is None:
            view[:] = np.frombuffer(raw, dtype="<u4")
        else:
            self._codec.decode(raw, out=view)

    def read(self, rows: Sequence[int], first: int, last: int) -> np.ndarray:
        """(rows, (last - first + 1) * chunk_len) uint32; missing chunk files are all zero."""
        width = self.chunk_len
        slab = np.empty((len(rows), (last - first + 1) * width), dtype=np.uint32)
        for i, row in enumerate(rows):
            for k, col in enumerate(range(first, last + 1)):
                view = slab[i, k * width : (k + 1) * width]
                try:
                    raw = (self.folder / layout.CHUNK_FOLDER / str(row) / str(col)).read_bytes()
                except FileNotFoundError:
                    view[:] = 0
                    continue
                self._decode(raw, view)
        return slab


class LocalShardFiles(LocalChunkFiles):
    """The same chunks stored one shard per row (`bamstore.engine.shard`): each is read from its
    row's shard at the offset the shard's index gives.

    zarr reads (and checks) a shard's index on every read of the array; here each row's index
    is read and checked once per command and kept (16 bytes per chunk, up to `INDEX_CACHE_BYTES`
    in all), so a summary of many regions reads each index once and each chunk once, as
    unsharded. A shard whose index cannot be read is named in a QueryError.
    """

    INDEX_CACHE_BYTES = 64 * 2**20

    def __init__(self, folder: Path, chunk_len: int, blosc: bool, n_inner: int):
        super().__init__(folder, chunk_len, blosc)
        self.n_inner = n_inner
        self._indexes: collections.OrderedDict[int, shard.ShardIndex | None] = (
            collections.OrderedDict()
        )
        self._max_indexes = max(16, self.INDEX_CACHE_BYTES // shard.index_nbytes(n_inner))
        self._lock = threading.Lock()

    def _index(self, row: int) -> shard.ShardIndex | None:
        """The index of row `row`'s shard; None if the row has none (all zeros)."""
        with self._lock:
            if row in self._indexes:
                self._indexes.move_to_end(row)
                return self._indexes[row]
        path = self.folder / layout.CHUNK_FOLDER / str(row) / str(shard.SHARD_COLUMN)
        try:
            index: shard.ShardIndex | None = shard.read_shard_index(path, self.n_inner)
        except FileNotFoundError:
            index = None
        except shard.DamagedShardError as exc:
            raise QueryError(
                path, f"shard is damaged: {exc.reason}", "run bamstore validate on the store"
            ) from None
        with self._lock:
            self._indexes[row] = index
            while len(self._indexes) > self._max_indexes:
                self._indexes.popitem(last=False)
        return index

    def read(self, rows: Sequence[int], first: int, last: int) -> np.ndarray:
        width = self.chunk_len
        slab = np.zeros((len(rows), (last - first + 1) * width), dtype=np.uint32)
        for i, row in enumerate(rows):
            index = self._index(row)
            if index is None:
                continue
            with open(index.path, "rb") as fh:
                for k, col in enumerate(range(first, last + 1)):
                    span = index.byte_range(col)
                    if span is None:
                        continue  # an empty chunk: zeros
                    fh.seek(span[0])
                    raw = fh.read(span[1] - span[0])
                    if len(raw) != span[1] - span[0]:
                        raise QueryError(
                            index.path,
                            "shard is shorter than its index says (changed while read?)",
                            "run bamstore validate on the store",
                        )
                    self._decode(raw, slab[i, k * width : (k + 1) * width])
        return slab


class ChunkReader:
    """Blocks of (sample rows x chunk columns) of a store, fetched through zarr.

    Consecutive columns are fetched in one zarr call (zarr reads and decodes their chunks
    concurrently; per-call overhead dominates small chunks), at most `columns_per_fetch` at a
    time so a fetch stays within `BLOCK_BYTES`. Counts what it fetched (`chunks_read`: one per
    sample row and column), so a test can hold the reduction to "each chunk once".
    """

    def __init__(self, source: CoverageSource, rows: Sequence[int], threads: int = 1):
        self.source = source
        self.rows = [int(r) for r in rows]
        self.threads = max(1, int(threads))
        chunk_bytes = source.chunk_len * 4
        per_group = max(1, BLOCK_BYTES // chunk_bytes)
        self.groups = [self.rows[i : i + per_group] for i in range(0, len(self.rows), per_group)]
        widest = max((len(g) for g in self.groups), default=1)
        self.columns_per_fetch = max(1, BLOCK_BYTES // (chunk_bytes * widest))
        self.chunks_read = 0
        self._arrays: dict[str, zarr.Array] = {}
        self._files: dict[str, LocalChunkFiles | None] = {}
        self._cache: collections.OrderedDict[tuple[str, int, int], np.ndarray] = (
            collections.OrderedDict()
        )
        self._cache_slots = self.threads + 1
        self._lock = threading.Lock()

    def array(self, name: str) -> zarr.Array:
        with self._lock:
            if name not in self._arrays:
                node = self.source.root[name]
                assert isinstance(node, zarr.Array)
                self._arrays[name] = node
            return self._arrays[name]

    def _direct(self, name: str, array: zarr.Array) -> LocalChunkFiles | None:
        with self._lock:
            if name not in self._files:
                self._files[name] = LocalChunkFiles.of(array, self.source.chunk_len)
            return self._files[name]

    def fetch(self, name: str, group: int, first: int, last: int) -> list[np.ndarray]:
        """uint32 (len(groups[group]), chunk width) blocks of columns first..last (at most
        `columns_per_fetch`), in one zarr call; the last block is kept for the next batch."""
        blocks: list[np.ndarray] = []
        with self._lock:
            cached = self._cache.get((name, group, first))
        if cached is not None:
            blocks.append(cached)
            first += 1
        if first <= last:
            array = self.array(name)
            rows = self.groups[group]
            chunk_len = self.source.chunk_len
            lo, hi = first * chunk_len, min(int(array.shape[1]), (last + 1) * chunk_len)
            direct = self._direct(name, array)
            if direct is not None:
                slab = direct.read(rows, first, last)[:, : hi - lo]
            elif rows == list(range(rows[0], rows[0] + len(rows))):
                slab = np.asarray(array[rows[0] : rows[0] + len(rows), lo:hi], dtype=np.uint32)
            else:
                data = array.oindex[np.asarray(rows, dtype=np.int64), lo:hi]
                slab = np.asarray(data, dtype=np.uint32)
            blocks += [slab[:, i : i + chunk_len] for i in range(0, hi - lo, chunk_len)]
            with self._lock:
                self.chunks_read += len(rows) * (last - first + 1)
                tail = blocks[-1] if len(blocks) == 1 else blocks[-1].copy()  # not the slab
                self._cache[(name, group, last)] = tail
                while len(self._cache) > self._cache_slots:
                    self._cache.popitem(last=False)
        return blocks


def _pieces(
    start: np.ndarray, end: np.ndarray, chunk_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut non-empty intervals at chunk boundaries: (interval index, column, lo, hi) per piece,
    lo/hi relative to the column's first position, sorted by column then lo."""
    first = start // chunk_len
    last = (end - 1) // chunk_len
    count = last - first + 1
    owner = np.repeat(np.arange(len(start)), count)
    step = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    col = np.repeat(first, count) + step
    base = col * chunk_len
    lo = np.maximum(np.repeat(start, count), base) - base
    hi = np.minimum(np.repeat(end, count), base + chunk_len) - base
    order = np.lexsort((lo, col))
    return owner[order], col[order], lo[order], hi[order]


def reduce_block(block: np.ndarray, lo: np.ndarray, hi: np.ndarray, how: str) -> np.ndarray:
    """(rows, pieces) reduction of block[:, lo:hi] for each piece (lo < hi <= width).

    One `reduceat` over the interleaved (lo, hi) indices reduces every piece and every gap
    between consecutive pieces in a single pass over the block (pieces sorted by lo keep the
    gaps short). reduceat cannot take hi == width, so such pieces stop one short and the last
    position is folded in afterwards, unless it is the piece's only position (then reduceat
    already returned it: an index not below the next gives that element).
    """
    ufunc = REDUCTIONS[how]
    width = block.shape[1]
    idx = np.empty(2 * len(lo), dtype=np.intp)
    idx[0::2] = lo
    idx[1::2] = np.minimum(hi, width - 1)
    if how == "sum":  # int64 sums, one row at a time: a cast of the whole block would double it
        out = np.empty((block.shape[0], len(lo)), dtype=np.int64)
        for r in range(block.shape[0]):
            out[r] = np.add.reduceat(block[r], idx, dtype=np.int64)[0::2]
    else:
        out = ufunc.reduceat(block, idx, axis=1)[:, 0::2]
    tail = (hi == width) & (lo < width - 1)
    if tail.any():
        out[:, tail] = ufunc(out[:, tail], block[:, width - 1 : width].astype(out.dtype))
    return out


def _fetch_runs(cols: np.ndarray, limit: int) -> list[range]:
    """Index runs of consecutive column numbers in sorted `cols`, each at most `limit` long."""
    runs: list[range] = []
    begin = 0
    for i in range(1, len(cols) + 1):
        if i == len(cols) or cols[i] != cols[i - 1] + 1 or i - begin == limit:
            runs.append(range(begin, i))
            begin = i
    return runs


@dataclass(frozen=True)
class _Task:
    """The pieces of one contig's intervals in a run of columns, for one group of samples."""

    array: str
    group: int
    owner: np.ndarray  # interval index of each piece
    col: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def reduce_intervals(
    reader: ChunkReader, arrays: Sequence[str], intervals: Intervals, how: str
) -> np.ndarray:
    """(intervals, reader.rows) float64: the `how` ("sum", "max", "min") of each interval's
    positions for each row; NaN for max/min of an empty interval, 0 for its sum."""
    if how not in REDUCTIONS:
        raise ValueError(f"unknown reduction {how!r}")
    n = len(intervals)
    chunk_len = reader.source.chunk_len
    identity = {"sum": 0, "max": 0, "min": int(UINT32_MAX)}[how]
    acc = np.full((n, len(reader.rows)), identity, dtype=np.int64)
    tasks: list[_Task] = []
    nonempty = intervals.end > intervals.start
    for contig_index in np.unique(intervals.contig[nonempty]):
        members = np.flatnonzero(nonempty & (intervals.contig == contig_index))
        owner, col, lo, hi = _pieces(intervals.start[members], intervals.end[members], chunk_len)
        owner = members[owner]
        cols = np.unique(col)
        per_task = max(1, -(-len(cols) // (TASKS_PER_THREAD * reader.threads)))
        for first in range(0, len(cols), per_task):
            run = cols[first : first + per_task]
            take = (col >= run[0]) & (col <= run[-1])
            for group in range(len(reader.groups)):
                tasks.append(
                    _Task(arrays[contig_index], group, owner[take], col[take], lo[take], hi[take])
                )

    def run_task(task: _Task) -> tuple[int, np.ndarray, np.ndarray]:
        values = np.empty((len(task.owner), len(reader.groups[task.group])), dtype=np.int64)
        bounds = np.flatnonzero(np.diff(task.col)) + 1
        starts, ends = np.r_[0, bounds], np.r_[bounds, len(task.col)]
        cols = task.col[starts]
        for run in _fetch_runs(cols, reader.columns_per_fetch):
            blocks = reader.fetch(task.array, task.group, int(cols[run[0]]), int(cols[run[-1]]))
            for block, i in zip(blocks, run, strict=True):
                a, b = starts[i], ends[i]
                values[a:b] = reduce_block(block, task.lo[a:b], task.hi[a:b], how).T
        return task.group, task.owner, values

    offsets = np.cumsum([0] + [len(g) for g in reader.groups])
    ufunc = REDUCTIONS[how]
    with ThreadPoolExecutor(max_workers=reader.threads) as pool:
        for group, owner, values in pool.map(run_task, tasks):
            columns = np.arange(offsets[group], offsets[group + 1])
            ufunc.at(acc, (owner[:, None], columns[None, :]), values)
    out = acc.astype(np.float64)
    if how != "sum":
        out[~nonempty] = np.nan
    return out
