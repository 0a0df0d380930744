"""Reading and writing a store's documents: zarr.json of groups and arrays (as zarr 3 writes them),
the root attributes rewritten in one atomic write, and the chunk files of a row."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bamstore.layout.codec import CompressionProfile
from bamstore.layout.model import StoreAttributes
from bamstore.layout.names import BAMSTORE_ATTR, FORMAT_NAME, ZARR_JSON, row_folder


def row_chunk_files(store: Path, array: str, row: int) -> dict[int, Path]:
    """Chunk files of one row of a coverage array, by column index."""
    folder = row_folder(store, array, row)
    if not folder.is_dir():
        return {}
    out: dict[int, Path] = {}
    for entry in os.scandir(folder):
        if entry.name.isdigit():
            out[int(entry.name)] = Path(entry.path)
    return out


def group_document(attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"attributes": dict(attributes or {}), "zarr_format": 3, "node_type": "group"}


def coverage_array_document(
    n_samples: int, length: int, chunk_len: int, profile: CompressionProfile
) -> dict[str, Any]:
    """The zarr.json of one coverage array, as zarr 3 writes it for QuantNado's arrays."""
    return {
        "shape": [n_samples, length],
        "data_type": "uint32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, chunk_len]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": profile.codecs(),
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write a zarr.json; NaN is not JSON, so it is refused here rather than written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, allow_nan=False)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def written_by_bamstore(path: Path) -> bool:
    """Whether `path` is a store that bamstore wrote (a group whose attributes carry the
    `bamstore` record): the only thing `--overwrite` may replace."""
    try:
        doc = read_json(Path(path) / ZARR_JSON)
    except (OSError, ValueError):
        return False
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    record = attrs.get(BAMSTORE_ATTR) if isinstance(attrs, dict) else None
    return (
        doc.get("node_type") == "group"
        and isinstance(record, dict)
        and record.get("format") == FORMAT_NAME
    )


def rewrite_root_attributes(store: Path, attrs: StoreAttributes) -> None:
    """Replace the root attributes of the store at `store` with `attrs` in one atomic write of
    its zarr.json (attributes of other tools are kept)."""
    path = Path(store) / ZARR_JSON
    doc = read_json(path)
    doc["attributes"] = attrs.written_over(doc.get("attributes", {}))
    write_json(path, doc)
