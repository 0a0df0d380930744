"""Samplesheets and per-sample metadata tables: the one parser, and every rule they must meet.

A samplesheet is CSV (`.csv`) or TSV (`.tsv`) with a header. Required columns `sample` and
`bam` (a `.bam` or `.cram` file); optional `bai` (its index: `.bai` or `.csi` for BAM, `.crai`
for CRAM), `strandedness` (U, F, R or empty) and `scale_factor` (a positive finite number, or
empty/NA: none; recorded with the sample, not as metadata); every other column is per-sample
metadata,
stored as QuantNado's `metadata_<column>` lists. A metadata table (`merge --metadata`, the
Python API's `metadata=`) is the same kind of file keyed by a sample column. Relative paths
resolve against the sheet's folder. Values are kept exactly as written ("1" stays "1",
QuantNado's float round trip would make it "1.0"); a missing value is "".

Every problem is collected and reported together, each with its line number (the header is
line 1). `bamstore check-samplesheet`, `build`, `merge`, the Python API and the Nextflow pipeline
(its BAMSTORE_CHECKSAMPLESHEET task runs `bamstore check-samplesheet --out`, and the workflow
reads the sheet `write_normalised` writes) all parse and check through this module, so a sheet
that passes the check is one that `build` and the pipeline accept.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import numbers
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bamstore.engine.outputs import file_output
from bamstore.errors import InputError, InputErrors
from bamstore.layout import STRAND_CODES

REQUIRED_COLUMNS = ("sample", "bam")
OPTIONAL_COLUMNS = ("bai", "strandedness", "scale_factor")
INPUT_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS  # never stored as metadata
DELIMITERS = {".csv": ",", ".tsv": "\t"}
# Alignment file extension -> the index extensions that can go with it (htslib's own names).
INDEX_EXTENSIONS = {".bam": (".bai", ".csi"), ".cram": (".crai",)}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# QuantNado relabels samples with a stored `sample_id` column.
QUANTNADO_LABEL_COLUMN = "sample_id"
# Columns that `BamStore.metadata` derives from the store; a user column of the same name would
# be hidden behind them.
DERIVED_COLUMNS = ("sample_hash", "completed", "sparsity")
SAMPLE_NAME_FIX = "use ASCII letters, digits and ._+- only"
STRANDEDNESS_FIX = (
    "U: split by alignment strand; F/R: read 1 on the forward/reverse transcript strand; "
    "empty: not stranded"
)
SCALE_FACTOR_FIX = "give a positive number (e.g. 0.85 or 1.2e-3), or leave it empty for none"
NO_SCALE_FACTOR = ("", "NA")
_DECIMAL = re.compile(r"\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
MetadataTable = dict[str, dict[str, str]]  # sample -> column -> value


# ---------------------------------------------------------------------------- rules


def sample_name_problem(name: str) -> str | None:
    """Why `name` cannot be a sample name (it becomes a file name), or None if it can."""
    if not name or not name.strip():
        return "sample name is empty"
    if name != name.strip():
        return f"sample name {name!r} has leading or trailing spaces"
    if name in (".", ".."):
        return f"sample name {name!r} cannot be used as a file name"
    if not re.fullmatch(r"[A-Za-z0-9._+\-]+", name):
        return (
            f"sample name {name!r} has characters other than ASCII letters, digits and ._+- "
            "(it is used as a file name)"
        )
    return None


def repeated_names(names: Iterable[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    counts = Counter(names)
    return sorted(name for name, count in counts.items() if count > 1)


def sample_names_problem(names: Sequence[str]) -> str | None:
    """Why `names` cannot be a store's samples (a repeated or unusable name), or None."""
    dupes = repeated_names(names)
    if dupes:
        return f"sample names must be unique; repeated: {dupes}"
    for name in names:
        problem = sample_name_problem(name)
        if problem:
            return problem
    return None


def strandedness_problem(code: str) -> str | None:
    if code in ("", *STRAND_CODES):
        return None
    return f"strandedness {code!r} is not U, F, R or empty"


