"""Names that come from users and headers: contig names used as paths, strand-array
collisions, what `--overwrite` may replace, missing output folders, contigs in another order,
and samplesheet checks that must equal build's. Each test reproduces a report as a user would
meet it, through the CLI (or the Python API where the report was about it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bamfactory import Read, write_bam
from support import error_lines, leftovers, write_samplesheet

from bamstore.api import BamStore
from bamstore.errors import InputError

EXCLUDE_FIX = (
    "fix: leave it out with --chromosomes (e.g. --chromosomes primary, or a comma-separated "
    "list of the contigs to keep)"
)


def _bam(path: Path, contigs: list[tuple[str, int]]) -> Path:
    """One read on every contig (so each would get chunk files)."""
    return write_bam(path, [Read(name, 5, "20M") for name, _ in contigs], contigs)


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------- contig names


@pytest.mark.parametrize(
    ("contig", "problem"),
    [
        ("..", "'..' is not a folder inside the store"),
        ("a/b", "its name contains a path separator"),
        ("metadata", "'metadata' is the name of a member of the store itself"),
        ("zarr.json", "'zarr.json' is the name of a member of the store itself"),
        ("c", "'c' is the name of a member of the store itself"),
        ("__x", "names starting with '__' are reserved by Zarr"),
    ],
)
def test_header_contig_names_are_never_paths(tmp_path: Path, run_cli, contig: str, problem: str):
    """A header contig named `..` once made `extract --chromosomes all` write zarr.json and c/
    beside the store and exit 0; `a/b` made a nested group. Now: exit 2, naming the contig and
    how to leave it out, and nothing written anywhere."""
    work = tmp_path / "work"
    work.mkdir()
    bam = _bam(work / "in.bam", [("chr1", 500), (contig, 300)])
    before = _tree(tmp_path)
    out = work / "out" / "s.zarr"
    result = run_cli("extract", "--bam", bam, "--sample", "s", "--out", out, "--chromosomes", "all")
    assert result.returncode == 2, result.stderr
    assert error_lines(result.stderr) == [
        f"bamstore: error: {bam}: contig {contig!r} from the BAM header cannot be stored: "
        f"{problem}; {EXCLUDE_FIX}"
    ]
    assert "Traceback" not in result.stderr
    assert _tree(tmp_path) == before  # nothing beside, inside or above the output
    kept = run_cli("extract", "--bam", bam, "--sample", "s", "--out", out, "--chromosomes", "chr1")
    assert kept.returncode == 0, kept.stderr  # the fix works


def test_unsafe_contig_in_a_chromsizes_file_is_named(tmp_path: Path, run_cli):
    bam = _bam(tmp_path / "in.bam", [("chr1", 500), ("a/b", 300)])
    sizes = tmp_path / "genome.sizes"
    sizes.write_text("chr1\t500\na/b\t300\n")
    out = tmp_path / "s.zarr"
    result = run_cli("extract", "--bam", bam, "--sample", "s", "--out", out,
                     "--chromsizes", sizes, "--chromosomes", "all")  # fmt: skip
    assert error_lines(result.stderr) == [
        f"bamstore: error: {bam}: contig 'a/b' from the chromsizes file {sizes} cannot be "
        f"stored: its name contains a path separator; {EXCLUDE_FIX}"
    ]
    assert result.returncode == 2 and not out.exists()


def test_contig_colliding_with_a_strand_array_is_refused_before_writing(tmp_path: Path, run_cli):
    """`chr1` and `chr1_fwd` with --stranded once wrote two arrays to one path (validate then
    reported corruption)."""
    bam = _bam(tmp_path / "in.bam", [("chr1", 500), ("chr1_fwd", 300)])
    out = tmp_path / "s.zarr"
    args = ["extract", "--bam", bam, "--sample", "s", "--out", out, "--chromosomes", "all"]
    result = run_cli(*args, "--stranded", "U")
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        f"bamstore: error: {bam}: contig 'chr1_fwd' from the BAM header cannot be stored: its "
        f"array would be the strand array 'chr1_fwd' of contig 'chr1'; {EXCLUDE_FIX}"
    ]
    assert not out.exists() and leftovers(tmp_path, out.name) == []
    unstranded = run_cli(*args)  # without strand arrays the two names do not meet
    assert unstranded.returncode == 0, unstranded.stderr
    assert run_cli("validate", out).returncode == 0


def test_api_refuses_unsafe_contig_names(tmp_path: Path):
    with pytest.raises(ValueError, match=r"contig '\.\.' cannot be stored: '\.\.' is not a folder"):
        BamStore(tmp_path / "s.zarr", {"chr1": 100, "..": 50}, ["a"])
    with pytest.raises(ValueError, match="would be the strand array 'chr1_rev' of contig 'chr1'"):
        BamStore(tmp_path / "s.zarr", {"chr1": 100, "chr1_rev": 50}, ["a"], stranded="U")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- --overwrite


def test_overwrite_refuses_a_folder_that_is_not_a_store(tmp_path: Path, run_cli):
    """`--out imp.zarr --overwrite` once deleted an ordinary folder holding a user's file."""
    bam = _bam(tmp_path / "in.bam", [("chr1", 500)])
    folder = tmp_path / "imp.zarr"
    folder.mkdir()
    (folder / "thesis.docx").write_text("years of work")
    args = ["--bam", bam, "--sample", "s", "--out", folder, "--overwrite"]
    result = run_cli("extract", *args)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        f"bamstore: error: {folder}: exists and is not a store written by bamstore, so "
        "--overwrite does not replace it; fix: choose another --out, or move it away yourself"
    ]
    assert (folder / "thesis.docx").read_text() == "years of work"
    assert leftovers(tmp_path, folder.name) == []
    a_file = tmp_path / "notes.zarr"
    a_file.write_text("mine")
    result = run_cli("extract", "--bam", bam, "--sample", "s", "--out", a_file, "--overwrite")
    assert result.returncode == 2 and "is not a store written by bamstore" in result.stderr
    assert a_file.read_text() == "mine"


