"""The HTTP client of stores at a URL (`bamstore.http_ranges`): kept-alive connections, servers
that close them, that ignore or refuse ranges, redirect or fail; and the cases left to fsspec.

The servers are tests/servers.py's (HTTP/1.1 with keep-alive, or HTTP/1.0 with a connection per
request), with handlers altered per test; the values are compared with the local store's.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from servers import LoopbackServer, RangeHandler, serve_folder

from bamstore import http_ranges
from bamstore.api import BamStore
from bamstore.engine.merge import merge_stores
from bamstore.errors import RemoteReadError
from bamstore.simulate import make_bam
from bamstore.storage import StoreFiles

CONTIGS = [("chr1", 6000), ("chr2", 700)]
WINDOWS = [("chr1", 0, 1), ("chr1", 5999, 6000), ("chr2", 0, 700), ("chr1", 127, 129)] + [
    ("chr1", s, s + 300) for s in range(0, 5700, 97)
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("http")
    bams = [make_bam(folder / f"s{i}.bam", 500, CONTIGS, seed=70 + i, threads=1) for i in range(2)]
    out = folder / "site" / "cov.zarr"
    BamStore.from_bam_files(bams, store_path=out, chunk_len=128)
    return out


@contextlib.contextmanager
def serve(folder: Path, handler: type[RangeHandler]) -> Iterator[str]:
    """A loopback server over `folder` with a handler of one test's own."""
    counted = type("Counted", (handler,), {"requests": Counter(), "connections": Counter()})
    server = LoopbackServer(("127.0.0.1", 0), functools.partial(counted, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def windows(store: BamStore) -> list[np.ndarray]:
    return [store.extract_region(chrom=c, start=s, end=e) for c, s, e in WINDOWS]


def assert_same(remote: BamStore, local: BamStore) -> None:
    for a, b in zip(windows(remote), windows(local), strict=True):
        np.testing.assert_array_equal(a, b)


def test_kept_alive_connections_serve_many_requests(store: Path) -> None:
    connections: Counter[str] = Counter()
    with serve_folder(store.parent, connections=connections) as (base, requests):
        remote = BamStore.open(f"{base}/{store.name}")  # zarr's metadata: fsspec's connections
        remote.source  # noqa: B018 (the store's record, read on first use)
        opened, asked = connections["opened"], sum(requests.values())
        assert_same(remote, BamStore.open(store))
        opened, asked = connections["opened"] - opened, sum(requests.values()) - asked
    assert asked >= 40  # every chunk of both samples, each fetched once
    # one connection per thread that fetched: this one, and the fetch threads of many keys
    assert 1 <= opened <= 1 + http_ranges.FETCH_THREADS


def test_a_connection_per_request_server(store: Path) -> None:
    """HTTP/1.0 (`python -m http.server`): the server closes each connection; no request fails."""
    connections: Counter[str] = Counter()
    with serve_folder(store.parent, keep_alive=False, connections=connections) as (base, req):
        assert_same(BamStore.open(f"{base}/{store.name}"), BamStore.open(store))
    assert connections["opened"] == sum(req.values())


class ClosesSilently(RangeHandler):
    """Answers as HTTP/1.1 (the client keeps the connection) but closes it after every
    response, as a server whose idle timeout has passed: the next request on it fails."""

    def do_GET(self) -> None:
        super().do_GET()
        self.close_connection = True


def test_a_kept_connection_the_server_closed_is_reopened(store: Path) -> None:
    with serve(store.parent, ClosesSilently) as base:
        assert_same(BamStore.open(f"{base}/{store.name}"), BamStore.open(store))


class IgnoresRanges(RangeHandler):
    """The whole file, 200, whatever the Range header says."""

    def do_GET(self) -> None:
        del self.headers["Range"]
        super().do_GET()


def test_a_server_that_ignores_ranges(store: Path, tmp_path: Path, extract) -> None:
    """A sharded store's reads are ranges of its shard files: cut from whole files here."""
    sharded = tmp_path / "site" / "sharded.zarr"
    bam = make_bam(tmp_path / "s.bam", 500, CONTIGS, seed=80, threads=1)
    merge_stores([extract(bam, "s", chunk_len=128, shard=True)], sharded, shard=True)
    with serve(sharded.parent, IgnoresRanges) as base:
        assert_same(BamStore.open(f"{base}/{sharded.name}"), BamStore.open(sharded))
    files = StoreFiles("x", None, None, f"{base}/{sharded.name}")
    assert files.http is not None


class Redirects(RangeHandler):
    """Every path under /moved/ answers 302 to the same path without it."""

    def do_GET(self) -> None:
        if self.path.startswith("/moved/"):
            self.requests[self.path] += 1
            self.send_response(302)
            self.send_header("Location", self.path[len("/moved") :])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


def test_redirects_are_followed(store: Path) -> None:
    with serve(store.parent, Redirects) as base:
        files = StoreFiles.open(f"{base}/moved/{store.name}")
        assert files.read("zarr.json") == (store / "zarr.json").read_bytes()
        whole = (store / "chr1" / "zarr.json").read_bytes()
        assert files.fetch(["chr1/zarr.json"], [(3, 10)]) == [whole[3:10]]


class Fails(RangeHandler):
    """500 for the files under `failing`, the rest served."""

    failing = "/chr1/c/"

    def do_GET(self) -> None:
        if self.failing in self.path:
            self.requests[self.path] += 1
            self.send_error(500, "disk on fire")
            return
        super().do_GET()


def test_an_error_status_is_one_line_naming_the_url(store: Path, tmp_path: Path, run_cli) -> None:
    with serve(store.parent, Fails) as base:
        url = f"{base}/{store.name}"
        with pytest.raises(RemoteReadError, match=r"/c/\d+/\d+: the server answered HTTP 500"):
            BamStore.open(url).extract_region("chr1:0-10")
        bed = tmp_path / "r.bed"
        bed.write_text("chr1\t0\t100\n")
        done = run_cli("summarize", url, "--bed", bed, "-o", "-")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"bamstore: error: {url}/chr1/c/")
    assert "the server answered HTTP 500 disk on fire; fix: check that the server is up" in line


class MetadataFails(Fails):
    failing = "/metadata/completed/c/"


def test_a_metadata_error_status_is_not_called_damage(store: Path) -> None:
    with (
        serve(store.parent, MetadataFails) as base,
        pytest.raises(RemoteReadError, match=r"/metadata: cannot be fetched .*500"),
    ):
        BamStore.open(f"{base}/{store.name}").source  # noqa: B018


def test_missing_and_unreachable(store: Path) -> None:
    with serve_folder(store.parent) as (base, _requests):
        files = StoreFiles.open(f"{base}/{store.name}")
        (gone,) = files.fetch(["chr1/c/0/999"], [None])
        assert isinstance(gone, FileNotFoundError) and gone.filename.endswith("/chr1/c/0/999")
        # past the end of a file: nothing (416), as a local read past the end
        assert files.fetch(["zarr.json"], [(10**9, None)]) == [b""]
        assert files.fetch(["zarr.json"], [(5, 5)]) == [b""]
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/cov.zarr"
    (down,) = StoreFiles.open(closed).fetch(["zarr.json"], [None])
    assert isinstance(down, RemoteReadError)
    assert down.line().startswith(f"{closed}/zarr.json: cannot be fetched (ConnectionRefused")


@pytest.mark.parametrize(
    ("span", "header"),
    [((0, 10), "bytes=0-9"), ((7, None), "bytes=7-"), ((-16, None), "bytes=-16")],
)
def test_range_header(span: tuple[int, int | None], header: str) -> None:
    assert http_ranges.range_header(span) == header


def test_fsspec_serves_what_this_client_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    assert http_ranges.for_url("http://127.0.0.1:1/cov.zarr") is http_ranges.CLIENT
    assert http_ranges.for_url("s3://bucket/cov.zarr") is None
    assert http_ranges.for_url("http://h/cov.zarr", {"headers": {"Authorization": "x"}}) is None
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert http_ranges.for_url("http://h/cov.zarr") is None
    monkeypatch.setenv("no_proxy", "h")
    assert http_ranges.for_url("http://h/cov.zarr") is http_ranges.CLIENT
