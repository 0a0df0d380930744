"""Fragment and cut-site coverage (`--mode fragments|cutsites`) against independent oracles.

`mode_oracle` (tests/bamfactory.py) applies the rules of the counting-mode table in
docs/building.md record by record with numpy slices; it is itself checked against `bedtools
genomecov -pc`, `-fs` and `-5` where bedtools defines the same thing. Both record sources of the
compiled kernel (libdeflate blocks, htslib's iterator) must match the oracle on every contig, at
the first and last base and at every chunk boundary, and write byte-identical chunks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pysam
import pytest
import zarr
from bamfactory import Read, bedtools_genomecov, mode_oracle, write_bam
from support import (
    assert_clean_refusal,
    assert_identical_chunks,
    cli_argv,
    error_lines,
    extract_options,
)

from bamstore.engine.extract import ExtractOptions, extract_sample
from bamstore.engine.kernel import available_kernels
from bamstore.options import CountingMode

KERNELS = available_kernels()
CONTIGS = [("m1", 1000), ("m2", 300), ("m3", 50)]
RANDOM_CONTIGS = [("chr1", 30_000), ("chr2", 12_000), ("chr3", 700)]  # conftest's random BAMs

# flags of the two mates of a proper pair: left mate forward, right mate reverse
F1R2_LEFT, F1R2_RIGHT = 0x1 | 0x2 | 0x40 | 0x20, 0x1 | 0x2 | 0x80 | 0x10
F2R1_LEFT, F2R1_RIGHT = 0x1 | 0x2 | 0x80 | 0x20, 0x1 | 0x2 | 0x40 | 0x10

MODES = {
    "fragments": CountingMode("fragments"),
    "fragments-extend30": CountingMode("fragments", extend=30),
    "fragments-extend200": CountingMode("fragments", extend=200),
    "cutsites": CountingMode("cutsites"),
    "cutsites-0,0": CountingMode("cutsites", shift=(0, 0)),
    "cutsites-7,3": CountingMode("cutsites", shift=(7, 3)),
    "cutsites--9,-12": CountingMode("cutsites", shift=(-9, -12)),
}


def _pair(contig: str, left: int, right: int, tlen: int, cigars=("50M", "50M"), flags=None, **kw):
    """Both mates of one pair; `tlen` is the left mate's TLEN (the right gets -tlen)."""
    f_left, f_right = flags or (F1R2_LEFT, F1R2_RIGHT)
    return [
        Read(contig, left, cigars[0], flag=f_left, tlen=tlen, mate_pos=right, **kw),
        Read(contig, right, cigars[1], flag=f_right, tlen=-tlen, mate_pos=left, **kw),
    ]


def mode_edge_reads() -> list[Read]:
    """Every case the counting modes' rules name, at contig ends and chunk boundaries (1, 7, 64)."""
    return [
        *_pair("m1", 0, 70, 120),  # first base
        *_pair("m1", 60, 65, 15, ("10M", "10M"), (F2R1_LEFT, F2R1_RIGHT)),  # crosses 63/64
        *_pair("m1", 100, 350, 300, ("3S20M2I10M5D20M4S", "20M100N30M")),  # CIGARs ignored
        *_pair("m1", 950, 975, 120, ("30M", "25M")),  # fragment past the end: clipped
        *_pair("m1", 500, 500, 40, ("40M", "40M")),  # mates start together
        # improper pair (0x2 unset), proper flag without TLEN, mate unmapped
        Read("m1", 200, "30M", flag=0x1 | 0x40 | 0x20, tlen=400, mate_pos=570),
        Read("m1", 570, "30M", flag=0x1 | 0x80 | 0x10, tlen=-400, mate_pos=200),
        Read("m1", 250, "30M", flag=F1R2_LEFT, tlen=0, mate_pos=10),
        Read("m1", 260, "30M", flag=0x1 | 0x8 | 0x40),
        *_pair("m1", 600, 670, 100, ("30M", "30M"), (F1R2_LEFT | 0x400, F1R2_RIGHT | 0x400)),
        Read("m1", 610, "30M", flag=F1R2_LEFT | 0x100, tlen=80, mate_pos=660),  # secondary
        Read("m1", 615, "30M", flag=F1R2_LEFT | 0x800, tlen=80, mate_pos=660),  # supplementary
        Read("m1", 620, "30M", flag=F1R2_LEFT | 0x200, tlen=80, mate_pos=660),  # QC fail
        *_pair("m1", 700, 760, 90, ("30M", "30M"), mapq=0),
        Read("m1", 440, "10M", flag=0x4),  # unmapped, placed
        # single-end reads
        Read("m1", 2, "20M", flag=0x10),  # reverse near the start: extension/shift below 0
        Read("m1", 0, "5M"),  # forward at the first base
        Read("m1", 300, "5S20M100N20M3D5M", flag=0x10),  # spliced, deleted, clipped, reverse
        Read("m1", 320, "10M1D10M"),
        Read("m1", 800, "12M", seq=False),
        Read("m1", 127, "1M"),  # ends at a chunk boundary (128 = 2 x 64)
        Read("m1", 128, "1M", flag=0x10),
        Read("m1", 990, "30M"),  # runs past the end
        Read("m1", 985, "10M", flag=0x10),
        Read("m1", 996, "4M"),  # cut site at start+4 = 1000: off the contig
        Read("m1", 1005, "10M"),  # starts past the end
        Read("m1", 1005, "10M", flag=F1R2_LEFT, tlen=50, mate_pos=1030),
        # m2: a fragment over the whole contig; last base
        *_pair("m2", 0, 250, 300, ("50M", "50M"), (F2R1_LEFT, F2R1_RIGHT)),
        Read("m2", 280, "20M", flag=0x10),
        Read("m2", 299, "1M"),
        # m3: shorter than one fragment
        *_pair("m3", 10, 40, 100, ("20M", "10M")),
        Read("m3", 45, "5M", flag=0x10),
    ]


