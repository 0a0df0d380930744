"""BED input for the queries: parsed line by line, every problem named by its line number.

BED is 0-based and end-exclusive (`chr1 100 200` is the slice [100:200], as `extract_region`'s
`chr1:100-200`). Columns are tab-separated (a line with fewer than three tab-separated fields is
split on whitespace instead); the first three are chrom, start, end; the 4th is the name and the
6th the strand (`+`, `-` or `.`); further columns are allowed and ignored. Empty lines and
`#`, `track` and `browser` lines are skipped; `-` reads stdin; pipes and devices (`<(cmd)`,
/dev/stdin) are read like files; gzip input, recognised by its first bytes, is read as such (a
damaged or truncated one is an error naming the BED).

A line that cannot be a region (too few columns, a coordinate that is not a non-negative
integer, start > end, a strand other than + - .) is always an error. A region on a contig the
store lacks, or past a contig's end, is an error too unless the caller skips such lines
(`--missing skip`, alias `--skip-missing`) or writes them as NaN (`--missing nan`); either is
counted for one warning. When the contig is in the store under the other naming style (`1`
against `chr1`, `MT` against `chrM`), the message says so.

Zero-length regions (start == end, e.g. insertion points) are valid BED: `profile` only needs
their reference point, and `summarize` gives them sum 0 and NaN for mean, max and min.
"""

from __future__ import annotations

import gzip
import io
import itertools
import logging
import os
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bamstore.errors import QueryError

log = logging.getLogger(__name__)

STDIN = "-"
STDIN_LABEL = "<stdin>"
GZIP_MAGIC = b"\x1f\x8b"
SKIPPED_PREFIXES = ("#", "track", "browser")
STRANDS = ("+", "-", ".")
SKIP_FIX = "use the store's contig names and lengths, or --missing skip (or nan) for such lines"
MISSING_CHOICES = ("error", "skip", "nan")
MISSING_CONTIG = "on contigs the store lacks"
MISSING_VERBS = {"error": "skipped", "skip": "skipped", "nan": "wrote NaN for"}
BedInput = str | os.PathLike[str] | Any  # a path, "-" or a pandas DataFrame


@dataclass(frozen=True, slots=True)
class BedRegion:
    """One BED line: 0-based start, exclusive end."""

    line: int  # 1-based line number in the input (rows for a DataFrame)
    chrom: str
    start: int
    end: int
    name: str = "."
    strand: str = "."


def bed_label(bed: BedInput) -> str:
    """How messages name the input: its path, `<stdin>` or `regions`."""
    if isinstance(bed, str | os.PathLike):
        text = os.fspath(bed)
        return STDIN_LABEL if text == STDIN else str(text)
    return "regions"


