"""Building stores from Python with QuantNado's calls, through bamstore's own jobs.

`from_bam_files` is `bamstore build` with the samples given as a list: the same extraction
jobs and runner (`build.build_samples`), the same merge, the same chromosome rules (recorded
as rules, so API stores and CLI parts merge). `process_samples` fills the incomplete rows of an
existing store: each sample is extracted with the store's recorded settings into a part and
inserted by `merge.insert_part`. Nothing here reads BAMs, counts coverage or places chunks
itself; what is QuantNado's alone lives here: sample names from file stems, strandedness
arguments, the automatic chunk length, local staging and the log file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from bamstore import layout
from bamstore.api.reader import PathLike, StoreReader
from bamstore.engine.bam_input import open_alignment, read_chromsizes, select_contigs
from bamstore.engine.build import (
    ExtractJob,
    Sample,
    build_samples,
    check_jobs,
    parts_dir_for,
    run_extractions,
)
from bamstore.engine.extract import ExtractOptions, GivenContigs
from bamstore.engine.merge import insert_part
from bamstore.engine.publish import check_output_path, output_lock, remove_tree, staged_output
from bamstore.engine.samplesheet import sample_names_problem, strandedness_problem
from bamstore.engine.writer import StoreWriter

log = logging.getLogger(__name__)

Stranded = str | Sequence[str] | Mapping[str, str | None] | None
TEST_CONTIGS = ("chr21", "chr22", "chrY")
# QuantNado's list (utils.NETWORK_FS) plus the parallel filesystems and FUSE mounts it misses
NETWORK_FS_TYPES = frozenset(
    {
        "ceph",
        "nfs",
        "nfs4",
        "lustre",
        "glusterfs",
        "cifs",
        "smbfs",
        "smb3",
        "afs",
        "davfs",
        "gpfs",
        "beegfs",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.glusterfs",
        "fuse.cephfs",
    }
)


# ---------------------------------------------------------------------------- arguments


def normalize_store_path(path: PathLike) -> Path:
    """QuantNado's `_normalize_path`: a path not ending in `.zarr` gets that suffix.

    Kept so that `BamStore.open("cov")` opens the same store in both tools (`cov.v1` becomes
    `cov.zarr`, as there); a warning says when the path was changed.
    """
    p = Path(path)
    if str(p).endswith(layout.STORE_SUFFIX):
        return p
    q = p.with_suffix(layout.STORE_SUFFIX)
    log.warning("store path %s is used as %s (stores end in .zarr, as in QuantNado)", p, q)
    return q


def normalise_strandedness(stranded: Stranded, sample_names: Sequence[str]) -> dict[str, str]:
    """QuantNado's `_normalize_strandedness`, returning "" (not None) for unstranded samples.

    None: no sample stranded; "U"/"F"/"R": every sample; a list of names: those samples as "U";
    a dict name -> code: per sample (missing names, None and "" are unstranded).
    """
    if stranded is None:
        return dict.fromkeys(sample_names, "")
    if isinstance(stranded, str):
        problem = strandedness_problem(stranded)
        if problem:
            raise ValueError(f"stranded must be one of U, F, R or None: {problem}")
        return dict.fromkeys(sample_names, stranded)
    if isinstance(stranded, Mapping):
        unknown = sorted(set(stranded) - set(sample_names))
        if unknown:
            raise ValueError(f"Unknown sample names in stranded dict: {unknown}")
        for name, code in stranded.items():
            problem = strandedness_problem(code or "")
            if problem:
                raise ValueError(f"stranded[{name!r}] must be one of U, F, R or None: {problem}")
        return {s: stranded.get(s) or "" for s in sample_names}
    if isinstance(stranded, Sequence):
        unknown = sorted(set(stranded) - set(sample_names))
        if unknown:
            raise ValueError(f"Unknown sample names in stranded list: {unknown}")
        chosen = set(stranded)
        return {s: "U" if s in chosen else "" for s in sample_names}
    raise TypeError(f"stranded must be str, list, dict or None, got {type(stranded).__name__}")


def load_chromsizes(source: Mapping[str, int] | PathLike) -> dict[str, int]:
    """A dict as given, or a `name<TAB>length` file (no header), in file order."""
    if isinstance(source, Mapping):
        return {str(k): int(v) for k, v in source.items()}
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"Chromsizes file not found: {path}")
    return dict(read_chromsizes(path))


def check_sample_names(names: Sequence[str]) -> None:
    """Names become file names of per-sample parts, and rows are looked up by name."""
    problem = sample_names_problem(names)
    if problem:
        raise ValueError(problem)


def check_contigs(chromsizes: Mapping[str, int], stranded: bool) -> None:
    for name, problem in layout.contig_name_problems(chromsizes, stranded):
        raise ValueError(f"contig {name!r} cannot be stored: {problem}")
    for name, length in chromsizes.items():
        if int(length) <= 0:
            raise ValueError(f"contig {name!r} has length {length}; lengths must be positive")


def chromosome_rule(filter_chromosomes: bool, test: bool, universe: Iterable[str]) -> str:
    """QuantNado's contig arguments as one of bamstore's selection rules (the same rules as
    `--chromosomes`, recorded in the store): `filter_chromosomes` keeps the primary
    chromosomes, False keeps every contig; `test` keeps only chr21, chr22 and chrY."""
    if test:
        names = set(universe)
        kept = [c for c in TEST_CONTIGS if c in names]
        log.info("test mode: keeping contigs %s", kept)
        if not kept:
            raise ValueError(
                f"test=True keeps chr21, chr22 and chrY, none of which is in {sorted(names)[:8]}"
            )
        return ",".join(kept)
    return "primary" if filter_chromosomes else "all"


def check_attach(
    store: StoreReader,
    names: list[str],
    chromsizes: Mapping[str, int] | PathLike | None,
    chunk_len: int | None,
    stranded: Stranded,
) -> None:
    """Refuse to attach to a store whose names, contig lengths or strandedness differ from
    what the caller gives; a different chunk_len is ignored with a warning."""
    if names != store.sample_names:
        raise ValueError(
            "Provided sample_names do not match stored sample_names "
            f"({store.sample_names}); refusing to resume to prevent corruption"
        )
    if chromsizes is not None:
        given = load_chromsizes(chromsizes)
        bad = [c for c, n in store.chromsizes.items() if given.get(c) != n]
        if bad:
            raise ValueError(
                f"chromsizes disagree with the store on {bad[:5]} (the store has "
                f"{ {c: store.chromsizes[c] for c in bad[:5]} }); resume with the genome the "
                "store was built with"
            )
    if stranded is not None:
        wanted = normalise_strandedness(stranded, names)
        if wanted != store.stranded:
            raise ValueError(
                f"stranded={stranded!r} differs from the store's {store.stranded}; the stored "
                "strandedness is used on resume (pass stranded=None)"
            )
    if chunk_len is not None and int(chunk_len) != store.chunk_len:
        log.warning("chunk_len %s ignored: the store has chunk_len %d", chunk_len, store.chunk_len)


# ---------------------------------------------------------------------------- chunk length


def _mount_fs_type(path: Path) -> str | None:
    """Filesystem type of the mount holding `path`; whole path components are compared (a
    prefix match would put /data2 on the /data mount)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    target = path.resolve()
    best: str | None = None
    best_len = -1
    for line in lines:
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        mount = Path(fields[4].replace("\\040", " "))
        fs_type = fields[fields.index("-") + 1]
        if (mount == target or mount in target.parents) and len(str(mount)) > best_len:
            best, best_len = fs_type, len(str(mount))
    return best


