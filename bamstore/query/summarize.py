"""`bamstore summarize`: one value per BED region and sample (multiBigwigSummary BED-file), or per
bin of N bp over every stored contig (`bins`, multiBigwigSummary bins).

Rows come out in input order, one per BED line, as `chrom start end name` then one column per
sample; with `bins`, one row per bin (name `.`), contigs in the store's order, bins starting at
0 and the last one of a contig shorter. The BED is read in batches (`batch_size`, about 127,000
regions for 8 samples), so the working set depends on the batch and the samples, not on the
length of the BED (measured peak RSS still creeps up by about 8 MiB per 100,000 regions past one
batch: benchmarks/README.md). Within a batch the regions are sorted and reduced from the blosc
blocks they cover (`reduce`): each block is decoded once per batch, so a BED sorted by position
decodes each block about once however long it is; an unsorted BED longer than one batch may
decode a block once per batch that touches it.

Statistics over a region's positions [start, end): `mean`, `sum`, `max`, `min` of the per-base
depth. With a blacklist they are taken over the region's positions outside it (`blacklist`),
and are NaN, every one, when none is left. Normalisation (cpm, rpkm, bpm, rpgc, scale) scales
each sample's values (`normalise`); `rpkm` is then per kilobase of what the value covers: a
`sum` covers the region's (kept) positions, so it is divided by their number in kb; `mean`,
`max` and `min` are per position (1 bp = 0.001 kb), so they are multiplied by 1000, which is
`extract_region`'s per-position RPKM and what deeptools reports for an RPKM bigWig at bin size 1.
(So RPKM of the sum equals RPKM of the mean: both are the region's depth per kb per million
reads.) A zero-length region has sum 0 (NaN as RPKM) and NaN mean, max and min.

A BED line the store cannot answer (a contig it lacks, past a contig's end) is an error, or
left out (`missing="skip"`), or written with NaN values (`missing="nan"`, so rows match lines).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from bamstore.engine.outputs import file_output
from bamstore.errors import QueryError
from bamstore.query.blacklist import Blacklist, open_blacklist, reduce_kept
from bamstore.query.normalise import Scaling, scaling
from bamstore.query.reduce import Intervals, Reducer
from bamstore.query.regions import (
    MISSING_CONTIG,
    MISSING_VERBS,
    BedInput,
    BedRegion,
    Skipped,
    batched,
    bed_label,
    outside_store,
    read_bed,
    resolve_missing,
)
from bamstore.query.source import CoverageSource, check_normalise, check_strand

if TYPE_CHECKING:
    import pandas as pd

STATS = ("mean", "sum", "max", "min")
BATCH_BYTES = 32 * 2**20  # per batch: results (8 B per sample) plus ~250 B per region
WRITE_ROWS = 8192  # rows formatted and written at a time
HEADER = ("chrom", "start", "end", "name")


@dataclass(frozen=True)
class RegionBlock:
    """Consecutive output rows: contig, start, end and name of each."""

    chroms: list[str]
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64
    names: list[str]

    def __len__(self) -> int:
        return len(self.starts)

    @classmethod
    def of(cls, regions: Sequence[BedRegion]) -> RegionBlock:
        n = len(regions)
        return cls(
            [r.chrom for r in regions],
            np.fromiter((r.start for r in regions), np.int64, n),
            np.fromiter((r.end for r in regions), np.int64, n),
            [r.name for r in regions],
        )


@dataclass
class Summary:
    """A running summarize: `batches()` yields (rows, values) in output order."""

    source: CoverageSource
    bed: BedInput | None  # None: bins
    stat: str
    normalise: str | None
    strand: str | None
    rows: list[int]
    missing: str
    threads: int
    batch_size: int
    scaling: Scaling | None = None
    blacklist: Blacklist | None = None
    bin_size: int | None = None
    contigs: list[str] = field(default_factory=list)  # bins: the contigs binned
    skipped: Skipped = field(default_factory=Skipped)
    blocks_read: int = 0

    @property
    def samples(self) -> list[str]:
        return [self.source.sample_names[r] for r in self.rows]

    @property
    def integral(self) -> bool:
        """Whether every value is a whole number (printed without a decimal point)."""
        return self.stat != "mean" and self.normalise is None

    @property
    def inputs(self) -> list[Any]:
        """The files this summary reads (an output must not be one of them)."""
        blacklist = None if self.blacklist is None else self.blacklist.label
        return [x for x in (self.bed, blacklist) if x is not None]

    def batches(self) -> Iterator[tuple[RegionBlock, np.ndarray]]:
        source = self.source
        contigs = list(source.chromsizes)
        index = {name: i for i, name in enumerate(contigs)}
        arrays = [source.array_name(c, self.strand) for c in contigs]
        reducer = Reducer(source, self.rows, self.threads)
        first_block = reducer.blocks_decoded
        blocks = self._bins() if self.bed is None else self._bed_blocks()
        for block, answered in blocks:
            values = np.full((len(block), len(self.rows)), np.nan)
            if answered.any():
                where = np.flatnonzero(answered)
                intervals = Intervals(
                    np.fromiter((index[block.chroms[i]] for i in where), np.int64, len(where)),
                    block.starts[where],
                    block.ends[where],
                )
                values[where] = self._values(reducer, arrays, intervals)
            self.blocks_read = reducer.blocks_decoded - first_block
            yield block, values
        if self.bed is not None:
            self.skipped.warn(bed_label(self.bed), source.chromsizes)

    def _values(self, reducer: Reducer, arrays: list[str], intervals: Intervals) -> np.ndarray:
        how = "sum" if self.stat in ("mean", "sum") else self.stat
        values, kept = reduce_kept(reducer, arrays, intervals, how, self.blacklist)
        kept = kept.astype(np.float64)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.stat == "mean":
                values = values / kept
            if self.blacklist is not None:
                length = (intervals.end - intervals.start)[:, None]
                values = np.where((kept == 0) & (length > 0), np.nan, values)
            if self.scaling is not None:
                values = self.scaling.apply(values, axis=1)
                if self.normalise == "rpkm":
                    values = values / (kept / 1000) if self.stat == "sum" else values * 1000
        return values

    def _bed_blocks(self) -> Iterator[tuple[RegionBlock, np.ndarray]]:
        """Batches of BED lines, with which of them the store can answer."""
        label = bed_label(self.bed)
        chromsizes = self.source.chromsizes
        for batch in batched(read_bed(self.bed), self.batch_size):
            out: list[BedRegion] = []
            answered: list[bool] = []
            for region in batch:
                problem = outside_store(region, chromsizes, label, None)
                if problem is None:
                    out.append(region)
                    answered.append(True)
                    self.skipped.answered += 1
                elif self.missing == "error":
                    raise problem[0]
                else:
                    missing_contig = problem[1] == MISSING_CONTIG
                    self.skipped.add(*problem, region.chrom if missing_contig else None)
                    if self.missing == "nan":
                        out.append(region)
                        answered.append(False)
            if out:
                yield RegionBlock.of(out), np.asarray(answered, dtype=bool)

    def _bins(self) -> Iterator[tuple[RegionBlock, np.ndarray]]:
        """Bins of `bin_size` over the chosen contigs, `batch_size` at a time."""
        assert self.bin_size is not None
        size = self.bin_size
        for contig in self.contigs:
            length = self.source.chromsizes[contig]
            for first in range(0, length, size * self.batch_size):
                starts = np.arange(
                    first, min(length, first + size * self.batch_size), size, dtype=np.int64
                )
                ends = np.minimum(starts + size, length)
                block = RegionBlock([contig] * len(starts), starts, ends, ["."] * len(starts))
                yield block, np.ones(len(starts), dtype=bool)


def summarize(
    source: CoverageSource,
    bed: BedInput | None = None,
    *,
    bins: int | None = None,
    chromosomes: Sequence[str] | str | None = None,
    stat: str = "mean",
    normalise: str | None = None,
    effective_genome_size: float | None = None,
    blacklist: BedInput | Blacklist | None = None,
    samples: Sequence[str | int] | str | None = None,
    strand: str | None = None,
    missing: str | None = None,
    skip_missing: bool = False,
    threads: int = 1,
    batch_size: int | None = None,
) -> Summary:
    """Check the choices and return the `Summary` to run (only the normalisation's scaling
    is read yet). Give `bed` (a path, `-` or a DataFrame) or `bins` (N bp, over `chromosomes`
    or every contig). `missing`: "error" (default), "skip" or "nan"; `skip_missing` is "skip"."""
    if stat not in STATS:
        raise QueryError(None, f"unknown statistic {stat!r}", f"use {', '.join(STATS)}")
    if (bed is None) == (bins is None):
        raise QueryError(None, "give either --bed or --bins", "regions from a BED, or bins of N bp")
    if bins is not None and (isinstance(bins, bool) or int(bins) < 1):
        raise QueryError(None, f"--bins must be >= 1, not {bins}")
    if bed is not None and chromosomes is not None:
        raise QueryError(None, "--chromosomes applies to --bins", "leave it out with --bed")
    mode = resolve_missing(missing, skip_missing)
    method = check_normalise(normalise)
    strand = check_strand(strand)
    rows = source.rows(samples, strand)
    if strand is not None:
        source.array_name(next(iter(source.chromsizes)), strand)  # refuse a store without them
    contigs = source.chosen_contigs(chromosomes) if bins is not None else []
    listed = open_blacklist(blacklist, source.chromsizes)
    how = scaling(
        source,
        rows,
        method,
        genome_size=effective_genome_size,
        blacklist=listed,
        threads=threads,
    )
    if batch_size is None:
        batch_size = max(1024, BATCH_BYTES // (8 * len(rows) + 200))
    return Summary(
        source,
        bed,
        stat,
        method,
        strand,
        rows,
        mode,
        max(1, threads),
        batch_size,
        scaling=how,
        blacklist=listed,
        bin_size=None if bins is None else int(bins),
        contigs=contigs,
        skipped=Skipped(how=MISSING_VERBS[mode]),
    )


def to_frame(summary: Summary) -> pd.DataFrame:
    """The whole summary as a DataFrame: chrom, start, end, name, then one column per sample."""
    import pandas as pd  # here: the command line writes TSV and never needs it

    parts: list[pd.DataFrame] = []
    for block, values in summary.batches():
        frame = pd.DataFrame(
            {"chrom": block.chroms, "start": block.starts, "end": block.ends, "name": block.names}
        )
        frame[summary.samples] = values
        parts.append(frame)
    if not parts:
        columns = [*HEADER, *summary.samples]
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    out = pd.concat(parts, ignore_index=True)
    out.attrs["skipped"] = summary.skipped.count
    return out


def _format_values(values: np.ndarray, integral: bool) -> list[str]:
    """Tab-joined values per row: whole numbers as integers, others as the shortest text that
    reads back as the same float64; NaN as `nan`."""
    if integral and not np.isnan(values).any():
        return ["\t".join(map(str, row)) for row in values.astype(np.int64).tolist()]
    if integral:  # rows written as NaN (--missing nan) among whole numbers
        return ["\t".join(str(int(v)) if v == v else "nan" for v in row) for row in values.tolist()]
    return ["\t".join(map(repr, row)) for row in values.tolist()]


def write_tsv(summary: Summary, out: str | os.PathLike[str]) -> int:
    """Write the summary as TSV to `out` (`-`: stdout); returns the rows written.

    Written as `engine.outputs` says, so a bad BED line found late leaves no partial table
    (nothing on stdout, and an earlier file of that name survives); `out` may not be one of
    the inputs (the BED, the blacklist).
    """
    with (
        file_output(out, inputs=summary.inputs) as staged,
        staged.open("w", encoding="utf-8", newline="\n") as fh,
    ):
        return _write_rows(summary, fh)


def _write_rows(summary: Summary, fh: IO[str]) -> int:
    fh.write("\t".join([*HEADER, *summary.samples]) + "\n")
    written = 0
    for block, values in summary.batches():
        for at in range(0, len(block), WRITE_ROWS):
            stop = at + WRITE_ROWS
            cells = _format_values(values[at:stop], summary.integral)
            fh.write(
                "".join(
                    f"{c}\t{s}\t{e}\t{n}\t{v}\n"
                    for c, s, e, n, v in zip(
                        block.chroms[at:stop],
                        block.starts[at:stop].tolist(),
                        block.ends[at:stop].tolist(),
                        block.names[at:stop],
                        cells,
                        strict=True,
                    )
                )
            )
        written += len(block)
    return written


def summarize_frame(
    source: CoverageSource, bed: BedInput | None = None, **options: Any
) -> pd.DataFrame:
    """`BamStore.summarize`: the summary of `bed` (a path, `-` or a DataFrame), or of `bins`, as
    a DataFrame."""
    return to_frame(summarize(source, bed, **options))