class _Rejoined(io.RawIOBase):
    """A binary stream whose first bytes, read to sniff it, are put back in front: a pipe
    cannot seek back, so gzip is recognised without seeking."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._rest.close()
        super().close()


def _open_text(bed: str | os.PathLike[str]) -> IO[str]:
    """The BED as text: a file, a FIFO or device (`<(cmd)`, /dev/stdin) or `-`, gzip or not
    by its first two bytes (read, then put back, so streams work too)."""
    text = os.fspath(bed)
    if text == STDIN:
        raw: IO[bytes] = open(sys.stdin.fileno(), "rb", closefd=False)  # noqa: SIM115
    else:
        path = Path(text)
        if path.is_dir():
            raise QueryError(path, "is a folder, not a BED file", "check the path")
        try:
            raw = path.open("rb")
        except FileNotFoundError:
            raise QueryError(path, "BED file does not exist", "check the path") from None
    magic = raw.read(2)
    stream = io.BufferedReader(_Rejoined(magic, raw))
    if magic == GZIP_MAGIC:
        return io.TextIOWrapper(gzip.GzipFile(fileobj=stream), encoding="utf-8", errors="replace")
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace")


def _non_negative(text: str, what: str, where: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()):
        raise QueryError(
            where,
            f"{what} {text!r} is not a non-negative integer",
            "BED coordinates are 0-based whole numbers",
        )
    return int(value)


def parse_bed_line(text: str, line: int, label: str) -> BedRegion | None:
    """The region of one BED line, None for lines that hold none (blank, comment, header)."""
    raw = text.rstrip("\r\n")
    if not raw.strip() or raw.startswith(SKIPPED_PREFIXES):
        return None
    fields = raw.split("\t")
    if len(fields) < 3:
        fields = raw.split()
    where = f"{label} line {line}"
    if len(fields) < 3:
        raise QueryError(
            where,
            f"has {len(fields)} column(s); BED needs at least 3 (chrom, start, end)",
            "separate the columns with tabs",
        )
    chrom = sys.intern(fields[0].strip())  # one string per contig, not one per line
    start = _non_negative(fields[1], "start", where)
    end = _non_negative(fields[2], "end", where)
    if start > end:
        raise QueryError(
            where,
            f"start {start} is greater than end {end}",
            "BED is 0-based with the end exclusive: start <= end",
        )
    name = fields[3].strip() if len(fields) > 3 and fields[3].strip() else "."
    strand = fields[5].strip() if len(fields) > 5 and fields[5].strip() else "."
    if strand not in STRANDS:
        raise QueryError(where, f"strand {strand!r} is not +, - or .", "use +, - or .")
    return BedRegion(line, chrom, start, end, name, strand)


def read_bed(bed: BedInput) -> Iterator[BedRegion]:
    """The regions of a BED path (`-`: stdin) or DataFrame, in input order, parsed lazily."""
    if not isinstance(bed, str | os.PathLike):
        yield from _frame_regions(bed)
        return
    label = bed_label(bed)
    with _open_text(bed) as fh:
        lines = enumerate(fh, start=1)
        while True:
            try:
                number, text = next(lines)
            except StopIteration:
                return
            except EOFError:
                raise QueryError(
                    label,
                    "is truncated: its gzip data ends before the end of the stream",
                    "re-create or re-download it (gzip -t checks a file)",
                ) from None
            except (gzip.BadGzipFile, zlib.error):
                raise QueryError(
                    label,
                    "starts like gzip but cannot be decompressed: the file is damaged or not gzip",
                    "re-create it, or give the BED uncompressed (gzip -t checks a file)",
                ) from None
            region = parse_bed_line(text, number, label)
            if region is not None:
                yield region


def _frame_regions(frame: Any) -> Iterator[BedRegion]:
    """Rows of a DataFrame with columns chrom, start, end (else the first three), and
    optionally name and strand: row i is 'line' i + 1."""
    columns = list(frame.columns)
    if not {"chrom", "start", "end"} <= set(columns):
        if len(columns) < 3:
            raise QueryError("regions", f"has {len(columns)} column(s); need chrom, start, end")
        frame = frame.rename(columns=dict(zip(columns[:3], ("chrom", "start", "end"), strict=True)))
    has_name, has_strand = "name" in frame.columns, "strand" in frame.columns
    for i, row in enumerate(frame.itertuples(index=False), start=1):
        fields = [str(row.chrom), str(row.start), str(row.end)]
        fields.append(str(row.name) if has_name else ".")
        fields += [".", str(row.strand)] if has_strand else []
        region = parse_bed_line("\t".join(fields), i, "regions row")
        if region is not None:
            yield region


def check_missing(missing: str) -> str:
    """'error', 'skip' or 'nan': what to do with a BED line the store cannot answer."""
    if missing not in MISSING_CHOICES:
        raise QueryError(
            None, f"unknown --missing {missing!r}", f"use {', '.join(MISSING_CHOICES)}"
        )
    return missing


def resolve_missing(missing: str | None, skip_missing: bool) -> str:
    """--missing, with --skip-missing its alias for `skip`."""
    if skip_missing:
        if missing not in (None, "skip"):
            raise QueryError(
                None,
                f"--skip-missing and --missing {missing} disagree",
                "give one of them (--skip-missing is --missing skip)",
            )
        return "skip"
    return check_missing(missing or "error")


@dataclass
class Skipped:
    """BED lines outside the store left out (`--missing skip`) or written as NaN (`nan`):
    counted, the first one kept for the warning."""

    count: int = 0
    first: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    missing_contigs: dict[str, int] = field(default_factory=dict)
    answered: int = 0  # lines the store could answer
    how: str = "skipped"

    def add(self, error: QueryError, reason: str, chrom: str | None = None) -> None:
        """Count one line; `chrom`: its contig, when the store lacks it."""
        self.count += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if chrom is not None:
            self.missing_contigs[chrom] = self.missing_contigs.get(chrom, 0) + 1
        if self.first is None:
            self.first = f"{error.subject}: {error.problem}"

    def warn(self, label: str, chromsizes: Mapping[str, int]) -> None:
        if self.count:
            why = ", ".join(f"{n:,} {r}" for r, n in self.reasons.items())
            hint = ""
            if not self.answered and sum(self.missing_contigs.values()) == self.count:
                hint = naming_hint(list(self.missing_contigs), chromsizes)
            log.warning(
                "%s: %s %s BED line(s) outside the store (%s)%s; first: %s",
                label,
                self.how,
                f"{self.count:,}",
                why,
                hint,
                self.first,
            )


def other_style(chrom: str) -> list[str]:
    """The names of `chrom` in the other naming style (UCSC `chr1`, `chrM`; Ensembl `1`,
    `MT`)."""
    if chrom == "chrM":
        return ["MT", "M"]
    if chrom in ("MT", "M"):
        return ["chrM"]
    if chrom.startswith("chr") and len(chrom) > 3:
        return [chrom[3:]]
    return ["chr" + chrom]


def naming_hint(chroms: Iterable[str], chromsizes: Mapping[str, int]) -> str:
    """'; ...' saying that the store names these contigs in the other style, when every one of
    them is in the store under it; '' otherwise."""
    pairs = []
    for chrom in chroms:
        alt = next((a for a in other_style(chrom) if a in chromsizes), None)
        if alt is None:
            return ""
        pairs.append(f"{chrom!r} is {alt!r}")
    if not pairs:
        return ""
    shown = ", ".join(pairs[:3]) + (", ..." if len(pairs) > 3 else "")
    return f"; the store names contigs in the other style (there {shown})"


def outside_store(
    region: BedRegion, chromsizes: Mapping[str, int], label: str, span: tuple[int, int] | None
) -> tuple[QueryError, str] | None:
    """The error (and its kind) for a region the store cannot answer, None if it can.

    `span` is the interval actually read (a profile's window), default the region itself.
    """
    where = f"{label} line {region.line}"
    length = chromsizes.get(region.chrom)
    if length is None:
        shown = ", ".join(list(chromsizes)[:8]) + (", ..." if len(chromsizes) > 8 else "")
        hint = naming_hint([region.chrom], chromsizes)
        return (
            QueryError(
                where,
                f"contig {region.chrom!r} is not in the store (it has {shown}){hint}",
                SKIP_FIX,
            ),
            MISSING_CONTIG,
        )
    start, end = span if span is not None else (region.start, region.end)
    what = "window" if span is not None else "region"
    if start < 0:
        problem = f"{what} {region.chrom}:{start}-{end} starts before the start of {region.chrom}"
        kind = "before a contig's start"
    elif end > length:
        problem = (
            f"{what} {region.chrom}:{start}-{end} ends past the end of {region.chrom} "
            f"(length {length})"
        )
        kind = "past a contig's end"
    else:
        return None
    return QueryError(where, problem, SKIP_FIX), kind


def batched(items: Iterable[BedRegion], size: int) -> Iterator[list[BedRegion]]:
    """Consecutive lists of at most `size` regions (the last may be shorter)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
