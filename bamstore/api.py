"""`BamStore`: QuantNado's Python API over bamstore's engine.

Users who build and read stores from Python call the same methods as with QuantNado's
`BamStore` (commit 64ea0a4; ../shared/notes/quantnado_spec.md), with the same arguments and the
same meanings, so scripts move between the two tools. Coverage is counted by our extractor
(samtools depth semantics, 0-based) and stores are written in the shared layout (`layout`).

Where QuantNado has a known bug, this class does the documented right thing instead (spec
section 5); each difference is listed in the `BamStore` docstring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import operator
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.bam_input import open_alignment, read_chromsizes
from bamstore.build import ExtractJob, check_jobs, run_extractions
from bamstore.errors import InputError
from bamstore.extract import ExtractOptions
from bamstore.merge import insert_part, merge_stores
from bamstore.publish import check_output_path, output_lock, remove_tree, staged_output
from bamstore.samplesheet import QUANTNADO_LABEL_COLUMN, sample_name_problem
from bamstore.writer import StoreWriter

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Stranded = str | Sequence[str] | Mapping[str, str | None] | None
TEST_CONTIGS = ("chr21", "chr22", "chrY")
NORMALISATIONS = ("cpm", "rpkm")
# QuantNado's list (utils.NETWORK_FS) plus the parallel filesystems and FUSE mounts it misses (B12)
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


class ReadOnlyStoreError(RuntimeError):
    """A write method was called on a store opened read-only (QuantNado raises RuntimeError)."""


class MissingExtraError(InputError, ImportError):
    """An optional dependency is not installed: one line saying which extra to install."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        super().__init__(None, f"{what} needs {package}", f"pip install 'bamstore[{extra}]'")


# ---------------------------------------------------------------------------- helpers


def parse_region(region: str) -> tuple[str, int | None, int | None]:
    """Parse a region string exactly as QuantNado's `utils.parse_genomic_region` does.

    Rule for rule, so the same string selects the same positions in both tools: every comma is
    dropped; `chr1` is the whole contig (start and end None); `chr1:S-E` is 0-based start S and
    exclusive end E, i.e. the Python slice [S:E] (`chr1:1,000-2,000` is 1,000 positions, index
    1000 = 1-based position 1,001); the split is at the last '-'; S, E >= 0 and E > S.
    """
    text = region.replace(",", "")
    if ":" not in text:
        return text, None, None
    invalid = f"Invalid region format: {text}. Expected 'chr:start-end' or 'chr'."
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(invalid)
    chrom, coords = parts
    dash = coords.rfind("-")
    if dash <= 0:
        raise ValueError(invalid)
    try:
        start, end = int(coords[:dash]), int(coords[dash + 1 :])
    except ValueError:
        raise ValueError(invalid) from None
    if start < 0 or end < 0:
        raise ValueError(f"Coordinates must be non-negative: {text}")
    if end <= start:
        raise ValueError(f"End coordinate must be greater than start: {text}")
    return chrom, start, end


def format_region(chrom: str, start: int, end: int) -> str:
    """The region string that `parse_region` reads back as (chrom, start, end)."""
    return f"{chrom}:{start:,}-{end:,}"


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
    codes = layout.STRAND_CODES
    if stranded is None:
        return dict.fromkeys(sample_names, "")
    if isinstance(stranded, str):
        if stranded not in (*codes, ""):
            raise ValueError(f"stranded must be one of {codes} or None, got {stranded!r}")
        return dict.fromkeys(sample_names, stranded)
    if isinstance(stranded, Mapping):
        unknown = sorted(set(stranded) - set(sample_names))
        if unknown:
            raise ValueError(f"Unknown sample names in stranded dict: {unknown}")
        for name, code in stranded.items():
            if code not in (*codes, "", None):
                raise ValueError(f"stranded[{name!r}] must be one of {codes}, got {code!r}")
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


def filter_chromsizes(
    chromsizes: Mapping[str, int], *, filter_chromosomes: bool = True, test: bool = False
) -> dict[str, int]:
    """QuantNado's contig selection for `from_bam_files`.

    `filter_chromosomes`: names starting with "chr" without "_" (keeps chrM and chrEBV, drops
    chrUn_*, *_random, *_alt and Ensembl names such as "1"); False keeps every contig (which
    QuantNado ignores, bug B1). `test`: only chr21, chr22 and chrY.
    """
    kept = dict(chromsizes)
    if filter_chromosomes:
        kept = {k: v for k, v in kept.items() if k.startswith("chr") and "_" not in k}
    if test:
        kept = {k: v for k, v in kept.items() if k in TEST_CONTIGS}
        log.info("test mode: keeping contigs %s", list(kept))
    return kept


def _mount_fs_type(path: Path) -> str | None:
    """Filesystem type of the mount holding `path`; whole path components only (B12)."""
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


def _resolve_chunk_len(chunk_len: int | None, chromsizes: Mapping[str, int], path: Path) -> int:
    if chunk_len is None:
        return auto_chunk_len(chromsizes.values(), path)
    if int(chunk_len) <= 0:
        raise ValueError("chunk_len must be a positive integer")
    return int(chunk_len)


