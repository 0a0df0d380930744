"""A damaged store is named, never read as zeros: every reading command and the API, a missing or
truncated chunk file or shard, a missing or truncated zarr.json, locally and at a URL.

Each case is one line on stderr naming the damaged file and `bamstore validate`, exit 2, and
`validate --quick` finds the same damage without decoding anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from servers import serve_folder

from bamstore.api import BamStore
from bamstore.engine.store import read_store_info
from bamstore.errors import DamagedStoreError
from bamstore.simulate import make_bam

CONTIGS = [("chr1", 9000), ("chr2", 3000)]
CHUNK = 1024


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """Two-sample stores, unsharded and sharded (chunks of 1,024: several per row)."""
    folder = tmp_path_factory.mktemp("damage")
    bams = [make_bam(folder / f"d{i}.bam", 800, CONTIGS, seed=90 + i, threads=1) for i in (0, 1)]
    stores = {}
    for sharded in (False, True):
        out = folder / f"{'sharded' if sharded else 'files'}.zarr"
        BamStore.from_bam_files(bams, store_path=out, chunk_len=CHUNK, shard=sharded)
        stores[sharded] = out
    return stores


@pytest.fixture(params=[False, True], ids=["files", "shard"])
def store(request: pytest.FixtureRequest, pristine: dict[bool, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "s" / "cov.zarr"
    shutil.copytree(pristine[request.param], copy)
    return copy


def a_recorded_chunk(store: Path) -> tuple[Path, int, int]:
    """(file, row, position inside it) of a chunk the record lists: the shard of a sharded
    store, else the chunk file."""
    info = read_store_info(store)
    assert info.record is not None
    columns = info.record.samples[info.sample_names[1]].columns[0]
    col = min(int(part.split("-")[0]) for part in columns.split(","))
    name = "0" if info.sharded else str(col)
    return store / "chr1" / "c" / "1" / name, 1, col * CHUNK + 5


def reading_commands(store: str, tmp_path: Path, position: int) -> dict[str, list[str]]:
    bed = tmp_path / "r.bed"
    bed.write_text(f"chr1\t{position}\t{position + 10}\tr\t0\t+\n")
    return {
        "summarize": ["summarize", store, "--bed", bed, "-o", tmp_path / "s.tsv"],
        "profile": [
            "profile",
            store,
            "--bed",
            bed,
            "--upstream",
            "4",
            "--downstream",
            "4",
            "--bin",
            "2",
            "-o",
            tmp_path / "p.npz",
        ],
        "export": [
            "export",
            store,
            "--sample",
            "d1",
            "--format",
            "bedgraph",
            "-o",
            tmp_path / "e.bg",
        ],
        "plot": [
            "plot",
            store,
            "--region",
            f"chr1:{position}-{position + 100}",
            "-o",
            tmp_path / "p.png",
        ],
    }


def assert_named(done, path: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert path in lines[0] and "bamstore validate" in lines[0], lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["summarize", "profile", "export", "plot"])
def test_a_missing_recorded_chunk_is_named_by_every_reading_command(
    store: Path, tmp_path: Path, run_cli, command: str
) -> None:
    victim, _, position = a_recorded_chunk(store)
    victim.unlink()
    done = run_cli(*reading_commands(str(store), tmp_path, position)[command])
    assert_named(done, str(victim))
    assert not list(tmp_path.glob("[spe].*")), "an output was written"


def test_a_missing_recorded_chunk_is_named_by_the_api_and_validate_quick(
    store: Path, run_cli
) -> None:
    victim, _row, position = a_recorded_chunk(store)
    victim.unlink()
    with pytest.raises(DamagedStoreError) as info:
        BamStore.open(store).extract_region(chrom="chr1", start=position, end=position + 10)
    assert str(victim) in str(info.value) and "bamstore validate" in str(info.value)
    done = run_cli("validate", store, "--quick")
    assert done.returncode == 2
    assert f"{victim.relative_to(store)}".split("/c/")[0] in done.stderr
    assert "missing" in done.stderr


@pytest.mark.parametrize("cut", [10, -7], ids=["header", "tail"])
def test_a_truncated_chunk_is_named(store: Path, tmp_path: Path, run_cli, cut: int) -> None:
    victim, _, position = a_recorded_chunk(store)
    data = victim.read_bytes()
    victim.write_bytes(data[:cut])
    done = run_cli(*reading_commands(str(store), tmp_path, position)["summarize"])
    assert_named(done, str(victim))
    assert (
        run_cli("validate", store, "--quick").returncode == 2
        or read_store_info(store).sharded is False
    )  # a cut chunk file is still present: the full check names it
    assert run_cli("validate", store).returncode == 2


@pytest.mark.parametrize(
    "document", ["zarr.json", "chr1/zarr.json", "metadata/completed/zarr.json"]
)
@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_zarr_json_is_named(
    store: Path, tmp_path: Path, run_cli, document: str, damage: str
) -> None:
    victim = store / document
    if damage == "missing":
        victim.unlink()
    else:
        victim.write_text(victim.read_text()[:40])
    done = run_cli(*reading_commands(str(store), tmp_path, 10)["summarize"])
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    if document == "zarr.json" and damage == "missing":
        assert "no store there (no zarr.json)" in line
    else:
        assert str(victim) in line and "bamstore validate" in line, line
    assert run_cli("validate", store, "--quick").returncode == 2


def test_at_a_url_a_missing_chunk_is_named_and_validate_inspect_plot_work(
    store: Path, tmp_path: Path, run_cli
) -> None:
    """Over HTTP (range requests): validate, validate --quick, inspect and plot take the URL;
    a recorded chunk that answers 404 is named by its URL, as locally."""
    victim, _, position = a_recorded_chunk(store)
    with serve_folder(store.parent) as (base, _requests):
        url = f"{base}/{store.name}"
        assert run_cli("validate", url, "--quick").returncode == 0
        full = run_cli("validate", url)
        assert full.returncode == 0, full.stderr
        local = run_cli("inspect", store, "--json")
        remote = run_cli("inspect", url, "--json")
        assert remote.returncode == 0 and remote.stdout == local.stdout
        plot = run_cli("plot", url, "--region", "chr1:0-2000", "-o", tmp_path / "u.png")
        assert plot.returncode == 0, plot.stderr
        assert (tmp_path / "u.png").read_bytes()[:4] == b"\x89PNG"
        victim.unlink()
        quick = run_cli("validate", url, "--quick")
        assert quick.returncode == 2 and "missing" in quick.stderr
        done = run_cli(*reading_commands(url, tmp_path, position)["summarize"])
        assert_named(done, f"{url}/{victim.relative_to(store).as_posix()}")


def test_a_plain_http_server_without_range_requests_reads_the_same(
    pristine: dict[bool, Path], tmp_path: Path
) -> None:
    """`python -m http.server` ignores Range: whole files come back, and are cut to the
    asked bytes, so such a server reads the same (only slower)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    for sharded, path in pristine.items():
        handler = functools.partial(Quiet, directory=str(path.parent))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
            remote, local = BamStore.open(url), BamStore.open(path)
            for contig, length in CONTIGS:
                np.testing.assert_array_equal(
                    remote.extract_region(chrom=contig, start=0, end=length),
                    local.extract_region(chrom=contig, start=0, end=length),
                    err_msg=f"sharded={sharded}",
                )
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
