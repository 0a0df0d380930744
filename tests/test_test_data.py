"""The committed test BAMs are exactly what tests/data/make_test_data.py generates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pysam
import pytest
from support import TEST_DATA

from bamstore.simulate import make_bam

spec = importlib.util.spec_from_file_location("make_test_data", TEST_DATA / "make_test_data.py")
assert spec and spec.loader
make_test_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_test_data)


def test_samplesheet_is_generated() -> None:
    assert (TEST_DATA / "samplesheet.csv").read_text() == make_test_data.samplesheet_text()


@pytest.mark.parametrize("sample", make_test_data.SAMPLES, ids=lambda s: s[0])
def test_bam_records_are_reproducible(sample: tuple, tmp_path: Path) -> None:
    name, reads, seed, paired, index, *_ = sample
    fresh = make_bam(
        tmp_path / f"{name}.bam",
        reads,
        make_test_data.CONTIGS,
        seed=seed,
        paired=paired,
        threads=1,
        index=False,
    )
    committed = TEST_DATA / f"{name}.bam"
    # compare decoded records (BGZF bytes may differ between zlib builds)
    assert pysam.view("-h", "--no-PG", str(fresh)) == pysam.view("-h", "--no-PG", str(committed))
    assert (TEST_DATA / f"{name}.bam.bai").exists() == index
