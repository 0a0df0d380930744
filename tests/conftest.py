"""Fixtures: generated BAMs (session-scoped, built once), the CLI in a fresh process, and
stores read back through plain zarr. Helpers that are not fixtures live in support.py and
bamfactory.py; nothing is imported from this file."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from bamfactory import EDGE_CONTIGS, PAIR_F1R2, PAIR_F2R1, RANDOM_CONTIGS, Read, write_bam
from support import cli_argv, extract_here

from bamstore.simulate import make_bam


def edge_reads() -> list[Read]:
    """Every CIGAR operation, flag and position case that changes depth, placed to hit contig
    ends and chunk boundaries."""
    return [
        Read("c1", 0, "10M"),  # first base
        Read("c1", 990, "10M"),  # last base
        Read("c1", 995, "10M"),  # runs past the end: clipped
        Read("c1", 1005, "10M"),  # starts past the end
        Read("c1", 60, "10M"),  # crosses 64
        Read("c1", 100, "3S5M2I5M3D5M4S"),  # clips, insertion, deletion
        Read("c1", 120, "4M200N4M"),  # N gap over several chunks
        Read("c1", 300, "5=2X5="),
        Read("c1", 310, "2H5M1P5M2H"),
        Read("c1", 400, "10M", flag=0x400),  # duplicate
        Read("c1", 410, "10M", flag=0x100),  # secondary
        Read("c1", 420, "10M", flag=0x200),  # QC fail
        Read("c1", 430, "10M", flag=0x800),  # supplementary
        Read("c1", 440, "10M", flag=0x4),  # unmapped, placed
        Read("c1", 500, "10M", mapq=0),
        Read("c1", 505, "10M", mapq=255),
        Read("c1", 600, "20M", flag=PAIR_F1R2),  # overlapping mates
        Read("c1", 605, "20M", flag=PAIR_F2R1),
        Read("c1", 700, "10M", flag=0x1 | 0x40 | 0x10),  # read 1 reverse
        Read("c1", 710, "10M", flag=0x1 | 0x80),  # read 2 forward
        Read("c1", 720, "10M", flag=0x10),  # single-end reverse
        Read("c1", 730, "10M"),  # single-end forward
        Read("c1", 800, "5M100D5M"),  # long deletion (counted with -J)
        Read("c1", 850, "12M", seq=False),  # '*' sequence
        Read("c1", 126, "1M1D1M1N1M"),
        Read("c2", 0, "300M"),  # the whole contig
        Read("c2", 250, "100M", flag=PAIR_F1R2),  # past the end
        Read("c2", 6, "1M", flag=PAIR_F2R1, mapq=3),
    ]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bams")


@pytest.fixture(scope="session")
def edge_bam(data_dir: Path) -> Path:
    return write_bam(data_dir / "edge.bam", edge_reads(), EDGE_CONTIGS)


@pytest.fixture(scope="session")
def random_bam(data_dir: Path) -> Path:
    return make_bam(data_dir / "random_pe.bam", 6000, RANDOM_CONTIGS, seed=3, threads=1)


@pytest.fixture(scope="session")
def random_se_bam(data_dir: Path) -> Path:
    return make_bam(
        data_dir / "random_se.bam", 3000, RANDOM_CONTIGS, seed=4, paired=False, threads=1
    )


@pytest.fixture
def extract(tmp_path: Path) -> Callable[..., Path]:
    """extract(bam, sample="s", **options) → path of a new per-sample store (in this process;
    options as `support.extract_options`)."""
    counter = iter(range(10_000))

    def run(bam: Path, sample: str = "s", **kw: object) -> Path:
        out = tmp_path / f"{sample}-{next(counter)}.zarr"
        extract_here(bam, out, sample, **kw)
        return out

    return run


@pytest.fixture(scope="session")
def read_rows() -> Callable[[Path, str], np.ndarray]:
    """read_rows(store, array) → the whole coverage array through plain zarr (small contigs)."""

    def read(store: Path, array: str) -> np.ndarray:
        return np.asarray(zarr.open_group(str(store), mode="r")[array][...])

    return read


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """run_cli(*args, cwd=None, env=None, timeout=600) → bin/bamstore run in a fresh process
    (real exit codes, real stderr); `env` is added to this process's environment, and
    `preexec_fn` is passed on (resource limits, dropped capabilities)."""

    def run(
        *args: object,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 600,
        preexec_fn: Callable[[], None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cli_argv(*args),
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec_fn,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture(autouse=True)
def _no_kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose kernels explicitly; an outer BAMSTORE_KERNEL must not leak in."""
    if "BAMSTORE_KERNEL" in os.environ:
        monkeypatch.delenv("BAMSTORE_KERNEL")
