"""Bad inputs: each is refused with one line (file, problem, fix), exit 2, no traceback and
nothing at --out; or, where samtools reads the file, handled and counted in warnings.

Every input is generated here. The CLI runs as a subprocess so exit codes and stderr are real.
docs/reliability.md maps each kind of input to the tests below.
"""

from __future__ import annotations

import gzip
import os
import shlex
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pysam
import pytest
from bamfactory import Read, samtools_depth, write_bam
from support import (
    assert_clean_refusal,
    error_lines,
    leftovers,
    metadata,
    store_attrs,
    without_permission_override,
    write_samplesheet,
)

from bamstore.engine.kernel import available_kernels
from bamstore.errors import InputError
from bamstore.simulate import make_bam

KERNELS = available_kernels()
CONTIGS = [("chr1", 2000), ("chr2", 1500)]


def _reads() -> list[Read]:
    return [
        Read("chr1", 10, "50M"),
        Read("chr1", 30, "20M5D20M", flag=16),
        Read("chr1", 1990, "30M"),
        Read("chr2", 5, "10M200N10M"),
    ]


@pytest.fixture
def good_bam(tmp_path: Path) -> Path:
    return write_bam(tmp_path / "good.bam", _reads(), CONTIGS)


@pytest.fixture(scope="module")
def multiblock_bam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BAM of ~40 BGZF blocks, for damage in the middle of the file."""
    folder = tmp_path_factory.mktemp("multiblock")
    return make_bam(
        folder / "big.bam", 12_000, [("chr1", 150_000), ("chr2", 60_000)], seed=9, threads=1
    )


def _assert_nothing_at(out: Path) -> None:
    assert not out.exists() and not out.is_symlink(), out
    assert leftovers(out.parent, out.name) == []


@pytest.fixture
def extract_cli(run_cli):
    """extract_cli(bam, out, *options) → `bamstore extract` of sample s, all contigs."""

    def run(bam: Path, out: Path, *extra: str, env: dict | None = None, **kw):
        return run_cli(
            "extract", "--bam", bam, "--sample", "s", "--out", out, "--chromosomes", "all",
            *extra, env=env, **kw,
        )  # fmt: skip

    return run


# ---------------------------------------------------------------------------- not BAM at all


def _make_not_bam(kind: str, folder: Path, good: Path) -> Path:
    sam_text = pysam.view("-h", str(good))
    path = folder / "input.bam"  # the name says BAM; the content decides
    if kind == "sam":
        path.write_text(sam_text)
    elif kind == "sam_headerless":
        path.write_text("".join(line + "\n" for line in sam_text.splitlines()[3:]))
    elif kind == "bgzf_sam":
        plain = folder / "input.sam"
        plain.write_text(sam_text)
        pysam.tabix_compress(str(plain), str(path), force=True)
    elif kind == "gzip":
        path.write_bytes(gzip.compress(sam_text.encode()))
    elif kind == "gzip_binary":
        path.write_bytes(gzip.compress(np.random.default_rng(1).bytes(3000)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(2).bytes(5000))
    elif kind == "directory":
        path.mkdir()
    return path


NOT_BAM = {
    "sam": ("SAM text", "samtools view -b"),
    "sam_headerless": ("SAM text", "samtools view -b"),
    "bgzf_sam": ("BGZF-compressed SAM text", "samtools view -b"),
    "gzip": ("gzip-compressed SAM text", "samtools view -b"),
    "gzip_binary": ("plain gzip", "samtools view -b"),
    "empty": ("is empty", "samtools sort"),
    "random": ("not a BAM or CRAM", "samtools sort"),
    "directory": ("is a directory", "samtools sort"),
}


@pytest.mark.parametrize("kind", NOT_BAM)
def test_not_bam_is_refused_with_the_fixing_command(
    tmp_path: Path, good_bam: Path, kind: str, extract_cli
):
    bad = _make_not_bam(kind, tmp_path, good_bam)
    out = tmp_path / "out.zarr"
    result = extract_cli(bad, out)
    problem, command = NOT_BAM[kind]
    line = assert_clean_refusal(result, f"error: {bad}: ", problem, "; fix: ", command)
    assert "samtools index" in line
    _assert_nothing_at(out)


def test_format_is_detected_by_content_not_name(
    tmp_path: Path, good_bam: Path, read_rows, extract_cli
):
    renamed = tmp_path / "reads.sam.gz"
    shutil.copy(good_bam, renamed)
    out = tmp_path / "out.zarr"
    result = extract_cli(renamed, out)
    assert result.returncode == 0, result.stderr
    want = samtools_depth(good_bam, CONTIGS)
    np.testing.assert_array_equal(read_rows(out, "chr1")[0], want["chr1"])


def test_build_reports_every_bad_bam_at_once(tmp_path: Path, good_bam: Path, run_cli):
    rows = [("good", good_bam)]
    for kind in ("sam", "gzip", "empty", "random", "bgzf_sam"):
        folder = tmp_path / kind
        folder.mkdir()
        rows.append((kind.replace("_", "-"), _make_not_bam(kind, folder, good_bam)))
    sheet = write_samplesheet(tmp_path / "sheet.csv", rows)
    out = tmp_path / "all.zarr"
    result = run_cli("build", "--input", sheet, "--out", out, "--chromosomes", "all")
    text = assert_clean_refusal(result, "5 problem(s) with the input BAMs", lines=6)
    for kind in ("sam", "gzip", "empty", "random", "bgzf_sam"):
        assert f"sample {kind.replace('_', '-')} (" in text
    _assert_nothing_at(out)
    assert not (tmp_path / ".all.zarr.parts").exists()


# ---------------------------------------------------------------------------- CRAM


@pytest.fixture
def cram(tmp_path: Path, good_bam: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(5)
    fasta = tmp_path / "genome.fa"
    with fasta.open("w") as fh:
        for name, length in CONTIGS:
            fh.write(f">{name}\n{''.join(rng.choice(list('ACGT'), length))}\n")
    pysam.faidx(str(fasta))
    out = tmp_path / "reads.cram"
    pysam.view("-C", "-T", str(fasta), "-o", str(out), str(good_bam), catch_stdout=False)
    return out, fasta


def test_cram_without_reference_is_refused(tmp_path: Path, cram, extract_cli):
    path, _ = cram
    out = tmp_path / "out.zarr"
    assert_clean_refusal(extract_cli(path, out), f"{path}: is CRAM", "--reference")
    _assert_nothing_at(out)


@pytest.mark.parametrize("kernel", KERNELS)
def test_cram_with_reference_equals_samtools_depth(
    tmp_path: Path, cram, good_bam, kernel, read_rows, extract_cli
):
    path, fasta = cram
    out = tmp_path / "out.zarr"
    result = extract_cli(path, out, "--reference", fasta, env={"BAMSTORE_KERNEL": kernel})
    assert result.returncode == 0, result.stderr
    want = samtools_depth(good_bam, CONTIGS)
    for name, _ in CONTIGS:
        np.testing.assert_array_equal(read_rows(out, name)[0], want[name])
    assert not list(tmp_path.glob("*.crai")), "the CRAM index must be built in scratch"


@pytest.mark.parametrize("kernel", KERNELS)
def test_cram_with_the_wrong_reference_is_refused(tmp_path: Path, cram, kernel: str, extract_cli):
    path, _ = cram
    wrong = tmp_path / "other.fa"
    wrong.write_text("".join(f">{n}\n{'ACGT' * (length // 4)}\n" for n, length in CONTIGS))
    out = tmp_path / "out.zarr"
    result = extract_cli(path, out, "--reference", wrong, env={"BAMSTORE_KERNEL": kernel})
    assert_clean_refusal(result, f"{path}: a record on chr1 cannot be decoded: --reference is "
                         "not the genome", "pass the FASTA it was aligned to")  # fmt: skip
    _assert_nothing_at(out)


def test_missing_reference_file_is_refused(tmp_path: Path, cram, extract_cli):
    path, _ = cram
    out = tmp_path / "out.zarr"
    result = extract_cli(path, out, "--reference", tmp_path / "nope.fa")
    assert_clean_refusal(result, "nope.fa: reference FASTA does not exist", "--reference")
    _assert_nothing_at(out)


# ---------------------------------------------------------------------------- damaged BAMs


def _blocks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every BGZF block."""
    out, pos = [], 0
    while pos < len(data):
        size = struct.unpack_from("<H", data, pos + 16)[0] + 1
        out.append((pos, size))
        pos += size
    return out


