"""End-to-end: the pipeline run by the real Nextflow (`make nextflow`), local executor, the
tools of this checkout's venv on PATH (bin/bamstore runs the checkout's package).

What nf-test cannot express stays here: the store a run publishes equals the one `bamstore
build` makes (every array and attribute), across -resume runs, and when a store grows. The rest
of the pipeline's behaviour (reports, published files, stub runs, refusals, help) is in the
nf-test tests (tests/*.nf.test, modules/local/*/tests, workflows/tests: `make test-pipeline`).

Each Nextflow run costs a JVM start and a few tasks, so runs are shared: one project copy goes
through a first run and three `-resume` runs (nothing changed, one BAM changed, the package's
code changed).

Run with `make test-pipeline` (it first runs `make nextflow`; marked `pipeline`, so plain
`pytest` and `make test` leave these out). Without .tools/bin/nextflow
these tests are skipped, unless BAMSTORE_REQUIRE_NEXTFLOW=1 (set by `make test-pipeline`),
which makes a missing Nextflow a failure.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pysam
import pytest
import zarr
from nfrun import (
    NEXTFLOW,
    REPO,
    Run,
    assert_same_store,
    build,
    nextflow,
    nextflow_env,
    succeeded,
    task_dirs,
)

TEST_DATA = REPO / "tests" / "data"
HERE = Path(__file__).resolve().parent
SCHEMA = json.loads((REPO / "nextflow_schema.json").read_text())
VERSIONS = "bamstore_software_versions.yml"

pytestmark = pytest.mark.pipeline  # minutes: `make test-pipeline`, not `make test`

if not NEXTFLOW.exists():
    if os.environ.get("BAMSTORE_REQUIRE_NEXTFLOW"):
        pytest.fail(f"{NEXTFLOW} is missing: run `make nextflow`", pytrace=False)
    pytest.skip("Nextflow is not installed here (make nextflow)", allow_module_level=True)


# ------------------------------------------------------------------------------ helpers


def copy_project(target: Path) -> Path:
    """The pipeline's files (tracked, or new and not ignored) and the compiled extensions (the
    coverage kernel, the block reader), wherever they sit in the package."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    names = [f.decode() for f in files if f] + [
        str(p.relative_to(REPO)) for p in (REPO / "bamstore").rglob("*.so")
    ]
    for name in names:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def write_fasta(bam: Path, fasta: Path) -> Path:
    """A reference with the BAM's contigs (random bases: CRAM stores the differences)."""
    rng = np.random.default_rng(7)
    with pysam.AlignmentFile(str(bam)) as fh, fasta.open("w") as out:
        for name, length in zip(fh.references, fh.lengths, strict=True):
            bases = "".join(rng.choice(list("ACGT"), size=length))
            out.write(f">{name}\n")
            out.writelines(bases[i : i + 60] + "\n" for i in range(0, length, 60))
    pysam.faidx(str(fasta))
    return fasta


# ------------------------------------------------------------- the run a new user makes


def test_a_run_without_profile_equals_bamstore_build(tmp_path: Path) -> None:
    """`nextflow run <pipeline> --input sheet.csv --outdir results`: no profile, so the local
    executor with the caps it takes from this machine (the merge asks for 4 CPUs, the
    extractions for 12 GB); the store is build's, source paths included."""
    sheet = TEST_DATA / "samplesheet.csv"
    run = succeeded(nextflow(REPO, tmp_path / "launch", "--input", sheet))
    reference = build(sheet, tmp_path / "build.zarr", chunk_len=None)
    assert_same_store(run.outdir / "bamstore.zarr", reference)
    trace = run.trace()
    assert {row["status"] for row in trace} == {"COMPLETED"}
    assert all(int(row["cpus"]) <= (os.cpu_count() or 1) for row in trace), trace


