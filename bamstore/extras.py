"""Optional dependencies (the package's extras: plot, bigwig, remote, xarray, dask), checked where
they are needed, so that a missing one is one line naming the extra to install, not a traceback."""

from __future__ import annotations

import importlib
import importlib.util

from bamstore.errors import MissingExtraError


def require_extra(extra: str, what: str, *modules: str) -> None:
    """Import `modules` (what `what` needs); MissingExtraError naming `extra` if any is not
    installed: "`what` needs fsspec and aiohttp; fix: pip install 'bamstore[remote]'"."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
            if found:
                importlib.import_module(module)
        except ImportError:
            found = False
        if not found:
            packages = dict.fromkeys(m.partition(".")[0] for m in modules)
            raise MissingExtraError(what, " and ".join(packages), extra) from None
