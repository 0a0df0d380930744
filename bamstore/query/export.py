"""`bamstore export`: one sample's coverage as a bigWig or bedGraph track (deeptools bamCoverage).

Both formats hold the same runs: maximal runs of positions (or bins) of equal value, merged
across chunk boundaries, every contig in the store's order. Zero runs are written as zero in
both formats (`skip_zeros` leaves them out of both), so every position of every contig has a
value: a bigWig reader reads back exactly the store's row, not "no data", and a region's mean in
deeptools or pyBigWig's `stats` counts uncovered bases as 0, as `summarize` does.

`bin_size` N > 1 writes the mean of each N positions (the last bin of a contig: the mean of the
positions it has), then merges equal bins. Normalisation is per position, as `extract_region`:
CPM = value / (library size / 1e6), RPKM = CPM x 1000.

Precision: bigWig stores 32-bit floats. Depths up to 2^24 (16,777,216) are exact; normalised
values and bin means are rounded to the nearest float32 (relative error below 6e-8), so two
neighbouring runs may read back as the same float32. bedGraph is text and writes each value as
the shortest decimal that reads back as the same float64 (whole depths as integers).

Each block of the sample's row is decoded once, `threads` spans ahead of the writer. The
track is written as `engine.outputs` says (`-`: stdout; a file is renamed into place when
complete).
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from bamstore.engine.outputs import (
    file_name_problem,
    file_output,
    output_target,
    refuse_inside_store,
    resolve_links,
)
from bamstore.errors import InputError, QueryError
from bamstore.extras import require_extra
from bamstore.query import chunks
from bamstore.query.blacklist import Blacklist, open_blacklist
from bamstore.query.normalise import Scaling, scaling
from bamstore.query.reduce import Intervals
from bamstore.query.regions import BedInput
from bamstore.query.source import CoverageSource, check_normalise, check_strand

FORMATS = ("bigwig", "bedgraph")
SPAN_CHUNKS = 4  # chunks of a row read at a time (16 MiB of values at 1 Mi positions)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    sample: str
    contigs: list[str]
    runs: int  # entries written
    bin_size: int
    normalise: str | None
    strand: str | None
    blocks_read: int


@dataclass(frozen=True)
class Runs:
    """Runs of equal value on one contig: [start, end) positions and their value."""

    start: np.ndarray
    end: np.ndarray
    value: np.ndarray  # uint32 depths at bin size 1 without normalisation, else float64


MaskOf = Callable[[int, int], np.ndarray]  # [start, stop) -> blacklisted positions (bool)


def _units(
    source: CoverageSource,
    row: int,
    array: str,
    length: int,
    bin_size: int,
    threads: int,
    mask_of: MaskOf | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(index of the first unit, values) windows along a contig: positions at bin size 1, else
    bin means (of the positions outside the blacklist, `mask_of`: NaN when none is left); each
    block decoded once, up to `threads` spans read ahead of the writer."""
    span = SPAN_CHUNKS * source.chunk_len
    carry = np.zeros(0, dtype=np.uint32)
    carry_mask = np.zeros(0, dtype=bool)
    first_unit = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        ahead: list[tuple[int, int, Future[np.ndarray]]] = []
        next_start = 0
        while next_start < length or ahead:
            while next_start < length and len(ahead) < threads + 1:
                stop = min(length, next_start + span)
                future = pool.submit(source.read, array, [row], next_start, stop)
                ahead.append((next_start, stop, future))
                next_start = stop
            start, stop, future = ahead.pop(0)
            block = future.result()[0]
            if bin_size == 1:
                yield first_unit, block
                first_unit += len(block)
                continue
            values = np.concatenate([carry, block]) if len(carry) else block
            masked = None
            if mask_of is not None:
                masked = np.concatenate([carry_mask, mask_of(start, stop)])
            whole = len(values) // bin_size * bin_size
            if whole:
                part = None if masked is None else masked[:whole]
                yield first_unit, _bin_means(values[:whole], part, bin_size)
                first_unit += whole // bin_size
            carry = values[whole:]
            if masked is not None:
                carry_mask = masked[whole:]
    if bin_size > 1 and len(carry):
        yield first_unit, _bin_means(carry, carry_mask if mask_of else None, len(carry))


