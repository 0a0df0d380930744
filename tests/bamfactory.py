"""Write small BAMs from explicit read specs (pysam), and the samtools-depth oracle.

Shared by the tests: every BAM a test needs is generated here, in the test's tmp dir.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam

Contigs = Sequence[tuple[str, int]]


@dataclass(frozen=True)
class Read:
    """One alignment record; `pos` is the 0-based leftmost reference position."""

    contig: str
    pos: int
    cigar: str
    flag: int = 0
    mapq: int = 60
    name: str = "r"
    with_sequence: bool = True


def _segment(read: Read, tids: dict[str, int], i: int) -> pysam.AlignedSegment:
    seg = pysam.AlignedSegment()
    seg.query_name = f"{read.name}{i}"
    seg.flag = read.flag
    seg.reference_id = tids[read.contig]
    seg.reference_start = read.pos
    seg.mapping_quality = read.mapq
    seg.cigarstring = read.cigar
    length = seg.infer_query_length() or 0
    if read.with_sequence and length:
        seg.query_sequence = ("ACGT" * (length // 4 + 1))[:length]
        seg.query_qualities = pysam.qualitystring_to_array("I" * length)
    if read.flag & 0x1:
        seg.next_reference_id = tids[read.contig]
        seg.next_reference_start = read.pos
    return seg


def write_bam(
    path: Path,
    contigs: Contigs,
    reads: Iterable[Read],
    *,
    index: bool = True,
    sort_order: str | None = "coordinate",
    sort: bool = True,
) -> Path:
    """A BAM of `reads` (sorted by contig order and position unless sort=False).

    `sort_order` is what the header claims (@HD SO), which need not be true.
    """
    header: dict = {"SQ": [{"SN": n, "LN": length} for n, length in contigs]}
    header["HD"] = {"VN": "1.6", **({"SO": sort_order} if sort_order else {})}
    tids = {n: i for i, (n, _) in enumerate(contigs)}
    items = list(reads)
    if sort:
        items.sort(key=lambda r: (tids[r.contig], r.pos))
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, read in enumerate(items):
            out.write(_segment(read, tids, i))
    if index:
        pysam.index(str(path))
    return Path(path)


def samtools_depth(
    bam: Path,
    contigs: Contigs,
    *,
    min_mapq: int = 0,
    exclude_flags: int = 0x704,
    count_deletions: bool = False,
) -> dict[str, np.ndarray]:
    """`samtools depth -aa` (pysam's bundled samtools) as arrays over [0, length) per contig.

    `-g 0x704 -G flags` sets the filter to exactly `flags`; positions samtools prints past a
    contig's end (it does not clip reads there) are dropped.
    """
    args = ["-aa", "-g", "0x704", "-G", str(exclude_flags), "-Q", str(min_mapq)]
    if count_deletions:
        args.append("-J")
    out = {name: np.zeros(length, dtype=np.int64) for name, length in contigs}
    for line in pysam.depth(*args, str(bam)).splitlines():
        name, pos, depth = line.split("\t")
        if name in out and int(pos) <= len(out[name]):
            out[name][int(pos) - 1] = int(depth)
    return out


def subset_bam(
    src: Path, dst: Path, keep: Callable[[pysam.AlignedSegment], bool], *, index: bool = True
) -> Path:
    """The records of `src` for which keep(record) is true (used for the strand oracle)."""
    with (
        pysam.AlignmentFile(str(src)) as inp,
        pysam.AlignmentFile(str(dst), "wb", template=inp) as out,
    ):
        for read in inp.fetch(until_eof=True):
            if keep(read):
                out.write(read)
    if index:
        pysam.index(str(dst))
    return Path(dst)


def count_library(
    bam: Path, kept: Contigs, *, min_mapq: int = 0, exclude_flags: int = 0x704
) -> int:
    """Independent count of our library size: primary records passing the filter that start
    inside a kept contig."""
    lengths = dict(kept)
    n = 0
    with pysam.AlignmentFile(str(bam)) as inp:
        for read in inp.fetch(until_eof=True):
            if read.is_unmapped or read.reference_name not in lengths:
                continue
            if read.flag & exclude_flags or read.flag & 0x900 or read.mapping_quality < min_mapq:
                continue
            if read.reference_start < lengths[read.reference_name]:
                n += 1
    return n
