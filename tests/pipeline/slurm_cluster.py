"""The local one-node SLURM cluster (scripts/slurm-up.sh) and Nextflow runs on it, seen from tests.

Two independent records say what ran where, and the SLURM tests check one against the other:

- SLURM's own record of every finished job: `jobcomp/filetxt` writes one line per job to
  `<state>/log/jobcomp.log` (no slurmdbd here, so `sacct` does not work), with its state,
  partition, account, memory request (`Tres=...,mem=...`), work directory and, for an element of
  a job array, `ArrayJobId`/`ArrayTaskId`. A job cancelled while pending is recorded too, except
  a pending array element: SLURM 22.05 drops it from its tables at once.
- Nextflow's record of every task attempt: `nextflow log <run> -f ...`, whose `native_id` is the
  SLURM job id, `<array job id>_<index>` for a task run as an array element.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SLURM_UP = REPO / "scripts" / "slurm-up.sh"
SLURM_DOWN = REPO / "scripts" / "slurm-down.sh"
STATE_DIR = Path(os.environ.get("BAMSTORE_SLURM_DIR", REPO / ".slurm"))

_MEMORY_UNITS_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


@dataclass(frozen=True)
class SlurmJob:
    """One finished job as SLURM recorded it (a line of the jobcomp file)."""

    job_id: str
    native_id: str  # the id Nextflow knows the job by: "<array job>_<index>" for an array element
    name: str
    state: str  # COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    partition: str
    account: str
    wckey: str
    cpus: int
    mem_mb: int
    work_dir: Path
    array_job_id: str | None
    array_task_id: str | None


def parse_jobcomp_line(line: str) -> SlurmJob:
    """One jobcomp/filetxt line: space-separated Key=Value fields (values without spaces)."""
    fields = dict(re.findall(r"(\w+)=(\S*)", line))
    tres = dict(item.split("=", 1) for item in fields["Tres"].split(",") if "=" in item)
    mem = re.fullmatch(r"([\d.]+)([KMGT])", tres.get("mem", "0M"))
    if mem is None:
        raise ValueError(f"unexpected memory in jobcomp line: {tres.get('mem')!r}")
    array_job_id = fields.get("ArrayJobId")
    array_task_id = fields.get("ArrayTaskId")
    return SlurmJob(
        job_id=fields["JobId"],
        native_id=f"{array_job_id}_{array_task_id}" if array_job_id else fields["JobId"],
        name=fields["Name"],
        state=fields["JobState"],
        partition=fields["Partition"],
        account=fields.get("Account", ""),
        wckey=fields.get("WcKey", ""),
        cpus=int(tres.get("cpu", 0)),
        mem_mb=round(float(mem.group(1)) * _MEMORY_UNITS_MB[mem.group(2)]),
        work_dir=Path(fields["WorkDir"]),
        array_job_id=array_job_id,
        array_task_id=array_task_id,
    )


@dataclass(frozen=True)
class QueuedJob:
    """A job SLURM still holds (squeue): pending or running."""

    job_id: str  # "<array job>_<index>" for an array element
    name: str
    state: str  # PENDING, RUNNING, ...


@dataclass(frozen=True)
class SlurmCluster:
    """The cluster scripts/slurm-up.sh started; its clients find it through SLURM_CONF."""

    state_dir: Path

    @property
    def conf(self) -> Path:
        return self.state_dir / "etc" / "slurm.conf"

    @property
    def partition(self) -> str:
        """The cluster's one partition (BAMSTORE_SLURM_PARTITION when it was started)."""
        found = re.search(r"^PartitionName=(\S+)", self.conf.read_text(), re.M)
        if found is None:
            raise ValueError(f"{self.conf} declares no partition")
        return found.group(1)

    @property
    def node(self) -> tuple[int, int]:
        """(CPUs, RealMemory in MB) of the cluster's one node."""
        found = re.search(r"^NodeName=.*\bCPUs=(\d+) RealMemory=(\d+)", self.conf.read_text(), re.M)
        if found is None:
            raise ValueError(f"{self.conf} declares no node with CPUs and RealMemory")
        return int(found.group(1)), int(found.group(2))

    @property
    def jobcomp(self) -> Path:
        return self.state_dir / "log" / "jobcomp.log"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def jobcomp_mark(self) -> int:
        """Where the jobcomp record ends now: finished_jobs(since=mark) reads only later jobs."""
        return self.jobcomp.stat().st_size if self.jobcomp.exists() else 0

    def finished_jobs(self, under: Path, since: int = 0) -> list[SlurmJob]:
        """Jobs finished after `since` whose work directory lies under `under` (a launch dir).

        `since` keeps out an earlier session's jobs run from the same path (a reused
        --basetemp), whose ids may repeat once the cluster's state is reset."""
        if not self.jobcomp.exists():
            return []
        with self.jobcomp.open("rb") as record:
            record.seek(since)
            lines = record.read().decode().splitlines()
        jobs = [parse_jobcomp_line(line) for line in lines if line]
        return [job for job in jobs if job.work_dir.is_relative_to(under)]

    def queued_jobs(self) -> list[QueuedJob]:
        out = subprocess.run(
            ["squeue", "--noheader", "--array", "--format", "%i|%j|%T"],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [QueuedJob(*line.split("|", 2)) for line in out.splitlines() if line]

    def scancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], env=self.env(), check=True)


def cluster_is_up() -> bool:
    return subprocess.run([SLURM_UP, "--check"], capture_output=True).returncode == 0


def start_cluster() -> SlurmCluster:
    """Start the cluster (a no-op when it is up) and wait for its node to be idle."""
    subprocess.run([SLURM_UP], check=True)
    return SlurmCluster(STATE_DIR)


def stop_cluster() -> None:
    subprocess.run([SLURM_DOWN], check=True)


# --------------------------------------------------------------------------------------------
# Nextflow


@dataclass(frozen=True)
class TaskAttempt:
    """One task attempt as `nextflow log` reports it."""

    name: str  # "BAMSTORE:BAMSTORE_EXTRACT (chip_a)"
    process: str  # "BAMSTORE:BAMSTORE_EXTRACT"
    tag: str | None
    native_id: str
    status: str  # COMPLETED, FAILED, CACHED, ABORTED
    attempt: int
    exit: str  # the exit status as Nextflow prints it ("0", "137", "-" when it has none)
    workdir: Path


LOG_FIELDS = ("name", "process", "tag", "native_id", "status", "attempt", "exit", "workdir")


def nextflow_tasks(
    nextflow: Path, launch_dir: Path, run_name: str, env: dict[str, str]
) -> list[TaskAttempt]:
    """Every task attempt of a run, from `nextflow log` in its launch directory."""
    out = subprocess.run(
        [nextflow, "log", run_name, "-f", ",".join(LOG_FIELDS)],
        cwd=launch_dir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tasks = []
    for line in out.splitlines():
        if not line.strip():
            continue
        name, process, tag, native_id, status, attempt, exit_status, workdir = line.split("\t")
        tasks.append(
            TaskAttempt(
                name=name,
                process=process,
                tag=None if tag in ("", "-") else tag,
                native_id=native_id,
                status=status,
                attempt=int(attempt),
                exit=exit_status,
                workdir=Path(workdir),
            )
        )
    if not tasks:
        raise AssertionError(f"`nextflow log {run_name}` in {launch_dir} listed no task")
    return tasks
