"""The block reader (`bamstore.query.chunks`, `_chunkread`) against zarr's own reading.

Arrays are written by zarr-python itself in every layout the reader takes: blosc frames with
small and large blocks, split and unsplit streams, frames blosc stored uncompressed, blosc
frames of another compressor (decoded whole through numcodecs), no compressor, unsharded and
sharded. Values reach all four bytes of a uint32, and windows and reductions start and end on
every block, chunk and array edge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BloscShuffle
from zarr.storage import LocalStore

from bamstore.errors import DamagedStoreError
from bamstore.query import _chunkread, chunks
from bamstore.storage import StoreFiles

ROWS = 3
LENGTH = 50_000


def coverage(rows: int, length: int, seed: int) -> np.ndarray:
    """Runs of depth like coverage, zeros between, and values past 2**8, 2**16 and 2**24."""
    rng = np.random.default_rng(seed)
    values = np.zeros((rows, length), dtype=np.uint32)
    for r in range(rows):
        pos = 0
        while pos < length:
            run = int(rng.integers(1, 400))
            kind = rng.integers(0, 10)
            if kind < 4:
                level = 0
            elif kind < 8:
                level = int(rng.integers(1, 60))
            else:
                level = int(rng.choice([300, 70_000, 20_000_000, 2**32 - 1]))
            values[r, pos : pos + run] = level
            pos += run
    values[1, 10_000:30_000] = 0  # whole chunks of zeros: not stored
    return values


def write_array(
    path: Path,
    values: np.ndarray,
    *,
    chunk_len: int,
    cname: str | None = "zstd",
    blocksize: int = 0,
    shard: bool = False,
) -> Path:
    compressors = (
        []
        if cname is None
        else [
            BloscCodec(
                cname=cname,
                clevel=3,
                shuffle=BloscShuffle.shuffle,
                typesize=4,
                blocksize=blocksize,
            )
        ]
    )
    n_chunks = -(-values.shape[1] // chunk_len)
    group = zarr.open_group(LocalStore(path), mode="w", zarr_format=3)
    array = group.create_array(
        "chr1",
        shape=values.shape,
        chunks=(1, chunk_len),
        shards=(1, n_chunks * chunk_len) if shard else None,
        dtype="uint32",
        compressors=compressors,
        fill_value=0,
    )
    array[...] = values
    return path


def reader(path: Path, presence=None) -> chunks.CoverageArray:
    document = json.loads((path / "chr1" / "zarr.json").read_text())
    fmt = chunks.ArrayFormat.of(document)
    assert fmt is not None, document
    files = StoreFiles(str(path), path)
    return chunks.CoverageArray(
        files, "chr1", fmt, presence or (lambda row: chunks.UNKNOWN_PRESENCE), str(path)
    )


def edges(length: int, chunk_len: int, block_items: int) -> list[int]:
    """Positions on and next to every block and chunk boundary, and the array's ends."""
    points = {0, 1, length - 1}
    for step in (chunk_len, block_items):
        for b in range(step, length, step):
            points.update((b - 1, b, b + 1))
    return sorted(p for p in points if 0 <= p < length)


def check_reads(array: chunks.CoverageArray, values: np.ndarray, block_items: int) -> None:
    rows = list(range(values.shape[0]))
    length = values.shape[1]
    assert np.array_equal(array.windows(rows, [0], length)[0], values)
    points = edges(length, array.format.chunk_len, block_items)
    for width in (1, 7, 2000):
        starts = [p for p in points if p + width <= length]
        got = array.windows(rows, starts, width)
        for w, start in enumerate(starts):
            assert np.array_equal(got[w], values[:, start : start + width]), (start, width)
    starts = np.array(points[:-1], dtype=np.int64)
    ends = np.array(points[1:], dtype=np.int64)
    ends = np.maximum(ends, starts)
    wide_s = np.array([0, 5, 999], dtype=np.int64)
    wide_e = np.array([length, length - 3, 999], dtype=np.int64)
    for s, e in ((starts, ends), (wide_s, wide_e)):
        for how, oracle, start in (
            (_chunkread.Reduction.SUM, np.sum, 0),
            (_chunkread.Reduction.MAX, np.max, 0),
            (_chunkread.Reduction.MIN, np.min, 2**32 - 1),
        ):
            out = np.full((len(rows), len(s)), start, dtype=np.int64)
            array.reduce(rows, s, e, how, out)
            for p in range(len(s)):
                if e[p] > s[p]:
                    expected = oracle(values[:, s[p] : e[p]].astype(np.int64), axis=1)
                    assert np.array_equal(out[:, p], expected), (how, s[p], e[p])
                else:
                    assert np.all(out[:, p] == start)


