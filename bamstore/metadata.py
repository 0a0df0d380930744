"""Per-sample metadata: read from a table, checked, stored as QuantNado's `metadata_<col>` lists.

Values are kept as the strings the user wrote ("1" stays "1"; QuantNado's float round trip would
make it "1.0"); missing values are "". The samplesheet's input columns (bam, bai,
strandedness) are never stored as metadata.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from bamstore.errors import InputError
from bamstore.samplesheet import DELIMITERS, RESERVED_COLUMNS

QUANTNADO_LABEL_COLUMN = "sample_id"


def read_metadata_table(path: Path, sample_column: str = "sample") -> dict[str, dict[str, str]]:
    """CSV/TSV → {sample: {column: value}}; the sample column itself is not a metadata column."""
    if not path.is_file():
        raise InputError(path, "metadata file does not exist", "check --metadata")
    delimiter = DELIMITERS.get(path.suffix.lower())
    text = path.read_text(encoding="utf-8-sig")
    if delimiter is None:
        delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    if not rows:
        raise InputError(path, "metadata file is empty", "give a CSV/TSV with a header")
    header = [h.strip() for h in rows[0]]
    if sample_column not in header:
        raise InputError(
            path,
            f"metadata file has no column {sample_column!r} (found: {', '.join(header)})",
            "pass --sample-column with the column that holds the sample names",
        )
    table: dict[str, dict[str, str]] = {}
    for line_no, fields in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise InputError(
                f"{path}:{line_no}",
                f"has {len(fields)} fields but the header has {len(header)}",
                "check for missing or extra separators",
            )
        row = {h: f.strip() for h, f in zip(header, fields, strict=True)}
        sample = row.pop(sample_column)
        if sample in table:
            raise InputError(
                f"{path}:{line_no}", f"sample {sample!r} appears twice", "keep one row per sample"
            )
        table[sample] = row
    return table


def metadata_columns(
    sample_names: Sequence[str],
    tables: Sequence[Mapping[str, Mapping[str, str]]],
    source: str = "metadata",
) -> dict[str, list[str]]:
    """Combine tables (later ones win) into one list per column, aligned with `sample_names`.

    Column order is first appearance (QuantNado's combine step uses a set, so its order is
    random). Samples missing from every table get "".
    """
    columns: list[str] = []
    known = set(sample_names)
    for table in tables:
        for sample, row in table.items():
            if sample not in known:
                continue  # a shared sheet may describe other samples too
            for col in row:
                if col not in columns and col not in RESERVED_COLUMNS:
                    columns.append(col)
    out: dict[str, list[str]] = {}
    for col in columns:
        values = []
        for name in sample_names:
            value = ""
            for table in tables:
                if name in table and col in table[name]:
                    value = table[name][col]
            values.append(value)
        out[col] = values
    check_columns(out, sample_names, source)
    return out


def check_columns(
    columns: Mapping[str, Sequence[str]], sample_names: Sequence[str], source: str
) -> None:
    """Refuse columns that would break QuantNado's readers."""
    for col, values in columns.items():
        if not col:
            raise InputError(source, "a metadata column has no name", "name every column")
        if col == QUANTNADO_LABEL_COLUMN and list(values) != list(sample_names):
            raise InputError(
                source,
                f"metadata column {col!r} differs from the sample names; "
                "QuantNado would use it to relabel the samples",
                f"rename the column (e.g. to original_{col})",
            )


def unknown_samples(table: Mapping[str, object], sample_names: Sequence[str]) -> list[str]:
    known = set(sample_names)
    return [s for s in table if s not in known]
