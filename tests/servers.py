"""Loopback servers for stores at a URL: a static HTTP server that answers Range requests (as
nginx, S3 and every object store do; `python -m http.server` does not) and counts what it is
asked, and moto's S3 server. Used by the tests and by benchmarks/read_bench.py."""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """GET and HEAD of files under `directory`, with single byte ranges (`bytes=a-b`,
    `bytes=a-`, `bytes=-n`) answered 206; every request counted in `requests` by path, every
    connection in `connections["opened"]`. HTTP/1.1 with kept-alive connections, as nginx and
    S3 answer (`serve_folder(keep_alive=False)`: HTTP/1.0, a connection per request, as
    `python -m http.server`)."""

    requests: Counter[str]  # set per server by `serve_folder`
    connections: Counter[str]
    protocol_version = "HTTP/1.1"
    # headers and body are written separately: without TCP_NODELAY the body of a kept-alive
    # connection's response waits for the client's delayed ACK (40 ms per request)
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.connections["opened"] += 1

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.requests[self.path] += 1
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not path.exists():  # 404 on a kept connection (http.server's send_error closes it)
            body = b"404 not found\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not header or not path.is_file():
            super().do_GET()
            return
        match = RANGE.match(header.strip())
        size = path.stat().st_size
        if not match or match.groups() == ("", ""):
            self.send_error(416)
            return
        first, last = match.groups()
        if first == "":
            start, end = max(0, size - int(last)), size
        else:
            start = int(first)
            end = size if last == "" else min(size, int(last) + 1)
        if start >= size or end <= start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(path, "rb") as fh:
            fh.seek(start)
            body = fh.read(end - start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer(http.server.ThreadingHTTPServer):
    """A thread per connection, and a listen backlog as a real server's (nginx: 511).
    socketserver's default backlog of 5 drops the connections of a client that opens many at
    once, and each dropped one waits a second or more for its retry: reads that take 1-2 s
    took 9 to 250 s (the same happens with `python -m http.server`)."""

    daemon_threads = True
    request_queue_size = 128


@contextlib.contextmanager
def serve_folder(
    folder: Path, *, keep_alive: bool = True, connections: Counter[str] | None = None
) -> Iterator[tuple[str, Counter[str]]]:
    """(base URL, request counter) of a threading HTTP server over `folder` on 127.0.0.1;
    `connections` counts the connections it accepted."""
    counts: Counter[str] = Counter()
    attributes: dict[str, object] = {
        "requests": counts,
        "connections": Counter() if connections is None else connections,
    }
    if not keep_alive:
        attributes["protocol_version"] = "HTTP/1.0"
    handler = type("Handler", (RangeHandler,), attributes)
    server = LoopbackServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def s3_bucket(bucket: str, folders: dict[str, Path]) -> Iterator[str]:
    """moto's S3 server on a free loopback port with each folder uploaded under
    s3://bucket/<name>/; yields the endpoint URL (set AWS_ENDPOINT_URL to it)."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket=bucket)
        for name, folder in folders.items():
            for path in folder.rglob("*"):
                if path.is_file():
                    key = f"{name}/{path.relative_to(folder).as_posix()}"
                    client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        yield endpoint
    finally:
        server.stop()


def s3_environment(endpoint: str) -> dict[str, str]:
    return {**S3_ENV, "AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint}


__all__ = ["LoopbackServer", "RangeHandler", "s3_bucket", "s3_environment", "serve_folder"]
