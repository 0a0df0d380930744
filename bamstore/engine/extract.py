"""One BAM → one per-sample store (the consolidated layout with a single sample row).

The kernel fills one chunk window at a time with the GIL released; worker threads compress and
write the previous windows meanwhile. Memory is a few chunk-sized buffers, whatever the contig
length. The store is built at a temporary sibling path and published by rename.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from bamstore import layout
from bamstore.engine.bam_input import (
    AlignmentInput,
    account_for_left_out,
    fingerprint,
    open_alignment,
    parse_selection,
    prefix_md5,
    read_chromsizes,
    report_left_out,
    select_contigs,
    usable_index,
)
from bamstore.engine.bam_input.fixes import read_every_record, sort_and_index
from bamstore.engine.bam_input.stream import InputStream, StreamedInput, is_stdin, open_stream
from bamstore.engine.blocks import BgzfError
from bamstore.engine.kernel import (
    STREAM_END,
    CoverageReader,
    KernelName,
    StreamCoverageReader,
    UnsortedInputError,
    default_kernel,
    open_coverage_reader,
    open_stream_reader,
)
from bamstore.engine.publish import check_output_path, staged_output
from bamstore.engine.samplesheet import (
    SAMPLE_NAME_FIX,
    SCALE_FACTOR_FIX,
    STRANDEDNESS_FIX,
    sample_name_problem,
    scale_factor_problem,
    strandedness_problem,
)
from bamstore.engine.writer import ContigRows, StoreWriter
from bamstore.errors import InputError, InputErrors
from bamstore.options import CountingMode, ReadFilter

log = logging.getLogger(__name__)

LONG_CONTIG = 20_000_000  # contigs at least this long get their own progress line


@dataclass(frozen=True)
class GivenContigs:
    """Contigs given in memory instead of a `--chromsizes` file (the Python API); `label`
    names them in messages ("the store", "chromsizes")."""

    contigs: tuple[tuple[str, int], ...]
    label: str


@dataclass(frozen=True)
class ExtractOptions:
    """Settings of one extraction; all but threads/kernel/tmp_dir are recorded in the store
    (strandedness and scale_factor with the sample, the others as the store's settings)."""

    read_filter: ReadFilter = field(default_factory=ReadFilter)
    counting: CountingMode = field(default_factory=CountingMode)
    chromosomes: str = "primary"
    chromsizes: Path | GivenContigs | None = None
    chunk_len: int = layout.DEFAULT_CHUNK_LEN
    compression: str = "default"
    strandedness: str = ""
    reference: Path | None = None
    threads: int = 1
    kernel: KernelName | None = None
    tmp_dir: Path | None = None
    shard: bool = layout.SHARD_BY_DEFAULT
    scale_factor: float | None = None

    def __post_init__(self) -> None:
        if self.chunk_len < 1:
            raise InputError(
                None,
                f"--chunk-len {self.chunk_len} must be at least 1",
                f"use the default {layout.DEFAULT_CHUNK_LEN}",
            )
        problem = strandedness_problem(self.strandedness)
        if problem:
            raise InputError(None, problem, STRANDEDNESS_FIX)
        if self.scale_factor is not None:
            problem = scale_factor_problem(self.scale_factor)
            if problem:
                raise InputError(None, problem, SCALE_FACTOR_FIX)
            object.__setattr__(self, "scale_factor", float(self.scale_factor))
        try:
            layout.compression_profile(self.compression)
        except ValueError as exc:
            raise InputError(None, str(exc), None) from None
        if self.read_filter.min_mapq < 0 or not 0 <= self.read_filter.exclude_flags <= 0xFFFF:
            raise InputError(
                None,
                "--min-mapq must be >= 0 and --exclude-flags within 0..0xFFFF",
                "use e.g. --exclude-flags 0x704 --min-mapq 0",
            )
        if self.read_filter.count_deletions and self.counting.mode != "reads":
            raise InputError(
                None,
                f"--count-deletions applies to --mode reads only ({self.counting.mode} cover "
                "whole alignment spans)",
                "drop --count-deletions",
            )

    @classmethod
    def from_settings(cls, settings: layout.StoreSettings, **other: Any) -> ExtractOptions:
        """Options that count a sample exactly as a store's other samples were counted."""
        read_filter = ReadFilter(
            **{f.name: getattr(settings, f.name) for f in dataclasses.fields(ReadFilter)}
        )
        counting = CountingMode(
            **{f.name: getattr(settings, f.name) for f in dataclasses.fields(CountingMode)}
        )
        return cls(
            read_filter=read_filter,
            counting=counting,
            chromosomes=settings.chromosome_selection,
            chunk_len=settings.chunk_len,
            compression=settings.compression,
            shard=settings.shard,
            **other,
        )

    def store_settings(self) -> layout.StoreSettings:
        """What is recorded in the store and must agree between parts that are merged."""
        rule = parse_selection(self.chromosomes)  # canonical: " Primary" and "primary" are one
        return layout.StoreSettings.from_counting(
            self.read_filter,
            self.counting,
            chunk_len=self.chunk_len,
            compression=layout.compression_profile(self.compression).name,
            chromosome_selection=rule if isinstance(rule, str) else ",".join(rule),
            shard=self.shard,
        )


@dataclass
class ContigResult:
    name: str
    length: int
    sum_total: int = 0
    sum_fwd: int = 0
    sum_rev: int = 0
    nonzero_positions: int = 0
    primary_reads: int = 0
    clipped_reads: int = 0
    mapq255_reads: int = 0
    seqless_reads: int = 0
    long_cigar_reads: int = 0
    improper_pair_records: int = 0
    off_contig_cut_sites: int = 0
    single_end_records: int = 0  # left out by a fragment-length filter
    outside_fragment_len: int = 0  # pairs outside a fragment-length filter's range
    # (column, CRC32 of the encoded chunk) per array kind: "total", "fwd", "rev"
    chunk_crcs: dict[str, list[tuple[int, int]]] = field(
        default_factory=lambda: {"total": [], "fwd": [], "rev": []}
    )


@dataclass
class SampleResult:
    """What extraction learned about one sample; becomes its metadata row and `bamstore` entry."""

    sample: str
    bam: Path
    strandedness: str
    contigs: list[ContigResult]
    sample_hash: bytes
    source: dict[str, Any]
    kernel: str
    counting: CountingMode = field(default_factory=CountingMode)
    seconds: float = 0.0
    scale_factor: float | None = None

    @property
    def total_reads(self) -> int:
        """Primary records that pass the read filter (and a fragment-length filter) and start
        on a kept contig (every mode)."""
        return sum(c.primary_reads for c in self.contigs)

    @property
    def outside_fragment_len(self) -> int:
        return sum(c.outside_fragment_len for c in self.contigs)

    @property
    def sparsity(self) -> float:
        """QuantNado's definition: % zero positions per contig, averaged without length weights."""
        return float(
            np.mean([100.0 * (c.length - c.nonzero_positions) / c.length for c in self.contigs])
        )

    def warnings(self) -> dict[str, int]:
        keys = ["clipped_reads", "mapq255_reads", "seqless_reads", "long_cigar_reads"]
        if self.counting.mode == "fragments" or self.counting.filters_fragment_len:
            keys.append("improper_pair_records")
        if self.counting.mode == "cutsites":
            keys.append("off_contig_cut_sites")
        if self.counting.filters_fragment_len:
            keys.append("single_end_records")
        return {key: sum(getattr(c, key) for c in self.contigs) for key in keys}

    def record(self) -> layout.SampleRecord:
        """This sample's entry in the store's `bamstore` record."""
        crcs = [c.chunk_crcs for c in self.contigs]
        stranded = bool(self.strandedness)
        return layout.SampleRecord(
            strandedness=self.strandedness,
            source=layout.SourceFingerprint(path=str(self.bam), **self.source),
            total_reads=self.total_reads,
            contig_sums=tuple(c.sum_total for c in self.contigs),
            digests=tuple(layout.chunk_digest(c["total"]) for c in crcs),
            fwd_sums=tuple(c.sum_fwd for c in self.contigs) if stranded else (),
            rev_sums=tuple(c.sum_rev for c in self.contigs) if stranded else (),
            fwd_digests=tuple(layout.chunk_digest(c["fwd"]) for c in crcs) if stranded else (),
            rev_digests=tuple(layout.chunk_digest(c["rev"]) for c in crcs) if stranded else (),
            warnings=self.warnings(),
            kernel=self.kernel,
            scale_factor=self.scale_factor,
            columns=tuple(_columns(c["total"]) for c in crcs),
            fwd_columns=tuple(_columns(c["fwd"]) for c in crcs) if stranded else (),
            rev_columns=tuple(_columns(c["rev"]) for c in crcs) if stranded else (),
        )


def _columns(chunk_crcs: list[tuple[int, int]]) -> str:
    """The columns of a row's chunks, as the record lists them."""
    return layout.columns_text(col for col, _ in chunk_crcs)


class _WindowBuffers:
    def __init__(self, chunk_len: int, stranded: bool) -> None:
        self.total = np.zeros(chunk_len, dtype=layout.COVERAGE_DTYPE)
        self.fwd = np.zeros(chunk_len, dtype=layout.COVERAGE_DTYPE) if stranded else self.total
        self.rev = np.zeros(chunk_len, dtype=layout.COVERAGE_DTYPE) if stranded else self.total


class ExtractionCancelled(Exception):
    """The extraction stopped because its caller asked it to (`cancel` was set)."""


def _count_windows(
    reader: CoverageReader,
    alignment: AlignmentInput,
    contigs: list[tuple[str, int]],
    writer: StoreWriter,
    options: ExtractOptions,
    sample: str,
    pool: ThreadPoolExecutor,
    cancel: threading.Event | None,
    order: Iterable[tuple[str, int]] | None = None,
) -> list[ContigResult]:
    """Drive the kernel over every kept contig; encode and write windows on the worker pool.

    `order`: the contigs in the order they are read, if not `contigs` (a stream's order); a
    kept contig it never reaches holds no reads. Results come in the order of `contigs`.
    """
    stranded = bool(options.strandedness)
    encoder = layout.compression_profile(options.compression).encoder()
    workers = max(1, options.threads)
    free: queue.Queue[_WindowBuffers] = queue.Queue()
    for _ in range(workers + 2):
        free.put(_WindowBuffers(options.chunk_len, stranded))
    failure: list[BaseException] = []
    stop = threading.Event()

    kinds = ("total", "fwd", "rev") if stranded else ("total",)

    def encode_and_write(
        bufs: _WindowBuffers,
        rows: ContigRows,
        ticket: int,
        col: int,
        has: tuple[bool, ...],
        result: ContigResult,
    ) -> None:
        chunks: list[bytes | None] = [None] * len(kinds)
        try:
            values = (bufs.total, bufs.fwd, bufs.rev)
            for i in range(len(kinds)):
                if has[i]:  # all-zero chunks are not stored (zarr's write_empty_chunks=False)
                    chunks[i] = encoder.encode(values[i])
        except BaseException as exc:
            failure.append(exc)
            stop.set()
            chunks = [None] * len(kinds)
        finally:
            free.put(bufs)
        try:
            rows.put(ticket, col, chunks)  # every ticket is put, so a sharded row never waits
            for kind, data in zip(kinds, chunks, strict=True):
                if data is not None:
                    result.chunk_crcs[kind].append((col, zlib.crc32(data)))
        except BaseException as exc:
            failure.append(exc)
            stop.set()

    results: dict[str, ContigResult] = {}
    tids = alignment.tids
    futures: list[Future[None]] = []
    for name, length in contigs if order is None else order:
        started = time.monotonic()
        result = ContigResult(name, length)
        rows = writer.contig_rows(
            layout.coverage_array_names([name], stranded), 0, length, 2 * (workers + 2)
        )
        reader.start_contig(tids[name], length)
        while not stop.is_set():
            if cancel is not None and cancel.is_set():
                stop.set()
                failure.append(ExtractionCancelled(sample))
                break
            bufs = free.get()
            start = _next_window(reader, bufs, alignment.path, name)
            if start < 0:
                free.put(bufs)
                break
            has = (reader.window_has_total, reader.window_has_fwd, reader.window_has_rev)
            col = start // options.chunk_len
            futures.append(pool.submit(encode_and_write, bufs, rows, rows.take(), col, has, result))
        if stop.is_set():
            break
        rows.finish()
        for key in (
            "sum_total",
            "sum_fwd",
            "sum_rev",
            "nonzero_positions",
            "primary_reads",
            "clipped_reads",
            "mapq255_reads",
            "seqless_reads",
            "long_cigar_reads",
            "improper_pair_records",
            "off_contig_cut_sites",
            "single_end_records",
            "outside_fragment_len",
        ):
            setattr(result, key, int(getattr(reader, key)))
        results[name] = result
        if length >= LONG_CONTIG:
            log.info(
                "%s: %s done (%.0f Mbp, %d reads, %.1f s)",
                sample,
                name,
                length / 1e6,
                result.primary_reads,
                time.monotonic() - started,
            )
    for fut in futures:
        fut.result()
    if failure:  # checked after every write has finished: a late failure must not be lost
        raise failure[0]
    return [results.get(name) or ContigResult(name, length) for name, length in contigs]


def _stream_order(
    reader: StreamCoverageReader,
    alignment: AlignmentInput,
    contigs: list[tuple[str, int]],
    left_out: dict[str, int | None],
) -> Iterator[tuple[str, int]]:
    """The kept contigs in the order a stream holds them; the others are read past, their
    mapped records counted in `left_out`. Contigs must come whole, unplaced reads last (the
    order samtools sort writes and samtools index requires of a file)."""
    names = [name for name, _ in alignment.contigs]
    kept = dict(contigs)
    path = alignment.path
    seen: set[int] = set()
    previous: int | None = None
    while True:
        with _reading(path, "the next contig"):
            tid = reader.next_stream_contig()
        if tid == STREAM_END:
            return
        where = None
        if previous == -1:
            where = f"a record on {names[tid]} follows unplaced reads (they go last)"
        elif tid in seen:
            where = f"records of {names[tid]} are not together"
        if where:
            raise InputError(path, f"is not sorted by coordinate: {where}", sort_and_index(path))
        seen.add(tid)
        previous = tid
        name = names[tid] if tid >= 0 else "unplaced reads"
        if tid >= 0 and name in kept:
            yield name, kept[name]
            continue
        with _reading(path, name):
            reader.skip_stream_contig()
        if tid >= 0 and reader.skipped_mapped:
            left_out[name] = int(reader.skipped_mapped)


def _next_window(reader: CoverageReader, bufs: _WindowBuffers, path: Path, contig: str) -> int:
    with _reading(path, contig):
        return reader.next_window(bufs.total, bufs.fwd, bufs.rev)
    raise AssertionError("unreachable")  # pragma: no cover (_reading only re-raises)


@contextlib.contextmanager
def _reading(path: Path, contig: str) -> Iterator[None]:
    """The kernel's read errors as one-line input errors naming `path` and `contig`."""
    try:
        yield
    except UnsortedInputError as exc:
        raise InputError(
            path,
            f"is not sorted by coordinate: on {contig} a record at "
            f"{exc.pos + 1} follows one at {exc.prev_pos + 1}",
            sort_and_index(path),
        ) from None
    except BgzfError as exc:
        raise InputError(
            path,
            f"is corrupted or truncated: {exc} (while reading {contig})",
            "re-create or re-download it; check with: " + read_every_record(path),
        ) from None
    except OSError as exc:
        cram = False
        if not is_stdin(path):  # a stream is BAM (stream.py refuses CRAM)
            with open(path, "rb") as fh:
                cram = fh.read(4) == b"CRAM"
        if cram:  # htslib cannot tell a damaged CRAM from one decoded with the wrong genome
            raise InputError(
                path,
                f"a record on {contig} cannot be decoded: --reference is not the genome the "
                "CRAM was made with (see its @SQ M5 tags), or the file is corrupted",
                "pass the FASTA it was aligned to; check the file with samtools quickcheck -v",
            ) from exc
        if is_stdin(path):  # htslib cannot tell a cut stream from a damaged one
            raise InputError(
                path,
                f"is corrupted or truncated: a record on {contig} cannot be decoded",
                "re-create the stream; a partial BAM gives wrong coverage",
            ) from exc
        raise InputError(
            path,
            f"is corrupted: a record on {contig} cannot be decoded",
            "re-create or re-download it; check with: " + read_every_record(path),
        ) from exc


def count_sample(
    alignment: AlignmentInput,
    contigs: list[tuple[str, int]],
    writer: StoreWriter,
    options: ExtractOptions,
    sample: str,
    index: Path | None = None,
    cancel: threading.Event | None = None,
) -> SampleResult:
    """Count coverage of one sample into `writer` (row 0) and return its summary; stops with
    ExtractionCancelled at the next window once `cancel` is set."""
    kernel = options.kernel or default_kernel()
    started = time.monotonic()
    with (
        usable_index(alignment, index, scratch_dir=options.tmp_dir, threads=options.threads) as idx,
        ThreadPoolExecutor(
            max_workers=max(1, options.threads), thread_name_prefix="bamstore"
        ) as pool,
    ):
        account_for_left_out(
            alignment, contigs, options.chromosomes, idx, from_chromsizes=bool(options.chromsizes)
        )
        reader = open_coverage_reader(
            str(alignment.path),
            str(idx),
            chunk_len=options.chunk_len,
            read_filter=options.read_filter,
            counting=options.counting,
            strandedness=options.strandedness,
            threads=options.threads,
            reference=str(options.reference) if options.reference else None,
            # the block-fed path parses BAM only; a CRAM (with or without --reference) is
            # decoded by htslib
            kernel="htslib" if alignment.format == "cram" and kernel == "compiled" else kernel,
            executor=pool,
        )
        try:
            results = _count_windows(
                reader, alignment, contigs, writer, options, sample, pool, cancel
            )
        except BaseException:
            writer.abort_rows()  # unfinished shards: their files are closed and removed
            raise
        finally:
            reader.close()
    return SampleResult(
        sample=sample,
        bam=alignment.path,
        strandedness=options.strandedness,
        contigs=results,
        sample_hash=prefix_md5(alignment.path),
        source=fingerprint(alignment),
        kernel=kernel,
        counting=options.counting,
        seconds=time.monotonic() - started,
        scale_factor=options.scale_factor,
    )


def count_stream(
    streamed: StreamedInput,
    contigs: list[tuple[str, int]],
    writer: StoreWriter,
    options: ExtractOptions,
    sample: str,
    cancel: threading.Event | None = None,
) -> SampleResult:
    """`count_sample` for a BAM stream (`--bam -`): one pass, front to back, no index."""
    kernel = options.kernel or default_kernel()
    alignment = streamed.alignment
    started = time.monotonic()
    left_out: dict[str, int | None] = {}
    with ThreadPoolExecutor(
        max_workers=max(1, options.threads), thread_name_prefix="bamstore"
    ) as pool:
        reader = open_stream_reader(
            streamed,
            chunk_len=options.chunk_len,
            read_filter=options.read_filter,
            counting=options.counting,
            strandedness=options.strandedness,
            threads=options.threads,
            kernel=kernel,
            executor=pool,
        )
        try:
            order = _stream_order(reader, alignment, contigs, left_out)
            results = _count_windows(
                reader, alignment, contigs, writer, options, sample, pool, cancel, order
            )
        finally:
            reader.close()
    if not streamed.stream.ends_with_eof_block:  # a file is checked for it when opened
        raise InputError(
            alignment.path,
            "is truncated (the BGZF end-of-file marker is missing)",
            "re-create the stream; a partial BAM gives wrong coverage",
        )
    if cancel is None or not cancel.is_set():
        report_left_out(
            alignment,
            contigs,
            options.chromosomes,
            left_out,
            from_chromsizes=bool(options.chromsizes),
        )
    return SampleResult(
        sample=sample,
        bam=alignment.path,
        strandedness=options.strandedness,
        contigs=results,
        sample_hash=streamed.sample_hash,
        # a stream has no modification time; its size is what was read
        source={
            "size": streamed.stream.bytes_read,
            "mtime_ns": 0,
            "header_md5": alignment.header_md5,
        },
        kernel=kernel,
        counting=options.counting,
        seconds=time.monotonic() - started,
        scale_factor=options.scale_factor,
    )


def prepare_input(
    bam: Path, sample: str, options: ExtractOptions
) -> tuple[AlignmentInput, list[tuple[str, int]]]:
    """All input checks that need no output: name, format, header, contig selection."""
    _check_sample_name(bam, sample)
    if is_stdin(bam):  # `extract_sample` reads it; elsewhere (build, the API) a file is needed
        raise InputError(
            bam,
            "standard input can only be read by bamstore extract --bam - (one sample at a time)",
            "give the BAM file's path, or extract each stream with bamstore extract --bam - "
            "and merge the per-sample stores",
        )
    alignment = open_alignment(bam, options.reference)
    return alignment, _kept_contigs(bam, alignment, options)


def prepare_stream(
    source: BinaryIO, sample: str, options: ExtractOptions
) -> tuple[StreamedInput, list[tuple[str, int]]]:
    """`prepare_input` for a stream: its first bytes are looked at and kept, not consumed."""
    stream = InputStream(source)
    _check_sample_name(stream.path, sample)
    streamed = open_stream(stream, options.reference, options.tmp_dir)
    return streamed, _kept_contigs(stream.path, streamed.alignment, options)


def _check_sample_name(bam: Path, sample: str) -> None:
    problem = sample_name_problem(sample)
    if problem:
        raise InputError(bam, problem, SAMPLE_NAME_FIX)


def _kept_contigs(
    bam: Path, alignment: AlignmentInput, options: ExtractOptions
) -> list[tuple[str, int]]:
    given = options.chromsizes
    if isinstance(given, GivenContigs):
        universe, label, source = list(given.contigs), given.label, given.label
    elif given is not None:
        universe, label, source = read_chromsizes(given), given, f"the chromsizes file {given}"
    else:
        universe, label, source = None, None, "the BAM header"
    contigs = select_contigs(alignment, options.chromosomes, universe, label)  # type: ignore[arg-type]
    check_contig_names(bam, contigs, bool(options.strandedness), source)
    return contigs


def check_contig_names(
    bam: Path, contigs: list[tuple[str, int]], stranded: bool, source: str
) -> None:
    """Refuse contigs whose arrays cannot be written (unsafe or colliding names), all at once,
    before anything is written; `source` says where they were listed."""
    problems = [
        InputError(
            bam,
            f"contig {name!r} from {source} cannot be stored: {problem}",
            "leave it out with --chromosomes (e.g. --chromosomes primary, or a "
            "comma-separated list of the contigs to keep)",
        )
        for name, problem in layout.contig_name_problems([c for c, _ in contigs], stranded)
    ]
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputErrors(problems, header=f"{len(problems)} contig(s) cannot be stored")


def write_sample_store(result: SampleResult, writer: StoreWriter, options: ExtractOptions) -> None:
    """Metadata arrays and root attributes of a one-sample store."""
    sparsity = float(np.float32(result.sparsity))
    writer.write_metadata(
        layout.MetadataArrays.one_sample(
            sparsity=sparsity, sample_hash=result.sample_hash, total_reads=result.total_reads
        )
    )
    settings = options.store_settings()
    writer.write_root_attributes(
        layout.StoreAttributes(
            contigs=tuple(writer.contigs),
            sample_names=(result.sample,),
            chunk_len=settings.chunk_len,
            compression=settings.compression,
            stranded={result.sample: result.strandedness},
            average_sparsity=sparsity,
            bamstore=layout.BamstoreRecord(settings, {result.sample: result.record()}),
        )
    )


def extract_sample(
    bam: Path,
    sample: str,
    out: Path,
    options: ExtractOptions,
    *,
    index: Path | None = None,
    overwrite: bool = False,
    cancel: threading.Event | None = None,
    stdin: BinaryIO | None = None,
    source_path: str | None = None,
) -> SampleResult:
    """BAM → per-sample store at `out`, published atomically. Raises InputError on bad input,
    ExtractionCancelled (nothing published) once `cancel` is set.

    `bam` "-" reads a BAM stream from `stdin` (standard input if not given), without an index.
    `source_path` is recorded as the sample's source path instead of `bam` (a staged copy's
    original); the rest of the fingerprint is still `bam`'s.
    """
    check_output_path(
        out, overwrite=overwrite, inputs=[bam, index, options.chromsizes, options.reference]
    )
    streamed: StreamedInput | None = None
    if is_stdin(bam):
        if index is not None:
            raise InputError(
                index,
                "--index does not apply to --bam - (a stream is read front to back, without "
                "an index)",
                "drop --index",
            )
        streamed, contigs = prepare_stream(stdin or sys.stdin.buffer, sample, options)
        alignment = streamed.alignment
    else:
        alignment, contigs = prepare_input(bam, sample, options)
    with staged_output(out, overwrite=overwrite) as tmp:
        writer = StoreWriter(
            tmp,
            contigs,
            1,
            stranded=bool(options.strandedness),
            chunk_len=options.chunk_len,
            profile=layout.compression_profile(options.compression),
            sharded=options.shard,
        )
        if streamed is not None:
            result = count_stream(streamed, contigs, writer, options, sample, cancel)
        else:
            result = count_sample(alignment, contigs, writer, options, sample, index, cancel)
        if source_path is not None:
            result = dataclasses.replace(result, bam=Path(source_path))
        write_sample_store(result, writer, options)
    _warn(result)
    return result


def fragment_len_range(counting: CountingMode) -> str:
    """The fragment-length filter as shown in messages: [min, max] or >= min."""
    low, high = counting.min_fragment_len, counting.max_fragment_len
    return f"[{low}, {high}]" if high is not None else f">= {low}"


def _warn(result: SampleResult) -> None:
    w = result.warnings()
    if w["clipped_reads"]:
        log.warning(
            "%s: %d %s ran past the end of their contig and were clipped there (is the "
            "BAM header's contig length right?)",
            result.sample,
            w["clipped_reads"],
            "fragments" if result.counting.mode == "fragments" else "reads",
        )
    counting = result.counting
    if w.get("improper_pair_records"):
        log.warning(
            "%s: %d paired records are not in a proper pair (flag 0x2 unset, or TLEN 0) and %s",
            result.sample,
            w["improper_pair_records"],
            "were not counted" if counting.filters_fragment_len else "added no fragment",
        )
    if w.get("single_end_records"):
        log.warning(
            "%s: %d single-end records were not counted: the fragment-length filter needs "
            "pairs (TLEN)",
            result.sample,
            w["single_end_records"],
        )
    if counting.filters_fragment_len:
        log.info(
            "%s: %d records of proper pairs have |TLEN| outside %s and were not counted",
            result.sample,
            result.outside_fragment_len,
            fragment_len_range(counting),
        )
    if w.get("off_contig_cut_sites"):
        log.warning(
            "%s: %d cut sites fell off their contig after the shift and were dropped",
            result.sample,
            w["off_contig_cut_sites"],
        )
    if w["mapq255_reads"]:
        log.warning(
            "%s: %d reads have MAPQ 255 (unavailable); they were counted like any other MAPQ",
            result.sample,
            w["mapq255_reads"],
        )
    if w["seqless_reads"]:
        log.warning(
            "%s: %d reads have no stored sequence ('*'); their alignments were counted",
            result.sample,
            w["seqless_reads"],
        )
    if w["long_cigar_reads"]:
        log.warning(
            "%s: %d reads have more than 65535 CIGAR operations; they were counted",
            result.sample,
            w["long_cigar_reads"],
        )
