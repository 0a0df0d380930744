"""The coverage kernel: which implementation runs, and its pure-Python twin.

`CompiledCoverageReader` (bamstore/engine/_coverage.pyx) is the fast path. `PythonCoverageReader`
below is the same streaming algorithm written in Python over pysam: the fallback when the
extension is not built, and the reference the compiled kernel is tested against, window for window.

Both read a coordinate-sorted, indexed BAM/CRAM one contig at a time and hand out coverage one
chunk window at a time, so memory depends on chunk_len, never on contig length. Both also read
a BAM stream front to back without an index (`--bam -`, `StreamCoverageReader`). What a counted
record adds (its aligned bases, its fragment or its cut site) is `CountingMode`; which records
count is `ReadFilter`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pysam

from bamstore.errors import StaleKernelError
from bamstore.layout import DEFAULT_EXCLUDE_FLAGS
from bamstore.options import (
    COUNTING_MODES,
    FLAG_NOT_PRIMARY,
    FLAG_PAIRED,
    FLAG_PROPER_PAIR,
    FLAG_REVERSE,
    FLAG_UNMAPPED,
    STRAND_MODES,
    CountingMode,
    ReadFilter,
    is_sense_strand,
)

if TYPE_CHECKING:
    from bamstore.engine.bam_input.stream import StreamedInput

log = logging.getLogger(__name__)


# CIGAR operations that consume the reference (M, D, N, =, X) and those that cover it.
_REF_OPS = frozenset((0, 2, 3, 7, 8))
_COVER_OPS = frozenset((0, 7, 8))
_DELETION = 2

KernelName = Literal["compiled", "htslib", "python"]


class UnsortedInputError(Exception):
    """A record starts before the previous one on the same contig (positions 0-based)."""

    def __init__(self, tid: int, prev_pos: int, pos: int) -> None:
        super().__init__(f"contig {tid}: a record at {pos} follows one at {prev_pos}")
        self.tid = tid
        self.prev_pos = prev_pos
        self.pos = pos

    def __reduce__(self):  # picklable across build's worker processes
        return (UnsortedInputError, (self.tid, self.prev_pos, self.pos))


class CoverageReader(Protocol):
    """What the extraction driver needs from a kernel."""

    sum_total: int
    sum_fwd: int
    sum_rev: int
    nonzero_positions: int
    primary_reads: int
    clipped_reads: int
    mapq255_reads: int
    seqless_reads: int
    long_cigar_reads: int
    improper_pair_records: int
    off_contig_cut_sites: int
    window_has_total: bool
    window_has_fwd: bool
    window_has_rev: bool

    def start_contig(self, tid: int, length: int) -> None: ...

    def next_window(self, total: np.ndarray, fwd: np.ndarray, rev: np.ndarray) -> int: ...

    def close(self) -> None: ...


class PythonCoverageReader:
    """Pure-Python twin of `CompiledCoverageReader`; see _coverage.pyx for the algorithm."""

    def __init__(
        self,
        path: str,
        index_path: str | None,
        *,
        chunk_len: int,
        exclude_flags: int = DEFAULT_EXCLUDE_FLAGS,
        min_mapq: int = 0,
        count_deletions: bool = False,
        strand_mode: int = 0,
        mode: int = 0,
        extend: int = 0,
        shift_fwd: int = 0,
        shift_rev: int = 0,
        lookbehind: int = 0,
        threads: int = 1,
        reference: str | None = None,
        stream: bool = False,
    ) -> None:
        if chunk_len <= 0:
            raise ValueError("chunk_len must be positive")
        if mode not in COUNTING_MODES.values() or extend < 0 or lookbehind < 0:
            raise ValueError("invalid counting mode")
        self._bam = pysam.AlignmentFile(
            path,
            "rc" if reference else "rb",
            index_filename=None if stream else index_path,
            reference_filename=reference,
            threads=max(1, threads),
            check_sq=not stream,
        )
        # A stream is read front to back without an index (see _coverage.pyx): the record
        # that ends one contig is held until its own contig is started or skipped.
        self.stream = stream
        self._stream_records: Iterator[pysam.AlignedSegment] | None = (
            self._bam.fetch(until_eof=True) if stream else None
        )
        self._held: pysam.AlignedSegment | None = None
        self._stream_ended = False
        self.skipped_mapped = 0
        self.chunk_len = chunk_len
        # fragments and cut sites count primary records only
        primary_only = FLAG_NOT_PRIMARY if mode != COUNTING_MODES["reads"] else 0
        self.exclude_flags = exclude_flags | FLAG_UNMAPPED | primary_only
        self.min_mapq = min_mapq
        self.count_deletions = count_deletions
        self.strand_mode = strand_mode
        self.mode = mode
        self.extend = extend
        self.shift_fwd = shift_fwd
        self.shift_rev = shift_rev
        self.lookbehind = lookbehind
        self._diff_f = np.zeros(chunk_len + 1, dtype=np.int64)
        self._diff_r = np.zeros(chunk_len + 1, dtype=np.int64)
        self.contig_open = False

    def close(self) -> None:
        # After a read error htslib reports it again on close; the read error is the one to show.
        with contextlib.suppress(OSError):
            self._bam.close()

    def _next_stream_record(self) -> pysam.AlignedSegment | None:
        assert self._stream_records is not None
        if self._held is not None:
            read, self._held = self._held, None
            return read
        if self._stream_ended:
            return None
        read = next(self._stream_records, None)
        if read is None:
            self._stream_ended = True
        return read

    def next_stream_contig(self) -> int:
        """The contig id of the stream's next record (-1: unplaced), which is held;
        STREAM_END once the stream has no more records."""
        if self._stream_records is None:
            raise ValueError("next_stream_contig() is for streams")
        if self._held is None:
            self._held = self._next_stream_record()
        return STREAM_END if self._held is None else self._held.reference_id

    def skip_stream_contig(self) -> int:
        """Read past the held record's contig, counting its mapped records and checking their
        order; the next contig's first record is held."""
        read = self._next_stream_record()
        if read is None:
            raise ValueError("skip_stream_contig() needs a held record (next_stream_contig)")
        tid, last = read.reference_id, read.reference_start
        self.skipped_mapped = 0
        while read is not None and read.reference_id == tid:
            self.skipped_mapped += not read.flag & FLAG_UNMAPPED
            if tid >= 0:
                if read.reference_start < last:
                    raise UnsortedInputError(tid, last, read.reference_start)
                last = read.reference_start
            read = self._next_stream_record()
        self._held = read
        return 0

    def _stream_contig(self, tid: int) -> Iterator[pysam.AlignedSegment]:
        while (read := self._next_stream_record()) is not None:
            if read.reference_id != tid:
                self._held = read  # the next contig's first record
                return
            yield read

    def start_contig(self, tid: int, length: int) -> None:
        if tid < 0 or tid >= self._bam.nreferences:
            raise ValueError(f"contig index {tid} is not in the header")
        if self._stream_records is not None:
            if self._held is None or self._held.reference_id != tid:
                raise ValueError("start a stream's contig at its held record (next_stream_contig)")
            self._records = self._stream_contig(tid)
        else:
            self._records = self._bam.fetch(tid=tid, multiple_iterators=False)
        if self.contig_open:  # the previous contig was abandoned mid-window (see the .pyx)
            self._diff_f[:] = 0
            self._diff_r[:] = 0
        self._tid = tid
        self.length = length
        self.w0 = 0
        self.carry_f = 0
        self.carry_r = 0
        self._pending: list[tuple[int, int, bool]] = []
        self._record: pysam.AlignedSegment | None = None
        self._exhausted = False
        self._last_pos = -1
        self.sum_total = self.sum_fwd = self.sum_rev = self.nonzero_positions = 0
        self.primary_reads = self.clipped_reads = 0
        self.mapq255_reads = self.seqless_reads = self.long_cigar_reads = 0
        self.improper_pair_records = self.off_contig_cut_sites = 0
        self.window_has_total = self.window_has_fwd = self.window_has_rev = False
        self.contig_open = True

    def _push_event(self, pos: int, delta: int, rev: bool) -> None:
        if pos >= self.length:
            return
        if pos < self.w0:  # only a wrong lookbehind gets here (numpy would wrap the index)
            raise RuntimeError("coverage event before the open window (lookbehind too small)")
        if pos < self.w0 + self.chunk_len:
            (self._diff_r if rev else self._diff_f)[pos - self.w0] += delta
        else:
            self._pending.append((pos, delta, rev))

    def _add_record(self, read: pysam.AlignedSegment) -> None:
        rev = False
        if self.strand_mode:
            rev = not is_sense_strand(read.flag, self.strand_mode)
        if self.mode == COUNTING_MODES["reads"]:
            self._add_aligned_blocks(read, rev)
        elif self.mode == COUNTING_MODES["fragments"]:
            self._add_fragment(read, rev)
        else:
            self._add_cut_site(read, rev)

    def _add_aligned_blocks(self, read: pysam.AlignedSegment, rev: bool) -> None:
        ref = read.reference_start
        blocks: list[list[int]] = []
        for op, oplen in read.cigartuples or ():
            if op not in _REF_OPS:
                continue
            covers = op in _COVER_OPS or (op == _DELETION and self.count_deletions)
            if covers and oplen > 0:
                if blocks and blocks[-1][1] == ref:
                    blocks[-1][1] = ref + oplen
                else:
                    blocks.append([ref, ref + oplen])
            ref += oplen
        clipped = False
        for start, end in blocks:
            clipped |= self._emit_block(start, end, rev)
        if clipped:
            self.clipped_reads += 1

    def _emit_block(self, start: int, end: int, rev: bool) -> bool:
        """+1 over [start, end) within the contig; True if it ran past the contig end."""
        clipped = end > self.length
        if clipped:
            if start >= self.length:
                return True
            end = self.length
        self._push_event(start, 1, rev)
        self._push_event(end, -1, rev)
        return clipped

    @staticmethod
    def _reference_end(read: pysam.AlignedSegment) -> int:
        return read.reference_start + sum(n for op, n in read.cigartuples or () if op in _REF_OPS)

    def _add_fragment(self, read: pysam.AlignedSegment, rev: bool) -> None:
        start = read.reference_start
        if read.flag & FLAG_PAIRED:
            tlen = read.template_length
            if not read.flag & FLAG_PROPER_PAIR or tlen == 0:
                self.improper_pair_records += 1
                return
            if tlen < 0:
                return
            end = start + tlen
        else:
            end = self._reference_end(read)
            if self.extend:
                if read.flag & FLAG_REVERSE:
                    start = end - self.extend
                else:
                    end = start + self.extend
        start = max(start, 0)
        if end > start and self._emit_block(start, end, rev):
            self.clipped_reads += 1

    def _add_cut_site(self, read: pysam.AlignedSegment, rev: bool) -> None:
        if read.flag & FLAG_REVERSE:
            site = self._reference_end(read) - 1 + self.shift_rev
        else:
            site = read.reference_start + self.shift_fwd
        if not 0 <= site < self.length:
            self.off_contig_cut_sites += 1
            return
        self._push_event(site, 1, rev)
        self._push_event(site + 1, -1, rev)

    def _passes(self, read: pysam.AlignedSegment) -> bool:
        return not (read.flag & self.exclude_flags) and read.mapping_quality >= self.min_mapq

    def _read_record(self) -> bool:
        try:
            read = next(self._records)
        except StopIteration:
            self._exhausted = True
            return False
        if read.reference_start < self._last_pos:
            raise UnsortedInputError(self._tid, self._last_pos, read.reference_start)
        self._last_pos = read.reference_start
        self._record = read
        return True

    def next_window(self, total: np.ndarray, fwd: np.ndarray, rev: np.ndarray) -> int:
        if not self.contig_open:
            raise ValueError("start_contig() first")
        stranded = self.strand_mode != 0
        while True:
            if self.w0 >= self.length:
                self.contig_open = False
                return -1
            w_end = min(self.w0 + self.chunk_len, self.length)
            touched = False
            still_pending = []
            for pos, delta, is_rev in self._pending:
                if pos < w_end:
                    (self._diff_r if is_rev else self._diff_f)[pos - self.w0] += delta
                    touched = True
                else:
                    still_pending.append((pos, delta, is_rev))
            self._pending = still_pending
            while True:
                if self._record is None and (self._exhausted or not self._read_record()):
                    break
                read = self._record
                assert read is not None
                if read.reference_start >= self.length:
                    self._record = None
                    if self._passes(read):
                        self.clipped_reads += 1
                    continue
                if read.reference_start >= w_end + self.lookbehind:
                    break
                self._record = None
                if not self._passes(read):
                    continue
                if not read.flag & FLAG_NOT_PRIMARY:
                    self.primary_reads += 1
                self.mapq255_reads += read.mapping_quality == 255
                self.seqless_reads += read.query_length == 0
                self.long_cigar_reads += len(read.cigartuples or ()) > 65535
                self._add_record(read)
                touched = True
            if not touched and self.carry_f == 0 and self.carry_r == 0:
                candidates = [p for p, _, _ in self._pending]
                if self._record is not None:
                    candidates.append(self._record.reference_start - self.lookbehind)
                next_pos = min(candidates, default=self.length)
                if next_pos >= self.length:
                    self.w0 = self.length
                    self.contig_open = False
                    return -1
                self.w0 = max(next_pos - next_pos % self.chunk_len, w_end)
                continue
            width = w_end - self.w0
            cov_f = np.cumsum(self._diff_f[:width]) + self.carry_f
            self._diff_f[:width] = 0
            self.carry_f = int(cov_f[-1])
            if stranded:
                cov_r = np.cumsum(self._diff_r[:width]) + self.carry_r
                self._diff_r[:width] = 0
                self.carry_r = int(cov_r[-1])
                fwd[:width] = cov_f
                rev[:width] = cov_r
                fwd[width:] = 0
                rev[width:] = 0
                total[:width] = cov_f + cov_r
                s_f, s_r = int(cov_f.sum()), int(cov_r.sum())
            else:
                total[:width] = cov_f
                s_f = s_r = 0
            total[width:] = 0
            s_t = int(total[:width].sum(dtype=np.uint64))
            self.sum_total += s_t
            self.sum_fwd += s_f
            self.sum_rev += s_r
            self.nonzero_positions += int(np.count_nonzero(total[:width]))
            self.window_has_total = s_t != 0
            self.window_has_fwd = s_f != 0
            self.window_has_rev = s_r != 0
            start = self.w0
            self.w0 = w_end
            if s_t == 0:
                continue
            return start