def _bin_means(values: np.ndarray, masked: np.ndarray | None, bin_size: int) -> np.ndarray:
    """The mean of each `bin_size` values, of the unmasked ones when `masked` is given (NaN
    for a bin with none)."""
    if masked is None:
        return values.reshape(-1, bin_size).sum(axis=1, dtype=np.int64) / bin_size
    kept = np.where(masked, 0, values).reshape(-1, bin_size).sum(axis=1, dtype=np.int64)
    counts = (~masked).reshape(-1, bin_size).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, kept / np.maximum(counts, 1), np.nan)


def contig_runs(
    source: CoverageSource,
    row: int,
    array: str,
    length: int,
    bin_size: int,
    threads: int,
    mask_of: MaskOf | None = None,
) -> Iterator[Runs]:
    """Maximal runs of equal value along one contig, in order, a batch per chunk.

    The last run of a window is held back until the next window shows whether it goes on.
    """
    held_start, held_value = 0, None
    for first_unit, values in _units(source, row, array, length, bin_size, threads, mask_of):
        change = np.flatnonzero(values[1:] != values[:-1]) + 1
        starts = np.concatenate([[0], change]) + first_unit
        vals = values[np.concatenate([[0], change])]
        if held_value is not None and vals[0] == held_value:
            starts[0] = held_start  # the held run continues into this window
        elif held_value is not None:
            starts = np.concatenate([[held_start], starts])
            vals = np.concatenate([[held_value], vals])
        ends = np.concatenate([starts[1:], [first_unit + len(values)]])
        if len(starts) > 1:
            yield Runs(starts[:-1] * bin_size, np.minimum(ends[:-1] * bin_size, length), vals[:-1])
        held_start, held_value = int(starts[-1]), vals[-1]
    if held_value is not None:
        yield Runs(np.array([held_start * bin_size]), np.array([length]), np.asarray([held_value]))


def outside(runs: Runs, blacklist: Blacklist, contig_index: int) -> Runs:
    """The parts of `runs` outside the blacklist, each with its run's value."""
    n = len(runs.start)
    pieces = blacklist.cut(
        Intervals(
            np.full(n, contig_index, dtype=np.int64),
            runs.start.astype(np.int64),
            runs.end.astype(np.int64),
        )
    )
    return Runs(pieces.intervals.start, pieces.intervals.end, runs.value[pieces.owner])


BIGWIG_MAGIC = 0x888FFC26
RTREE_MAGIC = 0x2468ACE0  # the start of every R-tree index of a bigWig


