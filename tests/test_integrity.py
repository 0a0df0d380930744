"""Integrity: `bamstore validate` catches and names a lost, truncated or swapped chunk and
every departure from the layout; `--quick` checks structure only; merge refuses to publish
parts whose chunks changed after extraction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import zarr
from bamfactory import random_reads, write_bam
from support import (
    assert_clean_refusal,
    extract_here,
    leftovers,
    write_samplesheet,
)

from bamstore import layout
from bamstore.engine.store import read_store_info
from bamstore.engine.validate import validate_store

CONTIGS = [("chr1", 2000), ("chr2", 1500)]
CHUNK = 500  # 4 + 3 chunks per sample and array
DIGEST_MISMATCH = "chunk files do not match what extraction wrote"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, run_cli) -> Path:
    folder = tmp_path_factory.mktemp("integrity")
    rows = []
    for i, (name, strand) in enumerate((("alpha", ""), ("beta", ""), ("gamma", "F"))):
        bam = write_bam(folder / f"{name}.bam", random_reads(20 + i, 400, CONTIGS), CONTIGS)
        rows.append((name, bam, strand))
    sheet = write_samplesheet(folder / "s.csv", rows, header="sample,bam,strandedness")
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
    chunk_files = [p for p in store.rglob("c/*/*") if "metadata" not in p.parts]
    assert code == 0 and report["ok"] and report["problems"] == []
    assert report["chunks_decoded"] == len(chunk_files) > 21  # 7 per array and sample, or fewer
    assert (report["samples"], report["contigs"]) == (3, 2)
    report = validate_store(store, threads=2)  # the same in-process, on threads
    assert report.ok and report.chunks_decoded == len(chunk_files)


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
    chunk = store / "chr1" / "c" / "1" / "2"
    data = chunk.read_bytes()
    chunk.write_bytes(data[:-3] + b"xyz")  # content damage: not quick's business
    code, report = validate_json(store, "--quick")
    assert code == 0 and report["quick"] and report["chunks_decoded"] == 0
    chunk.unlink()  # a chunk the record lists is gone: quick names it, decoding nothing
    code, report = validate_json(store, "--quick")
    assert code == 2 and report["chunks_decoded"] == 0
    assert report["problems"] == [
        "sample 'beta', array 'chr1': chunk file(s) chr1/c/1/2 missing: the record lists them"
    ]
    chunk.write_bytes(data)
    info = read_store_info(store)
    assert info.record is not None
    gaps = [  # (sample, row, array, a column in range that the record does not list)
        (name, row, array_row.array, min(gap))
        for row, name in enumerate(info.sample_names)
        for array_row in info.record.samples[name].rows(info.attrs.contig_names, True)
        if (
            gap := set(
                range(
                    layout.n_chunks(
                        dict(info.contigs)[array_row.array.split("_")[0]], info.chunk_len
                    )
                )
            )
            - layout.parse_columns(array_row.columns or "")
        )
    ]
    name, row, array, unlisted = gaps[0]
    extra = store / array / "c" / str(row) / str(unlisted)
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_bytes(data)
    code, report = validate_json(store, "--quick")
    assert report["problems"] == [
        f"sample {name!r}, array {array!r}: chunk file(s) {array}/c/{row}/{unlisted} not in the "
        "record"
    ]
    extra.unlink()
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


def test_deleted_strand_chunk_is_caught_and_named(store: Path, validate_json, read_rows) -> None:
    recorded = read_store_info(store).record.samples["gamma"].rev_sums[1]  # type: ignore[union-attr]
    next((store / "chr2_rev" / "c" / "2").iterdir()).unlink()
    left = int(read_rows(store, "chr2_rev")[2].sum())
    code, report = validate_json(store)
    assert code == 2
    gone = sorted(
        set(layout.parse_columns(read_store_info(store).record.samples["gamma"].rev_columns[1]))  # type: ignore[union-attr]
        - {int(p.name) for p in (store / "chr2_rev" / "c" / "2").iterdir()}
    )
    assert report["problems"] == [
        f"sample 'gamma', array 'chr2_rev': chunk file(s) chr2_rev/c/2/{gone[0]} missing: the "
        "record lists them"
    ]
    assert left < recorded


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("hash", "sample_names_hash does not match sample_names (QuantNado refuses to open this)"),
        ("extra_member", "unexpected root member 'notes' (QuantNado treats every root member as "
         "a contig)"),
        ("shape", "array 'chr2': metadata differs from the layout in shape"),
        ("n_samples", "root attribute 'n_samples' is 2, but the layout gives 3"),
        ("n_samples_null", "root attribute 'n_samples' is none, but the layout gives 3"),
        ("record", "sample 'beta': metadata/total_reads is 0 but extraction counted "),
    ],
)  # fmt: skip
def test_layout_problems_are_reported(store: Path, validate_json, damage: str, problem: str):
    root = store / "zarr.json"
    doc = json.loads(root.read_text())
    if damage == "hash":
        doc["attributes"]["sample_names_hash"] = "0" * 16
    elif damage == "n_samples":
        doc["attributes"]["n_samples"] = 2
    elif damage == "n_samples_null":  # a message says none, never Python's None
        doc["attributes"]["n_samples"] = None
    elif damage == "extra_member":
        (store / "notes").mkdir()
    elif damage == "record":
        zarr.open_group(str(store), mode="r+")["metadata"]["total_reads"][1] = 0
    else:
        arr = json.loads((store / "chr2" / "zarr.json").read_text())
        arr["shape"] = [3, 1501]
        (store / "chr2" / "zarr.json").write_text(json.dumps(arr))
    root.write_text(json.dumps(doc))
    code, report = validate_json(store, "--quick")
    assert code == 2
    assert len(report["problems"]) == 1 and report["problems"][0].startswith(problem), report
