"""Everything about an input alignment file before coverage is counted.

Format is detected from content (BGZF + BAM magic, CRAM magic), never from the file name; the
header gives contigs and sort order; the index is found or built in a scratch directory (never
beside the input); contigs are selected and checked against --chromsizes. Each problem becomes an
`InputError` naming the file, the problem and the command that fixes it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pysam

from bamstore.errors import InputError
from bamstore.layout import HASH_PREFIX_BYTES

log = logging.getLogger(__name__)

AlignmentFormat = Literal["bam", "cram"]
Contigs = list[tuple[str, int]]

FIX_SORT = "samtools sort -o sorted.bam INPUT && samtools index sorted.bam"
# BAI bins address positions below 2^29; longer contigs need a CSI index.
BAI_MAX_LENGTH = (1 << 29) - 1
PRIMARY_CONTIG = re.compile(r"^(chr)?([0-9]+|X|Y|M|MT)$")


@dataclass(frozen=True)
class AlignmentInput:
    """A checked input: format, header contigs and sort order."""

    path: Path
    format: AlignmentFormat
    contigs: Contigs
    sort_order: str | None
    header_md5: str
    reference: Path | None = None

    @property
    def tids(self) -> dict[str, int]:
        return {name: i for i, (name, _) in enumerate(self.contigs)}


def quiet_htslib() -> None:
    """Silence htslib's own [E::...]/[W::...] stderr lines: bamstore reports each such problem
    itself as one line (file, problem, fix). The CLI keeps them with --debug."""
    pysam.set_verbosity(0)


# ---------------------------------------------------------------------------- format detection


def _bgzf_first_block(head: bytes) -> bytes | None:
    """Decompress the first BGZF block in `head`, or None if `head` is not BGZF."""
    if len(head) < 18 or head[:4] != b"\x1f\x8b\x08\x04":
        return None
    xlen = struct.unpack_from("<H", head, 10)[0]
    extra = head[12 : 12 + xlen]
    pos = 0
    bsize = None
    while pos + 4 <= len(extra):
        si1, si2, slen = extra[pos], extra[pos + 1], struct.unpack_from("<H", extra, pos + 2)[0]
        if si1 == 66 and si2 == 67 and slen == 2:
            bsize = struct.unpack_from("<H", extra, pos + 4)[0]
        pos += 4 + slen
    if bsize is None:
        return None
    block = head[: bsize + 1]
    try:
        return zlib.decompressobj(-15).decompress(block[12 + xlen : -8])
    except zlib.error:
        return b""


def sniff_format(path: Path) -> AlignmentFormat:
    """BAM or CRAM by content; anything else is refused with the command that makes a BAM."""
    if not path.exists():
        raise InputError(
            path,
            "does not exist",
            "check the path (relative paths in a samplesheet "
            "are resolved against the samplesheet's folder)",
        )
    if path.is_dir():
        raise InputError(
            path,
            "is a directory, not a BAM file",
            "give the path of a coordinate-sorted, indexed BAM file (made with: " + FIX_SORT + ")",
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 17)
    except PermissionError as exc:
        raise InputError(
            path, "cannot be read (permission denied)", "make it readable by this user (chmod +r)"
        ) from exc
    if not head:
        raise InputError(path, "is empty, not a BAM file", "re-create it: " + FIX_SORT)
    if head.startswith(b"CRAM"):
        return "cram"
    block = _bgzf_first_block(head)
    if block is not None:
        if block.startswith(b"BAM\x01"):
            return "bam"
        what = "SAM text" if block[:1] == b"@" else "something that is not BAM"
        raise InputError(
            path,
            f"is BGZF-compressed {what}, not BAM",
            "convert it: samtools view -b INPUT | " + FIX_SORT.replace("INPUT", "-"),
        )
    if head[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(head)[:4]
        except (OSError, EOFError, zlib.error):
            inner = b""
        kind = "gzip-compressed SAM text" if inner[:1] == b"@" else "plain gzip, not BGZF/BAM"
        raise InputError(
            path,
            f"is {kind}, not BAM",
            "convert it: samtools view -b INPUT | " + FIX_SORT.replace("INPUT", "-"),
        )
    if head[:1] == b"@" or _looks_like_sam_record(head):
        raise InputError(
            path,
            "is SAM text, not BAM",
            "convert it: samtools view -b INPUT | " + FIX_SORT.replace("INPUT", "-"),
        )
    raise InputError(
        path,
        "is not a BAM or CRAM file (unrecognised content)",
        "give a coordinate-sorted BAM made with: " + FIX_SORT,
    )


def _looks_like_sam_record(head: bytes) -> bool:
    line = head.split(b"\n", 1)[0]
    fields = line.split(b"\t")
    return len(fields) >= 11 and fields[1].isdigit() and fields[3].isdigit()


# ---------------------------------------------------------------------------- header


def open_alignment(path: Path, reference: Path | None = None) -> AlignmentInput:
    """Check format, EOF marker and header; return contigs and sort order."""
    fmt = sniff_format(path)
    if fmt == "cram" and reference is None:
        raise InputError(
            path,
            "is CRAM, which needs its reference to decode",
            "pass --reference FASTA (the genome it was aligned to)",
        )
    if reference is not None and not Path(reference).is_file():
        raise InputError(reference, "reference FASTA does not exist", "check --reference")
    mode = "rc" if fmt == "cram" else "rb"
    try:
        with pysam.AlignmentFile(
            str(path),
            mode,
            reference_filename=str(reference) if reference else None,
            check_sq=False,
        ) as bam:
            contigs = list(zip(bam.references, bam.lengths, strict=True))
            header_text = str(bam.header)
            sort_order = bam.header.to_dict().get("HD", {}).get("SO")
    except (OSError, ValueError) as exc:
        text = str(exc)
        if "EOF" in text or "truncated" in text:
            raise InputError(
                path,
                "is truncated (the BGZF end-of-file marker is missing)",
                "re-create or re-download it; a partial copy gives wrong coverage",
            ) from exc
        raise InputError(
            path,
            f"cannot be read as {fmt.upper()} ({text})",
            "check the file with: samtools quickcheck -v INPUT",
        ) from exc
    if sort_order == "queryname":
        raise InputError(
            path,
            "is sorted by read name (@HD SO:queryname), not by coordinate",
            FIX_SORT.replace("INPUT", str(path)),
        )
    header_md5 = hashlib.md5(header_text.encode()).hexdigest()
    return AlignmentInput(path, fmt, contigs, sort_order, header_md5, reference)


def prefix_md5(path: Path) -> bytes:
    """QuantNado's sample hash: MD5 of the first 16 KiB of the file (compressed bytes)."""
    with path.open("rb") as fh:
        return hashlib.md5(fh.read(HASH_PREFIX_BYTES)).digest()


