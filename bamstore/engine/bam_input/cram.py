"""Whether a CRAM can be decoded without its reference genome, and never fetching one.

A CRAM usually stores bases as differences from the reference, so decoding needs that FASTA.
Two kinds do not, and samtools reads both without one: CRAMs written with `embed_ref=1` carry
the reference bases of each slice in the slice, and `no_ref=1` CRAMs store the bases themselves
(the compression header's RR flag is false). Which kind a file is can be read from the
container and slice headers alone, without decoding a record: `needs_reference` walks them
(a few hundred bytes per container) and answers for the whole file.

Without a reference, htslib looks the genome up by the @SQ M5 checksums in REF_PATH, and with
REF_PATH unset it downloads it from the EBI reference server into ~/.cache/hts-ref. A pipeline
task must not do that (no network on most clusters, a hang instead of an error, gigabytes in a
home folder), so `no_reference_server` points htslib at local paths only.
"""

from __future__ import annotations

import bz2
import lzma
import os
import struct
import zlib
from pathlib import Path

# A path that can never hold a file: REF_PATH lookups fail at once, without any network.
_NOWHERE = "/dev/null/bamstore-no-reference-server/%s"
_REMOTE_MARKERS = ("://", "URL=", "|", "http:", "https:", "ftp:")

_FILE_DEFINITION = 26  # "CRAM", major, minor, 20-byte file id
_RAW, _GZIP, _BZIP2, _LZMA = 0, 1, 2, 3
_UNMAPPED = -1


def no_reference_server() -> None:
    """Make htslib look for CRAM references only in local files (REF_PATH/REF_CACHE).

    A REF_PATH naming only local folders is kept (a site's reference cache); one that is unset,
    empty or names a server is replaced by a path that finds nothing, so a CRAM without its
    reference fails at once with bamstore's own message.
    """
    current = os.environ.get("REF_PATH", "")
    if not current or any(marker in current for marker in _REMOTE_MARKERS):
        os.environ["REF_PATH"] = _NOWHERE


class _Reader:
    """ITF8/LTF8 and fixed-size fields of the CRAM header structures, over a byte string."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def int32(self) -> int:
        (value,) = struct.unpack_from("<i", self.data, self.pos)
        self.pos += 4
        return value

    def itf8(self) -> int:
        b0 = self.byte()
        if b0 < 0x80:
            value = b0
        elif b0 < 0xC0:
            value = ((b0 & 0x3F) << 8) | self.byte()
        elif b0 < 0xE0:
            value = ((b0 & 0x1F) << 16) | (self.byte() << 8) | self.byte()
        elif b0 < 0xF0:
            value = ((b0 & 0x0F) << 24) | (self.byte() << 16) | (self.byte() << 8) | self.byte()
        else:
            value = (b0 & 0x0F) << 28
            value |= (self.byte() << 20) | (self.byte() << 12) | (self.byte() << 4)
            value |= self.byte() & 0x0F
        return value - (1 << 32) if value & 0x80000000 else value

    def ltf8(self) -> int:
        b0 = self.byte()
        extra = 0
        while extra < 8 and b0 & (0x80 >> extra):
            extra += 1
        value = b0 & (0xFF >> (extra + 1)) if extra < 7 else 0
        for _ in range(extra):
            value = (value << 8) | self.byte()
        return value

    def skip(self, n: int) -> None:
        self.pos += n


class _Unknown(Exception):
    """The file uses something this walk does not read; the caller assumes the worst."""


def _container_header(fh, major: int) -> tuple[int, int, int, list[int], int] | None:
    """(blocks length, ref id, n records, landmarks, header size) or None at the end."""
    start = fh.tell()
    raw = fh.read(64)
    if len(raw) < 4:
        return None
    r = _Reader(raw)
    length = r.int32()
    ref_id = r.itf8()
    r.itf8()  # alignment start
    r.itf8()  # alignment span
    n_records = r.itf8()
    if major >= 3:
        r.ltf8()  # record counter
    else:
        r.itf8()
    r.ltf8()  # bases
    r.itf8()  # number of blocks
    n_landmarks = r.itf8()
    if n_landmarks < 0 or n_landmarks > 10_000:
        raise _Unknown
    if r.pos + 5 * n_landmarks + 4 > len(raw):
        raw += fh.read(5 * n_landmarks + 4)
        r.data = raw
    landmarks = [r.itf8() for _ in range(n_landmarks)]
    if major >= 3:
        r.skip(4)  # CRC32
    fh.seek(start + r.pos)
    return length, ref_id, n_records, landmarks, r.pos


def _block_content(data: bytes, pos: int, major: int) -> tuple[int, bytes]:
    """(content type, uncompressed content) of the block at `pos`."""
    r = _Reader(data, pos)
    method = r.byte()
    content_type = r.byte()
    r.itf8()  # content id
    size = r.itf8()
    raw_size = r.itf8()
    body = data[r.pos : r.pos + size]
    if method == _RAW:
        return content_type, body
    if method == _GZIP:
        return content_type, zlib.decompress(body, 47)[:raw_size]
    if method == _BZIP2:
        return content_type, bz2.decompress(body)
    if method == _LZMA:
        return content_type, lzma.decompress(body)
    raise _Unknown  # rANS and newer codecs are not used for header blocks by known writers


def _reference_required(compression_header: bytes) -> bool:
    """The RR flag of the preservation map (true when absent, as the specification says)."""
    r = _Reader(compression_header)
    r.itf8()  # map size in bytes
    for _ in range(r.itf8()):
        key = compression_header[r.pos : r.pos + 2]
        r.skip(2)
        if key in (b"RN", b"AP", b"RR"):
            value = r.byte()
            if key == b"RR":
                return bool(value)
        elif key == b"SM":
            r.skip(5)
        elif key == b"TD":
            r.skip(r.itf8())
        else:
            raise _Unknown
    return True


def _slice_has_embedded_reference(slice_header: bytes, major: int) -> bool:
    r = _Reader(slice_header)
    r.itf8()  # reference id
    r.itf8()  # alignment start
    r.itf8()  # alignment span
    r.itf8()  # records
    if major >= 3:
        r.ltf8()  # record counter
    else:
        r.itf8()
    r.itf8()  # blocks
    for _ in range(r.itf8()):  # content ids
        r.itf8()
    return r.itf8() >= 0  # embedded reference block content id; -1 when there is none


def needs_reference(path: Path) -> bool:
    """True unless every container holding placed reads can be decoded without a reference.

    Unreadable or unfamiliar structure answers True: asking for --reference is the safe side.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(_FILE_DEFINITION)
            if len(head) < _FILE_DEFINITION or head[:4] != b"CRAM":
                return True
            major = head[4]
            if major not in (2, 3):
                return True
            header = _container_header(fh, major)  # the SAM header container
            if header is None:
                return True
            fh.seek(header[0], os.SEEK_CUR)
            while (header := _container_header(fh, major)) is not None:
                length, ref_id, n_records, landmarks, _ = header
                data = fh.read(length)
                if n_records == 0 or ref_id == _UNMAPPED:
                    continue
                content_type, content = _block_content(data, 0, major)
                if content_type != 1:  # COMPRESSION_HEADER
                    return True
                if not _reference_required(content):
                    continue
                for landmark in landmarks:
                    content_type, content = _block_content(data, landmark, major)
                    if content_type != 2:  # MAPPED_SLICE (slice header)
                        return True
                    if not _slice_has_embedded_reference(content, major):
                        return True
    except (_Unknown, OSError, IndexError, struct.error, zlib.error, lzma.LZMAError, ValueError):
        return True
    return False
