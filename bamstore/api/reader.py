"""Reading a store through zarr: QuantNado's properties, metadata table and `extract_region`.

`StoreReader` works on any zarr store object (a local folder, or a remote store from fsspec),
takes every name and the typed root attributes from `bamstore.layout`, and reads only the
chunks a region needs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.api.regions import resolve_region
from bamstore.errors import InputError
from bamstore.samplesheet import QUANTNADO_LABEL_COLUMN

NORMALISATIONS = ("cpm", "rpkm")
PathLike = str | os.PathLike[str]


class ReadOnlyStoreError(RuntimeError):
    """A write method was called on a store opened read-only (QuantNado raises RuntimeError)."""


class MissingExtraError(InputError, ImportError):
    """An optional dependency is not installed: one line saying which extra to install."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        super().__init__(None, f"{what} needs {package}", f"pip install 'bamstore[{extra}]'")


def local_store(path: Path, read_only: bool) -> Any:
    """The zarr store of a local folder (a seam for tests that count chunk reads)."""
    return LocalStore(path, read_only=read_only)


def is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-like values are not missing
        return False


class StoreReader:
    """A coverage store opened through zarr (read-only unless `read_only=False`)."""

    def __init__(self, store: Any, *, read_only: bool = True, label: str = "store") -> None:
        self._zarr_store = store
        self.read_only = bool(read_only)
        self._label = label
        self._reload()

    def _reload(self) -> None:
        """Open (or reopen after a write) the zarr group and check what readers need."""
        try:
            root = zarr.open_group(
                store=self._zarr_store, mode="r" if self.read_only else "r+", zarr_format=3
            )
        except Exception as exc:
            raise ValueError(f"{self._label} is not a Zarr v3 group ({exc})") from exc
        raw: dict[str, Any] = dict(root.attrs)
        missing = [a for a in layout.REQUIRED_ROOT_ATTRS if a not in raw]
        if missing:
            raise ValueError(f"Missing required attribute in store: {', '.join(missing)}")
        try:
            attrs = layout.StoreAttributes.from_json(raw)
        except (layout.FormatError, ValueError) as exc:
            raise ValueError(f"{self._label}: {exc}") from None
        stored_hash = raw.get("sample_names_hash")
        expected = layout.sample_names_hash(attrs.sample_names)
        if stored_hash and stored_hash != expected:
            raise ValueError(
                f"Sample names hash mismatch (stored={stored_hash}, current={expected})"
            )
        meta = root.get(layout.METADATA_GROUP)
        if not isinstance(meta, zarr.Group) or layout.COMPLETED not in meta:
            raise ValueError(f"{self._label} has no metadata/completed array")
        self.root = root
        self._raw = raw
        self._attrs = attrs
        self._metadata_cache: pd.DataFrame | None = None
        self._completed: np.ndarray | None = None

    # ------------------------------------------------------------------ properties

    @property
    def attrs(self) -> dict[str, Any]:
        """The root attributes as stored."""
        return dict(self._raw)

    @property
    def store_attributes(self) -> layout.StoreAttributes:
        """The root attributes, typed."""
        return self._attrs

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
        return list(self._attrs.sample_names)

    @property
    def n_samples(self) -> int:
        return len(self._attrs.sample_names)

    @property
    def chromsizes(self) -> dict[str, int]:
        """Kept contigs and lengths, in the store's order."""
        return dict(self._attrs.contigs)

    @property
    def chromosomes(self) -> list[str]:
        """Contig names, sorted as QuantNado lists them, never the `_fwd`/`_rev` arrays."""
        return sorted(self.chromsizes)

    @property
    def chunk_len(self) -> int:
        return self._attrs.chunk_len

    @property
    def construction_compression(self) -> str:
        return self._attrs.compression

    @property
    def stranded(self) -> dict[str, str]:
        """Sample -> "U"/"F"/"R" or "" (older stores hold one string for every sample)."""
        return dict(self._attrs.stranded)

    @property
    def has_strand_arrays(self) -> bool:
        return self._attrs.has_strand_arrays

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
        """QuantNado's `extract_metadata`: index `sample_id`, the metadata columns ("" -> NA),
        then `sample_hash` (NA when unset), `completed` and `sparsity` (no stored column can
        have those names: they would be hidden)."""
        if self._metadata_cache is None:
            df = pd.DataFrame({QUANTNADO_LABEL_COLUMN: self.sample_names})
            for col, values in self._attrs.metadata.items():
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
        return list(self._attrs.metadata)

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
        return resolve_region(self.chromsizes, region, chrom, start, end)

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
            array_name = self._strand_array(chrom, strand, [names[r] for r in rows])
        array = self.root[array_name]
        assert isinstance(array, zarr.Array)
        data = np.asarray(array.oindex[np.asarray(rows, dtype=np.int64), start:end])
        if method is not None:
            data = self._normalised(data, [names[r] for r in rows], method, library_sizes)
        if not as_xarray:
            return data
        return self._as_xarray(data, rows, chrom, start, end, strand, method)

    def _strand_array(self, chrom: str, strand: str, names: list[str]) -> str:
        if strand not in ("+", "-"):
            raise ValueError(f"strand must be '+', '-', or None, got {strand!r}")
        if not self.has_strand_arrays:
            raise ValueError(
                "strand given, but this store has no strand arrays (no sample was "
                "built stranded); omit strand for total coverage"
            )
        unstranded = [n for n in names if not self.stranded.get(n)]
        if unstranded:
            raise ValueError(
                f"strand given, but sample(s) {unstranded} were not built stranded "
                "(their strand rows are empty); choose stranded samples"
            )
        fwd, rev = layout.strand_array_names(chrom)
        return fwd if strand == "+" else rev

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
        scale = np.where(lib > 0, lib / 1e6, np.nan)  # a zero library gives NaN, not inf
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
            coords[col] = ("sample", [None if is_missing(v) else v for v in meta[col]])
        attrs: dict[str, Any] = {"chromosome": chrom, "start": start, "end": end}
        if strand is not None:
            attrs["strand"] = strand
        if method is not None:
            attrs["normalised"] = method
        return xr.DataArray(data, dims=("sample", "position"), coords=coords, attrs=attrs)
