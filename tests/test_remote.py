"""Stores at a URL: the same values over HTTP and S3 as from the local directory.

Each test module starts its own servers on 127.0.0.1: a threading HTTP server over a folder
holding a built store, and moto's S3 server (an S3-compatible endpoint) into which the store's
files are uploaded. Nothing leaves the machine.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from servers import S3_ENV, s3_bucket, serve_folder

from bamstore.api import BamStore, MissingExtraError
from bamstore.errors import QueryError
from bamstore.query import CoverageSource
from bamstore.simulate import make_bam

CONTIGS = [("chr1", 5000), ("chr2", 900)]
BUCKET = "cohort"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("remote")
    bams = [make_bam(folder / f"s{i}.bam", 600, CONTIGS, seed=50 + i, threads=1) for i in range(2)]
    out = folder / "site" / "cov.zarr"
    BamStore.from_bam_files(bams, store_path=out, chunk_len=128, stranded={"s1": "R"})
    return out


@pytest.fixture(scope="module")
def http_url(store: Path) -> Iterator[str]:
    with serve_folder(store.parent) as (base, _requests):
        yield f"{base}/{store.name}"


@pytest.fixture(scope="module")
def s3_endpoint(store: Path) -> Iterator[str]:
    """moto's S3 server on a free loopback port, holding the store under s3://cohort/."""
    pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    with s3_bucket(BUCKET, {store.name: store}) as endpoint:
        yield endpoint


def _bed(tmp_path: Path) -> Path:
    rng = np.random.default_rng(8)
    lines = ["chr1\t0\t1\tfirst\n", "chr1\t4999\t5000\tlast\n", "chr2\t100\t900\n"]
    for _ in range(60):
        start = int(rng.integers(0, 4500))
        lines.append(f"chr1\t{start}\t{start + int(rng.integers(1, 400))}\n")
    path = tmp_path / "r.bed"
    path.write_text("".join(lines))
    return path


def _same_reads(remote: BamStore, local: BamStore, tmp_path: Path) -> None:
    assert remote.sample_names == local.sample_names
    assert remote.chromsizes == local.chromsizes
    pd.testing.assert_series_equal(remote.library_sizes, local.library_sizes)
    np.testing.assert_array_equal(
        remote.extract_region("chr1:0-5,000"), local.extract_region("chr1:0-5,000")
    )
    np.testing.assert_array_equal(
        remote.extract_region("chr2", samples=["s1"], strand="-"),
        local.extract_region("chr2", samples=["s1"], strand="-"),
    )
    bed = _bed(tmp_path)
    for stat in ("mean", "max"):
        pd.testing.assert_frame_equal(
            remote.summarize(bed, stat=stat, normalise="cpm", threads=2),
            local.summarize(bed, stat=stat, normalise="cpm", threads=2),
        )
    points = tmp_path / "p.bed"
    points.write_text("chr1\t500\t501\tp\t0\t+\nchr1\t3000\t3100\tq\t0\t-\n")
    options = {"upstream": 200, "downstream": 100, "bin_size": 50}
    np.testing.assert_array_equal(
        remote.profile(points, **options).matrix, local.profile(points, **options).matrix
    )


def test_http_store_reads_like_the_local_one(store: Path, http_url: str, tmp_path: Path) -> None:
    remote = BamStore.open(http_url)
    assert remote.read_only and http_url in repr(remote)
    _same_reads(remote, BamStore.open(store), tmp_path)


def test_s3_store_reads_like_the_local_one(store: Path, s3_endpoint: str, tmp_path: Path) -> None:
    options = {
        "endpoint_url": s3_endpoint,
        "key": S3_ENV["AWS_ACCESS_KEY_ID"],
        "secret": S3_ENV["AWS_SECRET_ACCESS_KEY"],
    }
    remote = BamStore.open(f"s3://{BUCKET}/{store.name}", storage_options=options)
    _same_reads(remote, BamStore.open(store), tmp_path)


def test_cli_over_http_and_s3(
    store: Path, http_url: str, s3_endpoint: str, tmp_path: Path, run_cli
) -> None:
    bed = _bed(tmp_path)
    local = run_cli("summarize", store, "--bed", bed, "--stat", "sum", "-o", "-")
    assert local.returncode == 0, local.stderr
    over_http = run_cli("summarize", http_url, "--bed", bed, "--stat", "sum", "-o", "-")
    assert over_http.returncode == 0, over_http.stderr
    assert over_http.stdout == local.stdout
    env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}
    s3_url = f"s3://{BUCKET}/{store.name}"
    over_s3 = run_cli("summarize", s3_url, "--bed", bed, "--stat", "sum", "-o", "-", env=env)
    assert over_s3.returncode == 0, over_s3.stderr
    assert over_s3.stdout == local.stdout
    local_bg, remote_bg = tmp_path / "l.bedGraph", tmp_path / "r.bedGraph"
    for source, out, extra in ((store, local_bg, {}), (s3_url, remote_bg, env)):
        done = run_cli(
            "export", source, "--sample", "s0", "--format", "bedgraph", "-o", out, env=extra
        )
        assert done.returncode == 0, done.stderr
    assert remote_bg.read_text() == local_bg.read_text()


def test_remote_errors(http_url: str, tmp_path: Path, run_cli, monkeypatch) -> None:
    with pytest.raises(ValueError, match="stores at a URL open read-only"):
        BamStore.open(http_url, read_only=False)
    with pytest.raises(QueryError, match="cannot open ftp:// stores"):
        CoverageSource.open("ftp://example.invalid/cov.zarr")
    missing = http_url.rsplit("/", 1)[0] + "/other.zarr"
    done = run_cli("summarize", missing, "--bed", _bed(tmp_path), "-o", "-")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"bamstore: error: {missing}: no store there (no zarr.json); fix: check the path or URL"
    )
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/cov.zarr"
    done = run_cli("summarize", closed, "--bed", _bed(tmp_path), "-o", "-")
    assert done.returncode == 2 and "cannot be opened" in done.stderr, done.stderr
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aiohttp" else real(name, *a)
    )
    with pytest.raises(MissingExtraError) as info:
        BamStore.open(http_url)
    assert info.value.line() == (
        "reading http:// stores needs fsspec and aiohttp; fix: pip install 'bamstore[remote]'"
    )
