"""The pipeline's image (`make image`): pinned, runs, lean, and computes what the host computes.

The first tests read containers/ (no image needed). The others run podman as the pipeline's
`podman` profile does here (runc, cgroupfs, no default ulimits, `--ulimit host`). Without the
image they skip, unless BAMSTORE_REQUIRE_IMAGE=1 (set by .ci/run after `make image`): then a
missing image or podman is a failure, not a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bamstore import __version__

REPO = Path(__file__).resolve().parents[2]
CONTAINERS = REPO / "containers"
CHIP_A = REPO / "tests" / "data" / "chip_a.bam"
IMAGE = os.environ.get("BAMSTORE_IMAGE", f"localhost/bamstore:{__version__}")
REQUIRED = os.environ.get("BAMSTORE_REQUIRE_IMAGE") == "1"

CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


def lock_pins(name: str) -> dict[str, str]:
    """{package: version} of a lock file, after checking that every entry is pinned and hashed."""
    text = (CONTAINERS / name).read_text()
    entries = re.findall(r"^(\S+)((?:[ \t]*\\\n[ \t]+--hash=\S+)*)", text, re.M)
    pins = {}
    for requirement, hashes in entries:
        if requirement.startswith("#"):
            continue
        package, _, version = requirement.partition("==")
        assert version and re.fullmatch(r"[\w.+-]+", version), f"{name}: {requirement} not exact"
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", hashes), f"{name}: {requirement} unhashed"
        pins[canonicalize_name(package)] = version
    return pins


def test_locks_pin_every_dependency_exactly_with_hashes() -> None:
    runtime = lock_pins("requirements.lock")
    build = lock_pins("build-requirements.lock")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    for spec, pins in [
        *((spec, runtime) for spec in project["project"]["dependencies"]),
        *((spec, build) for spec in project["build-system"]["requires"]),
    ]:
        requirement = Requirement(spec)
        version = pins.get(canonicalize_name(requirement.name))
        assert version and requirement.specifier.contains(version), (spec, version)
    # the compiled kernel links the htslib of the pysam it was built against
    assert build["pysam"] == runtime["pysam"]


def test_conda_environment_pins_agree_with_the_image() -> None:
    """-profile conda pip-installs the image's runtime pins, then bamstore from the checkout."""
    env = yaml.safe_load((CONTAINERS / "environment.yml").read_text())
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    pins = dict(entry.split("==") for entry in pip if "==" in entry)
    assert {canonicalize_name(name): version for name, version in pins.items()} == lock_pins(
        "requirements.lock"
    )
    assert pip[-1] == "..", "the conda environment installs bamstore itself"