@pytest.fixture(scope="module")
def mode_bam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bam(tmp_path_factory.mktemp("modes") / "modes.bam", mode_edge_reads(), CONTIGS)


def _oracle(bam: Path, contigs, counting: CountingMode, **kw):
    fragment_len = None
    if counting.min_fragment_len is not None or counting.max_fragment_len is not None:
        fragment_len = (counting.min_fragment_len, counting.max_fragment_len)
    return mode_oracle(
        bam,
        contigs,
        counting.mode,
        extend=counting.extend,
        shift=counting.shift or (0, 0),
        fragment_len=fragment_len,
        **kw,
    )


def _attrs(store: Path) -> dict:
    return dict(zarr.open_group(str(store), mode="r").attrs)


def _total_reads(store: Path) -> int:
    return int(zarr.open_group(str(store), mode="r")["metadata"]["total_reads"][0])


def _check(store: Path, want, contigs, read_rows, counting: CountingMode) -> None:
    record = _attrs(store)["bamstore"]["samples"]["s"]
    for i, (name, length) in enumerate(contigs):
        got = read_rows(store, name)
        assert got.shape == (1, length)
        np.testing.assert_array_equal(got[0], want.total[name], err_msg=name)
        assert record["contig_sums"][i] == int(want.total[name].sum())
    assert _total_reads(store) == want.total_reads
    assert record["total_reads"] == want.total_reads
    warnings = record["warnings"]
    assert warnings["clipped_reads"] == want.clipped
    filtered = counting.filters_fragment_len
    if counting.mode == "fragments" or filtered:
        assert warnings["improper_pair_records"] == want.improper_pair_records
    else:
        assert "improper_pair_records" not in warnings
    if counting.mode == "fragments":
        assert "off_contig_cut_sites" not in warnings
    else:
        assert warnings["off_contig_cut_sites"] == want.off_contig_cut_sites
    if filtered:
        assert warnings["single_end_records"] == want.single_end_records
    else:
        assert "single_end_records" not in warnings


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk_len", [1, 7, 64, 4096, 1_048_576])
def test_modes_match_oracle_at_edges(mode_bam, extract, read_rows, kernel, mode, chunk_len):
    counting = MODES[mode]
    store = extract(mode_bam, kernel=kernel, chunk_len=chunk_len, counting=counting)
    want = _oracle(mode_bam, CONTIGS, counting)
    assert want.total_reads > 0 and any(a.any() for a in want.total.values())
    _check(store, want, CONTIGS, read_rows, counting)


def test_edge_oracle_counts_what_the_issue_says(mode_bam):
    """The hand-placed cases hit every rule (so the oracle comparisons above cannot be vacuous),
    with values worked out by hand."""
    frag = _oracle(mode_bam, CONTIGS, MODES["fragments"])
    # 2 improper-pair records, 1 proper flag without TLEN, 1 mate unmapped
    assert frag.improper_pair_records == 4
    m1 = frag.total["m1"]
    assert m1[0] == 2 and m1[119] == 2 and m1[120] == 1  # pairs [0, 120), [100, 400); read 0
    # pair [950, 1070) clipped at 1000; reads [985, 995), [990, 1020) clipped, [996, 1000)
    assert m1[949] == 0 and m1[950:].tolist() == [1] * 35 + [2] * 5 + [3] * 5 + [2] + [3] * 4
    assert frag.total["m3"].tolist() == [0] * 10 + [1] * 35 + [2] * 5
    assert frag.total["m2"].tolist()[:2] == [1, 1] and frag.total["m2"][-1] == 3
    assert frag.clipped == 5  # two fragments past the end, the read at 990, two past-end starts
    spliced = _oracle(mode_bam, CONTIGS, MODES["fragments-extend200"]).total["m1"]
    # pair [0, 120), forward read [0, 200); reverse reads ending at 22 and 129 extended 200
    # back, clipped at 0
    assert spliced[0] == 4 and spliced[22] == 3
    cuts = _oracle(mode_bam, CONTIGS, MODES["cutsites"])
    # m3: left mate at 10 -> 14; right mate [40, 50) and reverse read [45, 50) -> 44
    assert cuts.total["m3"][14] == 1 and cuts.total["m3"][44] == 2
    assert cuts.total["m3"].sum() == 3 and cuts.total["m1"][16] == 1  # reverse read [2, 22)
    assert cuts.off_contig_cut_sites == 2  # forward reads at m1:996 -> 1000, m2:299 -> 303
    plain = _oracle(mode_bam, CONTIGS, MODES["cutsites-0,0"])
    assert plain.total["m2"][299] == 3  # reverse mate, reverse read and forward read end there
    assert plain.off_contig_cut_sites == 0
    left = _oracle(mode_bam, CONTIGS, MODES["cutsites--9,-12"])
    # forward records at m1:0 (a read, a left mate) and m2:0 shift below 0; the reverse read
    # [2, 22) lands at 9
    assert left.off_contig_cut_sites == 3 and left.total["m1"][9] == 1


