"""Blacklists: positions left out of every statistic (`--blacklist BED`).

A blacklist BED is read and validated like a region BED (`regions.read_bed`: every line is
checked and named by its line number). Its intervals are merged per contig (overlapping or
touching lines count once), so a position is either blacklisted or not.

Lines on contigs the store lacks blacklist nothing here and are left out (counted in one info
line); a line past a contig's end is an error, as in a region BED (the blacklist is for another
assembly); a blacklist none of whose lines names a contig of the store is an error too, saying
when a naming style (`1` against `chr1`) is why.

Statistics skip blacklisted positions without a pass per position: an interval is cut into the
pieces outside the blacklist (`cut`, vectorised with `searchsorted`), the pieces are reduced by
the block reader like any interval (`Reducer`, C), and the results are folded back per interval
(`reduce_kept`), with the number of kept positions for means.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bamstore.errors import QueryError
from bamstore.query.reduce import Intervals, Reducer
from bamstore.query.regions import BedInput, bed_label, naming_hint, read_bed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pieces:
    """The parts of some intervals outside a blacklist: `intervals` (ordered by owner), the
    interval each came from (`owner`), and per interval the positions kept (`kept`)."""

    intervals: Intervals
    owner: np.ndarray  # int64, non-decreasing
    kept: np.ndarray  # int64 per original interval

    def fold(self, values: np.ndarray, how: str, n: int) -> np.ndarray:
        """(n, rows) float64: the pieces' `values` (pieces, rows) folded per owner: sum (0 for
        an interval without pieces), max or min (NaN without pieces)."""
        rows = values.shape[1]
        out = np.full((n, rows), 0.0 if how == "sum" else np.nan)
        if len(self.owner) == 0:
            return out
        firsts = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1]])
        ufunc = {"sum": np.add, "max": np.maximum, "min": np.minimum}[how]
        out[self.owner[firsts]] = ufunc.reduceat(values, firsts, axis=0)
        return out


class Blacklist:
    """Merged blacklisted intervals per contig of a store (`starts[c]`, `ends[c]`: sorted,
    disjoint, not touching), and the BED they came from."""

    def __init__(
        self, label: str, contigs: Sequence[str], starts: list[np.ndarray], ends: list[np.ndarray]
    ):
        self.label = label
        self.contigs = list(contigs)  # the store's contigs, in its order
        self.starts = starts
        self.ends = ends
        self._removed: dict[tuple[object, int], float] = {}  # (source, row) -> depth inside

    @classmethod
    def read(cls, bed: BedInput, chromsizes: Mapping[str, int]) -> Blacklist:
        """The blacklist of a BED path (`-`: stdin) or DataFrame for a store of `chromsizes`."""
        label = bed_label(bed)
        contigs = list(chromsizes)
        index = {name: i for i, name in enumerate(contigs)}
        found: list[list[tuple[int, int]]] = [[] for _ in contigs]
        absent: dict[str, int] = {}
        lines = 0
        for region in read_bed(bed):
            lines += 1
            i = index.get(region.chrom)
            if i is None:
                absent[region.chrom] = absent.get(region.chrom, 0) + 1
                continue
            length = chromsizes[region.chrom]
            if region.end > length:
                raise QueryError(
                    f"{label} line {region.line}",
                    f"blacklisted region {region.chrom}:{region.start}-{region.end} ends past "
                    f"the end of {region.chrom} (length {length})",
                    "use a blacklist made for the store's assembly",
                )
            if region.end > region.start:
                found[i].append((region.start, region.end))
        if lines and len(absent) and sum(absent.values()) == lines:
            shown = ", ".join(list(absent)[:4]) + (", ..." if len(absent) > 4 else "")
            hint = naming_hint(list(absent), chromsizes)
            raise QueryError(
                label,
                f"no blacklist line names a contig of the store (it names {shown}){hint}",
                "use a blacklist with the store's contig names",
            )
        if absent:
            log.info(
                "%s: %d line(s) on contigs the store lacks (%s) left out",
                label,
                sum(absent.values()),
                ", ".join(list(absent)[:4]) + (", ..." if len(absent) > 4 else ""),
            )
        starts, ends = [], []
        for pairs in found:
            merged = _merge(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
            starts.append(merged[:, 0].copy())
            ends.append(merged[:, 1].copy())
        return cls(label, contigs, starts, ends)

    @property
    def n_intervals(self) -> int:
        return int(sum(len(s) for s in self.starts))

    def positions(self) -> int:
        """Blacklisted positions of the store (merged, so each counted once)."""
        return int(sum(int((e - s).sum()) for s, e in zip(self.starts, self.ends, strict=True)))

    def intervals(self) -> Intervals:
        """Every merged blacklisted interval, as `Intervals` on the store's contig indices."""
        contig = np.concatenate(
            [np.full(len(s), i, dtype=np.int64) for i, s in enumerate(self.starts)] or [[]]
        ).astype(np.int64)
        return Intervals(
            contig,
            np.concatenate(self.starts or [np.zeros(0, np.int64)]).astype(np.int64),
            np.concatenate(self.ends or [np.zeros(0, np.int64)]).astype(np.int64),
        )

    def cut(self, intervals: Intervals) -> Pieces:
        """The parts of `intervals` outside the blacklist (empty parts dropped)."""
        n = len(intervals)
        piece_contig: list[np.ndarray] = []
        piece_start: list[np.ndarray] = []
        piece_end: list[np.ndarray] = []
        piece_owner: list[np.ndarray] = []
        for c in np.unique(intervals.contig).tolist():
            members = np.flatnonzero(intervals.contig == c)
            s, e = intervals.start[members], intervals.end[members]
            bs, be = self.starts[c], self.ends[c]
            if len(bs) == 0:
                keep = e > s
                piece_contig.append(np.full(int(keep.sum()), c, dtype=np.int64))
                piece_start.append(s[keep])
                piece_end.append(e[keep])
                piece_owner.append(members[keep])
                continue
            first = np.searchsorted(be, s, side="right")  # first blacklisted end past s
            last = np.searchsorted(bs, e, side="left")  # blacklisted starts before e
            overlaps = np.maximum(last - first, 0)
            count = overlaps + 1  # pieces before each overlap, and one after the last
            owner = np.repeat(members, count)
            k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
            base = np.repeat(first, count)
            # piece k of an interval: from the end of overlap k-1 (or s) to the start of
            # overlap k (or e)
            prev = base + k - 1
            nxt = base + k
            is_first = k == 0
            is_last = k == np.repeat(overlaps, count)
            lo = np.where(is_first, np.repeat(s, count), be[np.clip(prev, 0, len(be) - 1)])
            hi = np.where(is_last, np.repeat(e, count), bs[np.clip(nxt, 0, len(bs) - 1)])
            lo = np.maximum(lo, np.repeat(s, count))
            hi = np.minimum(hi, np.repeat(e, count))
            keep = hi > lo
            piece_contig.append(np.full(int(keep.sum()), c, dtype=np.int64))
            piece_start.append(lo[keep])
            piece_end.append(hi[keep])
            piece_owner.append(owner[keep])
        if piece_owner:
            owner = np.concatenate(piece_owner)
            order = np.argsort(owner, kind="stable")
            pieces = Intervals(
                np.concatenate(piece_contig)[order],
                np.concatenate(piece_start)[order],
                np.concatenate(piece_end)[order],
            )
            owner = owner[order]
        else:
            empty = np.zeros(0, dtype=np.int64)
            pieces, owner = Intervals(empty, empty, empty), empty
        kept = np.bincount(owner, weights=pieces.end - pieces.start, minlength=n)
        return Pieces(pieces, owner, kept.astype(np.int64))

    def mask(self, contig: str, start: int, end: int) -> np.ndarray:
        """Whether each position of [start, end) of `contig` is blacklisted (bool)."""
        c = self.contigs.index(contig)
        out = np.zeros(end - start, dtype=bool)
        bs, be = self.starts[c], self.ends[c]
        for i in range(np.searchsorted(be, start, "right"), np.searchsorted(bs, end, "left")):
            out[max(bs[i], start) - start : min(be[i], end) - start] = True
        return out

    def removed_depth(self, reducer: Reducer, arrays: Sequence[str]) -> np.ndarray:
        """Per row of `reducer`, the sum of depth over the blacklisted positions of the
        `arrays` (one per contig, in the store's order); cached per source and row."""
        rows = reducer.rows.tolist()
        key = reducer.source
        wanted = [r for r in rows if (key, r) not in self._removed]
        if wanted:
            sub = Reducer(reducer.source, wanted, reducer.threads)
            sums = sub.reduce(arrays, self.intervals(), "sum").sum(axis=0)
            for r, value in zip(wanted, sums.tolist(), strict=True):
                self._removed[(key, r)] = value
        return np.array([self._removed[(key, r)] for r in rows], dtype=np.float64)


