"""The command line contract: --help/--version, exit codes 0/1/2, one-line errors, no traceback
unless --debug, nothing written at --out on failure. Run through bin/bamstore, as Nextflow does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import BIN, REPO, TEST_DATA, store_attrs

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


def test_the_command_line_starts_no_blas_threads() -> None:
    """numpy's OpenBLAS starts a spinning thread per extra core unless told otherwise; the CLI
    never calls BLAS, so importing it leaves one thread (unless the user set the variable)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    count = "import os, {}; print(len(os.listdir('/proc/self/task')))"
    cli = subprocess.run(
        [sys.executable, "-c", count.format("bamstore.cli")], env=env, text=True,
        capture_output=True, check=True, cwd=REPO,
    )  # fmt: skip
    assert cli.stdout.split() == ["1"]
    if (os.cpu_count() or 1) > 1:  # the check can fail: numpy alone starts BLAS threads
        bare = subprocess.run(
            [sys.executable, "-c", count.format("numpy")], env=env, text=True,
            capture_output=True, check=True,
        )  # fmt: skip
        assert int(bare.stdout) > 1


def test_exclude_flags_help_says_the_value_replaces_the_default(run_cli) -> None:
    """`--exclude-flags F` replaces the default filter (samtools' -G adds to it); the oracle in
    bamfactory.samtools_depth runs `samtools depth -g 0x704 -G F`, the equivalence stated here."""
    for command in ("extract", "build"):
        text = " ".join(run_cli(command, "--help").stdout.split())
        assert "The value replaces the default 0x704" in text
        assert "samtools depth -g 0x704 -G F" in text
        assert "Unmapped reads (0x4) never count." in text


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
    assert again.stderr == (
        f"bamstore: error: {out}: already exists; fix: pass --overwrite to replace it, or "
        "choose another --out\n"
    )
    assert run_cli(*args, "--overwrite").returncode == 0


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--bam", "missing.bam"],
            "missing.bam: does not exist; fix: check the path",
        ),
        (
            ["--bam", TEST_DATA / "samplesheet.csv"],
            f"{TEST_DATA / 'samplesheet.csv'}: is not a BAM or CRAM file (unrecognised content); "
            "fix: ",
        ),
        (
            ["--bam", TEST_DATA / "chip_a.bam", "--chromosomes", "chrNope"],
            f"{TEST_DATA / 'chip_a.bam'}: contig(s) chrNope from --chromosomes are not in the "
            "BAM header; fix: ",
        ),
        (
            ["--bam", TEST_DATA / "chip_a.bam", "--sample", "a/b"],
            f"{TEST_DATA / 'chip_a.bam'}: sample name 'a/b' has characters other than ASCII "
            "letters, digits and ._+- (it is used as a file name); fix: use ASCII letters, "
            "digits and ._+- only",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list, line: str, run_cli) -> None:
    out = tmp_path / "x.zarr"
    cmd = ["extract", "--sample", "s", "--out", out, *args]
    if "--sample" in args[2:]:
        cmd = ["extract", "--out", out, *args]
    done = run_cli(*cmd)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bamstore: error: {line}"), lines
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_debug_shows_traceback(tmp_path: Path, run_cli) -> None:
    done = run_cli(
        "extract", "--bam", "missing.bam", "--sample", "s", "--out", tmp_path / "x.zarr", "--debug"
    )
    assert done.returncode == 1 and done.stderr.startswith("Traceback")
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("bamstore.errors.InputError: missing.bam: does not exist; fix: ")
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["extract"], "Error: Missing option '--bam'."),
        (
            [
                "extract",
                "--bam",
                "x",
                "--sample",
                "s",
                "--out",
                "o.zarr",
                "--exclude-flags",
                "lots",
            ],
            "Error: Invalid value for '--exclude-flags': 'lots' is not a number (use e.g. 0x704 "
            "or 1796)",
        ),
        (["nonsense"], "Error: No such command 'nonsense'."),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, run_cli, args: list[str], error: str) -> None:
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == error
    assert list(tmp_path.iterdir()) == []


