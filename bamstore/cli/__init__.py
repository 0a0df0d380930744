"""The `bamstore` command line: extract, merge, build, validate, inspect, check-samplesheet,
scale-factors, plot, and the reading commands summarize, profile and export.

Exit codes: 0 success, 2 bad input or usage (one line per problem: file, problem, fix), 1
internal error. Tracebacks only with --debug. Progress and warnings go to stderr.

One module per group of commands (`write`, `check`, `scale`, `read`); what they share is in
`common`.
"""

from __future__ import annotations

import os

# Before numpy is imported (by the command modules): numpy's OpenBLAS otherwise starts a thread
# per core that spins for ~0.1 s, 0.1 CPU-s of every command on the 2-core machine (`bamstore
# --help`: 0.24 -> 0.14 s of user CPU); bamstore never calls BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click

from bamstore import __version__
from bamstore.cli.check import check_samplesheet, inspect, validate
from bamstore.cli.read import export, plot, profile, summarize
from bamstore.cli.scale import scale_factors
from bamstore.cli.write import build, extract, merge


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="bamstore")
def main() -> None:
    """Many BAM files into one Zarr store of per-base coverage (QuantNado BamStore layout)."""


for command in (
    extract,
    merge,
    build,
    validate,
    inspect,
    check_samplesheet,
    scale_factors,
    plot,
    summarize,
    profile,
    export,
):
    main.add_command(command)