@pytest.mark.parametrize("cut", ["eof_block", "mid_block", "block_boundary"])
def test_truncated_bam_is_refused(tmp_path: Path, multiblock_bam: Path, cut: str, extract_cli):
    data = multiblock_bam.read_bytes()
    blocks = _blocks(data)
    mid_offset, mid_size = blocks[len(blocks) // 2]
    end = {
        "eof_block": len(data) - 28,  # only the empty EOF block is missing
        "mid_block": mid_offset + mid_size // 2,
        "block_boundary": mid_offset,
    }[cut]
    bam = tmp_path / "cut.bam"
    bam.write_bytes(data[:end])
    shutil.copy(str(multiblock_bam) + ".bai", str(bam) + ".bai")  # a fresh index does not help
    os.utime(str(bam) + ".bai", (time.time() + 5,) * 2)
    out = tmp_path / "out.zarr"
    assert_clean_refusal(extract_cli(bam, out), f"{bam}: is truncated", "re-create or re-download")
    _assert_nothing_at(out)


def test_truncation_is_decided_from_the_bytes_not_htslibs_message(
    tmp_path: Path, multiblock_bam: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An intact BAM that fails to open for another reason, whatever the message says, is
    not called truncated; a BAM without the BGZF end-of-file block is, whatever it says."""
    from bamstore.engine.bam_input import header

    whole = tmp_path / "whole.bam"
    shutil.copy(multiblock_bam, whole)
    cut = tmp_path / "cut.bam"
    cut.write_bytes(multiblock_bam.read_bytes()[:-28])

    def refusing(path: str, *_args: object, **_kwargs: object) -> None:
        if path == str(whole):
            raise OSError("unexpected EOF while reading (truncated?)")
        raise OSError("could not read header")

    monkeypatch.setattr(header.pysam, "AlignmentFile", refusing)
    with pytest.raises(InputError) as err:
        header.open_alignment(whole)
    assert err.value.problem == "cannot be read as BAM (unexpected EOF while reading (truncated?))"
    with pytest.raises(InputError) as err:
        header.open_alignment(cut)
    assert err.value.problem == "is truncated (the BGZF end-of-file marker is missing)"


@pytest.mark.parametrize("with_index", [True, False], ids=["fresh_index", "no_index"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_corrupted_block_mid_file_is_refused(
    tmp_path, multiblock_bam, kernel, with_index, extract_cli
):
    """A flipped byte inside a block in the middle: refused, never zeros for the rest; the fix
    names a check that sees the damage (samtools quickcheck, reading only the header and the
    end, passes the file)."""
    data = bytearray(multiblock_bam.read_bytes())
    blocks = _blocks(bytes(data))
    offset, size = blocks[len(blocks) // 2]
    data[offset + size // 2] ^= 0xFF
    bam = tmp_path / "damaged.bam"
    bam.write_bytes(bytes(data))
    if with_index:
        shutil.copy(str(multiblock_bam) + ".bai", str(bam) + ".bai")
        os.utime(str(bam) + ".bai", (time.time() + 5,) * 2)
    out = tmp_path / "out.zarr"
    result = extract_cli(bam, out, env={"BAMSTORE_KERNEL": kernel})
    line = assert_clean_refusal(result, f"{bam}: is corrupted", "re-create or re-download")
    assert "[E::" not in result.stderr  # htslib's own lines are silenced (--debug shows them)
    _assert_nothing_at(out)
    check = line.split("check with: ", 1)[1].split(" (", 1)[0]
    assert check == f"samtools view -c {bam}"
    assert subprocess.run(shlex.split(check), capture_output=True, check=False).returncode != 0
    quickcheck = subprocess.run(["samtools", "quickcheck", "-v", str(bam)], check=False)
    assert quickcheck.returncode == 0


# ---------------------------------------------------------------------------- sort order

UNSORTED = [Read("chr1", 100, "50M"), Read("chr1", 10, "50M"), Read("chr2", 5, "50M")]


def test_queryname_sorted_header_is_refused(tmp_path: Path, extract_cli):
    bam = write_bam(tmp_path / "q.bam", _reads(), CONTIGS, sort_order="queryname", index=False)
    out = tmp_path / "out.zarr"
    line = assert_clean_refusal(extract_cli(bam, out), "sorted by read name", "fix: samtools sort")
    assert str(bam) in line.split("fix:")[1]  # the command names the file
    _assert_nothing_at(out)


@pytest.mark.parametrize(
    ("sort_order", "reads", "problem"),
    [
        ("unsorted", UNSORTED, "on chr1 a record at 11 follows one at 101"),
        ("coordinate", UNSORTED, "on chr1 a record at 11 follows one at 101"),  # header lies
        (
            "coordinate",
            [Read("chr1", 10, "5M"), Read("chr2", 5, "5M"), Read("chr1", 50, "5M")],
            "records of chr1 are not together",
        ),
        (
            "coordinate",
            [Read(None, 0, None, flag=4), Read("chr1", 10, "5M")],
            "a record on chr1 follows unplaced reads",
        ),
    ],
    ids=["header_unsorted", "header_lies", "contig_split", "unplaced_first"],
)
def test_out_of_order_records_are_refused(tmp_path: Path, sort_order, reads, problem, extract_cli):
    """No index: indexing fails, and bamstore finds out why by reading the records."""
    bam = write_bam(tmp_path / "x.bam", reads, CONTIGS, sort=False, sort_order=sort_order,
                    index=False)  # fmt: skip
    out = tmp_path / "out.zarr"
    result = extract_cli(bam, out)
    assert_clean_refusal(result, f"{bam}: is not sorted by coordinate", problem, "samtools sort")
    _assert_nothing_at(out)


@pytest.mark.parametrize("kernel", KERNELS)
def test_header_lies_and_index_fits_kernel_refuses(tmp_path: Path, kernel: str, extract_cli):
    """SO:coordinate, records out of order, and an index that opens: the kernel notices."""
    sorted_bam = write_bam(tmp_path / "sorted.bam", UNSORTED, CONTIGS)
    liar = write_bam(tmp_path / "liar.bam", UNSORTED, CONTIGS, sort=False, index=False)
    assert liar.stat().st_size == sorted_bam.stat().st_size  # same offsets: the index fits
    index = tmp_path / "liar.index.bai"
    shutil.copy(str(sorted_bam) + ".bai", index)
    out = tmp_path / "out.zarr"
    result = extract_cli(liar, out, "--index", index, env={"BAMSTORE_KERNEL": kernel})
    assert_clean_refusal(
        result, f"{liar}: is not sorted by coordinate: on chr1 a record at 11 follows one at 101",
        "samtools sort",
    )  # fmt: skip
    _assert_nothing_at(out)


def test_contigs_in_other_than_header_order_are_counted_right(
    tmp_path: Path, read_rows, extract_cli
):
    """Records grouped by contig but not in header order: samtools indexes it; each contig is
    read through the index, so coverage is still exact."""
    reads = [Read("chr2", 5, "50M"), Read("chr2", 7, "50M"), Read("chr1", 10, "50M")]
    bam = write_bam(tmp_path / "order.bam", reads, CONTIGS, sort=False, index=False)
    pysam.sort("-o", str(tmp_path / "resorted.bam"), str(bam))
    want = samtools_depth(tmp_path / "resorted.bam", CONTIGS)  # depth itself needs header order
    for kernel in KERNELS:
        out = tmp_path / f"{kernel}.zarr"
        assert extract_cli(bam, out, env={"BAMSTORE_KERNEL": kernel}).returncode == 0
        for name, _ in CONTIGS:
            np.testing.assert_array_equal(read_rows(out, name)[0], want[name])


# ---------------------------------------------------------------------------- index


def test_missing_index_is_built_in_scratch_never_beside_a_read_only_input(
    tmp_path: Path, read_rows, extract_cli
):
    inputs, scratch = tmp_path / "inputs", tmp_path / "scratch"
    inputs.mkdir()
    scratch.mkdir()
    bam = write_bam(inputs / "reads.bam", _reads(), CONTIGS, index=False)
    before = sorted(os.listdir(inputs))
    inputs.chmod(0o555)
    try:
        out = tmp_path / "out.zarr"
        result = extract_cli(bam, out, env={"TMPDIR": str(scratch)},
                          preexec_fn=without_permission_override())  # fmt: skip
    finally:
        inputs.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert "indexing into scratch directory " + str(scratch) in result.stderr
    assert sorted(os.listdir(inputs)) == before
    assert os.listdir(scratch) == []  # the scratch index is removed afterwards
    want = samtools_depth(bam, CONTIGS)
    for name, _ in CONTIGS:
        np.testing.assert_array_equal(read_rows(out, name)[0], want[name])


def test_unwritable_scratch_for_a_missing_index_is_refused(tmp_path: Path, extract_cli):
    bam = write_bam(tmp_path / "reads.bam", _reads(), CONTIGS, index=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o555)
    out = tmp_path / "out.zarr"
    try:
        result = extract_cli(
            bam, out, "--tmp-dir", scratch, preexec_fn=without_permission_override()
        )
    finally:
        scratch.chmod(0o755)
    assert_clean_refusal(result, f"{scratch}: cannot hold the index", "--tmp-dir",
                         f"samtools index {bam}")  # fmt: skip
    _assert_nothing_at(out)


def test_stale_index_is_a_warning_and_rebuilt(tmp_path: Path, read_rows, extract_cli):
    """The old index belongs to other reads: used, it would give wrong coverage."""
    other = write_bam(tmp_path / "other.bam", [Read("chr2", 900, "80M")] * 3, CONTIGS)
    bam = write_bam(tmp_path / "reads.bam", _reads(), CONTIGS, index=False)
    stale = Path(str(bam) + ".bai")
    shutil.copy(str(other) + ".bai", stale)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    stale_bytes = stale.read_bytes()
    out = tmp_path / "out.zarr"
    result = extract_cli(bam, out, "--tmp-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "index" in line]
    assert warnings[0].startswith("warning: ") and "older than the BAM" in warnings[0]
    assert "building a fresh one" in warnings[0], result.stderr
    want = samtools_depth(bam, CONTIGS)
    for name, _ in CONTIGS:
        np.testing.assert_array_equal(read_rows(out, name)[0], want[name])
    assert stale.read_bytes() == stale_bytes and stale.stat().st_mtime == pytest.approx(old)
    assert not list(tmp_path.glob("bamstore-index-*"))


# ---------------------------------------------------------------------------- contig lengths


def test_contig_lengths_differ_between_samples(tmp_path: Path, run_cli):
    a = write_bam(tmp_path / "a.bam", _reads(), CONTIGS)
    b = write_bam(tmp_path / "b.bam", _reads(), [("chr1", 1999), ("chr2", 1500)])
    sheet = write_samplesheet(tmp_path / "s.csv", [("sa", a), ("sb", b)])
    out = tmp_path / "out.zarr"
    result = run_cli("build", "--input", sheet, "--out", out, "--chromosomes", "all")
    assert_clean_refusal(
        result, f"sample sb ({b}): contig 'chr1' is 1999 bp here but 2000 bp in sample sa",
        "same genome",
    )  # fmt: skip
    _assert_nothing_at(out)
    assert not (tmp_path / ".out.zarr.parts").exists()


@pytest.mark.parametrize("command", ["extract", "build"])
def test_contig_lengths_differ_from_chromsizes(tmp_path: Path, command: str, run_cli, extract_cli):
    bam = write_bam(tmp_path / "a.bam", _reads(), CONTIGS)
    sizes = tmp_path / "genome.sizes"
    sizes.write_text("chr1\t2000\nchr2\t1499\n")
    out = tmp_path / "out.zarr"
    if command == "extract":
        result = extract_cli(bam, out, "--chromsizes", sizes)
        subject = f"{bam}"
    else:
        sheet = write_samplesheet(tmp_path / "s.csv", [("sa", bam)])
        result = run_cli("build", "--input", sheet, "--out", out, "--chromsizes", sizes)
        subject = f"sample sa ({bam})"
    assert_clean_refusal(
        result, f"{subject}: contig 'chr2' is 1500 bp in the BAM header but 1499 bp in {sizes}"
    )
    _assert_nothing_at(out)


# ---------------------------------------------------------------------------- unusual records


def _huge_cigar(n_ops: int) -> list[tuple[int, int]]:
    ops = [(0, 2), (2, 1)] * (n_ops // 2)  # 2M1D ..., more ops than BAM's 16-bit field holds
    return [*ops, (0, 3)]


def _unusual_reads() -> tuple[list[Read], dict[str, int]]:
    reads = [
        Read("chr1", 1980, "40M"),  # runs past the end of chr1 (2000)
        Read("chr1", 2100, "10M"),  # starts past the end
        Read("chr1", 100, "30M", mapq=255),
        Read("chr1", 200, "5S20M2I10M", seq=False),  # '*' sequence
        Read("chr2", 10, _huge_cigar(70_000)),  # > 65535 operations: stored in the CG tag
        Read("chr2", 20, _huge_cigar(66_000), seq=False, flag=16),
        Read("chr2", 40, "30M"),
    ]
    warnings = {"clipped_reads": 2, "mapq255_reads": 1, "seqless_reads": 2, "long_cigar_reads": 2}
    return reads, warnings


@pytest.mark.parametrize("kernel", KERNELS)
def test_unusual_records_are_counted_and_warned(
    tmp_path: Path, kernel: str, run_cli, read_rows, extract_cli
):
    contigs = [("chr1", 2000), ("chr2", 120_000)]
    reads, expected = _unusual_reads()
    bam = write_bam(tmp_path / "odd.bam", reads, contigs)
    raw = gzip.decompress(bam.read_bytes())
    assert raw.count(b"CGBI") == 2, "pysam/htslib should store the long CIGARs in CG tags"
    out = tmp_path / "out.zarr"
    result = extract_cli(bam, out, "--chunk-len", "1000", env={"BAMSTORE_KERNEL": kernel})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 4, result.stderr
    for needle in ("2 reads ran past the end", "1 reads have MAPQ 255", "2 reads have no stored",
                   "2 reads have more than 65535 CIGAR"):  # fmt: skip
        assert any(needle in w for w in warnings), (needle, result.stderr)
    record = store_attrs(out)["bamstore"]["samples"]["s"]
    assert record["warnings"] == expected
    want = samtools_depth(bam, contigs)
    for name, _ in contigs:
        np.testing.assert_array_equal(read_rows(out, name)[0], want[name], err_msg=name)
    assert int(metadata(out, "total_reads")[0]) == 6  # the read starting past the end is not
    assert run_cli("validate", out).returncode == 0


# ---------------------------------------------------------------------------- zero reads


def test_bam_with_zero_reads_gives_a_valid_store_of_zeros(
    tmp_path: Path, run_cli, read_rows, extract_cli
):
    bam = write_bam(tmp_path / "empty.bam", [], CONTIGS, index=False)
    out = tmp_path / "out.zarr"
    result = extract_cli(bam, out)
    assert result.returncode == 0, result.stderr
    for name, length in CONTIGS:
        assert read_rows(out, name)[0].tolist() == [0] * length
    assert int(metadata(out, "total_reads")[0]) == 0
    assert float(metadata(out, "sparsity")[0]) == 100.0
    assert not [p for p in out.rglob("c/*/*") if "metadata" not in p.parts]  # no chunk stored
    check = run_cli("validate", out)
    assert check.returncode == 0, check.stderr


@pytest.fixture
def zero_read_store(tmp_path: Path, run_cli) -> Path:
    """Sample `some` has reads on chr1 only (chr2 kept, empty); sample `none` has no reads."""
    some = write_bam(tmp_path / "some.bam", [Read("chr1", 10, "50M")] * 4, CONTIGS)
    none = write_bam(tmp_path / "none.bam", [], CONTIGS)
    sheet = write_samplesheet(tmp_path / "s.csv", [("some", some), ("none", none)])
    out = tmp_path / "zero.zarr"
    result = run_cli("build", "--input", sheet, "--out", out, "--chromosomes", "all")
    assert result.returncode == 0, result.stderr
    return out


def test_zero_reads_on_a_kept_contig_and_in_a_sample(zero_read_store: Path, run_cli, read_rows):
    out = zero_read_store
    assert metadata(out, "total_reads").tolist() == [4, 0]
    assert read_rows(out, "chr2")[0].sum() == 0 and read_rows(out, "chr2")[1].sum() == 0
    assert read_rows(out, "chr1")[1].sum() == 0
    assert read_rows(out, "chr1")[0][10:60].tolist() == [4] * 50
    assert run_cli("validate", out).returncode == 0


def test_zero_library_normalises_to_nan_not_inf(zero_read_store: Path):
    from bamstore.api import BamStore

    store = BamStore.open(zero_read_store)
    for method in ("cpm", "rpkm"):
        values = store.extract_region(chrom="chr1", start=0, end=100, normalise=method)
        assert not np.isinf(values).any()
        assert np.isnan(values[1]).all()  # sample `none`: library size 0
        assert np.isfinite(values[0]).all() and values[0][10] > 0


# ---------------------------------------------------------------------------- 100,000 contigs

MANY = 100_000


@pytest.fixture(scope="module")
def many_contigs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    folder = tmp_path_factory.mktemp("many")
    contigs = [("chr1", 5000), ("chr2", 4000)] + [
        (f"scaffold_{i:06d}", 500 + i % 700) for i in range(MANY - 2)
    ]
    reads = [
        Read("chr1", 10, "50M"),
        Read("chr2", 20, "30M"),
        Read("scaffold_000005", 3, "20M"),
        Read(contigs[-1][0], 0, "40M"),
    ]
    return write_bam(folder / "many.bam", reads, contigs), contigs


def test_100k_contigs_selection_stays_fast(
    tmp_path: Path, many_contigs, run_cli, read_rows, extract_cli
):
    bam, contigs = many_contigs
    last = contigs[-1][0]
    started = time.monotonic()
    primary = tmp_path / "primary.zarr"
    assert extract_cli(bam, primary, "--chromosomes", "primary").returncode == 0
    assert store_attrs(primary)["chromsizes"] == {"chr1": 5000, "chr2": 4000}
    assert read_rows(primary, "chr1")[0][10:60].tolist() == [1] * 50
    listed = tmp_path / "listed.zarr"
    assert extract_cli(bam, listed, "--chromosomes", f"{last},chr2").returncode == 0
    assert list(store_attrs(listed)["chromsizes"]) == [last, "chr2"]
    assert read_rows(listed, last)[0][:40].tolist() == [1] * 40
    # build: two samples' 100k-contig headers checked against each other
    sheet = write_samplesheet(tmp_path / "s.csv", [("a", bam), ("b", bam)])
    built = tmp_path / "built.zarr"
    result = run_cli("build", "--input", sheet, "--out", built)
    assert result.returncode == 0, result.stderr
    assert run_cli("validate", built).returncode == 0
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"100k-contig selection took {elapsed:.1f} s"  # generous; ~5 s here


def test_100k_contigs_selection_functions_are_linear():
    from bamstore.engine.bam_input import AlignmentInput, check_same_contigs, select_contigs

    contigs = [(f"scaffold_{i:06d}", 1000 + i) for i in range(MANY)]
    alignment = AlignmentInput(Path("x.bam"), "bam", contigs, "coordinate", "0" * 32)
    started = time.monotonic()
    assert select_contigs(alignment, "all", contigs, Path("sizes")) == contigs
    wanted = ",".join(n for n, _ in contigs[::2])
    assert len(select_contigs(alignment, wanted)) == MANY // 2
    check_same_contigs(contigs, list(contigs), "b", "a")
    with pytest.raises(Exception, match="scaffold_099999"):
        check_same_contigs(contigs, [*contigs[:-1], ("scaffold_099999", 5)], "b", "a")
    assert time.monotonic() - started < 10  # generous: ~0.3 s


# ---------------------------------------------------------------------------- samplesheets


def test_samplesheet_problems_unreadable_paths_and_duplicates_reported_at_once(
    tmp_path: Path, run_cli
):
    good = write_bam(tmp_path / "good.bam", _reads(), CONTIGS)
    locked = write_bam(tmp_path / "locked.bam", _reads(), CONTIGS)
    locked.chmod(0)
    (tmp_path / "adir.bam").mkdir()
    sheet1 = write_samplesheet(
        tmp_path / "one.csv",
        [
            ("a", good, ""),
            ("b", "missing.bam", ""),  # does not exist
            ("c", locked, ""),  # unreadable
            ("d d", good, ""),  # bad sample name
            ("e", good, "X"),  # bad strandedness
            ("a", good, ""),  # duplicate in the same sheet
        ],
        header="sample,bam,strandedness",
    )
    sheet2 = write_samplesheet(
        tmp_path / "two.csv", [("a", good), ("f", tmp_path / "adir.bam")]
    )  # `a` again, across sheets; a directory as BAM
    out = tmp_path / "out.zarr"
    try:
        result = run_cli("build", "--input", sheet1, "--input", sheet2, "--out", out,
                         preexec_fn=without_permission_override())  # fmt: skip
    finally:
        locked.chmod(0o644)
    text = assert_clean_refusal(result, "7 problem(s) in the samplesheet(s)", lines=8)
    for needle in (
        f"{sheet1}:3: bam file {tmp_path / 'missing.bam'} does not exist",
        f"{sheet1}:4: bam file {locked} cannot be read (permission denied)",
        f"{sheet1}:5: sample name 'd d'",
        f"{sheet1}:6: strandedness 'X'",
        f"{sheet1}:7: sample 'a' is already on line 2",
        f"{sheet2}:2: sample 'a' is also on {sheet1}:2",
        f"{sheet2}:3: bam {tmp_path / 'adir.bam'} is a directory",
    ):
        assert needle in text, (needle, text)
    _assert_nothing_at(out)


def test_error_lines_have_file_problem_and_fix(tmp_path: Path, good_bam: Path, extract_cli):
    """The one-line contract itself: 'bamstore: error: FILE: PROBLEM; fix: FIX'."""
    bad = _make_not_bam("random", tmp_path, good_bam)
    result = extract_cli(bad, tmp_path / "o.zarr")
    (line,) = error_lines(result.stderr)
    head, fix = line.split("; fix: ")
    assert head.startswith(f"bamstore: error: {bad}: ") and fix