def fingerprint(alignment: AlignmentInput) -> dict[str, object]:
    """What identifies an input for `build --resume`: size, mtime and a hash of its header."""
    st = alignment.path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "header_md5": alignment.header_md5}


# ---------------------------------------------------------------------------- index


def _index_candidates(path: Path, fmt: AlignmentFormat) -> list[Path]:
    if fmt == "cram":
        return [Path(str(path) + ".crai"), path.with_suffix(".crai")]
    return [
        Path(str(path) + ".bai"),
        Path(str(path) + ".csi"),
        path.with_suffix(".bai"),
        path.with_suffix(".csi"),
    ]


def find_index(path: Path, fmt: AlignmentFormat, given: Path | None = None) -> Path | None:
    """An existing index that is not older than the alignment file, or None.

    A stale index (older than the BAM) is ignored with a warning: it may describe an earlier
    version of the file, and a wrong index gives wrong coverage without any error.
    """
    candidates = [given] if given is not None else _index_candidates(path, fmt)
    for idx in candidates:
        if idx is None or not idx.is_file():
            if given is not None:
                raise InputError(
                    given,
                    "index file does not exist",
                    "fix the bai column / --index, or leave it empty to build one",
                )
            continue
        if idx.stat().st_mtime < path.stat().st_mtime:
            log.warning(
                "%s: index %s is older than the BAM; building a fresh one in a scratch "
                "directory (re-run samtools index to silence this)",
                path,
                idx.name,
            )
            return None
        return idx
    return None


@contextlib.contextmanager
def usable_index(
    alignment: AlignmentInput,
    given: Path | None = None,
    *,
    scratch_dir: Path | None = None,
    threads: int = 1,
) -> Iterator[Path]:
    """Yield an index path: the existing one if fresh, else one built in a scratch directory."""
    existing = find_index(alignment.path, alignment.format, given)
    if existing is not None:
        yield existing
        return
    try:
        scratch = Path(tempfile.mkdtemp(prefix="bamstore-index-", dir=scratch_dir))
    except OSError as exc:
        raise InputError(
            scratch_dir or tempfile.gettempdir(),
            f"cannot hold the index this BAM needs ({exc.strerror}); {alignment.path} has "
            "no usable index",
            "pass --tmp-dir (or set TMPDIR) to a writable folder, or index the BAM: "
            "samtools index " + str(alignment.path),
        ) from exc
    try:
        yield build_index(alignment, scratch, threads=threads)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
        # samtools index only says "failed to create index" (htslib logs the reason to stderr),
        # so the reason is found by reading the records again.
        raise _index_failure(alignment, str(exc)) from exc
    return out


def _index_failure(alignment: AlignmentInput, text: str) -> InputError:
    """Why `samtools index` failed: records out of order, or a block that cannot be read."""
    path = alignment.path
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
                    path,
                    f"is not sorted by coordinate: {where}",
                    FIX_SORT.replace("INPUT", str(path)),
                )
            seen.add(tid)
            prev_tid, prev_pos = tid, pos
    except (OSError, ValueError):
        return InputError(
            path,
            "is corrupted or truncated: a compressed block or record cannot be read",
            "re-create or re-download it; check with: samtools quickcheck -v " + str(path),
        )
    finally:
        if bam is not None:
            with contextlib.suppress(OSError):  # htslib repeats a read error on close
                bam.close()
    detail = text.strip().splitlines()[-1] if text.strip() else "samtools index failed"
    return InputError(
        path,
        f"could not be indexed ({detail})",
        "check it with: samtools quickcheck -v " + str(path),
    )


