"""`extract --bam -`: a BAM read from standard input gives the store the file gives.

The oracle is the same BAM read as a file (itself tested against samtools depth and the mode
oracles elsewhere): chunk files and metadata arrays must be byte-identical and the store's
records equal except where the input came from (path "-", no modification time). Every kernel
that is built reads the stream, in every counting mode, stranded and not. Pipes are real: `cat`
writes into bin/bamstore's standard input. Refusals must say what the file's refusal says.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pysam
import pytest
from bamfactory import Read, reblock, write_bam
from support import assert_clean_refusal, cli_argv, extract_options

from bamstore.engine.bam_input import PEEK_BYTES
from bamstore.engine.blocks import BGZF_EOF
from bamstore.engine.extract import extract_sample
from bamstore.engine.kernel import available_kernels
from bamstore.options import CountingMode
from bamstore.simulate import make_bam

KERNELS = available_kernels()
REPO = Path(__file__).resolve().parents[1]
REAL_BAM = REPO / "tests" / "data" / "chip_a.bam"
CONTIGS = [("chr1", 2000), ("chr2", 1500), ("chr3", 900)]

MODES = {
    "reads": CountingMode(),
    "fragments": CountingMode("fragments"),
    "fragments-extend150": CountingMode("fragments", extend=150),
    "cutsites": CountingMode("cutsites"),
    "cutsites-0,0": CountingMode("cutsites", shift=(0, 0)),
    "fragments-180-247": CountingMode("fragments", min_fragment_len=180, max_fragment_len=247),
    "cutsites-max200": CountingMode("cutsites", max_fragment_len=200),
}


def _pipe(bam: Path, out: Path, *extra: object, env: dict | None = None):
    """`cat bam | bamstore extract --bam - ...`, through a real pipe."""
    argv = cli_argv("extract", "--bam", "-", "--sample", "s", "--out", out, *extra)
    with subprocess.Popen(["cat", str(bam)], stdout=subprocess.PIPE) as cat:
        result = subprocess.run(
            argv,
            stdin=cat.stdout,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=600,
            check=False,
        )
        assert cat.stdout is not None
        cat.stdout.close()
    return result


def _store_files(store: Path) -> dict[str, bytes]:
    """Every file of a store but its root record, which names the input."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.relative_to(store) != Path("zarr.json")
    }


def _root(store: Path) -> dict:
    return json.loads((store / "zarr.json").read_text())["attributes"]


def assert_same_store(from_file: Path, from_stream: Path, bam: Path) -> None:
    """Byte-identical chunks and arrays; the same records except the input's path and mtime
    (and the kernel that counted, which the caller may have chosen)."""
    assert _store_files(from_stream) == _store_files(from_file)
    file_attrs, stream_attrs = _root(from_file), _root(from_stream)
    (file_rec,) = file_attrs["bamstore"]["samples"].values()
    (stream_rec,) = stream_attrs["bamstore"]["samples"].values()
    file_source, stream_source = file_rec.pop("source"), stream_rec.pop("source")
    assert stream_source == {**file_source, "path": "-", "mtime_ns": 0}
    assert stream_source["size"] == bam.stat().st_size
    file_rec.pop("kernel"), stream_rec.pop("kernel")
    assert stream_attrs == file_attrs