def _check_new_sample_names(names: Sequence[str]) -> None:
    """Names become file names of per-sample parts, and rows are looked up by name."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"sample names must be unique; repeated: {dupes}")
    for name in names:
        problem = sample_name_problem(name)
        if problem:
            raise ValueError(f"{problem}; use letters, digits and ._+- only")


def _check_contig_names(chromsizes: Mapping[str, int], stranded: bool) -> None:
    for name, problem in layout.contig_name_problems(chromsizes, stranded):
        raise ValueError(f"contig {name!r} cannot be stored: {problem}")
    for name, length in chromsizes.items():
        if int(length) <= 0:
            raise ValueError(f"contig {name!r} has length {length}; lengths must be positive")


def _local_store(path: Path, read_only: bool) -> Any:
    """The zarr store under every BamStore (a seam for tests that count chunk reads)."""
    return LocalStore(path, read_only=read_only)


def _read_metadata(metadata: pd.DataFrame | PathLike | Sequence[PathLike]) -> pd.DataFrame:
    """A DataFrame, a CSV/TSV, or several combined (union of columns in first-seen order, gaps
    ""; unlike QuantNado no column is dropped for containing "r1"/"r2" (B10) and a missing file
    is an error, not skipped)."""
    if isinstance(metadata, pd.DataFrame):
        return metadata
    if isinstance(metadata, str | os.PathLike):
        return _read_table(Path(metadata))
    frames = [_read_table(Path(p)) for p in metadata]
    if not frames:
        raise ValueError("No metadata files provided")
    columns: list[str] = []
    for frame in frames:
        columns += [c for c in frame.columns if c not in columns]
    return pd.concat([f.reindex(columns=columns, fill_value="") for f in frames], ignore_index=True)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"Metadata file not found: {path}")
    return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")


def _to_str_list(items: Iterable[Any]) -> list[str]:
    """QuantNado's attribute values: str(v), and "" for NaN/None/NA."""
    return ["" if _is_missing(v) else str(v) for v in items]


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-like values are not missing
        return False


@contextlib.contextmanager
def _log_to_file(log_file: PathLike | None) -> Iterator[None]:
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


def _move_tree(src: Path, dst: Path) -> None:
    """Rename if on the same filesystem, else copy (staging on scratch, store on /project)."""
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copytree(src, dst)


# ---------------------------------------------------------------------------- extraction jobs


# ---------------------------------------------------------------------------- BamStore


