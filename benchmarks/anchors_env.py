"""The reading section's anchors in venvs of their own, cached under the bench cache.

- `ensure_anchors`: a Python >= 3.12 venv with deeptools 4.0.0 (its Rust core needs 3.12),
  pbzarr 0.7.0, pyBigWig and pybigtools, all pinned. They run there, never in bamstore's venv:
  deeptools 4 and bamstore's Python 3.11 do not mix, and each tool gets the versions the
  benchmark names.
- `ensure_baseline`: bamstore as of a given commit ("today's" extract, before the changes the
  benchmark judges), from `git archive` of that commit, installed (not editable) into a venv of
  its own with the interpreter that runs the benchmark.

    python benchmarks/anchors_env.py benchmarks/.cache/venv-anchors
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from quantnado_env import find_python312

ANCHOR_PACKAGES = [
    "deeptools==4.0.0",
    "pbzarr==0.7.0",
    "pyBigWig==0.3.29",
    "pybigtools==0.3.0",
]
ANCHOR_PROBE = (
    "import importlib.metadata as m, sys\n"
    "import deeptools, pbzarr, pyBigWig, pybigtools\n"
    "print(', '.join(f'{p} {m.version(p)}' for p in "
    "('deeptools', 'pbzarr', 'pyBigWig', 'pybigtools')) + f', Python {sys.version.split()[0]}')"
)
REPO = Path(__file__).resolve().parents[1]


def _run_steps(steps: list[list[str]], cwd: Path | None = None) -> str | None:
    """Run each step; the first failure as "`cmd` failed: last line", else None."""
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, cwd=cwd)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            shown = " ".join(step[-2:])
            return f"`{shown}` failed: " + (lines[-1] if lines else f"exit {done.returncode}")
    return None


def _probe(python: Path, script: str) -> tuple[Path | None, str]:
    probe = subprocess.run([str(python), "-c", script], capture_output=True, text=True)
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines()
        return None, "not installed: import failed: " + (lines[-1] if lines else "?")
    return python, probe.stdout.strip()


def ensure_anchors(venv: Path, explicit_python: str | None = None) -> tuple[Path | None, str]:
    """(python of the anchors' venv, versions text) or (None, why not). Installed once; a
    changed pin list installs it anew."""
    python = venv / "bin" / "python"
    spec = "\n".join(ANCHOR_PACKAGES)
    stamp = venv / ".installed"
    if not (stamp.exists() and stamp.read_text() == spec and python.exists()):
        base = find_python312(explicit_python)
        if base is None:
            return None, "not installed: needs Python >= 3.12, none found"
        print(f"installing the anchors into {venv} (Python {base}; once, cached)", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        failed = _run_steps([[base, "-m", "venv", str(venv)], [*pip, *ANCHOR_PACKAGES]])
        if failed:
            return None, f"not installed: {failed}"
        stamp.write_text(spec)
    return _probe(python, ANCHOR_PROBE)


def ensure_baseline(venv: Path, revision: str) -> tuple[Path | None, str]:
    """(bamstore executable of `revision`, "bamstore VERSION at REV") or (None, why not).

    The commit's tree comes from `git archive` (the checkout is left alone) and is installed
    with pip into `venv`, built from source as `make install` builds it. Cached by revision.
    """
    exe = venv / "bin" / "bamstore"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    full = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if full.returncode != 0:
        return None, f"not installed: {revision} is not a commit of {REPO}"
    commit = full.stdout.strip()
    if not (stamp.exists() and stamp.read_text() == commit and exe.exists()):
        print(f"installing bamstore at {commit[:7]} into {venv} (once, cached)", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "src.tar"
            src = Path(tmp) / "src"
            failed = _run_steps(
                [["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), commit]]
            )
            if failed:
                return None, f"not installed: {failed}"
            with tarfile.open(archive) as tar:
                tar.extractall(src, filter="data")
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            failed = _run_steps([[sys.executable, "-m", "venv", str(venv)], [*pip, str(src)]])
        if failed:
            return None, f"not installed: {failed}"
        stamp.write_text(commit)
    exe_python, text = _probe(
        python, "import importlib.metadata as m; print(m.version('bamstore'))"
    )
    if exe_python is None:
        return None, text
    return exe, f"bamstore {text} at {commit[:7]}"


def main(argv: list[str]) -> int:
    venv = Path(argv[0] if argv else REPO / "benchmarks" / ".cache" / "venv-anchors")
    python, text = ensure_anchors(venv, os.environ.get("ANCHORS_BASE_PYTHON"))
    print(text, file=sys.stderr)
    return 0 if python is not None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
