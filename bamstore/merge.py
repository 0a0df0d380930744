"""Per-sample stores → one store, by placing compressed chunk files, never decoding.

Row r of a part's array `<contig>/c/r/<col>` becomes row R of the store's array
`<contig>/c/R/<col>`: the bytes are the same because parts share chunk_len and codecs (checked).
Files are hard-linked when the filesystem allows (zarr replaces chunk files atomically, so a
later write to either store never changes the other) and copied otherwise. Parts are never
modified.

Nothing corrupt is published: as each part row is placed, the placed chunk files are read once
and checked against the digests recorded at extraction. A hard link is the same inode as the
part's file, so that one read checks the part itself; a copy (made in the kernel) is checked as
the file that is published.

`merge_stores` writes a new store; `insert_part` fills one row of an existing store (the Python
API's `process_samples`). Both place rows through `_place_rows`.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.bam_input import check_same_contigs
from bamstore.errors import InputError, InputErrors
from bamstore.publish import check_output_path, remove_tree, staged_output
from bamstore.samplesheet import metadata_columns, unknown_samples
from bamstore.store import StoreInfo, read_store_info
from bamstore.writer import StoreWriter

log = logging.getLogger(__name__)

_LINK_UNSUPPORTED = {
    errno.EXDEV,
    errno.EPERM,
    errno.EMLINK,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.EACCES,
}


@dataclass
class MergeResult:
    out: Path
    sample_names: list[str]
    chunks_linked: int
    chunks_copied: int
    seconds: float
    reordered: list[Path] = field(default_factory=list)  # parts listing the contigs otherwise


def read_parts_file(path: Path) -> list[Path]:
    """One store path per line, relative to the file's folder; blanks and # comments skipped."""
    if not path.is_file():
        raise InputError(path, "parts file does not exist", "check --parts-file")
    base = path.resolve().parent
    parts = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            p = Path(text)
            parts.append(p if p.is_absolute() else base / p)
    if not parts:
        raise InputError(path, "parts file lists no stores", "list one per-sample store per line")
    return parts


def part_problems(info: StoreInfo) -> list[InputError]:
    """Why `info` cannot be a part at all: no record, a sample without one, an incomplete row."""
    record = info.record
    if record is None:
        return [
            InputError(
                info.path,
                f"cannot be merged: {info.attrs.record_problem}, so its content cannot be checked",
                "rebuild it with this version's bamstore extract",
            )
        ]
    problems = [
        InputError(
            info.path,
            f"has no bamstore record for sample {name!r}",
            "rebuild it with bamstore extract",
        )
        for name in info.sample_names
        if name not in record.samples
    ]
    if not bool(np.all(info.metadata_arrays.completed)):
        problems.append(
            InputError(
                info.path,
                "has samples that are not complete",
                "re-run the extraction of this sample",
            )
        )
    return problems


def fit_problems(
    info: StoreInfo, target: StoreInfo | layout.StoreAttributes, label: str
) -> list[InputError]:
    """Why part `info` cannot join a store like `target` (named `label` in messages): other
    contigs or lengths, or any setting that differs (each named with both values)."""
    problems: list[InputError] = []
    attrs = target.attrs if isinstance(target, StoreInfo) else target
    try:
        check_same_contigs(attrs.contigs, info.contigs, str(info.path), label)
    except InputError as exc:
        problems.append(exc)
    mine, theirs = info.settings, attrs.settings
    if mine is not None and theirs is not None:
        problems += [
            InputError(info.path, diff.problem(label), diff.fix)
            for diff in mine.differences(theirs)
        ]
    if isinstance(target, StoreInfo) and not problems and info.contigs:
        contig = info.contigs[0][0]  # same settings, so the codecs must be the same too
        if info.array_document(contig)["codecs"] != target.array_document(contig)["codecs"]:
            problems.append(
                InputError(
                    info.path,
                    f"stores its chunks with other codecs than {label}",
                    "extract every sample with the same bamstore version and --compression",
                )
            )
    return problems


def check_parts(infos: Sequence[StoreInfo]) -> None:
    """Refuse parts that cannot be merged; every problem names the part and the difference."""
    problems: list[InputError] = []
    first = infos[0]
    label = f"the first part ({first.path})"
    seen: dict[str, Path] = {}
    for info in infos:
        found = part_problems(info)
        problems += found
        if info.record is None:
            continue
        for name in info.sample_names:
            if name in seen:
                problems.append(
                    InputError(
                        info.path,
                        f"sample {name!r} is also in {seen[name]}",
                        "merge each sample once; rename duplicates",
                    )
                )
            seen[name] = info.path
        if info is not first and first.record is not None:
            problems += fit_problems(info, first, label)
    if problems:
        raise InputErrors(problems, header=f"{len(problems)} problem(s) with the parts to merge")


