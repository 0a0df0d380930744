"""The `slurm` profile on a real SLURM cluster: job arrays, retry with more memory, scancel, resume.

A one-node cluster from Debian's slurm-wlm and munge is started for the session
(scripts/slurm-up.sh, left running if it was already up). The pipeline that runs on it is the
fixture in slurm_fixtures/: shaped like bamstore's (five extraction tasks, one merge), with the
real processes' names and labels, the project's conf/base.config and conf/slurm.config, so what
is tested here is the profile itself: what Nextflow asks of sbatch and what SLURM did with it.

It runs twice, with job arrays of 2 and without, giving partition, account and sbatch options
on the command line and in a -c config respectively; SLURM must have recorded them on every job.
Each run injects three faults, and the tests check both Nextflow's record of every attempt
(`nextflow log`) and SLURM's (the jobcomp file):
- s3's first attempt exits 137 (inject_137.config): resubmitted with twice the memory;
- s1's first attempt waits in its job until the test cancels it with scancel: retried;
- without arrays, another sample's job is cancelled while still pending: it leaves no exit
  status, and is retried after the executor's exitReadTimeout.
Then the same command with -resume must submit no job at all.

Run with `make test-slurm` (needs root, slurm-wlm, munge, and Nextflow: `make nextflow` or
$NEXTFLOW).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from slurm_cluster import (
    SlurmCluster,
    SlurmJob,
    TaskAttempt,
    cluster_is_up,
    find_nextflow,
    nextflow_tasks,
    start_cluster,
    stop_cluster,
)

pytestmark = pytest.mark.slurm

FIXTURES = Path(__file__).parent / "slurm_fixtures"
SAMPLES = [f"s{n}" for n in range(1, 6)]
ARRAY_SIZE = 2
HELD = "s1"  # its first attempt waits in its job until the test cancels it
OOM_ONCE = "s3"  # its first attempt exits 137 (inject_137.config)
# what the profile is given (with the cluster's partition) and SLURM must have recorded
ACCOUNT, WCKEY = "bamstore_ci", "bamstore_test"
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The local cluster, started for the session unless it was already up (then left up)."""
    was_up = cluster_is_up()
    cluster = start_cluster()
    yield cluster
    if not was_up:
        stop_cluster()


@pytest.fixture(scope="session")
def nextflow() -> Path:
    return find_nextflow()


@dataclass
class FixtureRun:
    """One run of the fixture pipeline on the cluster, with the records of what ran."""

    launch_dir: Path
    command: list[str]
    array_size: int
    output: str
    returncode: int
    tasks: list[TaskAttempt]
    jobs: list[SlurmJob]
    cancelled_pending: str | None  # the sample whose job was cancelled before it started

    def attempts(self, tag: str) -> list[TaskAttempt]:
        return sorted(
            (t for t in self.tasks if t.process == "BAMSTORE_EXTRACT" and t.tag == tag),
            key=lambda t: t.attempt,
        )

    def job(self, native_id: str) -> SlurmJob:
        matches = [job for job in self.jobs if job.native_id == native_id]
        assert len(matches) == 1, f"SLURM recorded {len(matches)} jobs {native_id}: {self.jobs}"
        return matches[0]


def fixture_command(
    nextflow: Path, launch_dir: Path, array_size: int, hold_dir: Path, queue: str
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
        str(nextflow),
        "run",
        str(FIXTURES / "main.nf"),
        "-name",
        "first",
        "-profile",
        "slurm",
        "-ansi-log",
        "false",
        "-c",
        str(FIXTURES / "fast_polling.config"),
        "-c",
        str(FIXTURES / "inject_137.config"),
        *slurm_params,
        "--samples",
        str(len(SAMPLES)),
        "--slurm_array_size",
        str(array_size),
        "--hold",
        HELD,
        "--hold_dir",
        str(hold_dir),
    ]


def start(command: list[str], cwd: Path, cluster: SlurmCluster) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen[str], timeout_s: float) -> str | None:
    """The contents of `path` once a task wrote it, or None if the run ended first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        if process.poll() is not None:
            return None
        time.sleep(0.5)
    raise AssertionError(f"{path.name} was not written within {timeout_s:.0f} s")


def finish(process: subprocess.Popen[str]) -> str:
    """The run's output once it ended (killed, and the test failed, after RUN_TIMEOUT_S)."""
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"the run did not end within {RUN_TIMEOUT_S} s:\n{output}") from None
    return output


def pending_extraction(cluster: SlurmCluster) -> tuple[str, str]:
    """(sample, job id) of a pending extraction job, other than the faults' samples."""
    for job in cluster.queued_jobs():
        sample = job.name.removeprefix("nf-BAMSTORE_EXTRACT_(").removesuffix(")")
        if job.state == "PENDING" and sample in SAMPLES and sample not in (HELD, OOM_ONCE):
            return sample, job.job_id
    raise AssertionError(f"no extraction job pending while {HELD} runs: {cluster.queued_jobs()}")


