"""What an input file is, decided from its first bytes, never from its name.

`detect_format` looks only at a byte string: the first bytes of a file, or of a stream peeked
without being consumed (`io.BufferedReader.peek`), so the same rules will serve `--bam -`.
`PEEK_BYTES` is enough for the first BGZF block, the largest unit that must be seen whole.
`sniff_file` adds what only a path can tell: missing, a folder, unreadable, empty, or a pipe
(which cannot be read through an index; `--bam -` reads standard input as a stream instead,
see stream.py).
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import Literal

from bamstore.engine.bam_input import fixes
from bamstore.errors import InputError

AlignmentFormat = Literal["bam", "cram"]

# A BGZF block holds at most 64 KiB compressed; twice that always contains the first one whole.
PEEK_BYTES = 1 << 17


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


def _looks_like_sam_record(head: bytes) -> bool:
    line = head.split(b"\n", 1)[0]
    fields = line.split(b"\t")
    return len(fields) >= 11 and fields[1].isdigit() and fields[3].isdigit()


def detect_format(head: bytes, subject: Path) -> AlignmentFormat:
    """BAM or CRAM from the first bytes (at least `PEEK_BYTES`, or the whole input if shorter).

    Anything else is refused naming `subject` and the samtools command that makes a BAM of it.
    """
    if not head:
        raise InputError(
            subject, "is empty, not a BAM file", "re-create it: " + fixes.sort_and_index(subject)
        )
    if head.startswith(b"CRAM"):
        return "cram"
    block = _bgzf_first_block(head)
    convert = "convert it: " + fixes.convert_to_bam(subject)
    if block is not None:
        if block.startswith(b"BAM\x01"):
            return "bam"
        what = "SAM text" if block[:1] == b"@" else "something that is not BAM"
        raise InputError(subject, f"is BGZF-compressed {what}, not BAM", convert)
    if head[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(head)[:4]
        except (OSError, EOFError, zlib.error):
            inner = b""
        kind = "gzip-compressed SAM text" if inner[:1] == b"@" else "plain gzip, not BGZF/BAM"
        raise InputError(subject, f"is {kind}, not BAM", convert)
    if head[:1] == b"@" or _looks_like_sam_record(head):
        raise InputError(subject, "is SAM text, not BAM", convert)
    raise InputError(
        subject,
        "is not a BAM or CRAM file (unrecognised content)",
        "give a coordinate-sorted BAM (samtools sort makes one from SAM, BAM or CRAM, "
        "and samtools index indexes it)",
    )


def sniff_file(path: Path) -> AlignmentFormat:
    """Check that `path` is a readable regular file and detect its format from its content."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(
            path,
            "does not exist",
            "check the path (relative paths in a samplesheet "
            "are resolved against the samplesheet's folder)",
        ) from None
    if stat.S_ISDIR(mode):
        raise InputError(
            path,
            "is a directory, not a BAM file",
            "give the path of a BAM file, not a folder (a coordinate-sorted BAM, made with "
            "samtools sort and samtools index)",
        )
    if not stat.S_ISREG(mode):
        # Checked before reading a byte: a pipe read here would lose what it held.
        raise InputError(
            path,
            "is a pipe or device, not a file: bamstore reads a BAM file through its index, "
            "which needs a file it can seek in",
            "write it to a file first: "
            + fixes.sort_and_index(path)
            + " (or stream one sample into bamstore extract --bam -)",
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(PEEK_BYTES)
    except PermissionError as exc:
        raise InputError(
            path, "cannot be read (permission denied)", "make it readable by this user (chmod +r)"
        ) from exc
    return detect_format(head, path)
