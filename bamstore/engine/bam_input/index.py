"""The index an input is read through: found, checked against the file, or built in scratch.

Coverage is read contig by contig through the index, so an index that belongs to another file
gives wrong numbers or unreadable offsets, and the error would wrongly blame the BAM. Before
use, an index is therefore read here (BAI, CSI or CRAI, in plain Python: they are small) and
checked against its alignment file: the same number of contigs, and the first record each
contig's offsets point at must be a record of that contig. A mismatch names the index, never
the BAM. The same read gives the per-contig read counts that tell what a contig selection
leaves out. A missing or stale index is built into a scratch folder, never beside the input.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gzip
import logging
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pysam

from bamstore.engine.bam_input import fixes
from bamstore.engine.bam_input.header import AlignmentInput
from bamstore.engine.bam_input.sniff import AlignmentFormat
from bamstore.errors import InputError

log = logging.getLogger(__name__)

# BAI bins address positions below 2^29; longer contigs need a CSI index.
BAI_MAX_LENGTH = (1 << 29) - 1
_BAI_PSEUDO_BIN = 37450
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass
class IndexSummary:
    """What an index says about its file, per contig id."""

    kind: str  # "bai", "csi" or "crai"
    n_ref: int | None  # None for CRAI, which does not record it
    first_offset: dict[int, int] = field(default_factory=dict)  # BAM: virtual; CRAM: container
    mapped: dict[int, int | None] = field(default_factory=dict)  # contigs holding reads


class NotAnIndex(Exception):
    """The file is not an index of the expected kind; the message says what it is."""


def _bgzf_blocks(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise NotAnIndex("is not a readable index (damaged compressed data)") from exc


def _parse_bins(
    data: bytes, pos: int, tid: int, summary: IndexSummary, pseudo_bin: int, csi: bool
) -> int:
    (n_bin,) = struct.unpack_from("<i", data, pos)
    pos += 4
    first: int | None = None
    has_chunks = False
    for _ in range(n_bin):
        if csi:
            bin_id, _loffset, n_chunk = struct.unpack_from("<IQi", data, pos)
            pos += 16
        else:
            bin_id, n_chunk = struct.unpack_from("<Ii", data, pos)
            pos += 8
        chunks = struct.unpack_from(f"<{2 * n_chunk}Q", data, pos)
        pos += 16 * n_chunk
        if bin_id == pseudo_bin:
            if n_chunk >= 2:
                summary.mapped[tid] = chunks[2]  # (unmapped begin, end), (mapped, unmapped)
            continue
        if n_chunk:
            has_chunks = True
            begin = min(chunks[0::2])
            first = begin if first is None else min(first, begin)
    if first is not None:
        summary.first_offset[tid] = first
    if has_chunks and tid not in summary.mapped:
        summary.mapped[tid] = None  # an index without the counting pseudo-bin
    if summary.mapped.get(tid) == 0:
        del summary.mapped[tid]
    return pos


def read_index(path: Path, fmt: AlignmentFormat) -> IndexSummary:
    """Parse a BAI, CSI or CRAI; NotAnIndex says what else the file is.

    Cached by path, size and mtime: extraction reads the same index to check it and to count
    what a selection leaves out, and parsing a whole-genome BAI takes a noticeable fraction of
    a second in Python.
    """
    st = path.stat()
    return _read_index(str(path), st.st_size, st.st_mtime_ns, fmt)


@functools.lru_cache(maxsize=16)
def _read_index(path_text: str, _size: int, _mtime_ns: int, fmt: AlignmentFormat) -> IndexSummary:
    path = Path(path_text)
    raw = path.read_bytes()
    if raw[:4] == b"BAI\x01":
        if fmt != "bam":
            raise NotAnIndex("is a BAM index (.bai), but the input is CRAM")
        return _read_bai(raw)
    if raw[:2] != b"\x1f\x8b":
        raise NotAnIndex("is not a BAM or CRAM index (.bai, .csi or .crai)")
    data = _bgzf_blocks(raw)
    if data[:4] == b"CSI\x01":
        if fmt != "bam":
            raise NotAnIndex("is a CSI index, but the input is CRAM")
        return _read_csi(data)
    if data[:4] == b"BAM\x01":
        raise NotAnIndex("is a BAM file, not an index")
    if data[:1] == b"@":
        raise NotAnIndex("is SAM text, not an index")
    if fmt == "cram":
        return _read_crai(data)
    raise NotAnIndex("is not a BAM index (.bai or .csi)")


def _read_bai(data: bytes) -> IndexSummary:
    try:
        (n_ref,) = struct.unpack_from("<i", data, 4)
        summary = IndexSummary("bai", n_ref)
        pos = 8
        for tid in range(n_ref):
            pos = _parse_bins(data, pos, tid, summary, _BAI_PSEUDO_BIN, csi=False)
            (n_intv,) = struct.unpack_from("<i", data, pos)
            pos += 4 + 8 * n_intv
    except struct.error as exc:
        raise NotAnIndex("is a damaged or truncated BAM index") from exc
    return summary


def _read_csi(data: bytes) -> IndexSummary:
    try:
        _min_shift, depth, l_aux = struct.unpack_from("<iii", data, 4)
        pos = 16 + l_aux
        (n_ref,) = struct.unpack_from("<i", data, pos)
        pos += 4
        pseudo_bin = ((1 << ((depth + 1) * 3)) - 1) // 7 + 1
        summary = IndexSummary("csi", n_ref)
        for tid in range(n_ref):
            pos = _parse_bins(data, pos, tid, summary, pseudo_bin, csi=True)
    except struct.error as exc:
        raise NotAnIndex("is a damaged or truncated CSI index") from exc
    return summary


def _read_crai(data: bytes) -> IndexSummary:
    summary = IndexSummary("crai", None)
    try:
        for line in data.decode("ascii").splitlines():
            if not line.strip():
                continue
            ref_id, _start, _span, container, _slice, _size = (int(v) for v in line.split("\t"))
            if ref_id >= 0:
                summary.mapped[ref_id] = None
                summary.first_offset[ref_id] = min(
                    container, summary.first_offset.get(ref_id, container)
                )
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotAnIndex("is not a CRAM index (.crai)") from exc
    return summary


def _bgzf_block_at(fh, offset: int) -> bytes | None:
    fh.seek(offset)
    head = fh.read(18)
    if len(head) < 18 or head[:4] != b"\x1f\x8b\x08\x04" or head[12:14] != b"BC":
        return None
    (bsize,) = struct.unpack_from("<H", head, 16)
    rest = fh.read(bsize + 1 - 18)
    try:
        return zlib.decompressobj(-15).decompress(rest[:-8])
    except zlib.error:
        return None


def _bam_mismatch(alignment: AlignmentInput, summary: IndexSummary) -> str | None:
    """Why the index cannot be this BAM's, or None: every contig's first offset must land on
    a record of that contig."""
    size = alignment.path.stat().st_size
    blocks: dict[int, bytes | None] = {}
    with alignment.path.open("rb") as fh:
        for tid, voffset in sorted(summary.first_offset.items()):
            coffset, uoffset = voffset >> 16, voffset & 0xFFFF
            if coffset >= size:
                return "its offsets point past the end of the BAM"
            if coffset not in blocks:
                blocks[coffset] = _bgzf_block_at(fh, coffset)
            block = blocks[coffset]
            if block is None:
                return "its offsets point into the BAM where no compressed block starts"
            record = block[uoffset : uoffset + 8]
            if len(record) < 8:  # the record starts in the next block
                nxt = _bgzf_block_at(fh, coffset + _block_size(fh, coffset))
                record = (record + (nxt or b""))[:8]
            if len(record) < 8 or struct.unpack_from("<i", record, 4)[0] != tid:
                name = alignment.contigs[tid][0] if tid < len(alignment.contigs) else tid
                return f"its offsets for {name} point at records of another contig"
    return None


def _block_size(fh, offset: int) -> int:
    fh.seek(offset + 16)
    return struct.unpack("<H", fh.read(2))[0] + 1


def _cram_mismatch(alignment: AlignmentInput, summary: IndexSummary) -> str | None:
    size = alignment.path.stat().st_size
    if summary.mapped and max(summary.mapped) >= len(alignment.contigs):
        return (
            f"it lists contig number {max(summary.mapped) + 1}, the CRAM header has "
            f"{len(alignment.contigs)}"
        )
    if any(offset >= size for offset in summary.first_offset.values()):
        return "its offsets point past the end of the CRAM"
    return None


def index_problem(alignment: AlignmentInput, index: Path) -> str | None:
    """Why `index` is not an index of `alignment` (read from both files), or None."""
    try:
        summary = read_index(index, alignment.format)
    except NotAnIndex as exc:
        return str(exc)
    if summary.n_ref is not None and summary.n_ref != len(alignment.contigs):
        mismatch = (
            f"it describes {summary.n_ref} contigs, the header of {alignment.path} has "
            f"{len(alignment.contigs)}"
        )
    elif summary.kind == "crai":
        mismatch = _cram_mismatch(alignment, summary)
    else:
        mismatch = _bam_mismatch(alignment, summary)
    return f"is not the index of {alignment.path}: {mismatch}" if mismatch else None


def read_counts(alignment: AlignmentInput, index: Path) -> dict[str, int | None]:
    """Contigs that hold mapped reads, with how many (None where the index does not count
    them, as a CRAM index)."""
    summary = read_index(index, alignment.format)
    names = [name for name, _ in alignment.contigs]
    return {names[tid]: n for tid, n in summary.mapped.items() if tid < len(names)}


# ---------------------------------------------------------------------------- finding, building


def _index_candidates(path: Path, fmt: AlignmentFormat) -> list[Path]:
    if fmt == "cram":
        return [Path(str(path) + ".crai"), path.with_suffix(".crai")]
    return [
        Path(str(path) + ".bai"),
        Path(str(path) + ".csi"),
        path.with_suffix(".bai"),
        path.with_suffix(".csi"),
    ]


def find_index(alignment: AlignmentInput, given: Path | None = None) -> Path | None:
    """An existing index that belongs to the alignment file, or None.

    A given index (--index, the samplesheet's bai column) that is not this file's index is
    refused, naming the index. One found beside the BAM that is older than it, or that does not
    fit it, is ignored with a warning: it may describe an earlier version of the file, and a
    wrong index gives wrong coverage without any error.
    """
    path, fmt = alignment.path, alignment.format
    if given is not None and not given.is_file():
        raise InputError(
            given,
            "index file does not exist",
            "fix the bai column / --index, or leave it empty to build one",
        )
    candidates = [given] if given is not None else _index_candidates(path, fmt)
    for idx in candidates:
        if idx is None or not idx.is_file():
            continue
        if idx.stat().st_mtime < path.stat().st_mtime:
            log.warning(
                "%s: index %s is older than the BAM; building a fresh one in a scratch "
                "directory (re-run samtools index to silence this)",
                path,
                idx.name,
            )
            return None
        problem = index_problem(alignment, idx)
        if problem is None:
            return idx
        if given is not None:
            raise InputError(
                idx,
                problem,
                f"give the index of {path} (made by: {fixes.index(path)}) as --index / the bai "
                "column, or leave it out to build one",
            )
        log.warning(
            "%s: index %s %s; building a fresh one in a scratch directory (re-index to "
            "silence this: %s)",
            path,
            idx.name,
            problem,
            fixes.index(path),
        )
        return None
    return None


@contextlib.contextmanager
def usable_index(
    alignment: AlignmentInput,
    given: Path | None = None,
    *,
    scratch_dir: Path | None = None,
    threads: int = 1,
) -> Iterator[Path]:
    """Yield an index path: the existing one if it fits, else one built in a scratch folder."""
    existing = find_index(alignment, given)
    if existing is not None:
        yield existing
        return
    folder = scratch_dir or Path(tempfile.gettempdir())
    try:
        scratch = Path(tempfile.mkdtemp(prefix="bamstore-index-", dir=scratch_dir))
    except OSError as exc:
        raise _scratch_error(folder, alignment.path, exc.strerror) from exc
    try:
        yield build_index(alignment, scratch, threads=threads)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scratch_error(folder: Path, bam: Path, reason: str | None) -> InputError:
    return InputError(
        folder,
        f"cannot hold the index this BAM needs ({reason}); {bam} has no usable index",
        "pass --tmp-dir (or set TMPDIR) to a writable folder with free space, or index the "
        "BAM: " + fixes.index(bam),
    )


def build_index(alignment: AlignmentInput, directory: Path, *, threads: int = 1) -> Path:
    """samtools index into `directory`; an unsorted file fails here with the sort hint."""
    path = alignment.path
    long_contig = any(length > BAI_MAX_LENGTH for _, length in alignment.contigs)
    suffix = ".crai" if alignment.format == "cram" else (".csi" if long_contig else ".bai")
    out = directory / (path.name + suffix)
    args = ["-@", str(max(0, threads - 1)), "-o", str(out)]
    if long_contig and alignment.format == "bam":
        args.insert(0, "-c")
    log.info("%s: no usable index; indexing into scratch directory %s", path, directory)
    try:
        pysam.index(*args, str(path), catch_stdout=False)
    except pysam.utils.SamtoolsError as exc:
        # samtools index only says "failed to create index" (htslib logs the reason to
        # stderr), so the reason is found by trying the output folder and reading the records.
        raise _index_failure(alignment, directory) from exc
    return out


def _cannot_write(directory: Path, size: int) -> str | None:
    """The OS's reason why `size` bytes cannot be written into `directory`, or None."""
    probe = directory / ".bamstore-space-probe"
    try:
        with probe.open("wb") as fh:
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        if exc.errno in _SPACE_ERRNOS or exc.errno in (errno.EACCES, errno.EROFS):
            return exc.strerror
        raise
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None


def _index_failure(alignment: AlignmentInput, directory: Path) -> InputError:
    """Why `samtools index` failed: no room for the index, records out of order, or a block
    that cannot be read."""
    path = alignment.path
    # An index is far smaller than its BAM; a thousandth (at least 64 KiB) is a generous guess.
    reason = _cannot_write(directory, max(1 << 16, path.stat().st_size // 1000))
    if reason is not None:
        return _scratch_error(directory.parent, path, reason)
    names = [name for name, _ in alignment.contigs]
    seen: set[int] = set()
    prev_tid: int | None = None
    prev_pos = -1
    bam = None
    try:
        bam = pysam.AlignmentFile(
            str(path),
            "rc" if alignment.format == "cram" else "rb",
            reference_filename=str(alignment.reference) if alignment.reference else None,
            check_sq=False,
        )
        for rec in bam.fetch(until_eof=True):
            tid, pos = rec.reference_id, rec.reference_start
            where = None
            if tid == prev_tid:
                if tid >= 0 and pos < prev_pos:
                    where = f"on {names[tid]} a record at {pos + 1} follows one at {prev_pos + 1}"
            elif prev_tid == -1:
                where = f"a record on {names[tid]} follows unplaced reads (they go last)"
            elif tid in seen:
                where = f"records of {names[tid]} are not together"
            if where:
                return InputError(
                    path, f"is not sorted by coordinate: {where}", fixes.sort_and_index(path)
                )
            seen.add(tid)
            prev_tid, prev_pos = tid, pos
    except (OSError, ValueError):
        return InputError(
            path,
            "is corrupted or truncated: a compressed block or record cannot be read",
            "re-create or re-download it; check with: " + fixes.read_every_record(path),
        )
    finally:
        if bam is not None:
            with contextlib.suppress(OSError):  # htslib repeats a read error on close
                bam.close()
    return InputError(
        path,
        "could not be indexed by samtools index, though its records read in order",
        "check it with: " + fixes.quickcheck(path) + ", then index it: " + fixes.index(path),
    )
