"""Fixtures: generated BAMs (session-scoped, built once) and helpers to extract and read stores."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from bamfactory import Read, write_bam

from bamstore.extract import ExtractOptions, extract_sample
from bamstore.kernel import ReadFilter, available_kernels
from bamstore.simulate import make_bam

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "bin" / "bamstore"
TEST_DATA = REPO / "tests" / "data"
KERNELS = available_kernels()

EDGE_CONTIGS = [("c1", 1000), ("c2", 300), ("c3", 50)]
PAIR_F1R2 = 0x1 | 0x2 | 0x40 | 0x20  # read 1, forward, mate reverse
PAIR_F2R1 = 0x1 | 0x2 | 0x80 | 0x10  # read 2, reverse


def edge_reads() -> list[Read]:
    """Every case the core issue lists, placed to hit contig ends and chunk boundaries."""
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


RANDOM_CONTIGS = [("chr1", 30_000), ("chr2", 12_000), ("chr3", 700)]


@pytest.fixture(scope="session")
def random_bam(data_dir: Path) -> Path:
    return make_bam(data_dir / "random_pe.bam", 6000, RANDOM_CONTIGS, seed=3, threads=1)


@pytest.fixture(scope="session")
def random_se_bam(data_dir: Path) -> Path:
    return make_bam(
        data_dir / "random_se.bam", 3000, RANDOM_CONTIGS, seed=4, paired=False, threads=1
    )


def options(**kw: object) -> ExtractOptions:
    """ExtractOptions with chromosomes=all and read-filter keywords mixed in."""
    filt = {k: kw.pop(k) for k in ("exclude_flags", "min_mapq", "count_deletions") if k in kw}
    kw.setdefault("chromosomes", "all")
    return ExtractOptions(read_filter=ReadFilter(**filt), **kw)  # type: ignore[arg-type]


@pytest.fixture
def extract(tmp_path: Path) -> Callable[..., Path]:
    """extract(bam, sample="s", **options) → path of a new per-sample store."""
    counter = iter(range(10_000))

    def run(bam: Path, sample: str = "s", **kw: object) -> Path:
        out = tmp_path / f"{sample}-{next(counter)}.zarr"
        extract_sample(bam, sample, out, options(**kw))
        return out

    return run


def read_rows(store: Path, array: str) -> np.ndarray:
    """A whole coverage array through plain zarr (tests only: small contigs)."""
    return np.asarray(zarr.open_group(str(store), mode="r")[array][...])


@pytest.fixture(autouse=True)
def _no_kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose kernels explicitly; an outer BAMSTORE_KERNEL must not leak in."""
    if "BAMSTORE_KERNEL" in os.environ:
        monkeypatch.delenv("BAMSTORE_KERNEL")


def bamstore_command(*args: object) -> list[str]:
    """The argv of bin/bamstore, as Nextflow tasks call it."""
    return [sys.executable, str(BIN), *map(str, args)]


def run_bamstore(
    *args: object,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """bin/bamstore in a fresh process: real exit codes, real stderr."""
    return subprocess.run(
        bamstore_command(*args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """run_cli(*args, cwd=None, env=None, timeout=600): bin/bamstore in a fresh process."""

    def run(
        *args: object,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        return run_bamstore(*args, cwd=cwd, env=env, timeout=timeout)

    return run


@pytest.fixture(name="read_rows")
def read_rows_fixture() -> Callable[[Path, str], np.ndarray]:
    """read_rows(store, array): a whole coverage array through plain zarr."""
    return read_rows
