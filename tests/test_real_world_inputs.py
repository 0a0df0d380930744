"""Files that samtools reads and bamstore must read too (or refuse with one clear line).

Headers joined by two tools (two @HD lines), a zero-length @SQ, CRAMs that carry their own
reference (embed_ref) or need none (no_ref), and a sweep of `extract --chromosomes all` over
every committed and generated real-world-shaped input that fails on any internal error.
Every file is made here: headers are hand-edited SAM text converted by samtools.
"""

from __future__ import annotations

import gzip
import http.server
import os
import re
import socketserver
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pysam
import pytest
import zarr
from bamfactory import Read, random_reads, samtools_depth, write_bam, write_unaligned_bam
from support import cli_argv

from bamstore.engine.kernel import available_kernels

KERNELS = available_kernels()
TEST_DATA = Path(__file__).parent / "data"
CONTIGS = [("chr1", 3000), ("chr2", 2000), ("chrUn_x", 500)]


def _coverage(store: Path, contig: str) -> np.ndarray:
    return np.asarray(zarr.open_group(str(store), mode="r")[contig][0, :])


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("bamstore: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def rewrite_header(src: Path, dst: Path, edit: Callable[[list[str]], list[str]]) -> Path:
    """`src` with its header lines passed through `edit`, converted back to an indexed BAM."""
    lines = pysam.view("-h", "--no-PG", str(src)).splitlines()
    header = [line for line in lines if line.startswith("@")]
    body = [line for line in lines if not line.startswith("@")]
    sam = dst.with_suffix(".sam")
    sam.write_text("\n".join([*edit(header), *body]) + "\n")
    pysam.view("-b", "--no-PG", "-o", str(dst), str(sam), catch_stdout=False)
    pysam.index(str(dst))
    return dst


def _raw_header(bam: Path) -> str:
    with pysam.AlignmentFile(str(bam)) as fh:
        return str(fh.header)


@pytest.fixture
def plain_bam(tmp_path: Path) -> Path:
    return write_bam(tmp_path / "plain.bam", random_reads(11, 400, CONTIGS[:2]), CONTIGS)


# ---------------------------------------------------------------------------- two @HD lines


@pytest.fixture
def two_hd_bam(tmp_path: Path, plain_bam: Path) -> Path:
    def add_second_hd(header: list[str]) -> list[str]:
        return [header[0], "@HD\tVN:1.4\tSO:unsorted", *header[1:]]

    bam = rewrite_header(plain_bam, tmp_path / "two_hd.bam", add_second_hd)
    assert _raw_header(bam).count("@HD") == 2  # samtools kept both
    with pysam.AlignmentFile(str(bam)) as fh, pytest.raises(ValueError, match="multiple 'HD'"):
        fh.header.to_dict()  # the strict parser bamstore used to go through
    return bam


@pytest.mark.parametrize("kernel", KERNELS)
def test_two_hd_lines_are_read_like_samtools_with_a_warning(two_hd_bam, tmp_path, kernel,
                                                            run_cli):  # fmt: skip
    out = tmp_path / "out.zarr"
    result = run_cli("extract", "--bam", two_hd_bam, "--sample", "s", "--out", out,
                     "--chromosomes", "all", env={"BAMSTORE_KERNEL": kernel})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {two_hd_bam}: the header has 2 @HD lines (headers joined by another tool?); "
        "the first gives the sort order (SO:coordinate)"
    ) in result.stderr.splitlines()
    want = samtools_depth(two_hd_bam, CONTIGS)
    for name, _ in CONTIGS:
        np.testing.assert_array_equal(_coverage(out, name), want[name], err_msg=name)