def test_out_must_end_in_zarr(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "x.store"
    done = run_cli("extract", "--bam", TEST_DATA / "chip_a.bam", "--sample", "s", "--out", out)
    assert done.returncode == 2 and done.stderr == (
        f"bamstore: error: {out}: output name must end in .zarr; fix: use e.g. --out x.zarr "
        "(QuantNado opens only *.zarr stores)\n"
    )


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
    row = out / "chr1" / "c" / "0"
    first, second = sorted(row.iterdir(), key=lambda p: int(p.name))[:2]
    first.write_bytes(second.read_bytes())  # a chunk swapped for another: present, but wrong
    done = run_cli("validate", out)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 4, lines
    assert lines[0].startswith(f"{out}: sample 's', array 'chr1': chunk files do not match")
    assert lines[1].startswith(f"{out}: sample 's', array 'chr1': coverage sums to ")
    assert lines[2].startswith(f"{out}: sample 's': metadata/sparsity is ")
    first.unlink()  # a chunk the record lists is gone: named as such, before any decoding
    done = run_cli("validate", out, "--quick")
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        f"{out}: sample 's', array 'chr1': chunk file(s) chr1/c/0/{first.name} missing: the "
        "record lists them"
    )
    assert lines[3] == (
        f"bamstore: error: {out}: is not sound: 3 problem(s) found; fix: rebuild the store "
        "(or the samples named above)"
    )


def test_check_samplesheet(tmp_path: Path, run_cli) -> None:
    ok = run_cli("check-samplesheet", TEST_DATA / "samplesheet.csv")
    assert ok.returncode == 0
    assert ok.stdout == ("OK: 4 samples (1 stranded), metadata columns: condition, replicate\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("sample,bam,strandedness\na,nope.bam,X\na,nope2.bam,\n")
    done = run_cli("check-samplesheet", bad)
    assert done.returncode == 2
    missing = "does not exist; fix: check the path (relative paths are resolved against the "
    assert done.stderr.splitlines() == [
        "bamstore: error: 4 problem(s) in the samplesheet(s)",
        f"bamstore: error: {bad}:2: strandedness 'X' is not U, F, R or empty; fix: U: split by "
        "alignment strand; F/R: read 1 on the forward/reverse transcript strand; empty: not "
        "stranded",
        f"bamstore: error: {bad}:2: bam file {tmp_path / 'nope.bam'} {missing}samplesheet's "
        "folder)",
        f"bamstore: error: {bad}:3: sample 'a' is already on line 2; fix: give every sample a "
        "unique name",
        f"bamstore: error: {bad}:3: bam file {tmp_path / 'nope2.bam'} {missing}samplesheet's "
        "folder)",
    ]


def test_extract_records_the_source_path_given(tmp_path: Path, run_cli) -> None:
    """--source-path names the original of a staged copy (a symlink, as Nextflow stages it) in
    the sample's record; size, mtime and header are still read from --bam (the real file)."""
    original = TEST_DATA / "chip_a.bam"
    (tmp_path / "staged.bam").symlink_to(original)
    out = tmp_path / "s.zarr"
    args = ["extract", "--bam", tmp_path / "staged.bam", "--sample", "s", "--out", out]
    done = run_cli(*args, "--source-path", original)
    assert done.returncode == 0, done.stderr
    source = store_attrs(out)["bamstore"]["samples"]["s"]["source"]
    assert source["path"] == str(original)
    assert (source["size"], source["mtime_ns"]) == (
        original.stat().st_size,
        original.stat().st_mtime_ns,
    )
    plain = tmp_path / "plain.zarr"
    assert run_cli(*args[:-1], plain).returncode == 0
    plain_source = store_attrs(plain)["bamstore"]["samples"]["s"]["source"]
    assert plain_source == {**source, "path": str(tmp_path / "staged.bam")}