class _ChunkPlacer:
    """Hard-link chunk files, falling back to copying once links are refused (thread-safe)."""

    def __init__(self, copy: bool) -> None:
        self.link = not copy
        self.linked = 0
        self.copied = 0
        self._lock = threading.Lock()

    def place(self, src: Path, dst: Path) -> None:
        if self.link:
            try:
                os.link(src, dst)
                with self._lock:
                    self.linked += 1
                return
            except OSError as exc:
                if exc.errno not in _LINK_UNSUPPORTED:
                    raise
                if self.link:
                    log.info("hard links not possible here (%s); copying chunks", exc.strerror)
                self.link = False
        shutil.copyfile(src, dst)
        with self._lock:
            self.copied += 1


@dataclass(frozen=True)
class _RowJob:
    """Place row `part_row` of part `part`, sample `name`, as row `row` of the target."""

    part: StoreInfo
    part_row: int
    name: str
    row: int
    record: layout.SampleRecord


def _place_rows(
    jobs: Sequence[_RowJob], target: Path, placer: _ChunkPlacer, threads: int
) -> list[str]:
    """Place every job's chunk files and check each placed row against the digest recorded at
    extraction; return the problems (none: all placed and sound)."""
    tasks = []
    for job in jobs:
        part = job.part
        for array_row in job.record.rows(part.attrs.contig_names, part.has_strand_arrays):
            tasks.append((job, array_row))

    def place(task: tuple[_RowJob, layout.ArrayRow]) -> str | None:
        job, array_row = task
        files = layout.row_chunk_files(job.part.path, array_row.array, job.part_row)
        crcs = []
        if files:
            folder = layout.row_folder(target, array_row.array, job.row)
            folder.mkdir(parents=True, exist_ok=True)
            for col, src in files.items():
                dst = folder / str(col)
                placer.place(src, dst)
                crcs.append((col, layout.file_crc32(dst)))
        return _digest_problem(
            job.name, array_row, crcs, f"{len(files)} chunk files in {job.part.path}"
        )

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return [p for p in pool.map(place, tasks) if p]


def _digest_problem(
    name: str, array_row: layout.ArrayRow, crcs: list[tuple[int, int]], files: str
) -> str | None:
    """The problem of a row whose chunk files (column, CRC32) do not match the digest recorded
    at extraction, or None; `files` says which files were read."""
    got = layout.chunk_digest(crcs)
    if got == array_row.digest:
        return None
    return (
        f"sample {name!r}, array {array_row.array!r}: chunk files do not match what extraction "
        f"wrote (digest {got}, recorded {array_row.digest}; {files})"
    )


def _refuse(out: Path, problems: list[str]) -> InputErrors:
    return InputErrors(
        [
            InputError(
                out,
                f"not published, the merge check failed: {p}",
                "re-extract that sample (its per-sample store changed after extraction)",
            )
            for p in problems
        ],
        header="merge check failed; the store was not published "
        "(re-extract the samples named below)",
    )


def _records_in_order(info: StoreInfo, order: Sequence[str]) -> dict[str, layout.SampleRecord]:
    assert info.record is not None
    return {
        name: info.record.samples[name].in_order(info.attrs.contig_names, order)
        for name in info.sample_names
    }


def verify_rows(
    store: Path, attrs: layout.StoreAttributes, threads: int = 1, rows: Sequence[int] | None = None
) -> list[str]:
    """Compare the chunk files of every row (or of `rows`) with the digests recorded at
    extraction; list the mismatches."""
    assert attrs.bamstore is not None
    names = attrs.sample_names
    jobs = []
    for row in range(len(names)) if rows is None else rows:
        record = attrs.bamstore.samples[names[row]]
        for array_row in record.rows(attrs.contig_names, attrs.has_strand_arrays):
            jobs.append((names[row], row, array_row))

    def check(job: tuple[str, int, layout.ArrayRow]) -> str | None:
        name, row, array_row = job
        files = layout.row_chunk_files(store, array_row.array, row)
        crcs = [(col, layout.file_crc32(f)) for col, f in files.items()]
        return _digest_problem(name, array_row, crcs, f"{len(files)} chunk files")

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return [p for p in pool.map(check, jobs) if p]


