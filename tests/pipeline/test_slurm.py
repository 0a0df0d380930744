"""The pipeline with `-profile test,slurm` on a real SLURM cluster: job arrays, retry with more
memory, scancel, resume, and the store it publishes.

A one-node cluster from Debian's slurm-wlm and munge is started for the session
(scripts/slurm-up.sh, left running if it was already up). The pipeline is this checkout's
main.nf, its tools from the venv (as in test_pipeline.py), on the test BAMs plus a fifth sample,
so that arrays of 2 leave one extraction over.

It runs twice, with job arrays of 2 and without, giving partition, account and sbatch options
on the command line and in a -c config respectively; SLURM must have recorded them on every job.
Each run injects faults (slurm_faults.config), and the tests check both Nextflow's record of
every attempt (`nextflow log`) and SLURM's (the jobcomp file):
- atac_se's first attempt exits 137: resubmitted with twice the memory;
- chip_a's first attempt waits in its job until the test cancels it with scancel: retried;
- without arrays, another sample's job is cancelled while still pending: it leaves no exit
  status, and is retried after the executor's exitReadTimeout.
The store of each run must equal `bamstore build` on the same samplesheet and pass `bamstore
validate`. Then the same command with -resume must submit no job at all.

A third run is the one a user makes: `-profile slurm` alone, no test profile and no caps. The
profile reads the partition's largest node with sinfo and caps every request there (the merge
asks for 4 CPUs, the node has 2): the run must finish, every job within the node, and its store
equal `bamstore build`'s.

Run with `make test-slurm` (needs root, slurm-wlm, munge, and Nextflow: `make nextflow`).
"""

from __future__ import annotations

import csv
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nfrun import NEXTFLOW, REPO, assert_same_store, bamstore, build, nextflow, nextflow_env
from slurm_cluster import (
    QueuedJob,
    SlurmCluster,
    SlurmJob,
    TaskAttempt,
    cluster_is_up,
    nextflow_tasks,
    start_cluster,
    stop_cluster,
)

pytestmark = pytest.mark.slurm

