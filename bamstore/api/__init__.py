"""`BamStore`: QuantNado's Python API, a thin front over bamstore's engine.

Users who build and read stores from Python call the same methods as with QuantNado's
`BamStore` (its commit 64ea0a4), with the same arguments and meanings, so scripts move between
the two tools. Reading is `reader.StoreReader`, region strings are `regions`, building is
`builder` over the same jobs, runner and merge as `bamstore build`, and metadata writes are
`metadata`; this class only ties them together.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bamstore import layout, query
from bamstore.api import builder
from bamstore.api import metadata as meta_write
from bamstore.api.builder import PathLike, Stranded, normalize_store_path
from bamstore.api.reader import StoreReader, is_missing, local_store
from bamstore.api.regions import format_region, parse_region
from bamstore.engine import scale_factors as engine_scale_factors
from bamstore.engine.bam_input import open_alignment
from bamstore.engine.publish import check_output_path
from bamstore.engine.samplesheet import MetadataTable
from bamstore.errors import MissingExtraError, ReadOnlyStoreError, StoreNotFoundError
from bamstore.query import source as query_source

__all__ = [
    "BamStore",
    "MissingExtraError",
    "ReadOnlyStoreError",
    "format_region",
    "parse_region",
]

log = logging.getLogger(__name__)


class BamStore(StoreReader):
    """A coverage store: QuantNado's `BamStore` API, bamstore's engine and semantics.

    Create: `BamStore(path, chromsizes, sample_names)` makes an empty store (every sample
    incomplete) that `process_samples` fills, or `BamStore.from_bam_files(...)` does both.
    Attach: `BamStore.open(path)` (read-only by default). Read: `extract_region`,
    `library_sizes`, `metadata`.

    Same meanings as QuantNado, with these deliberate differences:
      - coverage is bamstore's (samtools depth -a, 0-based, no position shift), and
        `total_reads` is the primary records that pass the read filter on the kept contigs,
        not `bam.mapped` (which counts records the coverage never includes);
      - `read_only=True` opens the zarr group read-only and every write raises (QuantNado
        reopens it writable); attaching read-only does not need `resume=True`;
      - `resume=True` wins over the default `overwrite=True` (QuantNado deletes the store);
        on resume the stored contigs, settings and strandedness are used and a conflicting
        `stranded` or contig length is refused (QuantNado uses the caller's);
      - contigs are chosen by bamstore's rules, recorded in the store: `filter_chromosomes`
        keeps the primary chromosomes of either naming (chr1 or 1, MT), False keeps every
        contig (QuantNado ignores False); a selection that keeps no contig is an error;
      - overwriting publishes the new store in one rename and leaves the old one in place on
        failure (QuantNado deletes it first), and only a store bamstore wrote is replaced;
      - sample names must be unique and use ASCII letters, digits and ._+- (they name files);
      - samples run in threads (`max_workers`), so a script needs no `__main__` guard;
      - metadata calls rewrite zarr.json once, atomically; files are read with values as
        written ("1" stays "1"), NaN in a DataFrame is stored as ""; a duplicated sample in a
        table or an unknown one in `update_metadata` is an error; a column named like one
        `metadata` derives (sample_hash, completed, sparsity) is refused unless it repeats the
        store's own values;
      - `extract_region` returns numpy unless `as_xarray=True`, normalises per sample along the
        sample axis, and gives NaN (not inf) for a zero library size;
      - `to_xarray` returns one lazy `xarray.Dataset` (a DataArray per contig, dims `sample` and
        `position_<contig>`, read through bamstore's block reader), not a dict of DataArrays.
    """

    url: str | None = None  # set by open() for a store at an http(s):// or s3:// URL

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
        shard: bool = layout.SHARD_BY_DEFAULT,
    ) -> None:
        self._setup(
            store_path,
            chromsizes,
            sample_names,
            chunk_len=chunk_len,
            compression=construction_compression,
            overwrite=overwrite,
            resume=resume,
            read_only=read_only,
            stranded=stranded,
            rule="all",
            shard=shard,
        )

    def _setup(
        self,
        store_path: PathLike,
        chromsizes: Mapping[str, int] | PathLike | None,
        sample_names: Sequence[str],
        *,
        chunk_len: int | None,
        compression: str,
        overwrite: bool,
        resume: bool,
        read_only: bool,
        stranded: Stranded,
        rule: str,
        shard: bool = layout.SHARD_BY_DEFAULT,
    ) -> None:
        """Create or attach; a new store records `rule` as its chromosome selection and is
        sharded if `shard` (an existing store keeps its own layout)."""
        self.path = Path(store_path)
        self.store_path = normalize_store_path(self.path)
        names = [str(s) for s in sample_names]
        if not names:
            raise ValueError("sample_names must not be empty")
        exists = self.store_path.exists()
        if exists and (resume or (read_only and not overwrite)):
            self._attach(read_only)
            builder.check_attach(self, names, chromsizes, chunk_len, stranded)
        elif exists and overwrite:
            if read_only:
                raise ValueError("Cannot overwrite store in read-only mode.")
            self._create(names, chromsizes, chunk_len, compression, stranded, rule, shard)
        elif exists:
            raise FileExistsError(
                f"Store already exists at {self.store_path}; set overwrite=True or resume=True"
            )
        elif read_only:
            raise StoreNotFoundError(
                None, f"Store does not exist at {self.store_path} (read_only=True)"
            )
        else:
            self._create(names, chromsizes, chunk_len, compression, stranded, rule, shard)

    def _create(
        self,
        names: list[str],
        chromsizes: Mapping[str, int] | PathLike | None,
        chunk_len: int | None,
        compression: str,
        stranded: Stranded,
        rule: str,
        shard: bool,
    ) -> None:
        if chromsizes is None:
            raise ValueError("chromsizes is needed to create a store (None only attaches)")
        builder.check_sample_names(names)
        sizes = builder.load_chromsizes(chromsizes)
        if not sizes:
            raise ValueError("chromsizes lists no contigs")
        strand_map = builder.normalise_strandedness(stranded, names)
        builder.check_contigs(sizes, any(strand_map.values()))
        builder.create_store(
            self.store_path,
            sizes,
            names,
            strand_map,
            chunk_len=builder.resolve_chunk_len(chunk_len, sizes, self.store_path),
            compression=layout.compression_profile(compression).name,
            chromosome_selection=rule,
            shard=shard,
        )
        self._attach(read_only=False)

    def _attach(self, read_only: bool) -> None:
        StoreReader.__init__(
            self,
            local_store(self.store_path, read_only),
            read_only=read_only,
            label=str(self.store_path),
        )

    @classmethod
    def open(
        cls,
        store_path: PathLike,
        read_only: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        threads: int | None = None,
    ) -> BamStore:
        """Attach to an existing store; read-only unless `read_only=False`.

        `store_path` may be an http(s):// or s3:// URL (always read-only; `bamstore[remote]`);
        `storage_options` go to fsspec (e.g. S3 credentials or `endpoint_url`). `threads`:
        a read of several samples is decoded on up to this many threads (default 2, or 1 on a
        one-core machine; give 1 inside data-loader workers that run in parallel already).
        """
        self = cls.__new__(cls)
        self.read_threads = threads
        if query_source.is_url(store_path):
            if not read_only:
                raise ValueError(f"{store_path}: stores at a URL open read-only")
            self.url = os.fspath(store_path)
            self.path = self.store_path = Path(self.url.split("://", 1)[1])
            StoreReader.__init__(
                self,
                query_source.open_zarr_store(self.url, storage_options),
                read_only=True,
                label=self.url,
            )
            self._storage_options = dict(storage_options or {})
            return self
        path = normalize_store_path(store_path)
        if not path.exists():
            raise StoreNotFoundError(None, f"Store does not exist at {path}")
        self.path = Path(store_path)
        self.store_path = path
        self._attach(read_only)
        return self

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(
                f"{self.store_path} is open read-only; reopen with "
                "BamStore.open(path, read_only=False) to modify it"
            )

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "writable"
        return (
            f"BamStore({self.url or str(self.store_path)!r}, {self.n_samples} samples, "
            f"{len(self.chromsizes)} contigs, {self.n_completed} complete, {mode})"
        )

    # ------------------------------------------------------------------ queries (bamstore.query)

    def summarize(self, bed: Any = None, **options: Any) -> pd.DataFrame:
        """Signal per BED region: chrom, start, end, name, then one column per sample, in input
        order. `bed`: a BED path, "-" or a DataFrame, or give `bins=N` (N-bp bins over every
        contig, or `chromosomes`). Options `stat` (mean, sum, max, min), `normalise` (none, cpm,
        rpkm, bpm, rpgc, scale), `effective_genome_size` (rpgc), `blacklist` (a BED whose
        positions are left out), `samples`, `strand` ("fwd"/"rev"), `missing` ("error", "skip",
        "nan"; `skip_missing=True` is "skip"), `threads` (`bamstore.query.summarize`). A sample
        whose normalisation would divide by 0 is refused (ValueError/RuntimeError)."""
        return query.summarize_frame(self.source, bed, **options)

    def profile(self, bed: Any, **options: Any) -> query.Profile:
        """Mean signal in bins around each BED line's reference point: `.matrix` is samples x
        regions x bins. Options `upstream`, `downstream`, `bin_size`, `normalise`,
        `effective_genome_size`, `blacklist`, `samples`, `strand`, `missing`, `threads`
        (`bamstore.query.profile`)."""
        return query.profile(self.source, bed, **options)

    def to_bigwig(self, out: PathLike, sample: str | int, **options: Any) -> query.ExportResult:
        """One sample's coverage as a bigWig (`bamstore[bigwig]`). Options `normalise`,
        `effective_genome_size`, `blacklist` (its positions have no data), `bin_size`,
        `chromosomes`, `strand`, `skip_zeros`, `threads` (`bamstore.query.export`)."""
        return query.export_track(self.source, sample, out, **options)

    def to_bedgraph(self, out: PathLike, sample: str | int, **options: Any) -> query.ExportResult:
        """The same runs as `to_bigwig`, as a bedGraph text file."""
        return query.export_track(self.source, sample, out, fmt="bedgraph", **options)

    def export_tracks(
        self, folder: PathLike, samples: Sequence[str | int] | str = "all", **options: Any
    ) -> list[query.ExportResult]:
        """One track per sample, `folder/<sample>.bw` (`fmt="bedgraph"`: `.bedGraph`), written
        `threads` at a time; `samples` "all" or a list. A sample name that is not one safe file
        name is refused before anything is written. Options as `to_bigwig`, and `fmt`."""
        return query.export_tracks(self.source, samples, folder, **options)

    # ------------------------------------------------------------------ metadata

    def _store_columns(self, columns: Mapping[str, Sequence[str]]) -> None:
        meta_write.write_columns(self, self.store_path, columns)
        self._reload()

    def set_metadata(
        self, metadata: pd.DataFrame, sample_column: str = "sample_id", merge: bool = True
    ) -> None:
        """Store every other column of `metadata` as `metadata_<col>` (strings, "" = missing).

        Rows are matched to samples by `sample_column`; samples without a row get "" (or keep
        their value when `merge` and the column exists); `merge=False` first drops every stored
        column. A `sample_hash` column must agree with the store's hashes.
        """
        self._check_writable()
        table = meta_write.frame_table(metadata, sample_column)
        self._store_columns(meta_write.set_columns(self, table, merge=merge))

    def update_metadata(self, updates: Mapping[str, Sequence[Any] | Mapping[str, Any]]) -> None:
        """Set columns from {column: list (one value per sample) or {sample: value}}."""
        self._check_writable()
        self._store_columns(meta_write.update_columns(self, updates))

    def remove_metadata_columns(self, columns: Iterable[str]) -> None:
        self._check_writable()
        drop = {columns} if isinstance(columns, str) else set(columns)
        kept = self.store_attributes.metadata
        self._store_columns({c: v for c, v in kept.items() if c not in drop})

    # ------------------------------------------------------------------ scale factors

    @property
    def scale_factors(self) -> pd.Series:
        """Each sample's scale factor (a spike-in factor, for example), NaN where unset, indexed
        by sample (bamstore's own; QuantNado stores have none)."""
        factors = engine_scale_factors.scale_factors(self.store_attributes)
        values = [np.nan if f is None else f for f in factors.values()]
        return pd.Series(values, index=list(factors), name="scale_factor", dtype=float)

    def set_scale_factors(self, factors: Mapping[str, float | None]) -> None:
        """Replace the listed samples' factors ({sample: factor}, or a Series; None or NaN: no
        factor) in one atomic rewrite of zarr.json; the other samples keep theirs. A sample
        not in the store or not counted yet, or a factor that is not a positive finite number,
        is a ValueError, and nothing changes."""
        self._check_writable()
        given = {str(name): None if is_missing(f) else f for name, f in dict(factors).items()}
        found = engine_scale_factors.factor_problems(self.store_attributes, given)
        if found:
            raise ValueError("; ".join(problem for problem, _ in found.values()))
        engine_scale_factors.set_scale_factors(self.store_path, given)
        self._reload()

    # ------------------------------------------------------------------ building

    def process_samples(self, bam_files: Sequence[PathLike], max_workers: int = 1) -> None:
        """Count coverage of every incomplete sample (bam_files[i] is row i) into the store.

        Completed samples are skipped without opening their BAM. Each sample is extracted with
        the store's recorded settings (`max_workers` at a time, in threads), its chunk files are
        placed into row i and checked, its metadata written and `completed[i]` set last. A
        failed sample leaves the others complete; call again (or resume) to finish.
        """
        self._check_writable()
        if len(bam_files) != self.n_samples:
            raise ValueError("bam_files length must match number of sample_names")
        builder.process_samples(
            self.store_path,
            self.store_attributes,
            self.completed_mask.tolist(),
            bam_files,
            max_workers,
            on_inserted=self._reload,
        )
        self._reload()

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
        shard: bool = layout.SHARD_BY_DEFAULT,
    ) -> BamStore:
        """Build a store from BAM files (QuantNado's parameters) and return it writable.

        Contigs: `chromsizes` (dict or file), else the first BAM's header, chosen by
        `filter_chromosomes`/`test` (see `builder.chromosome_rule`). Samples: `bam_sample_names`,
        else each file's stem. `max_workers` samples are extracted at a time, in threads.

        Without `resume`, this is `bamstore build`: every sample is extracted into a part (beside
        the store, or under `staging_dir` / $TMPDIR with `local_staging`), the parts are merged
        with their metadata and published at the store path in one rename; an existing store
        is replaced only then. With `resume`, the store at the path is created or reopened and
        filled in place, skipping completed samples, so an interrupted build continues where it
        stopped.

        `shard` (bamstore's own, not QuantNado's): store each sample's row of a contig as one
        file, a Zarr v3 shard that QuantNado reads unchanged (`bamstore build --shard`); a
        resumed store keeps the layout it was created with.
        """
        with builder.log_to_file(log_file):
            bams = [Path(b) for b in bam_files]
            if not bams:
                raise ValueError("bam_files list is empty")
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
            if resume and (local_staging or staging_dir is not None):
                raise ValueError(
                    "resume=True is not supported with local staging; resume the final store "
                    "directly"
                )
            if final.exists() and not overwrite and not resume:
                raise FileExistsError(
                    f"Store already exists at {final}; set overwrite=True or resume=True"
                )
            given = builder.load_chromsizes(chromsizes) if chromsizes is not None else None
            tables = meta_write.tables_from(metadata, sample_column)
            if resume and final.exists():  # attach: the store's contigs and settings hold
                rule, contigs = "", given
            else:
                universe = given if given is not None else dict(open_alignment(bams[0]).contigs)
                rule = builder.chromosome_rule(filter_chromosomes, test, universe)
                contigs = builder.selected_contigs(bams[0], rule, given)
            if resume:
                store = cls.__new__(cls)
                store._setup(
                    final,
                    contigs,
                    names,
                    chunk_len=chunk_len,
                    compression=construction_compression,
                    overwrite=False,
                    resume=True,
                    read_only=False,
                    stranded=stranded,
                    rule=rule,
                    shard=shard,
                )
                store.process_samples(bams, max_workers=max_workers)
                if tables:
                    combined: MetadataTable = {}
                    for table in tables:
                        for sample, row in table.items():
                            combined.setdefault(sample, {}).update(row)
                    store._store_columns(meta_write.set_columns(store, combined))
                return store
            builder.check_sample_names(names)
            strand_map = builder.normalise_strandedness(stranded, names)
            check_output_path(final, overwrite=overwrite)
            assert contigs is not None
            builder.build_from_bams(
                final,
                bams,
                names,
                strand_map,
                rule=rule,
                chromsizes=given,
                chunk_len=builder.resolve_chunk_len(chunk_len, contigs, final),
                compression=layout.compression_profile(construction_compression).name,
                max_workers=max_workers,
                overwrite=overwrite,
                parts_root=builder.staging_root(final, local_staging, staging_dir),
                metadata_tables=tables,
                metadata_source="metadata",
                shard=shard,
            )
            return cls.open(final, read_only=False)
