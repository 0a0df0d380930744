"""One line for each input problem — the right file, what is wrong, a fix that can be pasted —
exit 2, reproduced through bin/bamstore as a user meets them: an index of another BAM, a BAM
given as its index, a header without @SQ lines, a full temporary folder, a pipe as input.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from bamfactory import Read, write_bam, write_unaligned_bam
from support import REPO, cli_argv, limit_file_size

CONTIGS = [("chr1", 2000), ("chr2", 1500)]


def _reads(n: int) -> list[Read]:
    return [Read("chr1", (7 * i) % 1900, "50M") for i in range(n)] + [
        Read("chr2", (5 * i) % 1400, "40M") for i in range(n)
    ]


def _only_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("bamstore: ")]
    assert len(lines) == 1, result.stderr
    assert "INPUT" not in lines[0] and "\\n" not in lines[0]
    return lines[0]


def _extract(run_cli, bam: Path, out: Path, *extra: object) -> subprocess.CompletedProcess[str]:
    return run_cli("extract", "--bam", bam, "--sample", "s", "--out", out,
                   "--chromosomes", "all", *extra)  # fmt: skip


@pytest.fixture
def bam(tmp_path: Path) -> Path:
    return write_bam(tmp_path / "reads.bam", _reads(20), CONTIGS, index=False)


# ---------------------------------------------------------------------------- --index


def test_index_of_a_bam_with_other_contigs_blames_the_index(bam, tmp_path, run_cli):
    other = write_bam(tmp_path / "other.bam", _reads(20), [*CONTIGS, ("chr3", 900)])
    index = Path(str(other) + ".bai")
    out = tmp_path / "out.zarr"
    line = _only_line(_extract(run_cli, bam, out, "--index", index))
    assert line == (
        f"bamstore: error: {index}: is not the index of {bam}: it describes 3 contigs, the "
        f"header of {bam} has 2; fix: give the index of {bam} (made by: samtools index {bam}) "
        "as --index / the bai column, or leave it out to build one"
    )
    assert not out.exists()


def test_index_of_a_bam_with_the_same_contigs_blames_the_index(bam, tmp_path, run_cli):
    """Same genome, other reads: the index's offsets do not fit this BAM. It used to be
    reported as a corrupted BAM to re-download."""
    other = write_bam(tmp_path / "other.bam", _reads(3000), CONTIGS)
    assert other.stat().st_size > 4 * bam.stat().st_size
    index = Path(str(other) + ".bai")
    out = tmp_path / "out.zarr"
    line = _only_line(_extract(run_cli, bam, out, "--index", index))
    assert line == (
        f"bamstore: error: {index}: is not the index of {bam}: its offsets point past the end "
        f"of the BAM; fix: give the index of {bam} (made by: samtools index {bam}) as --index "
        "/ the bai column, or leave it out to build one"
    )
    assert "re-download" not in line and not out.exists()


def test_a_bam_given_as_its_index_is_named_as_such(bam, tmp_path, run_cli):
    """It used to end in an internal error (exit 1)."""
    other = write_bam(tmp_path / "other.bam", _reads(5), CONTIGS)
    out = tmp_path / "out.zarr"
    line = _only_line(_extract(run_cli, bam, out, "--index", other))
    assert line == (
        f"bamstore: error: {other}: is a BAM file, not an index; fix: give the index of {bam} "
        f"(made by: samtools index {bam}) as --index / the bai column, or leave it out to "
        "build one"
    )


def test_a_foreign_index_beside_the_bam_is_replaced_with_a_warning(bam, tmp_path, run_cli):
    other = write_bam(tmp_path / "other.bam", _reads(3000), CONTIGS)
    beside = Path(str(bam) + ".bai")
    beside.write_bytes(Path(str(other) + ".bai").read_bytes())
    result = _extract(run_cli, bam, tmp_path / "out.zarr", "--tmp-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {bam}: index reads.bam.bai is not the index of {bam}: its offsets point "
        "past the end of the BAM; building a fresh one in a scratch directory (re-index to "
        f"silence this: samtools index {bam})"
    ) in result.stderr.splitlines()


# ---------------------------------------------------------------------------- header


def test_bam_without_sq_lines_says_so(tmp_path, run_cli):
    unaligned = write_unaligned_bam(tmp_path / "unaligned.bam")
    for selection in ("primary", "all"):
        result = run_cli("extract", "--bam", unaligned, "--sample", "s", "--out",
                         tmp_path / "o.zarr", "--chromosomes", selection)  # fmt: skip
        assert _only_line(result) == (
            f"bamstore: error: {unaligned}: the header has no reference sequences (no @SQ "
            "lines): no read in it is placed on a genome; fix: give the BAM of reads aligned to "
            "a genome (an unaligned BAM must be aligned first)"
        )


# ---------------------------------------------------------------------------- temporary folder


def _bamstore(*args: object, **kw: object) -> subprocess.CompletedProcess[str]:
    """bin/bamstore with what run_cli does not offer (a standard input)."""
    return subprocess.run(
        cli_argv(*args), capture_output=True, text=True, timeout=300, check=False, **kw
    )


def test_full_temporary_folder_is_one_clean_line(tmp_path, run_cli):
    """No room for the index the BAM needs (a file size limit stands in for a full disk):
    it used to print samtools' error as a Python repr with \\n and a quickcheck fix. The
    header's 20,000 scaffolds make the index larger than the limit; the store (two contigs
    kept) stays below it."""
    contigs = [*CONTIGS, *((f"scaffold_{i}", 100) for i in range(20_000))]
    bam = write_bam(tmp_path / "reads.bam", _reads(20), contigs, index=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "out.zarr"
    result = run_cli("extract", "--bam", bam, "--sample", "s", "--out", out,
                     "--chromosomes", "chr1,chr2", env={"TMPDIR": str(scratch)},
                     preexec_fn=limit_file_size(32 * 1024))  # fmt: skip
    assert _only_line(result) == (
        f"bamstore: error: {scratch}: cannot hold the index this BAM needs (File too large); "
        f"{bam} has no usable index; fix: pass --tmp-dir (or set TMPDIR) to a writable folder "
        f"with free space, or index the BAM: samtools index {bam}"
    )
    assert "quickcheck" not in result.stderr
    assert os.listdir(scratch) == [] and not out.exists()


# ---------------------------------------------------------------------------- streams


def test_stdin_pipe_is_refused_naming_dev_stdin(bam, tmp_path):
    argv = cli_argv("extract", "--bam", "/dev/stdin", "--sample", "s", "--out",
                    tmp_path / "out.zarr")  # fmt: skip
    piped = subprocess.run(argv, input=bam.read_bytes(), capture_output=True, timeout=300,
                           check=False)  # fmt: skip
    result = subprocess.CompletedProcess(argv, piped.returncode, "", piped.stderr.decode())
    assert _only_line(result) == (
        "bamstore: error: /dev/stdin: is a pipe or device, not a file: bamstore reads a BAM "
        "file through its index, which needs a file it can seek in; fix: write it to a file first: "
        "samtools sort -o stdin.sorted.bam /dev/stdin && samtools index stdin.sorted.bam "
        "(or stream one sample into bamstore extract --bam -)"
    )


def test_stdin_redirected_from_a_file_is_read(bam, tmp_path):
    """`--bam /dev/stdin < reads.bam` is a regular file behind /dev/stdin: it works."""
    out = tmp_path / "out.zarr"
    with bam.open("rb") as fh:
        result = _bamstore("extract", "--bam", "/dev/stdin", "--sample", "s", "--out", out,
                           "--chromosomes", "all", "--tmp-dir", tmp_path, stdin=fh)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_fifo_is_refused_naming_the_fifo(tmp_path, run_cli):
    fifo = tmp_path / "reads.fifo"
    os.mkfifo(fifo)
    result = run_cli("extract", "--bam", fifo, "--sample", "s", "--out", tmp_path / "o.zarr")
    assert _only_line(result) == (
        f"bamstore: error: {fifo}: is a pipe or device, not a file: bamstore reads a BAM "
        "file through its index, which needs a file it can seek in; fix: write it to a file first: "
        f"samtools sort -o reads.sorted.bam {fifo} && samtools index reads.sorted.bam "
        "(or stream one sample into bamstore extract --bam -)"
    )


def test_no_message_in_the_package_uses_a_placeholder_path():
    """Every fix names the real file: no 'INPUT' stands in for it anywhere."""
    sources = sorted((REPO / "bamstore").rglob("*.py"))
    offenders = [
        f"{path.relative_to(REPO)}:{i}"
        for path in sources
        for i, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"\bINPUT\b", line)
    ]
    assert offenders == []
