"""BGZF blocks of one contig, decompressed in worker threads with libdeflate.

The compiled kernel parses BAM records itself from these blocks (see _coverage.pyx). Doing the
inflate here instead of in pysam's htslib is the largest single speed-up of extraction: pysam's
htslib inflates with zlib, and libdeflate (the `deflate` package, which releases the GIL) is
about 2.7x faster on BGZF blocks (benchmarks/README.md). Every block's CRC32 and size are checked,
so a corrupted block is an error, never silent zeros.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future

try:  # libdeflate; zlib is the (slower) fallback
    from deflate import DeflateError, crc32, deflate_decompress

    def _inflate_raw(data: memoryview, size: int) -> bytes:
        return deflate_decompress(data, size)

    _INFLATE_ERRORS: tuple[type[BaseException], ...] = (DeflateError, zlib.error, ValueError)
except ImportError:  # pragma: no cover - only without the deflate wheel
    crc32 = zlib.crc32

    def _inflate_raw(data: memoryview, size: int) -> bytes:
        return zlib.decompress(data, -15, max(size, 1))

    _INFLATE_ERRORS = (zlib.error, ValueError)

BGZF_MAGIC = b"\x1f\x8b\x08\x04"
# The empty block that ends every BGZF file (SAM/BAM specification, section 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
MAX_BLOCK = 1 << 16
BATCH_BYTES = 1 << 20  # compressed bytes per worker task


class BgzfError(Exception):
    """A block that cannot be decoded; `offset` is its byte offset in the file."""

    def __init__(self, offset: int, problem: str):
        super().__init__(f"BGZF block at byte {offset}: {problem}")
        self.offset = offset
        self.problem = problem


def block_size(raw: bytes, off: int, base: int) -> int:
    """Total size of the block starting at raw[off] (BSIZE + 1), from its BC extra subfield."""
    if raw[off : off + 4] != BGZF_MAGIC:
        raise BgzfError(base + off, "not a BGZF block header")
    xlen = struct.unpack_from("<H", raw, off + 10)[0]
    p, end = off + 12, off + 12 + xlen
    while p + 4 <= end:
        slen = struct.unpack_from("<H", raw, p + 2)[0]
        if raw[p] == 66 and raw[p + 1] == 67 and slen == 2:
            return struct.unpack_from("<H", raw, p + 4)[0] + 1
        p += 4 + slen
    raise BgzfError(base + off, "BGZF block without a BC size field")


def _inflate_batch(raw: bytes, spans: list[tuple[int, int, int]], base: int) -> list[bytes]:
    """Decompress the blocks (offset, data start, total size) of one batch; check CRC and size."""
    view = memoryview(raw)
    out: list[bytes] = []
    for off, data_start, total in spans:
        crc, isize = struct.unpack_from("<II", raw, off + total - 8)
        if isize == 0:
            continue  # empty block (the EOF marker)
        try:
            data = _inflate_raw(view[data_start : off + total - 8], isize)
        except _INFLATE_ERRORS as exc:
            raise BgzfError(base + off, f"cannot be decompressed ({exc})") from None
        if len(data) != isize or crc32(data) != crc:
            raise BgzfError(base + off, "CRC32 or size check failed")
        out.append(data)
    return out


class BgzfReader:
    """Reads byte ranges of one BGZF file as decompressed blocks, inflating on `executor`.

    The executor is shared with the chunk encoders (extract.py), so `--threads N` means N
    workers for both, next to the thread that parses records and counts.
    """

    def __init__(self, path: str, executor: Executor, workers: int) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size
        self._pool = executor
        self._inflight = 2 * max(1, workers) + 1

    def close(self) -> None:
        os.close(self._fd)

    def _batches(
        self, cstart: int, clast: int
    ) -> Iterator[tuple[bytes, list[tuple[int, int, int]], int]]:
        """Raw batches of whole blocks covering block offsets cstart..clast (inclusive).

        An index span may end at the end of the file: an index's chunk end is exclusive, and old
        samtools versions wrote the file size there (e.g. Rsamtools' ex1.bam.bai ends seq2 at
        126539:0, its file size, where a fresh index says 126511:0, the EOF marker). No block
        starts at or past the file size, so the batches stop there.
        """
        if cstart >= self._size:
            raise BgzfError(cstart, "the index points past the end of the file")
        pos = cstart
        while pos <= clast and pos < self._size:
            want = min(BATCH_BYTES, clast - pos + MAX_BLOCK)
            raw = os.pread(self._fd, want, pos)
            spans, off = whole_blocks(raw, pos, last_start=clast - pos)
            if not spans:
                if pos + len(raw) >= self._size:
                    raise BgzfError(pos, "file ends inside a block (truncated)")
                raise BgzfError(pos, "block larger than 64 KiB")
            yield raw, spans, pos
            pos += off

    def blocks(self, first_voffset: int, last_voffset: int) -> Iterator[tuple[bytes, int]]:
        """Yield (decompressed block, start offset) from virtual offset `first` through `last`.

        Only the first block has a non-zero start offset (the in-block offset of `first`).
        """
        cstart, ustart = first_voffset >> 16, first_voffset & 0xFFFF
        clast = last_voffset >> 16
        submit: Callable[..., Future[list[bytes]]] = self._pool.submit
        pending: deque[Future[list[bytes]]] = deque()
        batches = self._batches(cstart, clast)
        first = True
        after = cstart  # file offset just past the last block read
        for batch in batches:
            raw, spans, base = batch
            after = base + spans[-1][0] + spans[-1][2]
            pending.append(submit(_inflate_batch, *batch))
            if len(pending) >= self._inflight:
                for block in pending.popleft().result():
                    yield block, (ustart if first else 0)
                    first = False
        while pending:
            for block in pending.popleft().result():
                yield block, (ustart if first else 0)
                first = False
        # Past `last`, one block at a time and only while the consumer asks: the record after
        # the range's last one (the next contig's first) can continue into later blocks, since
        # writers may split records across blocks (htsjdk/Picard do; htslib does for records
        # over 64 KiB, e.g. long CIGARs). The kernel stops asking once it has seen that record.
        pos = after
        while pos + 18 <= self._size:
            raw = os.pread(self._fd, MAX_BLOCK, pos)
            total = block_size(raw, 0, pos)
            if total > len(raw):
                raise BgzfError(pos, "file ends inside a block (truncated)")
            xlen = struct.unpack_from("<H", raw, 10)[0]
            for block in _inflate_batch(raw, [(0, 12 + xlen, total)], pos):
                yield block, (ustart if first else 0)
                first = False
            pos += total


def whole_blocks(
    raw: bytes | bytearray, base: int, last_start: int
) -> tuple[list[tuple[int, int, int]], int]:
    """The whole BGZF blocks at the front of `raw` (file offset `base`) that start at or before
    offset `last_start` of `raw`: (start, payload start, size) per block, and where the first
    block not taken starts. A block cut off by the end of `raw` is not taken."""
    spans: list[tuple[int, int, int]] = []
    off = 0
    while off + 18 <= len(raw) and off <= last_start:
        total = block_size(raw, off, base)
        if off + total > len(raw):
            break
        xlen = struct.unpack_from("<H", raw, off + 10)[0]
        spans.append((off, off + 12 + xlen, total))
        off += total
    return spans, off


def stream_blocks(
    chunks: Iterable[bytes], executor: Executor, workers: int, start: int = 0
) -> Iterator[tuple[bytes, int]]:
    """Yield (decompressed block, start offset) from a BGZF stream read front to back.

    `chunks` is the stream from a block boundary; the first block is handed out from its
    decompressed offset `start`. Blocks are inflated on `executor` in batches of about
    BATCH_BYTES, at most a few batches ahead, so memory stays bounded whatever the stream's
    length. A stream that ends inside a block is truncated (one that ends between blocks, without
    the end-of-file block, is found by bam_input.stream.InputStream).
    """
    submit: Callable[..., Future[list[bytes]]] = executor.submit
    inflight = 2 * max(1, workers) + 1
    pending: deque[Future[list[bytes]]] = deque()
    buf = bytearray()
    base = 0  # stream offset of buf[0], counted from where `chunks` starts
    first = True

    def split(final: bool) -> tuple[bytes, list[tuple[int, int, int]]] | None:
        nonlocal base
        spans, off = whole_blocks(buf, base, last_start=len(buf) if final else BATCH_BYTES - 1)
        if not spans:
            return None
        raw = bytes(buf[:off])
        del buf[:off]
        base += off
        return raw, spans

    def hand_out(fut: Future[list[bytes]]) -> Iterator[tuple[bytes, int]]:
        nonlocal first
        for block in fut.result():
            yield block, (start if first else 0)
            first = False

    for chunk in chunks:
        buf += chunk
        while len(buf) >= BATCH_BYTES + MAX_BLOCK:
            batch = split(final=False)
            assert batch is not None
            pending.append(submit(_inflate_batch, *batch, base - len(batch[0])))
            if len(pending) >= inflight:
                yield from hand_out(pending.popleft())
    while (batch := split(final=True)) is not None:
        pending.append(submit(_inflate_batch, *batch, base - len(batch[0])))
    while pending:
        yield from hand_out(pending.popleft())
    if buf:
        raise BgzfError(base, "the stream ends inside a block (truncated)")