def scale_factor_problem(value: float) -> str | None:
    """Why `value` cannot be a sample's scale factor (it multiplies coverage), or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"scale factor {value!r} is not a number"
    if not math.isfinite(value) or value <= 0:
        return f"scale factor {value!r} is not a positive finite number"
    return None


def parse_scale_factor(text: str) -> tuple[float | None, str | None]:
    """(factor, None), or (None, why not), of a scale factor as written in a samplesheet, a
    scale-factors file or --scale-factor: a decimal number; '' or NA is no factor."""
    text = text.strip()
    if text in NO_SCALE_FACTOR:
        return None, None
    value = float(text) if _DECIMAL.fullmatch(text) else math.nan
    if not math.isfinite(value) or value <= 0:
        return None, f"scale factor {text!r} is not a positive finite number"
    return value, None


def metadata_column_problems(
    columns: Mapping[str, Sequence[str]], sample_names: Sequence[str], source: str
) -> list[InputError]:
    """Columns that would break QuantNado's readers or hide behind a derived column."""
    problems = []
    for column, values in columns.items():
        if not column:
            problems.append(
                InputError(source, "a metadata column has no name", "name every column")
            )
        elif column in DERIVED_COLUMNS:
            problems.append(
                InputError(
                    source,
                    f"metadata column {column!r} would be hidden: readers show the store's own "
                    f"{column!r} under that name",
                    f"rename the column (e.g. to {column}_1)",
                )
            )
        elif column == QUANTNADO_LABEL_COLUMN and list(values) != list(sample_names):
            problems.append(
                InputError(
                    source,
                    f"metadata column {column!r} differs from the sample names; "
                    "QuantNado would use it to relabel the samples",
                    f"rename the column (e.g. to original_{column})",
                )
            )
    return problems


# ---------------------------------------------------------------------------- CSV/TSV tables


@dataclass
class Table:
    """A CSV/TSV file as read: its header and rows (line number, column -> stripped value)."""

    path: Path
    header: list[str] = field(default_factory=list)
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)


def read_table(
    path: Path, what: str, required: Sequence[str], *, fix_required: str, any_suffix: bool = False
) -> tuple[Table, list[InputError]]:
    """Read `path`; return what could be read and every problem (file, header, field counts).

    `what` names the file in messages ("samplesheet", "metadata file"); a header lacking one of
    `required` is refused with `fix_required`. The separator follows the suffix (.csv, .tsv);
    with `any_suffix`, other names are read as TSV if the header has a tab, else as CSV.
    """
    table = Table(Path(path))
    if not path.exists():
        return table, [InputError(path, f"{what} does not exist", "check the path")]
    if path.is_dir():
        return table, [InputError(path, f"is a directory, not a {what}", "give a .csv or .tsv")]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except PermissionError:
        return table, [
            InputError(
                path, f"{what} cannot be read (permission denied)", "make it readable (chmod +r)"
            )
        ]
    except UnicodeDecodeError:
        return table, [
            InputError(
                path,
                f"{what} is not UTF-8 text",
                "save it as UTF-8 CSV/TSV (it may be an Excel file)",
            )
        ]
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        return table, [
            InputError(
                path, f"{what} is empty (no header line)", f"start it with a header: {fix_required}"
            )
        ]
    delimiter, problems = _delimiter(path, what, lines[0], any_suffix)
    if problems:
        return table, problems
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    problems = _header_problems(path, what, header, required, fix_required)
    if problems:
        return table, problems
    table.header = header
    for line_no, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue  # blank line
        if len(fields) != len(header):
            problems.append(
                InputError(
                    f"{path}:{line_no}",
                    f"has {len(fields)} fields but the header has {len(header)}",
                    "check for missing or extra separators (a trailing comma counts as a field)",
                )
            )
            continue
        table.rows.append((line_no, {h: f.strip() for h, f in zip(header, fields, strict=True)}))
    return table, problems


