"""Generated inputs for the reliability tests (issue 5): BAMs written read by read, the
`samtools depth` reference, the CLI as a subprocess, and stores read back through zarr.

Used by tests/test_bad_inputs.py, test_faults.py, test_integrity.py and test_fuzz.py.
"""

from __future__ import annotations

import gzip
import os
import signal
import struct
import subprocess
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pysam
import zarr
from bamfactory import Read
from zarr.storage import LocalStore

Contigs = Sequence[tuple[str, int]]
CONTIGS: list[tuple[str, int]] = [("chr1", 2000), ("chr2", 1500)]


def random_reads(seed: int, n: int, contigs: Contigs = CONTIGS, read_len: int = 60) -> list[Read]:
    """Plain reads with a few spliced, deleted and filtered ones; deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    cigars = [f"{read_len}M", f"10S{read_len - 10}M", "20M2D20M", "15M100N25M", "30M5I25M"]
    flags = [0, 0, 0, 16, 16, 0x400, 0x100, 99, 147]
    out = []
    for i in range(n):
        name, length = contigs[int(rng.integers(len(contigs)))]
        out.append(
            Read(
                name,
                int(rng.integers(0, max(1, length - 200))),
                cigars[int(rng.integers(len(cigars)))],
                flag=flags[int(rng.integers(len(flags)))],
                mapq=int(rng.integers(0, 61)),
                name=f"q{i}",
            )
        )
    return out


BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _bgzf_block(payload: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = comp.compress(payload) + comp.flush()
    bsize = 12 + 6 + len(data) + 8 - 1
    head = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00"
    return (
        head
        + struct.pack("<H", bsize)
        + data
        + struct.pack("<II", zlib.crc32(payload), len(payload))
    )


def reblock(src: Path, dst: Path, sizes: Sequence[int], *, index: bool = True) -> Path:
    """Re-compress `src` into BGZF blocks of the given uncompressed sizes (cycled).

    htslib starts a new block rather than split a record (unless it is over 64 KiB); htsjdk
    (Picard) splits records anywhere. This makes the second kind of file.
    """
    data = gzip.decompress(Path(src).read_bytes())
    out = bytearray()
    pos = i = 0
    while pos < len(data):
        n = max(1, min(sizes[i % len(sizes)], 65280))
        out += _bgzf_block(data[pos : pos + n])
        pos += n
        i += 1
    Path(dst).write_bytes(bytes(out) + BGZF_EOF)
    if index:
        pysam.index(str(dst))
    return Path(dst)


def store_coverage(store: Path, array: str, row: int = 0) -> np.ndarray:
    group = zarr.open_group(LocalStore(Path(store), read_only=True), mode="r")
    return np.asarray(group[array][row, :])


def store_attrs(store: Path) -> dict:
    group = zarr.open_group(LocalStore(Path(store), read_only=True), mode="r")
    return dict(group.attrs)


def metadata(store: Path, name: str) -> np.ndarray:
    group = zarr.open_group(LocalStore(Path(store), read_only=True), mode="r")
    return np.asarray(group["metadata"][name][...])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("bamstore: error:")]


def assert_clean_refusal(
    result: subprocess.CompletedProcess[str], *needles: str, lines: int | None = 1
) -> str:
    """Exit 2, `lines` error lines (each 'file: problem; fix: ...'), no traceback; returns them."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    errors = error_lines(result.stderr)
    if lines is not None:
        assert len(errors) == lines, result.stderr
    text = "\n".join(errors)
    for needle in needles:
        assert needle in text, (needle, result.stderr)
    return text


def leftovers(folder: Path, name: str) -> list[str]:
    """Temporary or set-aside siblings of output `name` (the lock file is not one)."""
    return sorted(
        p.name
        for p in Path(folder).iterdir()
        if p.name.startswith(f".{name}.") and not p.name.endswith(".lock")
    )


def limit_file_size(max_bytes: int) -> Callable[[], None]:
    """preexec_fn: RLIMIT_FSIZE with SIGXFSZ ignored, so an oversized write() fails (EFBIG)."""

    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def without_permission_override() -> Callable[[], None] | None:
    """preexec_fn making file permissions apply to a root child process.

    Root ignores permission bits (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH); dropping both from the
    bounding set before exec leaves the child without them. None when not root (they apply).
    """
    if os.geteuid() != 0:
        return None

    def apply() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return apply


def extract_here(
    bam: Path,
    out: Path,
    sample: str = "s",
    *,
    kernel: str | None = None,
    min_mapq: int = 0,
    exclude_flags: int = 0x704,
    count_deletions: bool = False,
    overwrite: bool = False,
    **options: object,
):
    """`bamstore extract` in this process (faster than the CLI where exit codes do not matter)."""
    from bamstore.extract import ExtractOptions, extract_sample
    from bamstore.kernel import ReadFilter

    options.setdefault("chromosomes", "all")
    opts = ExtractOptions(
        read_filter=ReadFilter(
            exclude_flags=exclude_flags, min_mapq=min_mapq, count_deletions=count_deletions
        ),
        kernel=kernel,  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )
    return extract_sample(Path(bam), sample, Path(out), opts, overwrite=overwrite)


def write_samplesheet(path: Path, rows: Sequence[Sequence[object]], header: str = "") -> Path:
    """A CSV samplesheet; rows are (sample, bam[, more columns as in `header`])."""
    lines = [header or "sample,bam"] + [",".join(str(v) for v in row) for row in rows]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def chunk_files(store: Path) -> dict[str, tuple[int, int]]:
    """Coverage chunk files of a store: relative path -> (inode, mtime_ns)."""
    out = {}
    for p in Path(store).rglob("c/*/*"):
        if p.is_file() and "metadata" not in p.parts:
            st = p.stat()
            out[str(p.relative_to(store))] = (st.st_ino, st.st_mtime_ns)
    return out
