"""The samplesheet: which BAMs, under which sample names, with which metadata.

CSV (`.csv`) or TSV (`.tsv`) with a header. Required columns `sample` and `bam` (a `.bam` or
`.cram` file); optional `bai` (its index: `.bai` or `.csi` for BAM, `.crai` for CRAM) and
`strandedness` (U, F, R or empty); every other column is per-sample metadata. Relative paths
resolve against the samplesheet's folder. All problems are collected and reported together, each
with its line number (the header is line 1).

These are the only samplesheet rules: `bamstore build` and the Nextflow pipeline (its
BAMSTORE_CHECKSAMPLESHEET task runs `bamstore check-samplesheet --out`) both apply them, and the
pipeline reads the normalised sheet that `write_normalised` writes.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from bamstore.bam_input import sample_name_problem
from bamstore.errors import InputError, InputErrors
from bamstore.layout import STRAND_CODES

REQUIRED_COLUMNS = ("sample", "bam")
OPTIONAL_COLUMNS = ("bai", "strandedness")
RESERVED_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
DELIMITERS = {".csv": ",", ".tsv": "\t"}
# Alignment file extension -> the index extensions that can go with it (htslib's own names).
INDEX_EXTENSIONS = {".bam": (".bai", ".csi"), ".cram": (".crai",)}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class SampleRow:
    sample: str
    bam: Path
    bai: Path | None
    strandedness: str
    metadata: dict[str, str]
    line: int
    sheet: Path

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

    def metadata_table(self) -> dict[str, dict[str, str]]:
        return {r.sample: r.metadata for r in self.rows}


def _resolve(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def _check_delimiter(path: Path, header_line: str) -> tuple[str, list[InputError]]:
    suffix = path.suffix.lower()
    if suffix not in DELIMITERS:
        return ",", [
            InputError(
                path,
                f"samplesheet must end in .csv or .tsv, not {suffix or '(none)'}",
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


def read_samplesheet(path: Path, *, check_files: bool = True) -> Samplesheet:
    """Parse and validate; raise InputErrors listing every problem found."""
    sheet, problems = check_samplesheet(path, check_files=check_files)
    if problems:
        raise InputErrors(problems, header=f"{path}: {len(problems)} problem(s) in the samplesheet")
    return sheet


def check_samplesheet(
    path: Path, *, check_files: bool = True
) -> tuple[Samplesheet, list[InputError]]:
    """Parse `path`; return what could be read and the list of problems (empty if sound)."""
    path = Path(path)
    sheet = Samplesheet(path)
    if not path.exists():
        return sheet, [InputError(path, "samplesheet does not exist", "check the --input path")]
    if path.is_dir():
        return sheet, [InputError(path, "is a directory, not a samplesheet", "give a .csv or .tsv")]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except PermissionError:
        return sheet, [
            InputError(
                path,
                "samplesheet cannot be read (permission denied)",
                "make it readable (chmod +r)",
            )
        ]
    except UnicodeDecodeError:
        return sheet, [
            InputError(
                path,
                "samplesheet is not UTF-8 text",
                "save it as UTF-8 CSV/TSV (it may be an Excel file)",
            )
        ]
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        return sheet, [
            InputError(
                path,
                "samplesheet is empty (no header line)",
                "start it with a header such as: sample,bam,strandedness",
            )
        ]
    delimiter, problems = _check_delimiter(path, lines[0])
    if problems:
        return sheet, problems
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    problems += _header_problems(path, header)
    if problems:
        return sheet, problems
    sheet.metadata_columns = [h for h in header if h not in RESERVED_COLUMNS]
    base = path.resolve().parent
    seen: dict[str, int] = {}
    for line_no, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue  # blank line
        where = f"{path}:{line_no}"
        if len(fields) != len(header):
            problems.append(
                InputError(
                    where,
                    f"has {len(fields)} fields but the header has {len(header)}",
                    "check for missing or extra separators (a trailing comma counts as a field)",
                )
            )
            continue
        row = {h: f.strip() for h, f in zip(header, fields, strict=True)}
        problems += _row_problems(where, row, seen, line_no, base, check_files)
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
            )
        )
    if not sheet.rows and not problems:
        problems.append(
            InputError(path, "samplesheet has a header but no samples", "add one line per sample")
        )
    return sheet, problems


def _header_problems(path: Path, header: list[str]) -> list[InputError]:
    problems: list[InputError] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append(
            InputError(
                path,
                f"samplesheet header lacks required column(s) "
                f"{', '.join(missing)} (found: {', '.join(header)})",
                "the header must name at least: sample,bam",
            )
        )
    if any(not h for h in header):
        problems.append(
            InputError(
                path,
                "samplesheet header has an empty column name",
                "name every column, or remove trailing separators",
            )
        )
    dups = sorted({h for h in header if h and header.count(h) > 1})
    if dups:
        problems.append(
            InputError(
                path,
                f"samplesheet header repeats column(s) {', '.join(dups)}",
                "give each column a unique name",
            )
        )
    return problems


def _row_problems(
    where: str,
    row: dict[str, str],
    seen: dict[str, int],
    line_no: int,
    base: Path,
    check_files: bool,
) -> list[InputError]:
    problems: list[InputError] = []
    sample = row["sample"]
    problem = sample_name_problem(sample)
    if problem:
        problems.append(InputError(where, problem, "use letters, digits and ._+- only"))
    elif sample in seen:
        problems.append(
            InputError(
                where,
                f"sample {sample!r} is already on line {seen[sample]}",
                "give every sample a unique name",
            )
        )
    strand = row.get("strandedness", "")
    if strand not in ("", *STRAND_CODES):
        problems.append(
            InputError(
                where,
                f"strandedness {strand!r} is not U, F, R or empty",
                "U: split by alignment strand; F/R: read 1 on the forward/"
                "reverse transcript strand; empty: not stranded",
            )
        )
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


def merge_samplesheets(sheets: list[Samplesheet]) -> Samplesheet:
    """Several sheets as one; duplicate samples across sheets are reported together."""
    problems: list[InputError] = []
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
        for col in sheet.metadata_columns:
            if col not in merged.metadata_columns:
                merged.metadata_columns.append(col)
    if problems:
        raise InputErrors(problems)
    return merged


NORMALISED_COLUMNS = ("sample", "bam", "bai", "strandedness")


def write_normalised(sheet: Samplesheet, out: Path) -> None:
    """The checked samplesheet as CSV: absolute paths, the samples in their order, then metadata.

    Columns: sample, bam, bai (empty when the index is to be built), strandedness, then the
    metadata columns in their order of first appearance. It is itself a valid samplesheet, so
    `bamstore build --input` and `bamstore merge --metadata` read it as they read the original.
    """
    columns = [*NORMALISED_COLUMNS, *sheet.metadata_columns]
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in sheet.rows:
            writer.writerow(
                [
                    row.sample,
                    os.path.abspath(row.bam),
                    os.path.abspath(row.bai) if row.bai else "",
                    row.strandedness,
                    *(row.metadata.get(column, "") for column in sheet.metadata_columns),
                ]
            )
    tmp.replace(out)
