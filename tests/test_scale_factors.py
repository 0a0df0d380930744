"""Per-sample scale factors, stored: given at extraction (`extract --scale-factor`, the
samplesheet's `scale_factor` column), shown and set with `bamstore scale-factors`, read and set
through `BamStore`, and kept by merge, appending and `build --resume`.

What a store holds is read back through plain JSON (the root zarr.json), not through the code
under test; a refused change must leave zarr.json byte for byte as it was.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import TEST_DATA, assert_clean_refusal, chunk_files, write_samplesheet

from bamstore.api import BamStore, ReadOnlyStoreError
from bamstore.engine.scale_factors import set_scale_factors
from bamstore.errors import InputError

CHIP_A, CHIP_B, RNA_R = (TEST_DATA / f"{n}.bam" for n in ("chip_a", "chip_b", "rna_r"))


def recorded(store: Path) -> dict[str, float | None]:
    """sample -> scale factor as the root zarr.json holds it (None: unset)."""
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]
    return {
        name: attrs["bamstore"]["samples"][name].get("scale_factor")
        for name in attrs["sample_names"]
    }


def extract(run_cli, bam: Path, sample: str, out: Path, *args: object) -> Path:
    done = run_cli("extract", "--bam", bam, "--sample", sample, "--out", out, *args)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory, run_cli) -> Path:
    """Three per-sample stores, a (0.5), b (none) and r (2e-3, stranded), and their merge."""
    folder = tmp_path_factory.mktemp("parts")
    a = extract(run_cli, CHIP_A, "a", folder / "a.zarr", "--scale-factor", "0.5")
    b = extract(run_cli, CHIP_B, "b", folder / "b.zarr")
    r = extract(run_cli, RNA_R, "r", folder / "r.zarr", "--scale-factor", "2e-3", "--stranded", "R")
    done = run_cli("merge", a, b, r, "--out", folder / "cohort.zarr")
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture
def cohort(parts: Path, tmp_path: Path) -> Path:
    """A copy of the merged store of a, b and r, for this test to change."""
    return Path(shutil.copytree(parts / "cohort.zarr", tmp_path / "cohort.zarr"))


def test_extract_records_the_factor_and_merge_keeps_it(parts: Path) -> None:
    assert recorded(parts / "a.zarr") == {"a": 0.5}
    assert recorded(parts / "b.zarr") == {"b": None}
    assert recorded(parts / "cohort.zarr") == {"a": 0.5, "b": None, "r": 0.002}


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "1e999", ""])
def test_extract_refuses_a_bad_factor(tmp_path: Path, run_cli, value: str) -> None:
    out = tmp_path / "x.zarr"
    done = run_cli(
        "extract", "--bam", CHIP_A, "--sample", "x", "--out", out, "--scale-factor", value
    )
    if value == "":  # empty: no factor, as in a samplesheet
        assert done.returncode == 0, done.stderr
        assert recorded(out) == {"x": None}
        return
    assert_clean_refusal(done, f"--scale-factor: scale factor '{value}' is not a positive finite")
    assert not out.exists()


def test_scale_factors_prints_them_in_store_order(cohort: Path, run_cli) -> None:
    done = run_cli("scale-factors", cohort)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "a\t0.5\nb\tNA\nr\t0.002\n"


def test_set_replaces_the_listed_factors_in_one_rewrite(
    cohort: Path, tmp_path: Path, run_cli
) -> None:
    """Listed samples get their new factor (NA: none), the others keep theirs; zarr.json is
    replaced once, no chunk file is touched, and the store stays sound."""
    chunks = chunk_files(cohort)
    doc = cohort / "zarr.json"
    before = doc.stat().st_ino
    factors = tmp_path / "factors.tsv"
    factors.write_text("# spike-in factors\nb\t1.75\n\na\tNA\n")
    done = run_cli("scale-factors", cohort, "--set", factors)
    assert done.returncode == 0, done.stderr
    assert recorded(cohort) == {"a": None, "b": 1.75, "r": 0.002}
    assert doc.stat().st_ino != before  # written beside and renamed over: one atomic step
    assert chunk_files(cohort) == chunks
    assert run_cli("validate", cohort).returncode == 0
    # what `scale-factors` prints is what `--set` reads
    printed = tmp_path / "printed.tsv"
    printed.write_text(run_cli("scale-factors", cohort).stdout)
    assert run_cli("scale-factors", cohort, "--set", printed).returncode == 0
    assert recorded(cohort) == {"a": None, "b": 1.75, "r": 0.002}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "b\t1\nzz\t2\n",
            [":2: sample 'zz' is not in the store; fix: use one of its samples (a, b, r)"],
        ),
        ("b\t0\n", [":1: scale factor '0' is not a positive finite number; fix: give a positive"]),
        ("b\t1,5\n", [":1: scale factor '1,5' is not a positive finite number"]),
        ("b 1\n", [":1: has 1 tab-separated field(s), not 2; fix: one line per sample"]),
        ("b\t1\tx\n", [":1: has 3 tab-separated field(s), not 2"]),
        ("b\t1\nb\t2\n", [":2: sample 'b' is also on line 1; fix: list it once"]),
        ("\t1\n", [":1: sample name is empty"]),
        ("# nothing\n", [": lists no scale factors"]),
        (
            "a\t-2\nb\t2\nnope\t1\nr\n",
            [
                "3 problem(s): no scale factor of",
                ":1: scale factor '-2' is not a positive finite number",
                ":4: has 1 tab-separated field(s), not 2",
                ":3: sample 'nope' is not in the store",
            ],
        ),
    ],
)
def test_set_refuses_bad_lines_and_changes_nothing(
    cohort: Path, tmp_path: Path, run_cli, text: str, expected: list[str]
) -> None:
    doc = (cohort / "zarr.json").read_bytes()
    factors = tmp_path / "factors.tsv"
    factors.write_text(text)
    done = run_cli("scale-factors", cohort, "--set", factors)
    lines = [line for line in expected if line.startswith(":")]
    errors = assert_clean_refusal(done, *expected, lines=len(lines) + (len(lines) > 1))
    for line in lines:
        assert f"{factors}{line}" in errors, errors
    assert (cohort / "zarr.json").read_bytes() == doc


def test_set_refuses_what_is_not_a_store_of_ours(tmp_path: Path, run_cli, cohort: Path) -> None:
    factors = tmp_path / "f.tsv"
    factors.write_text("a\t1\n")
    assert_clean_refusal(
        run_cli("scale-factors", tmp_path / "none.zarr", "--set", factors), "store does not exist"
    )
    assert_clean_refusal(
        run_cli("scale-factors", cohort, "--set", tmp_path / "missing.tsv"),
        "missing.tsv: scale-factors file does not exist",
    )
    # a store without bamstore's record (as QuantNado writes them) has no records to hold them
    doc = json.loads((cohort / "zarr.json").read_text())
    del doc["attributes"]["bamstore"]
    (cohort / "zarr.json").write_text(json.dumps(doc))
    done = run_cli("scale-factors", cohort)
    assert done.returncode == 0 and done.stdout == "a\tNA\nb\tNA\nr\tNA\n", done.stderr
    assert_clean_refusal(
        run_cli("scale-factors", cohort, "--set", factors),
        "has no sample records to hold scale factors: it has no 'bamstore' record",
    )


def test_a_symlinked_store_is_set_where_it_lies(cohort: Path, tmp_path: Path, run_cli) -> None:
    link = tmp_path / "link.zarr"
    link.symlink_to(cohort)
    factors = tmp_path / "f.tsv"
    factors.write_text("b\t4\n")
    assert run_cli("scale-factors", link, "--set", factors).returncode == 0
    assert link.is_symlink() and recorded(cohort)["b"] == 4.0


def test_append_and_merge_again_keep_every_factor(cohort: Path, tmp_path: Path, run_cli) -> None:
    """Growing a cohort in place (`merge --replace`) keeps its factors and the new parts'."""
    new = extract(run_cli, CHIP_B, "c", tmp_path / "c.zarr", "--scale-factor", "3")
    done = run_cli("merge", "--replace", cohort, new)
    assert done.returncode == 0, done.stderr
    assert recorded(cohort) == {"a": 0.5, "b": None, "r": 0.002, "c": 3.0}
    again = tmp_path / "again.zarr"
    d = extract(run_cli, CHIP_A, "d", tmp_path / "d.zarr")
    assert run_cli("merge", cohort, d, "--out", again).returncode == 0
    assert recorded(again) == {"a": 0.5, "b": None, "r": 0.002, "c": 3.0, "d": None}