def test_first_hd_decides_the_sort_order(tmp_path: Path, plain_bam: Path, run_cli):
    """A queryname first @HD is refused even when a second one says coordinate."""

    def queryname_first(header: list[str]) -> list[str]:
        return ["@HD\tVN:1.6\tSO:queryname", "@HD\tVN:1.6\tSO:coordinate", *header[1:]]

    bam = rewrite_header(plain_bam, tmp_path / "qn.bam", queryname_first)
    result = run_cli("extract", "--bam", bam, "--sample", "s", "--out", tmp_path / "o.zarr")
    assert result.returncode == 2
    sorted_copy = tmp_path / "qn.sorted.bam"
    assert _error_line(result) == (
        f"bamstore: error: {bam}: is sorted by read name (@HD SO:queryname), not by coordinate; "
        f"fix: samtools sort -o {sorted_copy} {bam} && samtools index {sorted_copy}"
    )


# ---------------------------------------------------------------------------- @SQ LN:0


def with_zero_length(src: Path, dst: Path, contig: str) -> Path:
    """`src` with `contig` given length 0 in both header parts (text @SQ LN and the binary
    reference list), written byte by byte: samtools' SAM parser no longer accepts LN:0, but
    BAMs with it exist (long-read pipelines) and htslib reads them."""
    data = gzip.decompress(src.read_bytes())
    (l_text,) = struct.unpack_from("<i", data, 4)
    text = data[8 : 8 + l_text].rstrip(b"\0").decode()
    pos = 8 + l_text
    (n_ref,) = struct.unpack_from("<i", data, pos)
    pos += 4
    refs = []
    for _ in range(n_ref):
        (l_name,) = struct.unpack_from("<i", data, pos)
        name = data[pos + 4 : pos + 4 + l_name - 1].decode()
        (l_ref,) = struct.unpack_from("<i", data, pos + 4 + l_name)
        refs.append((name, 0 if name == contig else l_ref))
        pos += 8 + l_name
    lines = [
        re.sub(r"\tLN:[0-9]+", "\tLN:0", line) if line.startswith(f"@SQ\tSN:{contig}\t") else line
        for line in text.splitlines()
    ]
    new_text = ("\n".join(lines) + "\n").encode()
    head = b"BAM\x01" + struct.pack("<i", len(new_text)) + new_text + struct.pack("<i", n_ref)
    for name, length in refs:
        head += struct.pack("<i", len(name) + 1) + name.encode() + b"\0" + struct.pack("<i", length)
    with pysam.BGZFile(str(dst), "wb") as fh:
        fh.write(head + data[pos:])
    pysam.index(str(dst))
    return dst


@pytest.fixture
def zero_length_with_reads(tmp_path: Path, plain_bam: Path) -> Path:
    bam = with_zero_length(plain_bam, tmp_path / "zero_reads.bam", "chr2")
    assert "@SQ\tSN:chr2\tLN:0" in _raw_header(bam)
    with pysam.AlignmentFile(str(bam)) as fh:
        assert dict(zip(fh.references, fh.lengths, strict=True))["chr2"] == 0
    return bam


@pytest.fixture
def zero_length_without_reads(tmp_path: Path, plain_bam: Path) -> Path:
    return with_zero_length(plain_bam, tmp_path / "zero_empty.bam", "chrUn_x")


@pytest.mark.parametrize("selection", ["all", "primary", "chr1,chr2"])
def test_zero_length_contig_with_reads_is_refused(zero_length_with_reads, tmp_path, selection,
                                                  run_cli):  # fmt: skip
    bam = zero_length_with_reads
    with pysam.AlignmentFile(str(bam)) as fh:  # every mapped record on chr2, read in full
        reads_on_chr2 = sum(1 for r in fh.fetch(until_eof=True)
                            if r.reference_id == 1 and not r.is_unmapped)  # fmt: skip
    out = tmp_path / "out.zarr"
    result = run_cli("extract", "--bam", bam, "--sample", "s", "--out", out,
                     "--chromosomes", selection)  # fmt: skip
    assert result.returncode == 2, result.stderr
    fix = (
        "fix: give its real length with --chromsizes (a file with the line 'chr2<TAB>length'; "
        "it may replace a zero header length), or leave it out with --chromosomes"
    )
    if selection == "chr1,chr2":  # named explicitly: refused from the header alone
        problem = f"{bam}: contig 'chr2' has length 0 in the BAM header (@SQ LN:0)"
    else:
        problem = (
            f"{bam}: contig 'chr2' has length 0 in the BAM header (@SQ LN:0) but "
            f"{reads_on_chr2} reads are placed on it"
        )
    assert _error_line(result) == f"bamstore: error: {problem}; {fix}"
    assert not out.exists()


