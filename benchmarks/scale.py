"""Cohort scale: merge and append of 100, 1,000 and 5,000 samples, unsharded and sharded.

What is measured (`make bench-scale`, one run, ~10 minutes on 2 busy cores):
- **merge**: `bamstore merge --parts-file ... --out cohort.zarr --threads 2` of N per-sample
  stores, as the pipeline's MERGE task runs it: wall time, CPU, peak RSS of the merge process
  (os.wait4 through benchmarks/run.py's launcher), and the store's file count and apparent
  bytes (every path counted, hard links included: what a copy or an upload would move).
- **append**: `bamstore merge --out grown.zarr cohort.zarr NEW...` with APPEND new per-sample
  stores: the cost of growing an N-sample cohort (it links the N existing rows again).
- **reads**: `BamStore.extract_region` of REGIONS random 1 kb windows over every sample of the
  smallest cohort, and over one sample of the largest; warm page cache; best of 3.

The samples: REAL small BAMs are simulated (`bamstore.simulate.make_bam`, a few thousand read
pairs each over a 1.2 Mbp genome of 5 contigs) and extracted for real in each layout
(chunk_len 16,384: ~75 chunks per sample, so that one-file-per-chunk and one-file-per-row
differ as they do for a human genome at the default chunk length: ~3,100 chunks over 25
contigs). Extracting 5,000 BAMs would take over an hour on this machine, so the other parts are
**clones**: a real part's files hard-linked under a new folder, with its root zarr.json
rewritten to carry a new sample name (the coverage, digests and metadata arrays are those of the
real part). Merge treats a clone as any part (it places its files and checks their digests), so
the merge figures are those of N distinct parts; only the page cache is kinder (clones share
inodes), which favours reads of chunk files a little.

    .venv/bin/python benchmarks/scale.py [--sizes 100,1000,5000] [--real 24] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from clones import clone_part
from run import RunStats, bamstore_exe, run_once

from bamstore import layout
from bamstore.engine.extract import ExtractOptions, extract_sample
from bamstore.simulate import make_bam

REPO = Path(__file__).resolve().parents[1]
CONTIGS = [
    ("chr1", 400_000),
    ("chr2", 300_000),
    ("chr3", 250_000),
    ("chr4", 200_000),
    ("chrM", 16_569),
]
CHUNK_LEN = 16_384
READS = 4_000  # records per BAM (2,000 pairs)
APPEND = 10
REGIONS = 50


@dataclass
class MergeRow:
    layout: str
    samples: int
    what: str  # "merge" or "append +10"
    stats: RunStats
    files: int
    bytes: int
    coverage_files: int

    def per_sample_ms(self, n: int) -> float:
        return 1000 * self.stats.wall / n


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def tree_stats(path: Path) -> tuple[int, int, int]:
    """(files, apparent bytes, coverage chunk or shard files) of a store."""
    files = size = coverage = 0
    for root, _, names in os.walk(path):
        in_metadata = layout.METADATA_GROUP in Path(root).relative_to(path).parts
        for name in names:
            files += 1
            size += os.lstat(os.path.join(root, name)).st_size
            coverage += name != layout.ZARR_JSON and not in_metadata
    return files, size, coverage


def make_parts(work: Path, n: int, real: int, shard: bool) -> list[Path]:
    """n per-sample stores: `real` extracted from their own BAMs, the rest clones of them."""
    folder = work / f"parts-{'sharded' if shard else 'unsharded'}"
    bams = [make_bam(work / "bams" / f"s{i:03d}.bam", READS, CONTIGS, seed=100 + i, threads=1)
            for i in range(real)]  # fmt: skip
    options = ExtractOptions(chunk_len=CHUNK_LEN, chromosomes="all", shard=shard)
    parts = []
    for i in range(n):
        out = folder / f"s{i:05d}.zarr"
        if not out.exists():
            if i < real:
                extract_sample(bams[i], f"s{i:05d}", out, options)
            else:
                clone_part(parts[i % real], out, f"s{i:05d}")
        parts.append(out)
    return parts


def merge(parts: list[Path], out: Path, *, first: Path | None = None) -> RunStats:
    parts_file = out.with_suffix(".parts.txt")
    parts_file.write_text("".join(f"{p}\n" for p in parts))
    argv = [bamstore_exe(), "merge", "--out", out, "--threads", "2", "--quiet"]
    argv += [first] if first else []
    shutil.rmtree(out, ignore_errors=True)
    return run_once([*argv, "--parts-file", parts_file])


def best_read_seconds(store: Path, windows: list[tuple[str, int]], one_sample: bool) -> float:
    from bamstore.api import BamStore

    best = float("inf")
    for _ in range(3):
        reader = BamStore.open(store)
        samples = [reader.sample_names[0]] if one_sample else None
        started = time.perf_counter()
        for chrom, start in windows:
            reader.extract_region(chrom=chrom, start=start, end=start + 1000, samples=samples)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--real", type=int, default=24, help="parts extracted from real BAMs")
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / ".cache" / "scale")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale.md")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows: list[MergeRow] = []
    reads: dict[str, float] = {}
    rng = random.Random(5)
    windows = [(c, rng.randrange(0, n - 1000)) for c, n in rng.choices(CONTIGS[:4], k=REGIONS)]
    extract_seconds = {}
    for shard in (False, True):
        name = "sharded" if shard else "unsharded"
        t = time.monotonic()
        all_parts = make_parts(work, max(sizes) + APPEND, args.real, shard)
        extract_seconds[name] = time.monotonic() - t
        log(f"{name}: {len(all_parts)} parts ready in {extract_seconds[name]:.0f} s")
        new = all_parts[-APPEND:]
        for n in sizes:
            cohort = work / f"cohort-{name}-{n}.zarr"
            stats = merge(all_parts[:n], cohort)
            rows.append(MergeRow(name, n, "merge", stats, *tree_stats(cohort)))
            log(f"{name} merge {n}: {stats.wall:.1f} s, {stats.maxrss_kib / 1024:.0f} MiB")
            grown = work / f"grown-{name}-{n}.zarr"
            stats = merge(new, grown, first=cohort)
            rows.append(MergeRow(name, n, f"append +{APPEND}", stats, *tree_stats(grown)))
            log(f"{name} append {APPEND} to {n}: {stats.wall:.1f} s")
            shutil.rmtree(grown)
            if n == sizes[0]:
                reads[f"{name}, {n:,} samples, all"] = best_read_seconds(cohort, windows, False)
            if n == sizes[-1]:
                reads[f"{name}, {n:,} samples, one"] = best_read_seconds(cohort, windows, True)
            if n != sizes[-1]:
                shutil.rmtree(cohort)
    text = report(rows, reads, extract_seconds, args, time.monotonic() - started)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


def report(rows, reads, extract_seconds, args, total: float) -> str:
    genome = sum(n for _, n in CONTIGS)
    chunks = sum(-(-n // CHUNK_LEN) for _, n in CONTIGS)
    lines = [
        "# bench-scale",
        "",
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, {os.cpu_count()} cores "
        f"(shared), Python {platform.python_version()}; total {total / 60:.1f} min.",
        f"Genome {len(CONTIGS)} contigs, {genome:,} bp; chunk_len {CHUNK_LEN:,} "
        f"({chunks} chunks per sample, unstranded); {READS:,} records per BAM.",
        f"{args.real} parts extracted from their own simulated BAMs per layout "
        f"(unsharded {extract_seconds['unsharded']:.0f} s, sharded "
        f"{extract_seconds['sharded']:.0f} s, including cloning); every other part is a "
        "clone of one of them under a new sample name (files hard-linked, root zarr.json "
        "rewritten). Merges: `bamstore merge --threads 2`, hard links (same filesystem).",
        "",
        "| layout | samples | step | wall s | CPU s | peak RSS MiB | ms per sample | files "
        "| coverage files per sample | size |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        n_out = row.samples + (APPEND if row.what != "merge" else 0)
        per = row.per_sample_ms(row.samples if row.what == "merge" else APPEND)
        lines.append(
            f"| {row.layout} | {row.samples:,} | {row.what} | {row.stats.wall:.1f} | "
            f"{row.stats.cpu:.1f} | {row.stats.maxrss_kib / 1024:.0f} | {per:.1f} | "
            f"{row.files:,} | {row.coverage_files / n_out:.1f} | {row.bytes / 2**20:,.1f} MiB |"
        )
    lines += [
        "",
        f"ms per sample: merge wall / N; append wall / {APPEND} (the new samples; it also "
        "re-links the N existing rows, so it grows with N).",
        "",
        f"Reads: `BamStore.extract_region` (zarr-python's reader, as QuantNado's) of {REGIONS} "
        "random 1 kb windows, best of 3, warm page cache: every sample of the smallest cohort, "
        "and one sample of the largest.",
        "",
        "| layout, cohort, samples read | ms per window |",
        "| --- | ---: |",
    ]
    for name, seconds in reads.items():
        lines.append(f"| {name} | {1000 * seconds / REGIONS:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
