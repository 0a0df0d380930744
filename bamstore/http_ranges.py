"""Files and byte ranges at http(s):// URLs over kept-alive connections: how the block reader
fetches the chunks of a store at a URL.

Why not fsspec for these requests: its HTTP filesystem runs each synchronous call through an
asyncio loop in another thread and aiohttp, about 0.5 ms per request on the project's 2-core
machine, where the request itself to a loopback server takes 0.3-0.6 ms. A random window of a
remote store costs one request per chunk it needs, so that overhead was about half its time
(benchmarks/README.md, the remote rows). fsspec still opens the store (zarr's metadata), and it
still serves S3, and HTTP stores opened with `storage_options` (headers, authentication) or
reached through a proxy (`for_url` returns None for those).

What this module guarantees:
- one connection per thread and host, kept alive between requests; a kept connection the
  server has closed meanwhile is reopened once (a GET may be repeated);
- a range is a `Range` header; a server that ignores it (200, the whole file) is answered by
  the caller cutting the span out (`storage._ranged`), as with fsspec;
- 404 and 410 are FileNotFoundError naming the URL; any other error status, a refused or
  broken connection or a timeout is a RemoteReadError naming the URL (a one-line message, exit
  2 from the CLI); redirects are followed (up to 5);
- many URLs are fetched concurrently, by up to FETCH_THREADS threads.
"""

from __future__ import annotations

import http.client
import os
import threading
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

from bamstore.errors import RemoteReadError

Span = tuple[int, int | None]  # [start, end) of a file; (-n, None): its last n bytes

FETCH_THREADS = 8  # concurrent requests of one fetch (fsspec's aiohttp pool allows 100)
TIMEOUT = 60.0  # seconds a connect or a read may wait (aiohttp's default read timeout)
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
GONE = frozenset({404, 410})
# a kept connection the server closed (idle timeout) fails the next request with one of these
STALE = (http.client.RemoteDisconnected, http.client.CannotSendRequest, ConnectionResetError,
         BrokenPipeError)  # fmt: skip


def for_url(url: str, storage_options: dict[str, Any] | None = None) -> HttpRanges | None:
    """A client for the files under `url`, or None where fsspec must serve it: any scheme but
    http(s), options given (fsspec's headers, auth, client_kwargs), or a proxy in the
    environment for its host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or storage_options:
        return None
    if parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(
        parts.hostname or ""
    ):
        return None
    return CLIENT


class HttpRanges:
    """GETs of whole files or spans, each thread over its own kept-alive connections."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def forget(self) -> None:
        """A forked child shares no connection and no thread with its parent."""
        self._local = threading.local()
        self._pool = None
        self._pool_lock = threading.Lock()

    def fetch(self, urls: Sequence[str], spans: Sequence[Span | None]) -> list[Any]:
        """The bytes of each URL or span; an exception object in place of one that failed."""
        if len(urls) <= 1:
            return [self.get(u, s) for u, s in zip(urls, spans, strict=True)]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="bamstore-http")
            pool = self._pool
        return list(pool.map(self.get, urls, spans))

    def get(self, url: str, span: Span | None = None) -> bytes | Exception:
        """One GET: the body of a 200 or 206, or the exception that says why not."""
        if span is not None and span[1] is not None and span[1] <= span[0]:
            return b""
        headers = {} if span is None else {"Range": range_header(span)}
        location = url
        try:
            for _ in range(MAX_REDIRECTS + 1):
                status, reason, redirect, body = self._request(urlsplit(location), headers)
                if status in REDIRECTS and redirect:
                    location = urljoin(location, redirect)
                    continue
                if status in (200, 206):
                    return body
                if status in GONE:
                    return FileNotFoundError(2, "No such file", url)
                if status == 416:  # a span past the end of the file: nothing there
                    return b""
                return RemoteReadError(url, f"the server answered HTTP {status} {reason}")
            return RemoteReadError(url, f"more than {MAX_REDIRECTS} redirects")
        except (OSError, http.client.HTTPException) as exc:
            return RemoteReadError(url, f"cannot be fetched ({type(exc).__name__}: {exc})")

    def _request(self, parts: SplitResult, headers: dict[str, str]) -> tuple[int, str, str, bytes]:
        connections: dict[tuple[str, str], http.client.HTTPConnection] = getattr(
            self._local, "connections", None
        ) or self._local.__dict__.setdefault("connections", {})
        key = (parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for attempt in range(2):
            connection = connections.get(key)
            kept = connection is not None
            if connection is None:
                kind = (
                    http.client.HTTPSConnection
                    if parts.scheme == "https"
                    else http.client.HTTPConnection
                )
                connection = connections[key] = kind(parts.netloc, timeout=TIMEOUT)
            try:
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
                body = response.read()
            except STALE:
                connection.close()
                del connections[key]
                if kept and attempt == 0:
                    continue
                raise
            except BaseException:
                connection.close()
                del connections[key]
                raise
            if response.will_close:
                connection.close()
                del connections[key]
            return response.status, response.reason, response.getheader("Location", ""), body
        raise AssertionError("unreachable")  # the second attempt returns or raises


CLIENT = HttpRanges()  # one per process: its connections are per thread and host
os.register_at_fork(after_in_child=CLIENT.forget)


def range_header(span: Span) -> str:
    """`bytes=a-b` for [a, b), `bytes=a-` for [a, end), `bytes=-n` for the last n bytes."""
    start, end = span
    if end is None:
        return f"bytes={start}" if start < 0 else f"bytes={start}-"
    return f"bytes={start}-{end - 1}"


__all__ = ["CLIENT", "FETCH_THREADS", "HttpRanges", "for_url", "range_header"]