FILTERS = {
    "default": {},
    "min_mapq": {"min_mapq": 1},
    "duplicates_kept": {"exclude_flags": 0},
}


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", ["fragments", "fragments-extend200", "cutsites", "cutsites-0,0"])
@pytest.mark.parametrize("filter_name", FILTERS)
def test_modes_with_read_filters_match_oracle(
    random_bam, random_se_bam, mode_bam, extract, read_rows, kernel, mode, filter_name
):
    counting, filters = MODES[mode], FILTERS[filter_name]
    for bam, contigs in ((random_bam, RANDOM_CONTIGS), (random_se_bam, RANDOM_CONTIGS)):
        store = extract(bam, kernel=kernel, chunk_len=4096, counting=counting, **filters)
        _check(store, _oracle(bam, contigs, counting, **filters), contigs, read_rows, counting)
    store = extract(mode_bam, kernel=kernel, chunk_len=64, counting=counting, **filters)
    _check(store, _oracle(mode_bam, CONTIGS, counting, **filters), CONTIGS, read_rows, counting)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", ["fragments", "fragments-extend30", "cutsites", "cutsites-7,3"])
@pytest.mark.parametrize("strand", ["U", "F", "R"])
def test_stranded_modes_split_by_the_sample_rule(
    mode_bam, random_bam, extract, read_rows, kernel, mode, strand
):
    """fwd/rev hold the fragments (cut sites) of each transcript strand; fwd + rev == total."""
    counting = MODES[mode]
    for bam, contigs, chunk_len in ((mode_bam, CONTIGS, 7), (random_bam, RANDOM_CONTIGS, 4096)):
        store = extract(
            bam, kernel=kernel, chunk_len=chunk_len, counting=counting, strandedness=strand
        )
        want = _oracle(bam, contigs, counting, strand=strand)
        record = _attrs(store)["bamstore"]["samples"]["s"]
        for i, (name, _) in enumerate(contigs):
            total = read_rows(store, name)[0]
            fwd, rev = read_rows(store, f"{name}_fwd")[0], read_rows(store, f"{name}_rev")[0]
            np.testing.assert_array_equal(fwd, want.fwd[name], err_msg=f"{name} fwd")
            np.testing.assert_array_equal(rev, want.rev[name], err_msg=f"{name} rev")
            np.testing.assert_array_equal(fwd.astype(np.int64) + rev, total)
            assert record["fwd_sums"][i] + record["rev_sums"][i] == record["contig_sums"][i]
        if bam == random_bam and mode.startswith("fragments") and strand in "FR":
            # the rule gives both mates of a pair one strand: both arrays hold fragments
            assert all(want.fwd[n].any() and want.rev[n].any() for n, _ in contigs[:2])


@pytest.mark.parametrize("mode", MODES)
def test_kernels_write_identical_chunks_in_every_mode(random_bam, mode_bam, extract, mode):
    counting = MODES[mode]
    for bam, chunk_len in ((random_bam, 5000), (mode_bam, 7)):
        stores = {
            k: extract(bam, kernel=k, chunk_len=chunk_len, counting=counting, strandedness="R")
            for k in KERNELS
        }
        files = assert_identical_chunks(stores)
        assert any("_fwd" in str(f) for f in files) and any("_rev" in str(f) for f in files)


# ---------------------------------------------------------------------------- fragment length

FRAGMENT_CONTIGS = [("f1", 500), ("f2", 260)]
FRAGMENT_LEN_MODES = {
    "fragments-100-180": CountingMode("fragments", min_fragment_len=100, max_fragment_len=180),
    "fragments-max99": CountingMode("fragments", max_fragment_len=99),
    "fragments-min181": CountingMode("fragments", min_fragment_len=181),
    "cutsites-100-180": CountingMode("cutsites", min_fragment_len=100, max_fragment_len=180),
    "cutsites-0,0-100-100": CountingMode(
        "cutsites", shift=(0, 0), min_fragment_len=100, max_fragment_len=100
    ),
    "cutsites-max99": CountingMode("cutsites", max_fragment_len=99),
}


def fragment_len_reads() -> list[Read]:
    """Pairs whose |TLEN| is one below, at and one above the bounds the tests use (100, 180),
    at the first and last base of each contig, in both orientations, one running past the end;
    and the records a filter leaves out for other reasons (single-end, improper, TLEN 0)."""
    return [
        *_pair("f1", 0, 49, 99),  # [0, 99): one below 100
        *_pair("f1", 0, 50, 100),  # [0, 100): at 100, from the first base
        *_pair("f1", 1, 131, 180, flags=(F2R1_LEFT, F2R1_RIGHT)),  # [1, 181): at 180
        *_pair("f1", 2, 133, 181),  # one above 180
        *_pair("f1", 60, 60, 50),  # mates start together
        Read("f1", 200, "30M", flag=0x1 | 0x40 | 0x20, tlen=150, mate_pos=300),  # improper
        Read("f1", 210, "30M", flag=F1R2_LEFT, tlen=0, mate_pos=210),  # proper flag, TLEN 0
        Read("f1", 220, "30M"),  # single-end, forward and reverse
        Read("f1", 230, "30M", flag=0x10),
        *_pair("f1", 240, 300, 120, flags=(F1R2_LEFT | 0x400, F1R2_RIGHT | 0x400)),  # dups
        Read("f1", 250, "30M", flag=F1R2_LEFT | 0x800, tlen=120, mate_pos=340),  # supplementary
        *_pair("f1", 320, 450, 180),  # [320, 500): to the last base
        *_pair("f1", 400, 450, 100, flags=(F2R1_LEFT, F2R1_RIGHT)),  # [400, 500)
        *_pair("f1", 401, 451, 99),
        *_pair("f1", 430, 470, 150, ("40M", "30M")),  # [430, 580): clipped at 500
        Read("f1", 505, "10M", flag=F1R2_LEFT, tlen=120, mate_pos=600),  # starts past the end
        Read("f1", 506, "10M", flag=F1R2_LEFT, tlen=20, mate_pos=520),  # ... outside the range
        *_pair("f2", 0, 210, 260),  # the whole contig, outside every range but >= 181
        *_pair("f2", 0, 60, 110),  # [0, 110)
        *_pair("f2", 159, 210, 101),  # [159, 260): to the last base
    ]


