"""Merge: chunk files placed, never decoded; rows equal the parts; parts untouched; refusals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from bamfactory import RANDOM_CONTIGS
from support import TEST_DATA

from bamstore import layout
from bamstore.cli.common import SETTING_OPTIONS, in_flags
from bamstore.engine.merge import merge_stores
from bamstore.engine.store import read_store_info
from bamstore.engine.validate import validate_store
from bamstore.errors import InputError, OutputExistsError, SettingMismatchError


def _snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(path)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def parts(random_bam: Path, random_se_bam: Path, extract) -> list[Path]:
    return [
        extract(random_bam, "pe", chunk_len=5000),
        extract(random_se_bam, "se", chunk_len=5000),
        extract(random_bam, "pe_r", chunk_len=5000, strandedness="R"),
    ]


def test_merged_rows_equal_parts(parts: list[Path], tmp_path: Path, read_rows) -> None:
    before = [_snapshot(p) for p in parts]
    out = tmp_path / "merged.zarr"
    result = merge_stores(parts, out)
    assert result.sample_names == ["pe", "se", "pe_r"]
    info = read_store_info(out)
    assert info.sample_names == ["pe", "se", "pe_r"]
    for contig, _ in RANDOM_CONTIGS:
        merged = read_rows(out, contig)
        for row, part in enumerate(parts):
            np.testing.assert_array_equal(merged[row], read_rows(part, contig)[0])
        fwd, rev = read_rows(out, contig + "_fwd"), read_rows(out, contig + "_rev")
        assert not fwd[:2].any() and not rev[:2].any()  # unstranded samples: zero rows
        np.testing.assert_array_equal(fwd[2], read_rows(parts[2], contig + "_fwd")[0])
        np.testing.assert_array_equal(fwd[2] + rev[2], merged[2])
    assert info.stranded == {"pe": "", "se": "", "pe_r": "R"}
    totals = [int(read_store_info(p).metadata_arrays.total_reads[0]) for p in parts]
    assert info.metadata_arrays.total_reads.tolist() == totals
    assert validate_store(out).ok
    assert [_snapshot(p) for p in parts] == before, "merge modified a part"


def test_chunks_are_hard_links_or_copies(parts: list[Path], tmp_path: Path) -> None:
    linked = merge_stores(parts, tmp_path / "linked.zarr")
    copied = merge_stores(parts, tmp_path / "copied.zarr", copy=True)
    assert linked.chunks_linked > 0 and linked.chunks_copied == 0
    assert copied.chunks_copied == linked.chunks_linked and copied.chunks_linked == 0
    chunk = next((tmp_path / "linked.zarr" / "chr1" / "c" / "0").iterdir())
    assert chunk.stat().st_nlink >= 2
    copy = tmp_path / "copied.zarr" / "chr1" / "c" / "0" / chunk.name
    assert copy.stat().st_nlink == 1 and copy.read_bytes() == chunk.read_bytes()


def test_sample_order_as_given(parts: list[Path], tmp_path: Path, read_rows) -> None:
    out = merge_stores(list(reversed(parts)), tmp_path / "rev.zarr").out
    assert read_store_info(out).sample_names == ["pe_r", "se", "pe"]
    np.testing.assert_array_equal(read_rows(out, "chr1")[2], read_rows(parts[0], "chr1")[0])


def test_metadata_table_and_part_metadata(parts: list[Path], tmp_path: Path) -> None:
    table = {"pe": {"condition": "a", "batch": "1"}, "se": {"condition": "b"}, "zz": {"x": "1"}}
    info = read_store_info(merge_stores(parts, tmp_path / "m.zarr", metadata_tables=[table]).out)
    assert info.metadata_columns == {"condition": ["a", "b", ""], "batch": ["1", "", ""]}


def test_existing_output_refused_then_replaced(parts: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "m.zarr"
    merge_stores(parts[:1], out)
    with pytest.raises(OutputExistsError):
        merge_stores(parts, out)
    assert read_store_info(out).sample_names == ["pe"]
    merge_stores(parts, out, overwrite=True)
    assert read_store_info(out).sample_names == ["pe", "se", "pe_r"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.zarr")]
    assert leftovers == []


def test_failed_merge_keeps_existing_store(parts: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "m.zarr"
    merge_stores(parts[:1], out)
    before = _snapshot(out)
    victim = next((parts[1] / "chr1" / "c" / "0").iterdir())
    victim.write_bytes(victim.read_bytes()[:-3])  # damage a part after extraction
    with pytest.raises(InputError, match="merge check failed"):
        merge_stores(parts, out, overwrite=True)
    assert _snapshot(out) == before
    assert not any(p.name.startswith(".m.zarr.tmp") for p in tmp_path.iterdir())


def test_refuses_duplicates_and_mismatched_settings(random_bam, edge_bam, extract, tmp_path):
    a = extract(random_bam, "a", chunk_len=5000)
    problems = {
        "duplicate": extract(random_bam, "a", chunk_len=5000),
        "chunk_len": extract(random_bam, "b", chunk_len=4000),
        "min_mapq": extract(random_bam, "c", chunk_len=5000, min_mapq=5),
        "compression": extract(random_bam, "d", chunk_len=5000, compression="fast"),
        "contigs": extract(edge_bam, "e", chunk_len=5000),
    }
    first = f"the first part ({a})"
    expected = {
        "duplicate": f"sample 'a' is also in {a}; fix: merge each sample once; rename duplicates",
        "chunk_len": f"has chunk_len 4000, but {first} has 5000; fix: extract every sample "
        "with the same --chunk-len",
        "min_mapq": f"has min_mapq 5, but {first} has 0; fix: extract every sample with the "
        "same --min-mapq",
        "compression": f"has compression 'fast', but {first} has 'default'; fix: extract every "
        "sample with the same --compression",
        "contigs": f"has no contig 'chr1', which {first} has; fix: build all samples against "
        "the same genome",
    }
    for case, part in problems.items():
        with pytest.raises(InputError) as err:
            merge_stores([a, part], tmp_path / f"{case}.zarr")
        problem = err.value.problems[0]
        assert in_flags(problem).line() == f"{part}: {expected[case]}", case
        assert len(err.value.problems) == 1, err.value.problems
        assert not (tmp_path / f"{case}.zarr").exists()
        if case in ("chunk_len", "min_mapq", "compression"):  # the setting, by name
            assert isinstance(problem, SettingMismatchError) and problem.setting == case
            assert problem.fix == f"extract every sample with the same {case}"


def test_every_setting_has_the_flag_that_sets_it() -> None:
    """The CLI names each recorded setting by its flag: every setting has one, and each flag
    is an option of extract and of build."""
    import dataclasses

    from bamstore.cli import build, extract

    settings = {f.name for f in dataclasses.fields(layout.StoreSettings)}
    assert set(SETTING_OPTIONS) == settings
    for command in (extract, build):
        flags = {flag for param in command.params for flag in param.opts + param.secondary_opts}
        wrong = {s: o for s, o in SETTING_OPTIONS.items() if o.startswith("-") and o not in flags}
        assert not wrong, (command.name, wrong)


def test_merge_names_the_one_setting_that_differs(tmp_path, run_cli):
    """Parts counted with different read filters: one line naming the setting and both values,
    never the two settings records."""
    parts = []
    for name, mapq in (("a", "0"), ("b", "20")):
        out = tmp_path / f"{name}.zarr"
        done = run_cli("extract", "--bam", TEST_DATA / "chip_a.bam", "--sample", name,
                       "--out", out, "--min-mapq", mapq)  # fmt: skip
        assert done.returncode == 0, done.stderr
        parts.append(out)
    out = tmp_path / "m.zarr"
    done = run_cli("merge", *parts, "--out", out)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"bamstore: error: {parts[1]}: has min_mapq 20, but the first part ({parts[0]}) has 0; "
        "fix: extract every sample with the same --min-mapq"
    ]
    assert not out.exists()


def test_merge_mismatch_says_none_and_no_derived_setting(tmp_path, run_cli):
    """A value that is not set reads `none`, never Python's None; a mode that differs is one
    line, without a second about the coverage definition that follows from it."""
    parts = []
    for name, args in (("a", []), ("b", ["--mode", "fragments", "--extend", "100"])):
        out = tmp_path / f"{name}.zarr"
        done = run_cli("extract", "--bam", TEST_DATA / "chip_a.bam", "--sample", name,
                       "--out", out, *args)  # fmt: skip
        assert done.returncode == 0, done.stderr
        parts.append(out)
    done = run_cli("merge", *parts, "--out", tmp_path / "m.zarr")
    first = f"the first part ({parts[0]})"
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "bamstore: error: 2 problem(s) with the parts to merge",
        f"bamstore: error: {parts[1]}: has mode 'fragments', but {first} has 'reads'; fix: "
        "extract every sample with the same --mode",
        f"bamstore: error: {parts[1]}: has extend 100, but {first} has none; fix: extract "
        "every sample with the same --extend",
    ]


def test_merged_store_can_be_merged_again(parts: list[Path], tmp_path: Path, read_rows) -> None:
    first = merge_stores(parts[:2], tmp_path / "ab.zarr").out
    both = merge_stores([first, parts[2]], tmp_path / "abc.zarr").out
    assert read_store_info(both).sample_names == ["pe", "se", "pe_r"]
    assert validate_store(both).ok
    np.testing.assert_array_equal(read_rows(both, "chr2")[1], read_rows(parts[1], "chr2")[0])


def test_merge_never_decodes(parts: list[Path], tmp_path: Path, monkeypatch) -> None:
    """Placing chunks must not go through a codec: make decoding impossible and merge anyway."""
    import numcodecs

    def refuse(*_args, **_kwargs):
        raise AssertionError("merge decoded a chunk")

    monkeypatch.setattr(numcodecs.Blosc, "decode", refuse)
    out = merge_stores(parts, tmp_path / "nodecode.zarr").out
    assert {p.name for p in out.iterdir()} >= {"chr1", "metadata"}
    assert os.path.getsize(out / layout.ZARR_JSON) > 0


def test_merge_and_append_of_sharded_parts_never_decode(
    random_bam, random_se_bam, extract, tmp_path: Path, monkeypatch, read_rows
) -> None:
    """The same with shards: neither blosc nor zarr's sharding codec may run while sharded
    parts merge, nor while the merged cohort grows by another sharded part (`--replace`)."""
    import numcodecs
    from zarr.codecs import ShardingCodec

    from bamstore.engine.merge import append_samples

    parts = [
        extract(random_bam, "pe", chunk_len=5000, shard=True),
        extract(random_se_bam, "se", chunk_len=5000, shard=True),
        extract(random_bam, "pe_r", chunk_len=5000, strandedness="R", shard=True),
    ]

    def refuse(*_args, **_kwargs):
        raise AssertionError("merge decoded a chunk")

    monkeypatch.setattr(numcodecs.Blosc, "decode", refuse)
    for method in ("_decode_single", "_decode_partial_single"):
        monkeypatch.setattr(ShardingCodec, method, refuse)
    cohort = merge_stores(parts[:2], tmp_path / "cohort.zarr")
    grown = append_samples(cohort.out, parts[2:])
    monkeypatch.undo()
    assert cohort.sharded and grown.sharded and grown.rows_converted == 0
    assert grown.chunks_copied == 0 and grown.sample_names == ["pe", "se", "pe_r"]
    assert validate_store(grown.out).ok
    for row, part in enumerate(parts):
        np.testing.assert_array_equal(read_rows(grown.out, "chr1")[row], read_rows(part, "chr1")[0])


def _as_format_2(store: Path, blocksize: int = 0) -> None:
    """Make `store` one written before format 3: no chunk columns in its record, blosc's own
    block size in its chunks (re-encoded, as bamstore 0.1 wrote them)."""
    import json

    import numcodecs

    doc = json.loads((store / "zarr.json").read_text())
    record = doc["attributes"]["bamstore"]
    record["format_version"] = 2
    for sample in record["samples"].values():
        for key in ("columns", "fwd_columns", "rev_columns"):
            sample.pop(key, None)
    (store / "zarr.json").write_text(json.dumps(doc))
    old = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=1, blocksize=blocksize)
    for array_doc in store.glob("*/zarr.json"):
        array = json.loads(array_doc.read_text())
        if array.get("node_type") != "array":
            continue
        for codec in array["codecs"]:
            if codec["name"] == "blosc":
                codec["configuration"]["blocksize"] = blocksize
        array_doc.write_text(json.dumps(array))
        for chunk in (array_doc.parent / "c").rglob("*"):
            if chunk.is_file():
                values = numcodecs.Blosc().decode(chunk.read_bytes())
                chunk.write_bytes(old.encode(np.frombuffer(values, "<u4")))
    # the digests recorded cover the bytes: recompute them as extraction would have
    names = doc["attributes"]["sample_names"]
    info = read_store_info(store)
    for row, name in enumerate(names):
        sample = record["samples"][name]
        for i, (contig, _length) in enumerate(info.contigs):
            for key, array in (
                ("digests", contig),
                ("fwd_digests", contig + "_fwd"),
                ("rev_digests", contig + "_rev"),
            ):
                if key in sample:
                    crcs = (
                        [
                            (int(p.name), layout.file_crc32(p))
                            for p in (store / array / "c" / str(row)).glob("*")
                        ]
                        if (store / array / "c" / str(row)).is_dir()
                        else []
                    )
                    sample[key][i] = layout.chunk_digest(crcs)
    (store / "zarr.json").write_text(json.dumps(doc))


def test_a_format_2_cohort_grows_into_format_3(parts, tmp_path, read_rows) -> None:
    """A cohort written before format 3 (no chunk columns in its record, 128 KiB blosc blocks)
    takes new samples: its chunks join as they are, and the merged record lists every row's
    chunk columns, as found in the files placed."""
    from bamstore.query.inspect import summarize

    old = tmp_path / "old.zarr"
    merge_stores(parts[:2], old)
    _as_format_2(old)
    assert validate_store(old).ok  # 128 KiB blosc blocks and no chunk columns: still sound
    assert summarize(read_store_info(old))["format_version"] == 2
    assert (
        layout.StoreAttributes.from_json(
            __import__("json").loads((old / "zarr.json").read_text())["attributes"]
        )
        .bamstore.samples["pe"]
        .columns
        == ()
    )
    out = tmp_path / "grown.zarr"
    merge_stores([old, parts[2]], out)
    info = read_store_info(out)
    assert info.attrs.bamstore is not None
    for row, name in enumerate(info.sample_names):
        record = info.attrs.bamstore.samples[name]
        for array_row in record.rows(info.attrs.contig_names, info.has_strand_arrays):
            folder = out / array_row.array / "c" / str(row)
            present = sorted(int(p.name) for p in folder.glob("*")) if folder.is_dir() else []
            assert layout.parse_columns(array_row.columns) == frozenset(present), (name, array_row)
    for contig, _ in RANDOM_CONTIGS:
        np.testing.assert_array_equal(read_rows(out, contig)[:2], read_rows(old, contig))
    assert validate_store(out).ok
    assert summarize(read_store_info(out))["format_version"] == 3
