"""Random windows timed in-process, one reader per process: run by benchmarks/read_bench.py in
bamstore's venv (BamStore) or in the anchors' venv (pyBigWig, pybigtools), so that no tool's
imports or caches mix with another's. Needs only numpy at import time.

    python window_timer.py WINDOWS.bed --passes 3 region STORE s1,s2  # BamStore.extract_region
    python window_timer.py WINDOWS.bed regions STORE all 256          # extract_regions batches
    python window_timer.py WINDOWS.bed iter STORE all 256             # iter_regions(WINDOWS.bed)
    python window_timer.py WINDOWS.bed pybigwig A.bw [B.bw ...]       # values(numpy=True)
    python window_timer.py WINDOWS.bed pybigtools A.bw [B.bw ...]

Each pass opens its readers first (outside the timing: a store's or a bigWig's header and
index), then reads every window of the BED (chrom, start, end; in the file's order) from every
sample or file. Pass 0 warms the page cache and keeps, for the first --check windows, each
sample's sum (the values the harness compares across tools); passes 1..--passes are timed with
perf_counter and the best is kept. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

Window = tuple[str, int, int]
# a reader: windows -> per window, the values of each sample (samples x width, or a batch)
Reader = Callable[[list[Window]], Iterator[np.ndarray]]


def read_windows(path: Path) -> list[Window]:
    out = []
    for line in path.read_text().splitlines():
        chrom, start, end = line.split("\t")[:3]
        out.append((chrom, int(start), int(end)))
    return out


def bamstore_reader(args: argparse.Namespace) -> Callable[[], Reader]:
    from bamstore.api import BamStore

    def opened() -> Reader:
        store = BamStore.open(args.store)
        samples = None if args.samples == "all" else args.samples.split(",")
        if args.tool == "region":

            def each(windows: list[Window]) -> Iterator[np.ndarray]:
                for chrom, start, end in windows:
                    yield store.extract_region(chrom=chrom, start=start, end=end, samples=samples)

        elif args.tool == "regions":

            def each(windows: list[Window]) -> Iterator[np.ndarray]:
                for at in range(0, len(windows), args.batch):
                    yield from store.extract_regions(windows[at : at + args.batch], samples)

        else:  # iter: the BED itself, as a loader reads it

            def each(windows: list[Window]) -> Iterator[np.ndarray]:
                for batch in store.iter_regions(args.windows, args.batch, samples):
                    yield from batch.values

        return each

    return opened


def bigwig_reader(args: argparse.Namespace) -> Callable[[], Reader]:
    if args.tool == "pybigwig":
        import pyBigWig

        def values(handle: object, chrom: str, start: int, end: int) -> np.ndarray:
            return handle.values(chrom, start, end, numpy=True)  # type: ignore[attr-defined]

        def open_file(path: str) -> object:
            return pyBigWig.open(path)
    else:
        import pybigtools

        def values(handle: object, chrom: str, start: int, end: int) -> np.ndarray:
            # uncovered bases as NaN (pybigtools 0.3's default); exported bigWigs have none
            return handle.values(chrom, start, end, fillna=None)  # type: ignore[attr-defined]

        def open_file(path: str) -> object:
            return pybigtools.open(path)

    def opened() -> Reader:
        handles = [open_file(p) for p in args.bigwigs]

        def each(windows: list[Window]) -> Iterator[np.ndarray]:
            for chrom, start, end in windows:
                yield np.stack([values(h, chrom, start, end) for h in handles])

        return each

    return opened


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("windows", type=Path)
    ap.add_argument("--passes", type=int, default=3, help="timed passes (the best is kept)")
    ap.add_argument("--check", type=int, default=100, help="windows whose sums are reported")
    tools = ap.add_subparsers(dest="tool", required=True)
    for name in ("region", "regions", "iter"):
        sub = tools.add_parser(name)
        sub.add_argument("store")
        sub.add_argument("samples", help="comma-separated names, or 'all'")
        if name != "region":
            sub.add_argument("batch", type=int)
    for name in ("pybigwig", "pybigtools"):
        tools.add_parser(name).add_argument("bigwigs", nargs="+")
    args = ap.parse_args(argv)
    windows = read_windows(args.windows)
    opener = (
        bigwig_reader(args) if args.tool in ("pybigwig", "pybigtools") else bamstore_reader(args)
    )
    check: list[list[float]] = []
    for i, values in enumerate(opener()(windows)):  # pass 0: warm-up and values
        if i < args.check:
            check.append(np.asarray(values, dtype=np.float64).sum(axis=-1).tolist())
    seconds = []
    for _ in range(args.passes):
        reader = opener()
        started = time.perf_counter()
        for _values in reader(windows):
            pass
        seconds.append(time.perf_counter() - started)
    best = min(seconds)
    print(
        json.dumps(
            {
                "tool": args.tool,
                "windows": len(windows),
                "seconds": seconds,
                "ms_per_window": 1000 * best / len(windows),
                "windows_per_s": len(windows) / best,
                "check": check,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
