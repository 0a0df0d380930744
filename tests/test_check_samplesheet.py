"""The samplesheet rules (bamstore/engine/samplesheet.py): the one set that `bamstore build`,
`bamstore check-samplesheet` and the pipeline's BAMSTORE_CHECKSAMPLESHEET task apply.

One table of samplesheets, good and bad, through `read_samplesheets`; the normalised sheet that
`check-samplesheet --out` writes for the pipeline (absolute paths, row order, metadata), and
`--no-check-files`, through the real command line.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from bamstore.engine.build import read_samplesheets
from bamstore.errors import InputError

SHEET_COLUMNS = ["sample", "bam", "bai", "strandedness", "scale_factor"]  # normalised, first
FILES = ("a.bam", "a.bam.bai", "a.bam.csi", "b.bam", "sub/c.bam", "x.cram", "x.cram.crai")


@dataclass(frozen=True)
class Case:
    id: str
    text: str  # `{dir}` stands for the samplesheet's folder
    verdict: str  # "ok" | "bad"
    expect: str = ""  # the whole problem line; `{sheet}` is the sheet, `{dir}` its folder
    name: str = "samplesheet.csv"
    dirs: tuple[str, ...] = ()


CASES = [
    Case("minimal", "sample,bam\na,a.bam\n", "ok"),
    Case(
        "all_columns",
        "sample,bam,bai,strandedness,condition,replicate\n"
        "a,a.bam,a.bam.bai,U,treated,1\nb,b.bam,,F,control,1\nc,sub/c.bam,,R,treated,2\n"
        "d,{dir}/b.bam,,,control,2\n",
        "ok",
    ),
    Case("tsv", "sample\tbam\tstrandedness\na\ta.bam\tR\n", "ok", name="samplesheet.tsv"),
    Case("absolute_paths", "sample,bam,bai\na,{dir}/a.bam,{dir}/a.bam.bai\n", "ok"),
    Case("csi_index", "sample,bam,bai\na,a.bam,a.bam.csi\n", "ok"),
    Case("cram_with_crai", "sample,bam,bai\nx,x.cram,x.cram.crai\n", "ok"),
    Case("cram_without_index", "sample,bam\nx,x.cram\n", "ok"),
    Case("upper_case_extension", "sample,bam\na,A.BAM\n", "ok"),
    Case("blank_lines", "sample,bam\n\na,a.bam\n\nb,b.bam\n\n", "ok"),
    Case("separator_only_line", "sample,bam\na,a.bam\n,\nb,b.bam\n", "ok"),
    Case("quoted_metadata", 'sample,bam,note\na,a.bam,"treated, 2 h"\n', "ok"),
    Case("spaces_around_values", "sample , bam\n a , a.bam \n", "ok"),
    Case("byte_order_mark", "\ufeffsample,bam\na,a.bam\n", "ok"),
    Case("name_characters", "sample,bam\nA-1_b.c+d,a.bam\n", "ok"),
    # names that nf-schema used to read as numbers or booleans are plain names here
    Case("number_like_names", "sample,bam\n007,a.bam\n10E8,b.bam\ntrue,sub/c.bam\n", "ok"),
    Case(
        "scale_factors",
        "sample,bam,scale_factor\na,a.bam,0.85\nb,b.bam,\nc,sub/c.bam,1.2e-3\n"
        "d,{dir}/a.bam,NA\ne,{dir}/b.bam,+2\nf,x.cram, .5 \ng,x.cram,7\n",
        "ok",
    ),
    Case(
        "empty_file",
        "",
        "bad",
        (
            "{sheet}: samplesheet is empty (no header line); fix: start it with a header: the "
            "header must name at least: sample,bam"
        ),
    ),
    Case(
        "blank_header",
        "\nsample,bam\na,a.bam\n",
        "bad",
        (
            "{sheet}: samplesheet is empty (no header line); fix: start it with a header: the "
            "header must name at least: sample,bam"
        ),
    ),
    Case(
        "header_only",
        "sample,bam\n",
        "bad",
        "{sheet}: samplesheet has a header but no samples; fix: add one line per sample",
    ),
    Case(
        "no_bam_column",
        "sample,bai\na,a.bam.bai\n",
        "bad",
        (
            "{sheet}: samplesheet header lacks required column(s) bam (found: sample, bai); "
            "fix: the header must name at least: sample,bam"
        ),
    ),
    Case(
        "no_sample_column",
        "bam\na.bam\n",
        "bad",
        (
            "{sheet}: samplesheet header lacks required column(s) sample (found: bam); fix: "
            "the header must name at least: sample,bam"
        ),
    ),
    Case(
        "extension",
        "sample,bam\na,a.bam\n",
        "bad",
        (
            "{sheet}: samplesheet must end in .csv or .tsv, not .txt; fix: rename it to .csv "
            "(comma-separated) or .tsv (tab-separated)"
        ),
        "s.txt",
    ),
    Case(
        "csv_with_tabs",
        "sample\tbam\na\ta.bam\n",
        "bad",
        (
            "{sheet}: is named .csv but its header is separated by tabs; fix: rename it to "
            ".tsv or re-save it with the matching separator"
        ),
    ),
    Case(
        "tsv_with_commas",
        "sample,bam\na,a.bam\n",
        "bad",
        (
            "{sheet}: is named .tsv but its header is separated by commas; fix: rename it to "
            ".csv or re-save it with the matching separator"
        ),
        "s.tsv",
    ),
    Case(
        "trailing_separator",
        "sample,bam,\na,a.bam,\n",
        "bad",
        (
            "{sheet}: samplesheet header has an empty column name; fix: name every column, or "
            "remove trailing separators"
        ),
    ),
    Case(
        "repeated_column",
        "sample,bam,bam\na,a.bam,b.bam\n",
        "bad",
        "{sheet}: samplesheet header repeats column(s) bam; fix: give each column a unique name",
    ),
    Case(
        "too_many_fields",
        "sample,bam\na,a.bam,extra\n",
        "bad",
        (
            "{sheet}:2: has 3 fields but the header has 2; fix: check for missing or extra "
            "separators (a trailing comma counts as a field)"
        ),
    ),
    Case(
        "too_few_fields",
        "sample,bam,strandedness\na,a.bam\n",
        "bad",
        (
            "{sheet}:2: has 2 fields but the header has 3; fix: check for missing or extra "
            "separators (a trailing comma counts as a field)"
        ),
    ),
    Case(
        "empty_sample",
        "sample,bam\n,a.bam\n",
        "bad",
        "{sheet}:2: sample name is empty; fix: use ASCII letters, digits and ._+- only",
    ),
    Case(
        "space_in_name",
        "sample,bam\na b,a.bam\n",
        "bad",
        (
            "{sheet}:2: sample name 'a b' has characters other than ASCII letters, digits and "
            "._+- (it is used as a file name); fix: use ASCII letters, digits and ._+- only"
        ),
    ),
    Case(
        "slash_in_name",
        "sample,bam\na/b,a.bam\n",
        "bad",
        (
            "{sheet}:2: sample name 'a/b' has characters other than ASCII letters, digits and "
            "._+- (it is used as a file name); fix: use ASCII letters, digits and ._+- only"
        ),
    ),
    Case(
        "dotdot_name",
        "sample,bam\n..,a.bam\n",
        "bad",
        (
            "{sheet}:2: sample name '..' cannot be used as a file name; fix: use ASCII "
            "letters, digits and ._+- only"
        ),
    ),
    Case(
        "duplicate_sample",
        "sample,bam\na,a.bam\na,b.bam\n",
        "bad",
        "{sheet}:3: sample 'a' is already on line 2; fix: give every sample a unique name",
    ),
    Case(
        "strandedness_unknown",
        "sample,bam,strandedness\na,a.bam,X\n",
        "bad",
        (
            "{sheet}:2: strandedness 'X' is not U, F, R or empty; fix: U: split by alignment "
            "strand; F/R: read 1 on the forward/reverse transcript strand; empty: not stranded"
        ),
    ),
    Case(
        "strandedness_lowercase",
        "sample,bam,strandedness\na,a.bam,r\n",
        "bad",
        (
            "{sheet}:2: strandedness 'r' is not U, F, R or empty; fix: U: split by alignment "
            "strand; F/R: read 1 on the forward/reverse transcript strand; empty: not stranded"
        ),
    ),
    Case(
        "empty_bam",
        "sample,bam\na,\n",
        "bad",
        "{sheet}:2: bam is empty; fix: give the path of the sample's BAM",
    ),
    Case(
        "missing_bam",
        "sample,bam\na,nope.bam\n",
        "bad",
        (
            "{sheet}:2: bam file {dir}/nope.bam does not exist; fix: check the path (relative "
            "paths are resolved against the samplesheet's folder)"
        ),
    ),
    Case(
        "missing_bai",
        "sample,bam,bai\na,a.bam,nope.bai\n",
        "bad",
        (
            "{sheet}:2: bai file {dir}/nope.bai does not exist; fix: check the path (relative "
            "paths are resolved against the samplesheet's folder)"
        ),
    ),
    Case(
        "bam_is_a_folder",
        "sample,bam\na,f.bam\n",
        "bad",
        "{sheet}:2: bam {dir}/f.bam is a directory; fix: give the bam file",
        dirs=("f.bam",),
    ),
    Case(
        "relative_path_outside",
        "sample,bam\na,../a.bam\n",
        "bad",
        (
            "{sheet}:2: bam file {dir}/../a.bam does not exist; fix: check the path (relative "
            "paths are resolved against the samplesheet's folder)"
        ),
    ),
    # the file types the pipeline and build accept: .bam/.cram and the indexes htslib pairs
    Case(
        "sam_file",
        "sample,bam\na,a.sam\n",
        "bad",
        (
            "{sheet}:2: bam 'a.sam' does not end in .bam or .cram; fix: give a "
            "coordinate-sorted BAM (.bam) or CRAM (.cram) file"
        ),
    ),
    Case(
        "no_extension",
        "sample,bam\na,a\n",
        "bad",
        (
            "{sheet}:2: bam 'a' does not end in .bam or .cram; fix: give a coordinate-sorted "
            "BAM (.bam) or CRAM (.cram) file"
        ),
    ),
    Case(
        "crai_for_bam",
        "sample,bam,bai\na,a.bam,x.cram.crai\n",
        "bad",
        (
            "{sheet}:2: bai 'x.cram.crai' is not a .bam index (expected .bai or .csi); fix: "
            "give the index made by samtools index for this file, or leave bai empty to have "
            "one built"
        ),
    ),
    Case(
        "bai_for_cram",
        "sample,bam,bai\nx,x.cram,a.bam.bai\n",
        "bad",
        (
            "{sheet}:2: bai 'a.bam.bai' is not a .cram index (expected .crai); fix: give the "
            "index made by samtools index for this file, or leave bai empty to have one built"
        ),
    ),
    Case(
        "index_not_an_index",
        "sample,bam,bai\na,a.bam,b.bam\n",
        "bad",
        (
            "{sheet}:2: bai 'b.bam' is not a .bam index (expected .bai or .csi); fix: give the "
            "index made by samtools index for this file, or leave bai empty to have one built"
        ),
    ),
    Case(
        "scale_factor_0",
        "sample,bam,scale_factor\na,a.bam,0\n",
        "bad",
        (
            "{sheet}:2: scale factor '0' is not a positive finite number; fix: give a "
            "positive number (e.g. 0.85 or 1.2e-3), or leave it empty for none"
        ),
    ),
    Case(
        "scale_factor_1",
        "sample,bam,scale_factor\na,a.bam,-1\n",
        "bad",
        (
            "{sheet}:2: scale factor '-1' is not a positive finite number; fix: give a "
            "positive number (e.g. 0.85 or 1.2e-3), or leave it empty for none"
        ),
    ),
    Case(
        "scale_factor_2",
        "sample,bam,scale_factor\na,a.bam,abc\n",
        "bad",
        (
            "{sheet}:2: scale factor 'abc' is not a positive finite number; fix: give a "
            "positive number (e.g. 0.85 or 1.2e-3), or leave it empty for none"
        ),
    ),
    Case(
        "scale_factor_3",
        "sample,bam,scale_factor\na,a.bam,nan\n",
        "bad",
        (
            "{sheet}:2: scale factor 'nan' is not a positive finite number; fix: give a "
            "positive number (e.g. 0.85 or 1.2e-3), or leave it empty for none"
        ),
    ),
    Case(
        "scale_factor_4",
        "sample,bam,scale_factor\na,a.bam,inf\n",
        "bad",
        (
            "{sheet}:2: scale factor 'inf' is not a positive finite number; fix: give a "
            "positive number (e.g. 0.85 or 1.2e-3), or leave it empty for none"
        ),
    ),
    Case(
        "scale_factor_5",
        "sample,bam,scale_factor\na,a.bam,1e400\n",
        "bad",
        (
            "{sheet}:2: scale factor '1e400' is not a positive finite number; fix: give a "
            "positive number (e.g. 0.85 or 1.2e-3), or leave it empty for none"
        ),
    ),
    Case(
        "scale_factor_6",
        'sample,bam,scale_factor\na,a.bam,"1,5"\n',
        "bad",
        (
            "{sheet}:2: scale factor '1,5' is not a positive finite number; fix: give a "
            "positive number (e.g. 0.85 or 1.2e-3), or leave it empty for none"
        ),
    ),
    Case(
        "scale_factor_7",
        "sample,bam,scale_factor\na,a.bam,0x10\n",
        "bad",
        (
            "{sheet}:2: scale factor '0x10' is not a positive finite number; fix: give a "
            "positive number (e.g. 0.85 or 1.2e-3), or leave it empty for none"
        ),
    ),
    Case(
        "url",
        "sample,bam\na,s3://bucket/a.bam\n",
        "bad",
        (
            "{sheet}:2: bam 's3://bucket/a.bam' is a URL; bamstore reads local (or mounted) "
            "files only; fix: copy the file to a local or shared filesystem and give its path"
        ),
    ),
    Case(
        "url_index",
        "sample,bam,bai\na,a.bam,https://h/a.bam.bai\n",
        "bad",
        (
            "{sheet}:2: bai 'https://h/a.bam.bai' is a URL; bamstore reads local (or mounted) "
            "files only; fix: copy the file to a local or shared filesystem and give its path"
        ),
    ),
]


def write_case(case: Case, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    (folder / "A.BAM").write_bytes(b"")
    for name in case.dirs:
        (folder / name).mkdir(parents=True)
    sheet = folder / case.name
    sheet.write_text(case.text.replace("{dir}", str(folder)), encoding="utf-8")
    return sheet


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_samplesheet_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sheet = write_case(case, tmp_path / "sheets")
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the sheet, not the cwd
    try:
        read_samplesheets([sheet])
    except InputError as exc:
        assert case.verdict == "bad", str(exc)
        line = case.expect.replace("{sheet}", str(sheet)).replace("{dir}", str(sheet.parent))
        assert str(exc) == f"1 problem(s) in the samplesheet(s)\n{line}"
    else:
        assert case.verdict == "ok"


def test_the_table_covers_both_verdicts() -> None:
    assert sum(c.verdict == "ok" for c in CASES) >= 10
    assert sum(c.verdict == "bad" for c in CASES) >= 25


def test_normalised_sheet(tmp_path: Path, run_cli) -> None:
    """--out: absolute paths, row order, the reserved columns first, metadata kept verbatim."""
    sheet = write_case(CASES[1], tmp_path / "sheets")
    out = tmp_path / "valid.csv"
    done = run_cli("check-samplesheet", sheet, "--out", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == [*SHEET_COLUMNS, "condition", "replicate"]
    folder = (tmp_path / "sheets").resolve()
    assert [r["sample"] for r in rows] == ["a", "b", "c", "d"]
    bams = ("a.bam", "b.bam", "sub/c.bam", "b.bam")
    assert [r["bam"] for r in rows] == [str(folder / name) for name in bams]
    assert [r["bai"] for r in rows] == [str(folder / "a.bam.bai"), "", "", ""]
    assert [r["strandedness"] for r in rows] == ["U", "F", "R", ""]
    assert [r["replicate"] for r in rows] == ["1", "1", "2", "2"]
    assert [r["scale_factor"] for r in rows] == ["", "", "", ""]
    # the normalised sheet is a samplesheet in its own right, with the same content
    again = tmp_path / "again.csv"
    assert run_cli("check-samplesheet", out, "--out", again).returncode == 0
    assert again.read_text() == out.read_text()


def test_normalised_sheet_keeps_scale_factors(tmp_path: Path, run_cli) -> None:
    """The factors reach the pipeline in the normalised sheet, as numbers (not metadata)."""
    case = next(c for c in CASES if c.id == "scale_factors")
    sheet = write_case(case, tmp_path / "sheets")
    out = tmp_path / "valid.csv"
    done = run_cli("check-samplesheet", sheet, "--out", out)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "OK: 7 samples (0 stranded, 5 with a scale factor), metadata columns: (none)\n"
    )
    rows = list(csv.DictReader(out.open()))
    assert [r["scale_factor"] for r in rows] == ["0.85", "", "0.0012", "", "2.0", "0.5", "7.0"]
    assert list(rows[0]) == SHEET_COLUMNS
    again = tmp_path / "again.csv"
    assert run_cli("check-samplesheet", out, "--out", again).returncode == 0
    assert again.read_text() == out.read_text()


def test_normalised_sheet_through_a_symlink(tmp_path: Path, run_cli) -> None:
    """Nextflow stages the samplesheet as a symlink: paths resolve against its real folder."""
    sheet = write_case(CASES[0], tmp_path / "sheets")
    task = tmp_path / "task"
    task.mkdir()
    (task / "samplesheet.csv").symlink_to(sheet)
    done = run_cli("check-samplesheet", "samplesheet.csv", "--out", "v.csv", cwd=task)
    assert done.returncode == 0, done.stderr
    row = next(csv.DictReader((task / "v.csv").open()))
    assert row["bam"] == str((tmp_path / "sheets" / "a.bam").resolve())


def test_quoting_survives(tmp_path: Path, run_cli) -> None:
    sheet = write_case(CASES[10], tmp_path / "sheets")  # quoted_metadata
    out = tmp_path / "v.csv"
    assert run_cli("check-samplesheet", sheet, "--out", out).returncode == 0
    assert next(csv.DictReader(out.open()))["note"] == "treated, 2 h"


def test_no_check_files_keeps_every_other_rule(tmp_path: Path, run_cli) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_text("sample,bam,bai\na,gone.bam,\nb,gone.cram,gone.cram.crai\n")
    assert run_cli("check-samplesheet", sheet).returncode == 2
    out = tmp_path / "v.csv"
    done = run_cli("check-samplesheet", sheet, "--no-check-files", "--out", out)
    assert done.returncode == 0, done.stderr
    assert [r["bam"] for r in csv.DictReader(out.open())] == [
        str(tmp_path / "gone.bam"),
        str(tmp_path / "gone.cram"),
    ]
    sheet.write_text("sample,bam\na,gone.sam\na,gone.bam\n")
    done = run_cli("check-samplesheet", sheet, "--no-check-files", "--out", out)
    assert done.returncode == 2
    assert "does not end in .bam or .cram" in done.stderr and "already on line 2" in done.stderr


def test_nothing_written_on_error(tmp_path: Path, run_cli) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_text("sample,bam\na,nope.bam\n")
    out = tmp_path / "v.csv"
    assert run_cli("check-samplesheet", sheet, "--out", out).returncode == 2
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".v.csv")]


def test_new_samples_for_a_store_leaves_out_the_samples_it_holds(tmp_path: Path, run_cli) -> None:
    """--new-samples-for STORE (the pipeline's append_to): --out lists only the samples the
    store does not hold, in sheet order, with every metadata column of the sheet."""
    from bamstore.engine.build import build_store
    from bamstore.engine.extract import ExtractOptions

    store = tmp_path / "cohort.zarr"
    first = tmp_path / "first.csv"
    data = Path(__file__).resolve().parent / "data"
    first.write_text(f"sample,bam\nchip_a,{data / 'chip_a.bam'}\n")
    build_store([first], store, ExtractOptions(chunk_len=4096))
    out = tmp_path / "new.csv"
    done = run_cli("check-samplesheet", data / "samplesheet.csv", "--out", out,
                   "--new-samples-for", store)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 of the samples are already in" in done.stderr and "chip_a" in done.stderr
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["sample"] for r in rows] == ["chip_b", "atac_se", "rna_r"]
    assert list(rows[0]) == [*SHEET_COLUMNS, "condition", "replicate"]
    done = run_cli("check-samplesheet", data / "samplesheet.csv",
                   "--new-samples-for", tmp_path / "none.zarr")  # fmt: skip
    assert done.returncode == 2 and "none.zarr" in done.stderr