def test_build_records_the_samplesheet_factors(tmp_path: Path, run_cli) -> None:
    """build takes each sample's factor from the sheet; --resume reuses a part whose factor
    changed (it changes no value) and records the new one."""
    sheet = write_samplesheet(
        tmp_path / "s.csv",
        [("a", CHIP_A, "0.25", "x"), ("b", CHIP_B, "", "y"), ("r", RNA_R, "NA", "z")],
        header="sample,bam,scale_factor,condition",
    )
    out = tmp_path / "built.zarr"
    done = run_cli("build", "--input", sheet, "--out", out, "--keep-parts")
    assert done.returncode == 0, done.stderr
    assert recorded(out) == {"a": 0.25, "b": None, "r": None}
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]
    assert "metadata_scale_factor" not in attrs and attrs["metadata_condition"] == ["x", "y", "z"]
    sheet = write_samplesheet(
        tmp_path / "s.csv",
        [("a", CHIP_A, "0.25", "x"), ("b", CHIP_B, "8", "y"), ("r", RNA_R, "", "z")],
        header="sample,bam,scale_factor,condition",
    )
    done = run_cli("build", "--input", sheet, "--out", out, "--overwrite", "--resume")
    assert done.returncode == 0, done.stderr
    assert "(0 extracted, 3 reused)" in done.stderr, done.stderr
    assert recorded(out) == {"a": 0.25, "b": 8.0, "r": None}
    assert run_cli("validate", out).returncode == 0