@pytest.mark.parametrize("kernel", KERNELS)
def test_chromsizes_gives_a_zero_length_contig_its_length(zero_length_with_reads, tmp_path,
                                                          kernel, run_cli):  # fmt: skip
    sizes = tmp_path / "genome.sizes"
    sizes.write_text("chr1\t3000\nchr2\t2000\n")
    out = tmp_path / "out.zarr"
    result = run_cli("extract", "--bam", zero_length_with_reads, "--sample", "s", "--out", out,
                     "--chromosomes", "all", "--chromsizes", sizes,
                     env={"BAMSTORE_KERNEL": kernel})  # fmt: skip
    assert result.returncode == 0, result.stderr
    want = samtools_depth(zero_length_with_reads, [("chr1", 3000), ("chr2", 2000)])
    assert want["chr2"].sum() > 0
    for name in ("chr1", "chr2"):
        np.testing.assert_array_equal(_coverage(out, name), want[name], err_msg=name)


def test_chromsizes_overrides_only_a_zero_length(zero_length_with_reads, tmp_path, run_cli):
    sizes = tmp_path / "genome.sizes"
    sizes.write_text("chr1\t2999\nchr2\t2000\n")  # chr1 is 3000 in the header
    result = run_cli("extract", "--bam", zero_length_with_reads, "--sample", "s", "--out",
                     tmp_path / "o.zarr", "--chromsizes", sizes)  # fmt: skip
    assert _error_line(result) == (
        f"bamstore: error: {zero_length_with_reads}: contig 'chr1' is 3000 bp in the BAM header "
        f"but 2999 bp in {sizes}; fix: use the chromsizes of the genome the BAM was aligned to"
    )


def test_zero_length_contig_without_reads_is_skipped_with_a_warning(zero_length_without_reads,
                                                                    tmp_path, run_cli):  # fmt: skip
    bam = zero_length_without_reads
    out = tmp_path / "out.zarr"
    result = run_cli("extract", "--bam", bam, "--sample", "s", "--out", out,
                     "--chromosomes", "all")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {bam}: contig chrUn_x has length 0 in the BAM header and no reads; skipped"
        in result.stderr.splitlines()
    )
    group = zarr.open_group(str(out), mode="r")
    assert "chrUn_x" not in group and group.attrs["chromsizes"] == {"chr1": 3000, "chr2": 2000}
    want = samtools_depth(bam, CONTIGS[:2])
    for name in ("chr1", "chr2"):
        np.testing.assert_array_equal(_coverage(out, name), want[name], err_msg=name)


# ---------------------------------------------------------------------------- CRAM references


