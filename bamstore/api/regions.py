"""Region strings and coordinates, exactly as QuantNado reads them.

`parse_region` follows QuantNado's `utils.parse_genomic_region` rule for rule, so the same
string selects the same positions in both tools; `resolve_region` checks a region against a
store's contigs. A bad region is bad input: `QueryError` (a ValueError, as QuantNado's) or
`ArgumentTypeError` (a TypeError), with QuantNado's messages.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bamstore import layout
from bamstore.errors import ArgumentTypeError, QueryError


def parse_region(region: str) -> tuple[str, int | None, int | None]:
    """(contig, start, end) of a region string; start and end None for a whole contig.

    Every comma is dropped; `chr1` is the whole contig; `chr1:S-E` is 0-based start S and
    exclusive end E, i.e. the Python slice [S:E] (`chr1:1,000-2,000` is 1,000 positions, index
    1000 = 1-based position 1,001); the split is at the last '-'; S, E >= 0 and E >= S (E == S:
    no positions, as a zero-length BED line; QuantNado refuses those).
    """
    text = region.replace(",", "")
    if ":" not in text:
        return text, None, None
    invalid = f"Invalid region format: {text}. Expected 'chr:start-end' or 'chr'."
    parts = text.split(":")
    if len(parts) != 2:
        raise QueryError(None, invalid)
    chrom, coords = parts
    dash = coords.rfind("-")
    if dash <= 0:
        raise QueryError(None, invalid)
    try:
        start, end = int(coords[:dash]), int(coords[dash + 1 :])
    except ValueError:
        raise QueryError(None, invalid) from None
    if start < 0 or end < 0:
        raise QueryError(None, f"Coordinates must be non-negative: {text}")
    if end < start:
        raise QueryError(None, f"End coordinate must not be less than start: {text}")
    return chrom, start, end


def format_region(chrom: str, start: int, end: int) -> str:
    """The region string that `parse_region` reads back as (chrom, start, end)."""
    return f"{chrom}:{start:,}-{end:,}"


def resolve_region(
    chromsizes: Mapping[str, int],
    region: str | None = None,
    chrom: str | None = None,
    start: int | None = None,
    end: int | None = None,
    *,
    subject: str | None = None,
) -> tuple[str, int, int]:
    """(contig, start, end) of a region string or of chrom/start/end (0-based, end exclusive),
    checked against the contigs and lengths of a store; `subject` (the store) starts the
    message of a region the store does not have."""
    if region is not None and chrom is not None:
        raise QueryError(None, "Specify either 'region' or 'chrom', not both")
    if region is not None:
        chrom, parsed_start, parsed_end = parse_region(region)
        if parsed_start is not None:
            start, end = parsed_start, parsed_end
    if chrom is None:
        raise QueryError(None, "Must specify either 'region' or 'chrom'")
    if chrom not in chromsizes:
        hint = ""
        base = chrom.removesuffix(layout.FWD_SUFFIX).removesuffix(layout.REV_SUFFIX)
        if base != chrom and base in chromsizes:
            hint = f" (for strand coverage use chrom='{base}' with strand='+' or '-')"
        raise QueryError(
            subject, f"Chromosome '{chrom}' not in store{hint}. Available: {sorted(chromsizes)}"
        )
    size = chromsizes[chrom]
    try:  # integers only (numpy ones too): a float would silently round
        start = 0 if start is None else operator.index(start)
        end = size if end is None else operator.index(end)
    except TypeError:
        raise ArgumentTypeError(
            None, f"start and end must be integers, got {start!r} and {end!r}"
        ) from None
    if start < 0:
        raise QueryError(subject, f"Start position must be >= 0, got {start}")
    if end > size:
        raise QueryError(subject, f"End position {end} exceeds chromosome size {size} for {chrom}")
    if end < start:
        raise QueryError(subject, f"End position {end} must not be less than start {start}")
    return chrom, start, end


# ---------------------------------------------------------------------------- many regions


@dataclass(frozen=True)
class RegionTable:
    """Regions of one width, checked against a store: contig names and 0-based starts, in the
    caller's order."""

    chrom: np.ndarray  # object (str)
    start: np.ndarray  # int64
    width: int
    names: np.ndarray | None = None  # a BED's 4th column, when read from one

    def __len__(self) -> int:
        return len(self.start)

    def by_contig(self) -> dict[str, np.ndarray]:
        """Row indices of the regions on each contig, in the order they first appear."""
        out: dict[str, list[int]] = {}
        for i, contig in enumerate(self.chrom.tolist()):
            out.setdefault(contig, []).append(i)
        return {c: np.asarray(rows, dtype=np.int64) for c, rows in out.items()}

    def frame(self) -> Any:
        import pandas as pd

        frame = pd.DataFrame(
            {"chrom": self.chrom, "start": self.start, "end": self.start + self.width}
        )
        if self.names is not None:
            frame["name"] = self.names
        return frame