HERE = Path(__file__).resolve().parent
TEST_DATA = REPO / "tests" / "data"
# tests/data/samplesheet.csv, then chip_b2 (a copy of chip_b.bam, without an index)
SAMPLES = ["chip_a", "chip_b", "atac_se", "rna_r", "chip_b2"]
PROCESSES = {
    "BAMSTORE_CHECKSAMPLESHEET",
    "BAMSTORE_EXTRACT",
    "BAMSTORE_MERGE",
    "BAMSTORE_VALIDATE",
    "BAMSTORE_INSPECT",
}
ARRAY_SIZE = 2
HELD = "chip_a"  # its first attempt waits in its job until the test cancels it
OOM_ONCE = "atac_se"  # its first attempt exits 137
HELD_FILE = "held.jobid"  # slurm_faults.config: the held job's id, in its task directory
# what the profile is given (with the cluster's partition) and SLURM must have recorded
ACCOUNT, WCKEY = "bamstore_ci", "bamstore_test"
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The local cluster, started for the session unless it was already up (then left up)."""
    if not NEXTFLOW.is_file():
        pytest.fail(f"{NEXTFLOW} is missing: run `make nextflow`", pytrace=False)
    was_up = cluster_is_up()
    cluster = start_cluster()
    yield cluster
    if not was_up:
        stop_cluster()


@pytest.fixture(scope="session")
def samplesheet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test samplesheet (absolute paths) with a fifth sample."""
    data = tmp_path_factory.mktemp("slurm_data")
    shutil.copy2(TEST_DATA / "chip_b.bam", data / "chip_b2.bam")
    with (TEST_DATA / "samplesheet.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for column in ("bam", "bai"):
            row[column] = str(TEST_DATA / row[column]) if row[column] else ""
    fifth = {"sample": "chip_b2", "bam": str(data / "chip_b2.bam"), "condition": "control"}
    rows.append({**dict.fromkeys(rows[0], ""), **fifth, "replicate": "2"})
    sheet = data / "samplesheet.csv"
    with sheet.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return sheet


@pytest.fixture(scope="session")
def reference_store(samplesheet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`bamstore build` on the same samplesheet (chunk length of the test profile)."""
    return build(samplesheet, tmp_path_factory.mktemp("slurm_build") / "build.zarr")


@dataclass
class PipelineRun:
    """One run of the pipeline on the cluster, with the records of what ran."""

    launch_dir: Path
    command: list[str]
    array_size: int
    output: str
    returncode: int
    tasks: list[TaskAttempt]
    jobs: list[SlurmJob]
    cancelled_pending: str | None  # the sample whose job was cancelled before it started

    @property
    def store(self) -> Path:
        return self.launch_dir / "results" / "bamstore.zarr"

    def attempts(self, tag: str) -> list[TaskAttempt]:
        return sorted(
            (t for t in self.tasks if process_name(t) == "BAMSTORE_EXTRACT" and t.tag == tag),
            key=lambda t: t.attempt,
        )

    def job(self, native_id: str) -> SlurmJob:
        matches = [job for job in self.jobs if job.native_id == native_id]
        assert len(matches) == 1, f"SLURM recorded {len(matches)} jobs {native_id}: {self.jobs}"
        return matches[0]


def process_name(task: TaskAttempt) -> str:
    """BAMSTORE:BAMSTORE_EXTRACT -> BAMSTORE_EXTRACT"""
    return task.process.rsplit(":", 1)[-1]


def pipeline_command(
    launch_dir: Path, sheet: Path, array_size: int, queue: str, run_name: str
) -> list[str]:
    """The run with faults. With arrays, the slurm_* params are given on the command line;
    without, partition, account and options come from a -c config (the profile reads them
    when a task is submitted, so that works too), the array size still on the command line."""
    slurm_params = [
        "--slurm_queue",
        queue,
        "--slurm_account",
        ACCOUNT,
        # with '=': a value that starts with '--' would be read as a param of its own
        f"--slurm_options=--wckey={WCKEY}",
    ]
    if array_size < 2:
        config = launch_dir / "slurm_params.config"
        config.write_text(
            f"params.slurm_queue = '{queue}'\n"
            f"params.slurm_account = '{ACCOUNT}'\n"
            f"params.slurm_options = '--wckey={WCKEY}'\n"
        )
        slurm_params = ["-c", str(config)]
    return [
        str(NEXTFLOW),
        "run",
        str(REPO),
        "-name",
        run_name,
        "-profile",
        "test,slurm",
        "-c",
        str(HERE / "slurm_fast_polling.config"),
        "-c",
        str(HERE / "slurm_faults.config"),
        *slurm_params,
        "--input",
        str(sheet),
        "--slurm_array_size",
        str(array_size),
        "--outdir",
        str(launch_dir / "results"),
        "--trace_report_suffix",
        run_name,
    ]


def start(command: list[str], cwd: Path, cluster: SlurmCluster) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=nextflow_env({"SLURM_CONF": str(cluster.conf)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def held_jobs(launch_dir: Path) -> set[Path]:
    return set((launch_dir / "work").glob(f"*/*/{HELD_FILE}"))


def wait_for_held_job(
    launch_dir: Path, process: subprocess.Popen[str], timeout_s: float, known: set[Path]
) -> str | None:
    """The id of a job that started holding (a held.jobid not in `known`), or None if the run
    ended first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in held_jobs(launch_dir) - known:
            if path.read_text().strip():
                return path.read_text().strip()
        if process.poll() is not None:
            return None
        time.sleep(0.5)
    raise AssertionError(f"no task held its job within {timeout_s:.0f} s")


def finish(process: subprocess.Popen[str]) -> str:
    """The run's output once it ended (killed, and the test failed, after RUN_TIMEOUT_S)."""
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"the run did not end within {RUN_TIMEOUT_S} s:\n{output}") from None
    return output


def extraction_sample(job: QueuedJob) -> str | None:
    """The sample of an extraction job, from the name Nextflow gives it (without arrays)."""
    named = re.search(r"EXTRACT_\((?P<tag>[^()]+)\)$", job.name)
    return named.group("tag") if named else None


def cancel_a_pending_extraction(
    cluster: SlurmCluster, process: subprocess.Popen[str], timeout_s: float
) -> str:
    """Cancel a pending extraction (not a fault's sample) while another one runs, and return
    its sample. Each extraction takes the node's 2 CPUs: the others wait their turn."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        jobs = [job for job in cluster.queued_jobs() if extraction_sample(job) in SAMPLES]
        running = [job for job in jobs if job.state == "RUNNING"]
        pending = [
            job
            for job in jobs
            if job.state == "PENDING" and extraction_sample(job) not in (HELD, OOM_ONCE)
        ]
        if running and pending:
            cluster.scancel(pending[-1].job_id)  # the last in line: far from starting
            sample = extraction_sample(pending[-1])
            assert sample
            return sample
        time.sleep(0.2)
    raise AssertionError(f"no extraction was pending while another ran:\n{finish(process)}")


def run_with_faults(
    cluster: SlurmCluster, launch_dir: Path, sheet: Path, array_size: int
) -> PipelineRun:
    command = pipeline_command(launch_dir, sheet, array_size, cluster.partition, "first")
    mark = cluster.jobcomp_mark()
    process = start(command, launch_dir, cluster)
    cancelled_pending = None
    try:
        if array_size < 2:
            cancelled_pending = cancel_a_pending_extraction(cluster, process, timeout_s=300)
        held_job = wait_for_held_job(launch_dir, process, timeout_s=300, known=set())
        assert held_job, f"the run ended before {HELD} started:\n{finish(process)}"
        cluster.scancel(held_job)
        output = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return PipelineRun(
        launch_dir=launch_dir,
        command=command,
        array_size=array_size,
        output=output,
        returncode=process.returncode,
        tasks=nextflow_tasks(NEXTFLOW, launch_dir, "first", nextflow_env()),
        jobs=cluster.finished_jobs(under=launch_dir, since=mark),
        cancelled_pending=cancelled_pending,
    )


@pytest.fixture(scope="module")
def array_run(slurm_cluster, samplesheet, tmp_path_factory) -> PipelineRun:
    """Extraction as job arrays of ARRAY_SIZE tasks."""
    launch_dir = tmp_path_factory.mktemp("slurm_arrays")
    return run_with_faults(slurm_cluster, launch_dir, samplesheet, ARRAY_SIZE)


@pytest.fixture(scope="module")
def plain_run(slurm_cluster, samplesheet, tmp_path_factory) -> PipelineRun:
    """Arrays off (--slurm_array_size 0): one job per task."""
    launch_dir = tmp_path_factory.mktemp("slurm_plain")
    return run_with_faults(slurm_cluster, launch_dir, samplesheet, 0)


BOTH_RUNS = pytest.mark.parametrize("run_fixture", ["array_run", "plain_run"])


# --------------------------------------------------------------------------------------------


def test_slurm_up_is_idempotent(slurm_cluster: SlurmCluster) -> None:
    pid_files = [
        slurm_cluster.state_dir / "munge" / "munged.pid",
        slurm_cluster.state_dir / "run" / "slurmctld.pid",
        slurm_cluster.state_dir / "run" / "slurmd.pid",
    ]
    before = [path.read_text() for path in pid_files]
    assert start_cluster() == slurm_cluster
    assert [path.read_text() for path in pid_files] == before
    assert cluster_is_up()


@BOTH_RUNS
def test_store_equals_bamstore_build(run_fixture: str, request, reference_store: Path) -> None:
    run: PipelineRun = request.getfixturevalue(run_fixture)
    assert run.returncode == 0, run.output
    assert "Pipeline completed successfully" in run.output
    assert_same_store(run.store, reference_store)
    done = bamstore("validate", run.store)  # decodes every chunk
    assert done.returncode == 0, done.stderr


@BOTH_RUNS
def test_every_task_attempt_was_a_slurm_job(run_fixture: str, request, slurm_cluster) -> None:
    run: PipelineRun = request.getfixturevalue(run_fixture)
    assert {process_name(t) for t in run.tasks} == PROCESSES
    recorded = {job.native_id for job in run.jobs}
    # the one job SLURM keeps no record of: a pending array element cancelled (not done here)
    assert {t.native_id for t in run.tasks} <= recorded
    for task in run.tasks:
        job = run.job(task.native_id)
        assert (job.partition, job.account, job.wckey) == (slurm_cluster.partition, ACCOUNT, WCKEY)
        if task.status == "COMPLETED":
            assert job.state == "COMPLETED"


@BOTH_RUNS
def test_extraction_as_configured_job_arrays(run_fixture: str, request) -> None:
    run: PipelineRun = request.getfixturevalue(run_fixture)
    extractions = [t for t in run.tasks if process_name(t) == "BAMSTORE_EXTRACT"]
    first = {t.tag: run.job(t.native_id) for t in extractions if t.attempt == 1}
    assert sorted(first) == sorted(SAMPLES)
    arrays: dict[str, set[str]] = {}
    for job in first.values():
        if job.array_job_id:
            assert job.native_id == f"{job.array_job_id}_{job.array_task_id}"
            arrays.setdefault(job.array_job_id, set()).add(job.array_task_id or "")
    if run.array_size < 2:
        assert arrays == {}
    else:
        # 5 tasks in arrays of 2: two arrays of indices 0-1; the last task goes on its own
        assert sorted(arrays.values(), key=sorted) == [{"0", "1"}, {"0", "1"}]
    retried = [t for t in run.tasks if t.attempt > 1]
    assert retried, "the injected faults caused no retry"
    # a retry is submitted on its own, with its own (escalated) request
    assert all(run.job(t.native_id).array_job_id is None for t in retried)
    others = [t for t in run.tasks if process_name(t) != "BAMSTORE_EXTRACT"]
    assert [run.job(t.native_id).array_job_id for t in others] == [None] * 4


@BOTH_RUNS
def test_exit_137_is_resubmitted_with_twice_the_memory(run_fixture: str, request) -> None:
    run: PipelineRun = request.getfixturevalue(run_fixture)
    attempts = run.attempts(OOM_ONCE)
    assert [(t.attempt, t.status, t.exit) for t in attempts] == [
        (1, "FAILED", "137"),
        (2, "COMPLETED", "0"),
    ]
    first, second = (run.job(t.native_id) for t in attempts)
    # slurm_faults.config: memory = 1.GB * task.attempt; SLURM's record of the request
    assert (first.mem_mb, second.mem_mb) == (1024, 2048)
    assert (first.state, second.state) == ("FAILED", "COMPLETED")


@BOTH_RUNS
def test_a_running_task_cancelled_with_scancel_is_retried(run_fixture: str, request) -> None:
    run: PipelineRun = request.getfixturevalue(run_fixture)
    attempts = run.attempts(HELD)
    # SIGTERM from scancel: the task wrapper exits 143
    assert [(t.attempt, t.status, t.exit) for t in attempts] == [
        (1, "FAILED", "143"),
        (2, "COMPLETED", "0"),
    ]
    assert [run.job(t.native_id).state for t in attempts] == ["CANCELLED", "COMPLETED"]
    assert (attempts[0].workdir / HELD_FILE).is_file()


def test_a_pending_job_cancelled_with_scancel_is_retried(plain_run: PipelineRun) -> None:
    assert plain_run.cancelled_pending
    attempts = plain_run.attempts(plain_run.cancelled_pending)
    # no .exitcode was ever written: Nextflow reports no exit status ("-", Integer.MAX_VALUE
    # to the errorStrategy), which conf/base.config retries
    assert [(t.attempt, t.status, t.exit) for t in attempts] == [
        (1, "FAILED", "-"),
        (2, "COMPLETED", "0"),
    ]
    assert [plain_run.job(t.native_id).state for t in attempts] == ["CANCELLED", "COMPLETED"]


@BOTH_RUNS
def test_resume_submits_no_job(run_fixture: str, request, slurm_cluster) -> None:
    run: PipelineRun = request.getfixturevalue(run_fixture)
    assert run.returncode == 0, run.output
    command = [*run.command, "-resume"]
    command[command.index("-name") + 1] = "resumed"
    command[command.index("--trace_report_suffix") + 1] = "resumed"
    held_before = held_jobs(run.launch_dir)
    mark = slurm_cluster.jobcomp_mark()
    process = start(command, run.launch_dir, slurm_cluster)
    held_again = wait_for_held_job(run.launch_dir, process, RUN_TIMEOUT_S, known=held_before)
    if held_again:
        slurm_cluster.scancel(held_again)
    output = finish(process)
    assert not held_again, "-resume ran the held task's first attempt again"
    assert process.returncode == 0, output
    assert "Submitted process" not in output, shlex.join(command) + "\n" + output
    tasks = nextflow_tasks(NEXTFLOW, run.launch_dir, "resumed", nextflow_env())
    assert sorted(t.tag or "" for t in tasks if process_name(t) == "BAMSTORE_EXTRACT") == sorted(
        SAMPLES
    )
    assert {process_name(t) for t in tasks} == PROCESSES
    assert {t.status for t in tasks} == {"CACHED"}
    assert slurm_cluster.finished_jobs(under=run.launch_dir, since=mark) == []


# ------------------------------------------------- -profile slurm as a user runs it, uncapped


def test_an_uncapped_run_fits_the_partition_and_equals_bamstore_build(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """No test profile, no caps config: the caps come from sinfo (the polling config only makes
    the run take seconds instead of minutes)."""
    sheet = TEST_DATA / "samplesheet.csv"
    mark = slurm_cluster.jobcomp_mark()
    launch = tmp_path / "launch"
    run = nextflow(
        REPO,
        launch,
        "-profile",
        "slurm",
        "-c",
        HERE / "slurm_fast_polling.config",
        "--input",
        sheet,
        env={"SLURM_CONF": str(slurm_cluster.conf)},
    )
    assert run.returncode == 0, run.output
    assert_same_store(
        run.outdir / "bamstore.zarr", build(sheet, tmp_path / "build.zarr", chunk_len=None)
    )
    cpus, memory_mb = slurm_cluster.node
    jobs = slurm_cluster.finished_jobs(under=launch, since=mark)
    assert len(jobs) == 8, jobs  # check, 4 extractions, merge, validate, inspect
    assert all(job.state == "COMPLETED" for job in jobs), jobs
    assert all(job.cpus <= cpus and job.mem_mb <= memory_mb for job in jobs), (
        cpus,
        memory_mb,
        jobs,
    )
    merge = next(job for job in jobs if "MERGE" in job.name)
    assert (merge.cpus, merge.mem_mb) == (min(4, cpus), min(16 * 1024, memory_mb))


def test_a_queue_from_a_config_other_than_the_one_the_caps_came_from_is_refused(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    config = tmp_path / "queue.config"
    config.write_text("params.slurm_queue = 'elsewhere'\n")
    run = nextflow(
        REPO,
        tmp_path,
        "-profile",
        "slurm",
        "-c",
        config,
        "--input",
        TEST_DATA / "samplesheet.csv",
        "--max_cpus",  # one cap given: the other two would still be the partition's
        "2",
        env={"SLURM_CONF": str(slurm_cluster.conf)},
    )
    assert run.returncode != 0
    expected = (
        "--slurm_queue: elsewhere was set after the slurm profile read the resource caps from "
        f"partition {slurm_cluster.partition}"
    )
    assert expected in run.output, run.output
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
