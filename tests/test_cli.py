"""The command line contract: --help/--version, exit codes 0/1/2, one-line errors, no traceback
unless --debug, nothing written at --out on failure. Run through bin/bamstore, as Nextflow does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import BIN, REPO, TEST_DATA

COMMANDS = ["extract", "merge", "build", "validate", "inspect", "check-samplesheet"]


def test_version_and_help(run_cli) -> None:
    from bamstore import __version__

    out = run_cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    top = run_cli("--help")
    assert top.returncode == 0
    for command in COMMANDS:
        assert command in top.stdout
        sub = run_cli(command, "--help")
        assert sub.returncode == 0 and "--debug" in sub.stdout and "--quiet" in sub.stdout


def test_bin_runs_the_checkout_package(tmp_path: Path) -> None:
    """bin/bamstore imports bamstore from the checkout it sits in, wherever it is called from."""
    code = (
        "import runpy,sys; sys.argv=['bamstore','--version']; "
        f"runpy.run_path({str(BIN)!r}, run_name='not_main'); import bamstore; "
        "print(bamstore.__file__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == str(REPO / "bamstore" / "__init__.py")


def test_extract_inspect_validate(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "chip_a.zarr"
    done = run_cli(
        "extract",
        "--bam",
        TEST_DATA / "chip_a.bam",
        "--sample",
        "chip_a",
        "--out",
        out,
        "--chunk-len",
        "8192",
        "--threads",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert "chip_a:" in done.stderr  # progress/summary on stderr, nothing on stdout
    assert done.stdout == ""
    summary = json.loads(run_cli("inspect", out, "--json").stdout)
    assert summary["n_samples"] == 1 and [c["name"] for c in summary["contigs"]] == [
        "chr1",
        "chr2",
        "chrM",
    ]
    assert summary["samples"][0]["total_reads"] > 0
    assert run_cli("validate", out).returncode == 0
    text = run_cli("inspect", out).stdout
    assert "library size" in text and "chip_a" in text


def test_existing_output_needs_overwrite(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "s.zarr"
    args = ["extract", "--bam", TEST_DATA / "chip_b.bam", "--sample", "s", "--out", out]
    assert run_cli(*args).returncode == 0
    again = run_cli(*args)
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "already exists" in again.stderr
    assert "--overwrite" in again.stderr
    assert run_cli(*args, "--overwrite").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bam", "missing.bam"], "does not exist"),
        (["--bam", TEST_DATA / "samplesheet.csv"], "not a BAM"),
        (["--bam", TEST_DATA / "chip_a.bam", "--chromosomes", "chrNope"], "chrNope"),
        (["--bam", TEST_DATA / "chip_a.bam", "--sample", "a/b"], "file name"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list, message: str, run_cli) -> None:
    out = tmp_path / "x.zarr"
    cmd = ["extract", "--sample", "s", "--out", out, *args]
    if "--sample" in args[2:]:
        cmd = ["extract", "--out", out, *args]
    done = run_cli(*cmd)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bamstore: error: ")
    assert message in lines[0] and "fix:" in lines[0]
    assert "Traceback" not in done.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_debug_shows_traceback(tmp_path: Path, run_cli) -> None:
    done = run_cli(
        "extract", "--bam", "missing.bam", "--sample", "s", "--out", tmp_path / "x.zarr", "--debug"
    )
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_usage_errors_exit_2(tmp_path: Path, run_cli) -> None:
    assert run_cli("extract").returncode == 2
    assert (
        run_cli(
            "extract",
            "--bam",
            "x",
            "--sample",
            "s",
            "--out",
            tmp_path / "o.zarr",
            "--exclude-flags",
            "lots",
        ).returncode
        == 2
    )
    assert run_cli("nonsense").returncode == 2


def test_out_must_end_in_zarr(tmp_path: Path, run_cli) -> None:
    done = run_cli(
        "extract", "--bam", TEST_DATA / "chip_a.bam", "--sample", "s", "--out", tmp_path / "x.store"
    )
    assert done.returncode == 2 and ".zarr" in done.stderr


def test_merge_parts_file_and_metadata(tmp_path: Path, run_cli) -> None:
    parts = []
    for name in ("chip_a", "chip_b"):
        out = tmp_path / f"{name}.zarr"
        assert (
            run_cli(
                "extract", "--bam", TEST_DATA / f"{name}.bam", "--sample", name, "--out", out
            ).returncode
            == 0
        )
        parts.append(out.name)
    (tmp_path / "parts.txt").write_text("\n".join(reversed(parts)) + "\n")
    done = run_cli(
        "merge",
        "--parts-file",
        tmp_path / "parts.txt",
        "--out",
        tmp_path / "m.zarr",
        "--metadata",
        TEST_DATA / "samplesheet.csv",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(run_cli("inspect", tmp_path / "m.zarr", "--json").stdout)
    assert [s["name"] for s in summary["samples"]] == ["chip_b", "chip_a"]
    assert summary["metadata_columns"]["condition"] == ["control", "treated"]


def test_validate_fails_with_exit_2(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "s.zarr"
    assert (
        run_cli(
            "extract",
            "--bam",
            TEST_DATA / "chip_a.bam",
            "--sample",
            "s",
            "--out",
            out,
            "--chunk-len",
            "4096",
        ).returncode
        == 0
    )
    next((out / "chr1" / "c" / "0").iterdir()).unlink()
    done = run_cli("validate", out)
    assert done.returncode == 2 and "'chr1'" in done.stderr and "not sound" in done.stderr


def test_check_samplesheet(tmp_path: Path, run_cli) -> None:
    ok = run_cli("check-samplesheet", TEST_DATA / "samplesheet.csv")
    assert ok.returncode == 0 and "4 samples" in ok.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("sample,bam,strandedness\na,nope.bam,X\na,nope2.bam,\n")
    done = run_cli("check-samplesheet", bad)
    assert done.returncode == 2
    for expected in ("bad.csv:2", "bad.csv:3", "nope.bam", "'X'", "already on line 2"):
        assert expected in done.stderr
