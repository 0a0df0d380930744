"""Per-sample metadata written through the Python API: QuantNado's `set_metadata`,
`update_metadata` and `remove_metadata_columns`.

Values are stored as strings ("" = missing): a DataFrame's values as `str(v)` (its own types,
as QuantNado), a file's exactly as written (`samplesheet.read_metadata_table`). Every call checks
the columns as a samplesheet's are checked and rewrites zarr.json once, atomically.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bamstore import layout
from bamstore.api.reader import PathLike, StoreReader, is_missing
from bamstore.engine.samplesheet import (
    DERIVED_COLUMNS,
    MetadataTable,
    metadata_column_problems,
    read_metadata_table,
    repeated_names,
)


def to_strings(values: Iterable[Any]) -> list[str]:
    """QuantNado's attribute values: str(v), and "" for NaN/None/NA."""
    return ["" if is_missing(v) else str(v) for v in values]


def frame_table(frame: pd.DataFrame, sample_column: str) -> MetadataTable:
    """{sample: {column: value}} of a DataFrame keyed by `sample_column`."""
    if sample_column not in frame.columns:
        raise ValueError(f"Sample column '{sample_column}' not found in metadata DataFrame")
    keys = frame[sample_column].astype(str).tolist()
    dupes = repeated_names(keys)
    if dupes:
        raise ValueError(f"samples appear more than once in '{sample_column}': {dupes}")
    columns = [str(c) for c in frame.columns if c != sample_column]
    values = {c: to_strings(frame[c].tolist()) for c in columns}
    return {key: {c: values[c][i] for c in columns} for i, key in enumerate(keys)}


def _own_values(store: StoreReader, column: str, table: MetadataTable) -> bool:
    """Whether `table`'s values of a derived column are the store's own (a table that came
    from `metadata_to_csv`), so they can be left out instead of hiding a user column."""
    derived = store.metadata
    for name, row in table.items():
        value = row.get(column, "")
        if value == "" or name not in derived.index:
            continue
        mine = derived.at[name, column]
        if column == "sparsity":
            if not math.isclose(float(value), float(mine), rel_tol=1e-6) and not (
                math.isnan(float(value)) and math.isnan(float(mine))
            ):
                return False
        elif value != str(mine):
            return False
    return True


def set_columns(
    store: StoreReader, table: MetadataTable, *, merge: bool = True
) -> dict[str, list[str]]:
    """The store's metadata columns after storing every column of `table`: samples without a
    row get "" (or keep their value when `merge` and the column exists); `merge=False` first
    drops every stored column. A `sample_hash` column must agree with the store's hashes; it,
    and `completed`/`sparsity` columns equal to the store's own, are not stored."""
    names = store.sample_names
    if any("sample_hash" in row for row in table.values()):
        hashes = dict(zip(names, store.metadata["sample_hash"], strict=True))
        bad = [
            f"{name}: meta={row['sample_hash']}, store={hashes[name]}"
            for name, row in table.items()
            if name in hashes
            and row.get("sample_hash", "")
            and not is_missing(hashes[name])
            and row["sample_hash"] != hashes[name]
        ]
        if bad:
            raise ValueError(f"Sample hash mismatch for: {', '.join(bad)}.")
    incoming = [c for row in table.values() for c in row]
    skip = {
        c
        for c in DERIVED_COLUMNS
        if c == "sample_hash" or (c in incoming and _own_values(store, c, table))
    }
    columns = {} if not merge else {c: list(v) for c, v in store.store_attributes.metadata.items()}
    for column in dict.fromkeys(incoming):
        if column in skip:
            continue
        current = columns.get(column) if merge else None
        columns[column] = [
            table[name][column]
            if name in table and column in table[name]
            else (current[i] if current else "")
            for i, name in enumerate(names)
        ]
    return columns


def update_columns(
    store: StoreReader, updates: Mapping[str, Sequence[Any] | Mapping[str, Any]]
) -> dict[str, list[str]]:
    """The store's metadata columns after `updates`: {column: one value per sample, or
    {sample: value}}."""
    names = store.sample_names
    columns = {c: list(v) for c, v in store.store_attributes.metadata.items()}
    for column, values in updates.items():
        if isinstance(values, Mapping):
            unknown = sorted(set(values) - set(names))
            if unknown:
                raise ValueError(f"Update for {column} names unknown samples: {unknown}")
            current = columns.get(str(column), [""] * len(names))
            new = [values[n] if n in values else current[i] for i, n in enumerate(names)]
        elif isinstance(values, list | tuple | np.ndarray | pd.Series):
            if len(values) != len(names):
                raise ValueError(
                    f"Update for {column} has {len(values)} items but store has {len(names)}"
                )
            new = list(values)
        else:
            raise TypeError(f"Values for {column} must be list or dict")
        columns[str(column)] = to_strings(new)
    return columns


def write_columns(store: StoreReader, path: Any, columns: Mapping[str, Sequence[str]]) -> None:
    """Check `columns` as a samplesheet's are checked, then store them in one atomic write."""
    problems = metadata_column_problems(columns, store.sample_names, "metadata")
    if problems:
        raise ValueError(problems[0].line())
    attrs = dataclasses.replace(store.store_attributes, metadata=dict(columns))
    layout.rewrite_root_attributes(path, attrs)


def tables_from(
    metadata: pd.DataFrame | PathLike | Sequence[PathLike] | None, sample_column: str
) -> list[MetadataTable]:
    """A DataFrame, a CSV/TSV, or several (later ones win where they overlap), read by the
    one metadata reader (`samplesheet.read_metadata_table`)."""
    if metadata is None:
        return []
    if isinstance(metadata, pd.DataFrame):
        return [frame_table(metadata, sample_column)]
    if isinstance(metadata, str | Path) or hasattr(metadata, "__fspath__"):
        return [read_metadata_table(Path(metadata), sample_column)]  # type: ignore[arg-type]
    tables = [read_metadata_table(Path(p), sample_column) for p in metadata]
    if not tables:
        raise ValueError("No metadata files provided")
    return tables
