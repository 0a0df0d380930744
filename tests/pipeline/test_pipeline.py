"""End-to-end: the pipeline run by the real Nextflow (`make nextflow`), local executor, the
tools of this checkout's venv on PATH (bin/bamstore runs the checkout's package).

Each Nextflow run costs a JVM start and a few tasks, so runs are shared: one `-profile test`
run answers every question about a finished store; one project copy goes through a first run
and three `-resume` runs (nothing changed, one BAM changed, the package's code changed).

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
from dataclasses import dataclass
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
    bamstore,
    build,
    nextflow,
    nextflow_env,
    succeeded,
    task_dirs,
)

TEST_DATA = REPO / "tests" / "data"
HERE = Path(__file__).resolve().parent
SCHEMA = json.loads((REPO / "nextflow_schema.json").read_text())
TEST_SAMPLES = ["chip_a", "chip_b", "atac_se", "rna_r"]  # tests/data/samplesheet.csv, in order

pytestmark = pytest.mark.pipeline  # minutes: `make test-pipeline`, not `make test`

if not NEXTFLOW.exists():
    if os.environ.get("BAMSTORE_REQUIRE_NEXTFLOW"):
        pytest.fail(f"{NEXTFLOW} is missing: run `make nextflow`", pytrace=False)
    pytest.skip("Nextflow is not installed here (make nextflow)", allow_module_level=True)


# ------------------------------------------------------------------------------ helpers


def copy_project(target: Path) -> Path:
    """The pipeline's files (tracked, or new and not ignored) and the compiled kernel."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    names = [f.decode() for f in files if f] + [
        str(p.relative_to(REPO)) for p in (REPO / "bamstore").glob("_coverage*.so")
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


# ------------------------------------------------------------------- -profile test, once


@pytest.fixture(scope="module")
def test_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`nextflow run . -profile test` (count_deletions given as on a command line)."""
    launch = tmp_path_factory.mktemp("profile_test")
    return succeeded(nextflow(REPO, launch, "-profile", "test", "--count_deletions", "false"))


def test_store_equals_bamstore_build(test_run: Run, tmp_path: Path) -> None:
    store = test_run.outdir / "bamstore.zarr"
    reference = build(TEST_DATA / "samplesheet.csv", tmp_path / "build.zarr")
    assert_same_store(store, reference)
    attrs = zarr.open_group(str(store), mode="r").attrs
    assert attrs["sample_names"] == TEST_SAMPLES  # samplesheet row order, not sorted
    assert attrs["metadata_condition"] == ["treated", "control", "treated", "control"]
    assert attrs["bamstore"]["settings"]["count_deletions"] is False


def test_store_is_valid(test_run: Run) -> None:
    done = bamstore("validate", test_run.outdir / "bamstore.zarr")  # decodes every chunk
    assert done.returncode == 0, done.stderr
    report = json.loads((test_run.outdir / "reports" / "bamstore.validate.json").read_text())
    assert report["ok"] is True and report["samples"] == 4
    summary = json.loads((test_run.outdir / "reports" / "bamstore.inspect.json").read_text())
    assert [sample["name"] for sample in summary["samples"]] == TEST_SAMPLES


def test_run_starts_with_the_non_default_params(test_run: Run) -> None:
    summary = test_run.output.split("Parameters that differ from the defaults:", 1)[1]
    summary = summary.split("run name", 1)[0]
    given = {line.split()[0] for line in summary.strip().splitlines()}
    assert given == {"--input", "--outdir", "--chunk_len"}, summary
    params = json.loads(
        (test_run.outdir / "pipeline_info" / f"params_{test_run.suffix}.json").read_text()
    )
    assert params["count_deletions"] is False and params["chunk_len"] == 16384
    assert "Pipeline completed successfully" in test_run.output


def test_pipeline_info_and_published_files(test_run: Run) -> None:
    info = test_run.outdir / "pipeline_info"
    names = {p.name for p in info.iterdir()}
    for stem in ("execution_report", "execution_timeline", "pipeline_dag"):
        assert f"{stem}_{test_run.suffix}.html" in names
    assert {f"execution_trace_{test_run.suffix}.txt", f"params_{test_run.suffix}.json"} <= names
    versions = (info / "bamstore_software_versions.yml").read_text()
    for process in ("CHECKSAMPLESHEET", "EXTRACT", "MERGE", "VALIDATE", "INSPECT"):
        assert f"BAMSTORE_{process}" in versions
    assert "bamstore_code: " in versions and "END_VERSIONS" not in versions
    sheet = list(csv.DictReader((info / "samplesheet.valid.csv").open()))
    assert [row["sample"] for row in sheet] == TEST_SAMPLES
    assert all(Path(row["bam"]).is_absolute() for row in sheet)
    # one task per process and sample, each once (no retry)
    trace = test_run.trace()
    assert sorted(row["tag"] for row in trace if "EXTRACT" in row["process"]) == sorted(
        TEST_SAMPLES
    )
    assert all(row["status"] == "COMPLETED" and row["attempt"] == "1" for row in trace)


def test_store_is_published_by_hard_links(test_run: Run) -> None:
    """publish_dir_mode link: the published chunk files are the merge's files (no copy)."""
    merge = next(row for row in test_run.trace() if row["process"].endswith(":BAMSTORE_MERGE"))
    published = test_run.outdir / "bamstore.zarr" / "chr1" / "c" / "0" / "0"
    in_work = Path(merge["workdir"]) / "bamstore.zarr" / "chr1" / "c" / "0" / "0"
    assert published.stat().st_ino == in_work.stat().st_ino
    assert not published.is_symlink()