def _delimiter(
    path: Path, what: str, header_line: str, any_suffix: bool
) -> tuple[str, list[InputError]]:
    suffix = path.suffix.lower()
    if suffix not in DELIMITERS and any_suffix:
        return ("\t" if "\t" in header_line else ","), []
    if suffix not in DELIMITERS:
        return ",", [
            InputError(
                path,
                f"{what} must end in .csv or .tsv, not {suffix or '(none)'}",
                "rename it to .csv (comma-separated) or .tsv (tab-separated)",
            )
        ]
    delimiter = DELIMITERS[suffix]
    other = "\t" if delimiter == "," else ","
    if delimiter not in header_line and other in header_line:
        kind = "tabs" if other == "\t" else "commas"
        return delimiter, [
            InputError(
                path,
                f"is named {suffix} but its header is separated by {kind}",
                f"rename it to .{'tsv' if other == chr(9) else 'csv'}"
                " or re-save it with the matching separator",
            )
        ]
    return delimiter, []


def _header_problems(
    path: Path, what: str, header: list[str], required: Sequence[str], fix_required: str
) -> list[InputError]:
    problems: list[InputError] = []
    missing = [c for c in required if c not in header]
    if missing:
        problems.append(
            InputError(
                path,
                f"{what} header lacks required column(s) "
                f"{', '.join(missing)} (found: {', '.join(header)})",
                fix_required,
            )
        )
    if any(not h for h in header):
        problems.append(
            InputError(
                path,
                f"{what} header has an empty column name",
                "name every column, or remove trailing separators",
            )
        )
    dups = repeated_names(h for h in header if h)
    if dups:
        problems.append(
            InputError(
                path,
                f"{what} header repeats column(s) {', '.join(dups)}",
                "give each column a unique name",
            )
        )
    return problems


# ---------------------------------------------------------------------------- samplesheets


@dataclass(frozen=True)
class SampleRow:
    sample: str
    bam: Path
    bai: Path | None
    strandedness: str
    metadata: dict[str, str]
    line: int
    sheet: Path
    scale_factor: float | None = None

    @property
    def where(self) -> str:
        return f"{self.sheet}:{self.line}"


@dataclass
class Samplesheet:
    path: Path
    rows: list[SampleRow] = field(default_factory=list)
    metadata_columns: list[str] = field(default_factory=list)

    @property
    def sample_names(self) -> list[str]:
        return [r.sample for r in self.rows]

    def metadata_table(self) -> MetadataTable:
        return {r.sample: r.metadata for r in self.rows}


