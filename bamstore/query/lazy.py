"""A coverage array as an array-like that reads on demand: what `BamStore.to_xarray` wraps in
Dask.

`LazyCoverage` holds only what names the data (the store's path or URL, its storage options,
the array and the rows), so it pickles small and travels to the workers of a Dask cluster; each
process opens the store once (`source_for`) and reads every piece Dask asks for through the
block reader (`CoverageSource.read`), only the blosc blocks it covers. Nothing here imports
Dask: it only needs `shape`, `dtype`, `ndim` and `__getitem__` with slices.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from bamstore.query.source import CoverageSource

_SOURCES: dict[tuple[str, str], CoverageSource] = {}
_SOURCES_LOCK = threading.Lock()


def source_for(location: str, storage_options: Mapping[str, Any] | None) -> CoverageSource:
    """This process's `CoverageSource` of the store at `location` (opened on first use)."""
    key = (location, repr(sorted(dict(storage_options or {}).items())))
    with _SOURCES_LOCK:
        source = _SOURCES.get(key)
    if source is None:
        source = CoverageSource.open(location, storage_options)
        with _SOURCES_LOCK:
            source = _SOURCES.setdefault(key, source)
    return source


class LazyCoverage:
    """Rows `rows` of one coverage array of the store at `location`, (rows x length) uint32,
    read when indexed."""

    dtype = np.dtype(np.uint32)
    ndim = 2

    def __init__(
        self,
        location: str,
        storage_options: Mapping[str, Any] | None,
        array: str,
        rows: list[int],
        length: int,
    ) -> None:
        self.location = location
        self.storage_options = dict(storage_options or {})
        self.array = array
        self.rows = list(rows)
        self.length = int(length)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.rows), self.length)

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.location, self.storage_options, self.array, self.rows, self.length)
        return (LazyCoverage, args)

    def __getitem__(self, key: Any) -> np.ndarray:
        keys = key if isinstance(key, tuple) else (key,)
        if len(keys) > 2 or any(k is Ellipsis for k in keys):
            keys = tuple(k for k in keys if k is not Ellipsis)
        keys = keys + (slice(None),) * (2 - len(keys))
        row_key, pos_key = keys
        rows = np.asarray(self.rows, dtype=np.int64)[row_key]
        one_row = rows.ndim == 0
        rows = np.atleast_1d(rows)
        if isinstance(pos_key, slice):
            start, stop, step = pos_key.indices(self.length)
            if step == 1:
                data = self._read(rows, start, max(start, stop))
            else:
                wanted = np.arange(start, stop, step)
                lo = int(wanted.min()) if len(wanted) else 0
                hi = int(wanted.max()) + 1 if len(wanted) else 0
                data = self._read(rows, lo, hi)[:, wanted - lo]
        else:
            positions = np.arange(self.length)[pos_key]
            flat = np.atleast_1d(positions)
            lo = int(flat.min()) if len(flat) else 0
            hi = int(flat.max()) + 1 if len(flat) else 0
            data = self._read(rows, lo, hi)[:, flat - lo]
            if np.ndim(positions) == 0:
                data = data[:, 0]
        return data[0] if one_row else data

    def _read(self, rows: np.ndarray, start: int, end: int) -> np.ndarray:
        if len(rows) == 0 or end <= start:
            return np.zeros((len(rows), max(0, end - start)), dtype=np.uint32)
        source = source_for(self.location, self.storage_options)
        return source.read(self.array, rows.tolist(), start, end)
