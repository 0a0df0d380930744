"""Region strings and coordinates, exactly as QuantNado reads them.

`parse_region` follows QuantNado's `utils.parse_genomic_region` rule for rule, so the same
string selects the same positions in both tools; `resolve_region` checks a region against a
store's contigs. A bad region is bad input: `QueryError` (a ValueError, as QuantNado's) or
`ArgumentTypeError` (a TypeError), with QuantNado's messages.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

from bamstore import layout
from bamstore.errors import ArgumentTypeError, QueryError


def parse_region(region: str) -> tuple[str, int | None, int | None]:
    """(contig, start, end) of a region string; start and end None for a whole contig.

    Every comma is dropped; `chr1` is the whole contig; `chr1:S-E` is 0-based start S and
    exclusive end E, i.e. the Python slice [S:E] (`chr1:1,000-2,000` is 1,000 positions, index
    1000 = 1-based position 1,001); the split is at the last '-'; S, E >= 0 and E > S.
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
    if end <= start:
        raise QueryError(None, f"End coordinate must be greater than start: {text}")
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
    if end <= start:
        raise QueryError(subject, f"End position {end} must be greater than start {start}")
    return chrom, start, end
