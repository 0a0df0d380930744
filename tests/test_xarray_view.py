"""BamStore.to_xarray(): a lazy Dask-backed Dataset whose reductions equal numpy over zarr, on
the threaded scheduler and on a dask.distributed LocalCluster of worker processes (the arrays
travel to them pickled and are read there)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr

from bamstore.api import BamStore
from bamstore.query import chunks
from bamstore.query.lazy import LazyCoverage
from bamstore.simulate import make_bam

CONTIGS = [("chr1", 5000), ("chr2", 1300)]
CHUNK = 256


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("xr")
    bams = [
        make_bam(folder / f"{name}.bam", 700, CONTIGS, seed=seed, threads=1)
        for seed, name in enumerate("abc", start=11)
    ]
    out = folder / "cov.zarr"
    built = BamStore.from_bam_files(
        bams, store_path=out, chunk_len=CHUNK, stranded={"b": "U"}, filter_chromosomes=False
    )
    built.update_metadata({"condition": ["x", "y", "x"]})
    built.set_scale_factors({"a": 2.0})
    return out


def raw(store: Path, name: str) -> np.ndarray:
    return np.asarray(zarr.open_group(str(store), mode="r")[name][...])


def test_dataset_layout_and_coordinates(store: Path) -> None:
    before = chunks.blocks_decoded()
    ds = BamStore.open(store).to_xarray()
    assert chunks.blocks_decoded() == before  # nothing read yet
    assert list(ds.data_vars) == ["chr1", "chr1_fwd", "chr1_rev", "chr2", "chr2_fwd", "chr2_rev"]
    assert ds["chr1"].dims == ("sample", "position_chr1")
    assert ds["chr1"].shape == (3, 5000) and ds["chr1"].dtype == np.uint32
    assert ds["chr1"].data.chunks == ((3,), (256,) * 19 + (136,))
    assert ds["sample"].values.tolist() == ["a", "b", "c"]
    assert ds["condition"].values.tolist() == ["x", "y", "x"]
    lib = np.asarray(zarr.open_group(str(store), mode="r")["metadata/total_reads"][...], float)
    np.testing.assert_array_equal(ds["library_size"].values, lib)
    np.testing.assert_array_equal(ds["scale_factor"].values, [2.0, np.nan, np.nan])
    one = BamStore.open(store).to_xarray(chromosomes=["chr2"], samples=["c"], strand_arrays=False)
    assert list(one.data_vars) == ["chr2"] and one["sample"].values.tolist() == ["c"]


def test_reductions_equal_numpy(store: Path) -> None:
    ds = BamStore.open(store).to_xarray(sample_chunk=2)
    for name in ("chr1", "chr1_fwd", "chr2_rev"):
        contig = name.split("_")[0]
        whole = raw(store, name)
        np.testing.assert_array_equal(ds[name].sum(f"position_{contig}").values, whole.sum(1))
        np.testing.assert_array_equal(ds[name].max(f"position_{contig}").values, whole.max(1))
    window = ds["chr1"].isel(position_chr1=slice(250, 777), sample=[2, 0]).values
    np.testing.assert_array_equal(window, raw(store, "chr1")[[2, 0], 250:777])
    scaled = (ds["chr2"] * ds["scale_factor"]).sel(sample="a").values
    np.testing.assert_array_equal(scaled, raw(store, "chr2")[0] * 2.0)


def test_the_same_reduction_on_a_local_cluster(store: Path) -> None:
    from distributed import Client, LocalCluster

    ds = BamStore.open(store).to_xarray()
    total = ds["chr1"].sum("position_chr1") + ds["chr2"].sum("position_chr2")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        got = client.compute(total.data).result()
        workers = client.run(lambda: __import__("os").getpid())
    want = raw(store, "chr1").sum(1) + raw(store, "chr2").sum(1)
    np.testing.assert_array_equal(got, want)
    assert len(workers) == 2


def test_lazy_array_pickles_small_and_indexes_like_numpy(store: Path) -> None:
    lazy = LazyCoverage(str(store), {}, "chr1", [2, 0, 1], 5000)
    copy = pickle.loads(pickle.dumps(lazy))
    assert len(pickle.dumps(lazy)) < 500
    whole = raw(store, "chr1")[[2, 0, 1]]
    for key in [
        (slice(None), slice(0, 5000)),
        (slice(1, 3), slice(255, 513)),
        (0, slice(4990, 5000)),
        (slice(None), 4999),
        (slice(None), slice(10, 100, 7)),
        (slice(0, 0), slice(0, 10)),
    ]:
        np.testing.assert_array_equal(copy[key], whole[key])


def test_incomplete_samples_are_refused(tmp_path: Path) -> None:
    empty = BamStore(tmp_path / "e.zarr", dict(CONTIGS), ["x", "y"], chunk_len=CHUNK)
    with pytest.raises(RuntimeError, match="incomplete"):
        empty.to_xarray()


def test_without_the_extra_one_line_names_it(store: Path, monkeypatch: pytest.MonkeyPatch):
    import sys

    from bamstore.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "dask.array", None)  # as if bamstore[dask] were missing
    with pytest.raises(MissingExtraError) as err:
        BamStore.open(store).to_xarray()
    assert err.value.line() == (
        "BamStore.to_xarray needs dask and xarray; fix: pip install 'bamstore[dask]'"
    )
