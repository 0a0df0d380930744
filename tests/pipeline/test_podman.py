"""End-to-end in the bamstore image: `-profile test,podman`, every task inside the container.

Needs podman and the image (`make image`: localhost/bamstore:<version>). Skipped without them,
unless BAMSTORE_REQUIRE_IMAGE=1, which makes a missing image a failure. BAMSTORE_IMAGE names
another image to run (a -c config sets every process's container).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import zarr
from nfrun import NEXTFLOW, REPO, assert_same_store, build, nextflow, nextflow_env, succeeded

from bamstore import __version__

DEFAULT_IMAGE = f"localhost/bamstore:{__version__}"  # what `make image` builds
IMAGE = os.environ.get("BAMSTORE_IMAGE", DEFAULT_IMAGE)
TEST_DATA = REPO / "tests" / "data"


def image_exists() -> bool:
    if not shutil.which("podman"):
        return False
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(REPO / "conf" / "podman" / "containers.conf"))
    done = subprocess.run(
        ["podman", "image", "exists", IMAGE], env=env, capture_output=True, check=False
    )
    return done.returncode == 0


pytestmark = pytest.mark.pipeline  # `make test-pipeline`, not `make test`

if not NEXTFLOW.exists() or not image_exists():
    missing = f"{NEXTFLOW} (make nextflow)" if not NEXTFLOW.exists() else f"{IMAGE} (make image)"
    if os.environ.get("BAMSTORE_REQUIRE_IMAGE"):
        pytest.fail(f"{missing} is missing", pytrace=False)
    pytest.skip(f"{missing} is missing", allow_module_level=True)


def test_every_task_runs_in_the_image_and_the_store_equals_build(tmp_path: Path) -> None:
    args: list[object] = ["-profile", "test,podman"]
    if IMAGE != DEFAULT_IMAGE:
        config = tmp_path / "image.config"
        # withName outranks the modules' own container directive (process.container does
        # not); the name goes without the registry, which --container_registry adds
        name = IMAGE.removeprefix("localhost/")
        config.write_text(f"process {{ withName: '.*' {{ container = '{name}' }} }}\n")
        args += ["-c", config]
    run = succeeded(nextflow(REPO, tmp_path / "launch", *args))
    assert "container       podman" in run.output

    reference = build(TEST_DATA / "samplesheet.csv", tmp_path / "build.zarr")
    assert_same_store(run.outdir / "bamstore.zarr", reference)
    store = zarr.open_group(str(run.outdir / "bamstore.zarr"), mode="r")
    assert store.attrs["sample_names"] == ["chip_a", "chip_b", "atac_se", "rna_r"]

    run_name = re.search(r"\[([a-z]+_[a-z]+)\] DSL2", run.output).group(1)
    log = subprocess.run(
        [str(NEXTFLOW), "log", run_name, "-f", "name,container,status"],
        cwd=run.launch_dir,
        env=nextflow_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    rows = [line.split("\t") for line in log.splitlines()]
    assert len(rows) == 8, log  # check, 4 extractions, merge, validate, inspect
    assert all(row[1] == IMAGE and row[2] == "COMPLETED" for row in rows), log
