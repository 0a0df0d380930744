"""`--chromosomes primary` on the real contig lists of common assemblies, and the report of
what a selection leaves out.

The lists are published files (tests/data/assemblies/README.md says where each came from).
What `primary` must keep is taken from each source's own annotation where it has one
(bioframe's role/unit columns), else from the assembly's documented chromosome set, never from
the rule under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pysam
import pytest
import zarr
from bamfactory import Read, samtools_depth, write_bam

from bamstore.engine.bam_input import AlignmentInput, select_contigs

ASSEMBLIES = Path(__file__).parent / "data" / "assemblies"


def _rows(name: str) -> list[list[str]]:
    lines = (ASSEMBLIES / name).read_text().splitlines()
    return [line.split("\t") for line in lines if line.strip()]


def _kept(names: list[str]) -> list[str]:
    contigs = [(n, 1000) for n in names]
    alignment = AlignmentInput(Path("x.bam"), "bam", contigs, "coordinate", "")
    return [n for n, _ in select_contigs(alignment, "primary")]


def _ucsc_chromosomes(autosomes: int) -> list[str]:
    return [f"chr{i}" for i in range(1, autosomes + 1)] + ["chrX", "chrY", "chrM"]


@pytest.mark.parametrize(
    ("assembly", "autosomes"),
    [("hg19", 22), ("hg38", 22), ("mm9", 19), ("mm10", 19)],
)
def test_primary_on_bedtools_genomes(assembly: str, autosomes: int):
    names = [row[0] for row in _rows(f"{assembly}.bedtools.tsv")]
    assert len(names) > autosomes + 3  # the lists hold the unplaced/alt/random pieces too
    # Debian's files list the mitochondrion twice, as chrM and as chrMT: both are kept.
    assert sorted(_kept(names)) == sorted([*_ucsc_chromosomes(autosomes), "chrMT"])


@pytest.mark.parametrize(
    "source",
    ["mm39.bioframe.tsv", "dm6.bioframe.tsv", "sacCer3.bioframe.tsv", "danRer11.bioframe.tsv",
     "ce11.bioframe.tsv", "GRCh38.ensembl-names.bioframe.tsv"],
)  # fmt: skip
def test_primary_on_bioframe_assemblies(source: str):
    """Keep what bioframe calls assembled molecules of the primary or organelle unit."""
    header, *rows = _rows(source)
    role, unit = header.index("role"), header.index("unit")
    names = [row[0] for row in rows]
    expected = [
        r[0] for r in rows if r[role] == "assembled" and r[unit] in ("primary", "non-nuclear")
    ]
    assert _kept(names) == expected
    assert len(names) > len(expected) or source.startswith(("sacCer3", "ce11"))


def test_named_examples_from_each_assembly():
    """The names the defects issue and common practice cite, kept or left out."""
    kept = ["chr2L", "chr2R", "chr3L", "chr3R", "chr4", "chrX", "chrY", "chrM", "chrI", "chrXVI",
            "I", "XVI", "Mito", "MtDNA", "1", "22", "X", "Y", "MT", "Chr1", "ChrC", "ChrM", "Mt",
            "Pt", "chr25"]  # fmt: skip
    dropped = ["chrUn_DS483562v1", "chrX_DS483648v1_random", "chr1_KI270706v1_random",
               "chr6_GL000250v2_alt", "chr1_KN196472v1_fix", "chrUn_JTFH01000001v1_decoy",
               "chrEBV", "NC_007605", "hs37d5", "KI270728.1", "GL000009.2", "HLA-A*01:01:01:01",
               "lambda", "phiX174", "2micron", "2uM", "chrUn_KN147552v2", "GL456210.1"]  # fmt: skip
    assert _kept(kept + dropped) == kept


def test_primary_on_hs37d5():
    names = [row[0] for row in _rows("hs37d5.dict.tsv")]
    assert len(names) == 86
    assert _kept(names) == [str(i) for i in range(1, 23)] + ["X", "Y", "MT"]


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("Saccharomyces_cerevisiae.genomeinfodb.tsv", ["NCBI", "UCSC", "Ensembl"]),
        ("Caenorhabditis_elegans.genomeinfodb.tsv", ["NCBI", "UCSC", "Ensembl"]),
        ("Arabidopsis_thaliana.genomeinfodb.tsv", ["NCBI", "TAIR10"]),
    ],
)
def test_primary_on_genomeinfodb_naming_styles(table: str, columns: list[str]):
    """R64/sacCer3, WBcel235/ce11 and TAIR10 in every naming style: all their sequences are
    chromosomes or organelles, except the yeast 2-micron plasmid."""
    header, *rows = _rows(table)
    for column in columns:
        names = [r[header.index(column)] for r in rows if r[header.index(column)] != "NA"]
        expected = [n for n in names if n not in ("2uM", "2micron")]
        assert _kept(names) == expected, column


@pytest.mark.parametrize("source", ["TAIR10.ensembl.fai", "TAIR10.chr-names.idxstats.tsv"])
def test_primary_on_tair10_files(source: str):
    names = [row[0] for row in _rows(source) if row[0] != "*"]
    assert len(names) == 7
    assert _kept(names) == names


# ---------------------------------------------------------------------------- what is left out


DM6_LIKE = [("chr2L", 3000), ("chr3R", 2000), ("chrM", 500), ("chrUn_DS483562v1", 800),
            ("chrX_DS483648v1_random", 700), ("chrUn_DS484581v1", 400)]  # fmt: skip


@pytest.fixture
def dm6_like_bam(tmp_path: Path) -> Path:
    reads = [Read("chr2L", 10 * i, "50M") for i in range(30)]
    reads += [Read("chr3R", 7 * i, "40M") for i in range(20)]
    reads += [Read("chrM", 3 * i, "30M") for i in range(5)]
    reads += [Read("chrUn_DS483562v1", 5 * i, "30M") for i in range(7)]
    reads += [Read("chrX_DS483648v1_random", 2 * i, "30M") for i in range(4)]
    reads += [Read("chrX_DS483648v1_random", 300, "30M", flag=0x4)]  # placed, unmapped
    return write_bam(tmp_path / "dm6_like.bam", reads, DM6_LIKE)


def test_left_out_contigs_with_reads_are_reported(dm6_like_bam: Path, tmp_path: Path, run_cli):
    idxstats = {
        line.split("\t")[0]: int(line.split("\t")[2])
        for line in pysam.idxstats(str(dm6_like_bam)).splitlines()
    }
    dropped_reads = idxstats["chrUn_DS483562v1"] + idxstats["chrX_DS483648v1_random"]
    assert dropped_reads == 11
    out = tmp_path / "out.zarr"
    result = run_cli("extract", "--bam", dm6_like_bam, "--sample", "s", "--out", out)
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {dm6_like_bam}: --chromosomes primary leaves out 2 contig(s) holding "
        f"{dropped_reads} mapped reads (chrUn_DS483562v1, chrX_DS483648v1_random); their "
        "coverage is not stored (use --chromosomes all to keep every contig)"
    ) in result.stderr.splitlines()
    group = zarr.open_group(str(out), mode="r")
    assert list(group.attrs["chromsizes"]) == ["chr2L", "chr3R", "chrM"]
    want = samtools_depth(dm6_like_bam, DM6_LIKE[:3])
    for name, _ in DM6_LIKE[:3]:
        np.testing.assert_array_equal(np.asarray(group[name][0, :]), want[name], err_msg=name)


def test_nothing_is_reported_when_nothing_with_reads_is_left_out(dm6_like_bam, tmp_path,
                                                                  run_cli):  # fmt: skip
    result = run_cli("extract", "--bam", dm6_like_bam, "--sample", "s", "--out",
                     tmp_path / "o.zarr", "--chromosomes", "all")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "leaves out" not in result.stderr


def test_left_out_contigs_of_a_cram_are_reported_without_counts(dm6_like_bam, tmp_path,
                                                                 run_cli):  # fmt: skip
    """A CRAM index does not count reads: the warning says which contigs, not how many."""
    cram = tmp_path / "dm6_like.cram"
    pysam.view("-C", "--output-fmt-option", "no_ref=1", "-o", str(cram), str(dm6_like_bam),
               catch_stdout=False)  # fmt: skip
    result = run_cli("extract", "--bam", cram, "--sample", "s", "--out", tmp_path / "o.zarr")
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {cram}: --chromosomes primary leaves out 2 contig(s) holding mapped reads "
        "(chrUn_DS483562v1, chrX_DS483648v1_random); their coverage is not stored (use "
        "--chromosomes all to keep every contig)"
    ) in result.stderr.splitlines()