# ---------------------------------------------------------------------------- contig selection


def read_chromsizes(path: Path) -> Contigs:
    """A `name<TAB>length` file without header (UCSC chrom.sizes, samtools faidx .fai)."""
    if not path.is_file():
        raise InputError(path, "chromsizes file does not exist", "check --chromsizes")
    contigs: Contigs = []
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2 or not fields[1].strip().isdigit() or int(fields[1]) <= 0:
            raise InputError(
                f"{path}:{lineno}",
                f"expected 'name<TAB>length', got {line!r}",
                "use a chrom.sizes or .fai file",
            )
        name = fields[0].strip()
        if name in seen:
            raise InputError(
                f"{path}:{lineno}", f"contig {name!r} is listed twice", "remove the duplicate line"
            )
        seen.add(name)
        contigs.append((name, int(fields[1])))
    if not contigs:
        raise InputError(path, "chromsizes file lists no contigs", "use a chrom.sizes or .fai file")
    return contigs


def parse_selection(selection: str) -> str | list[str]:
    """'primary', 'all' or an explicit comma-separated list of contig names."""
    text = selection.strip()
    if text.lower() in ("primary", "all"):
        return text.lower()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(
            None,
            f"--chromosomes {selection!r} names no contigs",
            "use 'primary', 'all' or a comma-separated list such as chr1,chr2",
        )
    return names


def select_contigs(
    alignment: AlignmentInput,
    selection: str = "primary",
    chromsizes: Contigs | None = None,
    chromsizes_path: Path | None = None,
) -> Contigs:
    """The contigs to store, in chromsizes order if given, else header order.

    `primary`: chr1..chrN, chrX, chrY, chrM and the same names without the prefix (Ensembl
    1..N, X, Y, MT). `all`: every contig. Otherwise the listed names, which must exist.
    """
    header = dict(alignment.contigs)
    universe = alignment.contigs
    if chromsizes is not None:
        for name, length in chromsizes:
            if name not in header:
                raise InputError(
                    alignment.path,
                    f"contig {name!r} from {chromsizes_path} is not in the BAM header",
                    "use the chromsizes of the genome the BAM was "
                    "aligned to, or remove the contig from the file",
                )
            if header[name] != length:
                raise InputError(
                    alignment.path,
                    f"contig {name!r} is {header[name]} bp in the BAM "
                    f"header but {length} bp in {chromsizes_path}",
                    "use the chromsizes of the genome the BAM was aligned to",
                )
        universe = chromsizes
    wanted = parse_selection(selection)
    if wanted == "all":
        kept = list(universe)
    elif wanted == "primary":
        kept = [(n, length) for n, length in universe if PRIMARY_CONTIG.match(n)]
    else:
        available = dict(universe)
        missing = [n for n in wanted if n not in available]
        if missing:
            raise InputError(
                alignment.path,
                f"contig(s) {', '.join(missing)} from --chromosomes "
                "are not in " + ("the chromsizes file" if chromsizes else "the BAM header"),
                "check the names (e.g. chr1 vs 1) with: samtools idxstats INPUT",
            )
        order = {n: i for i, n in enumerate(wanted)}
        kept = sorted(((n, available[n]) for n in wanted), key=lambda c: order[c[0]])
        if len(set(wanted)) != len(wanted):
            raise InputError(None, "--chromosomes lists a contig twice", "list each contig once")
    if not kept:
        names = ", ".join(n for n, _ in universe[:5]) + (", ..." if len(universe) > 5 else "")
        raise InputError(
            alignment.path,
            f"--chromosomes {selection} keeps no contig (the header has {names})",
            "use --chromosomes all or list the contigs to keep",
        )
    return kept


def check_same_contigs(
    reference: Sequence[tuple[str, int]],
    other: Sequence[tuple[str, int]],
    subject: str,
    reference_label: str,
) -> None:
    """Refuse a sample whose kept contigs or lengths differ from the others' (the order may
    differ: the store follows the reference's)."""
    ref = dict(reference)
    oth = dict(other)
    for name, length in reference:
        if name not in oth:
            raise InputError(
                subject,
                f"has no contig {name!r}, which {reference_label} has",
                "build all samples against the same genome",
            )
        if oth[name] != length:
            raise InputError(
                subject,
                f"contig {name!r} is {oth[name]} bp here but {length} bp in {reference_label}",
                "build all samples against the same genome",
            )
    extra = [n for n in oth if n not in ref]
    if extra:
        raise InputError(
            subject,
            f"has contig(s) {', '.join(extra[:5])} that {reference_label} lacks",
            "build all samples with the same --chromosomes/--chromsizes",
        )