@pytest.mark.parametrize("shard", [False, True], ids=["files", "shard"])
@pytest.mark.parametrize(
    ("cname", "blocksize", "chunk_len"),
    [
        ("zstd", 0, 8192),  # blosc's own block size (the whole chunk here)
        ("zstd", 4096, 8192),  # 1,024 items per block, 8 blocks per chunk
        ("zstd", 16384, 10_000),  # a last block shorter than the others (leftover)
        ("lz4", 4096, 8192),  # not zstd: decoded whole through numcodecs
        (None, 0, 6000),  # no compressor: raw little-endian uint32
    ],
    ids=["zstd-auto", "zstd-4k", "zstd-leftover", "lz4", "raw"],
)
def test_reads_equal_zarr(tmp_path, shard, cname, blocksize, chunk_len):
    values = coverage(ROWS, LENGTH, seed=chunk_len)
    path = write_array(
        tmp_path / "s.zarr",
        values,
        chunk_len=chunk_len,
        cname=cname,
        blocksize=blocksize,
        shard=shard,
    )
    oracle = np.asarray(zarr.open_group(path, mode="r")["chr1"][...])
    assert np.array_equal(oracle, values)
    check_reads(reader(path), values, block_items=max(blocksize // 4, 1) or chunk_len)


def _split_store(tmp_path: Path, values: np.ndarray) -> Path:
    """Frames whose blocks are split into one stream per item byte (blosc's split mode, which
    numcodecs has no setting for: set through blosc's environment, in a fresh process that
    re-encodes the chunk files zarr wrote)."""
    path = write_array(tmp_path / "split.zarr", values, chunk_len=8192, blocksize=4096)
    code = (
        "import sys, numcodecs, numpy as np\n"
        "from numcodecs import blosc\n"
        "blosc.use_threads = True\n"
        "codec = numcodecs.Blosc(cname='zstd', clevel=3, shuffle=1, blocksize=4096)\n"
        "for name in sys.argv[1:]:\n"
        "    data = np.frombuffer(numcodecs.Blosc().decode(open(name, 'rb').read()), '<u4')\n"
        "    open(name, 'wb').write(codec.encode(data))\n"
    )
    files = [str(f) for f in (path / "chr1" / "c").rglob("*") if f.is_file()]
    env = {**os.environ, "BLOSC_SPLITMODE": "ALWAYS"}
    subprocess.run([sys.executable, "-c", code, *files], check=True, env=env)
    return path


def test_split_streams_and_uncompressed_frames(tmp_path):
    values = coverage(ROWS, LENGTH, seed=3)
    path = _split_store(tmp_path, values)
    frame = (path / "chr1" / "c" / "0" / "0").read_bytes()
    assert not frame[2] & 0x10, "the frame is not split: the test writes the wrong thing"
    assert np.array_equal(zarr.open_group(path, mode="r")["chr1"][...], values)
    check_reads(reader(path), values, block_items=1024)
    # incompressible rows: blosc stores the frame as it is (memcpyed)
    noise = np.random.default_rng(1).integers(0, 2**32, (ROWS, 20_000), dtype=np.uint64)
    noise = noise.astype(np.uint32)
    path = write_array(tmp_path / "noise.zarr", noise, chunk_len=8192, blocksize=4096)
    assert (path / "chr1" / "c" / "0" / "0").read_bytes()[2] & 0x2
    check_reads(reader(path), noise, block_items=1024)


def _blocks_reversed(frame: bytes) -> bytes:
    """The same blosc frame with its blocks stored last first (as c-blosc's threads may store
    them): the offsets say where each block is, so every blosc reader still decodes it."""
    nbytes, blocksize, cbytes = (int.from_bytes(frame[i : i + 4], "little") for i in (4, 8, 12))
    nblocks = -(-nbytes // blocksize)
    starts = [int.from_bytes(frame[16 + 4 * k : 20 + 4 * k], "little") for k in range(nblocks)]
    ends = [*starts[1:], cbytes]
    assert starts == sorted(starts)
    body, offsets = b"", [0] * nblocks
    first = 16 + 4 * nblocks
    for k in reversed(range(nblocks)):
        offsets[k] = first + len(body)
        body += frame[starts[k] : ends[k]]
    index = b"".join(o.to_bytes(4, "little") for o in offsets)
    return frame[:16] + index + body


def test_blocks_stored_out_of_order(tmp_path):
    values = coverage(ROWS, LENGTH, seed=6)
    path = write_array(tmp_path / "s.zarr", values, chunk_len=8192, blocksize=4096)
    for f in (path / "chr1" / "c").rglob("*"):
        if f.is_file():
            f.write_bytes(_blocks_reversed(f.read_bytes()))
    assert np.array_equal(zarr.open_group(path, mode="r")["chr1"][...], values)
    check_reads(reader(path), values, block_items=1024)


def _presence(columns):
    return lambda row: chunks.Presence(frozenset(columns))


@pytest.mark.parametrize("shard", [False, True], ids=["files", "shard"])
def test_missing_chunk_listed_by_the_record_is_an_error(tmp_path, shard):
    values = coverage(ROWS, LENGTH, seed=5)
    path = write_array(tmp_path / "s.zarr", values, chunk_len=8192, blocksize=4096, shard=shard)
    victim = path / "chr1" / "c" / "2" / ("0" if shard else "3")
    victim.unlink()
    # without a record that lists it, a missing chunk is zeros (a store of another tool)
    got = reader(path).windows([2], [3 * 8192], 10)[0, 0]
    assert np.array_equal(got, np.zeros(10, np.uint32))
    listed = reader(path, _presence(range(7)))
    with pytest.raises(DamagedStoreError) as info:
        listed.windows([2], [3 * 8192], 10)
    assert str(victim) in str(info.value)
    assert "bamstore validate" in str(info.value)
    assert "missing" in str(info.value)


@pytest.mark.parametrize("cut", ["header", "index", "block"])
def test_truncated_chunk_is_an_error_naming_it(tmp_path, cut):
    values = coverage(ROWS, LENGTH, seed=6)
    path = write_array(tmp_path / "s.zarr", values, chunk_len=8192, blocksize=4096)
    victim = path / "chr1" / "c" / "0" / "2"
    data = victim.read_bytes()
    victim.write_bytes(data[: {"header": 10, "index": 20, "block": len(data) - 5}[cut]])
    with pytest.raises(DamagedStoreError) as info:
        reader(path).windows([0], [2 * 8192], 8192)
    assert str(victim) in str(info.value)


def test_corrupt_block_bytes_are_an_error(tmp_path):
    values = coverage(ROWS, LENGTH, seed=7)
    path = write_array(tmp_path / "s.zarr", values, chunk_len=8192, blocksize=4096)
    victim = path / "chr1" / "c" / "0" / "1"
    data = bytearray(victim.read_bytes())
    data[-40:-20] = b"\xff" * 20  # inside the last block's zstd data
    victim.write_bytes(bytes(data))
    with pytest.raises(DamagedStoreError, match="cannot be decoded"):
        reader(path).windows([0], [8192 + 7000], 1000)


def test_index_memory_is_bounded_and_reads_are_thread_safe(tmp_path, monkeypatch):
    values = coverage(8, 200_000, seed=8)
    path = write_array(tmp_path / "s.zarr", values, chunk_len=4096, blocksize=4096)
    monkeypatch.setattr(chunks, "INDEX_BUDGET", 64 * 1024)
    array = reader(path)
    assert array.table.budget == 64 * 1024
    rng = np.random.default_rng(9)
    errors: list[BaseException] = []
    peaks: list[int] = []

    def work(seed: int) -> None:
        local = np.random.default_rng(seed)
        try:
            for _ in range(300):
                start = int(local.integers(0, 200_000 - 3000))
                rows = sorted(local.choice(8, size=3, replace=False).tolist())
                got = array.windows(rows, [start], 3000)[0]
                assert np.array_equal(got, values[rows, start : start + 3000])
                peaks.append(array.table.footprint)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(int(s),)) for s in rng.integers(0, 99, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    # the budget, plus the rows' entry arrays (never evicted), plus what the 4 threads' reads
    # load past it (3 rows x 2 chunks each: an entry, one block's offsets and the path)
    table = array.table
    row_arrays = 8 * table.n_cols * table.entry_size
    one_read = 6 * (table.entry_size + 16 + len(str(path)) + 20)
    assert max(peaks) <= table.budget + row_arrays + 4 * one_read
    assert len(peaks) == 1200


def test_formats_not_read_here_are_refused():
    base = json.loads(
        json.dumps(
            {
                "shape": [2, 100],
                "data_type": "uint32",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 50]}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": 0,
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                "zarr_format": 3,
                "node_type": "array",
            }
        )
    )
    assert chunks.ArrayFormat.of(base) == chunks.ArrayFormat(100, 2, 50, False, False)
    for change in (
        {"data_type": "uint16"},
        {"fill_value": 1},
        {"chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 50]}}},
        {"codecs": [{"name": "bytes", "configuration": {"endian": "big"}}]},
        {"codecs": [{"name": "bytes"}, {"name": "zstd"}]},
        {"chunk_key_encoding": {"name": "v2", "configuration": {"separator": "."}}},
    ):
        assert chunks.ArrayFormat.of({**base, **change}) is None, change


# ---------------------------------------------------------------------------- at a URL


def remote_reader(url: str, **storage_options) -> chunks.CoverageArray:
    files = StoreFiles.open(url, storage_options)
    fmt = chunks.ArrayFormat.of(files.read_json("chr1/zarr.json"))
    return chunks.CoverageArray(files, "chr1", fmt, lambda row: chunks.UNKNOWN_PRESENCE, url)


@pytest.mark.parametrize("shard", [False, True], ids=["files", "shard"])
def test_http_range_requests_equal_local(tmp_path, shard):
    from servers import serve_folder

    values = coverage(ROWS, LENGTH, seed=11)
    path = write_array(tmp_path / "s.zarr", values, chunk_len=8192, blocksize=4096, shard=shard)
    with serve_folder(tmp_path) as (base, requests):
        array = remote_reader(f"{base}/s.zarr")
        check_reads(array, values, block_items=1024)
        requests.clear()
        fresh = remote_reader(f"{base}/s.zarr")
        requests.clear()
        # one window of two rows across a chunk edge: one request per chunk it needs, and for a
        # shard, its index once (then nothing more for another window in the same chunks)
        fresh.windows([0, 2], [8192 - 100], 200)
        fresh.windows([0, 2], [8192 - 50], 100)
    chunk_requests = {k: n for k, n in requests.items() if "/c/" in k}
    if shard:
        assert chunk_requests == {"/s.zarr/chr1/c/0/0": 3, "/s.zarr/chr1/c/2/0": 3}
    else:
        assert chunk_requests == {
            "/s.zarr/chr1/c/0/0": 1,
            "/s.zarr/chr1/c/0/1": 1,
            "/s.zarr/chr1/c/2/0": 1,
            "/s.zarr/chr1/c/2/1": 1,
        }
    assert path.exists()


def test_http_missing_listed_chunk_is_an_error(tmp_path):
    from servers import serve_folder

    values = coverage(ROWS, LENGTH, seed=12)
    write_array(tmp_path / "s.zarr", values, chunk_len=8192, blocksize=4096)
    (tmp_path / "s.zarr" / "chr1" / "c" / "0" / "2").unlink()
    with serve_folder(tmp_path) as (base, _requests):
        array = remote_reader(f"{base}/s.zarr")
        array.presence = _presence(range(7))
        with pytest.raises(DamagedStoreError) as info:
            array.windows([0], [2 * 8192], 10)
    assert f"{base}/s.zarr/chr1/c/0/2" in str(info.value)


@pytest.mark.parametrize("shard", [False, True], ids=["files", "shard"])
def test_s3_equals_local(tmp_path, monkeypatch, shard):
    pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    from servers import s3_bucket, s3_environment

    values = coverage(ROWS, LENGTH, seed=13)
    path = write_array(tmp_path / "s.zarr", values, chunk_len=8192, blocksize=4096, shard=shard)
    with s3_bucket("cohort", {"s.zarr": path}) as endpoint:
        for key, value in s3_environment(endpoint).items():
            monkeypatch.setenv(key, value)
        array = remote_reader("s3://cohort/s.zarr", client_kwargs={"endpoint_url": endpoint})
        check_reads(array, values, block_items=1024)
