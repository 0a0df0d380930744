"""Random windows and batched reads for the reading section (read_bench.py): the access pattern
of analysis and of data loaders, against the bigWig readers the store replaces.

Every reader runs in a process of its own (window_timer.py: bamstore's venv for BamStore, the
anchors' venv for pyBigWig and pybigtools), started through run.py's `measure` (one run, which
is re-done if other processes disturbed it), and times the same windows in-process: best of
`passes`, readers opened outside the timing. A 100-sample store is made of clones of one
per-sample store (clones.py) and merged by `bamstore merge` (hard links); its bigWig twin is 100
hard links of one exported bigWig, so both sides read one file's worth of pages.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from clones import clone_part

HERE = Path(__file__).resolve().parent
TIMER = HERE / "window_timer.py"
SERVERS = HERE.parent / "tests" / "servers.py"
WINDOWS = 2000
COHORT_WINDOWS = 200  # the first of them, for 100 samples (100 bigWigs take ~10 ms a window)
WINDOW_LEN = 2000
WINDOW_SEED = 17
PASSES = 5
BATCH = 256
COHORT = 100
CHECK_WINDOWS = 50  # windows whose per-sample sums are compared across readers


@dataclass
class WindowRow:
    """One reader timed over the windows: its harness row (busy flag, peak RSS) and what the
    timer printed (ms per window, windows/s, per-sample sums of the first windows)."""

    label: str
    scope: str
    row: Any | None = None  # run.Row
    result: dict[str, Any] | None = None
    status: str = ""  # "not installed: ..." when the reader could not run
    requests: float | None = None  # HTTP requests per pass, for a store at a URL
    versus: str = ""  # how it compares, for the table ("BamStore 3.1x faster", ...)

    @property
    def ms(self) -> float | None:
        return None if self.result is None else float(self.result["ms_per_window"])

    @property
    def per_second(self) -> float | None:
        return None if self.result is None else float(self.result["windows_per_s"])

    @property
    def sums(self) -> np.ndarray | None:
        return None if self.result is None else np.asarray(self.result["check"], dtype=float)


def write_windows(path: Path, contigs: Sequence[tuple[str, int]], n: int, seed: int) -> Path:
    """n windows of WINDOW_LEN, contigs by length, starts uniform, in random order (as a
    shuffled loader asks for them); a 3-column BED, so iter_regions reads the same file."""
    rng = np.random.default_rng(seed)
    lengths = np.array([length for _, length in contigs], dtype=np.float64)
    which = rng.choice(len(contigs), size=n, p=lengths / lengths.sum())
    rows = []
    for i in which:
        name, length = contigs[i]
        start = int(rng.integers(0, length - WINDOW_LEN + 1))
        rows.append(f"{name}\t{start}\t{start + WINDOW_LEN}\n")
    path.write_text("".join(rows))
    return path


def time_windows(
    timed: Callable[..., Any],
    python: Path | str,
    windows: Path,
    label: str,
    scope: str,
    tool: Sequence[str | Path],
    *,
    passes: int = PASSES,
    counts: Counter[str] | None = None,
) -> WindowRow:
    """Run window_timer.py with `python` and read its JSON; `counts` (a loopback server's
    request counter) gives the requests per pass (the untimed pass included)."""
    before = sum(counts.values()) if counts is not None else 0
    cmd = [python, TIMER, windows, "--passes", passes, "--check", CHECK_WINDOWS, *tool]
    row = timed(label, scope, cmd, 1, warmups=0, compare=False)
    result = json.loads(row.runs[-1].stdout)
    requests = None
    if counts is not None:  # every run of measure (busy ones re-done) made passes + 1 passes
        runs = len(row.runs) + row.discarded
        requests = (sum(counts.values()) - before) / (runs * (passes + 1))
    return WindowRow(label, scope, row, result, requests=requests)


def make_cohort(part: Path, work: Path, n: int, bamstore: str) -> Path:
    """An n-sample store: `part` and n - 1 clones of it (c002 ...), merged with hard links."""
    parts_dir = work / "cohort-parts"
    shutil.rmtree(parts_dir, ignore_errors=True)
    parts = [part]
    for i in range(2, n + 1):
        parts.append(clone_part(part, parts_dir / f"c{i:03d}.zarr", f"c{i:03d}"))
    listing = work / "cohort-parts.txt"
    listing.write_text("".join(f"{p}\n" for p in parts))
    out = work / f"cohort{n}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(
        [
            bamstore,
            "merge",
            "--out",
            str(out),
            "--parts-file",
            str(listing),
            "--threads",
            "2",
            "--quiet",
        ],
        check=True,
    )
    return out


def link_copies(bigwig: Path, folder: Path, n: int) -> list[Path]:
    """n paths of one bigWig (hard links): 100 bigWigs of the same coverage, as the clones."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"c{i + 1:03d}.bw"
        path.unlink(missing_ok=True)
        path.hardlink_to(bigwig)
        out.append(path)
    return out


@contextlib.contextmanager
def loopback(folder: Path, keep_alive: bool = True) -> Iterator[tuple[str, Counter[str]]]:
    """tests/servers.py's static server over `folder` (Range requests answered, requests
    counted), in a thread of this process: (base URL, counter). HTTP/1.1 with kept-alive
    connections as nginx and S3, or (`keep_alive=False`) HTTP/1.0 with a connection per
    request as `python -m http.server`."""
    spec = importlib.util.spec_from_file_location("bench_servers", SERVERS)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {SERVERS}")
    servers = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = servers
    spec.loader.exec_module(servers)
    with servers.serve_folder(folder, keep_alive=keep_alive) as (url, counts):
        yield url, counts


def times(row: WindowRow, base: WindowRow, what: str) -> str:
    """ "1.62× the local time": row's ms per window over base's."""
    if row.ms is None or base.ms is None:
        return "—"
    return f"{row.ms / base.ms:.2f}× {what}"


def same_sums(a: WindowRow, b: WindowRow, columns: slice | None = None) -> str | None:
    """None when both readers gave the same per-sample sums on the windows both checked (the
    first ones of the same file; b's columns `columns` against all of a's), else what
    differs."""
    x, y = a.sums, b.sums
    if x is None or y is None:
        return "not measured"
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    if columns is not None:
        y = y[:, columns]
    if x.shape != y.shape:
        return f"shapes differ: {x.shape} vs {y.shape}"
    bad = np.argwhere(~np.isclose(x, y, rtol=0, atol=1e-6) | np.isnan(y))
    if len(bad):
        i, j = bad[0]
        return f"window {i}, sample {j}: {x[i, j]:g} vs {y[i, j]:g} ({len(bad)} differ)"
    return None
