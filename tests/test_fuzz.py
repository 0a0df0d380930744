"""Fuzz: random CIGARs, flags, positions and options against `samtools depth`.

Each example is a random BAM (up to 3 short contigs, up to 40 reads: every CIGAR operation,
every flag bit, MAPQ 0..255, '*' sequences, reads past the contig end), sometimes re-blocked so
that records straddle BGZF blocks as htsjdk/Picard writes them, extracted with random
chunk_len (mostly 1..64, to hit window boundaries), read filter and strandedness, for each
kernel. The store must equal samtools depth position for position, fwd + rev must equal the
total, and the recorded sums and read count must match.

The same random BAMs, with random TLENs, are also counted as fragments (with or without
--extend) and as cut sites (random --shift), against the independent oracle
(bamfactory.mode_oracle).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from bamfactory import Read, mode_oracle, random_reads, reblock, samtools_depth, write_bam
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import (
    extract_here,
    store_attrs,
)

from bamstore.engine.kernel import available_kernels
from bamstore.options import STRAND_MODES, CountingMode, is_sense_strand

KERNELS = available_kernels()
# per kernel; raise it for a longer hunt: BAMSTORE_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py
EXAMPLES = int(os.environ.get("BAMSTORE_FUZZ_EXAMPLES", "40"))
OPS = "MIDNSHP=X"
FLAG_BITS = [0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800]


def _flags(bits: list[int]) -> int:
    value = 0
    for bit in bits:
        value |= bit
    return value


@st.composite
def cases(draw: st.DrawFn) -> dict:
    n_contigs = draw(st.integers(1, 3))
    contigs = [(f"chr{i + 1}", draw(st.integers(1, 300))) for i in range(n_contigs)]
    reads = []
    for _ in range(draw(st.integers(0, 40))):
        tid = draw(st.integers(0, n_contigs - 1))
        ops = draw(
            st.lists(st.tuples(st.sampled_from(OPS), st.integers(1, 60)), min_size=1, max_size=8)
        )
        reads.append(
            Read(
                contigs[tid][0],
                draw(st.integers(0, contigs[tid][1] + 20)),  # some start past the end
                [(OPS.index(op), n) for op, n in ops],
                flag=_flags(draw(st.lists(st.sampled_from(FLAG_BITS), max_size=4))),
                mapq=draw(st.sampled_from([0, 1, 5, 30, 60, 254, 255])),
                seq=draw(st.booleans()),
                tlen=draw(st.one_of(st.just(0), st.integers(-150, 150))),
            )
        )
    return {
        "contigs": contigs,
        "reads": reads,
        "block_sizes": draw(st.one_of(st.none(), st.lists(st.integers(20, 3000), min_size=1))),
        "chunk_len": draw(st.one_of(st.integers(1, 64), st.sampled_from([100, 1_048_576]))),
        "min_mapq": draw(st.sampled_from([0, 0, 1, 30, 255])),
        "exclude_flags": draw(
            st.one_of(
                st.just(0x704),
                st.builds(_flags, st.lists(st.sampled_from(FLAG_BITS), max_size=4)),
            )
        ),
        "count_deletions": draw(st.booleans()),
        "strandedness": draw(st.sampled_from(["", "U", "F", "R"])),
    }


def _check(read_rows, case: dict, kernel: str, folder: Path) -> None:
    contigs, reads = case["contigs"], case["reads"]
    bam = write_bam(folder / "case.bam", reads, contigs)
    if case["block_sizes"]:
        bam = reblock(bam, folder / "reblocked.bam", case["block_sizes"])
    filters = {k: case[k] for k in ("min_mapq", "exclude_flags", "count_deletions")}
    strand = case["strandedness"]
    out = folder / "case.zarr"
    extract_here(bam, out, kernel=kernel, chunk_len=case["chunk_len"], strandedness=strand,
                 **filters)  # fmt: skip
    want = samtools_depth(bam, contigs, **filters)
    record = store_attrs(out)["bamstore"]["samples"]["s"]
    for i, (name, _) in enumerate(contigs):
        total = read_rows(out, name)[0]
        np.testing.assert_array_equal(total, want[name], err_msg=f"{kernel} {name}")
        assert record["contig_sums"][i] == int(want[name].sum())
        if strand:
            fwd, rev = read_rows(out, f"{name}_fwd")[0], read_rows(out, f"{name}_rev")[0]
            np.testing.assert_array_equal(fwd.astype(np.int64) + rev, total)
            assert record["fwd_sums"][i] + record["rev_sums"][i] == record["contig_sums"][i]
    if strand:  # fwd is the coverage of the sense reads alone
        mode = STRAND_MODES[strand]
        sense = [r for r in reads if is_sense_strand(r.flag, mode)]
        want_fwd = samtools_depth(
            write_bam(folder / "sense.bam", sense, contigs), contigs, **filters
        )
        for name, _ in contigs:
            np.testing.assert_array_equal(read_rows(out, f"{name}_fwd")[0], want_fwd[name])
    lengths = dict(contigs)
    primary = sum(
        1
        for r in reads
        if not r.flag & (case["exclude_flags"] | 0x4 | 0x900)
        and r.mapq >= case["min_mapq"]
        and r.pos < lengths[r.contig]
    )
    assert record["total_reads"] == primary


@pytest.mark.parametrize("kernel", KERNELS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_random_bams_equal_samtools_depth(
    kernel: str, case: dict, tmp_path_factory, read_rows
) -> None:
    _check(read_rows, case, kernel, tmp_path_factory.mktemp("fuzz"))


SPLIT_CONTIGS = [(f"chr{i}", 3000) for i in range(1, 7)]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("sizes", [[97], [64, 1000, 13, 5000], [65280]], ids=["97", "mixed", "64k"])
def test_records_split_across_blocks_as_picard_writes_them(
    kernel, sizes, tmp_path, read_rows
) -> None:
    """htsjdk splits records anywhere, also the first record of a contig; the compiled kernel
    once refused such files as corrupted when a contig's span ended inside the next record."""
    bam = write_bam(tmp_path / "a.bam", random_reads(8, 1500, SPLIT_CONTIGS), SPLIT_CONTIGS)
    split = reblock(bam, tmp_path / "split.bam", sizes)
    out = tmp_path / "split.zarr"
    extract_here(split, out, kernel=kernel, chunk_len=300)
    want = samtools_depth(bam, SPLIT_CONTIGS)
    for name, _ in SPLIT_CONTIGS:
        np.testing.assert_array_equal(read_rows(out, name)[0], want[name], err_msg=name)


