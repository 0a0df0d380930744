"""A Python >= 3.12 venv with deeptools 4.0, the oracle of the normalisation tests.

deeptools 4.0 (Rust core) needs Python >= 3.12. `make deeptools` creates `.venv-deeptools` with
it, as `make quantnado` does for QuantNado (the same search for a Python 3.12: PATH or pyenv);
tests/test_deeptools_compat.py runs its `bamCoverage` and `multiBigwigSummary`:

    python benchmarks/deeptools_env.py .venv-deeptools
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from quantnado_env import find_python312

DEEPTOOLS_PACKAGE = "deeptools==4.0.0"


def ensure_deeptools(venv: Path, explicit_python: str | None = None) -> tuple[Path | None, str]:
    """(bin folder of a venv with deeptools 4.0, version text) or (None, why not). Cached."""
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not (stamp.exists() and stamp.read_text() == DEEPTOOLS_PACKAGE and python.exists()):
        base = find_python312(explicit_python)
        if base is None:
            return None, "not installed: needs Python >= 3.12, none found"
        print(f"installing {DEEPTOOLS_PACKAGE} into {venv} (Python {base}; once)", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        for step in ([base, "-m", "venv", str(venv)], [*pip, DEEPTOOLS_PACKAGE]):
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines()
                return None, f"not installed: `{' '.join(step[-2:])}` failed: " + (
                    lines[-1] if lines else "?"
                )
        stamp.write_text(DEEPTOOLS_PACKAGE)
    probe = subprocess.run(
        [str(venv / "bin" / "bamCoverage"), "--version"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return None, "not installed: bamCoverage failed: " + (lines[-1] if lines else "?")
    return venv / "bin", probe.stdout.strip()


def main(argv: list[str]) -> int:
    """Create the venv; exit 0 (with the reason on stderr) when no Python >= 3.12 exists."""
    venv = Path(argv[0] if argv else ".venv-deeptools")
    found, text = ensure_deeptools(venv, os.environ.get("DEEPTOOLS_BASE_PYTHON"))
    print(text, file=sys.stderr)
    if found is None and "none found" not in text:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