@functools.cache
def _compiled_module():
    try:
        import pysam.libchtslib  # noqa: F401  (loads htslib before the extension links to it)

        from bamstore.engine import _coverage
    except ImportError as exc:  # pragma: no cover - depends on how the package was built
        log.debug("compiled kernel unavailable: %s", exc)
        return None
    check_compiled_source(_coverage)
    return _coverage


def check_compiled_source(module: Any) -> None:
    """In a source checkout (the .pyx beside the extension), the extension must have been built
    from that very .pyx: an editable install keeps an old build after `git pull`, and its
    interface may no longer match this module's calls. Installed packages carry no .pyx."""
    source = Path(module.__file__).with_name("_coverage.pyx")
    if not source.is_file():
        return
    built_from = getattr(module, "SOURCE_SHA256", None)
    if built_from != hashlib.sha256(source.read_bytes()).hexdigest():
        raise StaleKernelError(
            module.__file__,
            f"the compiled kernel was built from another version of {source.name}",
            "rebuild it with `make install` (or `pip install -e .`)",
        )


class FedCoverageReader:
    """The compiled kernel parsing BAM records from libdeflate-inflated blocks (blocks.py).

    Presents the same interface as the other readers: it answers the kernel's NEED_DATA by
    feeding the next block of the contig's byte range, found through the BAM index.

    If those blocks cannot be read as the contig's records (an index made by another tool or
    an old samtools that disagrees with the file, or a damaged block), the contig is read again
    through htslib's iterator over the same index, and the windows already handed out are
    skipped: htslib decides whether the file is readable, never the fast path alone. Both
    failing means the file is damaged, and the fast path's (more precise) error is raised.
    """

    def __init__(self, inner: Any, path: str, executor: Executor, workers: int) -> None:
        from bamstore.engine.blocks import BgzfReader

        self._inner = inner
        self._path = path
        self._blocks_reader = BgzfReader(path, executor, workers)
        self._blocks: Iterator[tuple[bytes, int]] = iter(())
        self._tid = -1
        self._length = 0
        self._last_start = -1  # start of the last window handed out for this contig
        self._fallback_reason: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def start_contig(self, tid: int, length: int) -> None:
        span = self._inner.contig_span(tid)
        self._inner.start_contig(tid, length, fed=True)
        self._blocks = self._blocks_reader.blocks(*span) if span else iter(())
        self._tid, self._length = tid, length
        self._last_start = -1
        self._fallback_reason = None

    def next_window(self, total: np.ndarray, fwd: np.ndarray, rev: np.ndarray) -> int:
        from bamstore.engine.blocks import BgzfError

        if self._fallback_reason is None:
            try:
                start = self._next_fed_window(total, fwd, rev)
            except (BgzfError, OSError) as exc:
                start = self._read_through_htslib(exc, total, fwd, rev)
        else:
            start = self._htslib_window(total, fwd, rev)
        if start >= 0:
            self._last_start = start
        return start

    def _next_fed_window(self, total: np.ndarray, fwd: np.ndarray, rev: np.ndarray) -> int:
        inner = self._inner
        need = _NEED_DATA
        while True:
            start = inner.next_window(total, fwd, rev)
            if start != need:
                return start
            block = next(self._blocks, None)
            if block is None:
                inner.finish_data()
            else:
                inner.feed(*block)

    def _read_through_htslib(
        self, exc: BaseException, total: np.ndarray, fwd: np.ndarray, rev: np.ndarray
    ) -> int:
        """Restart the contig on htslib's iterator; skip the windows already handed out."""
        log.debug(
            "%s: contig %d: fast path failed (%s); htslib reads it", self._path, self._tid, exc
        )
        close = getattr(self._blocks, "close", None)
        if close is not None:
            close()
        self._fallback_reason = exc
        self._inner.start_contig(self._tid, self._length, fed=False)
        while True:
            start = self._htslib_window(total, fwd, rev)
            if start < 0 or start > self._last_start:
                return start

    def _htslib_window(self, total: np.ndarray, fwd: np.ndarray, rev: np.ndarray) -> int:
        reason = self._fallback_reason
        assert reason is not None
        try:
            start = self._inner.next_window(total, fwd, rev)
        except OSError as exc:
            raise reason from exc  # htslib cannot read it either: the file is damaged
        if start < 0:
            name = self._inner.contig_name(self._tid)
            log.warning(
                "%s: the index does not match the file on %s (%s); %s was read through htslib "
                "instead (re-index with samtools index to read it at full speed)",
                self._path,
                name,
                reason,
                name,
            )
        return start

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._blocks_reader.close()


