"""How coverage chunks are encoded (QuantNado's compression profiles) and checked (CRC32 digests).

Why not zarr's own codec pipeline: it runs through asyncio per chunk, and the extraction encodes
in worker threads while the kernel decodes the next window. `ChunkEncoder` writes the frames
c-blosc writes, a byte per block shorter (`_bloscframe`; the layout tests decode every one
through numcodecs and zarr), and merge and validate check chunk files by their CRC32 without
decoding them.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bamstore.layout.names import BLOSC_BLOCK_BYTES, COVERAGE_DTYPE

try:  # libdeflate's CRC32: the same value as zlib's, several times faster
    from deflate import crc32 as _crc32
except ImportError:  # pragma: no cover
    _crc32 = zlib.crc32


@dataclass(frozen=True)
class CompressionProfile:
    """QuantNado's `construction_compression` profiles; they apply to coverage arrays only."""

    name: str
    blosc_clevel: int | None  # None: no compressor

    def codecs(self) -> list[dict[str, Any]]:
        codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
        if self.blosc_clevel is not None:
            codecs.append(
                {
                    "name": "blosc",
                    "configuration": {
                        "typesize": COVERAGE_DTYPE.itemsize,
                        "cname": "zstd",
                        "clevel": self.blosc_clevel,
                        "shuffle": "shuffle",
                        "blocksize": BLOSC_BLOCK_BYTES,
                    },
                }
            )
        return codecs

    def encoder(self) -> ChunkEncoder:
        return ChunkEncoder(self)


COMPRESSION_PROFILES = {
    "default": CompressionProfile("default", 3),
    "fast": CompressionProfile("fast", 1),
    "none": CompressionProfile("none", None),
}
COMPRESSION_ALIASES = {"off": "none", "uncompressed": "none"}


def compression_profile(name: str) -> CompressionProfile:
    key = COMPRESSION_ALIASES.get(name.lower(), name.lower())
    if key not in COMPRESSION_PROFILES:
        raise ValueError(
            f"unknown compression profile {name!r}: use {', '.join(COMPRESSION_PROFILES)}"
        )
    return COMPRESSION_PROFILES[key]


class ChunkEncoder:
    """Encodes one (1, chunk_len) coverage chunk to the bytes zarr stores for it: the
    little-endian uint32 items, then (compressed profiles) the blosc1 frame of the
    configuration in `codecs()`, written by `_bloscframe` with one zstd context per thread.

    Why not numcodecs' Blosc: with 16 KiB blocks it costs 1.6x libzstd's own time (see
    `_bloscframe`). Thread-safe: each calling thread gets its own frame encoder.
    """

    def __init__(self, profile: CompressionProfile):
        self.profile = profile
        self._local = threading.local()

    def encode(self, chunk: np.ndarray) -> bytes:
        data = np.ascontiguousarray(chunk, dtype=COVERAGE_DTYPE)
        if self.profile.blosc_clevel is None:
            return data.tobytes()
        frames = getattr(self._local, "frames", None)
        if frames is None:
            from bamstore.layout._bloscframe import FrameEncoder

            frames = self._local.frames = FrameEncoder(self.profile.blosc_clevel, BLOSC_BLOCK_BYTES)
        return frames.encode(data.view(np.uint8).reshape(-1))


def same_chunk_codecs(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    """Whether chunks encoded with codecs `a` are read as chunks encoded with `b`: the same
    codecs, but for blosc's block size, which only the encoder uses (each frame records its own),
    so chunks of stores from before format 3 join newer ones as they are."""

    def key(codecs: Sequence[Mapping[str, Any]]) -> list[Any]:
        out = []
        for codec in codecs:
            config = dict(codec.get("configuration", {}))
            if codec.get("name") == "blosc":
                config.pop("blocksize", None)
            out.append((codec.get("name"), sorted(config.items())))
        return out

    return key(a) == key(b)


def chunk_digest(chunks: Iterable[tuple[int, int]]) -> str:
    """Digest of one sample's chunk files of one array: CRC32 over (column, CRC32 of bytes).

    Recorded at extraction next to the coverage sums; merge and validate recompute it from the
    files, so a lost, truncated, altered or misplaced chunk is caught without decoding.
    """
    acc = 0
    for col, crc in sorted(chunks):
        acc = zlib.crc32(col.to_bytes(8, "little") + crc.to_bytes(4, "little"), acc)
    return f"{acc:08x}"


def file_crc32(path: Path) -> int:
    """CRC32 of a chunk file."""
    return _crc32(path.read_bytes())