@pytest.fixture(scope="module")
def fragment_len_bam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fragment_len")
    return write_bam(folder / "fragment_len.bam", fragment_len_reads(), FRAGMENT_CONTIGS)


def test_fragment_len_oracle_counts_what_the_issue_says(fragment_len_bam):
    """The hand-placed pairs hit every rule of the filter, with values worked out by hand."""
    want = _oracle(fragment_len_bam, FRAGMENT_CONTIGS, FRAGMENT_LEN_MODES["fragments-100-180"])
    f1, f2 = want.total["f1"], want.total["f2"]
    # [0, 100), [1, 181), [320, 500), [400, 500), [430, 500) (clipped); not TLEN 99 or 181
    assert f1[:3].tolist() == [1, 2, 2] and f1[99:102].tolist() == [2, 1, 1]
    assert f1[180:182].tolist() == [1, 0] and f1[319:321].tolist() == [0, 1]
    assert f1[499] == 3 and f1[200:320].sum() == 0
    assert f2[0] == 1 and f2[109:111].tolist() == [1, 0] and f2[158:160].tolist() == [0, 1]
    assert f2[259] == 1
    assert want.total_reads == 14  # both mates of the seven pairs in range
    assert (want.single_end_records, want.improper_pair_records) == (2, 2)
    assert want.outside_fragment_len == 11  # 99 x2, 181, 50, 260: both mates; TLEN 20
    assert want.clipped == 2  # [430, 580) and the record that starts past the end
    below = _oracle(fragment_len_bam, FRAGMENT_CONTIGS, FRAGMENT_LEN_MODES["fragments-max99"])
    # [0, 99), [60, 110) (TLEN 50), [401, 500)
    assert below.total["f1"][[0, 59, 60, 98, 99, 109, 110]].tolist() == [1, 1, 2, 2, 1, 1, 0]
    assert below.total["f1"][401:500].tolist() == [1] * 99  # [401, 500): TLEN 99
    cuts = _oracle(fragment_len_bam, FRAGMENT_CONTIGS, FRAGMENT_LEN_MODES["cutsites-0,0-100-100"])
    # [0, 100): 5' ends 0 and 99; [400, 500) read 2 forward at 400, read 1 reverse ends 499
    assert np.flatnonzero(cuts.total["f1"]).tolist() == [0, 99, 400, 499]
    assert cuts.total_reads == 4 and not cuts.total["f2"].any()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", FRAGMENT_LEN_MODES)
@pytest.mark.parametrize("chunk_len", [1, 7, 64, 1_048_576])
def test_fragment_len_filter_matches_oracle_at_edges(
    fragment_len_bam, mode_bam, extract, read_rows, kernel, mode, chunk_len
):
    counting = FRAGMENT_LEN_MODES[mode]
    for bam, contigs in ((fragment_len_bam, FRAGMENT_CONTIGS), (mode_bam, CONTIGS)):
        store = extract(bam, kernel=kernel, chunk_len=chunk_len, counting=counting)
        want = _oracle(bam, contigs, counting)
        assert want.total_reads > 0 and want.outside_fragment_len > 0
        _check(store, want, contigs, read_rows, counting)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", ["fragments", "cutsites"])
@pytest.mark.parametrize("strand", ["", "R"])
@pytest.mark.parametrize("bounds", [(180, 247), (150, 200), (None, 160)])
def test_fragment_len_filter_on_random_pairs(
    random_bam, random_se_bam, extract, read_rows, kernel, mode, strand, bounds
):
    """Simulated pairs (inserts 150-400) with the mono-nucleosome range and others, with a read
    filter and stranded; fewer records count than without the filter. Single-end reads never
    count: they are all in the warning."""
    counting = CountingMode(mode, min_fragment_len=bounds[0], max_fragment_len=bounds[1])
    kw = dict(kernel=kernel, chunk_len=4096, counting=counting, strandedness=strand, min_mapq=1)
    store = extract(random_bam, **kw)
    want = _oracle(random_bam, RANDOM_CONTIGS, counting, strand=strand, min_mapq=1)
    unfiltered = _oracle(random_bam, RANDOM_CONTIGS, CountingMode(mode), min_mapq=1)
    assert 0 < want.total_reads < unfiltered.total_reads and want.outside_fragment_len > 0
    _check(store, want, RANDOM_CONTIGS, read_rows, counting)
    if strand:
        for name, _ in RANDOM_CONTIGS:
            np.testing.assert_array_equal(read_rows(store, f"{name}_fwd")[0], want.fwd[name])
            np.testing.assert_array_equal(read_rows(store, f"{name}_rev")[0], want.rev[name])
    store = extract(random_se_bam, **kw)
    want = _oracle(random_se_bam, RANDOM_CONTIGS, counting, strand=strand, min_mapq=1)
    assert want.total_reads == 0 and want.single_end_records > 0
    _check(store, want, RANDOM_CONTIGS, read_rows, counting)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", ["fragments-100-180", "cutsites-100-180", "fragments-max99"])
