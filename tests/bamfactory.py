"""The one BAM factory of the tests: BAMs from explicit read specs or seeded random reads
(pysam), BAMs re-blocked as htsjdk writes them, and the coverage oracles.

Every BAM a test needs is generated here, in the test's tmp dir (larger simulated BAMs come from
`bamstore.simulate.make_bam`). The oracles are independent of bamstore's kernels: `samtools
depth` for read coverage, and for the fragment and cut-site modes plain numpy over pysam's
records (`mode_oracle`), cross-checked in turn against `bedtools genomecov`
(`bedtools_genomecov`).
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam

Contigs = Sequence[tuple[str, int]]
CONTIGS: list[tuple[str, int]] = [("chr1", 2000), ("chr2", 1500)]
EDGE_CONTIGS = [("c1", 1000), ("c2", 300), ("c3", 50)]
RANDOM_CONTIGS = [("chr1", 30_000), ("chr2", 12_000), ("chr3", 700)]
PAIR_F1R2 = 0x1 | 0x2 | 0x40 | 0x20  # read 1, forward, mate reverse
PAIR_F2R1 = 0x1 | 0x2 | 0x80 | 0x10  # read 2, reverse


@dataclass(frozen=True)
class Read:
    """One alignment record; `pos` is 0-based, `cigar` a string or (op, length) tuples.

    contig=None writes an unplaced record; seq=False stores no sequence ('*'). Paired records
    get the mate position `mate_pos` (default: their own) and TLEN `tlen`.
    """

    contig: str | None
    pos: int
    cigar: str | tuple[tuple[int, int], ...] | None = "50M"
    flag: int = 0
    mapq: int = 60
    seq: bool = True
    name: str | None = None
    tlen: int = 0
    mate_pos: int | None = None


def bam_header(contigs: Contigs, sort_order: str | None = "coordinate") -> dict:
    """`sort_order` is what the header claims (@HD SO), which need not be true."""
    hd: dict[str, str] = {"VN": "1.6", **({"SO": sort_order} if sort_order else {})}
    return {"HD": hd, "SQ": [{"SN": n, "LN": int(length)} for n, length in contigs]}


def _segment(hdr: pysam.AlignmentHeader, read: Read, i: int) -> pysam.AlignedSegment:
    seg = pysam.AlignedSegment(hdr)
    seg.query_name = read.name or f"r{i}"
    seg.flag = read.flag
    seg.reference_id = -1 if read.contig is None else hdr.get_tid(read.contig)
    seg.reference_start = -1 if read.contig is None else read.pos
    if isinstance(read.cigar, str):
        seg.cigarstring = read.cigar
    elif read.cigar is not None:
        seg.cigartuples = list(read.cigar)
    seg.mapping_quality = read.mapq
    if read.seq:
        n = (seg.infer_query_length() or 0) if read.cigar else 10
        seg.query_sequence = ("ACGT" * (n // 4 + 1))[:n]
        seg.query_qualities = pysam.qualitystring_to_array("I" * n)
    if read.flag & 0x1 and read.contig is not None:
        seg.next_reference_id = seg.reference_id
        seg.next_reference_start = read.pos if read.mate_pos is None else read.mate_pos
    seg.template_length = read.tlen
    return seg


def write_bam(
    path: Path,
    reads: Iterable[Read],
    contigs: Contigs,
    *,
    index: bool = True,
    sort_order: str | None = "coordinate",
    sort: bool = True,
) -> Path:
    """A BAM of `reads` (sorted by contig order, unplaced last, then position, unless
    sort=False), indexed unless index=False."""
    order = {n: i for i, (n, _) in enumerate(contigs)}
    items = list(reads)
    if sort:
        items.sort(key=lambda r: (order[r.contig] if r.contig else len(order), r.pos))
    with pysam.AlignmentFile(str(path), "wb", header=bam_header(contigs, sort_order)) as out:
        for i, read in enumerate(items):
            out.write(_segment(out.header, read, i))
    if index:
        pysam.index(str(path))
    return Path(path)


def write_unaligned_bam(path: Path) -> Path:
    """A BAM whose header has no @SQ line, holding one unmapped read (an unaligned BAM)."""
    with pysam.AlignmentFile(str(path), "wb", header={"HD": {"VN": "1.6"}}) as fh:
        seg = pysam.AlignedSegment(fh.header)
        seg.query_name, seg.flag, seg.query_sequence = "r1", 4, "ACGT"
        fh.write(seg)
    return path


def samtools_depth(
    bam: Path,
    contigs: Contigs,
    *,
    min_mapq: int = 0,
    exclude_flags: int = 0x704,
    count_deletions: bool = False,
    reference: Path | None = None,
) -> dict[str, np.ndarray]:
    """`samtools depth -aa` (pysam's bundled samtools) as arrays over [0, length) per contig.

    `-g 0x704 -G flags` sets the filter to exactly `flags`, plus unmapped (0x4): bamstore never
    counts unmapped records, whatever the flags. Positions samtools prints past a contig's end
    (it does not clip reads there) are dropped.
    """
    args = ["-aa", "-g", "0x704", "-G", hex(exclude_flags | 0x4), "-Q", str(min_mapq)]
    if count_deletions:
        args.append("-J")
    if reference is not None:
        args += ["--reference", str(reference)]
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


def random_reads(seed: int, n: int, contigs: Contigs = CONTIGS, read_len: int = 60) -> list[Read]:
    """Plain reads with a few spliced, deleted and filtered ones; deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    cigars = [f"{read_len}M", f"10S{read_len - 10}M", "20M2D20M", "15M100N25M", "30M5I25M"]
    flags = [0, 0, 0, 16, 16, 0x400, 0x100, 99, 147]
    out = []
    for i in range(n):
        name, length = contigs[int(rng.integers(len(contigs)))]
        out.append(
            Read(
                name,
                int(rng.integers(0, max(1, length - 200))),
                cigars[int(rng.integers(len(cigars)))],
                flag=flags[int(rng.integers(len(flags)))],
                mapq=int(rng.integers(0, 61)),
                name=f"q{i}",
            )
        )
    return out


BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _bgzf_block(payload: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = comp.compress(payload) + comp.flush()
    bsize = 12 + 6 + len(data) + 8 - 1
    head = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00"
    return (
        head
        + struct.pack("<H", bsize)
        + data
        + struct.pack("<II", zlib.crc32(payload), len(payload))
    )


def reblock(src: Path, dst: Path, sizes: Sequence[int], *, index: bool = True) -> Path:
    """Re-compress `src` into BGZF blocks of the given uncompressed sizes (cycled).

    htslib starts a new block rather than split a record (unless it is over 64 KiB); htsjdk
    (Picard) splits records anywhere. This makes the second kind of file.
    """
    data = gzip.decompress(Path(src).read_bytes())
    out = bytearray()
    pos = i = 0
    while pos < len(data):
        n = max(1, min(sizes[i % len(sizes)], 65280))
        out += _bgzf_block(data[pos : pos + n])
        pos += n
        i += 1
    Path(dst).write_bytes(bytes(out) + BGZF_EOF)
    if index:
        pysam.index(str(dst))
    return Path(dst)


# CIGAR operations that consume the reference: M, D, N, =, X.
_REFERENCE_OPS = {0, 2, 3, 7, 8}


def _transcript_sense(flag: int, rule: str) -> bool:
    """QuantNado's strand rules, written out: True puts the record on the `_fwd` array."""
    reverse = bool(flag & 0x10)
    if rule == "U":
        return not reverse
    read1, read2 = bool(flag & 0x40), bool(flag & 0x80)
    if flag & 0x1:
        forward_pair = (read1 and not reverse) or (read2 and reverse)
        reverse_pair = (read1 and reverse) or (read2 and not reverse)
        return forward_pair if rule == "F" else reverse_pair
    return not reverse if rule == "F" else reverse


@dataclass
class ModeOracle:
    """Expected coverage and counts of one BAM in the fragments or cutsites mode."""

    total: dict[str, np.ndarray]
    fwd: dict[str, np.ndarray]
    rev: dict[str, np.ndarray]
    total_reads: int = 0
    clipped: int = 0
    improper_pair_records: int = 0
    off_contig_cut_sites: int = 0
    single_end_records: int = 0
    outside_fragment_len: int = 0


def _fragment_len_problem(flag: int, tlen: int, low: int, high: int | None) -> str | None:
    """Why a fragment-length filter [low, high] leaves a record out (the counter it adds to),
    or None: only records of proper pairs with low <= |TLEN| <= high count."""
    if not flag & 0x1:
        return "single_end_records"
    if not flag & 0x2 or tlen == 0:
        return "improper_pair_records"
    if not low <= abs(tlen) <= (high if high is not None else abs(tlen)):
        return "outside_fragment_len"
    return None


def mode_oracle(
    bam: Path,
    contigs: Contigs,
    mode: str,
    *,
    extend: int | None = None,
    shift: tuple[int, int] = (4, -5),
    exclude_flags: int = 0x704,
    min_mapq: int = 0,
    strand: str = "",
    fragment_len: tuple[int | None, int | None] | None = None,
) -> ModeOracle:
    """Fragment or cut-site coverage per contig, straight from the counting modes' rules
    (docs/building.md).

    Each counted record (primary, passing the filter, starting on a kept contig) adds 1 to a
    slice of a per-contig array: no windows, no difference arrays, nothing shared with the
    kernels. `strand` (U, F, R) also splits the counts into fwd/rev by QuantNado's rules.
    `fragment_len` (min, max; None: unbounded) counts only proper pairs with min <= |TLEN| <=
    max (min None: 1), before anything else is looked at.
    """
    lengths = dict(contigs)

    def zeros() -> dict[str, np.ndarray]:
        return {name: np.zeros(length, dtype=np.int64) for name, length in contigs}

    out = ModeOracle(zeros(), zeros(), zeros())
    with pysam.AlignmentFile(str(bam)) as inp:
        for rec in inp.fetch(until_eof=True):
            flag = rec.flag
            if flag & 0x4 or rec.reference_name not in lengths:
                continue
            if flag & (exclude_flags | 0x900) or rec.mapping_quality < min_mapq:
                continue
            if fragment_len is not None:
                low, high = fragment_len
                why = _fragment_len_problem(flag, rec.template_length, low or 1, high)
                if why is not None:
                    setattr(out, why, getattr(out, why) + 1)
                    continue
            length = lengths[rec.reference_name]
            start = rec.reference_start
            if start >= length:
                out.clipped += 1  # counts nowhere, warned like a read past the end
                continue
            out.total_reads += 1
            span = sum(n for op, n in rec.cigartuples or () if op in _REFERENCE_OPS)
            end = start + span
            where: slice | None
            if mode == "fragments":
                if flag & 0x1:
                    if not flag & 0x2 or rec.template_length == 0:
                        out.improper_pair_records += 1
                        continue
                    if rec.template_length < 0:
                        continue
                    first, last = start, start + rec.template_length
                elif extend is None:
                    first, last = start, end
                elif flag & 0x10:
                    first, last = end - extend, end
                else:
                    first, last = start, start + extend
                if last > length and last > max(first, 0):
                    out.clipped += 1
                where = slice(max(first, 0), min(last, length))
            elif mode == "cutsites":
                site = end - 1 + shift[1] if flag & 0x10 else start + shift[0]
                if not 0 <= site < length:
                    out.off_contig_cut_sites += 1
                    continue
                where = slice(site, site + 1)
            else:
                raise ValueError(mode)
            name = rec.reference_name
            out.total[name][where] += 1
            if strand:
                target = out.fwd if _transcript_sense(flag, strand) else out.rev
                target[name][where] += 1
    return out


def bedtools_genomecov(bam: Path, contigs: Contigs, *options: str) -> dict[str, np.ndarray]:
    """`bedtools genomecov -ibam BAM -d OPTIONS` as arrays over [0, length) per contig."""
    text = subprocess.run(
        ["bedtools", "genomecov", "-ibam", str(bam), "-d", *options],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    out = {name: np.zeros(length, dtype=np.int64) for name, length in contigs}
    for line in text.splitlines():
        name, pos, depth = line.split("\t")
        if name in out:
            out[name][int(pos) - 1] = int(depth)
    return out