def bigwig_is_whole(path: Path) -> bool:
    """Whether the bigWig at `path` holds its header and the index of its data and of every
    zoom level: pyBigWig reports a failed write (a full disk, a file size limit) only on its
    stderr, and leaves a file cut short without them."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(64)
        if len(head) < 64:
            return False
        magic, _, zooms, _, _, index = struct.unpack_from("<IHHQQQ", head)
        levels = fh.read(24 * zooms)
        if magic != BIGWIG_MAGIC or len(levels) < 24 * zooms:
            return False
        offsets = [index] + [struct.unpack_from("<IIQQ", levels, 24 * i)[3] for i in range(zooms)]
        for offset in offsets:
            if not 0 < offset <= size - 48:
                return False
            fh.seek(offset)
            if struct.unpack("<I", fh.read(4))[0] != RTREE_MAGIC:
                return False
    return True


class _BigWig:
    """pyBigWig's writer. A failed write (a full disk, a file size limit) is a RuntimeError
    without its reason, or at close only a line on pyBigWig's stderr (`bigwig_is_whole` finds
    that one); either becomes one error naming the output, `label`."""

    def __init__(self, path: Path, contigs: Sequence[tuple[str, int]], label: str):
        require_extra("bigwig", "bamstore export --format bigwig", "pyBigWig")
        import pyBigWig

        self.path, self.label = path, label
        with self._writing():
            self._bw: Any = pyBigWig.open(str(path), "w")
            self._bw.addHeader([(c, int(n)) for c, n in contigs])

    def failed(self) -> InputError:
        return InputError(
            self.label,
            "cannot be written: pyBigWig's write failed (no room, or a file size limit); "
            "nothing was written there",
            "free space or raise the file size limit (ulimit -f), or choose another output",
        )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except RuntimeError:
            raise self.failed() from None

    def write(self, contig: str, runs: Runs) -> None:
        with self._writing():
            self._bw.addEntries(
                [contig] * len(runs.start),
                runs.start.astype(np.int64),
                ends=runs.end.astype(np.int64),
                values=runs.value.astype(np.float64),
            )

    def close(self) -> None:
        self._bw.close()


class _BedGraph:
    def __init__(self, path: Path, contigs: Sequence[tuple[str, int]]):
        self._fh: IO[str] = path.open("w", encoding="utf-8", newline="\n")

    def write(self, contig: str, runs: Runs) -> None:
        fmt = str if runs.value.dtype.kind in "iu" else repr
        self._fh.write(
            "".join(
                f"{contig}\t{s}\t{e}\t{fmt(v)}\n"
                for s, e, v in zip(
                    runs.start.tolist(), runs.end.tolist(), runs.value.tolist(), strict=True
                )
            )
        )

    def close(self) -> None:
        self._fh.close()


def export_track(
    source: CoverageSource,
    sample: str | int,
    out: str | os.PathLike[str],
    *,
    fmt: str = "bigwig",
    normalise: str | None = None,
    effective_genome_size: float | None = None,
    blacklist: BedInput | Blacklist | None = None,
    bin_size: int = 1,
    chromosomes: Sequence[str] | str | None = None,
    strand: str | None = None,
    skip_zeros: bool = False,
    threads: int = 1,
) -> ExportResult:
    """Write one sample's track to `out`; see the module docstring for what is written."""
    plan = _plan(
        source,
        [sample],
        fmt,
        normalise,
        effective_genome_size,
        blacklist,
        bin_size,
        chromosomes,
        strand,
        skip_zeros,
        threads,
    )
    return plan.write(0, out, threads)


def export_tracks(
    source: CoverageSource,
    samples: Sequence[str | int] | str | None,
    folder: str | os.PathLike[str],
    *,
    fmt: str = "bigwig",
    normalise: str | None = None,
    effective_genome_size: float | None = None,
    blacklist: BedInput | Blacklist | None = None,
    bin_size: int = 1,
    chromosomes: Sequence[str] | str | None = None,
    strand: str | None = None,
    skip_zeros: bool = False,
    threads: int = 1,
) -> list[ExportResult]:
    """One track per sample, `folder/<sample>.bw` (or `.bedGraph`), `threads` samples at a time.

    `samples`: names, a comma-separated list, or "all" (None: all). Sample names come from the
    store, which may have been made elsewhere: a name that is not one file name inside `folder`
    is refused, naming it, before anything is written; so is a file there that leads outside
    it (a symlink). Every choice is checked before the first track is written; each track is
    written as `engine.outputs` says (a failure leaves the tracks already written, and nothing
    of the one that failed).
    """
    chosen = None if samples is None or samples == "all" else samples
    plan = _plan(
        source,
        chosen,
        fmt,
        normalise,
        effective_genome_size,
        blacklist,
        bin_size,
        chromosomes,
        strand,
        skip_zeros,
        threads,
    )
    targets = _track_paths(source, plan, Path(os.fspath(folder)))
    per_track = max(1, threads // max(1, len(targets)))
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(targets)))) as pool:
        futures = [pool.submit(plan.write, i, path, per_track) for i, path in enumerate(targets)]
        return [f.result() for f in futures]


SUFFIXES = {"bigwig": ".bw", "bedgraph": ".bedGraph"}


def _track_paths(source: CoverageSource, plan: _Plan, folder: Path) -> list[Path]:
    """folder/<sample><suffix> of each planned sample, every one checked (the folder is made
    if it is missing and its parent exists)."""
    suffix = SUFFIXES[plan.fmt]
    names = [source.sample_names[r] for r in plan.rows]
    for name in names:
        problem = file_name_problem(name, suffix)
        if problem is not None:
            raise QueryError(
                source.label,
                f"sample {name!r} cannot name a file in {folder}: {problem}",
                "export it alone with --sample NAME -o FILE",
            )
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "is not a folder", "give a folder for the tracks (-o DIR)")
    if not folder.exists():
        if not folder.absolute().parent.is_dir():
            raise InputError(folder, "its parent folder does not exist", "create it first")
        refuse_inside_store(os.fspath(folder), resolve_links(folder))
        folder.mkdir()
    real = resolve_links(folder)
    refuse_inside_store(os.fspath(folder), real)
    paths = [folder / f"{name}{suffix}" for name in names]
    for path in paths:
        target = output_target(path)
        if target.path is not None and target.path.parent != real:
            raise InputError(
                path, f"leads outside {folder} (to {target.path})", "remove it, or choose -o DIR"
            )
    return paths


