"""`bamstore build`: the whole job on one machine equals extract + merge, with progress output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from support import TEST_DATA


def test_build_equals_extract_plus_merge(tmp_path: Path, run_cli, read_rows) -> None:
    out = tmp_path / "built.zarr"
    done = run_cli(
        "build",
        "--input",
        TEST_DATA / "samplesheet.csv",
        "--out",
        out,
        "--jobs",
        "2",
        "--chunk-len",
        "10000",
    )
    assert done.returncode == 0, done.stderr
    for name in ("chip_a", "chip_b", "atac_se", "rna_r"):
        assert f"{name}:" in done.stderr  # one progress line per sample
    assert "[4/4]" in done.stderr and "built" in done.stderr
    assert not (tmp_path / ".built.zarr.parts").exists()  # parts removed after publishing
    summary = json.loads(run_cli("inspect", out, "--json").stdout)
    assert [s["name"] for s in summary["samples"]] == ["chip_a", "chip_b", "atac_se", "rna_r"]
    assert summary["metadata_columns"]["replicate"] == ["1", "1", "2", "2"]
    assert [s["stranded"] for s in summary["samples"]] == ["", "", "", "R"]
    assert run_cli("validate", out).returncode == 0

    single = tmp_path / "rna_r.zarr"
    assert (
        run_cli(
            "extract",
            "--bam",
            TEST_DATA / "rna_r.bam",
            "--sample",
            "rna_r",
            "--out",
            single,
            "--stranded",
            "R",
            "--chunk-len",
            "10000",
        ).returncode
        == 0
    )
    for array in ("chr1", "chr1_fwd", "chr2_rev", "chrM"):
        np.testing.assert_array_equal(read_rows(out, array)[3], read_rows(single, array)[0])


def test_build_reports_every_bad_input_at_once(tmp_path: Path, run_cli) -> None:
    data = tmp_path / "data"
    shutil.copytree(TEST_DATA, data)
    (data / "chip_b.bam").write_bytes(b"not a bam at all")
    sheet = data / "samplesheet.csv"
    sheet.write_text(sheet.read_text().replace("atac_se.bam,", "atac_missing.bam,"))
    out = tmp_path / "x.zarr"
    done = run_cli("build", "--input", sheet, "--out", out)
    assert done.returncode == 2  # samplesheet problems: reported first, all at once
    assert done.stderr.splitlines() == [
        f"bamstore: error: {sheet}:4: bam file {data / 'atac_missing.bam'} does not exist; fix: "
        "check the path (relative paths are resolved against the samplesheet's folder)"
    ]
    assert not out.exists()
    sheet.write_text(sheet.read_text().replace("atac_missing.bam,", "atac_se.bam,"))
    done = run_cli("build", "--input", sheet, "--out", out)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0].startswith(
        f"bamstore: error: sample chip_b ({data / 'chip_b.bam'}): is "
    )
    assert "not a BAM" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not out.exists() and not (tmp_path / ".x.zarr.parts").exists()


def test_keep_parts(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "k.zarr"
    sheet = tmp_path / "one.csv"
    sheet.write_text(f"sample,bam\nchip_a,{TEST_DATA / 'chip_a.bam'}\n")
    assert run_cli("build", "--input", sheet, "--out", out, "--keep-parts").returncode == 0
    part = tmp_path / ".k.zarr.parts" / "chip_a.zarr"
    assert run_cli("validate", part).returncode == 0