def _resolve(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def check_samplesheet(
    path: Path, *, check_files: bool = True
) -> tuple[Samplesheet, list[InputError]]:
    """Parse `path`; return what could be read and the list of problems (empty if sound)."""
    path = Path(path)
    sheet = Samplesheet(path)
    table, problems = read_table(
        path,
        "samplesheet",
        REQUIRED_COLUMNS,
        fix_required="the header must name at least: sample,bam",
    )
    if not table.header:
        return sheet, problems
    sheet.metadata_columns = [h for h in table.header if h not in INPUT_COLUMNS]
    base = path.resolve().parent
    seen: dict[str, int] = {}
    for line_no, row in table.rows:
        where = f"{path}:{line_no}"
        problems += _row_problems(where, row, seen, base, check_files)
        sample = row["sample"]
        seen.setdefault(sample, line_no)
        bai = row.get("bai", "")
        sheet.rows.append(
            SampleRow(
                sample=sample,
                bam=_resolve(base, row["bam"]) if row["bam"] else Path(),
                bai=_resolve(base, bai) if bai else None,
                strandedness=row.get("strandedness", ""),
                metadata={c: row[c] for c in sheet.metadata_columns},
                line=line_no,
                sheet=path,
                scale_factor=parse_scale_factor(row.get("scale_factor", ""))[0],
            )
        )
    if not sheet.rows and not problems:
        problems.append(
            InputError(path, "samplesheet has a header but no samples", "add one line per sample")
        )
    columns = {c: [r.metadata[c] for r in sheet.rows] for c in sheet.metadata_columns}
    problems += metadata_column_problems(columns, sheet.sample_names, str(path))
    return sheet, problems


def _row_problems(
    where: str, row: dict[str, str], seen: dict[str, int], base: Path, check_files: bool
) -> list[InputError]:
    problems: list[InputError] = []
    sample = row["sample"]
    problem = sample_name_problem(sample)
    if problem:
        problems.append(InputError(where, problem, SAMPLE_NAME_FIX))
    elif sample in seen:
        problems.append(
            InputError(
                where,
                f"sample {sample!r} is already on line {seen[sample]}",
                "give every sample a unique name",
            )
        )
    problem = strandedness_problem(row.get("strandedness", ""))
    if problem:
        problems.append(InputError(where, problem, STRANDEDNESS_FIX))
    _, problem = parse_scale_factor(row.get("scale_factor", ""))
    if problem:
        problems.append(InputError(where, problem, SCALE_FACTOR_FIX))
    if not row["bam"]:
        problems.append(InputError(where, "bam is empty", "give the path of the sample's BAM"))
        return problems
    path_problems = _extension_problems(where, row["bam"], row.get("bai", ""))
    problems += path_problems
    if check_files and not path_problems:
        problems += _file_problems(where, "bam", _resolve(base, row["bam"]))
        if row.get("bai"):
            problems += _file_problems(where, "bai", _resolve(base, row["bai"]))
    return problems


def _extension_problems(where: str, bam: str, index: str) -> list[InputError]:
    """The alignment file is .bam or .cram, its index one htslib pairs with it; no URLs."""
    problems = [
        InputError(
            where,
            f"{column} {value!r} is a URL; bamstore reads local (or mounted) files only",
            "copy the file to a local or shared filesystem and give its path",
        )
        for column, value in (("bam", bam), ("bai", index))
        if _URL.match(value)
    ]
    if problems:
        return problems
    if bam.strip() == "-":
        return [
            InputError(
                where,
                "bam '-' (standard input) cannot be read for a samplesheet's sample: a "
                "samplesheet names BAM files",
                "give the BAM file's path, or stream one sample with "
                "bamstore extract --bam - and merge the per-sample stores",
            )
        ]
    suffix = Path(bam).suffix.lower()
    if suffix not in INDEX_EXTENSIONS:
        return [
            InputError(
                where,
                f"bam {bam!r} does not end in .bam or .cram",
                "give a coordinate-sorted BAM (.bam) or CRAM (.cram) file",
            )
        ]
    allowed = INDEX_EXTENSIONS[suffix]
    if index and Path(index).suffix.lower() not in allowed:
        return [
            InputError(
                where,
                f"bai {index!r} is not a {suffix} index (expected {' or '.join(allowed)})",
                "give the index made by samtools index for this file, or leave bai empty "
                "to have one built",
            )
        ]
    return []


def _file_problems(where: str, column: str, path: Path) -> list[InputError]:
    if not path.exists():
        return [
            InputError(
                where,
                f"{column} file {path} does not exist",
                "check the path (relative paths are resolved against the samplesheet's folder)",
            )
        ]
    if path.is_dir():
        return [InputError(where, f"{column} {path} is a directory", f"give the {column} file")]
    if not os.access(path, os.R_OK):
        return [
            InputError(
                where,
                f"{column} file {path} cannot be read (permission denied)",
                "make it readable (chmod +r)",
            )
        ]
    return []


def read_samplesheets(paths: Sequence[Path], *, check_files: bool = True) -> Samplesheet:
    """Several sheets as one; every problem of every sheet, and samples repeated across
    sheets, reported together in one error. `check_files=False` skips only the checks that the
    files exist and can be read (the pipeline makes them where the files are visible)."""
    sheets: list[Samplesheet] = []
    problems: list[InputError] = []
    for path in paths:
        sheet, found = check_samplesheet(path, check_files=check_files)
        sheets.append(sheet)
        problems += found
    merged = Samplesheet(sheets[0].path)
    first: dict[str, SampleRow] = {}
    for sheet in sheets:
        for row in sheet.rows:
            if row.sample in first:
                if first[row.sample].sheet != row.sheet:  # check_samplesheet reports the rest
                    problems.append(
                        InputError(
                            row.where,
                            f"sample {row.sample!r} is also on {first[row.sample].where}",
                            "give every sample a unique name across samplesheets",
                        )
                    )
                continue
            first[row.sample] = row
            merged.rows.append(row)
        merged.metadata_columns += [
            c for c in sheet.metadata_columns if c not in merged.metadata_columns
        ]
    if problems:
        raise InputErrors(problems, header=f"{len(problems)} problem(s) in the samplesheet(s)")
    return merged


NORMALISED_COLUMNS = ("sample", "bam", "bai", "strandedness", "scale_factor")


def without_samples(sheet: Samplesheet, names: Sequence[str]) -> tuple[Samplesheet, list[str]]:
    """The sheet without the rows of the samples `names` (those a cohort already holds), and
    the names of the rows left out, in sheet order. The metadata columns stay as they were, so
    the new samples' values keep their columns even where every new value is empty."""
    held = set(names)
    kept = [row for row in sheet.rows if row.sample not in held]
    left_out = [row.sample for row in sheet.rows if row.sample in held]
    return dataclasses.replace(sheet, rows=kept), left_out


def write_normalised(sheet: Samplesheet, out: str | os.PathLike[str]) -> None:
    """The checked samplesheet as CSV: absolute paths, the samples in their order, then metadata.

    Columns: sample, bam, bai (empty when the index is to be built), strandedness, scale_factor
    (empty for none), then the metadata columns in their order of first appearance. It is itself
    a valid samplesheet, so `bamstore build --input` and `bamstore merge --metadata` read it as
    they read the original.
    """
    columns = [*NORMALISED_COLUMNS, *sheet.metadata_columns]
    with file_output(out) as staged, staged.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in sheet.rows:
            writer.writerow(
                [
                    row.sample,
                    os.path.abspath(row.bam),
                    os.path.abspath(row.bai) if row.bai else "",
                    row.strandedness,
                    "" if row.scale_factor is None else repr(row.scale_factor),
                    *(row.metadata.get(column, "") for column in sheet.metadata_columns),
                ]
            )


# ---------------------------------------------------------------------------- metadata tables


def read_metadata_table(path: Path, sample_column: str = "sample") -> MetadataTable:
    """A metadata CSV/TSV as {sample: {column: value}}; the sample column is the key, and
    samplesheet input columns (bam, bai, strandedness, scale_factor) are not metadata."""
    path = Path(path)
    table, problems = read_table(
        path,
        "metadata file",
        [sample_column],
        fix_required="name the column that holds the sample names (--sample-column)",
        any_suffix=True,
    )
    out: MetadataTable = {}
    for line_no, row in table.rows:
        sample = row.pop(sample_column)
        if sample in out:
            problems.append(
                InputError(
                    f"{path}:{line_no}",
                    f"sample {sample!r} appears twice",
                    "keep one row per sample",
                )
            )
            continue
        out[sample] = {c: v for c, v in row.items() if c not in INPUT_COLUMNS}
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputErrors(problems, header=f"{len(problems)} problem(s) in {path}")
    return out


def metadata_columns(
    sample_names: Sequence[str], tables: Sequence[Mapping[str, Mapping[str, str]]], source: str
) -> dict[str, list[str]]:
    """Combine tables (later ones win) into one list per column, aligned with `sample_names`.

    Column order is first appearance. Samples missing from every table get "". Rows for other
    samples are ignored (a shared sheet may describe more samples).
    """
    columns: list[str] = []
    known = set(sample_names)
    for table in tables:
        for sample, row in table.items():
            if sample in known:
                columns += [c for c in row if c not in columns and c not in INPUT_COLUMNS]
    out: dict[str, list[str]] = {}
    for column in columns:
        values = []
        for name in sample_names:
            value = ""
            for table in tables:
                if name in table and column in table[name]:
                    value = table[name][column]
            values.append(value)
        out[column] = values
    problems = metadata_column_problems(out, sample_names, source)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputErrors(problems, header=f"{len(problems)} problem(s) with metadata in {source}")
    return out


def unknown_samples(table: Mapping[str, object], sample_names: Sequence[str]) -> list[str]:
    known = set(sample_names)
    return [s for s in table if s not in known]
