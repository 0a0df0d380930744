"""The files of a store, in a local folder or at an http(s):// or s3:// URL: what every reader
fetches its bytes through.

A local store is read with plain file calls. An http(s):// URL's files are fetched over
kept-alive connections (`http_ranges`, which says why not through fsspec); S3, and HTTP with
`storage_options` or behind a proxy, go through fsspec (aiohttp, s3fs: the `remote` extra).
Either way the requests for many keys are issued concurrently (`fetch`), ranges as HTTP Range
requests. S3 settings come from the usual places
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL` for an S3-compatible server,
`~/.aws/`) or from `storage_options`. Either way a key that is not there is a
FileNotFoundError, so callers tell "missing" from "unreadable" the same way for both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bamstore import http_ranges
from bamstore.errors import QueryError
from bamstore.extras import require_extra

# the modules (of the `remote` extra) that fsspec needs for each scheme
REMOTE_SCHEMES: dict[str, tuple[str, ...]] = {
    "http": ("fsspec", "aiohttp"),
    "https": ("fsspec", "aiohttp"),
    "s3": ("fsspec", "s3fs"),
}
Location = str | os.PathLike[str]
Span = tuple[int, int | None]  # [start, end) of a key; (-n, None): its last n bytes


def url_scheme(location: Location) -> str | None:
    """The scheme of a URL we can open ('http', 'https', 's3'), None for a local path."""
    text = os.fspath(location)
    if not isinstance(text, str) or "://" not in text:
        return None
    scheme = text.split("://", 1)[0].lower()
    if scheme not in REMOTE_SCHEMES:
        raise QueryError(
            text,
            f"cannot open {scheme}:// stores",
            f"give a local path or an {', '.join(s + '://' for s in REMOTE_SCHEMES)} URL",
        )
    return scheme


def is_url(location: Location) -> bool:
    return url_scheme(location) is not None


class StoreFiles:
    """The files of one store: `local` (a folder) or `fs` (an fsspec filesystem) at `root`;
    an http(s):// root's files are fetched by `http_ranges` unless fsspec must (see there)."""

    def __init__(
        self,
        label: str,
        local: Path | None,
        fs: Any = None,
        root: str = "",
        storage_options: Mapping[str, Any] | None = None,
    ):
        self.label = label
        self.local = local
        self.fs = fs
        self.root = root.rstrip("/")
        self.http = None if local is not None else http_ranges.for_url(self.root, storage_options)

    @classmethod
    def open(
        cls, location: Location, storage_options: Mapping[str, Any] | None = None
    ) -> StoreFiles:
        """The files at a path or URL (nothing is read yet)."""
        scheme = url_scheme(location)
        label = os.fspath(location)
        if scheme is None:
            return cls(label, Path(location))
        require_extra("remote", f"reading {scheme}:// stores", *REMOTE_SCHEMES[scheme])
        import fsspec

        url = label.rstrip("/")
        fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        # HTTP filesystems take whole URLs as paths, the others paths without the scheme
        path = url if scheme in ("http", "https") else root
        return cls(url, None, fs, path, storage_options)

    @property
    def remote(self) -> bool:
        return self.local is None

    def path(self, key: str) -> str:
        """The local path or URL of a key (`chr1/c/0/3`), for messages and reads."""
        if self.local is not None:
            return str(self.local / key)
        return f"{self.root}/{key}"

    def exists(self) -> bool:
        """Whether the store's folder exists (a URL: always; its zarr.json then tells)."""
        return self.local is None or self.local.exists()

    def read(self, key: str) -> bytes:
        """The bytes of one key; FileNotFoundError if it is not there."""
        data = self.fetch([key], [None])[0]
        if isinstance(data, Exception):
            raise data
        return data

    def read_json(self, key: str) -> Any:
        """One JSON document; FileNotFoundError, or ValueError for bytes that are not JSON."""
        return json.loads(self.read(key))

    def fetch(self, keys: Sequence[str], spans: Sequence[Span | None]) -> list[Any]:
        """The bytes of each key, or of its span, fetched concurrently; an exception object in
        place of a key that could not be read (FileNotFoundError when it is not there)."""
        paths = [self.path(k) for k in keys]
        if self.local is not None:
            return [_read_local(p, s) for p, s in zip(paths, spans, strict=True)]
        if self.http is not None:
            got = self.http.fetch(paths, spans)
            return [
                v if isinstance(v, Exception) else _ranged(v, s)
                for v, s in zip(got, spans, strict=True)
            ]
        starts = [None if s is None else s[0] for s in spans]
        ends = [None if s is None else s[1] for s in spans]
        out = self.fs.cat_ranges(paths, starts, ends, on_error="return")
        return [
            _missing(p, v) if isinstance(v, Exception) else _ranged(v, s)
            for p, v, s in zip(paths, out, spans, strict=True)
        ]


def _read_local(path: str, span: Span | None) -> Any:
    try:
        with open(path, "rb") as fh:
            if span is None:
                return fh.read()
            start, end = span
            if end is None:
                fh.seek(max(start, -os.fstat(fh.fileno()).st_size), os.SEEK_END)
                return fh.read()
            fh.seek(start)
            return fh.read(end - start)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        return FileNotFoundError(exc.errno, exc.strerror, path)
    except OSError as exc:
        return exc


def _ranged(data: bytes, span: Span | None) -> bytes:
    """The span's bytes of a response: a server that ignores Range (`python -m http.server`)
    sends the whole file, which is cut here, so such servers work, only slower."""
    if span is None:
        return data
    start, end = span
    if end is None:
        return data[start:] if len(data) > -start else data
    if len(data) > end - start and len(data) >= end:
        return data[start:end]
    return data


def _missing(path: str, exc: Exception) -> Exception:
    """fsspec's errors for a key that is not there, as FileNotFoundError; others as they are."""
    if isinstance(exc, FileNotFoundError):
        return exc
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if status == 404:
        return FileNotFoundError(2, "No such file", path)
    return exc