@pytest.mark.parametrize("command", ["merge", "build"])
def test_overwrite_refuses_a_folder_for_merge_and_build(tmp_path: Path, run_cli, command: str):
    bam = _bam(tmp_path / "in.bam", [("chr1", 500)])
    part = tmp_path / "p.zarr"
    assert run_cli("extract", "--bam", bam, "--sample", "p", "--out", part).returncode == 0
    folder = tmp_path / "imp.zarr"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    if command == "merge":
        result = run_cli("merge", part, "--out", folder, "--overwrite")
    else:
        sheet = write_samplesheet(tmp_path / "s.csv", [("p", bam)])
        result = run_cli("build", "--input", sheet, "--out", folder, "--overwrite")
    assert result.returncode == 2
    assert error_lines(result.stderr)[0].startswith(
        f"bamstore: error: {folder}: exists and is not a store written by bamstore"
    )
    assert _tree(folder) == ["keep.txt"]


def test_overwrite_still_replaces_a_store(tmp_path: Path, run_cli):
    bam = _bam(tmp_path / "in.bam", [("chr1", 500)])
    out = tmp_path / "s.zarr"
    args = ["extract", "--bam", bam, "--sample", "s", "--out", out]
    assert run_cli(*args).returncode == 0
    assert run_cli(*args, "--overwrite").returncode == 0
    assert run_cli("validate", out).returncode == 0


def test_api_overwrite_refuses_a_folder_that_is_not_a_store(tmp_path: Path):
    folder = tmp_path / "imp.zarr"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="is not a store written by bamstore"):
        BamStore(folder, {"chr1": 100}, ["a"])  # QuantNado's default is overwrite=True
    assert _tree(folder) == ["keep.txt"]


# ---------------------------------------------------------------------------- output folders


@pytest.mark.parametrize("command", ["extract", "build"])
def test_missing_parent_folders_of_out_are_created(tmp_path: Path, run_cli, command: str):
    bam = _bam(tmp_path / "in.bam", [("chr1", 500)])
    out = tmp_path / "results" / "today" / "s.zarr"
    if command == "extract":
        result = run_cli("extract", "--bam", bam, "--sample", "s", "--out", out)
    else:
        sheet = write_samplesheet(tmp_path / "s.csv", [("s", bam)])
        result = run_cli("build", "--input", sheet, "--out", out)
    assert result.returncode == 0, result.stderr
    assert run_cli("validate", out).returncode == 0


