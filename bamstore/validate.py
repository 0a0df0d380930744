"""Is a store sound? Structure (QuantNado's writer checklist), completeness, and content.

Content means: every sample's per-contig coverage sums recorded at extraction equal the sums
decoded back through zarr, and every row's chunk files match the digests recorded when they were
written. A lost, truncated, altered or swapped chunk is caught and named. `quick=True` checks
structure and completeness only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.merge import verify_rows
from bamstore.store import StoreInfo, read_store_info


@dataclass
class ValidationReport:
    path: Path
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    contigs: int = 0
    chunks_decoded: int = 0
    quick: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_store(path: Path, *, quick: bool = False, threads: int = 1) -> ValidationReport:
    """Check `path`; raises InputError only if it is not a store at all."""
    info = read_store_info(path)
    report = ValidationReport(Path(path), quick=quick)
    report.samples = len(info.sample_names)
    report.contigs = len(info.contigs)
    report.problems += list(_structure_problems(info))
    if report.problems:
        return report  # content checks need a sound structure
    completed = info.metadata_arrays[layout.COMPLETED]
    for name, done in zip(info.sample_names, completed, strict=True):
        if not done:
            report.problems.append(f"sample {name!r} is not complete (metadata/completed is false)")
    report.problems += list(_record_problems(info))
    if quick or report.problems:
        return report
    report.problems += verify_rows(
        info.path,
        info.sample_names,
        info.sample_records,
        info.contigs,
        info.stranded,
        info.has_strand_arrays,
        threads,
    )
    report.problems += _content_problems(info, report, threads)
    return report


def _structure_problems(info: StoreInfo) -> Iterator[str]:
    attrs = info.attrs
    for key in layout.ROOT_ATTRS:
        if key not in attrs:
            yield f"root attribute {key!r} is missing"
    names = attrs["sample_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        yield "root attribute 'sample_names' must be a non-empty list of strings"
        return
    if len(set(names)) != len(names):
        yield "sample_names has duplicates"
    n = len(names)
    if attrs.get("n_samples") != n:
        yield f"n_samples is {attrs.get('n_samples')} but there are {n} sample names"
    if "sample_names_hash" in attrs and attrs["sample_names_hash"] != layout.sample_names_hash(
        names
    ):
        yield "sample_names_hash does not match sample_names (QuantNado refuses to open this)"
    chromsizes = attrs["chromsizes"]
    if not isinstance(chromsizes, dict) or not chromsizes:
        yield "chromsizes must be a non-empty mapping of contig to length"
        return
    if attrs.get("chromosomes") != sorted(chromsizes):
        yield "chromosomes is not the sorted list of chromsizes keys"
    if attrs.get("structure") != layout.STRUCTURE or attrs.get("bin_size") != layout.BIN_SIZE:
        yield "structure/bin_size differ from QuantNado's per-base layout"
    chunk_len = attrs["chunk_len"]
    if not isinstance(chunk_len, int) or chunk_len < 1:
        yield f"chunk_len {chunk_len!r} is not a positive integer"
        return
    try:
        profile = layout.compression_profile(str(attrs.get("construction_compression")))
    except ValueError as exc:
        yield str(exc)
        return
    stranded = attrs.get("stranded", {})
    if isinstance(stranded, dict):
        if set(stranded) != set(names):
            yield "stranded must have one entry per sample"
        bad = {k: v for k, v in stranded.items() if v not in ("", *layout.STRAND_CODES)}
        if bad:
            yield f"stranded has values other than U, F, R or empty: {bad}"
    for key, value in attrs.items():
        if key.startswith(layout.METADATA_ATTR_PREFIX) and (
            not isinstance(value, list) or len(value) != n
        ):
            yield f"metadata attribute {key!r} does not have one value per sample"
    any_stranded = any(info.stranded.values())
    expected = set(layout.coverage_array_names(chromsizes, any_stranded)) | {layout.METADATA_GROUP}
    members = {p.name for p in info.path.iterdir() if p.is_dir()}
    for extra in sorted(members - expected):
        yield (
            f"unexpected root member {extra!r} (QuantNado treats every root member as a contig)"
            if not extra.endswith(("_fwd", "_rev"))
            else f"strand array {extra!r} in a store without stranded samples"
        )
    for missing in sorted(expected - members):
        yield f"array or group {missing!r} is missing"
    for array in sorted(expected & members - {layout.METADATA_GROUP}):
        contig = array.removesuffix(layout.FWD_SUFFIX).removesuffix(layout.REV_SUFFIX)
        length = chromsizes.get(contig)
        try:
            doc = layout.read_json(info.path / array / layout.ZARR_JSON)
        except (OSError, ValueError):
            yield f"array {array!r}: zarr.json is missing or not JSON"
            continue
        want = layout.coverage_array_document(n, int(length or 0), chunk_len, profile)
        if doc != want:
            diffs = sorted(k for k in set(doc) | set(want) if doc.get(k) != want.get(k))
            yield f"array {array!r}: metadata differs from the layout in {', '.join(diffs)}"
        rows = info.path / array / "c"
        if rows.is_dir():
            for row_dir in rows.iterdir():
                if not row_dir.name.isdigit() or int(row_dir.name) >= n:
                    yield f"array {array!r}: unexpected chunk folder c/{row_dir.name}"
                    continue
                n_cols = layout.n_chunks(int(length or 0), chunk_len)
                for f in row_dir.iterdir():
                    if not f.name.isdigit() or int(f.name) >= n_cols:
                        yield f"array {array!r}: unexpected file c/{row_dir.name}/{f.name}"
    yield from _metadata_problems(info, n)


def _metadata_problems(info: StoreInfo, n: int) -> Iterator[str]:
    try:
        arrays = info.metadata_arrays
    except (KeyError, FileNotFoundError, ValueError) as exc:
        yield f"metadata group or one of {', '.join(layout.METADATA_ARRAYS)} is missing ({exc})"
        return
    want = {
        layout.COMPLETED: ((n,), np.bool_),
        layout.SPARSITY: ((n,), np.float32),
        layout.SAMPLE_HASHES: ((n, layout.HASH_WIDTH), np.uint8),
        layout.TOTAL_READS: ((n,), np.int64),
    }
    for name, (shape, dtype) in want.items():
        arr = arrays[name]
        if arr.shape != shape or arr.dtype != np.dtype(dtype):
            yield (
                f"metadata/{name} is {arr.dtype}{list(arr.shape)}, expected "
                f"{np.dtype(dtype)}{list(shape)}"
            )


def _record_problems(info: StoreInfo) -> Iterator[str]:
    """The `bamstore` attribute must describe every sample, aligned with the contigs."""
    bam = info.bamstore
    if bam.get("format") != layout.FORMAT_NAME:
        yield "root attribute 'bamstore' is missing (not made by bamstore): content unchecked"
        return
    n_contigs = len(info.contigs)
    total_reads = info.metadata_arrays[layout.TOTAL_READS]
    for row, name in enumerate(info.sample_names):
        record = info.sample_records.get(name)
        if record is None:
            yield f"sample {name!r} has no entry in the 'bamstore' attribute"
            continue
        keys = ["contig_sums", "digests"]
        if info.stranded.get(name):
            keys += ["fwd_sums", "rev_sums", "fwd_digests", "rev_digests"]
        for key in keys:
            if len(record.get(key, [])) != n_contigs:
                yield f"sample {name!r}: bamstore record {key!r} does not list every contig"
        if record.get("total_reads") != int(total_reads[row]):
            yield (
                f"sample {name!r}: metadata/total_reads is {int(total_reads[row])} but "
                f"extraction counted {record.get('total_reads')}"
            )


def _content_problems(info: StoreInfo, report: ValidationReport, threads: int) -> list[str]:
    """Decode every stored chunk through zarr and compare sums and sparsity with the records."""
    group = zarr.open_group(LocalStore(info.path, read_only=True), mode="r")
    chunk_len = info.chunk_len
    jobs: list[tuple[int, str, int, str, str, int]] = []
    for row, name in enumerate(info.sample_names):
        for i, (contig, length) in enumerate(info.contigs):
            arrays = [(contig, "contig_sums")]
            if info.stranded.get(name):
                fwd, rev = layout.strand_array_names(contig)
                arrays += [(fwd, "fwd_sums"), (rev, "rev_sums")]
            for array, key in arrays:
                jobs.append((row, name, i, array, key, length))

    def decode(job: tuple[int, str, int, str, str, int]) -> tuple[int, int, int]:
        row, _name, _i, array, _key, length = job
        total = nonzero = chunks = 0
        columns = sorted(layout.row_chunk_files(info.path, array, row))
        if not columns:  # nothing stored: all zeros (opening the array costs ~1 ms; 100k contigs)
            return total, nonzero, chunks
        arr = group[array]
        for col in columns:
            try:
                values = arr[row, col * chunk_len : min((col + 1) * chunk_len, length)]
            except Exception as exc:  # truncated or garbled file: name it, check the rest
                undecodable.append(
                    f"sample {_name!r}, array {array!r}: chunk c/{row}/{col} cannot be decoded "
                    f"({type(exc).__name__}: {exc})"
                )
                continue
            total += int(values.sum(dtype=np.uint64))
            nonzero += int(np.count_nonzero(values))
            chunks += 1
        return total, nonzero, chunks

    undecodable: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(decode, jobs))
    problems: list[str] = sorted(undecodable)
    zero_fraction: dict[str, list[float]] = {}
    for (_row, name, i, array, key, length), (total, nonzero, chunks) in zip(
        jobs, results, strict=True
    ):
        report.chunks_decoded += chunks
        record: dict[str, Any] = info.sample_records[name]
        if total != record[key][i]:
            problems.append(
                f"sample {name!r}, array {array!r}: coverage sums to {total} but "
                f"extraction recorded {record[key][i]} (a chunk is lost or damaged)"
            )
        if key == "contig_sums":
            zero_fraction.setdefault(name, []).append(100.0 * (length - nonzero) / length)
    sparsity = info.metadata_arrays[layout.SPARSITY]
    for row, name in enumerate(info.sample_names):
        expected = float(np.mean(zero_fraction.get(name, [math.nan])))
        if not math.isclose(float(sparsity[row]), expected, rel_tol=1e-4, abs_tol=1e-4):
            problems.append(
                f"sample {name!r}: metadata/sparsity is {float(sparsity[row]):.4f} but "
                f"the stored coverage gives {expected:.4f}"
            )
    return problems
