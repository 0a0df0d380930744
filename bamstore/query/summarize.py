"""`bamstore summarize`: one value per BED region and sample (multiBigwigSummary BED-file).

Rows come out in input order, one per BED line, as `chrom start end name` then one column per
sample. The BED is read in batches (`batch_size`, about 127,000 regions for 8 samples), so the
working set depends on the batch and the samples, not on the length of the BED (measured peak
RSS still creeps up by about 8 MiB per 100,000 regions past one batch: benchmarks/README.md).
Within a batch the regions are sorted and reduced from the blosc blocks they cover (`reduce`):
each block is decoded once per batch, so a BED sorted by position decodes each block about once
however long it is; an unsorted BED longer than one batch may decode a block once per batch that
touches it.

Statistics over a region's positions [start, end): `mean`, `sum`, `max`, `min` of the per-base
depth. Normalisation (library size = `metadata/total_reads`, as `extract_region`):
  - `cpm`: value / (library size / 1e6);
  - `rpkm`: the CPM per kilobase of what the value covers: a `sum` covers the region, so it is
    divided by the region's length in kb; `mean`, `max` and `min` are per position (1 bp =
    0.001 kb), so they are multiplied by 1000, which is `extract_region`'s per-position RPKM and
    what deeptools reports for an RPKM bigWig at bin size 1. (So RPKM of the sum equals RPKM of
    the mean: both are the region's depth per kb per million reads.)
A zero-length region has sum 0 (NaN as RPKM) and NaN mean, max and min; a zero library size
gives NaN.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from bamstore.engine.outputs import file_output
from bamstore.errors import QueryError
from bamstore.query.reduce import Intervals, Reducer
from bamstore.query.regions import (
    BedInput,
    BedRegion,
    Skipped,
    batched,
    bed_label,
    outside_store,
    read_bed,
)
from bamstore.query.source import CoverageSource, check_normalise, check_strand

if TYPE_CHECKING:
    import pandas as pd

STATS = ("mean", "sum", "max", "min")
BATCH_BYTES = 32 * 2**20  # per batch: results (8 B per sample) plus ~250 B per region
WRITE_ROWS = 8192  # rows formatted and written at a time
HEADER = ("chrom", "start", "end", "name")


@dataclass
class Summary:
    """A running summarize: `batches()` yields (regions, values) in input order."""

    source: CoverageSource
    bed: BedInput
    stat: str
    normalise: str | None
    strand: str | None
    rows: list[int]
    skip_missing: bool
    threads: int
    batch_size: int
    skipped: Skipped = field(default_factory=Skipped)
    blocks_read: int = 0

    @property
    def samples(self) -> list[str]:
        return [self.source.sample_names[r] for r in self.rows]

    @property
    def integral(self) -> bool:
        """Whether every value is a whole number (printed without a decimal point)."""
        return self.stat != "mean" and self.normalise is None

    def batches(self) -> Iterator[tuple[list[BedRegion], np.ndarray]]:
        source = self.source
        label = bed_label(self.bed)
        contigs = list(source.chromsizes)
        index = {name: i for i, name in enumerate(contigs)}
        arrays = [source.array_name(c, self.strand) for c in contigs]
        reducer = Reducer(source, self.rows, self.threads)
        first_block = reducer.blocks_decoded
        per_million = source.per_million(self.rows, self.normalise)
        how = "sum" if self.stat in ("mean", "sum") else self.stat
        for batch in batched(read_bed(self.bed), self.batch_size):
            kept: list[BedRegion] = []
            for region in batch:
                problem = outside_store(region, source.chromsizes, label, None)
                if problem is None:
                    kept.append(region)
                elif self.skip_missing:
                    self.skipped.add(*problem)
                else:
                    raise problem[0]
            if not kept:
                continue
            intervals = Intervals(
                np.fromiter((index[r.chrom] for r in kept), np.int64, len(kept)),
                np.fromiter((r.start for r in kept), np.int64, len(kept)),
                np.fromiter((r.end for r in kept), np.int64, len(kept)),
            )
            values = reducer.reduce(arrays, intervals, how)
            length = (intervals.end - intervals.start).astype(np.float64)[:, None]
            if self.stat == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    values = values / length
            if per_million is not None:
                values = values / per_million[None, :]
                if self.normalise == "rpkm":
                    with np.errstate(invalid="ignore", divide="ignore"):
                        values = values / (length / 1000) if self.stat == "sum" else values * 1000
            self.blocks_read = reducer.blocks_decoded - first_block
            yield kept, values
        self.skipped.warn(label)


def summarize(
    source: CoverageSource,
    bed: BedInput,
    *,
    stat: str = "mean",
    normalise: str | None = None,
    samples: Sequence[str | int] | str | None = None,
    strand: str | None = None,
    skip_missing: bool = False,
    threads: int = 1,
    batch_size: int | None = None,
) -> Summary:
    """Check the choices and return the `Summary` to run (nothing is read yet)."""
    if stat not in STATS:
        raise QueryError(None, f"unknown statistic {stat!r}", f"use {', '.join(STATS)}")
    method = check_normalise(normalise)
    strand = check_strand(strand)
    rows = source.rows(samples, strand)
    if strand is not None:
        source.array_name(next(iter(source.chromsizes)), strand)  # refuse a store without them
    source.per_million(rows, method)  # refuse normalising a store without library sizes
    if batch_size is None:
        batch_size = max(1024, BATCH_BYTES // (8 * len(rows) + 200))
    return Summary(
        source, bed, stat, method, strand, rows, skip_missing, max(1, threads), batch_size
    )


def to_frame(summary: Summary) -> pd.DataFrame:
    """The whole summary as a DataFrame: chrom, start, end, name, then one column per sample."""
    import pandas as pd  # here: the command line writes TSV and never needs it

    parts: list[pd.DataFrame] = []
    for regions, values in summary.batches():
        frame = pd.DataFrame(
            {
                "chrom": [r.chrom for r in regions],
                "start": np.fromiter((r.start for r in regions), np.int64, len(regions)),
                "end": np.fromiter((r.end for r in regions), np.int64, len(regions)),
                "name": [r.name for r in regions],
            }
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
    return ["\t".join(map(repr, row)) for row in values.tolist()]


def write_tsv(summary: Summary, out: str | os.PathLike[str]) -> int:
    """Write the summary as TSV to `out` (`-`: stdout); returns the rows written.

    Written as `engine.outputs` says, so a bad BED line found late leaves no partial table
    (nothing on stdout, and an earlier file of that name survives); `out` may not be the BED.
    """
    with (
        file_output(out, inputs=[summary.bed]) as staged,
        staged.open("w", encoding="utf-8", newline="\n") as fh,
    ):
        return _write_rows(summary, fh)


def _write_rows(summary: Summary, fh: IO[str]) -> int:
    fh.write("\t".join([*HEADER, *summary.samples]) + "\n")
    written = 0
    for regions, values in summary.batches():
        for at in range(0, len(regions), WRITE_ROWS):
            part = regions[at : at + WRITE_ROWS]
            cells = _format_values(values[at : at + WRITE_ROWS], summary.integral)
            fh.write(
                "".join(
                    f"{r.chrom}\t{r.start}\t{r.end}\t{r.name}\t{v}\n"
                    for r, v in zip(part, cells, strict=True)
                )
            )
        written += len(regions)
    return written


def summarize_frame(source: CoverageSource, bed: BedInput, **options: Any) -> pd.DataFrame:
    """`BamStore.summarize`: the summary of `bed` (a path, `-` or a DataFrame) as a DataFrame."""
    return to_frame(summarize(source, bed, **options))