class BamStore:
    """A coverage store: QuantNado's `BamStore` API, bamstore's engine and semantics.

    Create: `BamStore(path, chromsizes, sample_names)` makes an empty store (every sample
    incomplete) that `process_samples` fills, or `BamStore.from_bam_files(...)` does both.
    Attach: `BamStore.open(path)` (read-only by default). Read: `extract_region`,
    `library_sizes`, `metadata`.

    Same meanings as QuantNado, with these deliberate differences:
      - coverage is bamstore's (samtools depth -a, 0-based; spec section 2 lists QuantNado's
        shift and filters), and `total_reads` is the primary records that pass the read filter
        on the kept contigs, not `bam.mapped` (B7);
      - `read_only=True` opens the zarr group read-only and every write raises (B6);
        attaching read-only does not need `resume=True`;
      - `resume=True` wins over the default `overwrite=True` (QuantNado deletes the store);
        on resume the stored contigs and strandedness are used and a conflicting `stranded` or
        contig length is refused (B9);
      - `filter_chromosomes=False` keeps every contig (B1), and the constructor keeps the
        chromsizes it is given; a selection that keeps no contig is an error;
      - overwriting publishes the new store in one rename and leaves the old one in place on
        failure (A1, A2); local staging is published the same way;
      - sample names must be unique and use letters, digits and ._+- (they name files);
      - metadata calls rewrite zarr.json once, atomically (P5); NaN is stored as ""; a
        duplicated sample in a metadata table or an unknown one in `update_metadata` is an
        error, not silently ignored;
      - `extract_region` returns numpy unless `as_xarray=True`, normalises per sample along the
        sample axis, and gives NaN (not inf) for a zero library size.
    """

    def __init__(
        self,
        store_path: PathLike,
        chromsizes: Mapping[str, int] | PathLike | None,
        sample_names: Sequence[str],
        *,
        chunk_len: int | None = None,
        construction_compression: str = "default",
        overwrite: bool = True,
        resume: bool = False,
        read_only: bool = False,
        stranded: Stranded = None,
    ) -> None:
        self.path = Path(store_path)
        self.store_path = normalize_store_path(self.path)
        self.read_only = bool(read_only)
        self._completed: np.ndarray | None = None
        self._metadata_cache: pd.DataFrame | None = None
        names = [str(s) for s in sample_names]
        if not names:
            raise ValueError("sample_names must not be empty")
        exists = self.store_path.exists()
        if exists and (resume or (read_only and not overwrite)):
            self._attach(names, chromsizes, chunk_len, stranded)
        elif exists and overwrite:
            if read_only:
                raise ValueError("Cannot overwrite store in read-only mode.")
            self._create(names, chromsizes, chunk_len, construction_compression, stranded)
        elif exists:
            raise FileExistsError(
                f"Store already exists at {self.store_path}; set overwrite=True or resume=True"
            )
        elif read_only:
            raise FileNotFoundError(f"Store does not exist at {self.store_path} (read_only=True)")
        else:
            self._create(names, chromsizes, chunk_len, construction_compression, stranded)

    # ------------------------------------------------------------------ create / attach

    def _create(
        self,
        names: list[str],
        chromsizes: Mapping[str, int] | PathLike | None,
        chunk_len: int | None,
        compression: str,
        stranded: Stranded,
    ) -> None:
        """An empty store (all samples incomplete), published atomically at store_path."""
        if chromsizes is None:
            raise ValueError("chromsizes is needed to create a store (None only attaches)")
        _check_new_sample_names(names)
        sizes = load_chromsizes(chromsizes)
        if not sizes:
            raise ValueError("chromsizes lists no contigs")
        strand_map = normalise_strandedness(stranded, names)
        _check_contig_names(sizes, any(strand_map.values()))
        profile = layout.compression_profile(compression)
        self.store_path.parent.mkdir(parents=True, exist_ok=True)
        check_output_path(self.store_path, overwrite=True)
        resolved = _resolve_chunk_len(chunk_len, sizes, self.store_path)
        n = len(names)
        with staged_output(self.store_path, overwrite=True) as tmp:
            writer = StoreWriter(
                tmp,
                list(sizes.items()),
                n,
                stranded=any(strand_map.values()),
                chunk_len=resolved,
                profile=profile,
            )
            writer.write_metadata(layout.MetadataArrays.incomplete(n))
            settings = _extract_options(list(sizes), resolved, profile.name, "").store_settings()
            writer.write_root_attributes(
                layout.StoreAttributes(
                    contigs=tuple(sizes.items()),
                    sample_names=tuple(names),
                    chunk_len=resolved,
                    compression=profile.name,
                    stranded=strand_map,
                    bamstore=layout.BamstoreRecord(settings, {}),
                )
            )
        log.info("created store %s (%d samples, %d contigs)", self.store_path, n, len(sizes))
        self._open_group()

    def _attach(
        self,
        names: list[str],
        chromsizes: Mapping[str, int] | PathLike | None,
        chunk_len: int | None,
        stranded: Stranded,
    ) -> None:
        self._open_group()
        if names != self.sample_names:
            raise ValueError(
                "Provided sample_names do not match stored sample_names "
                f"({self.sample_names}); refusing to resume to prevent corruption"
            )
        if chromsizes is not None:
            given = load_chromsizes(chromsizes)
            bad = [c for c, n in self.chromsizes.items() if given.get(c) != n]
            if bad:
                raise ValueError(
                    f"chromsizes disagree with the store on {bad[:5]} (the store has "
                    f"{ {c: self.chromsizes[c] for c in bad[:5]} }); resume with the genome the "
                    "store was built with"
                )
        if stranded is not None:
            wanted = normalise_strandedness(stranded, names)
            if wanted != self.stranded:
                raise ValueError(
                    f"stranded={stranded!r} differs from the store's {self.stranded}; the stored "
                    "strandedness is used on resume (pass stranded=None)"
                )
        if chunk_len is not None and int(chunk_len) != self.chunk_len:
            log.warning(
                "chunk_len %s ignored: the store has chunk_len %d", chunk_len, self.chunk_len
            )

    def _open_group(self) -> None:
        """Open (or reopen after a write) the zarr group and check what readers need."""
        store = _local_store(self.store_path, self.read_only)
        try:
            root = zarr.open_group(store=store, mode="r" if self.read_only else "r+", zarr_format=3)
        except Exception as exc:
            raise ValueError(f"{self.store_path} is not a Zarr v3 group ({exc})") from exc
        attrs: dict[str, Any] = dict(root.attrs)
        missing = [a for a in layout.REQUIRED_ROOT_ATTRS if a not in attrs]
        if missing:
            raise ValueError(f"Missing required attribute in store: {', '.join(missing)}")
        names = [str(s) for s in attrs["sample_names"]]
        stored_hash = attrs.get("sample_names_hash")
        if stored_hash and stored_hash != layout.sample_names_hash(names):
            raise ValueError(
                f"Sample names hash mismatch (stored={stored_hash}, "
                f"current={layout.sample_names_hash(names)})"
            )
        meta = root.get(layout.METADATA_GROUP)
        if not isinstance(meta, zarr.Group) or layout.COMPLETED not in meta:
            raise ValueError(f"{self.store_path} has no metadata/completed array")
        self.root = root
        self._attrs = attrs
        self._metadata_cache = None
        self._completed = None

    @classmethod
    def open(cls, store_path: PathLike, read_only: bool = True) -> BamStore:
        """Attach to an existing store; read-only unless `read_only=False`."""
        path = normalize_store_path(store_path)
        if not path.exists():
            raise FileNotFoundError(f"Store does not exist at {path}")
        self = cls.__new__(cls)
        self.path = Path(store_path)
        self.store_path = path
        self.read_only = bool(read_only)
        self._completed = None
        self._metadata_cache = None
        self._open_group()
        return self

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(
                f"{self.store_path} is open read-only; reopen with "
                "BamStore.open(path, read_only=False) to modify it"
            )

    def _write_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Replace the root attributes in one atomic zarr.json write."""
        self._check_writable()
        doc_path = self.store_path / layout.ZARR_JSON
        doc = layout.read_json(doc_path)
        doc["attributes"] = dict(attrs)
        layout.write_json(doc_path, doc)
        self._open_group()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "writable"
        return (
            f"BamStore({str(self.store_path)!r}, {self.n_samples} samples, "
            f"{len(self.chromsizes)} contigs, {self.n_completed} complete, {mode})"
        )

    # ------------------------------------------------------------------ properties

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._attrs)

    @property
    def dataset(self) -> zarr.Group:
        """The root zarr group (QuantNado's name)."""
        return self.root

    @property
    def meta(self) -> zarr.Group:
        """The `metadata` group (QuantNado's `normalise` looks for it)."""
        group = self.root[layout.METADATA_GROUP]
        assert isinstance(group, zarr.Group)
        return group

    def _meta_array(self, name: str) -> zarr.Array:
        array = self.meta[name]
        assert isinstance(array, zarr.Array)
        return array

    @property
    def sample_names(self) -> list[str]:
        return [str(s) for s in self._attrs["sample_names"]]

    @property
    def n_samples(self) -> int:
        return len(self._attrs["sample_names"])

    @property
    def chromsizes(self) -> dict[str, int]:
        """Kept contigs and lengths, in the store's order."""
        return {str(k): int(v) for k, v in self._attrs["chromsizes"].items()}

    @property
    def chromosomes(self) -> list[str]:
        """Contig names, sorted as QuantNado lists them, never the `_fwd`/`_rev` arrays (B5)."""
        return sorted(self.chromsizes)

    @property
    def chunk_len(self) -> int:
        return int(self._attrs["chunk_len"])

    @property
    def construction_compression(self) -> str:
        return str(self._attrs.get("construction_compression", "default"))

    @property
    def stranded(self) -> dict[str, str]:
        """Sample -> "U"/"F"/"R" or "" (older stores hold one string for every sample)."""
        value = self._attrs.get("stranded") or {}
        if isinstance(value, str):
            return dict.fromkeys(self.sample_names, value)
        return {s: str(value.get(s) or "") for s in self.sample_names}

    @property
    def has_strand_arrays(self) -> bool:
        contigs = list(self.chromsizes)
        return bool(contigs) and layout.strand_array_names(contigs[0])[0] in self.root

    @property
    def completed_mask(self) -> np.ndarray:
        """Read from the store (cached when read-only: nothing can change it through us)."""
        if self._completed is None or not self.read_only:
            self._completed = np.asarray(self._meta_array(layout.COMPLETED)[...], dtype=bool)
        return self._completed.copy()

    @property
    def n_completed(self) -> int:
        return int(self.completed_mask.sum())

    @property
    def library_sizes(self) -> pd.Series | None:
        """metadata/total_reads per sample (float; NaN for incomplete samples), or None for a
        store without it, as QuantNado."""
        if layout.TOTAL_READS not in self.meta:
            return None
        reads = np.asarray(self._meta_array(layout.TOTAL_READS)[...], dtype=float)
        reads[~self.completed_mask] = np.nan
        return pd.Series(reads, index=self.sample_names, name="library_size")

    @property
    def sample_hashes(self) -> list[str]:
        """32-hex MD5 of each BAM's first 16 KiB (all zeros until the sample is processed)."""
        rows = np.asarray(self._meta_array(layout.SAMPLE_HASHES)[...], dtype=np.uint8)
        return [bytes(row).hex() for row in rows]

    # ------------------------------------------------------------------ metadata

    @property
    def metadata(self) -> pd.DataFrame:
        """QuantNado's `extract_metadata`: index `sample_id`, the `metadata_<col>` columns ("" ->
        NA), then `sample_hash` (NA when unset), `completed` and `sparsity`."""
        if self._metadata_cache is None:
            names = self.sample_names
            df = pd.DataFrame({QUANTNADO_LABEL_COLUMN: names})
            for col, values in layout.StoreAttributes.from_json(self._attrs).metadata.items():
                df[col] = [pd.NA if v == "" else v for v in values]
            meta = self.meta
            if layout.SAMPLE_HASHES in meta:
                rows = np.asarray(self._meta_array(layout.SAMPLE_HASHES)[...], dtype=np.uint8)
                df["sample_hash"] = [pd.NA if not r.any() else bytes(r).hex() for r in rows]
            df["completed"] = self.completed_mask
            if layout.SPARSITY in meta:
                df["sparsity"] = np.asarray(self._meta_array(layout.SPARSITY)[...])
            front = [QUANTNADO_LABEL_COLUMN] + (["assay"] if "assay" in df.columns else [])
            df = df[front + [c for c in df.columns if c not in front]]
            self._metadata_cache = df.set_index(QUANTNADO_LABEL_COLUMN)
        return self._metadata_cache.copy()

    def get_metadata(self) -> pd.DataFrame:
        return self.metadata

    def clear_metadata_cache(self) -> None:
        self._metadata_cache = None

    def list_metadata_columns(self) -> list[str]:
        return [
            k[len(layout.METADATA_ATTR_PREFIX) :]
            for k in self._attrs
            if k.startswith(layout.METADATA_ATTR_PREFIX)
        ]

    def set_metadata(
        self, metadata: pd.DataFrame, sample_column: str = "sample_id", merge: bool = True
    ) -> None:
        """Store every other column of `metadata` as `metadata_<col>` (strings, "" = missing).

        Rows are matched to samples by `sample_column`; samples without a row get "" (or keep
        their value when `merge` and the column exists); `merge=False` first drops every stored
        column. A `sample_hash` column must agree with the store's hashes.
        """
        self._check_writable()
        if sample_column not in metadata.columns:
            raise ValueError(f"Sample column '{sample_column}' not found in metadata DataFrame")
        table = metadata.copy()
        table[sample_column] = table[sample_column].astype(str)
        dupes = sorted(set(table[sample_column][table[sample_column].duplicated()]))
        if dupes:
            raise ValueError(f"samples appear more than once in '{sample_column}': {dupes}")
        table = table.set_index(sample_column)
        names = self.sample_names
        if "sample_hash" in table.columns:
            incoming = table["sample_hash"].reindex(names)
            stored = self.metadata["sample_hash"]
            bad = [
                f"{name}: meta={inc}, store={sto}"
                for name, inc, sto in zip(names, incoming, stored, strict=True)
                if not _is_missing(inc) and inc != "" and not _is_missing(sto) and inc != sto
            ]
            if bad:
                raise ValueError(f"Sample hash mismatch for: {', '.join(bad)}.")
        attrs = dict(self._attrs)
        if not merge:
            for col in self.list_metadata_columns():
                del attrs[layout.METADATA_ATTR_PREFIX + col]
        for col in table.columns:
            key = layout.METADATA_ATTR_PREFIX + str(col)
            if merge and key in attrs:
                values: list[Any] = list(attrs[key])
                for i, name in enumerate(names):
                    if name in table.index:
                        values[i] = table.at[name, col]
            else:
                values = table[col].astype(object).reindex(names, fill_value="").tolist()
            attrs[key] = _to_str_list(values)
        self._check_label_column(attrs)
        self._write_attrs(attrs)

    def update_metadata(self, updates: Mapping[str, Sequence[Any] | Mapping[str, Any]]) -> None:
        """Set columns from {column: list (one value per sample) or {sample: value}}."""
        self._check_writable()
        attrs = dict(self._attrs)
        names = self.sample_names
        for col, values in updates.items():
            key = layout.METADATA_ATTR_PREFIX + str(col)
            if isinstance(values, Mapping):
                unknown = sorted(set(values) - set(names))
                if unknown:
                    raise ValueError(f"Update for {col} names unknown samples: {unknown}")
                current = list(attrs.get(key, [""] * len(names)))
                final = [values[n] if n in values else current[i] for i, n in enumerate(names)]
            elif isinstance(values, list | tuple | np.ndarray | pd.Series):
                if len(values) != len(names):
                    raise ValueError(
                        f"Update for {col} has {len(values)} items but store has {len(names)}"
                    )
                final = list(values)
            else:
                raise TypeError(f"Values for {col} must be list or dict")
            attrs[key] = _to_str_list(final)
        self._check_label_column(attrs)
        self._write_attrs(attrs)

    def remove_metadata_columns(self, columns: Iterable[str]) -> None:
        self._check_writable()
        attrs = dict(self._attrs)
        for col in [columns] if isinstance(columns, str) else columns:
            attrs.pop(layout.METADATA_ATTR_PREFIX + col, None)
        self._write_attrs(attrs)

    def _check_label_column(self, attrs: Mapping[str, Any]) -> None:
        """QuantNado relabels samples with a stored `sample_id` column (B11): only allow one
        that equals the sample names."""
        values = attrs.get(layout.METADATA_ATTR_PREFIX + QUANTNADO_LABEL_COLUMN)
        if values is not None and list(values) != self.sample_names:
            raise ValueError(
                f"a metadata column '{QUANTNADO_LABEL_COLUMN}' that differs from the sample "
                "names would relabel the samples in QuantNado; rename it (e.g. to "
                f"original_{QUANTNADO_LABEL_COLUMN}) or use it as the sample_column"
            )

    def metadata_to_csv(self, path: PathLike) -> None:
        self.get_metadata().to_csv(path)

    def metadata_to_json(self, path: PathLike) -> None:
        self.get_metadata().reset_index().to_json(path, orient="records", indent=2)

    @classmethod
    def metadata_from_csv(cls, path: PathLike, **kwargs: Any) -> pd.DataFrame:
        return pd.read_csv(path, **kwargs)

    @classmethod
    def metadata_from_json(cls, path: PathLike) -> pd.DataFrame:
        """The records `metadata_to_json` writes, as a DataFrame (QuantNado's helper)."""
        return pd.DataFrame(json.loads(Path(path).read_text()))

    # ------------------------------------------------------------------ reading coverage

    def _sample_indices(self, samples: Sequence[str | int] | str | int | None) -> list[int]:
        names = self.sample_names
        if samples is None:
            return list(range(len(names)))
        if isinstance(samples, str | int | np.integer):
            samples = [samples]
        lookup = {name: i for i, name in enumerate(names)}
        out: list[int] = []
        for s in samples:
            if isinstance(s, str):
                if s not in lookup:
                    raise ValueError(f"Sample '{s}' not found in store (samples: {names})")
                out.append(lookup[s])
            elif isinstance(s, int | np.integer) and not isinstance(s, bool):
                if not 0 <= int(s) < len(names):
                    raise ValueError(f"Sample index {s} out of range [0, {len(names)})")
                out.append(int(s))
            else:
                raise TypeError(f"Samples must be strings or integers, got {type(s).__name__}")
        if not out:
            raise ValueError("samples is empty")
        return out

    def resolve_region(
        self,
        region: str | None = None,
        chrom: str | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> tuple[str, int, int]:
        """(contig, start, end) checked against the store, as `extract_region` reads them."""
        if region is not None and chrom is not None:
            raise ValueError("Specify either 'region' or 'chrom', not both")
        if region is not None:
            chrom, parsed_start, parsed_end = parse_region(region)
            if parsed_start is not None:
                start, end = parsed_start, parsed_end
        if chrom is None:
            raise ValueError("Must specify either 'region' or 'chrom'")
        sizes = self.chromsizes
        if chrom not in sizes:
            hint = ""
            base = chrom.removesuffix(layout.FWD_SUFFIX).removesuffix(layout.REV_SUFFIX)
            if base != chrom and base in sizes:
                hint = f" (for strand coverage use chrom='{base}' with strand='+' or '-')"
            raise ValueError(
                f"Chromosome '{chrom}' not in store{hint}. Available: {self.chromosomes}"
            )
        size = sizes[chrom]
        try:  # integers only (numpy ones too): a float would silently round
            start = 0 if start is None else operator.index(start)
            end = size if end is None else operator.index(end)
        except TypeError:
            raise TypeError(f"start and end must be integers, got {start!r} and {end!r}") from None
        if start < 0:
            raise ValueError(f"Start position must be >= 0, got {start}")
        if end > size:
            raise ValueError(f"End position {end} exceeds chromosome size {size} for {chrom}")
        if end <= start:
            raise ValueError(f"End position {end} must be greater than start {start}")
        return chrom, start, end

    def extract_region(
        self,
        region: str | None = None,
        chrom: str | None = None,
        start: int | None = None,
        end: int | None = None,
        samples: Sequence[str | int] | str | int | None = None,
        strand: str | None = None,
        normalise: str | None = None,
        library_sizes: pd.Series | Mapping[str, float] | None = None,
        as_xarray: bool = False,
    ) -> Any:
        """Coverage of a region, samples x positions (uint32, or float64 when normalised).

        `region` is QuantNado's string (`chr1:1,000-2,000` = 0-based positions 1000..1999, see
        `parse_region`), or give `chrom`/`start`/`end` (0-based, end exclusive). `samples`:
        names or row indices (default all). `strand`: "+" or "-" reads the `_fwd`/`_rev` arrays
        of stranded samples. `normalise`: "cpm" = x / (library size / 1e6); "rpkm" = CPM per kb
        of a 1 bp position = CPM x 1000 (QuantNado's per-position RPKM). `library_sizes`
        overrides the stored ones. Only the chunks that overlap the region are read.
        """
        chrom, start, end = self.resolve_region(region, chrom, start, end)
        rows = self._sample_indices(samples)
        names = self.sample_names
        method = None if normalise is None else str(normalise).lower()
        if method is not None and method not in NORMALISATIONS:
            raise ValueError(
                f"Unknown normalisation {normalise!r}: use 'cpm' or 'rpkm' (TPM is not "
                "defined for per-position signal)"
            )
        done = self.completed_mask
        incomplete = [names[r] for r in rows if not done[r]]
        if incomplete:
            raise RuntimeError(
                f"Cannot extract region: {len(incomplete)} sample(s) incomplete: {incomplete}"
            )
        array_name = chrom
        if strand is not None:
            if strand not in ("+", "-"):
                raise ValueError(f"strand must be '+', '-', or None, got {strand!r}")
            if not self.has_strand_arrays:
                raise ValueError(
                    "strand given, but this store has no strand arrays (no sample was "
                    "built stranded); omit strand for total coverage"
                )
            unstranded = [names[r] for r in rows if not self.stranded.get(names[r])]
            if unstranded:
                raise ValueError(
                    f"strand given, but sample(s) {unstranded} were not built stranded "
                    "(their strand rows are empty); choose stranded samples"
                )
            fwd, rev = layout.strand_array_names(chrom)
            array_name = fwd if strand == "+" else rev
        array = self.root[array_name]
        assert isinstance(array, zarr.Array)
        data = np.asarray(array.oindex[np.asarray(rows, dtype=np.int64), start:end])
        if method is not None:
            data = self._normalised(data, [names[r] for r in rows], method, library_sizes)
        if not as_xarray:
            return data
        return self._as_xarray(data, rows, chrom, start, end, strand, method)

    def _normalised(
        self,
        data: np.ndarray,
        names: list[str],
        method: str,
        library_sizes: pd.Series | Mapping[str, float] | None,
    ) -> np.ndarray:
        if library_sizes is None:
            sizes = self.library_sizes
            if sizes is None:
                raise RuntimeError(
                    "This store has no metadata/total_reads; pass library_sizes explicitly"
                )
        else:
            sizes = pd.Series(dict(library_sizes), dtype=float, name="library_size")
        missing = [n for n in names if n not in sizes.index]
        if missing:
            raise ValueError(f"Library sizes missing for samples: {missing}")
        lib = np.array([sizes[n] for n in names], dtype=np.float64)
        scale = np.where(lib > 0, lib / 1e6, np.nan)  # zero library: NaN, not inf (B7)
        out = data.astype(np.float64) / scale[:, None]
        if method == "rpkm":
            out = out / (layout.BIN_SIZE / 1000.0)
        return out

    def _as_xarray(
        self,
        data: np.ndarray,
        rows: list[int],
        chrom: str,
        start: int,
        end: int,
        strand: str | None,
        method: str | None,
    ) -> Any:
        try:
            import xarray as xr
        except ImportError:
            raise MissingExtraError("as_xarray=True", "xarray", "xarray") from None
        names = self.sample_names
        meta = self.metadata.iloc[rows]
        coords: dict[str, Any] = {
            "sample": [names[r] for r in rows],
            "position": np.arange(start, end),
        }
        for col in meta.columns:
            coords[col] = ("sample", [None if _is_missing(v) else v for v in meta[col]])
        attrs: dict[str, Any] = {"chromosome": chrom, "start": start, "end": end}
        if strand is not None:
            attrs["strand"] = strand
        if method is not None:
            attrs["normalised"] = method
        return xr.DataArray(data, dims=("sample", "position"), coords=coords, attrs=attrs)

    # ------------------------------------------------------------------ building

    def process_samples(self, bam_files: Sequence[PathLike], max_workers: int = 1) -> None:
        """Count coverage of every incomplete sample (bam_files[i] is row i) into the store.

        Completed samples are skipped without opening their BAM. Each sample is extracted into
        a temporary per-sample store beside this one (`max_workers` in parallel), its chunk
        files are placed into row i and checked against the digests recorded while writing,
        then its metadata is written and `completed[i]` set last. A failed sample leaves the
        others complete; call again (or resume) to finish.
        """
        self._check_writable()
        names = self.sample_names
        if len(bam_files) != len(names):
            raise ValueError("bam_files length must match number of sample_names")
        if layout.StoreAttributes.from_json(self._attrs).bamstore is None:
            raise ValueError(
                f"{self.store_path} was not made by bamstore; filling it would mix two "
                "coverage definitions (rebuild it with BamStore.from_bam_files)"
            )
        done = self.completed_mask
        for i, name in enumerate(names):
            if done[i]:
                log.info("skipping completed sample '%s' (index %d)", name, i)
        todo = [i for i in range(len(names)) if not done[i]]
        if not todo:
            return
        contigs = list(self.chromsizes.items())
        strand_map = self.stranded
        with (
            output_lock(self.store_path),
            tempfile.TemporaryDirectory(
                prefix=f".{self.store_path.name}.parts-", dir=self.store_path.parent
            ) as work,
        ):
            options = _extract_options(
                [c for c, _ in contigs], self.chunk_len, self.construction_compression, ""
            )
            jobs = [
                ExtractJob(
                    names[i],
                    Path(bam_files[i]),
                    Path(work) / f"{i}.zarr",
                    dataclasses.replace(options, strandedness=strand_map[names[i]]),
                )
                for i in todo
            ]
            rows = {names[i]: i for i in todo}
            check_jobs(jobs, contigs)
            run_extractions(
                jobs,
                max_workers,
                on_done=lambda job, _res: self._insert_part(job, rows[job.sample]),
                retry_hint="then call process_samples again (finished samples are kept)",
            )

    def _insert_part(self, job: ExtractJob, row: int) -> None:
        """Row `row` := the per-sample store `job.part` (chunk files placed, not decoded)."""
        record = insert_part(self.store_path, job.part, row)
        self._open_group()
        log.info("[%s] complete (row %d, %d reads)", job.sample, row, record.total_reads)

    @classmethod
    def from_bam_files(
        cls,
        bam_files: Sequence[PathLike],
        chromsizes: Mapping[str, int] | PathLike | None = None,
        store_path: PathLike | None = None,
        metadata: pd.DataFrame | PathLike | Sequence[PathLike] | None = None,
        bam_sample_names: Sequence[str] | None = None,
        *,
        filter_chromosomes: bool = True,
        overwrite: bool = True,
        resume: bool = False,
        sample_column: str = "sample_id",
        chunk_len: int | None = None,
        construction_compression: str = "default",
        local_staging: bool = False,
        staging_dir: PathLike | None = None,
        max_workers: int = 1,
        log_file: PathLike | None = None,
        test: bool = False,
        stranded: Stranded = None,
    ) -> BamStore:
        """Build a store from BAM files (QuantNado's parameters) and return it writable.

        Contigs: `chromsizes` (dict or file), else the first BAM's header, then
        `filter_chromosomes`/`test` (see `filter_chromsizes`). Samples: `bam_sample_names`, else
        each file's stem. `max_workers` samples are extracted in parallel processes.

        Without `resume`, samples are extracted into a work folder (beside the store, or under
        `staging_dir` / $TMPDIR with `local_staging`), merged, given their metadata, and only
        then published at the store path in one rename; an existing store is replaced only
        then. With `resume`, the store at the path is created or reopened and filled in place,
        skipping completed samples, so an interrupted build continues where it stopped.
        """
        with _log_to_file(log_file):
            bams = [Path(b) for b in bam_files]
            if not bams:
                raise ValueError("bam_files list is empty")
            if chromsizes is None:
                log.info("taking chromsizes from %s", bams[0])
                raw = dict(open_alignment(bams[0]).contigs)
            else:
                raw = load_chromsizes(chromsizes)
            sizes = filter_chromsizes(raw, filter_chromosomes=filter_chromosomes, test=test)
            if not sizes:
                rule = "chr21, chr22, chrY (test=True)" if test else "names starting with 'chr'"
                raise ValueError(
                    f"no contig kept: the selection keeps {rule}, and the contigs are "
                    f"{list(raw)[:8]}; pass filter_chromosomes=False to keep all contigs"
                )
            if bam_sample_names is not None:
                if len(bam_sample_names) != len(bams):
                    raise ValueError(
                        f"bam_sample_names length ({len(bam_sample_names)}) != bam_files "
                        f"length ({len(bams)})"
                    )
                names = [str(n) for n in bam_sample_names]
            else:
                names = [b.stem for b in bams]
            if store_path is None:
                raise ValueError("store_path must be provided.")
            final = normalize_store_path(store_path)
            staging = local_staging or staging_dir is not None
            if resume and staging:
                raise ValueError(
                    "resume=True is not supported with local staging; resume the final store "
                    "directly"
                )
            if final.exists() and not overwrite and not resume:
                raise FileExistsError(
                    f"Store already exists at {final}; set overwrite=True or resume=True"
                )
            table = _read_metadata(metadata) if metadata is not None else None
            if resume:
                store = cls(
                    final,
                    sizes,
                    names,
                    chunk_len=chunk_len,
                    construction_compression=construction_compression,
                    overwrite=False,
                    resume=True,
                    stranded=stranded,
                )
                store.process_samples(bams, max_workers=max_workers)
            else:
                _build_staged(
                    final,
                    bams,
                    names,
                    sizes,
                    chunk_len=chunk_len,
                    compression=construction_compression,
                    stranded=stranded,
                    staging_root=_staging_root(final, local_staging, staging_dir),
                    max_workers=max_workers,
                    overwrite=overwrite,
                    set_metadata=None
                    if table is None
                    else lambda s: s.set_metadata(table, sample_column=sample_column),
                )
                store = cls.open(final, read_only=False)
            if resume and table is not None:
                store.set_metadata(table, sample_column=sample_column)
            return store


# ---------------------------------------------------------------------------- building helpers


def _extract_options(
    contigs: Sequence[str], chunk_len: int, compression: str, strandedness: str
) -> ExtractOptions:
    """What every sample of an API store is extracted with (recorded in the store)."""
    return ExtractOptions(
        chromosomes=",".join(contigs),
        chunk_len=chunk_len,
        compression=compression,
        strandedness=strandedness,
    )


def _staging_root(final: Path, local_staging: bool, staging_dir: PathLike | None) -> Path:
    """QuantNado's staging root: `staging_dir`, else $TMPDIR with `local_staging`; otherwise the
    store's own folder (same filesystem, so publishing is a rename)."""
    if staging_dir is not None:
        return Path(staging_dir)
    if local_staging:
        return Path(os.environ.get("TMPDIR") or tempfile.gettempdir())
    return final.parent


def _build_staged(
    final: Path,
    bams: Sequence[Path],
    names: Sequence[str],
    sizes: Mapping[str, int],
    *,
    chunk_len: int | None,
    compression: str,
    stranded: Stranded,
    staging_root: Path,
    max_workers: int,
    overwrite: bool,
    set_metadata: Callable[[BamStore], None] | None,
) -> None:
    """Extract, merge and annotate under `staging_root`, then publish at `final` atomically."""
    _check_new_sample_names(names)
    strand_map = normalise_strandedness(stranded, names)
    _check_contig_names(sizes, any(strand_map.values()))
    profile = layout.compression_profile(compression)
    final.parent.mkdir(parents=True, exist_ok=True)
    check_output_path(final, overwrite=overwrite)
    resolved = _resolve_chunk_len(chunk_len, sizes, final)  # sized for the final filesystem
    contigs = list(sizes.items())
    staging_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.stem}.staging-", dir=staging_root))
    log.info("building under %s before publishing to %s", work, final)
    try:
        options = _extract_options(list(sizes), resolved, profile.name, "")
        jobs = [
            ExtractJob(
                name,
                bam,
                work / "parts" / f"{i}.zarr",
                dataclasses.replace(options, strandedness=strand_map[name]),
            )
            for i, (name, bam) in enumerate(zip(names, bams, strict=True))
        ]
        check_jobs(jobs, contigs)
        (work / "parts").mkdir()
        run_extractions(jobs, max_workers, retry_hint="then call from_bam_files again")
        built = work / final.name
        merge_stores([job.part for job in jobs], built)
        remove_tree(work / "parts")
        if set_metadata is not None:
            set_metadata(BamStore.open(built, read_only=False))
        with staged_output(final, overwrite=overwrite) as tmp:
            _move_tree(built, tmp)
        log.info("published %s", final)
    finally:
        remove_tree(work)
