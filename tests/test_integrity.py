"""Issue 5, integrity: `bamstore validate` catches and names a lost, truncated or swapped chunk;
`--quick` checks structure only; merge refuses to publish parts whose chunks changed after
extraction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bamfactory import random_reads, write_bam
from support import (
    assert_clean_refusal,
    extract_here,
    leftovers,
    write_samplesheet,
)

CONTIGS = [("chr1", 2000), ("chr2", 1500)]
CHUNK = 500  # 4 + 3 chunks per sample


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, run_cli) -> Path:
    folder = tmp_path_factory.mktemp("integrity")
    rows = []
    for i, name in enumerate(("alpha", "beta")):
        bam = write_bam(folder / f"{name}.bam", random_reads(20 + i, 400, CONTIGS), CONTIGS)
        rows.append((name, bam))
    sheet = write_samplesheet(folder / "s.csv", rows)
    out = folder / "two.zarr"
    result = run_cli("build", "--input", sheet, "--out", out, "--chunk-len", CHUNK,
                     "--chromosomes", "all")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def store(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "two.zarr"
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture
def validate_json(run_cli):
    """validate_json(store, *options) → (exit code, the `validate --json` report)."""

    def run(store: Path, *extra: str) -> tuple[int, dict]:
        result = run_cli("validate", store, "--json", *extra)
        assert "Traceback" not in result.stderr
        return result.returncode, json.loads(result.stdout)

    return run


def test_sound_store_passes(store: Path, validate_json) -> None:
    code, report = validate_json(store)
    assert code == 0 and report["ok"] and report["chunks_decoded"] == 14


def test_deleted_chunk_is_caught_and_named(store: Path, validate_json) -> None:
    (store / "chr1" / "c" / "1" / "2").unlink()
    code, report = validate_json(store)
    assert code == 2
    text = "\n".join(report["problems"])
    assert "sample 'beta', array 'chr1'" in text and "alpha" not in text


def test_truncated_chunk_is_caught_and_named(store: Path, validate_json) -> None:
    chunk = store / "chr2" / "c" / "0" / "1"
    chunk.write_bytes(chunk.read_bytes()[:20])
    code, report = validate_json(store)
    assert code == 2
    text = "\n".join(report["problems"])
    assert "sample 'alpha', array 'chr2'" in text
    assert "chunk c/0/1 cannot be decoded" in text and "beta" not in text


def test_swapped_chunks_between_samples_are_caught_and_named(store: Path, validate_json) -> None:
    a, b = store / "chr1" / "c" / "0" / "1", store / "chr1" / "c" / "1" / "1"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    assert data_a != data_b
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    code, report = validate_json(store)
    assert code == 2
    text = "\n".join(report["problems"])
    assert "sample 'alpha', array 'chr1'" in text and "sample 'beta', array 'chr1'" in text


def test_swapped_chunks_within_a_row_are_caught(store: Path, validate_json) -> None:
    """Same sums, different positions: the digest (column, CRC) still tells."""
    a, b = store / "chr1" / "c" / "0" / "0", store / "chr1" / "c" / "0" / "1"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    code, report = validate_json(store)
    assert code == 2 and "sample 'alpha', array 'chr1'" in "\n".join(report["problems"])


def test_quick_checks_structure_only(store: Path, validate_json) -> None:
    (store / "chr1" / "c" / "1" / "2").unlink()  # content damage: not quick's business
    code, report = validate_json(store, "--quick")
    assert code == 0 and report["quick"] and report["chunks_decoded"] == 0
    (store / "chr2" / "zarr.json").unlink()  # structure damage: quick catches it
    code, report = validate_json(store, "--quick")
    assert code == 2 and "array 'chr2': zarr.json is missing" in "\n".join(report["problems"])


def test_quick_catches_incomplete_samples(store: Path, validate_json) -> None:
    import zarr
    from zarr.storage import LocalStore

    group = zarr.open_group(LocalStore(store), mode="r+")
    group["metadata"]["completed"][1] = False
    code, report = validate_json(store, "--quick")
    assert code == 2 and "sample 'beta' is not complete" in "\n".join(report["problems"])


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    out = []
    for i, name in enumerate(("alpha", "beta")):
        bam = write_bam(tmp_path / f"{name}.bam", random_reads(30 + i, 300, CONTIGS), CONTIGS)
        part = tmp_path / f"{name}.zarr"
        extract_here(bam, part, name, chunk_len=CHUNK)
        out.append(part)
    return out


@pytest.mark.parametrize("damage", ["altered", "deleted", "swapped_in"])
@pytest.mark.parametrize("copy", [False, True], ids=["link", "copy"])
def test_merge_refuses_parts_changed_after_extraction(
    parts, tmp_path, damage, copy, run_cli
) -> None:
    alpha, beta = parts
    chunk = alpha / "chr1" / "c" / "0" / "1"
    if damage == "altered":
        data = bytearray(chunk.read_bytes())
        data[-1] ^= 0x01
        chunk.write_bytes(bytes(data))
    elif damage == "deleted":
        chunk.unlink()
    else:  # a valid chunk of another sample: decodes fine, only the digest tells
        shutil.copyfile(beta / "chr1" / "c" / "0" / "1", chunk)
    out = tmp_path / "merged.zarr"
    result = run_cli("merge", alpha, beta, "--out", out, *(["--copy"] if copy else []))
    text = assert_clean_refusal(
        result, f"{out}: not published, the merge check failed: sample 'alpha', array 'chr1'",
        "fix: re-extract that sample",
    )  # fmt: skip
    assert "beta" not in text
    assert not out.exists() and leftovers(tmp_path, out.name) == []