def _merge(pairs: np.ndarray) -> np.ndarray:
    """Sorted, disjoint, non-touching intervals covering the same positions as `pairs`."""
    if len(pairs) == 0:
        return pairs
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    reach = np.maximum.accumulate(pairs[:, 1])
    new = np.r_[True, pairs[1:, 0] > reach[:-1]]
    starts = pairs[new, 0]
    group = np.cumsum(new) - 1
    ends = np.zeros(len(starts), dtype=np.int64)
    np.maximum.at(ends, group, pairs[:, 1])
    return np.column_stack([starts, ends])


def reduce_kept(
    reducer: Reducer,
    arrays: Sequence[str],
    intervals: Intervals,
    how: str,
    blacklist: Blacklist | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(values, kept): the `how` of each interval's positions outside the blacklist for each
    row of `reducer` ((intervals, rows) float64), and the positions kept per interval. Without
    a blacklist, every position is kept."""
    if blacklist is None:
        return reducer.reduce(arrays, intervals, how), intervals.end - intervals.start
    pieces = blacklist.cut(intervals)
    values = reducer.reduce(arrays, pieces.intervals, how)
    return pieces.fold(values, how, len(intervals)), pieces.kept


def open_blacklist(
    bed: BedInput | Blacklist | None, chromsizes: Mapping[str, int]
) -> Blacklist | None:
    """A `Blacklist` from a path, `-`, DataFrame or one already read; None for None."""
    if bed is None or isinstance(bed, Blacklist):
        return bed
    if isinstance(bed, str | os.PathLike) and not os.fspath(bed):
        raise QueryError(None, "--blacklist is empty", "give a BED file of blacklisted regions")
    return Blacklist.read(bed, chromsizes)
