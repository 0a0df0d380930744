"""Per-sample stores → one consolidated store, by placing compressed chunk files, never decoding.

Row r of a part's array `<contig>/c/r/<col>` becomes row R of the consolidated array
`<contig>/c/R/<col>`: the bytes are the same because parts share chunk_len and codecs (checked).
Files are hard-linked when the filesystem allows (zarr replaces chunk files atomically, so a
later write to either store never changes the other) and copied otherwise. Parts are never
modified. Before publishing, every written row is checked against the chunk digests recorded at
extraction, so a lost, truncated, altered or misplaced chunk fails the merge.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bamstore import __version__, layout
from bamstore.bam_input import check_same_contigs
from bamstore.errors import InputError, InputErrors
from bamstore.metadata import metadata_columns, unknown_samples
from bamstore.publish import check_output_path, staged_output
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


def check_parts(infos: Sequence[StoreInfo]) -> None:
    """Refuse parts that cannot be merged; every problem names the part and the difference."""
    problems: list[InputError] = []
    first = infos[0]
    label = f"the first part ({first.path})"
    first_codecs = first.array_document(first.contigs[0][0])["codecs"] if first.contigs else None
    seen: dict[str, Path] = {}
    for info in infos:
        records = info.sample_records
        if not info.bamstore:
            problems.append(
                InputError(
                    info.path,
                    "was not made by bamstore (no 'bamstore' "
                    "attribute), so its content cannot be checked",
                    "rebuild it with bamstore extract",
                )
            )
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
            if name not in records:
                problems.append(
                    InputError(
                        info.path,
                        f"has no bamstore record for sample {name!r}",
                        "rebuild it with bamstore extract",
                    )
                )
        completed = info.metadata_arrays[layout.COMPLETED]
        if not bool(np.all(completed)):
            problems.append(
                InputError(
                    info.path,
                    "has samples that are not complete",
                    "re-run the extraction of this sample",
                )
            )
        if info is first:
            continue
        try:
            check_same_contigs(first.contigs, info.contigs, str(info.path), label)
        except InputError as exc:
            problems.append(exc)
        if info.chunk_len != first.chunk_len:
            problems.append(
                InputError(
                    info.path,
                    f"has chunk_len {info.chunk_len}, but {label} has {first.chunk_len}",
                    "extract every sample with the same --chunk-len",
                )
            )
        codecs = info.array_document(info.contigs[0][0])["codecs"] if info.contigs else None
        if codecs != first_codecs or info.compression != first.compression:
            problems.append(
                InputError(
                    info.path,
                    f"uses compression {info.compression!r}, but "
                    f"{label} uses {first.compression!r}",
                    "extract every sample with the same --compression",
                )
            )
        for key, value in info.settings.items():
            if value != first.settings[key]:
                problems.append(
                    InputError(
                        info.path,
                        f"was extracted with {key} {value}, but {label} with {first.settings[key]}",
                        "extract every sample with the same read filter, --mode (with its "
                        "--extend/--shift) and --chromosomes",
                    )
                )
    if problems:
        raise InputErrors(problems, header=f"{len(problems)} problem(s) with the parts to merge")


class _ChunkPlacer:
    """Hard-link chunk files, falling back to copying once links are refused."""

    def __init__(self, copy: bool) -> None:
        self.link = not copy
        self.linked = 0
        self.copied = 0

    def place(self, src: Path, dst: Path) -> None:
        if self.link:
            try:
                os.link(src, dst)
                self.linked += 1
                return
            except OSError as exc:
                if exc.errno not in _LINK_UNSUPPORTED:
                    raise
                log.info("hard links not possible here (%s); copying chunks", exc.strerror)
                self.link = False
        shutil.copyfile(src, dst)
        self.copied += 1


def place_row(
    placer: _ChunkPlacer,
    src: Path,
    src_row: int,
    arrays: Sequence[str],
    dst_file: Callable[[str, int, int], Path],
    dst_row: int,
) -> None:
    """Place row `src_row` of every array of store `src` as row `dst_row` of another store.

    `dst_file(array, row, col)` gives the destination path with its folder created; shared by
    merge (new store) and `BamStore.process_samples` (one row of an existing store).
    """
    for array in arrays:
        for col, path in layout.row_chunk_files(src, array, src_row).items():
            placer.place(path, dst_file(array, dst_row, col))


def _part_tables(infos: Sequence[StoreInfo]) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for info in infos:
        for col, values in info.metadata_columns.items():
            for name, value in zip(info.sample_names, values, strict=True):
                table.setdefault(name, {})[col] = value
    return table


def verify_rows(
    path: Path,
    sample_names: Sequence[str],
    records: Mapping[str, Any],
    contigs: Sequence[tuple[str, int]],
    stranded: Mapping[str, str],
    has_strand_arrays: bool,
    threads: int = 1,
    rows: Sequence[int] | None = None,
) -> list[str]:
    """Compare each row's chunk files with the digests recorded at extraction; list mismatches.

    `rows[k]` is the row of `sample_names[k]` (default: k), so one inserted row can be checked.
    """
    jobs = []
    row_of = range(len(sample_names)) if rows is None else rows
    for row, name in zip(row_of, sample_names, strict=True):
        record = records[name]
        for i, (contig, _) in enumerate(contigs):
            kinds = [(contig, record["digests"][i])]
            if has_strand_arrays:
                fwd, rev = layout.strand_array_names(contig)
                empty = layout.chunk_digest([])
                if stranded.get(name):
                    kinds += [(fwd, record["fwd_digests"][i]), (rev, record["rev_digests"][i])]
                else:
                    kinds += [(fwd, empty), (rev, empty)]
            for array, expected in kinds:
                jobs.append((name, row, array, expected))

    def check(job: tuple[str, int, str, str]) -> str | None:
        name, row, array, expected = job
        files = layout.row_chunk_files(path, array, row)
        got = layout.chunk_digest((col, layout.file_crc32(f)) for col, f in files.items())
        if got != expected:
            return (
                f"sample {name!r}, array {array!r}: chunk files do not match what extraction "
                f"wrote (digest {got}, recorded {expected}; {len(files)} chunk files)"
            )
        return None

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
    """Merge `parts` (in the given order) into a new store published atomically at `out`."""
    started = time.monotonic()
    if not parts:
        raise InputError(None, "no stores to merge", "give per-sample stores or --parts-file")
    check_output_path(out, overwrite=overwrite)
    infos = [read_store_info(p) for p in parts]
    check_parts(infos)
    first = infos[0]
    names = [n for info in infos for n in info.sample_names]
    stranded = {n: code for info in infos for n, code in info.stranded.items()}
    any_stranded = any(stranded.values())
    records = {n: info.sample_records[n] for info in infos for n in info.sample_names}
    for table in metadata_tables:
        extra = unknown_samples(table, names)
        if extra:
            log.warning(
                "%s: rows for samples not in the store are ignored: %s",
                metadata_source,
                ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""),
            )
    columns = metadata_columns(names, [_part_tables(infos), *metadata_tables], metadata_source)
    profile = layout.compression_profile(first.compression)
    placer = _ChunkPlacer(copy)
    with staged_output(out, overwrite=overwrite) as tmp:
        writer = StoreWriter(
            tmp,
            first.contigs,
            len(names),
            stranded=any_stranded,
            chunk_len=first.chunk_len,
            profile=profile,
        )
        row = 0
        for info in infos:
            part_arrays = layout.coverage_array_names(
                [c for c, _ in info.contigs], info.has_strand_arrays
            )
            for part_row, _name in enumerate(info.sample_names):
                place_row(placer, info.path, part_row, part_arrays, writer.chunk_file, row)
                row += 1
        meta = {
            k: np.concatenate([info.metadata_arrays[k] for info in infos])
            for k in layout.METADATA_ARRAYS
        }
        writer.write_metadata(
            completed=meta[layout.COMPLETED],
            sparsity=meta[layout.SPARSITY],
            sample_hashes=meta[layout.SAMPLE_HASHES],
            total_reads=meta[layout.TOTAL_READS],
        )
        bamstore = {**first.bamstore, "version": __version__, "samples": records}
        writer.write_root_attributes(
            layout.root_attributes(
                chromsizes=dict(first.contigs),
                sample_names=names,
                chunk_len=first.chunk_len,
                compression=profile.name,
                stranded=stranded,
                average_sparsity=layout.average_sparsity(meta[layout.SPARSITY].tolist()),
                metadata_columns=columns,
                bamstore=bamstore,
            )
        )
        problems = verify_rows(tmp, names, records, first.contigs, stranded, any_stranded, threads)
        if problems:
            raise InputErrors(
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
    return MergeResult(Path(out), names, placer.linked, placer.copied, time.monotonic() - started)