def test_config_defaults_equal_the_schema() -> None:
    """nextflow.config's params, as Nextflow reads them, are the schema's params and defaults."""
    done = subprocess.run(
        [str(NEXTFLOW), "config", "-flat", str(REPO)],
        env=nextflow_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    config = {}
    for line in done.stdout.splitlines():
        if line.startswith("params."):
            name, _, value = line.removeprefix("params.").partition(" = ")
            config[name] = value
    declared = {}
    for group in SCHEMA["$defs"].values():
        declared.update(group["properties"])
    assert set(config) == set(declared)
    for name, spec in declared.items():
        if name == "trace_report_suffix":
            continue  # the run's start time
        expected = spec.get("default")
        shown = (
            "null"
            if expected is None
            else repr(expected).lower()
            if isinstance(expected, bool)
            else f"'{expected}'"
            if isinstance(expected, str)
            else str(expected)
        )
        assert config[name] == shown, (name, config[name], shown)


# ---------------------------------------------- one project through -resume, three times


@dataclass
class ResumeProject:
    project: Path
    data: Path
    sheet: Path
    launch: Path
    runs: list[Run]
    # suffix -> pipeline_info/bamstore_software_versions.yml of that run (the next one rewrites it)
    versions: dict[str, str] = field(default_factory=dict)

    def run(self, suffix: str, *args: object) -> Run:
        run = nextflow(
            self.project,
            self.launch,
            "-profile",
            "test",
            "--input",
            self.sheet,
            "--fasta",
            self.data / "ref.fa",
            *args,
            suffix=suffix,
        )
        self.runs.append(run)
        succeeded(run)
        self.versions[suffix] = (run.outdir / "pipeline_info" / VERSIONS).read_text()
        return run


@pytest.fixture(scope="module")
def resume(tmp_path_factory: pytest.TempPathFactory) -> ResumeProject:
    """A copy of the pipeline and of the test BAMs; a CRAM sample and number-like names."""
    root = tmp_path_factory.mktemp("resume")
    project = copy_project(root / "project")
    data = root / "data"
    data.mkdir()
    for name in ("chip_a.bam", "chip_a.bam.bai", "chip_b.bam", "chip_b.bam.bai", "rna_r.bam"):
        shutil.copy2(TEST_DATA / name, data / name)
    fasta = write_fasta(data / "chip_a.bam", data / "ref.fa")
    pysam.view(
        "-C",
        "-T",
        str(fasta),
        "-o",
        str(data / "chip_a.cram"),
        str(data / "chip_a.bam"),
        catch_stdout=False,
    )
    pysam.index(str(data / "chip_a.cram"))
    sheet = data / "samplesheet.csv"
    sheet.write_text(
        "sample,bam,bai,strandedness,condition\n"
        "chip_a,chip_a.bam,chip_a.bam.bai,,treated\n"
        "007,chip_b.bam,chip_b.bam.bai,,control\n"
        "cram_a,chip_a.cram,chip_a.cram.crai,,treated\n"
        "rna_r,rna_r.bam,,R,control\n"
    )
    state = ResumeProject(project, data, sheet, root / "launch", [])
    state.run("first")
    return state


RESUME_SAMPLES = ["chip_a", "007", "cram_a", "rna_r"]


def test_first_run_with_cram_and_number_like_names(resume: ResumeProject, tmp_path: Path) -> None:
    store = resume.runs[0].outdir / "bamstore.zarr"
    reference = build(resume.sheet, tmp_path / "build.zarr", "--reference", resume.data / "ref.fa")
    assert_same_store(store, reference)
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["sample_names"] == RESUME_SAMPLES  # "007" stays a name
    # the CRAM decodes to the BAM's coverage
    for contig in group.attrs["chromosomes"]:
        np.testing.assert_array_equal(group[contig][0], group[contig][2])
    # htslib cannot reach a reference server from any task
    cram_task = next(row for row in resume.runs[0].trace() if row["tag"] == "cram_a")
    wrapper = (Path(cram_task["workdir"]) / ".command.run").read_text()
    assert 'export REF_PATH="/dev/null/bamstore-no-reference-server/%s"' in wrapper
    assert 'export REF_CACHE="/dev/null/bamstore-no-reference-server/%s"' in wrapper
    assert "--reference ref.fa" in (Path(cram_task["workdir"]) / ".command.sh").read_text()


def test_resume_reruns_nothing(resume: ResumeProject) -> None:
    run = resume.run("unchanged", "-resume")
    assert set(run.statuses("BAMSTORE_EXTRACT").values()) == {"CACHED"}
    assert run.statuses("BAMSTORE_MERGE") == {"bamstore": "CACHED"}


def test_resume_reruns_only_the_changed_sample(resume: ResumeProject, tmp_path: Path) -> None:
    bam = resume.data / "chip_b.bam"
    half = tmp_path / "half.bam"
    pysam.view("-b", "-s", "0.5", "-o", str(half), str(bam), catch_stdout=False)
    shutil.move(half, bam)
    pysam.index(str(bam))
    run = resume.run("one_bam", "-resume")
    extract = run.statuses("BAMSTORE_EXTRACT")
    assert extract == {
        "chip_a": "CACHED",
        "007": "COMPLETED",
        "cram_a": "CACHED",
        "rna_r": "CACHED",
    }
    assert run.statuses("BAMSTORE_MERGE") == {"bamstore": "COMPLETED"}
    reference = build(resume.sheet, tmp_path / "build.zarr", "--reference", resume.data / "ref.fa")
    assert_same_store(run.outdir / "bamstore.zarr", reference)


@pytest.fixture(scope="module")
def code_changed(resume: ResumeProject) -> Run:
    """-resume after a change to a module of the package (not bin/bamstore), with chip_a's
    extraction killed once with exit 137 (tests/pipeline/inject_oom.config) and memory capped
    at 1.5 GB: one run for the two questions, since every extraction re-runs anyway."""
    module = resume.project / "bamstore" / "engine" / "extract.py"
    module.write_text(module.read_text() + "\n# a change to the package\n")
    return resume.run(
        "code", "-resume", "-c", HERE / "inject_oom.config", "--max_memory", "1536.MB"
    )


def test_resume_reruns_everything_after_a_change_to_the_package(
    resume: ResumeProject, code_changed: Run
) -> None:
    """Nextflow's own hash does not see the package: the digest input does."""
    assert set(code_changed.statuses("BAMSTORE_EXTRACT").values()) == {"COMPLETED"}
    assert code_changed.statuses("BAMSTORE_CHECKSAMPLESHEET") == {"samplesheet.csv": "COMPLETED"}
    before, after = (code_digest(resume.versions[run]) for run in ("first", "code"))
    assert before != after


def test_a_task_killed_for_memory_is_retried_with_more_up_to_the_cap(code_changed: Run) -> None:
    """Exit 137 on the first attempt: retried once with twice the memory, but no more than
    --max_memory (1 GB, then 1.5 GB rather than 2 GB); the run succeeds."""
    attempts = [row for row in code_changed.trace() if row["tag"] == "chip_a"]
    assert [(r["attempt"], r["status"], r["exit"]) for r in attempts] == [
        ("1", "FAILED", "137"),
        ("2", "COMPLETED", "0"),
    ]
    assert [r["memory"] for r in attempts] == ["1 GB", "1.5 GB"]
    assert "injected: killed" in (Path(attempts[0]["workdir"]) / ".command.log").read_text()
    store = zarr.open_group(str(code_changed.outdir / "bamstore.zarr"), mode="r")
    assert store.attrs["sample_names"] == RESUME_SAMPLES


def code_digest(versions: str) -> str:
    """The package digest the extractions ran with, from a run's software versions."""
    extract = versions.split("BAMSTORE_EXTRACT:", 1)[1].split("\n\n", 1)[0]
    return next(line.split()[-1] for line in extract.splitlines() if "bamstore_code:" in line)


# ------------------------------------------------------------------ growing a cohort


def store_files(store: Path) -> dict[str, tuple[int, int, float]]:
    """Every file of a store: relative path -> (inode, size, mtime)."""
    return {
        str(p.relative_to(store)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime)
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def test_append_to_extracts_only_new_samples_and_equals_a_fresh_build(tmp_path: Path) -> None:
    """--append_to OLD --shard true: a sharded cohort of two samples grows by the two the
    samplesheet adds; the published store equals `bamstore build --shard` of all four, its
    old rows are OLD's shard files (same inodes), and OLD itself is untouched."""
    first_two = tmp_path / "first_two.csv"
    with (TEST_DATA / "samplesheet.csv").open() as fh:
        lines = fh.read().splitlines()
    absolute = [
        ",".join(str(TEST_DATA / v) if v.endswith((".bam", ".bai")) else v for v in line.split(","))
        for line in lines[:3]  # the header, chip_a, chip_b
    ]
    first_two.write_text("\n".join(absolute) + "\n")
    old = build(first_two, tmp_path / "old.zarr", "--shard")
    before = store_files(old)
    run = succeeded(
        nextflow(
            REPO,
            tmp_path / "launch",
            "-profile",
            "test",
            "--append_to",
            old,
            "--shard",
            "true",
            "--store_name",
            "grown",
        )
    )
    assert sorted(run.statuses("BAMSTORE_EXTRACT")) == ["atac_se", "rna_r"]
    grown = run.outdir / "grown.zarr"
    assert_same_store(grown, build(TEST_DATA / "samplesheet.csv", tmp_path / "all.zarr", "--shard"))
    assert store_files(old) == before
    after = store_files(grown)
    for name, (inode, _, _) in before.items():
        if "/c/" in name and not name.startswith("metadata/"):  # a coverage shard of OLD
            assert after[name][0] == inode, name
    sheet = run.outdir / "pipeline_info" / "samplesheet.valid.csv"
    assert [row["sample"] for row in csv.DictReader(sheet.open())] == ["atac_se", "rna_r"]
    assert "2 of the samples are already in" in "".join(
        (Path(row["workdir"]) / ".command.err").read_text()
        for row in run.trace()
        if row["process"].endswith(":BAMSTORE_CHECKSAMPLESHEET")
    )


def test_append_to_refuses_to_publish_over_the_store_it_grows(tmp_path: Path) -> None:
    old = build(TEST_DATA / "samplesheet.csv", tmp_path / "launch" / "results" / "old.zarr")
    before = store_files(old)
    run = nextflow(
        REPO, tmp_path / "launch", "-profile", "test", "--append_to", old, "--store_name", "old"
    )
    assert run.returncode != 0
    assert f"--append_to {old} is the store this run would publish" in run.output, run.output
    assert not task_dirs(run.launch_dir)
    assert store_files(old) == before
