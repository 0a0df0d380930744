"""Module contract tests: each Nextflow module's script, run the way a task would run it.

Nextflow is not available here, so tests/nf_harness.py renders each module's `script:` (and
`stub:`) block with test values for its inputs, `task.cpus` and `task.ext.args` (evaluated from
the real conf/modules.config closures with the real nextflow.config params), runs it with bash in
a directory laid out like a task work dir (inputs as symlinks, bin/ on PATH), and resolves the
declared outputs. The outputs are then checked with bamstore itself (validate, inspect) or
samtools. A module whose command line, ext.args or outputs stop matching the CLI fails here.
What is not covered: Nextflow's own channel logic (workflows/*.nf), which nf-test covers in CI.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pysam
import pytest
import zarr
from click.testing import CliRunner

from bamstore.cli import main as cli_main

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nf_harness import REPO, VENV_BIN, read_process, run_task

DATA = REPO / "tests" / "data"
MODULES = sorted((REPO / "modules" / "local").glob("*/main.nf"))
BAMSTORE = [str(VENV_BIN / "python"), str(REPO / "bin" / "bamstore")]
SAMTOOLS = shutil.which("samtools")
needs_samtools = pytest.mark.skipif(SAMTOOLS is None, reason="samtools not installed")


def process(name: str):
    return read_process(REPO / "modules" / "local" / name / "main.nf")


def bamstore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BAMSTORE, *args], capture_output=True, text=True, timeout=120)


def inspect(store: Path) -> dict:
    result = bamstore("inspect", str(store), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_valid(store: Path) -> None:
    result = bamstore("validate", str(store))
    assert result.returncode == 0, result.stdout + result.stderr


def ok(result) -> None:
    assert result.returncode == 0, (
        f"exit {result.returncode}\n--- script\n{result.script}\n--- stderr\n{result.stderr}"
    )


def meta(sample: str, strandedness: str = "") -> dict:
    return {"id": sample, "strandedness": strandedness}


# --------------------------------------------------------------------------------------------
# Conventions every module follows


def test_every_module_is_covered_here():
    names = {p.parent.name for p in MODULES}
    assert names == {"samtools_index", "bamstore_extract", "bamstore_merge", "bamstore_inspect"}, (
        "a module was added or removed: give it a contract test in this file"
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.parent.name)
def test_module_conventions(path: Path):
    proc = read_process(path)
    manifest_version = re.search(
        r"^\s*version\s*=\s*'([^']+)'", (REPO / "nextflow.config").read_text(), re.M
    ).group(1)
    assert proc.name == path.parent.name.upper()
    assert re.search(r'^\s*tag "\$\{meta\.id\}"', proc.directives, re.M)
    assert re.search(r"^\s*label 'process_\w+'", proc.directives, re.M)
    assert 'conda "${projectDir}/containers/environment.yml"' in proc.directives
    image = re.search(r'^\s*container "([^"]+)"', proc.directives, re.M).group(1)
    assert image == f"ghcr.io/bamstore/bamstore:{manifest_version}", image
    text = path.read_text()
    assert "task.ext.when == null || task.ext.when" in text
    assert proc.stub is not None, "every module needs a stub: block"
    first_input = proc.inputs[0]
    assert first_input[0] == ("val", first_input[0][1]) and first_input[0][1].name == "meta"
    emits = [emit for _, emit in proc.outputs]
    assert "versions" in emits and all(emits), emits
    assert "params." not in text, "params reach a module only through ext.args or inputs"


# --------------------------------------------------------------------------------------------
# SAMTOOLS_INDEX


@needs_samtools
def test_samtools_index_makes_a_usable_index(tmp_path: Path):
    result = run_task(
        process("samtools_index"),
        tmp_path / "work",
        {"meta": meta("atac_se"), "bam": DATA / "atac_se.bam"},
    )
    ok(result)
    (index,) = result.outputs["index"]
    assert index.name == "atac_se.bam.bai"
    with pysam.AlignmentFile(str(DATA / "atac_se.bam"), index_filename=str(index)) as bam:
        assert sum(s.mapped for s in bam.get_index_statistics()) > 0
        assert next(bam.fetch("chr1"), None) is not None
    assert "samtools:" in result.outputs["versions"][0].read_text()


# --------------------------------------------------------------------------------------------
# BAMSTORE_EXTRACT


def run_extract(workdir: Path, sample: str, strandedness: str = "", *, bai=True, **kwargs):
    bam = DATA / f"{sample}.bam"
    return run_task(
        process("bamstore_extract"),
        workdir,
        {
            "meta": meta(sample, strandedness),
            "bam": bam,
            "bai": Path(f"{bam}.bai") if bai else [],
            "chromsizes": kwargs.pop("chromsizes", []),
        },
        **kwargs,
    )


def test_extract_writes_a_valid_per_sample_store(tmp_path: Path):
    result = run_extract(tmp_path / "work", "chip_a", cpus=3)
    ok(result)
    assert "--index chip_a.bam.bai" in result.script
    assert "--threads 3" in result.script
    (store,) = result.outputs["zarr"]
    assert store.name == "chip_a.zarr" and store.is_dir() and not store.is_symlink()
    assert_valid(store)
    summary = inspect(store)
    assert [s["name"] for s in summary["samples"]] == ["chip_a"]
    assert summary["chunk_len"] == 1048576  # the pipeline default, from nextflow.config
    assert summary["stranded_arrays"] is False
    versions = result.outputs["versions"][0].read_text()
    assert '"BAMSTORE_EXTRACT":' in versions and "bamstore: 0.1.0" in versions


def test_extract_strandedness_and_chromsizes_reach_the_cli(tmp_path: Path):
    sizes = tmp_path / "genome.sizes"
    sizes.write_text("chr1\t40000\nchr2\t25000\nchrM\t2000\n")
    result = run_extract(tmp_path / "work", "rna_r", "R", chromsizes=sizes)
    ok(result)
    assert "--stranded R" in result.script and "--chromsizes genome.sizes" in result.script
    summary = inspect(result.outputs["zarr"][0])
    assert summary["stranded_arrays"] is True
    assert summary["samples"][0]["stranded"] == "R"


def test_extract_params_reach_the_cli_through_ext_args(tmp_path: Path):
    params = {
        "min_mapq": 30,
        "exclude_flags": "0x4",
        "count_deletions": True,
        "chunk_len": 16384,
        "compression": "fast",
        "chromosomes": "chr1,chr2",
    }
    result = run_extract(tmp_path / "work", "chip_b", params=params)
    ok(result)
    summary = inspect(result.outputs["zarr"][0])
    coverage = summary["settings"]
    assert coverage["min_mapq"] == 30
    assert coverage["exclude_flags"] == 0x4
    assert coverage["count_deletions"] is True
    assert summary["chunk_len"] == 16384
    assert summary["compression"] == "fast"
    assert [c["name"] for c in summary["contigs"]] == ["chr1", "chr2"]


def test_extract_without_index_still_works(tmp_path: Path):
    """bai may be empty (a user's .csi, or the index step skipped): no --index is passed."""
    result = run_extract(tmp_path / "work", "atac_se", bai=False)
    ok(result)
    assert "--index" not in result.script
    assert_valid(result.outputs["zarr"][0])


def test_extract_bad_input_fails_the_task(tmp_path: Path):
    """A failing bamstore command fails the task (bash -e), so Nextflow sees the exit code."""
    result = run_extract(tmp_path / "work", "chip_a", params={"chromosomes": "chrNope"})
    assert result.returncode == 2, result.stderr


# --------------------------------------------------------------------------------------------
# BAMSTORE_MERGE


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parts")
    stores = {}
    for sample, strand in [("atac_se", ""), ("chip_a", ""), ("rna_r", "R")]:
        result = run_extract(root / sample, sample, strand, bai=sample != "atac_se")
        ok(result)
        stores[sample] = result.outputs["zarr"][0]
    return stores


def tree_state(path: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(path)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(path.rglob("*"))
    }


def test_merge_builds_a_new_store_in_the_given_order(tmp_path: Path, parts):
    order = ["atac_se", "chip_a", "rna_r"]  # sorted by sample, as the workflow sends them
    before = {name: tree_state(parts[name]) for name in order}
    result = run_task(
        process("bamstore_merge"),
        tmp_path / "work",
        {
            "meta": {"id": "bamstore", "samples": 3},
            "parts": [parts[name] for name in order],
            "samplesheet": DATA / "samplesheet.csv",
        },
        cpus=2,
    )
    ok(result)
    work = result.workdir
    # parts staged under unique names, listed in a manifest in staging order
    assert (work / "parts" / "1" / "atac_se.zarr").is_symlink()
    manifest = (work / "parts.txt").read_text().split()
    assert manifest == [f"parts/{i}/{name}.zarr" for i, name in enumerate(order, start=1)]
    assert "--parts-file parts.txt" in result.script
    assert "parts/1/" not in result.script, "parts must reach bamstore through the manifest"
    (store,) = result.outputs["zarr"]
    assert store == work / "bamstore.zarr" and store.is_dir() and not store.is_symlink()
    assert_valid(store)
    summary = inspect(store)
    assert [s["name"] for s in summary["samples"]] == order
    # the samplesheet's metadata columns, without bam/bai/strandedness
    assert summary["metadata_columns"] == {
        "condition": ["treated", "treated", "control"],
        "replicate": ["2", "1", "2"],
    }
    # the staged inputs are only read
    assert {name: tree_state(parts[name]) for name in order} == before


def test_merge_order_follows_staging_not_names(tmp_path: Path, parts):
    """Ten or more parts: parts/10 sorts after parts/9 (numeric), not after parts/1."""
    names = [f"s{i:02d}" for i in range(11)]
    copies = []
    (tmp_path / "src").mkdir()
    runner = CliRunner()
    for name in names:  # in-process: eleven interpreter start-ups would dominate this test
        dest = tmp_path / "src" / f"{name}.zarr"
        args = ["extract", "--bam", str(DATA / "chip_a.bam"), "--sample", name, "--out", str(dest)]
        made = runner.invoke(cli_main, [*args, "--quiet"])
        assert made.exit_code == 0, made.output
        copies.append(dest)
    copies.reverse()  # staging order deliberately not alphabetical
    result = run_task(
        process("bamstore_merge"),
        tmp_path / "work",
        {
            "meta": {"id": "many", "samples": len(copies)},
            "parts": copies,
            "samplesheet": DATA / "samplesheet.csv",
        },
    )
    ok(result)
    summary = inspect(result.outputs["zarr"][0])
    assert [s["name"] for s in summary["samples"]] == list(reversed(names))


def test_merge_refuses_mismatched_parts(tmp_path: Path, parts):
    other = tmp_path / "other.zarr"
    made = bamstore(
        "extract", "--bam", str(DATA / "chip_b.bam"), "--sample", "chip_b", "--out", str(other),
        "--chunk-len", "16384", "--quiet",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    result = run_task(
        process("bamstore_merge"),
        tmp_path / "work",
        {
            "meta": {"id": "bad", "samples": 2},
            "parts": [parts["chip_a"], other],
            "samplesheet": DATA / "samplesheet.csv",
        },
    )
    assert result.returncode == 2, result.stderr
    assert not (result.workdir / "bad.zarr").exists()


# --------------------------------------------------------------------------------------------
# BAMSTORE_INSPECT


def test_inspect_reports_the_store(tmp_path: Path, parts):
    result = run_task(
        process("bamstore_inspect"),
        tmp_path / "work",
        {"meta": {"id": "chip_a"}, "store": parts["chip_a"]},
    )
    ok(result)
    (summary_file,) = result.outputs["json"]
    assert summary_file.name == "chip_a.inspect.json"
    assert json.loads(summary_file.read_text()) == inspect(parts["chip_a"])
    report = json.loads(result.outputs["validation"][0].read_text())
    assert report["ok"] is True and report["quick"] is True  # ext.args '--quick'


# --------------------------------------------------------------------------------------------
# Stubs (nextflow run -stub): the declared outputs, and Zarr outputs that open as v3 groups

STUB_INPUTS = {
    "samtools_index": {"meta": meta("x"), "bam": DATA / "atac_se.bam"},
    "bamstore_extract": {
        "meta": meta("x", "R"),
        "bam": DATA / "rna_r.bam",
        "bai": DATA / "rna_r.bam.bai",
        "chromsizes": [],
    },
    "bamstore_merge": {
        "meta": {"id": "bamstore", "samples": 1},
        "parts": [DATA / "chip_a.bam"],  # a stub never reads its inputs
        "samplesheet": DATA / "samplesheet.csv",
    },
    "bamstore_inspect": {"meta": {"id": "bamstore"}, "store": DATA / "chip_a.bam"},
}


@pytest.mark.parametrize("name", sorted(STUB_INPUTS))
def test_stub(tmp_path: Path, name: str):
    if name == "samtools_index" and SAMTOOLS is None:
        pytest.skip("samtools not installed")
    result = run_task(process(name), tmp_path / "work", STUB_INPUTS[name], stub=True)
    ok(result)
    assert result.outputs["versions"][0].stat().st_size > 0
    for emitted in result.outputs.values():
        for path in emitted:
            if path.suffix == ".zarr":
                group = zarr.open_group(str(path), mode="r")
                assert group.metadata.zarr_format == 3
            elif path.suffix == ".json":
                json.loads(path.read_text())