@pytest.fixture(scope="module")
def cram_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One BAM and its CRAMs: reference-based, embed_ref=1, no_ref=1 (samtools view -C)."""
    folder = tmp_path_factory.mktemp("crams")
    rng = np.random.default_rng(17)
    fasta = folder / "genome.fa"
    fasta.write_text("".join(f">{n}\n{''.join(rng.choice(list('ACGT'), length))}\n"
                             for n, length in CONTIGS))  # fmt: skip
    pysam.faidx(str(fasta))
    bam = write_bam(folder / "reads.bam", random_reads(12, 600, CONTIGS[:2]), CONTIGS)
    made = {"bam": bam, "fasta": fasta}
    for kind, options in (("plain", []), ("embed_ref", ["embed_ref=1"]), ("no_ref", ["no_ref=1"])):
        out = folder / f"{kind}.cram"
        args = [a for opt in options for a in ("--output-fmt-option", opt)]
        pysam.view("-C", "-T", str(fasta), *args, "-o", str(out), str(bam), catch_stdout=False)
        made[kind] = out
    return made


@pytest.mark.parametrize("kind", ["embed_ref", "no_ref"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_cram_that_needs_no_reference_is_read_without_one(cram_inputs, tmp_path, kind, kernel,
                                                          run_cli):  # fmt: skip
    cram = cram_inputs[kind]
    # samtools itself reads it without a reference
    assert pysam.view("-c", str(cram)).strip() == pysam.view("-c", str(cram_inputs["bam"])).strip()
    out = tmp_path / "out.zarr"
    result = run_cli("extract", "--bam", cram, "--sample", "s", "--out", out,
                     "--chromosomes", "all", env={"BAMSTORE_KERNEL": kernel})  # fmt: skip
    assert result.returncode == 0, result.stderr
    want = samtools_depth(cram, CONTIGS)
    from_bam = samtools_depth(cram_inputs["bam"], CONTIGS)
    for name, _ in CONTIGS:
        np.testing.assert_array_equal(want[name], from_bam[name], err_msg=name)
        np.testing.assert_array_equal(_coverage(out, name), want[name], err_msg=name)


def test_cram_that_needs_its_reference_asks_for_it(cram_inputs, tmp_path, run_cli):
    cram = cram_inputs["plain"]
    result = run_cli("extract", "--bam", cram, "--sample", "s", "--out", tmp_path / "o.zarr")
    assert _error_line(result) == (
        f"bamstore: error: {cram}: is CRAM, which needs its reference to decode (its bases are "
        "stored as differences from the genome, which is not in the file); fix: pass "
        "--reference FASTA (the genome it was aligned to)"
    )


class _ProxyLog(http.server.BaseHTTPRequestHandler):
    """A local HTTP(S) proxy that only records who tried to reach the network through it."""

    seen: ClassVar[list[str]] = []

    def _record(self) -> None:
        type(self).seen.append(self.requestline)
        self.send_error(502)

    do_GET = do_CONNECT = do_HEAD = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy_log():
    """HTTP(S)_PROXY env vars pointing at a local recorder; yields (env, seen requests)."""
    _ProxyLog.seen = []
    server = socketserver.TCPServer(("127.0.0.1", 0), _ProxyLog)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {k: url for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    try:
        yield env, _ProxyLog.seen
    finally:
        server.shutdown()
        server.server_close()


def test_no_reference_server_is_ever_asked(cram_inputs, tmp_path, proxy_log, run_cli):
    """A FASTA lacking a contig the CRAM needs, the genome at its @SQ UR gone, and REF_PATH
    naming the EBI reference server (as sites set it; older htslib also did so by default):
    htslib fetches the contig by its M5 checksum. bamstore fails at once, reaching nothing."""
    env, seen = proxy_log
    gone = tmp_path / "gone.fa"  # the genome the CRAM was made with; its @SQ UR points here
    gone.write_text(cram_inputs["fasta"].read_text())
    pysam.faidx(str(gone))
    cram = tmp_path / "reads.cram"
    pysam.view("-C", "-T", str(gone), "-o", str(cram), str(cram_inputs["bam"]),
               catch_stdout=False)  # fmt: skip
    partial = tmp_path / "chr1_only.fa"
    partial.write_text("".join(gone.read_text().splitlines(keepends=True)[:2]))  # chr1 only
    pysam.faidx(str(partial))
    gone.unlink()
    Path(str(gone) + ".fai").unlink()
    home = tmp_path / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if k != "REF_CACHE"}
    run_env = {**base, **env, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
               "REF_PATH": "https://www.ebi.ac.uk/ena/cram/md5/%s"}  # fmt: skip
    # The control: the same htslib (pysam's) does go to the network with this REF_PATH.
    read_all = "import pysam, sys; pysam.view('-o', '/dev/null', '-T', sys.argv[1], sys.argv[2])"
    control = subprocess.run([sys.executable, "-c", read_all, str(partial),
                              str(cram)], env=run_env, capture_output=True,
                             text=True, timeout=120, check=False)  # fmt: skip
    if not seen:
        pytest.fail(f"control did not reach the proxy ({control.returncode}: "
                    f"{control.stderr[-500:]})")  # fmt: skip
    seen.clear()
    result = subprocess.run(
        cli_argv("extract", "--bam", cram, "--sample", "s", "--out",
                 tmp_path / "o.zarr", "--reference", partial, "--chromosomes", "all"),
        env=run_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert seen == []
    assert _error_line(result) == (
        f"bamstore: error: {cram}: a record on chr2 cannot be decoded: --reference is not the "
        "genome the CRAM was made with (see its @SQ M5 tags), or the file is corrupted; fix: "
        "pass the FASTA it was aligned to; check the file with samtools quickcheck -v"
    )
    assert not (home / ".cache" / "hts-ref").exists()


# ---------------------------------------------------------------------------- the sweep


def _sweep_inputs(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, tuple[Path, int]]:
    """name -> (input, expected exit code) for every real-world-shaped input made here."""
    plain = request.getfixturevalue("plain_bam")
    crams = request.getfixturevalue("cram_inputs")
    inputs = {f"tests/data/{p.name}": (p, 0) for p in sorted(TEST_DATA.glob("*.bam"))}
    inputs.update({
        "two_hd": (request.getfixturevalue("two_hd_bam"), 0),
        "zero_length_with_reads": (request.getfixturevalue("zero_length_with_reads"), 2),
        "zero_length_without_reads": (request.getfixturevalue("zero_length_without_reads"), 0),
        "no_sq_lines": (write_unaligned_bam(tmp_path / "unaligned.bam"), 2),
        "cram_embed_ref": (crams["embed_ref"], 0),
        "cram_no_ref": (crams["no_ref"], 0),
        "cram_without_its_reference": (crams["plain"], 2),
        "csi_only": (_csi_only(tmp_path, plain), 0),
        "hg38_header": (_real_header_bam(tmp_path, "hg38.bedtools.tsv"), 0),
        "dm6_header": (_real_header_bam(tmp_path, "dm6.bioframe.tsv"), 0),
    })  # fmt: skip
    return inputs


def _csi_only(tmp_path: Path, plain: Path) -> Path:
    out = tmp_path / "csi.bam"
    out.write_bytes(plain.read_bytes())
    pysam.index("-c", str(out))
    assert not Path(str(out) + ".bai").exists()
    return out


def _real_header_bam(tmp_path: Path, assembly: str) -> Path:
    """A real assembly's full contig list as header, reads on its first and last contigs."""
    rows = (TEST_DATA / "assemblies" / assembly).read_text().splitlines()
    contigs = [(r.split("\t")[0], int(r.split("\t")[1])) for r in rows if r[:4] != "name"]
    first, last = contigs[0][0], contigs[-1][0]
    reads = [Read(first, 1000 + i, "50M") for i in range(20)]
    reads += [Read(last, 10 + i, "40M") for i in range(5)]
    return write_bam(tmp_path / f"{assembly.split('.')[0]}.bam", reads, contigs)


def test_extract_all_over_every_real_world_input_never_fails_internally(tmp_path, request,
                                                                        run_cli):  # fmt: skip
    inputs = _sweep_inputs(tmp_path, request)
    failures = []
    for name, (path, expected) in inputs.items():
        out = tmp_path / f"{name.replace('/', '_')}.zarr"
        result = run_cli("extract", "--bam", path, "--sample", "s", "--out", out,
                         "--chromosomes", "all")  # fmt: skip
        if result.returncode != expected or "internal error" in result.stderr:
            failures.append(f"{name}: exit {result.returncode}: {result.stderr[-400:]}")
    assert not failures, "\n".join(failures)