def test_created_parent_folders_are_removed_when_the_run_fails(tmp_path: Path, run_cli):
    bad = tmp_path / "bad.bam"
    bad.write_bytes(b"not a bam")
    out = tmp_path / "results" / "s.zarr"
    result = run_cli("extract", "--bam", bad, "--sample", "s", "--out", out)
    assert result.returncode == 2 and not (tmp_path / "results").exists()


def test_sample_name_rule_says_ascii(tmp_path: Path, run_cli):
    bam = _bam(tmp_path / "in.bam", [("chr1", 500)])
    result = run_cli("extract", "--bam", bam, "--sample", "Éa", "--out", tmp_path / "s.zarr")
    assert error_lines(result.stderr) == [
        f"bamstore: error: {bam}: sample name 'Éa' has characters other than ASCII letters, "
        "digits and ._+- (it is used as a file name); fix: use ASCII letters, digits and ._+- "
        "only"
    ]


# ---------------------------------------------------------------------------- contig order


def test_same_contigs_in_another_order_build_in_the_first_samples_order(
    tmp_path: Path, run_cli, read_rows
):
    """Two headers listing the same contigs and lengths in another order were refused by build
    with the default selection; the store now follows the first sample's order, and says so."""
    contigs = [("chr1", 900), ("chr2", 700), ("chrX", 500)]
    reads = [Read(n, p, "30M") for n, _ in contigs for p in (0, 100, 400)]
    a = write_bam(tmp_path / "a.bam", reads, contigs)
    b = write_bam(tmp_path / "b.bam", reads[3:] + reads[:3], [contigs[1], contigs[2], contigs[0]])
    sheet = write_samplesheet(tmp_path / "s.csv", [("a", a), ("b", b)])
    out = tmp_path / "ab.zarr"
    result = run_cli("build", "--input", sheet, "--out", out)
    assert result.returncode == 0, result.stderr
    assert (
        f"sample b ({b}) lists its contigs in another order than sample a ({a}); the store "
        "follows sample a's order" in result.stderr
    )
    summary = json.loads(run_cli("inspect", out, "--json").stdout)
    assert [c["name"] for c in summary["contigs"]] == ["chr1", "chr2", "chrX"]
    for name, _ in contigs:
        rows = read_rows(out, name)
        np.testing.assert_array_equal(rows[0], rows[1])
    assert run_cli("validate", out).returncode == 0
    merged = tmp_path / "m.zarr"
    parts = []
    for sample, bam in (("b", b), ("a", a)):
        part = tmp_path / f"{sample}.zarr"
        assert run_cli("extract", "--bam", bam, "--sample", sample, "--out", part).returncode == 0
        parts.append(part)
    result = run_cli("merge", *parts, "--out", merged)
    assert result.returncode == 0, result.stderr
    assert (
        f"{parts[1]} lists its contigs in another order than {parts[0]}; the store follows "
        f"{parts[0].name}'s order" in result.stderr
    )
    summary = json.loads(run_cli("inspect", merged, "--json").stdout)
    assert [c["name"] for c in summary["contigs"]] == ["chr2", "chrX", "chr1"]
    assert run_cli("validate", merged).returncode == 0


# ---------------------------------------------------------------------------- samplesheet checks


def test_check_samplesheet_runs_the_checks_build_runs(tmp_path: Path, run_cli):
    """check-samplesheet said OK for a sheet that build then refused (metadata `sample_id`)."""
    bam = _bam(tmp_path / "in.bam", [("chr1", 500)])
    sheet = write_samplesheet(
        tmp_path / "s.csv", [("a", bam, "patient7", "yes")], header="sample,bam,sample_id,completed"
    )
    expected = [
        "bamstore: error: 2 problem(s) in the samplesheet(s)",
        f"bamstore: error: {sheet}: metadata column 'sample_id' differs from the sample names; "
        "QuantNado would use it to relabel the samples; fix: rename the column (e.g. to "
        "original_sample_id)",
        f"bamstore: error: {sheet}: metadata column 'completed' would be hidden: readers show "
        "the store's own 'completed' under that name; fix: rename the column (e.g. to "
        "completed_1)",
    ]
    checked = run_cli("check-samplesheet", sheet)
    assert checked.returncode == 2 and error_lines(checked.stderr) == expected
    out = tmp_path / "s.zarr"
    built = run_cli("build", "--input", sheet, "--out", out)
    assert built.returncode == 2 and error_lines(built.stderr) == expected
    assert not out.exists()