def is_network_fs(path: Path) -> bool:
    return (_mount_fs_type(path) or "") in NETWORK_FS_TYPES


def auto_chunk_len(lengths: Iterable[int], store_path: Path) -> int:
    """QuantNado's `chunk_len=None` (utils.estimate_chunk_len at 4 bytes per position).

    4 MiB chunks (1,048,576 positions) locally, 128 MiB (33,554,432) on network filesystems;
    doubled while there would be more than 100,000 (local) / 10,000 (network) chunks, capped at
    the longest contig, never more than the total length.
    """
    sizes = [int(v) for v in lengths]
    total, longest = sum(sizes), max(sizes, default=0)
    probe = store_path if store_path.exists() else store_path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    network = is_network_fs(probe)
    target_bytes = (128 if network else 4) * 1024**2
    max_chunks = 10_000 if network else 100_000
    chunk = max(1024, round(target_bytes / layout.COVERAGE_DTYPE.itemsize / 1024) * 1024)
    while total and math.ceil(total / chunk) > max_chunks:
        chunk *= 2
        if longest and chunk > longest:
            chunk = longest
            break
    chunk = min(chunk, total) if total > 0 else chunk
    log.info("chunk_len %d (%s filesystem at %s)", chunk, "network" if network else "local", probe)
    return max(1, chunk)