def test_dockerfile_pins_its_base_and_builds_from_the_locks() -> None:
    dockerfile = (CONTAINERS / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.M)
    assert base and re.fullmatch(r"\S+:bookworm-slim@sha256:[0-9a-f]{64}", base.group(1))
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert stages == ["${BASE_IMAGE}", "${BASE_IMAGE}"], stages
    assert dockerfile.count("--require-hashes") == 2
    assert "ENV " in dockerfile and "BAMSTORE_PACKAGE=installed" in dockerfile
    user = re.findall(r"^USER\s+(\S+)$", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    # the build context is a whitelist: what the Dockerfile copies, nothing else
    ignore = (REPO / ".dockerignore").read_text().split("\n")
    assert "*" in ignore
    for source in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", dockerfile, re.M):
        for path in source.split():
            assert f"!{path.rstrip('/')}" in ignore, f".dockerignore leaves out {path}"


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (BAMSTORE_REQUIRE_IMAGE=1: run `make image` first)")
    pytest.skip(f"{reason}: run `make image` (BAMSTORE_REQUIRE_IMAGE=1 makes this a failure)")


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """`podman run` argv prefix for IMAGE; skips (or fails, in CI) when there is no image."""
    if shutil.which("podman") is None:
        _missing("podman is not installed")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    podman = ["env", f"CONTAINERS_CONF={conf}", "podman"]
    if subprocess.run([*podman, "image", "exists", IMAGE], check=False).returncode != 0:
        _missing(f"no image {IMAGE}")
    return [*podman, "run", "--rm", "--ulimit", "host", "--network", "none"]


def run(argv: list[object]) -> str:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{argv}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def image_facts(podman: list[str]) -> dict[str, str]:
    """What one container run of the image reports: one run, as each run costs seconds."""
    kernels = "import bamstore.engine.kernel as k; print(*k.available_kernels())"
    script = f"""
        echo "version=$(bamstore --version)"
        echo "kernels=$(python -c '{kernels}')"
        echo "python=$(python -c 'import sys; print(*sys.version_info[:2], sep=".")')"
        echo "uid=$(id -u)"
        echo "present="$(for t in bash ps samtools; do command -v $t; done)
        echo "build_tools="$(for t in gcc cc c++ make pip pip3 cython; do command -v $t; done)
    """
    lines = run([*podman, IMAGE, "bash", "-c", script]).splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_image_runs_bamstore_with_its_compiled_kernel(image_facts: dict[str, str]) -> None:
    assert image_facts["version"].split()[-1] == __version__
    assert "compiled" in image_facts["kernels"].split()
    assert image_facts["python"] == "3.11"  # Debian bookworm's


def test_image_is_lean_and_fit_for_nextflow(image_facts: dict[str, str]) -> None:
    assert image_facts["uid"] not in ("", "0"), "the image's default user must not be root"
    tools = [Path(t).name for t in image_facts["present"].split()]
    assert tools == ["bash", "ps", "samtools"], image_facts["present"]
    assert image_facts["build_tools"] == "", "build tools in the final image"


def arrays(store: Path) -> dict[str, np.ndarray]:
    """Every array of a store, metadata/ included, by path."""
    root = zarr.open_group(str(store), mode="r")
    return {
        name: np.asarray(member[...])
        for name, member in root.members(max_depth=None)
        if isinstance(member, zarr.Array)
    }


def attributes(store: Path) -> dict:
    """The root attributes less each sample's source (its path differs inside the container)."""
    attrs = dict(zarr.open_group(str(store), mode="r").attrs)
    for sample in attrs["bamstore"]["samples"].values():
        sample.pop("source")
    return attrs


@pytest.mark.parametrize("user", ["image", "caller"])
def test_extract_in_image_equals_extract_on_host(
    podman: list[str], tmp_path: Path, user: str
) -> None:
    """A real extraction inside the image gives the host's arrays, as its default (non-root) user
    and as the caller's uid:gid (what a `-u $(id -u):$(id -g)` container option does)."""
    host_store = tmp_path / "host" / "chip_a.zarr"
    host_store.parent.mkdir()
    run([sys.executable, REPO / "bin" / "bamstore", "extract", "--bam", CHIP_A,
         "--sample", "chip_a", "--out", host_store, "--chunk-len", "16384", "-q"])  # fmt: skip

    out = tmp_path / "image"
    out.mkdir()
    user_args: list[object] = []
    if user == "image":
        out.chmod(0o777)  # writable by the image's user, whatever its uid
    else:
        user_args = ["--user", f"{os.getuid()}:{os.getgid()}"]
    run([*podman, *user_args, "-v", f"{REPO}:/repo:ro", "-v", f"{out}:/out", IMAGE,
         "bamstore", "extract", "--bam", "/repo/tests/data/chip_a.bam", "--sample", "chip_a",
         "--out", "/out/chip_a.zarr", "--chunk-len", "16384", "-q"])  # fmt: skip
    image_store = out / "chip_a.zarr"

    host, image = arrays(host_store), arrays(image_store)
    assert sorted(image) == sorted(host) and host
    for name in host:
        assert image[name].dtype == host[name].dtype, name
        np.testing.assert_array_equal(image[name], host[name], err_msg=name)
    assert {"chr1", "metadata/total_reads"} <= set(host), sorted(host)
    assert host["chr1"].any(), "no coverage at all: the comparison would prove nothing"
    assert attributes(image_store) == attributes(host_store)
    assert attributes(image_store)["bamstore"]["samples"]["chip_a"]["kernel"] == "compiled"
