"""Sharded vs unsharded coverage arrays: writing one long row, and reading small regions.

1. One row of a 250 Mbp contig at chunk_len 1,048,576 from a synthetic coverage vector (reads of
   150 bp at mean depth ~1.5 with peaks, and a 20 Mbp gap of empty chunks): chunks are generated
   and encoded once, then written as one file per chunk (as `StoreWriter.write_chunk`) and as one
   shard (`shard.ShardWriter`): files, bytes, seconds. For reference zarr-python writes the same
   row from memory, both ways.
2. An 8-row array of that contig in both layouts; zarr reads 100 random 1 kb windows of all rows
   (as QuantNado's `extract_region` slices: `arr[[rows], start:end]`) and of one row, and
   10 windows of 100 kb. Warm page cache; best of --repeat rounds, layouts taking turns; wall
   time and the process's CPU time (all threads: steadier than wall time on a busy machine).

A benchmark, not a test: figures depend on the machine and its load (printed with them).

    .venv/bin/python benchmarks/shard_bench.py [--length N] [--rows 8] [--workdir DIR]
        [--keep | --read-only]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.storage import LocalStore

from bamstore import layout
from bamstore.engine import shard

REPO = Path(__file__).resolve().parents[1]
READ_LEN = 150
MEAN_DEPTH = 1.5
GAP = (120, 140)  # inner chunks left empty: an assembly gap / centromere
ARRAY = "chr1"


def synthetic_chunks(seed: int, length: int, chunk_len: int) -> Iterator[tuple[int, np.ndarray]]:
    """(column, coverage) of a row, one chunk at a time; reads do not cross chunk ends."""
    rng = np.random.default_rng(seed)
    for col in range(layout.n_chunks(length, chunk_len)):
        chunk = np.zeros(chunk_len, dtype=layout.COVERAGE_DTYPE)
        span = min(chunk_len, length - col * chunk_len)
        if not GAP[0] <= col < GAP[1]:
            n_reads = rng.poisson(MEAN_DEPTH * span / READ_LEN)
            starts = rng.integers(0, span, n_reads)
            peaks = rng.integers(0, max(1, span - 300), 20)
            starts = np.concatenate([starts, np.repeat(peaks, 200) + rng.integers(0, 300, 4000)])
            starts = starts[starts < span]
            ends = np.minimum(starts + READ_LEN, span)
            delta = np.bincount(starts, minlength=span + 1) - np.bincount(ends, minlength=span + 1)
            chunk[:span] = np.cumsum(delta[:span])
        yield col, chunk


def tree_stats(path: Path) -> tuple[int, int, int]:
    """(files, bytes, bytes allocated on disk) under `path`, zarr.json included."""
    files = size = blocks = 0
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            files += 1
            size += st.st_size
            blocks += st.st_blocks * 512
    return files, size, blocks


def declare(store: Path, n_rows: int, length: int, chunk_len: int, sharded: bool) -> None:
    profile = layout.compression_profile("default")
    layout.write_json(store / layout.ZARR_JSON, layout.group_document())
    document = (
        shard.sharded_array_document(n_rows, length, chunk_len, profile)
        if sharded
        else layout.coverage_array_document(n_rows, length, chunk_len, profile)
    )
    layout.write_json(store / ARRAY / layout.ZARR_JSON, document)


def write_unsharded(store: Path, row: int, chunks: list[tuple[int, bytes]]) -> None:
    """As `StoreWriter.write_chunk`: the row's folder made once, one file per chunk."""
    folder = layout.chunk_path(store, ARRAY, row, 0).parent
    folder.mkdir(parents=True, exist_ok=True)
    for col, data in chunks:
        with open(folder / str(col), "wb") as fh:
            fh.write(data)


def write_sharded(store: Path, row: int, n_inner: int, chunks: list[tuple[int, bytes]]) -> None:
    with shard.ShardWriter(shard.shard_path(store, ARRAY, row), n_inner) as writer:
        for col, data in chunks:
            writer.append(col, data)


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def one_row(work: Path, length: int, chunk_len: int, repeat: int) -> None:
    encoder = layout.compression_profile("default").encoder()
    n_inner = shard.inner_chunks_per_shard(length, chunk_len)
    started = time.perf_counter()
    raw = list(synthetic_chunks(1, length, chunk_len))
    generated = time.perf_counter() - started
    started = time.perf_counter()
    encoded = [(col, encoder.encode(chunk)) for col, chunk in raw if chunk.any()]
    encode_s = time.perf_counter() - started
    row = np.concatenate([chunk for _, chunk in raw])[:length]
    del raw
    print(
        f"row: {length:,} bp, chunk_len {chunk_len:,}: {n_inner} chunks, {len(encoded)} "
        f"non-empty, mean depth {row.mean():.2f}, {100 * np.mean(row == 0):.1f}% zero; "
        f"generated in {generated:.1f} s, encoded (default profile) in {encode_s:.1f} s"
    )

    def ours(sharded: bool) -> Callable[[], None]:
        def run() -> None:
            store = fresh(work / ("ours_sharded" if sharded else "ours_unsharded"))
            declare(store, 1, length, chunk_len, sharded)
            if sharded:
                write_sharded(store, 0, n_inner, encoded)
            else:
                write_unsharded(store, 0, encoded)

        return run

    def by_zarr(sharded: bool) -> Callable[[], None]:
        def run() -> None:
            store = fresh(work / ("zarr_sharded" if sharded else "zarr_unsharded"))
            group = zarr.open_group(LocalStore(store), mode="w", zarr_format=3)
            arr = group.create_array(
                ARRAY,
                shape=(1, length),
                chunks=(1, chunk_len),
                shards=(1, shard.shard_len(length, chunk_len)) if sharded else None,
                dtype="uint32",
                fill_value=0,
                compressors=BloscCodec(
                    typesize=4, cname="zstd", clevel=3, shuffle="shuffle", blocksize=0
                ),
            )
            arr[0, :] = row

        return run

    print("\n| writing one row | files | bytes | on disk | seconds |")
    print("|---|---:|---:|---:|---:|")
    for label, run, folder in [
        ("unsharded, file per chunk (encoded chunks given)", ours(False), "ours_unsharded"),
        ("sharded, ShardWriter (encoded chunks given)", ours(True), "ours_sharded"),
        ("zarr-python, unsharded (encodes; row in memory)", by_zarr(False), "zarr_unsharded"),
        ("zarr-python, sharded (encodes; row in memory)", by_zarr(True), "zarr_sharded"),
    ]:
        seconds = best_of(repeat, run)
        files, size, blocks = tree_stats(work / folder / ARRAY)
        print(f"| {label} | {files} | {size:,} | {blocks:,} | {seconds:.3f} |")
    ours_shard = shard.shard_path(work / "ours_sharded", ARRAY, 0).read_bytes()
    assert ours_shard == shard.shard_path(work / "zarr_sharded", ARRAY, 0).read_bytes()
    arr = zarr.open_array(LocalStore(work / "ours_sharded" / ARRAY, read_only=True), mode="r")
    assert np.array_equal(arr[0, :], row)
    print("(checked: the shard equals zarr-python's file and reads back equal to the row)")


