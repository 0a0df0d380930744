"""Reading a store through zarr: QuantNado's properties, metadata table and `extract_region`.

`StoreReader` works on any zarr store object (a local folder, or a remote store from fsspec),
takes every name and the typed root attributes from `bamstore.layout`, and reads only the
chunks a region needs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.api.regions import (
    RegionBatch,
    RegionTable,
    region_batches,
    region_table,
    resolve_region,
)
from bamstore.engine.samplesheet import DERIVED_COLUMNS, QUANTNADO_LABEL_COLUMN
from bamstore.errors import DamagedStoreError, FormatError, QueryError
from bamstore.extras import require_extra
from bamstore.query import normalise as query_normalise
from bamstore.query.blacklist import Blacklist, open_blacklist
from bamstore.query.regions import BedInput
from bamstore.query.source import CoverageSource, check_normalise, check_strand

PathLike = str | os.PathLike[str]


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
        self._storage_options: dict[str, Any] = {}  # a URL's (fsspec), for to_xarray's workers
        self._reload()

    def _reload(self) -> None:
        """Open (or reopen after a write) the zarr group and check what readers need.

        A store that is not one is bad input (`QueryError`, a ValueError as in QuantNado)."""
        try:
            root = zarr.open_group(
                store=self._zarr_store, mode="r" if self.read_only else "r+", zarr_format=3
            )
        except ValueError as exc:  # JSONDecodeError: a zarr.json cut short or altered
            raise DamagedStoreError(
                f"{self._label.rstrip('/')}/{layout.ZARR_JSON}",
                f"cannot be read as JSON ({exc})",
                f"run `bamstore validate {self._label}` to see what is damaged, then rebuild it",
            ) from None
        except Exception as exc:
            raise QueryError(None, f"{self._label} is not a Zarr v3 group ({exc})") from exc
        raw: dict[str, Any] = dict(root.attrs)
        missing = [a for a in layout.REQUIRED_ROOT_ATTRS if a not in raw]
        if missing:
            raise QueryError(None, f"Missing required attribute in store: {', '.join(missing)}")
        try:
            attrs = layout.StoreAttributes.from_json(raw)
        except (FormatError, ValueError) as exc:
            raise QueryError(None, f"{self._label}: {exc}") from None
        problem = layout.sample_names_hash_problem(raw, attrs.sample_names)
        if problem:
            raise QueryError(None, problem)
        meta = root.get(layout.METADATA_GROUP)
        if not isinstance(meta, zarr.Group) or layout.COMPLETED not in meta:
            raise QueryError(None, f"{self._label} has no metadata/completed array")
        self.root = root
        self._raw = raw
        self._attrs = attrs
        self._metadata_cache: pd.DataFrame | None = None
        self._source: CoverageSource | None = None
        self._blacklists: dict[Any, Blacklist | None] = {}  # per file version

    @property
    def source(self) -> CoverageSource:
        """The store as the readers and queries see it (`CoverageSource`): samples, strand
        arrays, completed and library sizes, and the block reader of each array. Read once, and
        again after every write through this object (each calls `_reload`)."""
        if self._source is None:
            self._source = CoverageSource.from_group(self._label, self.root)
            threads = getattr(self, "read_threads", None)
            if threads is not None:
                if int(threads) < 1:
                    raise QueryError(None, f"threads must be >= 1, not {threads}")
                self._source.threads = int(threads)
        return self._source

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
        """metadata/completed per sample."""
        return self.source.completed.copy()

    @property
    def n_completed(self) -> int:
        return int(self.completed_mask.sum())

    @property
    def library_sizes(self) -> pd.Series | None:
        """metadata/total_reads per sample (float; NaN for incomplete samples), or None for a
        store without it, as QuantNado."""
        reads = self.source.total_reads
        if reads is None:
            return None
        return pd.Series(reads.copy(), index=self.sample_names, name="library_size")

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
            for column, values in self._derived_columns().items():
                df[column] = values
            front = [QUANTNADO_LABEL_COLUMN] + (["assay"] if "assay" in df.columns else [])
            df = df[front + [c for c in df.columns if c not in front]]
            self._metadata_cache = df.set_index(QUANTNADO_LABEL_COLUMN)
        return self._metadata_cache.copy()

    def _derived_columns(self) -> dict[str, Any]:
        """The columns `metadata` derives from the store (`samplesheet.DERIVED_COLUMNS`), in
        that order; a store without `sample_hashes` or `sparsity` lacks that column."""
        meta = self.meta
        derived: dict[str, Any] = {"completed": self.completed_mask}
        if layout.SAMPLE_HASHES in meta:
            rows = np.asarray(self._meta_array(layout.SAMPLE_HASHES)[...], dtype=np.uint8)
            derived["sample_hash"] = [pd.NA if not r.any() else bytes(r).hex() for r in rows]
        if layout.SPARSITY in meta:
            derived["sparsity"] = np.asarray(self._meta_array(layout.SPARSITY)[...])
        assert set(derived) <= set(DERIVED_COLUMNS)
        return {column: derived[column] for column in DERIVED_COLUMNS if column in derived}

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
        """A CSV (e.g. from `metadata_to_csv`) with its values as written: text, an empty cell
        "" (metadata is stored as text, so "07" stays "07" and "1" does not come back "1.0").
        `kwargs` go to `pandas.read_csv` and may override that (`dtype`, `keep_default_na`)."""
        return pd.read_csv(path, **{"dtype": str, "keep_default_na": False, **kwargs})

    @classmethod
    def metadata_from_json(cls, path: PathLike) -> pd.DataFrame:
        """The records `metadata_to_json` writes, as a DataFrame (QuantNado's helper)."""
        return pd.DataFrame(json.loads(Path(path).read_text()))

    # ------------------------------------------------------------------ reading coverage

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
        *,
        effective_genome_size: float | None = None,
        blacklist: BedInput | Blacklist | None = None,
    ) -> Any:
        """Coverage of a region, samples x positions (uint32, or float64 when normalised or
        with a blacklist).

        `region` is QuantNado's string (`chr1:1,000-2,000` = 0-based positions 1000..1999, see
        `parse_region`), or give `chrom`/`start`/`end` (0-based, end exclusive). `samples`:
        names or row indices (default all). `strand`: "+" or "-" ("fwd"/"rev") reads the
        `_fwd`/`_rev` arrays of stranded samples. `normalise`: "cpm" = x / (library size /
        1e6); "rpkm" = CPM per kb of a 1 bp position = CPM x 1000 (QuantNado's per-position
        RPKM); "bpm" = x * 1e6 / T, "rpgc" = x * G / T with G = `effective_genome_size` (T: the
        sample's total coverage, less the blacklist's positions), "scale" = x * the sample's
        scale factor (`bamstore.query.normalise`). `library_sizes` overrides the stored ones
        (cpm, rpkm). A divisor of 0 (a library size or T of 0) gives NaN, as in QuantNado.
        `blacklist` (a BED path, DataFrame or `Blacklist`): its positions are NaN. Only the
        chunks that overlap the region are read. The rules (and their errors) are the queries'
        (`CoverageSource`), except that a sample may be asked for twice and, with a strand, the
        default is every sample, so all must be stranded. Errors are ValueError (RuntimeError
        for incomplete samples, a store without library sizes or a sample without a scale
        factor, TypeError for a wrong type), as QuantNado's, and `InputError`s.
        """
        chrom, start, end = self.resolve_region(region, chrom, start, end)
        method = check_normalise(normalise)
        strand_name = check_strand(strand)
        source = self.source
        array_name = source.array_name(chrom, strand_name)
        rows = self._rows(samples, strand_name)
        listed = self._blacklist(blacklist)
        how = self._scaling(rows, method, effective_genome_size, listed, library_sizes)
        data = query_normalise.apply(source.read(array_name, rows, start, end), how, method)
        if listed is not None:
            data = data.astype(np.float64)
            data[:, listed.mask(chrom, start, end)] = np.nan
        if not as_xarray:
            return data
        return self._as_xarray(data, rows, chrom, start, end, strand, method)

    def extract_regions(
        self,
        regions: Any,
        samples: Sequence[str | int] | str | int | None = None,
        strand: str | None = None,
        normalise: str | None = None,
        library_sizes: pd.Series | Mapping[str, float] | None = None,
        *,
        effective_genome_size: float | None = None,
        blacklist: BedInput | Blacklist | None = None,
    ) -> np.ndarray:
        """Coverage of many regions of one width at once: regions x samples x width (uint32,
        or float64 when normalised or with a blacklist), for data loaders and models.

        `regions`: a DataFrame with columns chrom, start, end (else its first three), a
        sequence of (chrom, start, end) or of region strings, 0-based and end-exclusive as
        `extract_region`. Every region must have the same width (an error says which differ).
        The other arguments are `extract_region`'s (a divisor of 0 gives NaN there too).
        Regions are read contig by contig, each blosc block once per call, in the order given.
        """
        table = region_table(regions, self.chromsizes)
        return self._read_table(
            table, samples, strand, normalise, library_sizes, effective_genome_size, blacklist
        )

    def iter_regions(
        self,
        regions: Any,
        batch_size: int = 256,
        samples: Sequence[str | int] | str | int | None = None,
        strand: str | None = None,
        normalise: str | None = None,
        library_sizes: pd.Series | Mapping[str, float] | None = None,
        *,
        effective_genome_size: float | None = None,
        blacklist: BedInput | Blacklist | None = None,
    ) -> Iterator[RegionBatch]:
        """`extract_regions` in batches of `batch_size` regions, in order: one `RegionBatch`
        (the batch's regions as a DataFrame and its regions x samples x width array) at a time,
        so a BED of any length streams into a training loop. `regions` is also a BED path
        (equal-width lines; `-` reads stdin)."""
        if int(batch_size) < 1:
            raise QueryError(None, f"batch_size must be >= 1, not {batch_size}")
        names = self._sample_names_of(samples)
        listed = self._blacklist(blacklist)
        for table in region_batches(regions, self.chromsizes, int(batch_size)):
            values = self._read_table(
                table, samples, strand, normalise, library_sizes, effective_genome_size, listed
            )
            yield RegionBatch(table.frame(), values, names)

    def _sample_names_of(self, samples: Any) -> list[str]:
        rows = self._rows(samples, None)
        return [self.sample_names[r] for r in rows]

    def _rows(self, samples: Any, strand_name: str | None) -> list[int]:
        if isinstance(samples, str | int | np.integer):
            samples = [samples]
        elif samples is None:  # every sample: with a strand, all must be stranded
            samples = list(range(self.n_samples))
        elif len(samples) == 0:
            raise QueryError(None, "samples is empty")
        return self.source.rows(list(samples), strand_name, repeats=True)

    def _blacklist(self, blacklist: BedInput | Blacklist | None) -> Blacklist | None:
        """The blacklist given, read once per file version (its T is cached with it)."""
        if blacklist is None or isinstance(blacklist, Blacklist):
            return blacklist
        if isinstance(blacklist, str | os.PathLike) and os.fspath(blacklist) != "-":
            try:
                info = os.stat(blacklist)
                key: Any = (os.fspath(blacklist), info.st_mtime_ns, info.st_size)
            except OSError:
                key = None
            if key is not None:
                if key not in self._blacklists:
                    self._blacklists[key] = open_blacklist(blacklist, self.chromsizes)
                return self._blacklists[key]
        return open_blacklist(blacklist, self.chromsizes)

    def _scaling(
        self,
        rows: list[int],
        method: str | None,
        genome_size: float | None,
        blacklist: Blacklist | None,
        library_sizes: Any,
    ) -> query_normalise.Scaling | None:
        return query_normalise.scaling(
            self.source,
            rows,
            method,
            genome_size=genome_size,
            blacklist=blacklist,
            library_sizes=library_sizes,
            zero="nan",
        )

    def _read_table(
        self,
        table: RegionTable,
        samples: Any,
        strand: str | None,
        normalise: str | None,
        library_sizes: Any,
        genome_size: float | None = None,
        blacklist: BedInput | Blacklist | None = None,
    ) -> np.ndarray:
        method = check_normalise(normalise)
        strand_name = check_strand(strand)
        source = self.source
        rows = self._rows(samples, strand_name)
        listed = self._blacklist(blacklist)
        how = self._scaling(rows, method, genome_size, listed, library_sizes)
        width = table.width
        out = np.empty((len(table), len(rows), width), dtype=np.uint32)
        for contig, index in table.by_contig().items():
            array = source.array_name(contig, strand_name)
            out[index] = source.read_windows(array, rows, table.start[index], width)
        values = query_normalise.apply(out.transpose(1, 0, 2), how, method).transpose(1, 0, 2)
        if listed is None:
            return values
        values = values.astype(np.float64)
        for i, (contig, start) in enumerate(zip(table.chrom, table.start.tolist(), strict=True)):
            values[i][:, listed.mask(contig, start, start + width)] = np.nan
        return values

    def to_xarray(
        self,
        chromosomes: Sequence[str] | None = None,
        samples: Sequence[str | int] | str | int | None = None,
        *,
        strand_arrays: bool = True,
        sample_chunk: int | None = None,
    ) -> Any:
        """The store as a lazy `xarray.Dataset` (needs `bamstore[dask]`): one Dask-backed
        DataArray per contig (and its `_fwd`/`_rev` arrays, unless `strand_arrays` is False),
        dims `sample` and `position_<contig>` (0-based positions, no coordinate values), uint32.

        Sample coordinates: `library_size`, `scale_factor` (NaN where unset) and the metadata
        columns. Nothing is read until it is computed: each Dask chunk (`sample_chunk` samples
        by one store chunk of positions; by default as many samples as fit in 128 MiB) is read
        through the block reader by whichever process computes it, so the same Dataset runs on
        the threaded scheduler or on a `dask.distributed` cluster. Samples: all (default) or
        the chosen ones; an incomplete one is refused (RuntimeError), as in QuantNado.
        """
        require_extra("dask", "BamStore.to_xarray", "dask.array", "xarray")
        import dask.array as da
        import xarray as xr
        from dask.base import tokenize

        from bamstore.query.lazy import LazyCoverage

        source = self.source
        rows = self._rows(samples, None)
        contigs = source.chosen_contigs(list(chromosomes) if chromosomes is not None else None)
        per_sample = 4 * source.chunk_len
        if sample_chunk is None:
            sample_chunk = max(1, (128 * 2**20) // per_sample)
        chunks = (max(1, min(int(sample_chunk), len(rows))), source.chunk_len)
        location = None if source.files is None else self._label
        names = [self.sample_names[r] for r in rows]
        data_vars: dict[str, Any] = {}
        for contig in contigs:
            arrays = [contig]
            if strand_arrays and source.has_strand_arrays:
                arrays += list(layout.strand_array_names(contig))
            length = source.chromsizes[contig]
            for name in arrays:
                if location is not None:
                    lazy = LazyCoverage(location, self._storage_options, name, rows, length)
                    token = tokenize(location, self._storage_options, name, rows, chunks)
                    values = da.from_array(
                        lazy,
                        chunks=chunks,
                        name=f"bamstore-{name}-{token}",
                        fancy=False,
                        meta=np.empty((0, 0), dtype=np.uint32),
                    )
                else:
                    values = da.from_array(self.root[name], chunks=(1, source.chunk_len))[rows]
                data_vars[name] = (("sample", f"position_{contig}"), values)
        coords: dict[str, Any] = {"sample": names}
        meta = self.metadata.iloc[rows]
        for col in meta.columns:
            coords[col] = ("sample", [None if is_missing(v) else v for v in meta[col]])
        sizes = source.total_reads
        coords["library_size"] = (
            "sample",
            np.full(len(rows), np.nan) if sizes is None else sizes[np.asarray(rows)],
        )
        factors = self.scale_factors_of(rows)
        coords["scale_factor"] = ("sample", factors)
        attrs = {"store": self._label, "chunk_len": source.chunk_len, "bin_size": layout.BIN_SIZE}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def scale_factors_of(self, rows: Sequence[int]) -> np.ndarray:
        """The scale factors of `rows` (NaN where unset, and in stores without records)."""
        record = self._attrs.bamstore
        recorded = record.samples if record is not None else {}
        out = np.full(len(rows), np.nan)
        for i, row in enumerate(rows):
            sample = recorded.get(self.sample_names[row])
            if sample is not None and sample.scale_factor is not None:
                out[i] = sample.scale_factor
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
        require_extra("xarray", "as_xarray=True", "xarray")
        import xarray as xr

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
