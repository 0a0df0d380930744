"""The samplesheet rules (bamstore/samplesheet.py): the one set that `bamstore build`,
`bamstore check-samplesheet` and the pipeline's BAMSTORE_CHECKSAMPLESHEET task apply.

One table of samplesheets, good and bad, through `read_samplesheets`; the normalised sheet that
`check-samplesheet --out` writes for the pipeline (absolute paths, row order, metadata), and
`--no-check-files`, through the real command line.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bamstore.build import read_samplesheets
from bamstore.errors import InputError

BIN = Path(__file__).resolve().parents[1] / "bin" / "bamstore"
FILES = ("a.bam", "a.bam.bai", "a.bam.csi", "b.bam", "sub/c.bam", "x.cram", "x.cram.crai")


@dataclass(frozen=True)
class Case:
    id: str
    text: str  # `{dir}` stands for the samplesheet's folder
    verdict: str  # "ok" | "bad"
    expect: str = ""  # a fragment of the error message
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
    Case("empty_file", "", "bad", "empty"),
    Case("blank_header", "\nsample,bam\na,a.bam\n", "bad", "empty"),
    Case("header_only", "sample,bam\n", "bad", "no samples"),
    Case("no_bam_column", "sample,bai\na,a.bam.bai\n", "bad", "lacks required column(s) bam"),
    Case("no_sample_column", "bam\na.bam\n", "bad", "lacks required column(s) sample"),
    Case("extension", "sample,bam\na,a.bam\n", "bad", "must end in .csv or .tsv", "s.txt"),
    Case("csv_with_tabs", "sample\tbam\na\ta.bam\n", "bad", "separated by tabs"),
    Case("tsv_with_commas", "sample,bam\na,a.bam\n", "bad", "separated by commas", "s.tsv"),
    Case("trailing_separator", "sample,bam,\na,a.bam,\n", "bad", "empty column name"),
    Case("repeated_column", "sample,bam,bam\na,a.bam,b.bam\n", "bad", "repeats column(s) bam"),
    Case("too_many_fields", "sample,bam\na,a.bam,extra\n", "bad", "has 3 fields"),
    Case("too_few_fields", "sample,bam,strandedness\na,a.bam\n", "bad", "has 2 fields"),
    Case("empty_sample", "sample,bam\n,a.bam\n", "bad", "sample name is empty"),
    Case("space_in_name", "sample,bam\na b,a.bam\n", "bad", "characters other than"),
    Case("slash_in_name", "sample,bam\na/b,a.bam\n", "bad", "cannot be used as a file name"),
    Case("dotdot_name", "sample,bam\n..,a.bam\n", "bad", "cannot be used as a file name"),
    Case("duplicate_sample", "sample,bam\na,a.bam\na,b.bam\n", "bad", "already on line 2"),
    Case("strandedness_unknown", "sample,bam,strandedness\na,a.bam,X\n", "bad", "'X'"),
    Case("strandedness_lowercase", "sample,bam,strandedness\na,a.bam,r\n", "bad", "'r'"),
    Case("empty_bam", "sample,bam\na,\n", "bad", "bam is empty"),
    Case("missing_bam", "sample,bam\na,nope.bam\n", "bad", "does not exist"),
    Case("missing_bai", "sample,bam,bai\na,a.bam,nope.bai\n", "bad", "does not exist"),
    Case("bam_is_a_folder", "sample,bam\na,f.bam\n", "bad", "is a directory", dirs=("f.bam",)),
    Case("relative_path_outside", "sample,bam\na,../a.bam\n", "bad", "does not exist"),
    # the file types the pipeline and build accept: .bam/.cram and the indexes htslib pairs
    Case("sam_file", "sample,bam\na,a.sam\n", "bad", "does not end in .bam or .cram"),
    Case("no_extension", "sample,bam\na,a\n", "bad", "does not end in .bam or .cram"),
    Case("crai_for_bam", "sample,bam,bai\na,a.bam,x.cram.crai\n", "bad", "expected .bai or .csi"),
    Case("bai_for_cram", "sample,bam,bai\nx,x.cram,a.bam.bai\n", "bad", "expected .crai"),
    Case("index_not_an_index", "sample,bam,bai\na,a.bam,b.bam\n", "bad", "not a .bam index"),
    Case("url", "sample,bam\na,s3://bucket/a.bam\n", "bad", "is a URL"),
    Case("url_index", "sample,bam,bai\na,a.bam,https://h/a.bam.bai\n", "bad", "is a URL"),
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


def bamstore(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BIN), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_samplesheet_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sheet = write_case(case, tmp_path / "sheets")
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the sheet, not the cwd
    try:
        read_samplesheets([sheet])
    except InputError as exc:
        assert case.verdict == "bad", str(exc)
        assert case.expect in str(exc)
    else:
        assert case.verdict == "ok"


def test_the_table_covers_both_verdicts() -> None:
    assert sum(c.verdict == "ok" for c in CASES) >= 10
    assert sum(c.verdict == "bad" for c in CASES) >= 25


def test_normalised_sheet(tmp_path: Path) -> None:
    """--out: absolute paths, row order, the reserved columns first, metadata kept verbatim."""
    sheet = write_case(CASES[1], tmp_path / "sheets")
    out = tmp_path / "valid.csv"
    done = bamstore("check-samplesheet", sheet, "--out", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["sample", "bam", "bai", "strandedness", "condition", "replicate"]
    folder = (tmp_path / "sheets").resolve()
    assert [r["sample"] for r in rows] == ["a", "b", "c", "d"]
    bams = ("a.bam", "b.bam", "sub/c.bam", "b.bam")
    assert [r["bam"] for r in rows] == [str(folder / name) for name in bams]
    assert [r["bai"] for r in rows] == [str(folder / "a.bam.bai"), "", "", ""]
    assert [r["strandedness"] for r in rows] == ["U", "F", "R", ""]
    assert [r["replicate"] for r in rows] == ["1", "1", "2", "2"]
    # the normalised sheet is a samplesheet in its own right, with the same content
    again = tmp_path / "again.csv"
    assert bamstore("check-samplesheet", out, "--out", again).returncode == 0
    assert again.read_text() == out.read_text()


def test_normalised_sheet_through_a_symlink(tmp_path: Path) -> None:
    """Nextflow stages the samplesheet as a symlink: paths resolve against its real folder."""
    sheet = write_case(CASES[0], tmp_path / "sheets")
    task = tmp_path / "task"
    task.mkdir()
    (task / "samplesheet.csv").symlink_to(sheet)
    done = bamstore("check-samplesheet", "samplesheet.csv", "--out", "v.csv", cwd=task)
    assert done.returncode == 0, done.stderr
    row = next(csv.DictReader((task / "v.csv").open()))
    assert row["bam"] == str((tmp_path / "sheets" / "a.bam").resolve())


def test_quoting_survives(tmp_path: Path) -> None:
    sheet = write_case(CASES[10], tmp_path / "sheets")  # quoted_metadata
    out = tmp_path / "v.csv"
    assert bamstore("check-samplesheet", sheet, "--out", out).returncode == 0
    assert next(csv.DictReader(out.open()))["note"] == "treated, 2 h"


def test_no_check_files_keeps_every_other_rule(tmp_path: Path) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_text("sample,bam,bai\na,gone.bam,\nb,gone.cram,gone.cram.crai\n")
    assert bamstore("check-samplesheet", sheet).returncode == 2
    out = tmp_path / "v.csv"
    done = bamstore("check-samplesheet", sheet, "--no-check-files", "--out", out)
    assert done.returncode == 0, done.stderr
    assert [r["bam"] for r in csv.DictReader(out.open())] == [
        str(tmp_path / "gone.bam"),
        str(tmp_path / "gone.cram"),
    ]
    sheet.write_text("sample,bam\na,gone.sam\na,gone.bam\n")
    done = bamstore("check-samplesheet", sheet, "--no-check-files", "--out", out)
    assert done.returncode == 2
    assert "does not end in .bam or .cram" in done.stderr and "already on line 2" in done.stderr


def test_nothing_written_on_error(tmp_path: Path) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_text("sample,bam\na,nope.bam\n")
    out = tmp_path / "v.csv"
    assert bamstore("check-samplesheet", sheet, "--out", out).returncode == 2
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".v.csv")]


def test_new_samples_for_a_store_leaves_out_the_samples_it_holds(tmp_path: Path) -> None:
    """--new-samples-for STORE (the pipeline's append_to): --out lists only the samples the
    store does not hold, in sheet order, with every metadata column of the sheet."""
    from bamstore.build import build_store
    from bamstore.extract import ExtractOptions

    store = tmp_path / "cohort.zarr"
    first = tmp_path / "first.csv"
    data = Path(__file__).resolve().parent / "data"
    first.write_text(f"sample,bam\nchip_a,{data / 'chip_a.bam'}\n")
    build_store([first], store, ExtractOptions(chunk_len=4096))
    out = tmp_path / "new.csv"
    done = bamstore("check-samplesheet", data / "samplesheet.csv", "--out", out,
                    "--new-samples-for", store)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 of the samples are already in" in done.stderr and "chip_a" in done.stderr
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["sample"] for r in rows] == ["chip_b", "atac_se", "rna_r"]
    assert list(rows[0]) == ["sample", "bam", "bai", "strandedness", "condition", "replicate"]
    done = bamstore("check-samplesheet", data / "samplesheet.csv",
                    "--new-samples-for", tmp_path / "none.zarr")  # fmt: skip
    assert done.returncode == 2 and "none.zarr" in done.stderr