_NEED_DATA = -5  # _coverage.NEED_DATA; checked against the module in open_coverage_reader
STREAM_END = -7  # _coverage.STREAM_END: next_stream_contig once a stream has no more records


class StreamCoverageReader:
    """A kernel reading a BAM stream front to back (`--bam -`), without an index.

    Besides the CoverageReader interface: `next_stream_contig` says which contig the stream
    goes on with (STREAM_END at its end), and the driver either starts that contig or calls
    `skip_stream_contig` (then `skipped_mapped` counts its mapped records). The compiled kernel
    is fed the stream's blocks (blocks.stream_blocks) whenever it answers NEED_DATA; the htslib
    and Python kernels read the stream through a pipe themselves.
    """

    def __init__(
        self,
        inner: Any,
        blocks: Iterator[tuple[bytes, int]] | None,
        close_source: Callable[[], None] | None = None,
    ) -> None:
        self._inner = inner
        self._blocks = blocks
        self._close_source = close_source

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _fed(self, call: Callable[[], int]) -> int:
        while True:
            result = call()
            if result != _NEED_DATA or self._blocks is None:
                return result
            block = next(self._blocks, None)
            if block is None:
                self._inner.finish_data()
            else:
                self._inner.feed(*block)

    def next_stream_contig(self) -> int:
        return self._fed(self._inner.next_stream_contig)

    def skip_stream_contig(self) -> None:
        self._fed(self._inner.skip_stream_contig)

    def start_contig(self, tid: int, length: int) -> None:
        self._inner.start_contig(tid, length)

    def next_window(self, total: np.ndarray, fwd: np.ndarray, rev: np.ndarray) -> int:
        return self._fed(lambda: self._inner.next_window(total, fwd, rev))

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            if self._close_source is not None:
                self._close_source()
            close_blocks = getattr(self._blocks, "close", None)
            if close_blocks is not None:
                close_blocks()


