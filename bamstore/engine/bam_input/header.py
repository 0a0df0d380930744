"""The header of an input, read the way htslib reads it.

Contigs come from htslib's reference list (for BAM the binary n_ref names and lengths, which
is what records point into), and the sort order from the raw header text. pysam's
`header.to_dict()` is deliberately not used: it refuses headers that htslib and samtools accept,
such as two @HD lines left by tools that concatenate headers. The first @HD line gives the sort
order; the duplicate is reported as a warning and the file is read normally.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import pysam

from bamstore.engine import bam_input_settings
from bamstore.engine.bam_input import fixes
from bamstore.engine.bam_input.cram import needs_reference, no_reference_server
from bamstore.engine.bam_input.sniff import AlignmentFormat, sniff_file
from bamstore.errors import InputError
from bamstore.layout import HASH_PREFIX_BYTES

log = logging.getLogger(__name__)

Contigs = list[tuple[str, int]]
# The empty BGZF block every BAM ends with (the end-of-file marker of the BAM format); a copy
# cut short lacks it, whatever htslib's message says.
BGZF_EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def lacks_bgzf_eof(path: Path) -> bool:
    """Whether the regular file at `path` does not end with the BGZF end-of-file block."""
    try:
        with Path(path).open("rb") as fh:
            if not fh.seekable():
                return False
            size = fh.seek(0, 2)
            if size < len(BGZF_EOF_BLOCK):
                return True
            fh.seek(size - len(BGZF_EOF_BLOCK))
            return fh.read() != BGZF_EOF_BLOCK
    except OSError:
        return False


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


if bam_input_settings.quiet_htslib:
    quiet_htslib()


def header_sort_order(text: str) -> tuple[str | None, int]:
    """SO of the first @HD line (None if it has none) and how many @HD lines there are."""
    hd_lines = [line for line in text.splitlines() if line.startswith("@HD")]
    if not hd_lines:
        return None, 0
    for field in hd_lines[0].split("\t")[1:]:
        if field.startswith("SO:"):
            return field[3:], len(hd_lines)
    return None, len(hd_lines)


def open_alignment(path: Path, reference: Path | None = None) -> AlignmentInput:
    """Check format, reference needs and header; return contigs and sort order."""
    fmt = sniff_file(path)
    if reference is not None and not Path(reference).is_file():
        raise InputError(reference, "reference FASTA does not exist", "check --reference")
    if fmt == "cram":
        no_reference_server()
        if reference is None and needs_reference(path):
            raise InputError(
                path,
                "is CRAM, which needs its reference to decode (its bases are stored as "
                "differences from the genome, which is not in the file)",
                "pass --reference FASTA (the genome it was aligned to)",
            )
    return read_header(path, path, fmt, reference)


def read_header(
    source: Path, path: Path, fmt: AlignmentFormat, reference: Path | None = None
) -> AlignmentInput:
    """Contigs and sort order of `source` as htslib reads them; problems name `path` (the
    input as the user gave it: `source` is a copy of a stream's header)."""
    try:
        with pysam.AlignmentFile(
            str(source),
            "rc" if fmt == "cram" else "rb",
            reference_filename=str(reference) if reference else None,
            check_sq=False,
        ) as bam:
            contigs = list(zip(bam.references, bam.lengths, strict=True))
            header_text = str(bam.header)
    except (OSError, ValueError) as exc:
        if fmt == "bam" and lacks_bgzf_eof(path):
            raise InputError(
                path,
                "is truncated (the BGZF end-of-file marker is missing)",
                "re-create or re-download it; a partial copy gives wrong coverage",
            ) from exc
        raise InputError(
            path,
            f"cannot be read as {fmt.upper()} ({exc})",
            "check the file with: " + fixes.quickcheck(path),
        ) from exc
    sort_order, hd_lines = header_sort_order(header_text)
    if hd_lines > 1:
        log.warning(
            "%s: the header has %d @HD lines (headers joined by another tool?); the first "
            "gives the sort order (SO:%s)",
            path,
            hd_lines,
            sort_order or "not given",
        )
    if sort_order == "queryname":
        raise InputError(
            path,
            "is sorted by read name (@HD SO:queryname), not by coordinate",
            fixes.sort_and_index(path),
        )
    if not contigs:
        raise InputError(
            path,
            "the header has no reference sequences (no @SQ lines): no read in it is placed "
            "on a genome",
            "give the BAM of reads aligned to a genome (an unaligned BAM must be aligned first)",
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
