"""Is a store sound? Structure (QuantNado's writer checklist), completeness, and content.

Structure includes presence: every chunk the store's record lists (format 3) is there, and
nothing else is; in a sharded store that means reading every shard's index (a few bytes at its
end, checked by its CRC32C), so a truncated or overwritten shard is named without reading any
chunk. Content means: every sample's per-contig coverage sums recorded at extraction equal the
sums decoded back through zarr, and every row's chunk files match the digests recorded when they
were written. A lost, truncated, altered or swapped chunk is caught and named. `quick=True`
checks structure (with presence) and completeness only, decoding nothing.

A store at an http(s):// or s3:// URL is checked the same way but for what needs a folder
listing (unexpected members and files: a URL has none) and the digests (its chunks are checked
by decoding them); the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from bamstore import layout
from bamstore.engine import shard
from bamstore.engine.merge import verify_rows
from bamstore.engine.rows import ArrayLayout, is_sharded_document
from bamstore.engine.store import StoreInfo, read_store_info


@dataclass
class ValidationReport:
    path: Path
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    contigs: int = 0
    chunks_decoded: int = 0
    quick: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_store(
    path: Path | str, *, quick: bool = False, threads: int = 1, storage_options=None
) -> ValidationReport:
    """Check the store at a path or URL; raises InputError only if it is not a store at all."""
    info = read_store_info(path, storage_options)
    report = ValidationReport(Path(path) if not info.remote else info.path, quick=quick)
    if info.remote:
        report.notes.append(
            "at a URL: no folder listing, so unexpected files are not looked for; chunks are "
            "checked by decoding them, not by their digests"
        )
    report.samples = len(info.sample_names)
    report.contigs = len(info.contigs)
    report.problems += list(_structure_problems(info))
    if report.problems:
        return report  # content checks need a sound structure
    completed = info.metadata_arrays.completed
    for name, done in zip(info.sample_names, completed, strict=True):
        if not done:
            report.problems.append(f"sample {name!r} is not complete (metadata/completed is false)")
    report.problems += list(_record_problems(info))
    if report.problems:
        return report
    stored, problems = _presence(info, threads)
    report.problems += problems
    if quick or report.problems:
        return report
    if not info.remote:
        report.problems += verify_rows(info.path, info.attrs, threads)
    report.problems += _content_problems(info, report, stored, threads)
    return report


_ROOT_MISMATCH = {
    "sample_names_hash": "sample_names_hash does not match sample_names (QuantNado refuses to "
    "open this)",
    "chromosomes": "chromosomes is not the sorted list of chromsizes keys",
    "structure": "structure differs from QuantNado's per-base layout",
    "bin_size": "bin_size differs from QuantNado's per-base layout",
}


def _structure_problems(info: StoreInfo) -> Iterator[str]:
    """The root attributes as written must be what the layout derives from them; every member,
    array document and chunk file name must be where the layout puts it."""
    raw, attrs = info.raw, info.attrs
    names = list(attrs.sample_names)
    n = len(names)
    if not names:
        yield "root attribute 'sample_names' must be a non-empty list of strings"
        return
    if len(set(names)) != n:
        yield "sample_names has duplicates"
    if not attrs.contigs:
        yield "chromsizes must be a non-empty mapping of contig to length"
        return
    derived = attrs.to_json()
    for key in layout.ROOT_ATTRS:
        if key not in raw:
            yield f"root attribute {key!r} is missing"
        elif raw[key] != derived[key] and key != "stranded":
            yield _ROOT_MISMATCH.get(
                key,
                f"root attribute {key!r} is {layout.shown_value(raw[key])}, but the layout "
                f"gives {layout.shown_value(derived[key])}",
            )
    try:
        profile = layout.compression_profile(attrs.compression)
    except ValueError as exc:
        yield str(exc)
        return
    stranded = raw.get("stranded", {})
    if isinstance(stranded, dict):
        if set(stranded) != set(names):
            yield "stranded must have one entry per sample"
        bad = {k: v for k, v in stranded.items() if v not in ("", *layout.STRAND_CODES)}
        if bad:
            yield f"stranded has values other than U, F, R or empty: {bad}"
    for key, value in raw.items():
        if key.startswith(layout.METADATA_ATTR_PREFIX) and (
            not isinstance(value, list) or len(value) != n
        ):
            yield f"metadata attribute {key!r} does not have one value per sample"
    unsafe = layout.contig_name_problems(attrs.contig_names, attrs.has_strand_arrays)
    for contig, problem in unsafe:
        yield f"contig {contig!r} cannot be an array of this store: {problem}"
    if unsafe:
        return  # never look up an unsafe name as a path
    layouts = info.array_layouts()  # every coverage array: its contig's length, sharded or not
    expected = {*layouts, layout.METADATA_GROUP}
    if info.remote:  # no listing: every expected member must have its zarr.json
        members = {name for name in expected if _has_document(info, name)}
    else:
        members = {p.name for p in info.path.iterdir() if p.is_dir()}
    for extra in sorted(members - expected):
        yield (
            f"unexpected root member {extra!r} (QuantNado treats every root member as a contig)"
            if not extra.endswith((layout.FWD_SUFFIX, layout.REV_SUFFIX))
            else f"strand array {extra!r} in a store without stranded samples"
        )
    for missing in sorted(expected - members):
        yield f"array or group {missing!r} is missing"
    for array in sorted(expected & members - {layout.METADATA_GROUP}):
        array_layout = layouts[array]
        try:
            doc = info.array_document(array)
        except (OSError, ValueError):
            yield f"array {array!r}: zarr.json is missing or not JSON"
            continue
        want = array_layout.document(n, profile)
        if _same_but_block_size(doc, want):
            doc = want  # stores from before format 3: blosc chose its own block size
        if doc != want and is_sharded_document(doc) != array_layout.sharded:
            stored, recorded = (
                ("unsharded", "sharded") if array_layout.sharded else ("sharded", "unsharded")
            )
            yield (
                f"array {array!r}: its zarr.json is {stored}, but the store is recorded as "
                f"{recorded}"
            )
        elif doc != want:
            diffs = sorted(k for k in set(doc) | set(want) if doc.get(k) != want.get(k))
            yield f"array {array!r}: metadata differs from the layout in {', '.join(diffs)}"
        rows = info.path / array / layout.CHUNK_FOLDER
        if not info.remote and rows.is_dir():
            for row_dir in rows.iterdir():
                if not row_dir.name.isdigit() or int(row_dir.name) >= n:
                    yield f"array {array!r}: unexpected chunk folder c/{row_dir.name}"
                    continue
                for f in row_dir.iterdir():
                    if not array_layout.is_row_file(f.name):
                        yield f"array {array!r}: unexpected file c/{row_dir.name}/{f.name}"
    yield from _metadata_problems(info, n)


def _has_document(info: StoreInfo, name: str) -> bool:
    try:
        info.files.read(f"{name}/{layout.ZARR_JSON}")
    except FileNotFoundError:
        return False
    return True


def _same_but_block_size(doc: dict, want: dict) -> bool:
    """Whether an array document is the layout's but for blosc's block size (which only the
    encoder uses: every chunk records its own)."""
    if set(doc) != set(want) or any(doc[k] != want[k] for k in doc if k != "codecs"):
        return False
    mine, theirs = doc.get("codecs", []), want.get("codecs", [])
    if is_sharded_document(doc) and is_sharded_document(want):
        inner = [c["configuration"] for c in (mine[0], theirs[0])]
        rest = [{k: v for k, v in c.items() if k != "codecs"} for c in inner]
        return rest[0] == rest[1] and layout.same_chunk_codecs(
            inner[0].get("codecs", []), inner[1].get("codecs", [])
        )
    return layout.same_chunk_codecs(mine, theirs)


def _metadata_problems(info: StoreInfo, n: int) -> Iterator[str]:
    try:
        group = zarr.open_group(info.zarr_store(), mode="r")
        meta = group.get(layout.METADATA_GROUP)
    except (OSError, ValueError) as exc:
        yield f"the metadata group cannot be opened by zarr ({exc})"
        return
    if not isinstance(meta, zarr.Group):
        yield "metadata group is missing"
        return
    for spec in layout.METADATA_SPECS:
        try:
            arr = meta.get(spec.name)
        except ValueError:  # JSONDecodeError: its zarr.json is cut short or altered
            yield f"metadata/{spec.name}/zarr.json is not JSON (truncated or altered)"
            continue
        if not isinstance(arr, zarr.Array):
            yield f"metadata/{spec.name} is missing"
        elif arr.shape != spec.shape(n) or arr.dtype != spec.dtype:
            yield (
                f"metadata/{spec.name} is {arr.dtype}{list(arr.shape)}, expected "
                f"{spec.dtype}{list(spec.shape(n))}"
            )


def _record_problems(info: StoreInfo) -> Iterator[str]:
    """The `bamstore` record must describe every sample, aligned with the contigs, and agree
    with the root attributes."""
    record = info.record
    if record is None:
        yield f"root attribute 'bamstore': {info.attrs.record_problem}: content unchecked"
        return
    n_contigs = len(info.contigs)
    total_reads = info.metadata_arrays.total_reads
    for row, name in enumerate(info.sample_names):
        sample = record.samples.get(name)
        if sample is None:
            yield f"sample {name!r} has no entry in the 'bamstore' attribute"
            continue
        for key in sample.length_problems(n_contigs):
            yield f"sample {name!r}: bamstore record {key!r} does not list every contig"
        if sample.strandedness != info.stranded[name]:
            yield (
                f"sample {name!r}: stranded is {info.stranded[name]!r} but extraction recorded "
                f"{sample.strandedness!r}"
            )
        if sample.total_reads != int(total_reads[row]):
            yield (
                f"sample {name!r}: metadata/total_reads is {int(total_reads[row])} but "
                f"extraction counted {sample.total_reads}"
            )


def _presence(info: StoreInfo, threads: int) -> tuple[dict[tuple[int, str], list[int]], list[str]]:
    """The stored chunk columns of every row of every array, and the problems of rows whose
    chunks are not the ones their record lists (format 3; before it, only whether a row with
    coverage has any). A shard's index is read and checked by its CRC32C; a row's files are
    listed; at a URL, the listed chunks are asked for (a few bytes each) and a shard's index
    fetched."""
    assert info.record is not None
    layouts = info.array_layouts()
    jobs: list[tuple[int, str, layout.ArrayRow]] = [
        (row, name, array_row)
        for row, name in enumerate(info.sample_names)
        for array_row in info.record.samples[name].rows(
            info.attrs.contig_names, info.has_strand_arrays
        )
    ]

    def check(job: tuple[int, str, layout.ArrayRow]) -> tuple[list[int], list[str]]:
        row, name, array_row = job
        array = array_row.array
        listed = None if array_row.columns is None else layout.parse_columns(array_row.columns)
        where = f"sample {name!r}, array {array!r}"
        try:
            stored = _stored(info, layouts[array], array, row, listed)
        except shard.DamagedShardError as exc:
            return [], [f"{where}: shard {array}/c/{row}/0 is damaged: {exc.reason}"]
        problems = []
        if listed is not None:
            missing = sorted(listed - set(stored))
            extra = sorted(set(stored) - listed)
            what = "inner chunk" if layouts[array].sharded else "chunk file"
            if missing:
                problems.append(
                    f"{where}: {what}(s) {_cols(array, row, missing)} missing: the record lists "
                    "them"
                )
            if extra:
                problems.append(f"{where}: {what}(s) {_cols(array, row, extra)} not in the record")
        elif array_row.coverage_sum > 0 and not stored:
            problems.append(f"{where}: no chunk files, but extraction recorded coverage")
        return stored, problems

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(check, jobs))
    stored = {
        (row, array_row.array): cols
        for (row, _, array_row), (cols, _) in zip(jobs, results, strict=True)
    }
    return stored, [p for _, problems in results for p in problems]


def _cols(array: str, row: int, cols: list[int]) -> str:
    shown = ", ".join(f"{array}/c/{row}/{c}" for c in cols[:5])
    return shown + (f" and {len(cols) - 5} more" if len(cols) > 5 else "")


def _stored(
    info: StoreInfo, array_layout: ArrayLayout, array: str, row: int, listed: frozenset | None
) -> list[int]:
    """The columns of the chunks stored in one row."""
    if not info.remote:
        return array_layout.columns(info.path, array, row)
    key = f"{array}/{layout.CHUNK_FOLDER}/{row}"
    if array_layout.sharded:
        size = shard.index_nbytes(array_layout.n_chunks)
        tail = info.files.fetch([f"{key}/{shard.SHARD_COLUMN}"], [(-size, None)])[0]
        if isinstance(tail, FileNotFoundError):
            return []
        if isinstance(tail, Exception):
            raise tail
        name = Path(info.files.path(f"{key}/{shard.SHARD_COLUMN}"))
        if len(tail) < size:
            raise shard.DamagedShardError(name, "shorter than its index")
        return shard.parse_shard_index(tail[-size:], name, array_layout.n_chunks, None).columns()
    if listed is None:
        return []  # no listing at a URL, and no record of the columns to ask for
    cols = sorted(listed)
    found = info.files.fetch([f"{key}/{c}" for c in cols], [(0, 16)] * len(cols))
    return [c for c, data in zip(cols, found, strict=True) if not isinstance(data, Exception)]


def _content_problems(
    info: StoreInfo,
    report: ValidationReport,
    stored: dict[tuple[int, str], list[int]],
    threads: int,
) -> list[str]:
    """Decode every stored chunk through zarr and compare sums and sparsity with the records."""
    assert info.record is not None
    group = zarr.open_group(info.zarr_store(), mode="r")
    chunk_len = info.chunk_len
    lengths = [length for _, length in info.contigs]
    jobs: list[tuple[int, str, layout.ArrayRow]] = []
    for row, name in enumerate(info.sample_names):
        record = info.record.samples[name]
        for array_row in record.rows(info.attrs.contig_names, info.has_strand_arrays):
            jobs.append((row, name, array_row))

    def decode(job: tuple[int, str, layout.ArrayRow]) -> tuple[int, int, int]:
        row, name, array_row = job
        array, length = array_row.array, lengths[array_row.contig_index]
        total = nonzero = chunks = 0
        columns = stored.get((row, array), [])
        if not columns:  # nothing stored: all zeros (opening the array costs ~1 ms; 100k contigs)
            return total, nonzero, chunks
        arr = group[array]
        for col in columns:
            try:
                values = arr[row, col * chunk_len : min((col + 1) * chunk_len, length)]
            except Exception as exc:  # truncated or garbled file: name it, check the rest
                undecodable.append(
                    f"sample {name!r}, array {array!r}: chunk c/{row}/{col} cannot be decoded "
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
    for (_row, name, array_row), (total, nonzero, chunks) in zip(jobs, results, strict=True):
        report.chunks_decoded += chunks
        if total != array_row.coverage_sum:
            problems.append(
                f"sample {name!r}, array {array_row.array!r}: coverage sums to {total} but "
                f"extraction recorded {array_row.coverage_sum} (a chunk is lost or damaged)"
            )
        if array_row.array == info.contigs[array_row.contig_index][0]:
            length = lengths[array_row.contig_index]
            zero_fraction.setdefault(name, []).append(100.0 * (length - nonzero) / length)
    sparsity = info.metadata_arrays.sparsity
    for row, name in enumerate(info.sample_names):
        expected = float(np.mean(zero_fraction.get(name, [math.nan])))
        if not math.isclose(float(sparsity[row]), expected, rel_tol=1e-4, abs_tol=1e-4):
            problems.append(
                f"sample {name!r}: metadata/sparsity is {float(sparsity[row]):.4f} but "
                f"the stored coverage gives {expected:.4f}"
            )
    return problems
