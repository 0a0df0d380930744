"""Growing a cohort: `bamstore merge --out NEW COHORT PARTS...` and `--replace COHORT PARTS...`
give the store a fresh build of every sample gives (arrays, sample order, sample_names_hash,
completed, metadata as the union of columns with empty values where a sample has none), in
either layout; the cohort's chunk or shard files are hard-linked, never copied; a duplicate
sample is refused with one line; a killed or failed append leaves the cohort as it was.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from support import (
    TEST_DATA,
    assert_clean_refusal,
    chunk_files,
    cli_argv,
    leftovers,
    write_samplesheet,
)

from bamstore import layout
from bamstore.engine.build import build_store
from bamstore.engine.extract import ExtractOptions
from bamstore.engine.merge import append_samples, merge_stores
from bamstore.engine.store import read_store_info
from bamstore.engine.validate import validate_store
from bamstore.errors import InputError

OLD = [("chip_a", "treated", "1"), ("chip_b", "control", "1")]  # sample, condition, replicate
NEW = [("atac_se", "treated", "b2"), ("rna_r", "control", "b2")]  # sample, condition, batch
STRANDED = {"rna_r": "R"}


def sheet(path: Path, rows: list[tuple[str, ...]], columns: list[str]) -> Path:
    """A samplesheet of the bundled BAMs with metadata `columns` (values from `rows`)."""
    body = [
        (name, TEST_DATA / f"{name}.bam", STRANDED.get(name, ""), *values) for name, *values in rows
    ]
    return write_samplesheet(path, body, ",".join(["sample", "bam", "strandedness", *columns]))


def build(sheet_path: Path, out: Path, shard: bool) -> Path:
    options = ExtractOptions(chunk_len=4096, chromosomes="all", shard=shard)
    build_store([sheet_path], out, options, jobs=1)
    return out


def everything(store: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Root attributes without the BAM paths and the version, and every array (metadata too)."""
    group = zarr.open_group(str(store), mode="r")
    attrs = json.loads(json.dumps(dict(group.attrs)))
    for record in attrs["bamstore"]["samples"].values():
        record["source"].pop("path")
    arrays = {name: np.asarray(a[...]) for name, a in group.arrays()}
    arrays |= {f"metadata/{n}": np.asarray(a[...]) for n, a in group["metadata"].arrays()}
    return attrs, arrays


def assert_same(grown: Path, fresh: Path) -> None:
    (attrs, arrays), (want_attrs, want_arrays) = everything(grown), everything(fresh)
    assert attrs == want_attrs
    assert sorted(arrays) == sorted(want_arrays)
    for name, values in arrays.items():
        np.testing.assert_array_equal(values, want_arrays[name], err_msg=name)


