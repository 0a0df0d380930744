"""A BAM read from standard input (`--bam -`): checked, then counted in one pass.

A stream cannot be re-read or sought in, so everything a file's path would be opened again for
comes from one read, front to back:
- the format check looks at the first `PEEK_BYTES`, which are kept, not lost (`InputStream`);
- the header is parsed here from the first BGZF blocks; htslib reads contigs and sort order from
  a copy of those blocks, so they are exactly what a file gives (`open_stream`);
- the kernel then reads the records from where the header ends, without an index; contigs come
  in the order of their records (extract.py skips those it does not store).

Only BAM can be streamed. A CRAM is refused, as a file is when it has no --reference: its
header and containers would need the reference and random access that a pipe does not give.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bamstore.engine.bam_input.header import AlignmentInput, read_header
from bamstore.engine.bam_input.sniff import PEEK_BYTES, detect_format
from bamstore.engine.blocks import BGZF_EOF, BgzfError, block_size
from bamstore.errors import InputError
from bamstore.layout import HASH_PREFIX_BYTES

STDIN = Path("-")  # what --bam takes for standard input, as samtools does
READ_BYTES = 1 << 20  # bytes asked of the stream at a time


def is_stdin(path: Path | str) -> bool:
    return str(path) == str(STDIN)


class InputStream:
    """A byte stream read once, front to back, whose first bytes can be looked at first.

    `peek` keeps what it reads; `chunks` hands out the kept bytes from an offset, then the rest
    of the stream. `bytes_read` is the stream's length once it has been read to its end.
    """

    def __init__(self, source: BinaryIO, path: Path = STDIN) -> None:
        self.path = path
        self._source = source
        self._kept = bytearray()
        self._eof = False
        self._started = False
        self._tail = b""  # the last bytes read, for `ends_with_eof_block`
        self.bytes_read = 0

    def _read(self) -> bytes:
        read1 = getattr(self._source, "read1", None)
        data = read1(READ_BYTES) if read1 is not None else self._source.read(READ_BYTES)
        if not data:
            self._eof = True
        self.bytes_read += len(data)
        self._tail = (self._tail + data)[-len(BGZF_EOF) :]
        return data

    @property
    def ends_with_eof_block(self) -> bool:
        """Read to its end, the stream ended with BGZF's end-of-file block: it is whole."""
        return self._eof and self._tail == BGZF_EOF

    def peek(self, size: int) -> bytes:
        """The first `size` bytes (fewer if the stream is shorter), kept for `chunks`."""
        self._fill(size)
        return bytes(self._kept[:size])

    def _fill(self, size: int) -> None:
        if self._started:
            raise ValueError("peek() after chunks()")
        while len(self._kept) < size and not self._eof:
            self._kept += self._read()

    def peek_at(self, offset: int, size: int) -> bytes:
        """`size` bytes from `offset` of the stream's start (fewer at its end), kept."""
        self._fill(offset + size)
        return bytes(self._kept[offset : offset + size])

    def chunks(self, start: int = 0) -> Iterator[bytes]:
        """The stream from byte `start` (within the kept bytes) to its end; once only."""
        if self._started:
            raise ValueError("a stream can be read only once")
        self._started = True
        kept, self._kept = self._kept, bytearray()
        if start < len(kept):
            yield bytes(kept[start:])
        del kept
        while not self._eof:
            data = self._read()
            if data:
                yield data

    def replay_path(self) -> tuple[str, Callable[[], None]]:
        """A path from which htslib reads the whole stream (kept bytes first): the read end of a
        pipe that a thread fills. Returns the path and the function that closes it."""
        read_fd, write_fd = os.pipe()

        def copy() -> None:
            with contextlib.suppress(OSError):  # the reader went away (an error, or closed)
                for chunk in self.chunks():
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(write_fd, view) :]
            os.close(write_fd)

        thread = threading.Thread(target=copy, name="bamstore-stdin", daemon=True)
        thread.start()

        def close() -> None:
            with contextlib.suppress(OSError):
                os.close(read_fd)
            thread.join(timeout=5)

        return f"/dev/fd/{read_fd}", close


