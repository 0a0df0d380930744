"""`bamstore profile`: signal in bins around reference points (deeptools computeMatrix
reference-point), saved as a matrix (drawn as a heatmap by `bamstore.plot.heatmap`).

For each BED line the reference point is `start` on `+` or `.` and `end` on `-`. The window is
[start - U, start + D) on `+`/`.`, read left to right, and [end - D, end + U) on `-`, read right
to left, so bin 0 is always the most upstream; each bin is the mean over its B positions. U and
D must be multiples of B (otherwise a bin would straddle the reference point or hang off the
window; the command refuses and says which multiples are near). A window that leaves its
contig is an error naming the line, unless skipped (`--skip-missing`).

Normalisation is per position, as `extract_region`: CPM = mean / (library size / 1e6), RPKM =
CPM x 1000 (1 bp = 0.001 kb). The matrix is (samples x regions x bins) float64, regions in input
order; every bin is reduced from the blosc blocks it covers, each decoded once (`reduce`). The
matrix is the output and is held in memory (8 B x samples x regions x bins); the working memory
besides it does not grow with the number of regions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bamstore.engine.outputs import file_output
from bamstore.errors import QueryError
from bamstore.query.blacklist import Blacklist, open_blacklist, reduce_kept
from bamstore.query.normalise import scaling
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

# Values (8 B per bin and sample) reduced per batch. The batch's temporaries (sums, counts,
# means, their int64 and float64 forms in `Reducer`) are a few times this, so peak memory is
# the matrix plus ~50 MiB whatever the number of regions; smaller batches only add calls.
BATCH_BYTES = 8 * 2**20


@dataclass
class Profile:
    """A computed profile: `matrix[s, r, b]` is sample s, region r (input order), bin b."""

    matrix: np.ndarray
    samples: list[str]
    regions: np.ndarray  # structured: chrom, start, end, name, strand, line
    upstream: int
    downstream: int
    bin_size: int
    normalise: str | None
    strand: str | None
    store: str
    skipped: int = 0
    blocks_read: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bin_starts(self) -> np.ndarray:
        """Offset of each bin's first position from the reference point (upstream negative)."""
        return np.arange(-self.upstream, self.downstream, self.bin_size)

    def save_npz(self, out: str | os.PathLike[str]) -> Path:
        """matrix, samples, regions and the parameters, as one .npz (loads without pickle);
        written as `engine.outputs` says (`-`: stdout)."""
        with file_output(out) as staged, staged.open("wb") as fh:
            np.savez(
                fh,
                matrix=self.matrix,
                samples=np.asarray(self.samples, dtype=str),
                regions=self.regions,
                bin_starts=self.bin_starts,
                upstream=np.int64(self.upstream),
                downstream=np.int64(self.downstream),
                bin_size=np.int64(self.bin_size),
                normalise=np.str_(self.normalise or "none"),
                strand=np.str_(self.strand or "both"),
                reference_point=np.str_("start on + and ., end on -"),
                store=np.str_(self.store),
            )
        return Path(out)


def window(region: BedRegion, upstream: int, downstream: int) -> tuple[int, int]:
    """[lo, hi) read for a region: around start on + and ., around end on -."""
    if region.strand == "-":
        return region.end - downstream, region.end + upstream
    return region.start - upstream, region.start + downstream


def check_bins(upstream: int, downstream: int, bin_size: int) -> int:
    """The number of bins; refuses sizes that do not tile the window."""
    if upstream < 0 or downstream < 0:
        raise QueryError(None, "--upstream and --downstream must be >= 0")
    if bin_size < 1:
        raise QueryError(None, f"--bin must be >= 1, not {bin_size}")
    if upstream + downstream == 0:
        raise QueryError(None, "the window is empty", "give --upstream and/or --downstream > 0")
    for what, value in (("--upstream", upstream), ("--downstream", downstream)):
        if value % bin_size:
            below = value - value % bin_size
            raise QueryError(
                None,
                f"{what} {value} is not a multiple of --bin {bin_size} (a bin would straddle "
                "the reference point or hang off the window)",
                f"use {what} {below} or {below + bin_size}, or a --bin that divides both",
            )
    return (upstream + downstream) // bin_size