@dataclass(frozen=True)
class _Plan:
    """What a track is written from, checked once: rows, contigs, arrays and scaling."""

    source: CoverageSource
    fmt: str
    rows: list[int]
    contigs: list[str]
    arrays: dict[str, str]
    method: str | None
    scaling: Scaling | None
    blacklist: Blacklist | None
    bin_size: int
    strand: str | None
    skip_zeros: bool

    def write(self, i: int, out: str | os.PathLike[str], threads: int) -> ExportResult:
        """Write the track of the plan's i-th row to `out`."""
        source, row = self.source, self.rows[i]
        factor = None if self.scaling is None else self.scaling.at(i)
        index = {c: k for k, c in enumerate(source.chromsizes)}
        blacklist = self.blacklist
        first_block = chunks.blocks_decoded()
        written = 0
        with file_output(out) as staged:
            chroms = [(c, source.chromsizes[c]) for c in self.contigs]
            writer: _BigWig | _BedGraph = (
                _BigWig(staged, chroms, os.fspath(out))
                if self.fmt == "bigwig"
                else _BedGraph(staged, chroms)
            )
            try:
                for contig in self.contigs:
                    length = source.chromsizes[contig]
                    mask_of = None
                    if blacklist is not None and self.bin_size > 1:
                        mask_of = functools.partial(blacklist.mask, contig)
                    runs_of = contig_runs(
                        source, row, self.arrays[contig], length, self.bin_size, threads, mask_of
                    )
                    for runs in runs_of:
                        if blacklist is not None:
                            runs = outside(runs, blacklist, index[contig])
                        if self.skip_zeros:
                            keep = runs.value != 0
                            runs = Runs(runs.start[keep], runs.end[keep], runs.value[keep])
                        if factor is not None:
                            times, over = factor
                            value = runs.value * times / over
                            if self.method == "rpkm":
                                value = value * 1000
                            runs = Runs(runs.start, runs.end, value)
                        if len(runs.start):
                            writer.write(contig, runs)
                            written += len(runs.start)
            finally:
                writer.close()
            if isinstance(writer, _BigWig) and not bigwig_is_whole(staged):
                raise writer.failed()
        return ExportResult(
            path=Path(out),
            format=self.fmt,
            sample=source.sample_names[row],
            contigs=self.contigs,
            runs=written,
            bin_size=self.bin_size,
            normalise=self.method,
            strand=self.strand,
            blocks_read=chunks.blocks_decoded() - first_block,
        )


def _plan(
    source: CoverageSource,
    samples: Sequence[str | int] | None,
    fmt: str,
    normalise: str | None,
    effective_genome_size: float | None,
    blacklist: BedInput | Blacklist | None,
    bin_size: int,
    chromosomes: Sequence[str] | str | None,
    strand: str | None,
    skip_zeros: bool,
    threads: int,
) -> _Plan:
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise QueryError(None, f"unknown format {fmt!r}", f"use {' or '.join(FORMATS)}")
    if int(bin_size) < 1:
        raise QueryError(None, f"--bin must be >= 1, not {bin_size}")
    method = check_normalise(normalise)
    strand = check_strand(strand)
    rows = source.rows(samples, strand)
    contigs = source.chosen_contigs(chromosomes)
    arrays = {c: source.array_name(c, strand) for c in contigs}
    listed = open_blacklist(blacklist, source.chromsizes)
    how = scaling(
        source, rows, method, genome_size=effective_genome_size, blacklist=listed, threads=threads
    )
    return _Plan(
        source,
        fmt,
        rows,
        contigs,
        arrays,
        method,
        how,
        listed,
        int(bin_size),
        strand,
        skip_zeros,
    )