def test_fragment_len_filter_from_a_stream_matches_oracle(
    fragment_len_bam, random_bam, tmp_path, read_rows, kernel, mode
):
    """`--bam -`: the stream kernels apply the filter as the indexed ones do."""
    counting = FRAGMENT_LEN_MODES[mode]
    for bam, contigs in ((fragment_len_bam, FRAGMENT_CONTIGS), (random_bam, RANDOM_CONTIGS)):
        out = tmp_path / f"{bam.stem}.zarr"
        options = extract_options(kernel=kernel, chunk_len=64, counting=counting)
        with bam.open("rb") as fh:
            extract_sample(Path("-"), "s", out, options, stdin=fh)
        _check(out, _oracle(bam, contigs, counting), contigs, read_rows, counting)


def test_fragment_len_filter_through_a_pipe(tmp_path, fragment_len_bam, read_rows):
    """`cat BAM | bamstore extract --bam - --mode cutsites --max-fragment-len 99`."""
    out = tmp_path / "piped.zarr"
    argv = cli_argv(
        "extract", "--bam", "-", "--sample", "s", "--out", out, "--chromosomes", "all",
        "--mode", "cutsites", "--max-fragment-len", "99", "--chunk-len", "7",
    )  # fmt: skip
    with fragment_len_bam.open("rb") as fh:
        done = subprocess.run(argv, stdin=fh, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    want = _oracle(fragment_len_bam, FRAGMENT_CONTIGS, FRAGMENT_LEN_MODES["cutsites-max99"])
    _check(out, want, FRAGMENT_CONTIGS, read_rows, FRAGMENT_LEN_MODES["cutsites-max99"])


@pytest.mark.parametrize("mode", ["fragments-100-180", "cutsites-max99"])
def test_kernels_write_identical_chunks_with_a_fragment_len_filter(
    random_bam, fragment_len_bam, extract, mode
):
    counting = FRAGMENT_LEN_MODES[mode]
    for bam, chunk_len in ((random_bam, 5000), (fragment_len_bam, 7)):
        stores = {
            k: extract(bam, kernel=k, chunk_len=chunk_len, counting=counting, strandedness="U")
            for k in KERNELS
        }
        assert_identical_chunks(stores)


def test_fragment_len_settings_round_trip():
    """The filter is recorded, an unset lower bound as 1, and read back into the options a
    store's later samples are counted with (`ExtractOptions.from_settings`)."""
    options = extract_options(counting=CountingMode("cutsites", max_fragment_len=99))
    settings = options.store_settings()
    assert (settings.min_fragment_len, settings.max_fragment_len) == (1, 99)
    again = ExtractOptions.from_settings(settings)
    assert again.counting == options.counting
    assert again.store_settings() == settings
    assert CountingMode("fragments").kernel_args()["min_fragment_len"] == 0


# ---------------------------------------------------------------------------- bedtools


def _proper_pairs_bam(path: Path, contigs, seed: int) -> Path:
    """FR proper pairs with TLEN as aligners write it (rightmost end - leftmost start), plus
    improper pairs, duplicate, QC-fail and secondary pairs (flagged on both mates) and
    supplementary records; everything inside its contig."""
    rng = np.random.default_rng(seed)
    cigars = ["50M", "10S40M", "20M3D30M", "25M200N25M", "30M2I18M"]
    reads: list[Read] = []
    for i in range(1500):
        name, length = contigs[int(rng.integers(len(contigs)))]
        c_left, c_right = (cigars[int(rng.integers(len(cigars)))] for _ in range(2))
        s_left, s_right = _span(c_left), _span(c_right)
        left = int(rng.integers(0, length - 700))
        # the right mate ends last, as in real libraries (bedtools takes a reverse read 1's
        # fragment to end where read 1 ends, bamstore where TLEN says)
        right = max(left + int(rng.integers(0, 400)), left + s_left - s_right)
        end = right + s_right
        extra = int(rng.choice([0, 0, 0, 0, 0x400, 0x200, 0x100]))
        proper = rng.random() < 0.85
        flags = (F1R2_LEFT, F1R2_RIGHT) if rng.random() < 0.5 else (F2R1_LEFT, F2R1_RIGHT)
        if not proper:
            flags = (flags[0] & ~0x2, flags[1] & ~0x2)
        mapq = 60 if rng.random() < 0.9 else 0
        reads += _pair(
            name,
            left,
            right,
            end - left,
            (c_left, c_right),
            (flags[0] | extra, flags[1] | extra),
            mapq=mapq,
            name=f"p{i}",
        )
        if rng.random() < 0.05:
            reads.append(Read(name, right + 10, "20M", flag=F1R2_RIGHT | 0x800, name=f"p{i}"))
    return write_bam(path, reads, contigs)


def _span(cigar: str) -> int:
    seg = pysam.AlignedSegment()
    seg.cigarstring = cigar
    return sum(n for op, n in seg.cigartuples if op in (0, 2, 3, 7, 8))


def _filtered(bam: Path, out: Path, *view_args: str) -> Path:
    """The records bamstore counts by default, for tools without a read filter."""
    pysam.view("-b", "-o", str(out), *view_args, str(bam), catch_stdout=False)
    pysam.index(str(out))
    return out


@pytest.mark.parametrize("kernel", KERNELS)
def test_fragments_equal_bedtools_pc(tmp_path, extract, read_rows, kernel):
    """bedtools genomecov -pc over the proper pairs that pass the filter (0xF04, MAPQ >= 1)."""
    contigs = [("chr1", 5000), ("chr2", 2000)]
    bam = _proper_pairs_bam(tmp_path / "pairs.bam", contigs, seed=11)
    kept = _filtered(bam, tmp_path / "kept.bam", "-F", "0xF04", "-q", "1")
    want = bedtools_genomecov(kept, contigs, "-pc")
    store = extract(
        bam, kernel=kernel, chunk_len=700, counting=CountingMode("fragments"), min_mapq=1
    )
    for name, _ in contigs:
        assert want[name].any()
        np.testing.assert_array_equal(read_rows(store, name)[0], want[name], err_msg=name)
    oracle = _oracle(bam, contigs, CountingMode("fragments"), min_mapq=1)
    for name, _ in contigs:  # and so does the oracle
        np.testing.assert_array_equal(oracle.total[name], want[name], err_msg=name)
    assert oracle.improper_pair_records > 0


@pytest.mark.parametrize("kernel", KERNELS)
def test_single_end_extension_equals_bedtools_fs(
    tmp_path, random_se_bam, extract, read_rows, kernel
):
    """--extend N on single-end reads is bedtools genomecov -fs N (clipped at both ends)."""
    kept = _filtered(random_se_bam, tmp_path / "kept.bam", "-F", "0xF04")
    for n in (37, 250):
        want = bedtools_genomecov(kept, RANDOM_CONTIGS, "-fs", str(n))
        store = extract(
            random_se_bam,
            kernel=kernel,
            chunk_len=999,
            counting=CountingMode("fragments", extend=n),
        )
        for name, _ in RANDOM_CONTIGS:
            np.testing.assert_array_equal(read_rows(store, name)[0], want[name], err_msg=name)


@pytest.mark.parametrize("kernel", KERNELS)
def test_cut_sites_without_shift_equal_bedtools_5(
    tmp_path, random_bam, random_se_bam, extract, read_rows, kernel
):
    """--shift 0,0 is bedtools genomecov -5 (all records that pass the filter, both mates);
    the U strand arrays are its -strand + and -strand - tracks."""
    for bam in (random_bam, random_se_bam):
        kept = _filtered(bam, tmp_path / f"{bam.stem}-kept.bam", "-F", "0xF04")
        want = bedtools_genomecov(kept, RANDOM_CONTIGS, "-5")
        plus = bedtools_genomecov(kept, RANDOM_CONTIGS, "-5", "-strand", "+")
        minus = bedtools_genomecov(kept, RANDOM_CONTIGS, "-5", "-strand", "-")
        counting = CountingMode("cutsites", shift=(0, 0))
        store = extract(bam, kernel=kernel, chunk_len=4096, counting=counting, strandedness="U")
        for name, _ in RANDOM_CONTIGS:
            assert want[name].any()
            np.testing.assert_array_equal(read_rows(store, name)[0], want[name], err_msg=name)
            np.testing.assert_array_equal(read_rows(store, f"{name}_fwd")[0], plus[name])
            np.testing.assert_array_equal(read_rows(store, f"{name}_rev")[0], minus[name])


# ---------------------------------------------------------------------------- CLI and merge


def test_mode_is_recorded_and_merge_refuses_mixed_modes(tmp_path, mode_bam, run_cli):
    parts = {}
    for label, args in {
        "reads": [],
        "frag": ["--mode", "fragments"],
        "frag100": ["--mode", "fragments", "--extend", "100"],
        "frag200": ["--mode", "fragments", "--extend", "200"],
        "cuts": ["--mode", "cutsites"],
        "cuts00": ["--mode", "cutsites", "--shift", "0,0"],
    }.items():
        out = tmp_path / f"{label}.zarr"
        result = run_cli(
            "extract", "--bam", mode_bam, "--sample", label, "--out", out, "--chromosomes",
            "all", *args,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        parts[label] = out
    coverage = {k: _attrs(v)["bamstore"]["settings"] for k, v in parts.items()}
    assert coverage["reads"]["mode"] == "reads" and coverage["reads"]["extend"] is None
    assert coverage["reads"]["shift"] is None
    assert coverage["frag"]["mode"] == "fragments" and coverage["frag"]["extend"] is None
    assert coverage["frag200"]["extend"] == 200
    assert coverage["cuts"]["shift"] == [4, -5] and coverage["cuts00"]["shift"] == [0, 0]
    assert "TLEN" in coverage["frag"]["coverage_definition"]
    for a, b, needles in (
        ("reads", "frag", ("reads", "fragments")),
        ("frag100", "frag200", ("100", "200")),
        ("cuts", "cuts00", ("-5", "0")),
        ("frag", "cuts", ("fragments", "cutsites")),
    ):
        result = run_cli("merge", parts[a], parts[b], "--out", tmp_path / f"{a}-{b}.zarr")
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        errors = [x for x in result.stderr.splitlines() if x.startswith("bamstore: error:")]
        assert any(str(parts[b]) in x for x in errors), result.stderr
        assert all(any(n in x for x in errors) for n in needles), result.stderr
        assert not (tmp_path / f"{a}-{b}.zarr").exists()
    again = tmp_path / "frag200b.zarr"
    args = ["--chromosomes", "all", "--mode", "fragments", "--extend", "200"]
    result = run_cli("extract", "--bam", mode_bam, "--sample", "b", "--out", again, *args)
    assert result.returncode == 0, result.stderr
    result = run_cli("merge", parts["frag200"], again, "--out", tmp_path / "same.zarr")
    assert result.returncode == 0, result.stderr


def test_build_counts_every_sample_in_the_mode(tmp_path, mode_bam, run_cli, read_rows):
    sheet = tmp_path / "samples.csv"
    sheet.write_text(f"sample,bam,strandedness\na,{mode_bam},\nb,{mode_bam},R\n")
    out = tmp_path / "built.zarr"
    result = run_cli(
        "build", "--input", sheet, "--out", out, "--chromosomes", "all", "--mode", "cutsites",
        "--shift", "-9,-12", "--chunk-len", "64",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "cut sites fell off their contig" in result.stderr
    want = _oracle(mode_bam, CONTIGS, MODES["cutsites--9,-12"], strand="R")
    for name, _ in CONTIGS:
        rows = read_rows(out, name)
        np.testing.assert_array_equal(rows[0], want.total[name])
        np.testing.assert_array_equal(rows[1], want.total[name])
        np.testing.assert_array_equal(read_rows(out, f"{name}_fwd")[1], want.fwd[name])
    assert _attrs(out)["bamstore"]["settings"]["shift"] == [-9, -12]
    assert run_cli("validate", out).returncode == 0


def test_fragment_warnings_name_what_was_skipped(tmp_path, mode_bam, run_cli):
    out = tmp_path / "f.zarr"
    result = run_cli(
        "extract", "--bam", mode_bam, "--sample", "s", "--out", out, "--chromosomes", "all",
        "--mode", "fragments",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [x for x in result.stderr.splitlines() if x.startswith("warning:")]
    assert "warning: s: 4 paired records are not in a proper pair" in "\n".join(warnings)
    assert "warning: s: 5 fragments ran past the end of their contig" in "\n".join(warnings)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--extend", "200"], "--extend applies to --mode fragments only; fix: add --mode fragm"),
        (["--mode", "cutsites", "--extend", "5"], "--extend applies to --mode fragments only"),
        (["--shift", "0,0"], "--shift applies to --mode cutsites only; fix: add --mode cutsites"),
        (["--mode", "fragments", "--count-deletions"], "--count-deletions applies to --mode"),
        (["--mode", "cutsites", "--shift", "4"], "'4' is not two integers P,M"),
        (["--mode", "cutsites", "--shift", "a,b"], "'a,b' is not two integers P,M"),
        (["--mode", "cutsites", "--shift", "5000000,0"], "must be two offsets P,M within"),
        (["--mode", "fragments", "--extend", "0"], "Invalid value for '--extend'"),
        (["--mode", "pileup"], "Invalid value for '--mode'"),
    ],
)
def test_mode_option_mistakes_are_one_line_refusals(tmp_path, mode_bam, run_cli, args, message):
    out = tmp_path / "x.zarr"
    result = run_cli("extract", "--bam", mode_bam, "--sample", "s", "--out", out, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert not out.exists()


def test_cli_modes_equal_in_process_extraction(tmp_path, mode_bam, run_cli, read_rows):
    """The CLI's --mode/--extend/--shift reach the kernel (compared with the oracle)."""
    out = tmp_path / "c.zarr"
    result = run_cli(
        "extract", "--bam", mode_bam, "--sample", "s", "--out", out, "--chromosomes", "all",
        "--mode", "fragments", "--extend", "30", "--chunk-len", "7",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    want = _oracle(mode_bam, CONTIGS, MODES["fragments-extend30"])
    for name, _ in CONTIGS:
        np.testing.assert_array_equal(read_rows(out, name)[0], want.total[name])


def test_fragment_len_filter_is_recorded_and_merge_refuses_another(
    tmp_path, fragment_len_bam, run_cli
):
    """Parts with the same filter merge; a part with another range, or none, is refused with
    one line per setting that differs, naming its flag."""
    parts = {}
    for label, args in {
        "none": [],
        "mono": ["--min-fragment-len", "180", "--max-fragment-len", "247"],
        "mono2": ["--min-fragment-len", "180", "--max-fragment-len", "247"],
        "wider": ["--min-fragment-len", "180", "--max-fragment-len", "300"],
        "nfr": ["--max-fragment-len", "99"],
    }.items():
        out = tmp_path / f"{label}.zarr"
        result = run_cli(
            "extract", "--bam", fragment_len_bam, "--sample", label, "--out", out,
            "--chromosomes", "all", "--mode", "fragments", *args,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        parts[label] = out
    settings = {k: _attrs(v)["bamstore"]["settings"] for k, v in parts.items()}
    assert (settings["none"]["min_fragment_len"], settings["none"]["max_fragment_len"]) == (
        None,
        None,
    )
    assert (settings["mono"]["min_fragment_len"], settings["mono"]["max_fragment_len"]) == (
        180,
        247,
    )
    assert (settings["nfr"]["min_fragment_len"], settings["nfr"]["max_fragment_len"]) == (1, 99)
    result = run_cli("merge", parts["mono"], parts["mono2"], "--out", tmp_path / "same.zarr")
    assert result.returncode == 0, result.stderr
    first = f"the first part ({parts['mono']})"
    result = run_cli("merge", parts["mono"], parts["wider"], "--out", tmp_path / "w.zarr")
    assert_clean_refusal(
        result,
        f"{parts['wider']}: has max_fragment_len 300, but {first} has 247; fix: extract every "
        "sample with the same --max-fragment-len",
    )
    result = run_cli("merge", parts["mono"], parts["none"], "--out", tmp_path / "n.zarr")
    # a header line counting the problems, then one per setting
    text = assert_clean_refusal(result, "--min-fragment-len", "--max-fragment-len", lines=3)
    assert f"{parts['none']}: has min_fragment_len none, but {first} has 180" in text
    assert not (tmp_path / "w.zarr").exists() and not (tmp_path / "n.zarr").exists()


def test_fragment_len_filter_warns_of_the_records_it_leaves_out(
    tmp_path, fragment_len_bam, run_cli
):
    out = tmp_path / "f.zarr"
    result = run_cli(
        "extract", "--bam", fragment_len_bam, "--sample", "s", "--out", out, "--chromosomes",
        "all", "--mode", "cutsites", "--min-fragment-len", "100", "--max-fragment-len", "180",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "warning: s: 2 single-end records were not counted: the fragment-length filter " \
        "needs pairs (TLEN)" in lines, result.stderr  # fmt: skip
    assert "warning: s: 2 paired records are not in a proper pair (flag 0x2 unset, or TLEN 0) " \
        "and were not counted" in lines, result.stderr  # fmt: skip
    assert "s: 11 records of proper pairs have |TLEN| outside [100, 180] and were not counted" \
        in lines, result.stderr  # fmt: skip
    assert "s: 14 reads on 2 contigs" in result.stderr
    assert _attrs(out)["bamstore"]["samples"]["s"]["warnings"]["single_end_records"] == 2


def test_build_with_a_fragment_len_filter(tmp_path, fragment_len_bam, run_cli, read_rows):
    sheet = tmp_path / "samples.csv"
    sheet.write_text(f"sample,bam,strandedness\na,{fragment_len_bam},\nb,{fragment_len_bam},U\n")
    out = tmp_path / "built.zarr"
    args = ["--chromosomes", "all", "--mode", "fragments", "--max-fragment-len", "99"]
    result = run_cli("build", "--input", sheet, "--out", out, "--chunk-len", "64", *args)
    assert result.returncode == 0, result.stderr
    want = _oracle(fragment_len_bam, FRAGMENT_CONTIGS, FRAGMENT_LEN_MODES["fragments-max99"])
    for name, _ in FRAGMENT_CONTIGS:
        rows = read_rows(out, name)
        np.testing.assert_array_equal(rows[0], want.total[name])
        np.testing.assert_array_equal(rows[1], want.total[name])
    assert _attrs(out)["bamstore"]["settings"]["max_fragment_len"] == 99
    assert run_cli("validate", out).returncode == 0
    # --resume reuses parts counted with the same filter, and only those
    parts = tmp_path / ".again.zarr.parts"
    again = tmp_path / "again.zarr"
    result = run_cli("build", "--input", sheet, "--out", again, "--keep-parts", *args)
    assert result.returncode == 0 and parts.is_dir(), result.stderr
    result = run_cli("build", "--input", sheet, "--out", again, "--overwrite", "--resume", *args)
    assert "(0 extracted, 2 reused)" in result.stderr, result.stderr
    result = run_cli(
        "build", "--input", sheet, "--out", again, "--overwrite", "--resume", "--keep-parts",
        *args[:-1], "98",
    )  # fmt: skip
    assert "(2 extracted, 0 reused)" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--max-fragment-len", "99"],
            "--max-fragment-len applies to --mode fragments or cutsites only; fix: add --mode "
            "fragments",
        ),
        (
            ["--min-fragment-len", "180", "--max-fragment-len", "247"],
            "--min-fragment-len and --max-fragment-len apply to --mode fragments or cutsites",
        ),
        (
            ["--mode", "fragments", "--min-fragment-len", "247", "--max-fragment-len", "180"],
            "--min-fragment-len 247 is more than --max-fragment-len 180; fix: give the shortest",
        ),
        (["--mode", "cutsites", "--min-fragment-len", "0"], "--min-fragment-len 0 must be betw"),
        (["--mode", "cutsites", "--max-fragment-len", "-5"], "--max-fragment-len -5 must be be"),
        (
            ["--mode", "fragments", "--extend", "200", "--max-fragment-len", "99"],
            "--extend applies to single-end reads, which --max-fragment-len leaves out",
        ),
        (["--mode", "fragments", "--max-fragment-len", "x"], "'x' is not a valid integer"),
    ],
)
def test_fragment_len_mistakes_are_one_line_refusals(tmp_path, mode_bam, run_cli, args, message):
    out = tmp_path / "x.zarr"
    result = run_cli("extract", "--bam", mode_bam, "--sample", "s", "--out", out, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    if "valid integer" not in message:  # click's own usage error has its usage lines
        assert len(error_lines(result.stderr)) == 1, result.stderr
    assert not out.exists()