def run_with_faults(
    cluster: SlurmCluster, nextflow: Path, launch_dir: Path, array_size: int
) -> FixtureRun:
    hold_dir = launch_dir / "hold"
    hold_dir.mkdir()
    command = fixture_command(nextflow, launch_dir, array_size, hold_dir, cluster.partition)
    mark = cluster.jobcomp_mark()
    process = start(command, launch_dir, cluster)
    cancelled_pending = None
    try:
        held_job = wait_for(hold_dir / f"{HELD}.job", process, timeout_s=180)
        assert held_job, f"the run ended before {HELD} started:\n{finish(process)}"
        if array_size < 2:
            # the held job fills the node (2 CPUs of 2): the jobs submitted after it wait
            cancelled_pending, pending_job = pending_extraction(cluster)
            cluster.scancel(pending_job)
        cluster.scancel(held_job)
        output = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return FixtureRun(
        launch_dir=launch_dir,
        command=command,
        array_size=array_size,
        output=output,
        returncode=process.returncode,
        tasks=nextflow_tasks(nextflow, launch_dir, "first"),
        jobs=cluster.finished_jobs(under=launch_dir, since=mark),
        cancelled_pending=cancelled_pending,
    )


@pytest.fixture(scope="module")
def array_run(slurm_cluster, nextflow, tmp_path_factory) -> FixtureRun:
    """Extraction as job arrays of ARRAY_SIZE tasks."""
    launch_dir = tmp_path_factory.mktemp("slurm_arrays")
    return run_with_faults(slurm_cluster, nextflow, launch_dir, ARRAY_SIZE)


@pytest.fixture(scope="module")
def plain_run(slurm_cluster, nextflow, tmp_path_factory) -> FixtureRun:
    """Arrays off (--slurm_array_size 0): one job per task."""
    launch_dir = tmp_path_factory.mktemp("slurm_plain")
    return run_with_faults(slurm_cluster, nextflow, launch_dir, 0)


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
def test_run_succeeds_and_merges_every_sample(run_fixture: str, request) -> None:
    run: FixtureRun = request.getfixturevalue(run_fixture)
    assert run.returncode == 0, run.output
    merged = (run.launch_dir / "results" / "merged.txt").read_text().split()
    assert merged == SAMPLES


@BOTH_RUNS
def test_every_task_attempt_was_a_slurm_job(run_fixture: str, request, slurm_cluster) -> None:
    run: FixtureRun = request.getfixturevalue(run_fixture)
    processes = {t.process for t in run.tasks}
    assert processes == {"BAMSTORE_EXTRACT", "BAMSTORE_MERGE"}
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
    run: FixtureRun = request.getfixturevalue(run_fixture)
    first = {t.tag: run.job(t.native_id) for t in run.tasks if t.attempt == 1 and t.tag}
    assert sorted(first) == SAMPLES
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
    merge = [t for t in run.tasks if t.process == "BAMSTORE_MERGE"]
    assert [run.job(t.native_id).array_job_id for t in merge] == [None]


@BOTH_RUNS
def test_exit_137_is_resubmitted_with_twice_the_memory(run_fixture: str, request) -> None:
    run: FixtureRun = request.getfixturevalue(run_fixture)
    attempts = run.attempts(OOM_ONCE)
    assert [(t.attempt, t.status, t.exit) for t in attempts] == [
        (1, "FAILED", "137"),
        (2, "COMPLETED", "0"),
    ]
    first, second = (run.job(t.native_id) for t in attempts)
    # inject_137.config: memory = 1.GB * task.attempt; SLURM's record of the request
    assert (first.mem_mb, second.mem_mb) == (1024, 2048)
    assert (first.state, second.state) == ("FAILED", "COMPLETED")


@BOTH_RUNS
def test_a_running_task_cancelled_with_scancel_is_retried(run_fixture: str, request) -> None:
    run: FixtureRun = request.getfixturevalue(run_fixture)
    attempts = run.attempts(HELD)
    # SIGTERM from scancel: the task wrapper exits 143
    assert [(t.attempt, t.status, t.exit) for t in attempts] == [
        (1, "FAILED", "143"),
        (2, "COMPLETED", "0"),
    ]
    assert [run.job(t.native_id).state for t in attempts] == ["CANCELLED", "COMPLETED"]


def test_a_pending_job_cancelled_with_scancel_is_retried(plain_run: FixtureRun) -> None:
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
def test_resume_submits_no_job(run_fixture: str, request, slurm_cluster, nextflow) -> None:
    run: FixtureRun = request.getfixturevalue(run_fixture)
    assert run.returncode == 0, run.output
    hold_file = run.launch_dir / "hold" / f"{HELD}.job"
    hold_file.unlink()
    command = [*run.command, "-resume"]
    command[command.index("-name") + 1] = "resumed"
    mark = slurm_cluster.jobcomp_mark()
    process = start(command, run.launch_dir, slurm_cluster)
    held_again = wait_for(hold_file, process, timeout_s=RUN_TIMEOUT_S)
    if held_again:
        slurm_cluster.scancel(held_again)
    output = finish(process)
    assert not held_again, "-resume ran the held task's first attempt again"
    assert process.returncode == 0, output
    assert "Submitted process" not in output, shlex.join(command) + "\n" + output
    tasks = nextflow_tasks(nextflow, run.launch_dir, "resumed")
    assert sorted(t.tag or t.process for t in tasks) == sorted([*SAMPLES, "BAMSTORE_MERGE"])
    assert {t.status for t in tasks} == {"CACHED"}
    assert slurm_cluster.finished_jobs(under=run.launch_dir, since=mark) == []
