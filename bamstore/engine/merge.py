"""Per-sample stores → one store, by placing compressed chunk files, never decoding.

Row r of a part's array `<contig>/c/r/<col>` becomes row R of the store's array
`<contig>/c/R/<col>`: the bytes are the same because parts share chunk_len and codecs (checked).
In a sharded store a row is one shard file `<contig>/c/r/0`, placed the same way. Files are
hard-linked when the filesystem allows (zarr and `shard.ShardWriter` replace files atomically,
so a later write to either store never changes the other) and copied otherwise. Parts are never
modified. A part stored in the other layout is converted row by row, as bytes (`rows.place_row`):
the store's layout is `shard` if given, else the first part's, so appending samples to a
sharded cohort keeps it sharded.

Growing a cohort is a merge whose first part is the existing store: its files are linked into
the new store, the new samples follow, and `replace_store` publishes the result at the old
store's path in one atomic swap (`publish.staged_output`).

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
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.engine.bam_input import check_same_contigs
from bamstore.engine.publish import check_output_path, remove_tree, staged_output
from bamstore.engine.rows import ArrayLayout, chunk_codecs, place_row
from bamstore.engine.samplesheet import metadata_columns, unknown_samples
from bamstore.engine.shard import DamagedShardError
from bamstore.engine.store import StoreInfo, read_store_info
from bamstore.engine.writer import StoreWriter
from bamstore.errors import InputError, InputErrors, SettingMismatchError

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
    """What a merge did; files are chunk files, or shards in a sharded store."""

    out: Path
    sample_names: list[str]
    chunks_linked: int
    chunks_copied: int
    seconds: float
    reordered: list[Path] = field(default_factory=list)  # parts listing the contigs otherwise
    sharded: bool = False
    rows_converted: int = 0  # part rows stored in the other layout, packed or cut as bytes


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
            SettingMismatchError(info.path, diff.name, diff.mine, diff.theirs, label)
            for diff in mine.differences(theirs)
        ]
    if isinstance(target, StoreInfo) and not problems and info.contigs:
        contig = info.contigs[0][0]  # same settings, so the codecs must be the same too
        mine_codecs = chunk_codecs(info.array_document(contig))
        if not layout.same_chunk_codecs(mine_codecs, chunk_codecs(target.array_document(contig))):
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
        self.converted = 0  # rows packed into a shard or cut into chunk files
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

    def count_converted(self) -> None:
        with self._lock:
            self.converted += 1


@dataclass(frozen=True)
class _RowJob:
    """Place row `part_row` of part `part`, sample `name`, as row `row` of the target."""

    part: StoreInfo
    part_row: int
    name: str
    row: int
    record: layout.SampleRecord


@dataclass
class _Placed:
    """What `_place_rows` did: the problems (none: every row placed and sound) and, per
    sample, the columns of the chunks placed in each array (what the record lists)."""

    problems: list[str]
    columns: dict[str, dict[str, list[int]]]

    def records(
        self, records: Mapping[str, layout.SampleRecord], contigs: Sequence[str]
    ) -> dict[str, layout.SampleRecord]:
        """`records` listing the chunk columns found in the files placed and checked (records
        of parts written before format 3 learn them here)."""
        return {
            name: record.with_columns(contigs, self.columns.get(name, {}))
            for name, record in records.items()
        }


def _place_rows(
    jobs: Sequence[_RowJob],
    target: Path,
    target_layouts: Mapping[str, ArrayLayout],
    placer: _ChunkPlacer,
    threads: int,
) -> _Placed:
    """Place every job's rows (chunk files or shards, converted to the target's layout where
    the part's differs) and check each placed row against the digest recorded at extraction;
    return the problems and the columns placed."""
    tasks = []
    part_layouts: dict[Path, dict[str, ArrayLayout]] = {}
    for job in jobs:
        part = job.part
        if part.path not in part_layouts:
            part_layouts[part.path] = part.array_layouts()
        for array_row in job.record.rows(part.attrs.contig_names, part.has_strand_arrays):
            tasks.append((job, array_row))

    def place(task: tuple[_RowJob, layout.ArrayRow]) -> tuple[str | None, list[int]]:
        job, array_row = task
        array, part_layout = array_row.array, part_layouts[job.part.path][array_row.array]
        try:
            crcs, converted = place_row(
                array,
                (job.part.path, job.part_row, part_layout),
                (target, job.row, target_layouts[array]),
                placer.place,
            )
        except DamagedShardError as exc:
            return _damaged_problem(job.name, array, exc, job.part.path, job.part_row), []
        if converted:
            placer.count_converted()
        where = f"{_files(part_layout, crcs)} in {job.part.path}"
        return _digest_problem(job.name, array_row, crcs, where), [col for col, _ in crcs]

    placed = _Placed([], {})
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for (job, array_row), (problem, columns) in zip(tasks, pool.map(place, tasks), strict=True):
            if problem:
                placed.problems.append(problem)
            placed.columns.setdefault(job.name, {})[array_row.array] = columns
    return placed


def _files(array_layout: ArrayLayout, crcs: list[tuple[int, int]]) -> str:
    """What was read of a row, for a digest problem."""
    if array_layout.sharded:
        return f"a shard of {len(crcs)} chunks"
    return f"{len(crcs)} chunk files"


def _damaged_problem(name: str, array: str, exc: DamagedShardError, store: Path, row: int) -> str:
    """The problem of a row whose shard cannot be read, naming the shard in `store` (a hard
    link is the same file; a damaged copy or packed shard comes from a damaged source)."""
    shard_file = layout.chunk_path(store, array, row, 0)
    return f"sample {name!r}, array {array!r}: shard {shard_file} is damaged: {exc.reason}"


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

    layouts = {
        array: ArrayLayout(length, attrs.chunk_len, attrs.bamstore.settings.shard)
        for contig, length in attrs.contigs
        for array in layout.coverage_array_names([contig], attrs.has_strand_arrays)
    }

    def check(job: tuple[str, int, layout.ArrayRow]) -> str | None:
        name, row, array_row = job
        array_layout = layouts[array_row.array]
        try:
            crcs = array_layout.chunk_crcs(store, array_row.array, row)
        except DamagedShardError as exc:
            return _damaged_problem(name, array_row.array, exc, Path("."), row)
        return _digest_problem(name, array_row, crcs, _files(array_layout, crcs))

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return [p for p in pool.map(check, jobs) if p]


def merge_stores(
    parts: Sequence[Path], out: Path, *, overwrite: bool = False, **merge: Any
) -> MergeResult:
    """Merge `parts` (in the given order) into a new store published atomically at `out`.

    The store lists the contigs in the first part's order; a part whose header listed the
    same contigs in another order joins it (its records are reordered). Its rows are sharded
    if `shard`, unsharded if False, and stored as the first part's if None. `out` may not be
    one of the parts: `append_samples` grows a store in place.
    """
    if not parts:
        raise InputError(None, "no stores to merge", "give per-sample stores or --parts-file")
    check_output_path(out, overwrite=overwrite, inputs=parts)
    return _merge_into(parts, out, overwrite=overwrite, **merge)


def _merge_into(
    parts: Sequence[Path],
    out: Path,
    *,
    metadata_tables: Sequence[Mapping[str, Mapping[str, str]]] = (),
    metadata_source: str = "metadata",
    overwrite: bool = False,
    copy: bool = False,
    threads: int = 1,
    shard: bool | None = None,
) -> MergeResult:
    """`merge_stores` without its check of `out`: `out` may be the first part itself with
    `overwrite` (`append_samples`); the parts are read under the output's lock, and the old
    store is replaced only once the new one is complete."""
    started = time.monotonic()
    with staged_output(out, overwrite=overwrite) as tmp:
        infos = [read_store_info(p) for p in parts]
        check_parts(infos)
        first = infos[0]
        assert first.record is not None
        order = first.attrs.contig_names
        reordered = [info.path for info in infos[1:] if info.attrs.contig_names != order]
        names = [n for info in infos for n in info.sample_names]
        stranded = {n: code for info in infos for n, code in info.stranded.items()}
        records = {n: r for info in infos for n, r in _records_in_order(info, order).items()}
        columns = _metadata(infos, names, metadata_tables, metadata_source)
        layout_check = layout.contig_name_problems(order, any(stranded.values()))
        if layout_check:
            name, problem = layout_check[0]
            raise InputError(first.path, f"contig {name!r} cannot be stored: {problem}", None)
        sharded = first.sharded if shard is None else shard
        placer = _ChunkPlacer(copy)
        meta = layout.MetadataArrays.concatenate([info.metadata_arrays for info in infos])
        writer = StoreWriter(
            tmp,
            first.contigs,
            len(names),
            stranded=any(stranded.values()),
            chunk_len=first.chunk_len,
            profile=layout.compression_profile(first.compression),
            sharded=sharded,
        )
        jobs = []
        for info in infos:
            for part_row, name in enumerate(info.sample_names):
                jobs.append(_RowJob(info, part_row, name, len(jobs), info.record.samples[name]))  # type: ignore[union-attr]
        target_layouts = {
            array: writer.array_layout(length)
            for contig, length in first.contigs
            for array in layout.coverage_array_names([contig], writer.stranded)
        }
        placed = _place_rows(jobs, tmp, target_layouts, placer, threads)
        if placed.problems:
            raise _refuse(out, placed.problems)
        writer.write_metadata(meta)
        record = first.record.with_samples(placed.records(records, order))
        writer.write_root_attributes(
            layout.StoreAttributes(
                contigs=tuple(first.contigs),
                sample_names=tuple(names),
                chunk_len=first.chunk_len,
                compression=first.compression,
                stranded=stranded,
                metadata=columns,
                average_sparsity=layout.average_sparsity(meta.sparsity.tolist()),
                bamstore=dataclasses.replace(
                    record, settings=dataclasses.replace(record.settings, shard=sharded)
                ),
            )
        )
    seconds = time.monotonic() - started
    return MergeResult(
        Path(out),
        names,
        placer.linked,
        placer.copied,
        seconds,
        reordered,
        sharded=sharded,
        rows_converted=placer.converted,
    )


def append_samples(store: Path, parts: Sequence[Path], **merge: Any) -> MergeResult:
    """Grow the cohort `store` by the samples of `parts` (per-sample or merged stores), in
    place: the merge of [store, *parts] replaces `store` in one atomic swap once it is complete
    and checked (the old store is only read, and survives any failure or kill before that).
    A symlink is followed, so the store it points to is the one replaced. `merge` takes the
    keywords of `merge_stores` other than `overwrite`. Without parts there is nothing to add,
    and the store is left as it is (an error)."""
    if not parts:
        raise InputError(
            store,
            "no stores to add to it: replacing it in place needs at least one new store",
            "give the stores of the new samples after it",
        )
    store = Path(store).resolve()
    if not layout.written_by_bamstore(store):
        read_store_info(store)  # says what is wrong with it, if it is not a store at all
        raise InputError(
            store,
            "is not a store written by bamstore, so --replace does not replace it",
            "merge into a new store with --out",
        )
    check_output_path(store, overwrite=True)
    return _merge_into([store, *parts], store, overwrite=True, **merge)


def _metadata(
    infos: Sequence[StoreInfo],
    names: Sequence[str],
    tables: Sequence[Mapping[str, Mapping[str, str]]],
    source: str,
) -> dict[str, list[str]]:
    """The metadata columns of the merged store: the union of the parts' columns and the
    tables' (later ones win; a sample without a value gets "")."""
    for table in tables:
        extra = unknown_samples(table, names)
        if extra:
            log.warning(
                "%s: rows for samples not in the store are ignored: %s",
                source,
                ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""),
            )
    part_tables = [
        {
            n: {c: v[i] for c, v in info.attrs.metadata.items()}
            for i, n in enumerate(info.sample_names)
        }
        for info in infos
    ]
    return metadata_columns(names, [*part_tables, *tables], source)


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
    target_layouts = target.array_layouts()
    for array in target_layouts:
        remove_tree(layout.row_folder(store, array, row))  # an earlier attempt's
    placed = _place_rows(
        [_RowJob(info, 0, name, row, info.record.samples[name])],  # type: ignore[union-attr]
        store,
        target_layouts,
        _ChunkPlacer(copy=False),
        threads=1,
    )
    if placed.problems:
        raise _refuse(store, placed.problems)
    record = placed.records({name: record}, target.attrs.contig_names)[name]
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
