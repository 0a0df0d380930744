"""Read what a store says about itself (root attributes, metadata arrays), for merge, validate,
build and inspect. The reader API for coverage values is `bamstore.api.BamStore`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.engine.rows import ArrayLayout, is_sharded_document
from bamstore.errors import FormatError, InputError


@dataclass
class StoreInfo:
    """A store on disk: its root attributes as written (`raw`) and typed (`attrs`)."""

    path: Path
    raw: dict[str, Any]
    attrs: layout.StoreAttributes

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
        return layout.read_json(self.path / name / layout.ZARR_JSON)

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
        group = zarr.open_group(LocalStore(self.path, read_only=True), mode="r")
        meta = group[layout.METADATA_GROUP]
        return layout.MetadataArrays(
            **{spec.name: np.asarray(meta[spec.name][...]) for spec in layout.METADATA_SPECS}
        )


def read_store_info(path: Path) -> StoreInfo:
    """The root attributes of a store; InputError if `path` is not one of ours or QuantNado's."""
    path = Path(path)
    doc_path = path / layout.ZARR_JSON
    if not path.exists():
        raise InputError(path, "store does not exist", "check the path")
    if not doc_path.is_file():
        raise InputError(
            path,
            "is not a Zarr v3 store (no zarr.json)",
            "give a store made by bamstore extract/merge/build",
        )
    try:
        doc = json.loads(doc_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            doc_path, f"cannot be read as JSON ({exc})", "the store is damaged; rebuild it"
        ) from exc
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise InputError(path, "is not a Zarr v3 group", "give a store made by bamstore")
    raw = doc.get("attributes", {})
    try:
        attrs = layout.StoreAttributes.from_json(raw)
    except (FormatError, ValueError) as exc:
        raise InputError(
            path,
            f"{exc}, so it is not a coverage store (or its build did not finish)",
            "rebuild it",
        ) from None
    return StoreInfo(path, raw, attrs)