def test_a_bad_samplesheet_factor_is_one_line_per_sample(tmp_path: Path, run_cli) -> None:
    sheet = write_samplesheet(
        tmp_path / "s.csv",
        [("a", CHIP_A, "-1"), ("b", CHIP_B, "0.5"), ("c", RNA_R, "x")],
        header="sample,bam,scale_factor",
    )
    for command in (
        ["check-samplesheet", sheet],
        ["build", "--input", sheet, "--out", tmp_path / "o.zarr"],
    ):
        text = assert_clean_refusal(run_cli(*command), lines=3)
        assert f"{sheet}:2: scale factor '-1' is not a positive finite number" in text
        assert f"{sheet}:4: scale factor 'x' is not a positive finite number" in text
    assert not (tmp_path / "o.zarr").exists()


# ---------------------------------------------------------------------------- Python API


def test_api_reads_and_sets_scale_factors(cohort: Path) -> None:
    store = BamStore.open(cohort)
    factors = store.scale_factors
    assert isinstance(factors, pd.Series) and factors.name == "scale_factor"
    assert factors.index.tolist() == ["a", "b", "r"]
    assert factors["a"] == 0.5 and math.isnan(factors["b"]) and factors["r"] == 0.002
    with pytest.raises(ReadOnlyStoreError):
        store.set_scale_factors({"b": 1.0})
    writable = BamStore.open(cohort, read_only=False)
    writable.set_scale_factors({"b": np.float32(1.5), "a": None})
    assert writable.scale_factors.tolist()[1:] == [1.5, 0.002]
    assert math.isnan(writable.scale_factors["a"])
    writable.set_scale_factors(pd.Series({"a": 7.0, "r": float("nan")}))
    assert recorded(cohort) == {"a": 7.0, "b": 1.5, "r": None}


@pytest.mark.parametrize(
    ("factors", "message"),
    [
        ({"zz": 1.0}, "sample 'zz' is not in the store"),
        ({"a": 0.0}, "scale factor 0.0 is not a positive finite number"),
        ({"a": -3}, "scale factor -3 is not a positive finite number"),
        ({"a": float("inf")}, "scale factor inf is not a positive finite number"),
        ({"a": "1.5"}, "scale factor '1.5' is not a number"),
        ({"a": True}, "scale factor True is not a number"),
    ],
)
def test_api_refuses_bad_factors_and_changes_nothing(cohort: Path, factors, message) -> None:
    doc = (cohort / "zarr.json").read_bytes()
    store = BamStore.open(cohort, read_only=False)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        store.set_scale_factors({"b": 2.0, **factors})
    assert (cohort / "zarr.json").read_bytes() == doc


def test_api_store_samples_not_counted_yet_have_no_factor(tmp_path: Path) -> None:
    """A store made empty by the API (samples filled later by process_samples) has no record
    for them yet: no factor, and setting one waits until the sample is counted."""
    store = BamStore(tmp_path / "empty.zarr", {"chr1": 1000}, ["s1", "s2"])
    assert store.scale_factors.isna().all()
    with pytest.raises(ValueError, match="sample 's1' has not been counted yet"):
        store.set_scale_factors({"s1": 2.0})
    with pytest.raises(InputError, match="has not been counted yet"):
        set_scale_factors(store.store_path, {"s1": 2.0})