def write_rows(stores: dict[str, Path], length: int, chunk_len: int, n_rows: int) -> None:
    encoder = layout.compression_profile("default").encoder()
    n_inner = shard.inner_chunks_per_shard(length, chunk_len)
    for label, store in stores.items():
        fresh(store)
        declare(store, n_rows, length, chunk_len, label == "sharded")
    started = time.perf_counter()
    for r in range(n_rows):
        encoded = [
            (col, encoder.encode(chunk))
            for col, chunk in synthetic_chunks(100 + r, length, chunk_len)
            if chunk.any()
        ]
        write_unsharded(stores["unsharded"], r, encoded)
        write_sharded(stores["sharded"], r, n_inner, encoded)
    print(f"\n{n_rows} rows written both ways in {time.perf_counter() - started:.0f} s")


def read_rows(stores: dict[str, Path], windows: int, repeat: int) -> None:
    """Both layouts measured in turn, `repeat` rounds, best per layout (the machine is shared)."""
    arrays = {
        label: zarr.open_array(LocalStore(store / ARRAY, read_only=True), mode="r")
        for label, store in stores.items()
    }
    n_rows, length = arrays["sharded"].shape
    rng = np.random.default_rng(7)
    small = rng.integers(0, length - 1000, windows)
    large = rng.integers(0, length - 100_000, 10)
    rows = list(range(n_rows))
    checks = [arrays[k][rows, int(small[0]) : int(small[0]) + 1000] for k in arrays]
    assert np.array_equal(*checks)

    def reads(arr: zarr.Array, starts: np.ndarray, width: int, which: list[int] | int):
        def run() -> None:
            for s in starts:
                arr[which, int(s) : int(s) + width]

        return run

    print(f"\n| reading ({n_rows} rows x {length:,} bp), ms per window | unsharded | sharded |")
    print("|---|---:|---:|")
    for label, starts, width, which in [
        (
            f"{windows} x 1 kb, all rows as QuantNado (`arr[[0..{n_rows - 1}], a:b]`)",
            small,
            1000,
            rows,
        ),
        (f"{windows} x 1 kb, one row (`arr[r, a:b]`)", small, 1000, n_rows // 2),
        ("10 x 100 kb, all rows", large, 100_000, rows),
    ]:
        wall = dict.fromkeys(arrays, float("inf"))
        cpu = dict.fromkeys(arrays, float("inf"))
        for arr in arrays.values():
            reads(arr, starts, width, which)()  # warm-up: page cache, zarr's caches
        for _ in range(repeat):
            for key, arr in arrays.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                reads(arr, starts, width, which)()
                wall[key] = min(wall[key], time.perf_counter() - started)
                cpu[key] = min(cpu[key], time.process_time() - started_cpu)
        for kind, best in (("wall", wall), ("CPU", cpu)):
            ms = {k: 1000 * v / len(starts) for k, v in best.items()}
            print(f"| {label}, {kind} | {ms['unsharded']:.2f} | {ms['sharded']:.2f} |")
    for key, store in stores.items():
        n_files, size, blocks = tree_stats(store / ARRAY)
        print(f"{key}: {n_files} files, {size:,} bytes, {blocks:,} bytes on disk")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=250_000_000)
    parser.add_argument("--chunk-len", type=int, default=layout.DEFAULT_CHUNK_LEN)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / ".cache" / "shard")
    parser.add_argument("--keep", action="store_true", help="keep the stores in --workdir")
    parser.add_argument(
        "--read-only", action="store_true", help="only the reads, of the stores kept by --keep"
    )
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    stores = {
        "unsharded": args.workdir / "rows_unsharded",
        "sharded": args.workdir / "rows_sharded",
    }
    if not args.read_only:
        one_row(args.workdir, args.length, args.chunk_len, args.repeat)
        write_rows(stores, args.length, args.chunk_len, args.rows)
    read_rows(stores, args.windows, args.repeat)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not args.keep and not args.read_only:
        shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
