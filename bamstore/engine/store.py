"""Read what a store says about itself (root attributes, metadata arrays), for merge, validate,
build and inspect. The reader API for coverage values is `bamstore.api.BamStore`.

`read_store_info` takes a folder or, for the commands that only read (validate, inspect), an
http(s):// or s3:// URL: the documents come through `bamstore.storage` either way, and the
metadata arrays through zarr's store of the same kind. Merge and build take folders only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from bamstore import layout
from bamstore.engine.rows import ArrayLayout, is_sharded_document
from bamstore.errors import DamagedStoreError, FormatError, InputError
from bamstore.storage import StoreFiles, is_url

VALIDATE_FIX = "run `bamstore validate {store}` to see what is damaged, then rebuild it"


@dataclass
class StoreInfo:
    """A store: its root attributes as written (`raw`) and typed (`attrs`), and its files
    (`path` is the folder; for a store at a URL, `files.remote` and `path` is only a name)."""

    path: Path
    raw: dict[str, Any]
    attrs: layout.StoreAttributes
    files: StoreFiles = field(default=None)  # type: ignore[assignment]
    storage_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.files is None:
            self.files = StoreFiles(str(self.path), Path(self.path))

    @property
    def location(self) -> str:
        """The path or URL, as given."""
        return self.files.label

    @property
    def remote(self) -> bool:
        return self.files.remote

    def zarr_store(self) -> Any:
        """zarr's read-only store of the same files."""
        from zarr.storage import FsspecStore, LocalStore

        if self.remote:
            return FsspecStore.from_url(
                self.location, storage_options=dict(self.storage_options or {}), read_only=True
            )
        return LocalStore(self.path, read_only=True)

    @property
    def sample_names(self) -> list[str]:
        return list(self.attrs.sample_names)

    @property
    def contigs(self) -> list[tuple[str, int]]:
        return list(self.attrs.contigs)

    @property
    def chunk_len(self) -> int:
        return self.attrs.chunk_len

    @property
    def compression(self) -> str:
        return self.attrs.compression

    @property
    def stranded(self) -> dict[str, str]:
        return dict(self.attrs.stranded)

    @property
    def has_strand_arrays(self) -> bool:
        return self.attrs.has_strand_arrays

    @property
    def record(self) -> layout.BamstoreRecord | None:
        """The `bamstore` record; None for a store bamstore did not make (see `attrs`)."""
        return self.attrs.bamstore

    @property
    def settings(self) -> layout.StoreSettings | None:
        return self.attrs.settings

    @property
    def metadata_columns(self) -> dict[str, list[str]]:
        return {column: list(values) for column, values in self.attrs.metadata.items()}

    def array_document(self, name: str) -> dict[str, Any]:
        """An array's zarr.json (OSError if missing, ValueError if not JSON)."""
        return self.files.read_json(f"{name}/{layout.ZARR_JSON}")

    @cached_property
    def sharded(self) -> bool:
        """Whether each row is one shard: as recorded; in a store that bamstore did not make,
        as its first array's zarr.json says."""
        if self.settings is not None:
            return self.settings.shard
        first = self.attrs.contig_names[:1]
        try:
            return bool(first) and is_sharded_document(self.array_document(first[0]))
        except (OSError, ValueError):
            return False

    def array_layouts(self) -> dict[str, ArrayLayout]:
        """Every coverage array (strand arrays included) and how its rows are stored."""
        return {
            array: ArrayLayout(length, self.chunk_len, self.sharded)
            for contig, length in self.contigs
            for array in layout.coverage_array_names([contig], self.has_strand_arrays)
        }

    @cached_property
    def metadata_arrays(self) -> layout.MetadataArrays:
        group = zarr.open_group(self.zarr_store(), mode="r")
        meta = group[layout.METADATA_GROUP]
        return layout.MetadataArrays(
            **{spec.name: np.asarray(meta[spec.name][...]) for spec in layout.METADATA_SPECS}
        )


def read_store_info(
    location: Path | str, storage_options: Mapping[str, Any] | None = None
) -> StoreInfo:
    """The root attributes of a store at a folder or URL; InputError if it is not one of ours
    or QuantNado's, DamagedStoreError if its zarr.json is damaged."""
    remote = is_url(location)
    files = StoreFiles.open(location, storage_options)
    path = Path(os.fspath(location).split("://", 1)[1]) if remote else Path(location)
    if not remote and not path.exists():
        raise InputError(path, "store does not exist", "check the path")
    try:
        doc = files.read_json(layout.ZARR_JSON)
    except FileNotFoundError:
        raise InputError(
            files.label,
            "is not a Zarr v3 store (no zarr.json)",
            "give a store made by bamstore extract/merge/build",
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedStoreError(
            files.path(layout.ZARR_JSON),
            f"cannot be read as JSON ({exc})",
            VALIDATE_FIX.format(store=files.label),
        ) from None
    except OSError as exc:
        raise InputError(files.label, f"cannot be read ({exc})", "check the path or URL") from None
    if not isinstance(doc, dict):
        raise DamagedStoreError(
            files.path(layout.ZARR_JSON),
            "is not a zarr.json document",
            VALIDATE_FIX.format(store=files.label),
        )
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise InputError(files.label, "is not a Zarr v3 group", "give a store made by bamstore")
    raw = doc.get("attributes", {})
    try:
        attrs = layout.StoreAttributes.from_json(raw)
    except (FormatError, ValueError) as exc:
        raise InputError(
            files.label,
            f"{exc}, so it is not a coverage store (or its build did not finish)",
            "rebuild it",
        ) from None
    return StoreInfo(path, raw, attrs, files, storage_options)
