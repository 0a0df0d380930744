"""Read what a store says about itself (root attributes, metadata arrays), for merge, validate
and inspect. The reader API for coverage values is `bamstore.api.BamStore`."""

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
from bamstore.errors import InputError


@dataclass
class StoreInfo:
    path: Path
    attrs: dict[str, Any]

    @property
    def sample_names(self) -> list[str]:
        return list(self.attrs["sample_names"])

    @property
    def contigs(self) -> list[tuple[str, int]]:
        return [(name, int(length)) for name, length in self.attrs["chromsizes"].items()]

    @property
    def chunk_len(self) -> int:
        return int(self.attrs["chunk_len"])

    @property
    def compression(self) -> str:
        return str(self.attrs.get("construction_compression", "default"))

    @property
    def stranded(self) -> dict[str, str]:
        value = self.attrs.get("stranded", {})
        if isinstance(value, str):  # older QuantNado stores: one code for every sample
            return dict.fromkeys(self.sample_names, value)
        return {name: value.get(name, "") or "" for name in self.sample_names}

    @property
    def has_strand_arrays(self) -> bool:
        contigs = self.contigs
        return bool(contigs) and (self.path / layout.strand_array_names(contigs[0][0])[0]).is_dir()

    @property
    def bamstore(self) -> dict[str, Any]:
        value = self.attrs.get(layout.BAMSTORE_ATTR)
        return value if isinstance(value, dict) else {}

    @property
    def sample_records(self) -> dict[str, dict[str, Any]]:
        return self.bamstore.get("samples", {})

    @property
    def settings(self) -> dict[str, Any]:
        """The settings that must agree between stores that are merged."""
        return {k: self.bamstore.get(k) for k in ("coverage", "chromosome_selection")}

    @property
    def metadata_columns(self) -> dict[str, list[str]]:
        return layout.metadata_columns_from_attrs(self.attrs)

    def array_document(self, name: str) -> dict[str, Any]:
        return layout.read_json(self.path / name / layout.ZARR_JSON)

    @cached_property
    def metadata_arrays(self) -> dict[str, np.ndarray]:
        group = zarr.open_group(LocalStore(self.path, read_only=True), mode="r")
        meta = group[layout.METADATA_GROUP]
        return {name: np.asarray(meta[name][...]) for name in layout.METADATA_ARRAYS}


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
    attrs = doc.get("attributes", {})
    missing = [a for a in layout.REQUIRED_ROOT_ATTRS if a not in attrs]
    if missing:
        raise InputError(
            path,
            f"lacks root attribute(s) {', '.join(missing)}, so it is not a "
            "coverage store (or its build did not finish)",
            "rebuild it",
        )
    return StoreInfo(path, attrs)