def test_extract_indexes_in_its_task_directory(test_run: Run) -> None:
    """atac_se has no index: extract builds one in scratch inside the task, then removes it."""
    extract = next(row for row in test_run.trace() if row["tag"] == "atac_se")
    workdir = Path(extract["workdir"])
    assert not list(workdir.glob("*.bai")) and not list(workdir.glob("bamstore-index-*"))
    log = (workdir / ".command.err").read_text()
    assert "no usable index; indexing into scratch directory" in log


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
        return succeeded(run)


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
    extraction killed once with exit 137 (tests/pipeline/inject_oom.config): one run for the
    two questions, since every extraction re-runs anyway."""
    module = resume.project / "bamstore" / "extract.py"
    module.write_text(module.read_text() + "\n# a change to the package\n")
    return resume.run("code", "-resume", "-c", HERE / "inject_oom.config")


def test_resume_reruns_everything_after_a_change_to_the_package(
    resume: ResumeProject, code_changed: Run
) -> None:
    """Nextflow's own hash does not see the package: the digest input does."""
    assert set(code_changed.statuses("BAMSTORE_EXTRACT").values()) == {"COMPLETED"}
    assert code_changed.statuses("BAMSTORE_CHECKSAMPLESHEET") == {"samplesheet.csv": "COMPLETED"}
    before, after = (code_digest(r, "rna_r") for r in (resume.runs[0], code_changed))
    assert before != after


def test_a_task_killed_for_memory_is_retried_with_more(code_changed: Run, tmp_path: Path) -> None:
    """Exit 137 on the first attempt: retried once with twice the memory; the run succeeds."""
    attempts = [row for row in code_changed.trace() if row["tag"] == "chip_a"]
    assert [(r["attempt"], r["status"], r["exit"]) for r in attempts] == [
        ("1", "FAILED", "137"),
        ("2", "COMPLETED", "0"),
    ]
    assert [r["memory"] for r in attempts] == ["1 GB", "2 GB"]
    assert "injected: killed" in (Path(attempts[0]["workdir"]) / ".command.log").read_text()
    store = zarr.open_group(str(code_changed.outdir / "bamstore.zarr"), mode="r")
    assert store.attrs["sample_names"] == RESUME_SAMPLES


def code_digest(run: Run, sample: str) -> str:
    """The package digest the extraction of `sample` ran with (its versions.yml)."""
    row = next(row for row in run.trace() if row["tag"] == sample)
    versions = (Path(row["workdir"]) / "versions.yml").read_text()
    return next(line.split()[-1] for line in versions.splitlines() if "bamstore_code" in line)


# ------------------------------------------------------------------- other single runs


def test_stub_run_with_untyped_command_line_values(tmp_path: Path) -> None:
    """-stub-run completes; with Nextflow's type detection off (as newer Nextflow does),
    'false' and '5' from the command line still become a boolean and an integer."""
    run = succeeded(
        nextflow(
            REPO,
            tmp_path,
            "-profile",
            "test",
            "-stub-run",
            "--count_deletions",
            "false",
            "--min_mapq",
            "5",
            env={"NXF_DISABLE_PARAMS_TYPE_DETECTION": "true"},
        )
    )
    params = json.loads((run.outdir / "pipeline_info" / f"params_{run.suffix}.json").read_text())
    assert params["count_deletions"] is False and params["min_mapq"] == 5
    assert (run.outdir / "bamstore.zarr" / "zarr.json").is_file()
    assert set(run.statuses("BAMSTORE_EXTRACT")) == set(TEST_SAMPLES)


