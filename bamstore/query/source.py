"""Open a store read-only from a local path or a URL: what every query reads through.

`CoverageSource` is the read-only view the queries and `BamStore.extract_region(s)` take: what
they need from the root attributes and `metadata/`, read once, and a `chunks.CoverageArray` per
coverage array, which reads only the blosc blocks a query touches (local files, or HTTP/S3
range requests through fsspec: `bamstore.storage`). It turns the user's choices (samples,
strand) into array names and rows, and refuses bad ones in one line (normalisation's divisors:
`normalise`).

zarr is not imported on this path: the reading commands start in a tenth of a second and never
pay zarr's per-call machinery. It is used only for what the block reader does not read (arrays
in another layout, metadata arrays with other codecs), and as `root` for the API's QuantNado
properties. QuantNado's readers and zarr itself read the same stores (the tests compare).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bamstore import layout
from bamstore.engine.samplesheet import repeated_names
from bamstore.errors import (
    ArgumentTypeError,
    DamagedStoreError,
    FormatError,
    QueryError,
    RemoteReadError,
    UnanswerableError,
)
from bamstore.extras import require_extra
from bamstore.query import chunks
from bamstore.storage import REMOTE_SCHEMES, Location, StoreFiles, is_url, url_scheme

NORMALISE_CHOICES = ("none", "cpm", "rpkm", "bpm", "rpgc", "scale")
# a window of several samples is decoded on up to this many threads (one sample: one thread)
DEFAULT_READ_THREADS = min(2, os.cpu_count() or 1)
STRAND_CHOICES = ("fwd", "rev")
VALIDATE_FIX = "run `bamstore validate {store}` to see what is damaged, then rebuild it"

__all__ = [
    "REMOTE_SCHEMES",
    "CoverageSource",
    "check_normalise",
    "check_strand",
    "is_url",
    "open_group",
    "open_zarr_store",
    "url_scheme",
]


def open_zarr_store(location: Location, storage_options: Mapping[str, Any] | None = None) -> Any:
    """A read-only zarr store for a path or URL (FileNotFoundError if a path does not exist):
    the API's `dataset` and QuantNado's readers work on it."""
    from zarr.storage import FsspecStore, LocalStore

    scheme = url_scheme(location)
    if scheme is None:
        path = Path(location)
        if not path.exists():
            raise FileNotFoundError(f"Store does not exist at {path}")
        return LocalStore(path, read_only=True)
    require_extra("remote", f"reading {scheme}:// stores", *REMOTE_SCHEMES[scheme])
    url = os.fspath(location).rstrip("/")
    return FsspecStore.from_url(url, storage_options=dict(storage_options or {}), read_only=True)


def open_group(location: Location, storage_options: Mapping[str, Any] | None = None) -> Any:
    """The root zarr group of a store at a path or URL, read-only; QueryError if it is not
    one."""
    import zarr

    remote = is_url(location)
    try:
        store = open_zarr_store(location, storage_options)
    except FileNotFoundError:
        raise QueryError(location, "store does not exist", "check the path") from None
    try:
        return zarr.open_group(store=store, mode="r", zarr_format=3)
    except FileNotFoundError:
        raise QueryError(
            location, "no store there (no zarr.json)", "check the path or URL"
        ) from None
    except Exception as exc:  # zarr and the fsspec clients raise many kinds
        if remote:
            raise QueryError(
                location, f"cannot be opened ({type(exc).__name__}: {exc})", "check the URL"
            ) from exc
        raise QueryError(location, f"is not a Zarr v3 group ({exc})", "check the path") from exc


def _damaged(files: StoreFiles, key: str, problem: str) -> DamagedStoreError:
    return DamagedStoreError(files.path(key), problem, VALIDATE_FIX.format(store=files.label))


def _document(files: StoreFiles, key: str) -> dict[str, Any] | None:
    """The zarr.json at `key` (None if it is not there); one that is not a JSON object is
    damage, named."""
    try:
        doc = files.read_json(key)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        raise _damaged(files, key, "is not JSON (truncated or altered)") from None
    if not isinstance(doc, dict):
        raise _damaged(files, key, "is not a zarr.json document (not a JSON object)")
    return doc


_DTYPES = {"bool": "|b1", "int64": "<i8", "uint8": "|u1", "float32": "<f4", "uint32": "<u4"}


def read_small_array(files: StoreFiles, key: str) -> np.ndarray | None:
    """A small array of `metadata/` (one value, or one row of 16, per sample) read without zarr:
    zarr's default codecs (little-endian bytes, then zstd or nothing) on a regular grid along
    the samples. None when the array is written otherwise (the caller then asks zarr); a
    missing or undecodable chunk of a listed array is damage, named."""
    doc = _document(files, f"{key}/{layout.ZARR_JSON}")
    if doc is None:
        return None
    try:
        shape = [int(n) for n in doc["shape"]]
        grid = [int(n) for n in doc["chunk_grid"]["configuration"]["chunk_shape"]]
        dtype = np.dtype(_DTYPES[doc["data_type"]])
        names = [c["name"] for c in doc["codecs"]]
        endian = doc["codecs"][0].get("configuration", {}).get("endian", "little")
        separator = doc["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
        plain = (
            doc["chunk_key_encoding"]["name"] == "default"
            and separator == "/"
            and len(shape) in (1, 2)
            and grid[1:] == shape[1:]
            and names in (["bytes"], ["bytes", "zstd"])
            and (endian == "little" or dtype.itemsize == 1)
            and doc.get("zarr_format") == 3
        )
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None
    if not plain:
        return None
    from bamstore.query import _chunkread

    row_items = int(np.prod(shape[1:], dtype=np.int64))
    fill = doc.get("fill_value", 0)
    out = np.full(shape, np.nan if fill == "NaN" else fill, dtype=dtype)
    n_chunks = -(-shape[0] // grid[0]) if shape[0] else 0
    suffix = "/0" * (len(shape) - 1)
    keys = [f"{key}/c/{i}{suffix}" for i in range(n_chunks)]
    for i, data in enumerate(files.fetch(keys, [None] * n_chunks)):
        if isinstance(data, FileNotFoundError):
            continue  # never written: the fill value
        if isinstance(data, Exception):
            raise data
        nbytes = grid[0] * row_items * dtype.itemsize
        try:
            raw = _chunkread.zstd_decompress(data, nbytes) if names[-1] == "zstd" else data
            values = np.frombuffer(raw, dtype=dtype, count=grid[0] * row_items)
        except ValueError:
            raise _damaged(files, keys[i], "cannot be decoded (truncated or altered)") from None
        lo = i * grid[0]
        hi = min(shape[0], lo + grid[0])
        out[lo:hi] = values.reshape(grid)[: hi - lo]
    return out


class CoverageSource:
    """A store as the queries read it: what they need of it, read once, and its arrays."""

    def __init__(
        self,
        label: str,
        files: StoreFiles | None,
        attrs: layout.StoreAttributes,
        completed: np.ndarray,
        total_reads: np.ndarray | None,
        has_strand_arrays: bool,
        root: Any = None,
    ) -> None:
        self.label = label  # path or URL, for messages
        self.files = files  # None: a zarr store of another kind, read through zarr
        self.attrs = attrs
        self.sample_names = list(attrs.sample_names)
        self.chromsizes = dict(attrs.contigs)  # the store's order
        self.chunk_len = attrs.chunk_len
        self.stranded = dict(attrs.stranded)  # sample -> "U"/"F"/"R" or ""
        self.has_strand_arrays = has_strand_arrays
        self.completed = completed  # bool per sample
        self.total_reads = total_reads  # float (NaN where incomplete); None: not stored
        self._root = root
        self._arrays: dict[str, chunks.CoverageArray | None] = {}
        self._lock = threading.Lock()
        self._row_of = {name: i for i, name in enumerate(self.sample_names)}
        # threads a read of several samples is split between (`read`, `read_windows`)
        self.threads = DEFAULT_READ_THREADS

    @classmethod
    def open(
        cls, location: Location, storage_options: Mapping[str, Any] | None = None
    ) -> CoverageSource:
        """The store at a path or URL; QueryError if there is none, DamagedStoreError if its
        documents are damaged."""
        label = os.fspath(location)
        files = StoreFiles.open(location, storage_options)
        if not files.exists():
            raise QueryError(label, "store does not exist", "check the path")
        try:
            doc = _document(files, layout.ZARR_JSON)
        except OSError as exc:
            raise QueryError(label, f"cannot be opened ({exc})", "check the path or URL") from exc
        if doc is None:
            raise QueryError(label, "no store there (no zarr.json)", "check the path or URL")
        if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
            raise QueryError(label, "is not a Zarr v3 group", "give a store made by bamstore")
        attrs = _attributes(label, doc.get("attributes", {}))
        completed_key = f"{layout.METADATA_GROUP}/{layout.COMPLETED}"
        if _document(files, f"{completed_key}/{layout.ZARR_JSON}") is None:
            raise _damaged(
                files, f"{completed_key}/{layout.ZARR_JSON}", "is missing: every store has it"
            )
        completed = read_small_array(files, completed_key)
        reads = read_small_array(files, f"{layout.METADATA_GROUP}/{layout.TOTAL_READS}")
        root = None
        if completed is None:  # absent, or written with codecs read only by zarr
            root = open_group(location, storage_options)
            return cls.from_group(label, root, files=files)
        first = next(iter(attrs.contig_names), None)
        strands = first is not None and (
            _document(files, f"{layout.strand_array_names(first)[0]}/{layout.ZARR_JSON}")
            is not None
        )
        return cls(
            label,
            files,
            attrs,
            completed.astype(bool),
            _library_sizes(reads, completed.astype(bool)),
            strands,
            root,
        )

    @classmethod
    def from_group(cls, label: str, root: Any, files: StoreFiles | None = None) -> CoverageSource:
        """The store of an open zarr group (the API's), read through the same block reader."""
        import zarr

        attrs = _attributes(label, dict(root.attrs))
        meta = root.get(layout.METADATA_GROUP)
        done = meta.get(layout.COMPLETED) if isinstance(meta, zarr.Group) else None
        if not isinstance(done, zarr.Array):
            raise QueryError(label, "has no metadata/completed array", "rebuild the store")
        reads = meta.get(layout.TOTAL_READS) if isinstance(meta, zarr.Group) else None
        try:
            completed = np.asarray(done[...], dtype=bool)
            total = np.asarray(reads[...]) if isinstance(reads, zarr.Array) else None
        except Exception as exc:  # zarr and its codecs raise many kinds for a damaged chunk
            where = f"{label.rstrip('/')}/{layout.METADATA_GROUP}"
            # at a URL, a server's error status (aiohttp's errors carry it) or a failed
            # connection is not damage
            failed = isinstance(exc, OSError) or isinstance(getattr(exc, "status", None), int)
            if failed and is_url(label):
                raise RemoteReadError(
                    where, f"cannot be fetched ({type(exc).__name__}: {exc})"
                ) from None
            raise DamagedStoreError(
                where,
                f"cannot be decoded ({type(exc).__name__}: {exc})",
                VALIDATE_FIX.format(store=label),
            ) from None
        first = next(iter(attrs.contig_names), None)
        strands = first is not None and layout.strand_array_names(first)[0] in root
        return cls(
            label,
            files or _files_of(label, root),
            attrs,
            completed,
            _library_sizes(total, completed),
            bool(strands),
            root,
        )

    @property
    def root(self) -> Any:
        """The store's zarr group (opened on first use: the fallback for arrays the block
        reader does not read, and the API's `dataset`)."""
        if self._root is None:
            assert self.files is not None  # a source without files was made from its group
            self._root = open_group(self.files.label if self.files.remote else self.files.local)
        return self._root

    # ---------------------------------------------------------------- reading coverage

    def coverage(self, array_name: str) -> chunks.CoverageArray | None:
        """The block reader of one coverage array; None for an array in a layout it does not
        read (read through zarr instead)."""
        with self._lock:
            if array_name in self._arrays:
                return self._arrays[array_name]
        if self.files is None:
            return None
        key = f"{array_name}/{layout.ZARR_JSON}"
        doc = _document(self.files, key)
        if doc is None:
            raise _damaged(self.files, key, "is missing: the store lists this array")
        fmt = chunks.ArrayFormat.of(doc)
        array = None
        if fmt is not None:
            array = chunks.CoverageArray(
                self.files, array_name, fmt, self._presence(array_name), self.label
            )
        with self._lock:
            return self._arrays.setdefault(array_name, array)

    def _presence(self, array_name: str) -> Callable[[int], chunks.Presence]:
        """Which chunks the record lists for each row of `array_name`."""
        record = self.attrs.bamstore
        if record is None:
            return lambda row: chunks.UNKNOWN_PRESENCE
        contigs = self.attrs.contig_names
        by_row: list[chunks.Presence] = []
        for name in self.sample_names:
            sample = record.samples.get(name)
            found = chunks.UNKNOWN_PRESENCE
            if sample is not None:
                for row in sample.rows(contigs, self.has_strand_arrays):
                    if row.array == array_name:
                        if row.columns is not None:
                            found = chunks.Presence(layout.parse_columns(row.columns))
                        else:
                            found = chunks.Presence(any_data=row.coverage_sum > 0)
                        break
            by_row.append(found)
        return lambda row: by_row[row] if self.completed[row] else chunks.UNKNOWN_PRESENCE

    def read(self, array_name: str, rows: Sequence[int], start: int, end: int) -> np.ndarray:
        """Coverage of `rows` over [start, end) of one array (rows x positions, uint32)."""
        return self.read_windows(array_name, rows, [start], end - start)[0]

    def read_windows(
        self, array_name: str, rows: Sequence[int], starts: Sequence[int], width: int
    ) -> np.ndarray:
        """(windows, rows, width) uint32: [start, start + width) of each row for each start."""
        array = self.coverage(array_name)
        if array is not None:
            return array.windows(rows, starts, width, self.threads)
        zarray = self.root[array_name]
        index = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(starts), len(index), width), dtype=np.uint32)
        for w, start in enumerate(starts):
            out[w] = np.asarray(zarray.oindex[index, int(start) : int(start) + width])
        return out

    # ---------------------------------------------------------------- choices -> arrays, rows

    def rows(
        self,
        samples: Sequence[str | int] | str | None,
        strand: str | None,
        *,
        repeats: bool = False,
    ) -> list[int]:
        """Row indices of the chosen samples (default: all; with a strand, the stranded ones).

        Samples are names or row numbers; a string is a comma-separated list, and one that names
        no sample (`--samples ''`) is refused, not read as "all". Incomplete
        samples are refused; so are unstranded ones when a strand is asked for, and a sample
        chosen twice unless `repeats` (`extract_region` returns the rows asked for).
        """
        names = self.sample_names
        given = f" {samples!r}" if isinstance(samples, str) else ""
        if isinstance(samples, str):
            samples = [s.strip() for s in samples.split(",") if s.strip()]
        if samples is not None and len(samples) == 0:
            raise QueryError(
                None,
                f"--samples{given} names no sample",
                "give comma-separated sample names, or leave --samples out for every sample",
            )
        if samples is None:
            rows = list(range(len(names)))
            if strand is not None:
                rows = [r for r in rows if self.stranded.get(names[r])]
                if not rows:
                    raise QueryError(
                        self.label,
                        f"--strand {strand} asked for, but no sample was built stranded",
                        "omit --strand for total coverage",
                    )
        else:
            lookup = self._row_of
            rows = []
            for s in samples:
                if isinstance(s, bool) or not isinstance(s, str | int | np.integer):
                    raise ArgumentTypeError(
                        None, f"Samples must be strings or integers, got {type(s).__name__}"
                    )
                if isinstance(s, str) and s in lookup:
                    rows.append(lookup[s])
                elif not isinstance(s, str) and 0 <= int(s) < len(names):
                    rows.append(int(s))
                else:
                    raise QueryError(
                        self.label,
                        f"sample {s!r} is not in the store",
                        f"choose from {', '.join(names)}",
                    )
            dupes = [] if repeats or len(rows) < 2 else repeated_names(names[r] for r in rows)
            if dupes:
                raise QueryError(self.label, f"sample(s) {', '.join(dupes)} chosen twice")
            if strand is not None:
                flat = [names[r] for r in rows if not self.stranded.get(names[r])]
                if flat:
                    raise QueryError(
                        self.label,
                        f"sample(s) {', '.join(flat)} were not built stranded, so they have no "
                        f"{strand} coverage",
                        "choose stranded samples, or omit --strand",
                    )
        incomplete = list(dict.fromkeys(names[r] for r in rows if not self.completed[r]))
        if incomplete:
            raise UnanswerableError(
                self.label,
                f"sample(s) {', '.join(incomplete)} are incomplete (their build did not finish)",
                "finish or resume the build, or choose other samples",
            )
        return rows

    def chosen_contigs(self, chromosomes: Sequence[str] | str | None) -> list[str]:
        """The store's contigs, or the chosen ones (a list or comma-separated) in its order."""
        if chromosomes is None:
            return list(self.chromsizes)
        wanted = (
            [c.strip() for c in chromosomes.split(",") if c.strip()]
            if isinstance(chromosomes, str)
            else list(chromosomes)
        )
        unknown = [c for c in wanted if c not in self.chromsizes]
        if unknown:
            raise QueryError(
                self.label,
                f"has no contig {', '.join(map(repr, unknown))}",
                f"choose from {', '.join(self.chromsizes)}",
            )
        if not wanted:
            raise QueryError(None, "--chromosomes lists no contig")
        return [c for c in self.chromsizes if c in wanted]

    def array_name(self, contig: str, strand: str | None) -> str:
        """The coverage array of a contig: total, or its `_fwd`/`_rev` strand array."""
        if strand is None:
            return contig
        if strand not in STRAND_CHOICES:
            raise QueryError(None, f"strand must be fwd or rev, not {strand!r}")
        if not self.has_strand_arrays:
            raise QueryError(
                self.label,
                "has no strand arrays (no sample was built stranded)",
                "omit --strand for total coverage",
            )
        fwd, rev = layout.strand_array_names(contig)
        return fwd if strand == "fwd" else rev


