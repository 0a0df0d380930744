"""The coverage kernel: which record source feeds the compiled kernel, and how it is opened.

`CompiledCoverageReader` (bamstore/engine/_coverage.pyx) is the one implementation, over two
record sources: "compiled" parses BAM records from blocks inflated by libdeflate (`blocks.py`,
`FedCoverageReader`), and "htslib" takes them from htslib's iterator (CRAM, and the fallback
when an index and its file disagree). The tests hold both to samtools depth, bedtools and a
numpy oracle of each counting mode, and to each other.

Either reads a coordinate-sorted, indexed BAM/CRAM one contig at a time and hands out coverage
one chunk window at a time, so memory depends on chunk_len, never on contig length; either also
reads a BAM stream front to back without an index (`--bam -`, `StreamCoverageReader`). What a
counted record adds (its aligned bases, its fragment or its cut site) is `options.CountingMode`;
which records count is `options.ReadFilter`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from bamstore.errors import InputError, StaleKernelError
from bamstore.options import STRAND_MODES, CountingMode, ReadFilter

if TYPE_CHECKING:
    from bamstore.engine.bam_input.stream import StreamedInput

log = logging.getLogger(__name__)

KernelName = Literal["compiled", "htslib"]
KERNELS: tuple[KernelName, ...] = ("compiled", "htslib")


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
    single_end_records: int
    outside_fragment_len: int
    window_has_total: bool
    window_has_fwd: bool
    window_has_rev: bool

    def start_contig(self, tid: int, length: int) -> None: ...

    def next_window(self, total: np.ndarray, fwd: np.ndarray, rev: np.ndarray) -> int: ...

    def close(self) -> None: ...


@functools.cache
def _compiled_module() -> Any:
    """The compiled extension, checked against its source; an install without it is broken
    (setup.py fails when the extension does not build), which the user fixes by rebuilding."""
    try:
        import pysam.libchtslib  # noqa: F401  (loads htslib before the extension links to it)

        from bamstore.engine import _coverage
    except ImportError as exc:  # pragma: no cover - an install whose build was skipped
        raise InputError(
            "bamstore.engine._coverage",
            f"the compiled kernel cannot be loaded ({exc})",
            "rebuild it with `make install` (or `pip install -e .`)",
        ) from None
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
    kernel reads the stream through a pipe itself.
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
    """The kernels this install runs: both need the compiled extension, loaded (and checked
    against its source) here."""
    _compiled_module()
    return list(KERNELS)


def default_kernel() -> KernelName:
    """`BAMSTORE_KERNEL` (compiled or htslib) chooses; otherwise compiled."""
    wanted = os.environ.get("BAMSTORE_KERNEL", "").strip().lower()
    if not wanted:
        return "compiled"
    if wanted not in KERNELS:
        raise InputError(
            "BAMSTORE_KERNEL",
            f"{wanted!r} is not a kernel",
            f"set it to {' or '.join(KERNELS)}, or unset it",
        )
    return wanted  # type: ignore[return-value]


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
    htslib decompression threads.
    """
    kernel = kernel or default_kernel()
    kwargs = _kernel_kwargs(chunk_len, read_filter, counting, strandedness, reference)
    module = _compiled_module()
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

    compiled: records parsed from the stream's blocks, inflated on `executor`; htslib: the
    kernel reads the whole stream (header included) from a pipe.
    """
    from bamstore.engine.blocks import stream_blocks

    kernel = kernel or default_kernel()
    kwargs = _kernel_kwargs(chunk_len, read_filter, counting, strandedness, None)
    stream = streamed.stream
    module = _compiled_module()
    if kernel == "compiled":
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
        inner = module.CompiledCoverageReader(path, None, threads=threads, stream=True, **kwargs)
    except BaseException:
        close_pipe()
        raise
    return StreamCoverageReader(inner, None, close_pipe)