_EXECUTORS: dict[int, ThreadPoolExecutor] = {}


def _shared_executor(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool for callers that do not bring their own (tests, the API)."""
    if threads not in _EXECUTORS:
        _EXECUTORS[threads] = ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="bamstore"
        )
    return _EXECUTORS[threads]


def available_kernels() -> list[KernelName]:
    compiled: list[KernelName] = ["compiled", "htslib"] if _compiled_module() else []
    return [*compiled, "python"]


def default_kernel() -> KernelName:
    """`BAMSTORE_KERNEL` (compiled, htslib, python) chooses; otherwise compiled if built."""
    wanted = os.environ.get("BAMSTORE_KERNEL", "").strip().lower()
    if wanted == "python":
        return "python"
    if _compiled_module() is not None:
        return "htslib" if wanted == "htslib" else "compiled"
    if wanted in ("compiled", "htslib"):
        raise RuntimeError(f"BAMSTORE_KERNEL={wanted} but the compiled kernel is not built")
    log.warning("compiled coverage kernel not built; using the slower pure-Python kernel")
    return "python"


def open_coverage_reader(
    path: str,
    index_path: str,
    *,
    chunk_len: int,
    read_filter: ReadFilter,
    counting: CountingMode | None = None,
    strandedness: str = "",
    threads: int = 1,
    reference: str | None = None,
    kernel: KernelName | None = None,
    executor: Executor | None = None,
) -> CoverageReader:
    """Open the chosen kernel over one indexed BAM/CRAM.

    compiled: BAM records parsed from libdeflate blocks inflated on `executor` (CRAM goes
    through htslib); htslib: the compiled kernel over htslib's record iterator, with `threads`
    htslib decompression threads; python: the pure-Python twin.
    """
    kernel = kernel or default_kernel()
    kwargs = _kernel_kwargs(chunk_len, read_filter, counting, strandedness, reference)
    if kernel == "python":
        return PythonCoverageReader(path, index_path, threads=threads, **kwargs)
    module = _compiled_module()
    if module is None:
        raise RuntimeError("the compiled kernel is not built")
    assert module.NEED_DATA == _NEED_DATA
    if kernel == "compiled" and reference is None:
        inner = module.CompiledCoverageReader(path, index_path, threads=1, **kwargs)
        if executor is None:
            executor = _shared_executor(threads)
        return FedCoverageReader(inner, path, executor, threads)
    return module.CompiledCoverageReader(path, index_path, threads=threads, **kwargs)


def _kernel_kwargs(
    chunk_len: int,
    read_filter: ReadFilter,
    counting: CountingMode | None,
    strandedness: str,
    reference: str | None,
) -> dict[str, Any]:
    return dict(
        chunk_len=chunk_len,
        exclude_flags=read_filter.exclude_flags,
        min_mapq=read_filter.min_mapq,
        count_deletions=read_filter.count_deletions,
        strand_mode=STRAND_MODES[strandedness],
        reference=reference,
        **(counting or CountingMode()).kernel_args(),
    )


def open_stream_reader(
    streamed: StreamedInput,
    *,
    chunk_len: int,
    read_filter: ReadFilter,
    counting: CountingMode | None = None,
    strandedness: str = "",
    threads: int = 1,
    kernel: KernelName | None = None,
    executor: Executor | None = None,
) -> StreamCoverageReader:
    """Open the chosen kernel over a checked BAM stream (bam_input.stream), read once.

    compiled: records parsed from the stream's blocks, inflated on `executor`; htslib and
    python: the kernel reads the whole stream (header included) from a pipe.
    """
    from bamstore.engine.blocks import stream_blocks

    kernel = kernel or default_kernel()
    kwargs = _kernel_kwargs(chunk_len, read_filter, counting, strandedness, None)
    stream = streamed.stream
    if kernel == "compiled":
        module = _compiled_module()
        if module is None:
            raise RuntimeError("the compiled kernel is not built")
        assert module.STREAM_END == STREAM_END
        inner = module.CompiledCoverageReader(
            None, None, stream=True, n_targets=len(streamed.alignment.contigs), **kwargs
        )
        blocks = stream_blocks(
            stream.chunks(streamed.start.block_offset),
            executor or _shared_executor(threads),
            threads,
            streamed.start.in_block,
        )
        return StreamCoverageReader(inner, blocks)
    path, close_pipe = stream.replay_path()
    try:
        if kernel == "python":
            inner = PythonCoverageReader(path, None, threads=threads, stream=True, **kwargs)
        else:
            module = _compiled_module()
            if module is None:
                raise RuntimeError("the compiled kernel is not built")
            inner = module.CompiledCoverageReader(
                path, None, threads=threads, stream=True, **kwargs
            )
    except BaseException:
        close_pipe()
        raise
    return StreamCoverageReader(inner, None, close_pipe)