@pytest.fixture(scope="module", params=[False, True], ids=["unsharded", "sharded"])
def cohort(request, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """old.zarr (2 samples), new.zarr (2 other samples, other metadata columns), and fresh.zarr:
    one build of all four from one sheet whose missing values are empty."""
    folder = tmp_path_factory.mktemp("cohort")
    shard = request.param
    old = build(
        sheet(folder / "old.csv", OLD, ["condition", "replicate"]), folder / "old.zarr", shard
    )
    new = build(sheet(folder / "new.csv", NEW, ["condition", "batch"]), folder / "new.zarr", shard)
    rows = [(s, c, r, "") for s, c, r in OLD] + [(s, c, "", b) for s, c, b in NEW]
    everyone = sheet(folder / "all.csv", rows, ["condition", "replicate", "batch"])
    return {"old": old, "new": new, "fresh": build(everyone, folder / "fresh.zarr", shard)}


def test_append_to_a_new_store_equals_a_fresh_build(cohort, tmp_path: Path, run_cli) -> None:
    before = chunk_files(cohort["old"])
    grown = tmp_path / "grown.zarr"
    done = run_cli("merge", "--out", grown, cohort["old"], cohort["new"])
    assert done.returncode == 0, done.stderr
    assert_same(grown, cohort["fresh"])
    attrs = everything(grown)[0]
    assert attrs["sample_names"] == [s for s, *_ in OLD + NEW]
    assert attrs["metadata_batch"] == ["", "", "b2", "b2"]
    assert attrs["metadata_replicate"] == ["1", "1", "", ""]
    assert bool(np.all(read_store_info(grown).metadata_arrays.completed))
    assert validate_store(grown).ok
    # the cohort's files are the grown store's (hard links: same inode, one more name), and
    # the cohort is untouched
    after = chunk_files(grown)
    assert chunk_files(cohort["old"]) == before
    for name, (inode, _) in before.items():
        assert after[name][0] == inode, name
        assert (cohort["old"] / name).stat().st_nlink >= 2
    assert read_store_info(grown).sharded is read_store_info(cohort["old"]).sharded


def test_replace_grows_the_cohort_in_place(cohort, tmp_path: Path, run_cli) -> None:
    store = tmp_path / "cohort.zarr"
    assert merge_stores([cohort["old"]], store).out == store  # a copy of old, by links
    inodes = {name: ino for name, (ino, _) in chunk_files(store).items()}
    done = run_cli("merge", "--replace", store, cohort["new"])
    assert done.returncode == 0, done.stderr
    assert_same(store, cohort["fresh"])
    assert leftovers(tmp_path, store.name) == []
    after = chunk_files(store)
    assert all(after[name][0] == inode for name, inode in inodes.items())


def test_replace_without_new_stores_is_refused(cohort, tmp_path: Path, run_cli) -> None:
    """`merge --replace COHORT` with nothing to add: an error, and the cohort is not rewritten
    (the same folder, the same files)."""
    store = tmp_path / "cohort.zarr"
    merge_stores([cohort["old"]], store)
    folder, files = store.stat().st_ino, chunk_files(store)
    root = (store / layout.ZARR_JSON).stat()
    done = run_cli("merge", "--replace", store)
    assert_clean_refusal(done, f"{store}: no stores to add to it", "fix: give the stores of")
    assert store.stat().st_ino == folder and chunk_files(store) == files
    after = (store / layout.ZARR_JSON).stat()
    assert (after.st_ino, after.st_mtime_ns) == (root.st_ino, root.st_mtime_ns)
    assert leftovers(tmp_path, store.name) == []


def test_duplicate_samples_are_refused_one_line_each(cohort, tmp_path: Path, run_cli) -> None:
    """Exit 2: a header line, then one line per sample already in the cohort; nothing written."""
    out = tmp_path / "twice.zarr"
    done = run_cli("merge", "--out", out, cohort["fresh"], cohort["new"])
    assert_clean_refusal(done, "'atac_se' is also in", "'rna_r' is also in", lines=3)
    assert not out.exists() and leftovers(tmp_path, out.name) == []
    store = tmp_path / "cohort.zarr"
    merge_stores([cohort["fresh"]], store)
    before = chunk_files(store)
    done = run_cli("merge", "--replace", store, cohort["new"])
    assert_clean_refusal(done, "'atac_se' is also in", "'rna_r' is also in", lines=3)
    assert chunk_files(store) == before


def test_an_append_that_fails_before_publishing_keeps_the_cohort(
    cohort, tmp_path: Path, monkeypatch
) -> None:
    """A fault after every row is placed, as the root attributes are written: the last step
    before the swap. The cohort is the one it was, readable, and nothing is left beside it."""
    store = tmp_path / "cohort.zarr"
    merge_stores([cohort["old"]], store)
    before, attrs = chunk_files(store), everything(store)[0]
    from bamstore.engine.writer import StoreWriter

    def fail(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StoreWriter, "write_root_attributes", fail)
    with pytest.raises(OSError):
        append_samples(store, [cohort["new"]])
    monkeypatch.undo()
    assert chunk_files(store) == before and everything(store)[0] == attrs
    assert validate_store(store).ok
    assert leftovers(tmp_path, store.name) == []


def test_an_append_killed_mid_merge_keeps_the_cohort(cohort, tmp_path: Path, run_cli) -> None:
    """SIGKILL of `merge --replace` while it places rows (--copy, so that it takes long enough
    to be caught): the cohort is intact and readable, and the next append succeeds."""
    store = tmp_path / "cohort.zarr"
    merge_stores([cohort["old"]], store)
    before, attrs = chunk_files(store), everything(store)[0]
    killed = 0
    for delay in (0.0, 0.05, 0.2):
        proc = subprocess.Popen(cli_argv("merge", "--replace", store, cohort["new"], "--copy"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if any(".tmp-" in name for name in leftovers(tmp_path, store.name)):
                break
            time.sleep(0.001)
        time.sleep(delay)
        killed += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert chunk_files(store) == before and everything(store)[0] == attrs, delay
        assert validate_store(store, quick=True).ok
    assert killed >= 1, "no kill landed while the merge was running"
    done = run_cli("merge", "--replace", store, cohort["new"])
    assert done.returncode == 0, done.stderr
    assert_same(store, cohort["fresh"])
    assert leftovers(tmp_path, store.name) == []


def test_replace_refuses_a_store_bamstore_did_not_write(tmp_path: Path, cohort) -> None:
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w")
    with pytest.raises(InputError):
        append_samples(foreign, [cohort["new"]])
    assert (foreign / layout.ZARR_JSON).exists()
