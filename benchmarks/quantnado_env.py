"""A Python >= 3.12 venv with QuantNado, the reference this project is compatible with.

Used by `make quantnado` (tests/test_quantnado_compat.py reads our stores with it) and by
`make bench` (QuantNado's build, timed). Both share the venv `.venv-quantnado`:

    python benchmarks/quantnado_env.py .venv-quantnado
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# QuantNado 0.4.3 (2026-03-09) is the last release before the commit our layout follows (64ea0a4,
# 2026-03-11): the same bamnado 0.4.4 pin and the same multi-sample BamStore layout. Its `crested`
# pin (deep-learning peak calling, imported only by quantnado.peak_calling) is left out;
# everything quantnado.dataset.store_bam imports is installed.
QUANTNADO_PACKAGE = "quantnado==0.4.3"
QUANTNADO_DEPS = [
    "bamnado==0.4.4",
    "pysam>=0.23",
    "numpy>=2,<3",
    "pandas>=3,<4",
    "zarr>=3,<4",
    "loguru>=0.7",
    "xarray>=2026",
    "dask>=2026",
    "pyranges1>=1.0",
    "matplotlib==3.10.8",
    "seaborn>=0.13",
    "scikit-learn",
    "tqdm>=4.67",
]


def find_python312(explicit: str | None) -> str | None:
    """A Python >= 3.12 for QuantNado (which needs it): --quantnado-python, PATH or pyenv."""
    candidates = [explicit] if explicit else []
    candidates += [shutil.which(n) for n in ("python3.12", "python3.13")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(p) for p in sorted(pyenv.glob("3.1[23]*/bin/python3"))]
    for cand in candidates:
        if not cand:
            continue
        try:
            out = subprocess.run(
                [cand, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == "True":
            # pyenv shims resolve to a real interpreter; keep that, not the shim
            real = subprocess.run(
                [cand, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
            )
            return real.stdout.strip() or cand
    return None


def ensure_quantnado(venv: Path, explicit_python: str | None = None) -> tuple[Path | None, str]:
    """(python of a venv with QuantNado 0.4.3, version text) or (None, why not). Cached."""
    python = venv / "bin" / "python"
    spec = "\n".join([QUANTNADO_PACKAGE, *QUANTNADO_DEPS])
    stamp = venv / ".installed"
    if not (stamp.exists() and stamp.read_text() == spec and python.exists()):
        base = find_python312(explicit_python)
        if base is None:
            return None, "not installed: needs Python >= 3.12, none found"
        print(
            f"installing {QUANTNADO_PACKAGE} into {venv} (Python {base}; once, cached)",
            file=sys.stderr,
        )
        shutil.rmtree(venv, ignore_errors=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        steps = [
            [base, "-m", "venv", str(venv)],
            [*pip, "--no-deps", QUANTNADO_PACKAGE],
            [*pip, *QUANTNADO_DEPS],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines()
                return None, f"not installed: `{' '.join(step[-2:])}` failed: " + (
                    lines[-1] if lines else "?"
                )
        stamp.write_text(spec)
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, sys\n"
            "import quantnado.dataset.store_bam\n"
            "print(f\"quantnado {m.version('quantnado')}, bamnado {m.version('bamnado')}, "
            "zarr {m.version('zarr')}, Python {sys.version.split()[0]}\")",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines()
        return None, "not installed: import failed: " + (lines[-1] if lines else "?")
    return python, probe.stdout.strip()


def main(argv: list[str]) -> int:
    """Create the venv; exit 0 (with the reason on stderr) when no Python >= 3.12 exists."""
    venv = Path(argv[0] if argv else ".venv-quantnado")
    python, text = ensure_quantnado(venv, os.environ.get("QUANTNADO_BASE_PYTHON"))
    print(text, file=sys.stderr)
    if python is None and "none found" not in text:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