def _attributes(label: str, raw: Mapping[str, Any]) -> layout.StoreAttributes:
    try:
        return layout.StoreAttributes.from_json(raw)
    except (FormatError, ValueError) as exc:
        raise QueryError(
            label,
            f"{exc}, so it is not a coverage store",
            "give a store made by bamstore (or QuantNado)",
        ) from None


def _library_sizes(reads: np.ndarray | None, completed: np.ndarray) -> np.ndarray | None:
    if reads is None:
        return None
    total = np.asarray(reads, dtype=np.float64).copy()
    total[~completed] = np.nan
    return total


def _files_of(label: str, root: Any) -> StoreFiles | None:
    """The files behind a zarr group: a LocalStore's folder or an FsspecStore's filesystem;
    None for any other zarr store (its arrays are then read through zarr)."""
    from zarr.storage import FsspecStore, LocalStore

    store = root.store
    if isinstance(store, LocalStore):
        return StoreFiles(label, Path(store.root))
    if isinstance(store, FsspecStore):
        # zarr's filesystem is asynchronous; the block reader's calls are not: the same kind,
        # with the same options, made synchronous. Its path: the whole URL for HTTP, bucket/key
        # for S3 (as StoreFiles.open).
        import fsspec

        fs = store.fs
        if getattr(fs, "asynchronous", False):
            protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            fs = fsspec.filesystem(protocol, **{**fs.storage_options, "asynchronous": False})
        options = {k: v for k, v in fs.storage_options.items() if k != "asynchronous"}
        return StoreFiles(label, None, fs, store.path, options)
    return None


def check_normalise(normalise: str | None) -> str | None:
    """One of NORMALISE_CHOICES other than 'none', or None (for None and 'none')."""
    if normalise is None:
        return None
    method = str(normalise).lower()
    if method not in NORMALISE_CHOICES:
        raise QueryError(
            None,
            f"unknown normalisation {normalise!r}",
            f"use {', '.join(NORMALISE_CHOICES)} (TPM is not defined for per-position signal)",
        )
    return None if method == "none" else method


def check_strand(strand: str | None) -> str | None:
    """'fwd', 'rev' or None; '+'/'-' are accepted as in `extract_region`."""
    if strand is None:
        return None
    value = {"+": "fwd", "-": "rev"}.get(strand, strand)
    if value not in STRAND_CHOICES:
        raise QueryError(None, f"unknown strand {strand!r}", "use fwd or rev (or + or -)")
    return value
