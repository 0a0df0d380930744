"""bamstore: many BAM files into one Zarr store of per-base coverage."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`from bamstore import BamStore`, imported on first use so the CLI starts light."""
    if name == "BamStore":
        from bamstore.api import BamStore

        return BamStore
    raise AttributeError(f"module 'bamstore' has no attribute {name!r}")
