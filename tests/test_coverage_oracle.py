"""Oracle tests: every stored array equals `samtools depth -aa` position for position.

For every fixture, read-filter option and chunk length, with both record sources of the compiled
kernel (BAM records parsed from libdeflate blocks, and htslib's iterator), on every contig
including the first and last base and every chunk boundary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bamfactory import EDGE_CONTIGS, RANDOM_CONTIGS, count_library, samtools_depth, subset_bam
from support import assert_identical_chunks

from bamstore.engine.kernel import available_kernels
from bamstore.engine.store import read_store_info
from bamstore.options import is_sense_strand

KERNELS = available_kernels()

FILTERS = {
    "default": {},
    "min_mapq": {"min_mapq": 1},
    "no_flag_filter": {"exclude_flags": 0},
    "no_supplementary": {"exclude_flags": 0x704 | 0x800},
    "deletions": {"count_deletions": True},
}


def _check_store(read_rows, store: Path, bam: Path, contigs, filters: dict) -> None:
    expected = samtools_depth(bam, contigs, **filters)
    info = read_store_info(store)
    record = info.record.samples[info.sample_names[0]]
    for i, (name, length) in enumerate(contigs):
        got = read_rows(store, name)
        assert got.shape == (1, length)
        np.testing.assert_array_equal(got[0], expected[name], err_msg=f"contig {name}")
        assert record.contig_sums[i] == int(expected[name].sum())
    lib = count_library(
        bam,
        contigs,
        min_mapq=filters.get("min_mapq", 0),
        exclude_flags=filters.get("exclude_flags", 0x704),
    )
    assert int(info.metadata_arrays.total_reads[0]) == lib
    zero_pct = np.mean([100.0 * (expected[n] == 0).sum() / length for n, length in contigs])
    assert float(info.metadata_arrays.sparsity[0]) == pytest.approx(zero_pct, rel=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("chunk_len", [1, 7, 64, 1_048_576])
@pytest.mark.parametrize("filter_name", FILTERS)
def test_edge_cases_match_samtools_depth(
    edge_bam, extract, kernel, chunk_len, filter_name, read_rows
):
    filters = FILTERS[filter_name]
    store = extract(edge_bam, kernel=kernel, chunk_len=chunk_len, **filters)
    _check_store(read_rows, store, edge_bam, EDGE_CONTIGS, filters)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("filter_name", FILTERS)
@pytest.mark.parametrize("fixture", ["random_bam", "random_se_bam"])
def test_simulated_bams_match_samtools_depth(
    request, extract, kernel, filter_name, fixture, read_rows
):
    bam = request.getfixturevalue(fixture)
    filters = FILTERS[filter_name]
    store = extract(bam, kernel=kernel, chunk_len=4096, **filters)
    _check_store(read_rows, store, bam, RANDOM_CONTIGS, filters)


def test_kernels_write_identical_chunks(random_bam, extract):
    """The compiled paths and the Python fallback produce byte-identical stores."""
    stores = {k: extract(random_bam, kernel=k, chunk_len=5000) for k in KERNELS}
    assert_identical_chunks(stores)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("strandedness", ["U", "F", "R"])
def test_strand_arrays_match_strand_subsets(
    edge_bam, random_bam, extract, tmp_path, kernel, strandedness, read_rows
):
    """fwd/rev each equal samtools depth of the sense/antisense reads; fwd + rev == total."""
    mode = {"U": 1, "F": 2, "R": 3}[strandedness]
    cases = [
        (edge_bam, EDGE_CONTIGS, 7),
        (edge_bam, EDGE_CONTIGS, 1000),
        (random_bam, RANDOM_CONTIGS, 4096),
    ]
    for bam, contigs, chunk_len in cases:
        store = extract(bam, kernel=kernel, chunk_len=chunk_len, strandedness=strandedness)
        sense = subset_bam(
            bam, tmp_path / f"{bam.stem}-sense.bam", lambda r: is_sense_strand(r.flag, mode)
        )
        anti = subset_bam(
            bam, tmp_path / f"{bam.stem}-anti.bam", lambda r: not is_sense_strand(r.flag, mode)
        )
        want_f, want_r = samtools_depth(sense, contigs), samtools_depth(anti, contigs)
        info = read_store_info(store)
        assert info.stranded == {"s": strandedness}
        for name, _ in contigs:
            total, fwd, rev = (read_rows(store, a)[0] for a in (name, f"{name}_fwd", f"{name}_rev"))
            np.testing.assert_array_equal(fwd, want_f[name])
            np.testing.assert_array_equal(rev, want_r[name])
            np.testing.assert_array_equal(fwd + rev, total)


def test_strand_rules_follow_quantnado():
    """QuantNado's strand rules, rule by rule: U sends forward alignments to `_fwd`; R (dUTP)
    sends a pair there when read 1 aligns reverse (read 2 forward) and a single-end read when it
    aligns reverse; F the opposite of R."""
    read1_rev, read2_fwd, read1_fwd = 0x1 | 0x40 | 0x10, 0x1 | 0x80, 0x1 | 0x40
    assert is_sense_strand(0x10, 1) is False and is_sense_strand(0, 1) is True  # U
    assert is_sense_strand(read1_rev, 3) and is_sense_strand(read2_fwd, 3)  # R paired
    assert not is_sense_strand(read1_fwd, 3)
    assert is_sense_strand(read1_fwd, 2) and not is_sense_strand(read1_rev, 2)  # F paired
    assert is_sense_strand(0x10, 3) and not is_sense_strand(0, 3)  # R single-end
    assert is_sense_strand(0, 2) and not is_sense_strand(0x10, 2)  # F single-end