@st.composite
def counting_modes(draw: st.DrawFn) -> CountingMode:
    if draw(st.booleans()):
        return CountingMode("fragments", extend=draw(st.one_of(st.none(), st.integers(1, 80))))
    shift = (draw(st.integers(-12, 12)), draw(st.integers(-12, 12)))
    return CountingMode("cutsites", shift=shift)


@pytest.mark.parametrize("kernel", KERNELS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases(), counting=counting_modes())
def test_random_bams_in_every_mode_equal_the_oracle(
    kernel: str, case: dict, counting: CountingMode, tmp_path_factory, read_rows
) -> None:
    folder = tmp_path_factory.mktemp("fuzzmode")
    contigs = case["contigs"]
    bam = write_bam(folder / "case.bam", case["reads"], contigs)
    if case["block_sizes"]:
        bam = reblock(bam, folder / "reblocked.bam", case["block_sizes"])
    filters = {k: case[k] for k in ("min_mapq", "exclude_flags")}
    strand = case["strandedness"]
    out = folder / "case.zarr"
    extract_here(bam, out, kernel=kernel, chunk_len=case["chunk_len"], strandedness=strand,
                 counting=counting, **filters)  # fmt: skip
    want = mode_oracle(
        bam, contigs, counting.mode, extend=counting.extend, shift=counting.shift or (0, 0),
        strand=strand or "U", **filters,
    )  # fmt: skip
    record = store_attrs(out)["bamstore"]["samples"]["s"]
    for i, (name, _) in enumerate(contigs):
        total = read_rows(out, name)[0]
        np.testing.assert_array_equal(total, want.total[name], err_msg=f"{kernel} {name}")
        assert record["contig_sums"][i] == int(want.total[name].sum())
        if strand:
            fwd, rev = read_rows(out, f"{name}_fwd")[0], read_rows(out, f"{name}_rev")[0]
            np.testing.assert_array_equal(fwd, want.fwd[name])
            np.testing.assert_array_equal(rev, want.rev[name])
            np.testing.assert_array_equal(fwd.astype(np.int64) + rev, total)
    assert record["total_reads"] == want.total_reads
    warnings = record["warnings"]
    assert warnings["clipped_reads"] == want.clipped
    key = "improper_pair_records" if counting.mode == "fragments" else "off_contig_cut_sites"
    assert warnings[key] == getattr(want, key)