def resolve_chunk_len(chunk_len: int | None, chromsizes: Mapping[str, int], path: Path) -> int:
    if chunk_len is None:
        return auto_chunk_len(chromsizes.values(), path)
    if int(chunk_len) <= 0:
        raise ValueError("chunk_len must be a positive integer")
    return int(chunk_len)


# ---------------------------------------------------------------------------- building


def create_store(
    path: Path,
    contigs: Mapping[str, int],
    names: Sequence[str],
    strand_map: Mapping[str, str],
    *,
    chunk_len: int,
    compression: str,
    chromosome_selection: str,
    shard: bool = layout.SHARD_BY_DEFAULT,
) -> None:
    """An empty store (every sample incomplete), published atomically at `path`; the settings
    its samples will be counted with are recorded now."""
    check_output_path(path, overwrite=True)
    settings = ExtractOptions(
        chromosomes=chromosome_selection, chunk_len=chunk_len, compression=compression, shard=shard
    ).store_settings()
    n = len(names)
    with staged_output(path, overwrite=True) as tmp:
        writer = StoreWriter(
            tmp,
            list(contigs.items()),
            n,
            stranded=any(strand_map.values()),
            chunk_len=settings.chunk_len,
            profile=layout.compression_profile(settings.compression),
            sharded=settings.shard,
        )
        writer.write_metadata(layout.MetadataArrays.incomplete(n))
        writer.write_root_attributes(
            layout.StoreAttributes(
                contigs=tuple(contigs.items()),
                sample_names=tuple(names),
                chunk_len=settings.chunk_len,
                compression=settings.compression,
                stranded=strand_map,
                bamstore=layout.BamstoreRecord(settings, {}),
            )
        )
    log.info("created store %s (%d samples, %d contigs)", path, n, len(contigs))