def test_a_corrupt_bam_fails_the_run_with_one_line_and_publishes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy2(TEST_DATA / "chip_a.bam", data / "chip_a.bam")
    (data / "broken.bam").write_bytes((TEST_DATA / "chip_b.bam").read_bytes()[:100_000])
    sheet = data / "samplesheet.csv"
    sheet.write_text("sample,bam\nchip_a,chip_a.bam\nbroken,broken.bam\n")
    run = nextflow(REPO, tmp_path / "launch", "-profile", "test", "--input", sheet)
    assert run.returncode != 0
    expected = (
        "bamstore: error: broken.bam: is truncated (the BGZF end-of-file marker is missing); "
        "fix: re-create or re-download it"
    )
    assert expected in run.output, run.output
    assert "Traceback" not in run.output
    assert not (run.outdir / "bamstore.zarr").exists()
    assert not (run.outdir / "reports").exists()
    assert "Pipeline completed with errors" in run.output


def test_bad_params_are_refused_before_any_task(tmp_path: Path) -> None:
    run = nextflow(
        REPO,
        tmp_path,
        "-profile",
        "test",
        "--min_mapq",
        "300",
        "--compression",
        "zstd",
        "--count-deletions",
        "--chunk_len",
        "abc",
        "--store_name",
        "a/b",
        "--chromsizes",
        "missing.sizes",
        "--count_deletions",
        "maybe",
        "--min_mapqq",
        "3",
    )
    assert run.returncode != 0
    for line in (
        "--min_mapq: 300 is above the maximum, 255",
        "--compression: 'zstd' is not one of: default, fast, none",
        "--countDeletions: unknown parameter (did you mean --count_deletions?)",
        "--min_mapqq: unknown parameter (did you mean --min_mapq?)",
        "--chunk_len: must be a whole number, not 'abc'",
        "--store_name: 'a/b': ",
        "--chromsizes: file missing.sizes does not exist",
        "--count_deletions: must be true or false, not 'maybe'",
    ):
        assert line in run.output, (line, run.output)
    assert not task_dirs(tmp_path)


def test_slurm_params_are_refused_before_any_task(tmp_path: Path) -> None:
    """Two mistakes of the slurm profile, caught before anything is submitted: sbatch options
    given without '=' (Nextflow reads them as a flag and a parameter of their own), and an
    array size from a -c config, read after the profile built its job arrays."""
    config = tmp_path / "array_size.config"
    config.write_text("params.slurm_array_size = 7\n")
    run = nextflow(
        REPO,
        tmp_path,
        "-profile",
        "test,slurm",
        "-c",
        config,
        "--slurm_options",
        "--qos=long",
    )
    assert run.returncode != 0
    for line in (
        "--slurm_options: needs a value: write --slurm_options='--qos=long --constraint=skylake'",
        "--qos: unknown parameter",
        "--slurm_array_size: 7 was set after the slurm profile built its job arrays from 100",
    ):
        assert line in run.output, (line, run.output)
    assert not task_dirs(tmp_path)


def test_help_lists_every_param_with_its_description(tmp_path: Path) -> None:
    run = succeeded(nextflow(REPO, tmp_path, "--help"))
    for group in SCHEMA["$defs"].values():
        assert f"{group['title']}:" in run.output
        for name, spec in group["properties"].items():
            assert f"--{name}" in run.output and spec["description"] in run.output, name
    assert not task_dirs(tmp_path)


def test_version(tmp_path: Path) -> None:
    from bamstore import __version__

    run = succeeded(nextflow(REPO, tmp_path, "--version"))
    assert f"bamstore {__version__}" in run.output


def test_a_bad_samplesheet_stops_the_run_before_any_extraction(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy2(TEST_DATA / "chip_a.bam", data / "a.bam")
    sheet = data / "samplesheet.csv"
    sheet.write_text("sample,bam,strandedness\na,a.bam,X\na,a.sam,\n")
    run = nextflow(REPO, tmp_path / "launch", "-profile", "test", "--input", sheet)
    assert run.returncode != 0
    for fragment in ("samplesheet.csv:2: strandedness 'X'", "already on line 2", "a.sam"):
        assert fragment in run.output, run.output
    assert set(run.statuses("BAMSTORE_CHECKSAMPLESHEET").values()) == {"FAILED"}
    assert not run.statuses("BAMSTORE_EXTRACT")


def test_a_missing_bam_stops_the_run_before_any_extraction(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy2(TEST_DATA / "chip_a.bam", data / "a.bam")
    sheet = data / "samplesheet.csv"
    sheet.write_text("sample,bam\na,a.bam\nb,gone.bam\n")
    run = nextflow(REPO, tmp_path / "launch", "-profile", "test", "--input", sheet)
    assert run.returncode != 0
    assert f"sample b: bam file {data / 'gone.bam'} does not exist" in run.output, run.output
    assert not run.statuses("BAMSTORE_EXTRACT")


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