@dataclass(frozen=True)
class StreamStart:
    """Where a streamed BAM's records start: the byte offset of their first BGZF block and
    the offset within its decompressed data."""

    block_offset: int
    in_block: int


@dataclass(frozen=True)
class StreamedInput:
    """A checked stream: its header (as `open_alignment` gives a file's), where its records
    start, and QuantNado's sample hash of its first bytes (the same as the file's)."""

    stream: InputStream
    alignment: AlignmentInput
    start: StreamStart
    sample_hash: bytes


class _HeaderScan:
    """Finds where the binary BAM header ends in data that arrives block by block; each byte
    is looked at once (a header can list hundreds of thousands of contigs)."""

    def __init__(self) -> None:
        self.pos = 0  # the next field to read
        self.refs_left: int | None = None  # None: l_text and n_ref not read yet

    def end(self, data: bytearray) -> int | None:
        """The header's length once `data` holds all of it, else None."""
        if self.refs_left is None:
            if len(data) < 8 or len(data) < 12 + struct.unpack_from("<i", data, 4)[0]:
                return None
            self.pos = 8 + struct.unpack_from("<i", data, 4)[0]
            self.refs_left = struct.unpack_from("<i", data, self.pos)[0]
            self.pos += 4
        while self.refs_left > 0:
            if len(data) < self.pos + 4:
                return None
            size = 4 + struct.unpack_from("<i", data, self.pos)[0] + 4
            if len(data) < self.pos + size:
                return None
            self.pos += size
            self.refs_left -= 1
        return self.pos


def _find_header_end(stream: InputStream) -> tuple[StreamStart, int]:
    """Where the header ends, and the byte offset just past the BGZF block it ends in."""
    subject = stream.path
    truncated = InputError(
        subject,
        "is truncated: the stream ends inside the BAM header",
        "re-create the stream; a partial BAM gives wrong coverage",
    )
    data = bytearray()
    scan = _HeaderScan()
    offset = 0
    while True:
        head = stream.peek_at(offset, 18)
        if len(head) < 18:
            raise truncated
        try:
            total = block_size(head, 0, offset)
        except BgzfError as exc:
            raise InputError(
                subject, f"is corrupted: {exc} (in the header)", "re-create the stream"
            ) from None
        raw = stream.peek_at(offset, total)
        if len(raw) < total:
            raise truncated
        xlen = struct.unpack_from("<H", raw, 10)[0]
        try:
            block = zlib.decompressobj(-15).decompress(raw[12 + xlen : total - 8])
        except zlib.error:
            raise InputError(
                subject,
                f"is corrupted: the BGZF block at byte {offset} cannot be decompressed",
                "re-create the stream",
            ) from None
        before = len(data)
        data += block
        offset += total
        length = scan.end(data)
        if length is not None:
            return StreamStart(offset - total, length - before), offset


def open_stream(
    stream: InputStream, reference: Path | None = None, scratch: Path | None = None
) -> StreamedInput:
    """Check a stream's format and read its header, consuming nothing (see `InputStream`)."""
    path = stream.path
    fmt = detect_format(stream.peek(PEEK_BYTES), path)
    if fmt == "cram":
        if reference is None:
            raise InputError(
                path,
                "is CRAM, which needs its reference to decode (its bases are stored as "
                "differences from the genome, which is not in the file)",
                "convert it to BAM in the pipe: samtools view -b -T genome.fa - | "
                "bamstore extract --bam - ...",
            )
        raise InputError(
            path,
            "is CRAM: bamstore reads BAM from a stream (a CRAM needs random access)",
            f"convert it to BAM in the pipe: samtools view -b -T {reference} - | "
            "bamstore extract --bam - ...",
        )
    start, header_end = _find_header_end(stream)
    header_copy = stream.peek(header_end) + BGZF_EOF
    with tempfile.NamedTemporaryFile(suffix=".bam", dir=scratch) as tmp:
        tmp.write(header_copy)
        tmp.flush()
        alignment = read_header(Path(tmp.name), path, fmt)
    sample_hash = hashlib.md5(stream.peek(HASH_PREFIX_BYTES)).digest()  # as prefix_md5
    return StreamedInput(stream, alignment, start, sample_hash)