def profile(
    source: CoverageSource,
    bed: BedInput,
    *,
    upstream: int,
    downstream: int,
    bin_size: int,
    normalise: str | None = None,
    effective_genome_size: float | None = None,
    blacklist: BedInput | Blacklist | None = None,
    samples: Sequence[str | int] | str | None = None,
    strand: str | None = None,
    missing: str | None = None,
    skip_missing: bool = False,
    threads: int = 1,
) -> Profile:
    """The (samples x regions x bins) matrix of mean signal around each BED line's point."""
    n_bins = check_bins(upstream, downstream, bin_size)
    mode = resolve_missing(missing, skip_missing)
    method = check_normalise(normalise)
    strand = check_strand(strand)
    rows = source.rows(samples, strand)
    contigs = list(source.chromsizes)
    index = {name: i for i, name in enumerate(contigs)}
    arrays = [source.array_name(c, strand) for c in contigs]
    listed = open_blacklist(blacklist, source.chromsizes)
    how = scaling(
        source, rows, method, genome_size=effective_genome_size, blacklist=listed, threads=threads
    )
    reducer = Reducer(source, rows, threads)
    first_block = reducer.blocks_decoded
    label = bed_label(bed)
    skipped = Skipped(how=MISSING_VERBS[mode])
    kept: list[BedRegion] = []
    parts: list[np.ndarray] = []
    offsets = np.arange(n_bins, dtype=np.int64) * bin_size
    per_batch = max(1, BATCH_BYTES // (8 * n_bins * max(1, len(rows))))
    for batch in batched(read_bed(bed), per_batch):
        good: list[BedRegion] = []
        answered: list[bool] = []
        lows: list[int] = []
        for region in batch:
            lo, hi = window(region, upstream, downstream)
            problem = outside_store(region, source.chromsizes, label, (lo, hi))
            if problem is None:
                good.append(region)
                answered.append(True)
                lows.append(lo)
                skipped.answered += 1
            elif mode == "error":
                raise problem[0]
            else:
                skipped.add(*problem, region.chrom if problem[1] == MISSING_CONTIG else None)
                if mode == "nan":
                    good.append(region)
                    answered.append(False)
        if not good:
            continue
        means = np.full((len(good), n_bins, len(rows)), np.nan)
        where = np.flatnonzero(answered)
        if len(where):
            answering = [good[i] for i in where]
            lo_arr = np.asarray(lows, dtype=np.int64)
            minus = np.fromiter((r.strand == "-" for r in answering), bool, len(answering))
            # bin b of a + window starts at lo + b*B; of a - window at hi - (b+1)*B
            # = lo + (n-1-b)*B
            bin_offsets = np.where(minus[:, None], offsets[::-1][None, :], offsets[None, :])
            starts = (lo_arr[:, None] + bin_offsets).ravel()
            contig = np.repeat(
                np.fromiter((index[r.chrom] for r in answering), np.int64, len(answering)), n_bins
            )
            intervals = Intervals(contig, starts, starts + bin_size)
            sums, positions = reduce_kept(reducer, arrays, intervals, "sum", listed)
            with np.errstate(invalid="ignore", divide="ignore"):
                values = sums / positions.astype(np.float64)[:, None]
            if how is not None:
                values = how.apply(values, axis=1)
                if method == "rpkm":
                    values = values * 1000
            means[where] = values.reshape(len(answering), n_bins, len(rows))
        parts.append(np.ascontiguousarray(means.transpose(2, 0, 1)))
        del means
        kept += good
    skipped.warn(label, source.chromsizes)
    if len(parts) == 1:
        matrix = parts.pop()
    elif parts:
        matrix = np.concatenate(parts, axis=1)
        parts.clear()
    else:
        matrix = np.zeros((len(rows), 0, n_bins), np.float64)
    return Profile(
        matrix=matrix,
        samples=[source.sample_names[r] for r in rows],
        regions=region_table(kept),
        upstream=upstream,
        downstream=downstream,
        bin_size=bin_size,
        normalise=method,
        strand=strand,
        store=source.label,
        skipped=skipped.count,
        blocks_read=reducer.blocks_decoded - first_block,
    )


def region_table(regions: Sequence[BedRegion]) -> np.ndarray:
    """The regions as a structured array (chrom, start, end, name, strand, line)."""
    width_chrom = max((len(r.chrom) for r in regions), default=1)
    width_name = max((len(r.name) for r in regions), default=1)
    dtype = np.dtype(
        [
            ("chrom", f"U{width_chrom}"),
            ("start", np.int64),
            ("end", np.int64),
            ("name", f"U{width_name}"),
            ("strand", "U1"),
            ("line", np.int64),
        ]
    )
    table = np.empty(len(regions), dtype=dtype)
    for i, r in enumerate(regions):
        table[i] = (r.chrom, r.start, r.end, r.name, r.strand, r.line)
    return table
