"""Deterministic synthetic BAMs for the demo, the bundled test data and the benchmarks.

100 bp reads (paired or single-end) with mixed CIGARs (soft clips, insertions, deletions, short
and long N gaps), some duplicates, secondary records and MAPQ 0 records; random bases and
NovaSeq-style binned qualities, so BGZF blocks cost about what real short-read data costs to
decompress. SAM text is produced with numpy and converted by the samtools bundled in pysam, so
5 M records take well under a minute; the result is cached by its parameters.

    python -m bamstore.simulate --reads 5000000 --contigs chr1=60e6,chr2=50e6 -o bench.bam
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pysam

READ_LEN = 100
# (CIGAR, weight, reference span). Every CIGAR has query length READ_LEN.
CIGARS: list[tuple[str, float, int]] = [
    ("100M", 0.62, 100),
    ("5S95M", 0.06, 95),
    ("95M5S", 0.06, 95),
    ("50M2I48M", 0.05, 98),
    ("40M3D60M", 0.05, 103),
    ("30M500N70M", 0.07, 600),
    ("60M5000N40M", 0.05, 5100),
    ("20S40M1D30M10S", 0.04, 71),
]
POOL = 4096  # distinct sequences/qualities: enough that BGZF blocks compress like real reads


def parse_contigs(text: str) -> list[tuple[str, int]]:
    """'chr1=60e6,chr2=5e6' (or bare lengths '60e6,5e6', named chr1, chr2, ...)."""
    contigs = []
    for i, item in enumerate(x for x in text.split(",") if x):
        name, _, length = item.rpartition("=")
        contigs.append((name or f"chr{i + 1}", int(float(length))))
    return contigs


def cache_key(reads: int, contigs: list[tuple[str, int]], seed: int, paired: bool) -> str:
    spec = {
        "reads": reads,
        "contigs": contigs,
        "seed": seed,
        "paired": paired,
        "cigars": CIGARS,
        "v": 4,
    }
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:12]


def write_sam(
    path: Path, reads: int, contigs: list[tuple[str, int]], seed: int, paired: bool = True
) -> None:
    """Write `reads` records spread over contigs in proportion to their length."""
    rng = np.random.default_rng(seed)
    names = [name for name, _ in contigs]
    lengths = [length for _, length in contigs]
    pairs = reads // 2 if paired else reads
    weights = np.array([w for _, w, _ in CIGARS])
    spans = np.array([s for _, _, s in CIGARS])
    share = np.array(lengths, dtype=float) / sum(lengths)
    per_contig = rng.multinomial(pairs, share)
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    seqs = [bases[rng.integers(0, 4, READ_LEN)].tobytes().decode() for _ in range(POOL)]
    # NovaSeq-style binned base qualities (F : , #), as in most current short-read BAMs
    bins = np.frombuffer(b"F:,#", dtype=np.uint8)
    quals = [
        bins[rng.choice(4, READ_LEN, p=[0.85, 0.08, 0.05, 0.02])].tobytes().decode()
        for _ in range(POOL)
    ]
    with open(path, "w") as out:
        out.write("@HD\tVN:1.6\tSO:coordinate\n")
        for name, length in zip(names, lengths, strict=True):
            out.write(f"@SQ\tSN:{name}\tLN:{length}\n")
        for tid, (name, length, n) in enumerate(zip(names, lengths, per_contig, strict=True)):
            if n == 0:
                continue
            # reads (and their mates, up to 400 bp on) stay inside the contig
            margin = 6000 if length > 12000 else length // 2
            usable = np.where(spans + 400 <= margin, weights, 0.0)
            if not usable.any():  # a tiny contig: the shortest CIGAR only
                usable = np.where(spans == spans.min(), 1.0, 0.0)
            cig = rng.choice(len(CIGARS), size=(n, 2), p=usable / usable.sum())
            insert = rng.integers(150, 400, size=n)
            left = rng.integers(0, max(1, length - margin), size=n)
            if not paired:
                lines = _single_end_lines(rng, tid, name, left, cig, seqs, quals)
                out.writelines(lines)
                continue
            right = left + insert - READ_LEN
            right = np.maximum(right, left)
            # read 1 forward on even pairs, reverse on odd pairs (fr-firststrand-like mix)
            r1_first = (np.arange(n) % 2) == 0
            dup = rng.random(n) < 0.05
            mapq = np.where(rng.random(n) < 0.02, 0, 60)
            pos = np.concatenate([left, right])
            mate_pos = np.concatenate([right, left])
            is_left = np.concatenate([np.ones(n, bool), np.zeros(n, bool)])
            is_r1 = np.concatenate([r1_first, ~r1_first])
            cigars = np.concatenate([cig[:, 0], cig[:, 1]])
            pair_id = np.concatenate([np.arange(n), np.arange(n)])
            flag = 0x1 | 0x2 | np.where(is_r1, 0x40, 0x80)
            flag = flag | np.where(is_left, 0x20, 0x10)  # left mate forward, right mate reverse
            flag = flag | np.where(np.concatenate([dup, dup]), 0x400, 0)
            secondary = rng.random(2 * n) < 0.02
            flag = flag | np.where(secondary, 0x100, 0)
            mq = np.concatenate([mapq, mapq])
            tlen = np.where(is_left, 1, -1) * np.concatenate([insert, insert])
            order = np.argsort(pos, kind="stable")
            cig_text = [c for c, _, _ in CIGARS]
            pick = rng.integers(0, POOL, size=(2 * n, 2))
            lines = []
            for i in order:
                c = int(cigars[i])
                lines.append(
                    f"p{tid}_{pair_id[i]}\t{flag[i]}\t{name}\t{pos[i] + 1}\t{mq[i]}\t"
                    f"{cig_text[c]}\t=\t{mate_pos[i] + 1}\t{tlen[i]}\t"
                    f"{seqs[pick[i, 0]]}\t{quals[pick[i, 1]]}\n"
                )
                if len(lines) >= 200_000:
                    out.writelines(lines)
                    lines.clear()
            out.writelines(lines)


def _single_end_lines(
    rng: np.random.Generator,
    tid: int,
    name: str,
    pos: np.ndarray,
    cig: np.ndarray,
    seqs: list[str],
    quals: list[str],
) -> list[str]:
    n = len(pos)
    flag = np.where(rng.random(n) < 0.5, 0x10, 0) | np.where(rng.random(n) < 0.05, 0x400, 0)
    mq = np.where(rng.random(n) < 0.02, 0, 60)
    pick = rng.integers(0, POOL, size=(n, 2))
    order = np.argsort(pos, kind="stable")
    return [
        f"s{tid}_{i}\t{flag[i]}\t{name}\t{pos[i] + 1}\t{mq[i]}\t{CIGARS[int(cig[i, 0])][0]}\t"
        f"*\t0\t0\t{seqs[pick[i, 0]]}\t{quals[pick[i, 1]]}\n"
        for i in order
    ]


def make_bam(
    out: Path,
    reads: int,
    contigs: list[tuple[str, int]],
    seed: int = 7,
    paired: bool = True,
    threads: int = 2,
    index: bool = True,
) -> Path:
    """Create `out` (+ .bai) unless a file made with the same parameters is already there."""
    stamp = out.with_suffix(out.suffix + ".params")
    key = cache_key(reads, contigs, seed, paired)
    if out.exists() and stamp.exists() and stamp.read_text().strip() == key:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        sam = Path(tmp) / "reads.sam"
        write_sam(sam, reads, contigs, seed, paired)
        part = Path(tmp) / "reads.bam"
        pysam.view(
            "-b", "--no-PG", "-@", str(threads), "-o", str(part), str(sam), catch_stdout=False
        )
        if index:
            pysam.index("-@", str(threads), str(part))
            os.replace(str(part) + ".bai", str(out) + ".bai")
        os.replace(part, out)
    stamp.write_text(key + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=5_000_000)
    ap.add_argument("--contigs", default="chr1=60e6,chr2=50e6,chr3=30e6,chr4=15e6")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--single-end", action="store_true")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    path = make_bam(
        args.out, args.reads, parse_contigs(args.contigs), args.seed, paired=not args.single_end
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
