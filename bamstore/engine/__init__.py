"""The write engine: BAM/CRAM input, the coverage kernel, per-sample extraction, merge, build,
publishing and validation. It reads and writes stores through `bamstore.layout` and knows
nothing of the readers above it (`bamstore.query`, `bamstore.api`) or the command line.

The main entry points are importable from here; they load on first use, so that importing one
engine module (the CLI's start, `bamstore.engine.kernel`) does not import all of them.
"""

from __future__ import annotations

import importlib
from typing import Any

_ENTRY_POINTS = {
    "ExtractOptions": "extract",
    "extract_sample": "extract",
    "merge_stores": "merge",
    "append_samples": "merge",
    "build_store": "build",
    "build_samples": "build",
    "validate_store": "validate",
    "read_store_info": "store",
    "StoreInfo": "store",
}

__all__ = sorted(_ENTRY_POINTS)


class bam_input_settings:
    """Set before the BAM input is imported (the CLI sets it from --debug): whether htslib's
    own stderr lines are silenced, applied when `bam_input` loads pysam."""

    quiet_htslib = False


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bamstore.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"bamstore.engine.{module}"), name)
