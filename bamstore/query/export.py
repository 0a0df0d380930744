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
import os
import struct
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from bamstore.engine.outputs import file_output
from bamstore.errors import InputError, QueryError
from bamstore.extras import require_extra
from bamstore.query import chunks
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


def _units(
    source: CoverageSource, row: int, array: str, length: int, bin_size: int, threads: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(index of the first unit, values) windows along a contig: positions at bin size 1, else
    bin means; each block decoded once, up to `threads` spans read ahead of the writer."""
    span = SPAN_CHUNKS * source.chunk_len
    carry = np.zeros(0, dtype=np.uint32)
    first_unit = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        ahead: list[Future[np.ndarray]] = []
        next_start = 0
        while next_start < length or ahead:
            while next_start < length and len(ahead) < threads + 1:
                stop = min(length, next_start + span)
                ahead.append(pool.submit(source.read, array, [row], next_start, stop))
                next_start = stop
            block = ahead.pop(0).result()[0]
            if bin_size == 1:
                yield first_unit, block
                first_unit += len(block)
                continue
            values = np.concatenate([carry, block]) if len(carry) else block
            whole = len(values) // bin_size * bin_size
            if whole:
                sums = values[:whole].reshape(-1, bin_size).sum(axis=1, dtype=np.int64)
                yield first_unit, sums / bin_size
                first_unit += whole // bin_size
            carry = values[whole:]
    if bin_size > 1 and len(carry):
        yield first_unit, np.array([carry.sum(dtype=np.int64) / len(carry)])


def contig_runs(
    source: CoverageSource, row: int, array: str, length: int, bin_size: int, threads: int
) -> Iterator[Runs]:
    """Maximal runs of equal value along one contig, in order, a batch per chunk.

    The last run of a window is held back until the next window shows whether it goes on.
    """
    held_start, held_value = 0, None
    for first_unit, values in _units(source, row, array, length, bin_size, threads):
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
    bin_size: int = 1,
    chromosomes: Sequence[str] | str | None = None,
    strand: str | None = None,
    skip_zeros: bool = False,
    threads: int = 1,
) -> ExportResult:
    """Write one sample's track to `out`; see the module docstring for what is written."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise QueryError(None, f"unknown format {fmt!r}", f"use {' or '.join(FORMATS)}")
    if int(bin_size) < 1:
        raise QueryError(None, f"--bin must be >= 1, not {bin_size}")
    method = check_normalise(normalise)
    strand = check_strand(strand)
    rows = source.rows([sample], strand)
    contigs = _chosen_contigs(source, chromosomes)
    arrays = {c: source.array_name(c, strand) for c in contigs}
    per_million = source.per_million(rows, method)
    scale = None if per_million is None else float(per_million[0])
    first_block = chunks.blocks_decoded()
    written = 0
    with file_output(out) as staged:
        chroms = [(c, source.chromsizes[c]) for c in contigs]
        writer: _BigWig | _BedGraph = (
            _BigWig(staged, chroms, os.fspath(out))
            if fmt == "bigwig"
            else _BedGraph(staged, chroms)
        )
        try:
            for contig in contigs:
                length = source.chromsizes[contig]
                runs_of = contig_runs(
                    source, rows[0], arrays[contig], length, int(bin_size), threads
                )
                for runs in runs_of:
                    if skip_zeros:
                        keep = runs.value != 0
                        runs = Runs(runs.start[keep], runs.end[keep], runs.value[keep])
                    if scale is not None:
                        value = runs.value / scale * (1000 if method == "rpkm" else 1)
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
        format=fmt,
        sample=source.sample_names[rows[0]],
        contigs=contigs,
        runs=written,
        bin_size=int(bin_size),
        normalise=method,
        strand=strand,
        blocks_read=chunks.blocks_decoded() - first_block,
    )


def _chosen_contigs(source: CoverageSource, chromosomes: Sequence[str] | str | None) -> list[str]:
    """The store's contigs, or the chosen ones in the store's order."""
    if chromosomes is None:
        return list(source.chromsizes)
    wanted = (
        [c.strip() for c in chromosomes.split(",") if c.strip()]
        if isinstance(chromosomes, str)
        else list(chromosomes)
    )
    unknown = [c for c in wanted if c not in source.chromsizes]
    if unknown:
        raise QueryError(
            source.label,
            f"has no contig {', '.join(map(repr, unknown))}",
            f"choose from {', '.join(source.chromsizes)}",
        )
    if not wanted:
        raise QueryError(None, "--chromosomes lists no contig")
    return [c for c in source.chromsizes if c in wanted]