def process_samples(
    store_path: Path,
    attrs: layout.StoreAttributes,
    done: Sequence[bool],
    bam_files: Sequence[PathLike],
    max_workers: int,
    on_inserted: Callable[[], None],
) -> None:
    """Count every incomplete sample (bam_files[i] is row i) into the store at `store_path`.

    Each is extracted with the store's recorded settings into a part (`max_workers` at a time)
    and inserted as it finishes, so a failure leaves the other samples complete. Parts live in
    `.NAME.zarr.parts` under the store's lock; one left by a killed run is removed first.
    """
    if attrs.bamstore is None:
        raise ValueError(
            f"{store_path} was not made by bamstore; filling it would mix two "
            "coverage definitions (rebuild it with BamStore.from_bam_files)"
        )
    names = list(attrs.sample_names)
    for i, name in enumerate(names):
        if done[i]:
            log.info("skipping completed sample '%s' (index %d)", name, i)
    todo = [i for i in range(len(names)) if not done[i]]
    if not todo:
        return
    parts_dir = parts_dir_for(store_path)
    with output_lock(store_path), output_lock(parts_dir, subject=store_path):
        for leftover in parts_dir.parent.glob(f"{parts_dir.name}*"):
            if leftover.is_dir():  # a dead run's (ours: we hold the lock)
                log.info("removing %s, left by an interrupted run", leftover)
                remove_tree(leftover)
        options = ExtractOptions.from_settings(
            attrs.bamstore.settings, chromsizes=GivenContigs(attrs.contigs, "the store")
        )
        jobs = [
            ExtractJob(
                names[i],
                Path(bam_files[i]),
                parts_dir / f"{i}.zarr",
                dataclasses.replace(options, strandedness=attrs.stranded[names[i]]),
            )
            for i in todo
        ]
        rows = {names[i]: i for i in todo}
        check_jobs(jobs, list(attrs.contigs))
        parts_dir.mkdir()

        def insert(job: ExtractJob, _result: object) -> None:
            record = insert_part(store_path, job.part, rows[job.sample])
            remove_tree(job.part)
            on_inserted()
            log.info(
                "[%s] complete (row %d, %d reads)", job.sample, rows[job.sample], record.total_reads
            )

        try:
            run_extractions(
                jobs,
                max_workers,
                on_done=insert,
                retry_hint="then call process_samples again (finished samples are kept)",
            )
        finally:
            remove_tree(parts_dir)


def build_from_bams(
    final: Path,
    bams: Sequence[Path],
    names: Sequence[str],
    strand_map: Mapping[str, str],
    *,
    rule: str,
    chromsizes: Mapping[str, int] | None,
    chunk_len: int,
    compression: str,
    max_workers: int,
    overwrite: bool,
    parts_root: Path,
    metadata_tables: Sequence[Mapping[str, Mapping[str, str]]],
    metadata_source: str,
    shard: bool = layout.SHARD_BY_DEFAULT,
) -> None:
    """`bamstore build` of these BAMs into `final`; parts under `parts_root`."""
    given = GivenContigs(tuple(chromsizes.items()), "chromsizes") if chromsizes else None
    options = ExtractOptions(
        chromosomes=rule,
        chromsizes=given,
        chunk_len=chunk_len,
        compression=compression,
        shard=shard,
    )
    build_samples(
        [
            Sample(name, bam, strandedness=strand_map[name])
            for name, bam in zip(names, bams, strict=True)
        ],
        final,
        options,
        jobs=max_workers,
        overwrite=overwrite,
        metadata_tables=metadata_tables,
        metadata_source=metadata_source,
        parts_dir=parts_root / f".{final.name}.parts",
        retry_hint="then call from_bam_files again",
        interrupted_hint=None,
    )
    log.info("published %s", final)


def selected_contigs(bam: Path, rule: str, chromsizes: Mapping[str, int] | None) -> dict[str, int]:
    """The contigs `rule` keeps of `chromsizes`, else of the header of `bam` (which must agree
    with `chromsizes`): what every sample will be counted on."""
    if chromsizes is None:
        log.info("taking chromsizes from %s", bam)
    universe = list(chromsizes.items()) if chromsizes is not None else None
    return dict(select_contigs(open_alignment(bam), rule, universe))


def staging_root(final: Path, local_staging: bool, staging_dir: PathLike | None) -> Path:
    """Where the per-sample parts are written: `staging_dir`, else $TMPDIR with
    `local_staging` (QuantNado's local staging), else beside the store (same filesystem, so
    merging hard-links their chunks)."""
    if staging_dir is not None:
        return Path(staging_dir)
    if local_staging:
        return Path(os.environ.get("TMPDIR") or tempfile.gettempdir())
    return final.parent


@contextlib.contextmanager
def log_to_file(log_file: PathLike | None) -> Iterator[None]:
    """QuantNado's `log_file`: the file is replaced and receives this call's INFO messages."""
    if log_file is None:
        yield
        return
    path = Path(log_file)
    path.unlink(missing_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)-8s] %(message)s"))
    logger = logging.getLogger("bamstore")
    old_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()
