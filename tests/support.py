"""Helpers shared by the test modules that are not fixtures: paths, the CLI's argv, checks of a
refusal's stderr, stores read back through plain zarr, and running `extract` in-process.

Fixtures (`run_cli`, `read_rows`, generated BAMs) are in conftest.py; BAMs are written by
bamfactory.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "bin" / "bamstore"
TEST_DATA = REPO / "tests" / "data"


def cli_argv(*args: object) -> list[str]:
    """The argv of bin/bamstore, as Nextflow tasks call it."""
    return [sys.executable, str(BIN), *map(str, args)]


def assert_identical_chunks(stores: dict[str, Path]) -> list[Path]:
    """Every store holds the same chunk files, byte for byte outside `metadata/` (whose
    sparsity and totals are compared by value elsewhere); returns the chunk paths, relative."""
    first = next(iter(stores.values()))
    files = sorted(p.relative_to(first) for p in first.rglob("c/*/*") if p.is_file())
    assert files, "no chunk files written"
    for name, store in stores.items():
        other = sorted(p.relative_to(store) for p in store.rglob("c/*/*") if p.is_file())
        assert other == files, name
        for rel in files:
            if rel.parts[0] != "metadata":
                assert (store / rel).read_bytes() == (first / rel).read_bytes(), (name, rel)
    return files


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


def default_sigint() -> None:
    """preexec_fn: SIGINT back to its default, as a terminal's foreground job has it. A child
    inherits an ignored SIGINT (a test run started in the background of a shell without job
    control ignores it), and Python then installs no KeyboardInterrupt handler: Ctrl-C tests
    saw the build run to the end and exit 0."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


def extract_options(**kw: object):
    """ExtractOptions for tests: chromosomes=all unless given, read-filter keywords mixed in."""
    from bamstore.engine.extract import ExtractOptions
    from bamstore.options import ReadFilter

    read_filter = {
        k: kw.pop(k) for k in ("exclude_flags", "min_mapq", "count_deletions") if k in kw
    }
    kw.setdefault("chromosomes", "all")
    return ExtractOptions(read_filter=ReadFilter(**read_filter), **kw)  # type: ignore[arg-type]


def extract_here(bam: Path, out: Path, sample: str = "s", *, overwrite: bool = False, **kw: object):
    """`bamstore extract` in this process (faster than the CLI where exit codes do not matter);
    `kw` as for `extract_options`."""
    from bamstore.engine.extract import extract_sample

    return extract_sample(Path(bam), sample, Path(out), extract_options(**kw), overwrite=overwrite)


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