def merge_stores(
    parts: Sequence[Path],
    out: Path,
    *,
    metadata_tables: Sequence[Mapping[str, Mapping[str, str]]] = (),
    metadata_source: str = "metadata",
    overwrite: bool = False,
    copy: bool = False,
    threads: int = 1,
) -> MergeResult:
    """Merge `parts` (in the given order) into a new store published atomically at `out`.

    The store lists the contigs in the first part's order; a part whose header listed the
    same contigs in another order joins it (its records are reordered).
    """
    started = time.monotonic()
    if not parts:
        raise InputError(None, "no stores to merge", "give per-sample stores or --parts-file")
    check_output_path(out, overwrite=overwrite)
    infos = [read_store_info(p) for p in parts]
    check_parts(infos)
    first = infos[0]
    assert first.record is not None
    order = first.attrs.contig_names
    reordered = [info.path for info in infos[1:] if info.attrs.contig_names != order]
    names = [n for info in infos for n in info.sample_names]
    stranded = {n: code for info in infos for n, code in info.stranded.items()}
    records = {n: r for info in infos for n, r in _records_in_order(info, order).items()}
    for table in metadata_tables:
        extra = unknown_samples(table, names)
        if extra:
            log.warning(
                "%s: rows for samples not in the store are ignored: %s",
                metadata_source,
                ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""),
            )
    part_tables = [
        {
            n: {c: v[i] for c, v in info.attrs.metadata.items()}
            for i, n in enumerate(info.sample_names)
        }
        for info in infos
    ]
    columns = metadata_columns(names, [*part_tables, *metadata_tables], metadata_source)
    layout_check = layout.contig_name_problems(order, any(stranded.values()))
    if layout_check:
        name, problem = layout_check[0]
        raise InputError(first.path, f"contig {name!r} cannot be stored: {problem}", None)
    placer = _ChunkPlacer(copy)
    meta = layout.MetadataArrays.concatenate([info.metadata_arrays for info in infos])
    with staged_output(out, overwrite=overwrite) as tmp:
        writer = StoreWriter(
            tmp,
            first.contigs,
            len(names),
            stranded=any(stranded.values()),
            chunk_len=first.chunk_len,
            profile=layout.compression_profile(first.compression),
        )
        jobs = []
        for info in infos:
            for part_row, name in enumerate(info.sample_names):
                jobs.append(_RowJob(info, part_row, name, len(jobs), info.record.samples[name]))  # type: ignore[union-attr]
        problems = _place_rows(jobs, tmp, placer, threads)
        if problems:
            raise _refuse(out, problems)
        writer.write_metadata(meta)
        writer.write_root_attributes(
            layout.StoreAttributes(
                contigs=tuple(first.contigs),
                sample_names=tuple(names),
                chunk_len=first.chunk_len,
                compression=first.compression,
                stranded=stranded,
                metadata=columns,
                average_sparsity=layout.average_sparsity(meta.sparsity.tolist()),
                bamstore=first.record.with_samples(records),
            )
        )
    seconds = time.monotonic() - started
    return MergeResult(Path(out), names, placer.linked, placer.copied, seconds, reordered)


def insert_part(store: Path, part: Path, row: int) -> layout.SampleRecord:
    """Row `row` of the existing store `store` := the one-sample store `part` (chunk files
    placed, not decoded, and checked); its metadata row is written and `completed` set last.

    A failure leaves the row incomplete (a later call replaces it). The caller holds the
    store's output lock.
    """
    target = read_store_info(store)
    info = read_store_info(part)
    problems = part_problems(info)
    if target.record is None:
        problems.append(
            InputError(store, f"cannot take samples: {target.attrs.record_problem}", "rebuild it")
        )
    else:
        problems += fit_problems(info, target, f"the store {store}")
    if problems:
        raise InputErrors(problems, header=f"{part} cannot be inserted into {store}")
    assert target.record is not None
    (name,) = info.sample_names
    if target.sample_names[row] != name or target.stranded[name] != info.stranded[name]:
        raise InputError(part, f"is not sample {target.sample_names[row]!r} as stored in row {row}")
    record = _records_in_order(info, target.attrs.contig_names)[name]
    group = zarr.open_group(LocalStore(store), mode="r+")
    meta = group[layout.METADATA_GROUP]
    meta[layout.COMPLETED][row] = False
    for array in layout.coverage_array_names(target.attrs.contig_names, target.has_strand_arrays):
        remove_tree(layout.row_folder(store, array, row))  # an earlier attempt's
    problems_text = _place_rows(
        [_RowJob(info, 0, name, row, info.record.samples[name])],  # type: ignore[union-attr]
        store,
        _ChunkPlacer(copy=False),
        threads=1,
    )
    if problems_text:
        raise _refuse(store, problems_text)
    values = info.metadata_arrays
    for spec, column in values.items():
        if spec.name != layout.COMPLETED:
            meta[spec.name][row] = column[0]
    sparsity = np.asarray(meta[layout.SPARSITY][...])
    attrs = target.attrs
    updated = dataclasses.replace(
        attrs,
        average_sparsity=layout.average_sparsity(sparsity.tolist()),
        bamstore=target.record.with_samples({name: record}),
    )
    layout.rewrite_root_attributes(store, updated)
    meta[layout.COMPLETED][row] = True  # last: the row is final
    return record
