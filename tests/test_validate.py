"""validate: sound stores pass; a store with a lost chunk, or a broken layout, fails by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bamstore.merge import merge_stores
from bamstore.validate import validate_store


@pytest.fixture
def store(random_bam: Path, random_se_bam: Path, extract, tmp_path: Path) -> Path:
    parts = [
        extract(random_bam, "a", chunk_len=5000, strandedness="F"),
        extract(random_se_bam, "b", chunk_len=5000),
    ]
    return merge_stores(parts, tmp_path / "v.zarr").out


def test_sound_store_passes(store: Path) -> None:
    report = validate_store(store)
    assert report.ok, report.problems
    assert report.chunks_decoded > 0 and report.samples == 2 and report.contigs == 3


def test_deleted_chunk_is_caught_and_named(store: Path) -> None:
    victim = sorted((store / "chr1" / "c" / "1").iterdir())[2]
    victim.unlink()
    report = validate_store(store)
    assert not report.ok
    text = "\n".join(report.problems)
    assert "'b'" in text and "'chr1'" in text
    assert validate_store(store, quick=True).ok  # structure alone cannot see it


def test_deleted_strand_chunk_is_caught(store: Path) -> None:
    next((store / "chr2_rev" / "c" / "0").iterdir()).unlink()
    problems = validate_store(store).problems
    assert any("'chr2_rev'" in p and "'a'" in p for p in problems), problems


@pytest.mark.parametrize("damage", ["hash", "extra_member", "incomplete", "shape"])
def test_layout_problems_are_reported(store: Path, damage: str) -> None:
    root = store / "zarr.json"
    doc = json.loads(root.read_text())
    if damage == "hash":
        doc["attributes"]["sample_names_hash"] = "0" * 16
        root.write_text(json.dumps(doc))
        expected = "sample_names_hash"
    elif damage == "extra_member":
        (store / "notes").mkdir()
        expected = "unexpected root member 'notes'"
    elif damage == "incomplete":
        import zarr

        zarr.open_group(str(store), mode="r+")["metadata"]["completed"][1] = False
        expected = "not complete"
    else:
        arr_doc = json.loads((store / "chr3" / "zarr.json").read_text())
        arr_doc["shape"] = [2, 701]
        (store / "chr3" / "zarr.json").write_text(json.dumps(arr_doc))
        expected = "array 'chr3'"
    report = validate_store(store, quick=True)
    assert any(expected in p for p in report.problems), report.problems
