"""Running the pipeline from tests: the real Nextflow (.tools/bin/nextflow), and comparing the
store it publishes with one `bamstore build` makes (tests/pipeline/test_*.py)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

REPO = Path(__file__).resolve().parents[2]
NEXTFLOW = REPO / ".tools" / "bin" / "nextflow"


@dataclass
class Run:
    returncode: int
    output: str  # stdout and stderr, as the user sees them
    launch_dir: Path
    outdir: Path
    suffix: str

    def trace(self) -> list[dict[str, str]]:
        path = self.outdir / "pipeline_info" / f"execution_trace_{self.suffix}.txt"
        with path.open() as fh:
            return list(csv.DictReader(fh, delimiter="\t"))

    def statuses(self, process: str) -> dict[str, str]:
        """tag -> status of the last attempt of each task of `process`."""
        return {
            row["tag"]: row["status"]
            for row in self.trace()
            if row["process"].endswith(f":{process}")
        }


def nextflow_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(NXF_ANSI_LOG="false", NXF_OFFLINE="true")
    env.pop("NXF_DISABLE_PARAMS_TYPE_DETECTION", None)
    env.update(extra or {})
    return env


def nextflow(
    project: Path,
    launch_dir: Path,
    *args: object,
    suffix: str = "run",
    env: dict[str, str] | None = None,
) -> Run:
    """`nextflow run project ... --outdir results --trace_report_suffix suffix` in launch_dir."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    outdir = launch_dir / "results"
    command = [str(NEXTFLOW), "run", str(project), *map(str, args)]
    command += ["--outdir", str(outdir), "--trace_report_suffix", suffix]
    done = subprocess.run(
        command,
        cwd=launch_dir,
        env=nextflow_env(env),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    return Run(done.returncode, done.stdout + done.stderr, launch_dir, outdir, suffix)


def succeeded(run: Run) -> Run:
    assert run.returncode == 0, run.output
    return run


def bamstore(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "bamstore"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        check=False,
    )


def build(sheet: Path, out: Path, *options: object, chunk_len: int | None = 16384) -> Path:
    """`bamstore build`, by default with the test profile's chunk length (None: build's)."""
    chunk = ["--chunk-len", chunk_len] if chunk_len else []
    done = bamstore("build", "--input", sheet, "--out", out, *chunk, *options)
    assert done.returncode == 0, done.stderr
    return out


def arrays(group: zarr.Group, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, member in group.members():
        if isinstance(member, zarr.Group):
            out.update(arrays(member, f"{prefix}{name}/"))
        else:
            out[prefix + name] = member[...]
    return out


def assert_same_store(pipeline: Path, reference: Path) -> None:
    """Every array and every attribute (sample order, hashes, library sizes, metadata, and each
    sample's source: the samplesheet's path, not the task's staged copy)."""
    ours = zarr.open_group(str(pipeline), mode="r")
    theirs = zarr.open_group(str(reference), mode="r")
    assert dict(ours.attrs) == dict(theirs.attrs)
    ours_arrays, their_arrays = arrays(ours), arrays(theirs)
    assert sorted(ours_arrays) == sorted(their_arrays)
    for name, values in ours_arrays.items():
        np.testing.assert_array_equal(values, their_arrays[name], err_msg=name)


def task_dirs(launch: Path) -> list[Path]:
    return list((launch / "work").glob("*/*")) if (launch / "work").exists() else []