@pytest.fixture(scope="module")
def multiblock_bam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Paired reads over several MiB of blocks (many inflate batches), reads on a contig that
    is not stored (chrUn) and a stored contig without reads (chrM)."""
    folder = tmp_path_factory.mktemp("stream")
    contigs = [("chr1", 400_000), ("chrUn_x", 30_000), ("chr2", 150_000), ("chrM", 5_000)]
    bam = make_bam(folder / "big.bam", 60_000, contigs[:3], seed=21, threads=1)
    header = pysam.AlignmentHeader.from_dict(
        {"HD": {"VN": "1.6", "SO": "coordinate"},
         "SQ": [{"SN": n, "LN": length} for n, length in contigs]}
    )  # fmt: skip
    out = folder / "with_chrM.bam"
    with (
        pysam.AlignmentFile(str(bam)) as src,
        pysam.AlignmentFile(str(out), "wb", header=header) as dst,
    ):
        for rec in src.fetch(until_eof=True):
            dst.write(pysam.AlignedSegment.fromstring(rec.to_string(), header))
    pysam.index(str(out))
    return out


# ---------------------------------------------------------------------------- same results


def test_real_file_through_a_pipe_equals_the_file(tmp_path, run_cli):
    from_file, from_stream = tmp_path / "file.zarr", tmp_path / "stream.zarr"
    done = run_cli("extract", "--bam", REAL_BAM, "--sample", "s", "--out", from_file)
    assert done.returncode == 0, done.stderr
    piped = _pipe(REAL_BAM, from_stream)
    assert piped.returncode == 0, piped.stderr
    assert_same_store(from_file, from_stream, REAL_BAM)
    # the same warning about contigs left out, counted while the stream was read past them
    assert "leaves out 1 contig(s) holding 158 mapped reads (chrUn_test)" in piped.stderr
    assert "leaves out 1 contig(s) holding 158 mapped reads (chrUn_test)" in done.stderr


@pytest.mark.parametrize("kernel", KERNELS)
def test_multiblock_stream_through_a_pipe(multiblock_bam, tmp_path, run_cli, kernel):
    """Several MiB: many batches of blocks; a contig left out and a stored one without reads."""
    from_file, from_stream = tmp_path / "file.zarr", tmp_path / "stream.zarr"
    opts = ("--chunk-len", "10000", "--stranded", "R", "--threads", "2")
    done = run_cli("extract", "--bam", multiblock_bam, "--sample", "s", "--out", from_file, *opts)
    assert done.returncode == 0, done.stderr
    piped = _pipe(multiblock_bam, from_stream, *opts, env={"BAMSTORE_KERNEL": kernel})
    assert piped.returncode == 0, piped.stderr
    assert multiblock_bam.stat().st_size > 4 * PEEK_BYTES
    assert_same_store(from_file, from_stream, multiblock_bam)
    assert _root(from_stream)["bamstore"]["samples"]["s"]["contig_sums"][-1] == 0  # chrM


def _extract_stream(bam: Path, out: Path, **kw: object):
    with bam.open("rb") as fh:
        return extract_sample(Path("-"), "s", out, extract_options(**kw), stdin=fh)


@pytest.mark.parametrize("stranded", ["", "R"], ids=["unstranded", "stranded"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_and_mode_gives_the_file_chunks_from_a_stream(
    random_bam, random_se_bam, tmp_path, kernel, mode, stranded
):
    counting = MODES[mode]
    for bam in (random_bam, random_se_bam):
        kw = dict(counting=counting, strandedness=stranded, chunk_len=1000)
        from_file = tmp_path / f"{bam.stem}-file.zarr"
        from_stream = tmp_path / f"{bam.stem}-stream.zarr"
        file_result = extract_sample(bam, "s", from_file, extract_options(kernel="compiled", **kw))
        stream_result = _extract_stream(bam, from_stream, kernel=kernel, **kw)
        assert stream_result.total_reads == file_result.total_reads
        # a fragment-length filter counts no single-end read
        assert file_result.total_reads > 0 or (
            counting.filters_fragment_len and bam == random_se_bam
        )
        assert stream_result.warnings() == file_result.warnings()
        assert_same_store(from_file, from_stream, bam)


@pytest.mark.parametrize("kernel", KERNELS)
def test_records_split_across_tiny_blocks(random_bam, tmp_path, kernel):
    """Blocks of 7..300 bytes, as htsjdk writes them: the header and records straddle blocks."""
    bam = reblock(random_bam, tmp_path / "tiny.bam", [7, 300, 41, 180])
    from_file = tmp_path / "file.zarr"
    extract_sample(bam, "s", from_file, extract_options(chunk_len=1000))
    from_stream = tmp_path / "stream.zarr"
    _extract_stream(bam, from_stream, kernel=kernel, chunk_len=1000)
    assert_same_store(from_file, from_stream, bam)


@pytest.mark.parametrize("kernel", KERNELS)
def test_chromosome_selection_and_contigs_without_reads(tmp_path, kernel):
    """--chromosomes picks contigs in any order; one without reads is stored as zeros; reads
    after the last stored contig and unplaced reads are read past."""
    reads = [Read("chr1", 10, "50M"), Read("chr1", 1990, "30M"), Read("chr3", 5, "20M"),
             Read("chr3", 800, "40M"), Read(None, 0, None, flag=4)]  # fmt: skip
    bam = write_bam(tmp_path / "sel.bam", reads, CONTIGS)
    for selection in ("chr3,chr2", "chr2", "all"):
        from_file, from_stream = tmp_path / f"f{selection}.zarr", tmp_path / f"s{selection}.zarr"
        extract_sample(bam, "s", from_file, extract_options(chromosomes=selection))
        _extract_stream(bam, from_stream, kernel=kernel, chromosomes=selection)
        assert_same_store(from_file, from_stream, bam)
    sums = _root(tmp_path / "schr3,chr2.zarr")["bamstore"]["samples"]["s"]["contig_sums"]
    assert sums[1] == 0 and sums[0] == 20 + 40  # chr3 first, as listed; chr2 holds no reads


# ---------------------------------------------------------------------------- refusals


def _file_problem(result: subprocess.CompletedProcess[str], path: Path) -> str:
    """The problem part of a file's refusal, with the file's name taken out."""
    line = assert_clean_refusal(result)
    problem = line.split("; fix:")[0]
    return problem.replace(f"bamstore: error: {path}: ", "")


def _refusals(tmp_path: Path) -> dict[str, Path]:
    good = write_bam(tmp_path / "good.bam", [Read("chr1", 10, "50M"), Read("chr2", 5, "9M")],
                     CONTIGS)  # fmt: skip
    sam = tmp_path / "reads.sam"
    sam.write_text(pysam.view("-h", str(good)))
    fasta = tmp_path / "genome.fa"
    rng = np.random.default_rng(5)
    fasta.write_text("".join(f">{n}\n{''.join(rng.choice(list('ACGT'), size))}\n"
                             for n, size in CONTIGS))  # fmt: skip
    pysam.faidx(str(fasta))
    cram = tmp_path / "reads.cram"
    pysam.view("-C", "-T", str(fasta), "-o", str(cram), str(good), catch_stdout=False)
    unsorted = [Read("chr1", 100, "50M"), Read("chr1", 10, "50M"), Read("chr2", 5, "50M")]
    split = [Read("chr1", 10, "5M"), Read("chr2", 5, "5M"), Read("chr1", 50, "5M")]
    unplaced = [Read(None, 0, None, flag=4), Read("chr1", 10, "5M")]
    left_out = [Read("chr3", 100, "50M"), Read("chr3", 10, "50M"), Read("chr1", 5, "50M")]
    unsorted_bams = {
        name: write_bam(tmp_path / f"{name}.bam", reads, CONTIGS, sort=False, index=False)
        for name, reads in [
            ("unsorted", unsorted),
            ("contig_split", split),
            ("unplaced_first", unplaced),
            ("unsorted_left_out", left_out),
        ]
    }
    made = {"sam": sam, "cram": cram, **unsorted_bams, "empty": tmp_path / "empty.bam"}
    made["empty"].write_bytes(b"")
    return made


REFUSALS = ["sam", "cram", "unsorted", "contig_split", "unplaced_first", "unsorted_left_out",
            "empty"]  # fmt: skip


@pytest.fixture(scope="module")
def refusal_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _refusals(tmp_path_factory.mktemp("refusals"))


@pytest.mark.parametrize("kind", REFUSALS)
def test_a_refused_stream_says_what_the_file_says(refusal_inputs, tmp_path, run_cli, kind):
    bam = refusal_inputs[kind]
    selection = ("--chromosomes", "chr1,chr2") if kind == "unsorted_left_out" else ()
    file_out, stream_out = tmp_path / "file.zarr", tmp_path / "stream.zarr"
    file_result = run_cli("extract", "--bam", bam, "--sample", "s", "--out", file_out, *selection)
    piped = _pipe(bam, stream_out, *selection)
    stream_line = assert_clean_refusal(piped)
    assert stream_line.startswith("bamstore: error: -: ")
    expected = _file_problem(file_result, bam)
    assert stream_line.split("; fix:")[0] == f"bamstore: error: -: {expected}"
    fix = stream_line.split("; fix:")[1]
    in_the_pipe = "samtools view -b -T" if kind == "cram" else "samtools sort -O bam - |"
    assert in_the_pipe in fix and "bamstore extract --bam -" in fix
    assert not stream_out.exists() and not file_out.exists()
    assert not list(tmp_path.glob(".stream.zarr*"))


def test_cram_with_a_reference_is_refused_with_the_conversion(refusal_inputs, tmp_path):
    result = _pipe(refusal_inputs["cram"], tmp_path / "o.zarr", "--reference",
                   refusal_inputs["cram"].with_name("genome.fa"))  # fmt: skip
    assert_clean_refusal(result, "-: is CRAM: bamstore reads BAM from a stream",
                         "samtools view -b -T")  # fmt: skip


@pytest.mark.parametrize("where", ["inside_a_block", "between_blocks"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_truncated_stream_is_refused(random_bam, tmp_path, kernel, where):
    cut = tmp_path / "cut.bam"
    data = random_bam.read_bytes()
    assert data.endswith(BGZF_EOF)
    cut.write_bytes(data[: len(data) * 2 // 3] if where == "inside_a_block" else data[:-28])
    result = _pipe(cut, tmp_path / "o.zarr", env={"BAMSTORE_KERNEL": kernel})
    assert_clean_refusal(result, "-: is ", "truncated")
    assert not (tmp_path / "o.zarr").exists()


def test_index_with_a_stream_is_refused(random_bam, tmp_path):
    result = _pipe(random_bam, tmp_path / "o.zarr", "--index", str(random_bam) + ".bai")
    assert_clean_refusal(result, "--index does not apply to --bam -")


def test_stdin_in_a_samplesheet_is_refused(random_bam, tmp_path, run_cli):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"sample,bam\na,{random_bam}\nb,-\n")
    result = run_cli("build", "--input", sheet, "--out", tmp_path / "all.zarr")
    assert_clean_refusal(result, f"{sheet}:3: bam '-' (standard input)", "extract --bam -")
    assert not (tmp_path / "all.zarr").exists()


def test_build_api_refuses_stdin(tmp_path):
    from bamstore.engine.extract import prepare_input
    from bamstore.errors import InputError

    with pytest.raises(InputError, match="only be read by bamstore extract --bam -"):
        prepare_input(Path("-"), "s", extract_options())


def test_no_stream_leaves_its_pipe_thread_behind(random_bam, tmp_path):
    """The htslib kernel reads through a pipe filled by a thread; it ends."""
    import threading

    for kernel in KERNELS:
        _extract_stream(random_bam, tmp_path / f"{kernel}.zarr", kernel=kernel)
    assert not [t for t in threading.enumerate() if t.name == "bamstore-stdin"]
