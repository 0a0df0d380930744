"""Sum, maximum or minimum of many intervals at once: the one hot path under `summarize` and
`profile`.

Each interval is reduced by the block reader (`chunks.CoverageArray.reduce`: C, without the
GIL) straight from the blosc blocks it covers, on the decoded integers, with no array of values
in between. Intervals are sorted by start within their contig, so consecutive ones that share a
block decode it once; the results go back to the caller's order.

Work on a contig is cut into batches of at most `batch_columns` chunk columns, so the chunk
headers loaded for a batch (for every chosen sample) stay within the reader's memory budget
whatever the number of samples or the length of the contig; within a batch the intervals are
split between `threads` threads (or the samples are, when the intervals are few).

Arrays in a layout the block reader does not read go through zarr, one interval at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bamstore.query import _chunkread, chunks
from bamstore.query.source import CoverageSource

UINT32_MAX = int(np.iinfo(np.uint32).max)
REDUCTIONS = {"sum": _chunkread.Reduction.SUM, "max": _chunkread.Reduction.MAX}
REDUCTIONS["min"] = _chunkread.Reduction.MIN
IDENTITY = {"sum": 0, "max": 0, "min": UINT32_MAX}
NUMPY = {"sum": np.sum, "max": np.max, "min": np.min}
ENTRY_BYTES = 16 * 256 + 256  # a chunk header's cost in the reader (256 blocks of offsets)


@dataclass(frozen=True)
class Intervals:
    """Half-open intervals [start, end) on contigs given by index into a list of array names."""

    contig: np.ndarray  # int64
    start: np.ndarray  # int64
    end: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.start)


class Reducer:
    """Reductions of intervals for the chosen sample rows of a store, on `threads` threads."""

    def __init__(self, source: CoverageSource, rows: Sequence[int], threads: int = 1):
        self.source = source
        self.rows = np.asarray(rows, dtype=np.int64)
        self.threads = max(1, int(threads))
        budget = chunks.INDEX_BUDGET // 2
        self.batch_columns = max(1, budget // (ENTRY_BYTES * max(1, len(self.rows))))

    @property
    def blocks_decoded(self) -> int:
        """Blosc blocks decoded so far by the block reader, over all threads."""
        return chunks.blocks_decoded()

    def reduce(self, arrays: Sequence[str], intervals: Intervals, how: str) -> np.ndarray:
        """(intervals, rows) float64: the `how` ("sum", "max", "min") of each interval's
        positions for each row; NaN for the max/min of an empty interval, 0 for its sum."""
        if how not in REDUCTIONS:
            raise ValueError(f"unknown reduction {how!r}")
        n = len(intervals)
        out = np.full((n, len(self.rows)), IDENTITY[how], dtype=np.int64)
        nonempty = intervals.end > intervals.start
        for contig_index in np.unique(intervals.contig[nonempty]).tolist():
            members = np.flatnonzero(nonempty & (intervals.contig == contig_index))
            order = members[np.argsort(intervals.start[members], kind="stable")]
            name = arrays[contig_index]
            array = self.source.coverage(name)
            if array is None:
                out[order] = self._through_zarr(name, intervals, order, how)
                continue
            starts, ends = intervals.start[order], intervals.end[order]
            for batch in self._batches(starts, ends, array.format.chunk_len):
                out[order[batch]] = self._run(array, starts[batch], ends[batch], how).T
        result = out.astype(np.float64)
        if how != "sum":
            result[~nonempty] = np.nan
        return result

    def _batches(self, starts: np.ndarray, ends: np.ndarray, chunk_len: int) -> list[slice]:
        """Consecutive runs of the sorted intervals, each touching at most `batch_columns`
        chunk columns from its first interval's start (a longer interval: a batch of its own)."""
        first = starts // chunk_len
        bounds = [0]
        while bounds[-1] < len(starts):
            begin = bounds[-1]
            limit = first[begin] + self.batch_columns
            stop = int(np.searchsorted(first, limit, side="left"))
            stop = max(stop, begin + 1)
            # a batch also ends before an interval that reaches far past the limit
            reach = (ends[begin:stop] - 1) // chunk_len
            far = np.flatnonzero(reach >= limit + self.batch_columns)
            if len(far) and far[0] > 0:
                stop = begin + int(far[0])
            bounds.append(stop)
        return [slice(a, b) for a, b in itertools.pairwise(bounds)]

    def _run(
        self, array: chunks.CoverageArray, starts: np.ndarray, ends: np.ndarray, how: str
    ) -> np.ndarray:
        """(rows, intervals) int64: one batch reduced, on the threads."""
        code = REDUCTIONS[how]
        values = np.full((len(self.rows), len(starts)), IDENTITY[how], dtype=np.int64)
        if self.threads == 1 or len(self.rows) >= self.threads:
            # one call; with several rows the block reader splits them between its threads
            array.reduce(self.rows, starts, ends, code, values, self.threads)
            return values
        # load the batch's chunk headers once, here, before the threads read them
        array.ensure(self.rows, chunks.columns_of(starts, ends, array.format.chunk_len))
        # fewer rows than threads: the intervals are split between Python threads instead
        parts = [(slice(None), s) for s in chunks.split(len(starts), self.threads)]

        def work(part: tuple[slice, slice]) -> tuple[tuple[slice, slice], np.ndarray]:
            rows, pieces = part
            block = np.ascontiguousarray(values[rows, pieces])
            array.reduce(self.rows[rows], starts[pieces], ends[pieces], code, block)
            return part, block

        for (rows, pieces), block in chunks.pool(self.threads).map(work, parts):
            values[rows, pieces] = block
        return values

    def _through_zarr(
        self, name: str, intervals: Intervals, order: np.ndarray, how: str
    ) -> np.ndarray:
        """(len(order), rows) of an array the block reader does not read, through zarr."""
        zarray = self.source.root[name]
        out = np.empty((len(order), len(self.rows)), dtype=np.int64)
        for k, i in enumerate(order.tolist()):
            start, end = int(intervals.start[i]), int(intervals.end[i])
            data = np.asarray(zarray.oindex[self.rows, start:end], dtype=np.int64)
            out[k] = NUMPY[how](data, axis=1)
        return out
