"""Open a store read-only from a local path or a URL: what every query reads through.

A store is found at a path (zarr's `LocalStore`) or at an `http://`, `https://` or `s3://` URL
(zarr's `FsspecStore`: HTTP through fsspec + aiohttp, S3 through s3fs). Both give the same zarr
group, so the queries, `BamStore.extract_region` and QuantNado's readers see the same values
wherever the store lives. Remote stores are always read-only. The fsspec packages are the
`remote` extra; without them a URL gives one line saying what to install.

S3 settings come from the usual places (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_ENDPOINT_URL` for an S3-compatible server, `~/.aws/`), or from `storage_options` in Python.

`CoverageSource` is the read-only view the queries take: the zarr group plus what they need from
the root attributes and `metadata/`, read once. It turns the user's choices (samples, strand,
normalisation) into array names, rows and library-size divisors, and refuses bad ones in one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

from bamstore import layout
from bamstore.engine.samplesheet import repeated_names
from bamstore.errors import (
    ArgumentTypeError,
    FormatError,
    QueryError,
    UnanswerableError,
)
from bamstore.extras import require_extra

# scheme -> (the packages fsspec needs for it, what they are called on PyPI)
# the modules (of the `remote` extra) that zarr's FsspecStore needs for each scheme
REMOTE_SCHEMES: dict[str, tuple[str, ...]] = {
    "http": ("fsspec", "aiohttp"),
    "https": ("fsspec", "aiohttp"),
    "s3": ("fsspec", "s3fs"),
}
NORMALISE_CHOICES = ("none", "cpm", "rpkm")
STRAND_CHOICES = ("fwd", "rev")
Location = str | os.PathLike[str]


def url_scheme(location: Location) -> str | None:
    """The scheme of a URL we can open ('http', 'https', 's3'), None for a local path."""
    text = os.fspath(location)
    if not isinstance(text, str) or "://" not in text:
        return None
    scheme = text.split("://", 1)[0].lower()
    if scheme not in REMOTE_SCHEMES:
        raise QueryError(
            text,
            f"cannot open {scheme}:// stores",
            f"give a local path or an {', '.join(s + '://' for s in REMOTE_SCHEMES)} URL",
        )
    return scheme


def is_url(location: Location) -> bool:
    return url_scheme(location) is not None


def open_zarr_store(location: Location, storage_options: Mapping[str, Any] | None = None) -> Store:
    """A read-only zarr store for a path or URL (FileNotFoundError if a path does not exist)."""
    scheme = url_scheme(location)
    if scheme is None:
        path = Path(location)
        if not path.exists():
            raise FileNotFoundError(f"Store does not exist at {path}")
        return LocalStore(path, read_only=True)
    require_extra("remote", f"reading {scheme}:// stores", *REMOTE_SCHEMES[scheme])
    url = os.fspath(location).rstrip("/")
    return FsspecStore.from_url(url, storage_options=dict(storage_options or {}), read_only=True)


def open_group(location: Location, storage_options: Mapping[str, Any] | None = None) -> zarr.Group:
    """The root group of a store at a path or URL, read-only; QueryError if it is not one."""
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


@dataclass(frozen=True)
class CoverageSource:
    """A store as the queries read it: its group and the attributes they need, read once."""

    label: str  # path or URL, for messages
    root: zarr.Group
    sample_names: list[str]
    chromsizes: dict[str, int]  # the store's order
    chunk_len: int
    stranded: dict[str, str]  # sample -> "U"/"F"/"R" or ""
    has_strand_arrays: bool
    completed: np.ndarray  # bool per sample
    total_reads: np.ndarray | None  # float per sample (NaN where incomplete); None: not stored

    @classmethod
    def open(
        cls, location: Location, storage_options: Mapping[str, Any] | None = None
    ) -> CoverageSource:
        return cls.from_group(os.fspath(location), open_group(location, storage_options))

    @classmethod
    def from_group(cls, label: str, root: zarr.Group) -> CoverageSource:
        try:
            attrs = layout.StoreAttributes.from_json(dict(root.attrs))
        except FormatError as exc:
            raise QueryError(
                label,
                f"{exc}, so it is not a coverage store",
                "give a store made by bamstore (or QuantNado)",
            ) from None
        names = list(attrs.sample_names)
        sizes = dict(attrs.contigs)
        stranded = dict(attrs.stranded)
        meta = root.get(layout.METADATA_GROUP)
        done = meta.get(layout.COMPLETED) if isinstance(meta, zarr.Group) else None
        if not isinstance(done, zarr.Array):
            raise QueryError(label, "has no metadata/completed array", "rebuild the store")
        completed = np.asarray(done[...], dtype=bool)
        reads = meta.get(layout.TOTAL_READS) if isinstance(meta, zarr.Group) else None
        total: np.ndarray | None = None
        if isinstance(reads, zarr.Array):
            total = np.asarray(reads[...], dtype=np.float64)
            total[~completed] = np.nan
        first = next(iter(sizes), None)
        strands = first is not None and layout.strand_array_names(first)[0] in root
        return cls(
            label=label,
            root=root,
            sample_names=names,
            chromsizes=sizes,
            chunk_len=attrs.chunk_len,
            stranded=stranded,
            has_strand_arrays=bool(strands),
            completed=completed,
            total_reads=total,
        )

    # ---------------------------------------------------------------- choices -> arrays, rows

    def rows(
        self,
        samples: Sequence[str | int] | str | None,
        strand: str | None,
        *,
        repeats: bool = False,
    ) -> list[int]:
        """Row indices of the chosen samples (default: all; with a strand, the stranded ones).

        Samples are names or row numbers; a string is a comma-separated list. Incomplete
        samples are refused; so are unstranded ones when a strand is asked for, and a sample
        chosen twice unless `repeats` (`extract_region` returns the rows asked for).
        """
        names = self.sample_names
        if isinstance(samples, str):
            samples = [s.strip() for s in samples.split(",") if s.strip()]
        if samples is None or len(samples) == 0:
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
            lookup = {name: i for i, name in enumerate(names)}
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
            dupes = repeated_names(names[r] for r in rows)
            if dupes and not repeats:
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

    def per_million(
        self,
        rows: Sequence[int],
        normalise: str | None,
        library_sizes: Mapping[str, float] | None = None,
    ) -> np.ndarray | None:
        """Divisors library size / 1e6 of the rows for CPM/RPKM (NaN for a zero library, never
        inf); None without normalisation. Library sizes are metadata/total_reads unless
        `library_sizes` ({sample: size}) are given."""
        method = check_normalise(normalise)
        if method is None:
            return None
        if library_sizes is not None:
            sizes = {str(name): float(size) for name, size in dict(library_sizes).items()}
            chosen = [self.sample_names[r] for r in rows]
            missing = [n for n in chosen if n not in sizes]
            if missing:
                raise QueryError(None, f"Library sizes missing for samples: {missing}")
            lib = np.array([sizes[n] for n in chosen], dtype=np.float64)
        elif self.total_reads is None:
            raise UnanswerableError(
                self.label,
                "has no metadata/total_reads, so it cannot be normalised",
                "use --normalise none (in Python, pass library_sizes)",
            )
        else:
            lib = self.total_reads[np.asarray(rows, dtype=np.int64)]
        return np.where(lib > 0, lib / 1e6, np.nan)

    def read(self, array_name: str, rows: Sequence[int], start: int, end: int) -> np.ndarray:
        """Coverage of `rows` over [start, end) of one array, reading only the chunks needed."""
        array = self.root[array_name]
        assert isinstance(array, zarr.Array)
        return np.asarray(array.oindex[np.asarray(rows, dtype=np.int64), start:end])

    def normalised(
        self,
        values: np.ndarray,
        rows: Sequence[int],
        normalise: str | None,
        library_sizes: Mapping[str, float] | None = None,
    ) -> np.ndarray:
        """Per-position values of `rows` (samples on the first axis) as CPM = value / (library
        size / 1e6), or RPKM = CPM per kb of a 1 bp position = CPM x 1000; unchanged for
        none."""
        per_million = self.per_million(rows, normalise, library_sizes)
        if per_million is None:
            return values
        shape = (-1,) + (1,) * (values.ndim - 1)
        out = values.astype(np.float64) / per_million.reshape(shape)
        if check_normalise(normalise) == "rpkm":
            out = out / (layout.BIN_SIZE / 1000.0)
        return out


def check_normalise(normalise: str | None) -> str | None:
    """'cpm', 'rpkm' or None (for None and 'none')."""
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