@dataclass(frozen=True)
class RegionBatch:
    """One batch of `BamStore.iter_regions`: its regions (chrom, start, end[, name]) and their
    coverage, regions x samples x width."""

    regions: Any  # pandas DataFrame
    values: np.ndarray
    samples: list[str]


def region_table(regions: Any, chromsizes: Mapping[str, int]) -> RegionTable:
    """The regions of a DataFrame (chrom, start, end, else its first three columns), of
    (chrom, start, end) tuples or of region strings, checked against the store; one width."""
    chroms: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    if hasattr(regions, "columns"):
        columns = list(regions.columns)
        picked = ["chrom", "start", "end"] if {"chrom", "start", "end"} <= set(columns) else None
        if picked is None:
            if len(columns) < 3:
                raise QueryError(
                    None, f"regions has {len(columns)} column(s); need chrom, start, end"
                )
            picked = columns[:3]
        rows: Any = zip(*(regions[c].tolist() for c in picked), strict=True)
    else:
        rows = regions
    for item in rows:
        if isinstance(item, str):
            chrom, start, end = resolve_region(chromsizes, item)
        else:
            try:
                chrom, start, end = item
            except (TypeError, ValueError):
                raise ArgumentTypeError(
                    None, f"a region must be a string or (chrom, start, end), got {item!r}"
                ) from None
            chrom, start, end = resolve_region(chromsizes, None, str(chrom), start, end)
        chroms.append(chrom)
        starts.append(start)
        ends.append(end)
    return _one_width(chroms, starts, ends, None)


def _one_width(
    chroms: list[str], starts: list[int], ends: list[int], names: list[str] | None
) -> RegionTable:
    start = np.asarray(starts, dtype=np.int64)
    widths = np.asarray(ends, dtype=np.int64) - start
    if len(widths) and np.any(widths != widths[0]):
        other = int(np.flatnonzero(widths != widths[0])[0])
        raise QueryError(
            None,
            f"regions differ in width: region 0 has {int(widths[0])} positions, region "
            f"{other} has {int(widths[other])}",
            "give regions of one width (e.g. windows centred on each site), or use "
            "extract_region for each",
        )
    return RegionTable(
        np.asarray(chroms, dtype=object),
        start,
        int(widths[0]) if len(widths) else 0,
        None if names is None else np.asarray(names, dtype=object),
    )


def region_batches(
    regions: Any, chromsizes: Mapping[str, int], batch_size: int
) -> Iterator[RegionTable]:
    """`region_table`s of at most `batch_size` regions, in order; a BED path (or "-") is read
    lazily, line by line, every line checked as `summarize` checks it."""
    if isinstance(regions, str | os.PathLike):
        from bamstore.query.regions import batched, bed_label, outside_store, read_bed

        label = bed_label(regions)
        width: int | None = None
        for batch in batched(read_bed(regions), batch_size):
            for region in batch:
                problem = outside_store(region, chromsizes, label, None)
                if problem is not None:
                    raise problem[0]
                if width is None:
                    width = region.end - region.start
                elif region.end - region.start != width:
                    raise QueryError(
                        f"{label} line {region.line}",
                        f"has {region.end - region.start} positions where the lines before it "
                        f"have {width}",
                        "give lines of one width",
                    )
            yield _one_width(
                [r.chrom for r in batch],
                [r.start for r in batch],
                [r.end for r in batch],
                [r.name for r in batch],
            )
        return
    table = region_table(regions, chromsizes)
    for at in range(0, len(table), batch_size):
        part = slice(at, at + batch_size)
        yield RegionTable(table.chrom[part], table.start[part], table.width)
