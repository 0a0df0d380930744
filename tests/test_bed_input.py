"""BED input from pipes, devices and gzip streams, and damaged gzip (bamstore/query/regions.py).

`--bed <(cmd)`, `--bed /dev/stdin` and `--bed -` are read as a file is; gzip is recognised by
its first two bytes on streams too (read and put back, never sought); a truncated or damaged
gzip BED is one line naming it, exit 2. Each through summarize and profile, as real
subprocesses fed by real pipes (bash process substitution, a stdin pipe).
"""

from __future__ import annotations

import gzip
import io
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support import assert_clean_refusal, cli_argv

from bamstore.api import BamStore
from bamstore.simulate import make_bam

CONTIGS = [("chr1", 3000), ("chr2", 700)]
BED = "chr1\t100\t200\tx\t0\t+\nchr2\t300\t400\ty\t0\t-\n"
COMMANDS = {
    "summarize": ["summarize", "{store}", "--bed", "{bed}", "-o", "-"],
    "profile": ["profile", "{store}", "--bed", "{bed}", "--upstream", "50", "--downstream",
                "50", "--bin", "10", "-o", "-"],
}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bed_input")
    bams = [make_bam(folder / f"{n}.bam", 300, CONTIGS, seed=s, threads=1) for s, n in ((7, "a"),)]
    out = folder / "s.zarr"
    BamStore.from_bam_files(bams, store_path=out, chunk_len=64)
    return out


def argv(command: str, store: Path, bed: object) -> list[str]:
    return cli_argv(*(a.format(store=store, bed=bed) for a in COMMANDS[command]))


def run(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=stdin, capture_output=True, timeout=300, check=False)


def substituted(command: str, store: Path, producer: str) -> subprocess.CompletedProcess[bytes]:
    """The command with `--bed <(producer)`, run by bash (the BED is /dev/fd/N, a pipe)."""
    args = [shlex.quote(a) for a in argv(command, store, "BED")]
    args[args.index("BED")] = f"<({producer})"
    return subprocess.run(
        ["bash", "-c", " ".join(args)], capture_output=True, timeout=300, check=False
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_pipes_and_devices_are_read_like_files(store: Path, tmp_path: Path, command: str) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text(BED)
    packed = tmp_path / "r.bed.gz"
    packed.write_bytes(gzip.compress(BED.encode()))
    want = run(argv(command, store, bed))
    assert want.returncode == 0 and want.stdout, want.stderr
    got = {
        "<(cat r.bed)": substituted(command, store, f"cat {shlex.quote(str(bed))}"),
        "<(gzip -c r.bed)": substituted(command, store, f"gzip -c {shlex.quote(str(bed))}"),
        "/dev/stdin, a pipe": run(argv(command, store, "/dev/stdin"), BED.encode()),
        "/dev/stdin, gzip": run(argv(command, store, "/dev/stdin"), packed.read_bytes()),
        "-, gzip": run(argv(command, store, "-"), packed.read_bytes()),
        "r.bed.gz": run(argv(command, store, packed)),
    }
    for how, done in got.items():
        assert done.returncode == 0, (how, done.stderr.decode())
        if command == "summarize":
            assert done.stdout == want.stdout, how
        else:  # an .npz's zip entries carry the time they were written
            with np.load(io.BytesIO(done.stdout)) as a, np.load(io.BytesIO(want.stdout)) as b:
                np.testing.assert_array_equal(a["matrix"], b["matrix"])
                np.testing.assert_array_equal(a["regions"], b["regions"])


@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_gzip_bed_is_named(store: Path, tmp_path: Path, command: str) -> None:
    whole = gzip.compress((BED * 2000).encode())
    cases = {
        "cut.bed.gz": (whole[: len(whole) // 2], "is truncated: its gzip data ends before"),
        "fake.bed.gz": (b"\x1f\x8bnot gzip at all\n", "starts like gzip but cannot be"),
        "crc.bed.gz": (whole[:-8] + bytes(8), "starts like gzip but cannot be"),
    }
    for name, (content, problem) in cases.items():
        bed = tmp_path / name
        bed.write_bytes(content)
        done = run(argv(command, store, bed))
        text = subprocess.CompletedProcess(done.args, done.returncode, "", done.stderr.decode())
        assert_clean_refusal(text, f"{bed}: {problem}")  # type: ignore[arg-type]
        assert done.stdout == b""
    done = run(argv(command, store, "-"), whole[: len(whole) // 2])
    text = subprocess.CompletedProcess(done.args, done.returncode, "", done.stderr.decode())
    assert_clean_refusal(text, "<stdin>: is truncated")  # type: ignore[arg-type]


def test_a_folder_as_bed_is_named(store: Path, tmp_path: Path) -> None:
    done = run(argv("summarize", store, tmp_path))
    text = subprocess.CompletedProcess(done.args, done.returncode, "", done.stderr.decode())
    assert_clean_refusal(text, f"{tmp_path}: is a folder, not a BED file")  # type: ignore[arg-type]
