"""export --samples a,b|all -o DIR: one track per sample, the same bytes (bedGraph) or values
(bigWig) as exporting each alone, `--threads` at a time; sample names from a store made
elsewhere are untrusted, and nothing is written outside DIR."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pybigtools
import pytest
from support import assert_clean_refusal

from bamstore.api import BamStore
from bamstore.simulate import make_bam

CONTIGS = [("chr1", 3000), ("chr2", 700)]
NAMES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    bams = [
        make_bam(folder / f"{name}.bam", 500, CONTIGS, seed=seed, threads=1)
        for seed, name in enumerate(NAMES, start=91)
    ]
    out = folder / "cov.zarr"
    BamStore.from_bam_files(bams, store_path=out, chunk_len=64, filter_chromosomes=False)
    return out


@pytest.fixture(scope="module")
def hostile(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store with sample names a store made elsewhere may have: `../x` and `a/b` (no
    record, as QuantNado writes none)."""
    import shutil

    copy = tmp_path_factory.mktemp("hostile") / "cov.zarr"
    shutil.copytree(store, copy)
    doc = json.loads((copy / "zarr.json").read_text())
    attrs = doc["attributes"]
    names = ["../x", "a/b", "ok"]
    attrs["sample_names"] = names
    attrs["stranded"] = dict.fromkeys(names, "")
    attrs.pop("sample_names_hash", None)
    attrs.pop("bamstore", None)
    for key in [k for k in attrs if k.startswith("metadata_")]:
        del attrs[key]
    (copy / "zarr.json").write_text(json.dumps(doc))
    return copy


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("fmt", ["bedgraph", "bigwig"])
def test_every_sample_equals_its_own_export(store: Path, tmp_path: Path, run_cli, fmt: str):
    folder = tmp_path / "tracks"
    done = run_cli(
        "export",
        store,
        "--samples",
        "all",
        "--format",
        fmt,
        "--normalise",
        "bpm",
        "--threads",
        2,
        "-o",
        folder,
    )
    assert done.returncode == 0, done.stderr
    suffix = ".bw" if fmt == "bigwig" else ".bedGraph"
    assert tree(folder) == [f"{n}{suffix}" for n in NAMES]
    for name in NAMES:
        alone = tmp_path / f"alone{suffix}"
        one = run_cli(
            "export", store, "--sample", name, "--format", fmt, "--normalise", "bpm", "-o", alone
        )
        assert one.returncode == 0, one.stderr
        if fmt == "bedgraph":
            assert (folder / f"{name}{suffix}").read_bytes() == alone.read_bytes()
            continue
        for c, n in CONTIGS:
            with (
                pybigtools.open(str(folder / f"{name}{suffix}")) as got,
                pybigtools.open(str(alone)) as want,
            ):
                np.testing.assert_array_equal(
                    got.values(c, 0, n, fillna=None), want.values(c, 0, n, fillna=None)
                )
    assert done.stderr.strip().startswith(f"{folder}: 3 {fmt} track(s), ")


def test_chosen_samples_and_the_api(store: Path, tmp_path: Path) -> None:
    results = BamStore.open(store).export_tracks(
        tmp_path / "t", ["c", "a"], fmt="bedgraph", threads=2
    )
    assert [r.sample for r in results] == ["c", "a"]
    assert tree(tmp_path / "t") == ["a.bedGraph", "c.bedGraph"]


def test_unsafe_sample_names_are_refused(hostile: Path, tmp_path: Path, run_cli) -> None:
    before = tree(tmp_path)
    folder = tmp_path / "tracks"
    done = run_cli("export", hostile, "--samples", "all", "--format", "bedgraph", "-o", folder)
    assert_clean_refusal(done)
    assert done.stderr.strip() == (
        f"bamstore: error: {hostile}: sample '../x' cannot name a file in {folder}: it "
        "contains a path separator; fix: export it alone with --sample NAME -o FILE"
    )
    assert tree(tmp_path) == before  # nothing written, not even the folder
    slash = run_cli("export", hostile, "--samples", "a/b", "--format", "bedgraph", "-o", folder)
    assert_clean_refusal(slash, "sample 'a/b' cannot name a file")
    ok = run_cli("export", hostile, "--samples", "ok", "--format", "bedgraph", "-o", folder)
    assert ok.returncode == 0, ok.stderr
    assert tree(folder) == ["ok.bedGraph"]
    alone = run_cli(
        "export", hostile, "--sample", "../x", "--format", "bedgraph", "-o", tmp_path / "x.bg"
    )
    assert alone.returncode == 0, alone.stderr  # the user names the file: no name from the store


def test_folder_refusals(store: Path, tmp_path: Path, run_cli) -> None:
    outside = tmp_path / "outside.bedGraph"
    outside.write_text("keep\n")
    folder = tmp_path / "tracks"
    folder.mkdir()
    os.symlink(outside, folder / "a.bedGraph")
    cases = [
        (
            ["--samples", "a", "-o", folder],
            f"{folder}/a.bedGraph: leads outside {folder} (to {outside}); fix: remove it, or "
            "choose -o DIR",
        ),
        (
            ["--samples", "a", "-o", outside],
            f"{outside}: is not a folder; fix: give a folder for the tracks (-o DIR)",
        ),
        (["--samples", "a", "-o", "-"], "-: --samples writes a folder of tracks; fix: give -o DIR"),
        (
            ["--samples", "a", "--sample", "b", "-o", folder],
            "give --sample NAME (one track, -o FILE) or --samples a,b|all (-o DIR); fix: choose "
            "one of them",
        ),
        (
            ["-o", folder],
            "give --sample NAME (one track, -o FILE) or --samples a,b|all (-o DIR); fix: choose "
            "one of them",
        ),
        (
            ["--samples", "", "-o", folder],
            "--samples '' names no sample; fix: give comma-separated sample names, or leave "
            "--samples out for every sample",
        ),
        (
            ["--samples", "a", "-o", tmp_path / "no" / "such"],
            f"{tmp_path}/no/such: its parent folder does not exist; fix: create it first",
        ),
        (
            ["--samples", "a", "-o", store / "inside"],
            f"{store}/inside: is inside the Zarr store {store}, which must not be written into; "
            "fix: choose an output outside the store",
        ),
    ]
    for args, message in cases:
        done = run_cli("export", store, "--format", "bedgraph", *args)
        assert_clean_refusal(done)
        assert done.stderr.strip() == f"bamstore: error: {message}", args
    assert outside.read_text() == "keep\n"
    assert not (store / "inside").exists()
