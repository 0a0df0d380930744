"""The on-disk layout of a bamstore store: the one place it is defined.

It is QuantNado's multi-sample `BamStore` layout (commit 64ea0a4; ../shared/notes/quantnado_spec.md
section 1) so that QuantNado's `BamStore.open` and readers work on our stores:

    NAME.zarr/                 zarr v3 group; root attributes below
      <contig>/                (n_samples, contig_length) uint32, chunks (1, chunk_len), fill 0
      <contig>_fwd, _rev       the same, present iff any sample is stranded
      metadata/                completed (bool), sparsity (f32), sample_hashes (u8 n x 16),
                               total_reads (i64)

Every root member other than `metadata` is a contig to QuantNado's readers, so nothing else may
live at the root; our own settings and per-sample coverage sums go into one root attribute,
`bamstore`. The writer, merge, validator and reader all take names, documents and codecs from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

try:
    from deflate import crc32 as _crc32
except ImportError:  # pragma: no cover
    _crc32 = zlib.crc32

STORE_SUFFIX = ".zarr"
METADATA_GROUP = "metadata"
COMPLETED = "completed"
SPARSITY = "sparsity"
SAMPLE_HASHES = "sample_hashes"
TOTAL_READS = "total_reads"
METADATA_ARRAYS = (COMPLETED, SPARSITY, SAMPLE_HASHES, TOTAL_READS)
FWD_SUFFIX = "_fwd"
REV_SUFFIX = "_rev"
STRUCTURE = "per-chromosome (sample x position)"
BIN_SIZE = 1
DEFAULT_CHUNK_LEN = 1_048_576
COVERAGE_DTYPE = np.dtype("<u4")
HASH_PREFIX_BYTES = 16384  # sample_hashes: MD5 of the first 16 KiB of the BAM file (QuantNado)
HASH_WIDTH = 16
BAMSTORE_ATTR = "bamstore"
METADATA_ATTR_PREFIX = "metadata_"
FORMAT_NAME = "bamstore"
FORMAT_VERSION = 1
REQUIRED_ROOT_ATTRS = ("sample_names", "chromsizes", "chunk_len")
ROOT_ATTRS = (
    "chromosomes",
    "chromsizes",
    "n_samples",
    "chunk_len",
    "construction_compression",
    "structure",
    "bin_size",
    "sample_names",
    "sample_names_hash",
    "stranded",
    "average_sparsity",
)
STRAND_CODES = ("U", "F", "R")
ZARR_JSON = "zarr.json"


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
                        "blocksize": 0,
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
    """Encodes one (1, chunk_len) coverage chunk to the bytes zarr stores for it.

    Why not zarr's own codec pipeline: it runs through asyncio per chunk, and the extraction
    encodes in worker threads while the kernel decodes the next window. The bytes are identical
    to zarr's (bytes codec little-endian, then blosc with the configuration in `codecs()`); the
    layout tests compare them and read every array back through zarr.
    """

    def __init__(self, profile: CompressionProfile):
        self.profile = profile
        self._blosc = (
            numcodecs.Blosc(
                cname="zstd",
                clevel=profile.blosc_clevel,
                shuffle=numcodecs.Blosc.SHUFFLE,
                blocksize=0,
            )
            if profile.blosc_clevel is not None
            else None
        )

    def encode(self, chunk: np.ndarray) -> bytes:
        data = np.ascontiguousarray(chunk, dtype=COVERAGE_DTYPE)
        if self._blosc is None:
            return data.tobytes()
        return bytes(self._blosc.encode(data))


# ---------------------------------------------------------------------------- names and paths


def strand_array_names(contig: str) -> tuple[str, str]:
    return contig + FWD_SUFFIX, contig + REV_SUFFIX


def coverage_array_names(contigs: Iterable[str], stranded: bool) -> list[str]:
    names: list[str] = []
    for contig in contigs:
        names.append(contig)
        if stranded:
            names.extend(strand_array_names(contig))
    return names


def chunk_key(row: int, col: int) -> str:
    """Zarr v3 default chunk key encoding with separator '/'."""
    return f"c/{row}/{col}"


def chunk_path(store: Path, array: str, row: int, col: int) -> Path:
    return store / array / "c" / str(row) / str(col)


def n_chunks(length: int, chunk_len: int) -> int:
    return -(-length // chunk_len)


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
    """CRC32 of a chunk file (libdeflate's when available: same value, several times faster)."""
    return _crc32(path.read_bytes())


def row_chunk_files(store: Path, array: str, row: int) -> dict[int, Path]:
    """Chunk files of one row of a coverage array, by column index."""
    folder = store / array / "c" / str(row)
    if not folder.is_dir():
        return {}
    out: dict[int, Path] = {}
    for entry in os.scandir(folder):
        if entry.name.isdigit():
            out[int(entry.name)] = Path(entry.path)
    return out


def sample_names_hash(names: Sequence[str]) -> str:
    """QuantNado's check value for the sample order: sha256 of the '|'-joined names, 16 hex."""
    return hashlib.sha256("|".join(names).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- zarr.json documents


def group_document(attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"attributes": dict(attributes or {}), "zarr_format": 3, "node_type": "group"}


def coverage_array_document(
    n_samples: int, length: int, chunk_len: int, profile: CompressionProfile
) -> dict[str, Any]:
    """The zarr.json of one coverage array, as zarr 3 writes it for QuantNado's arrays."""
    return {
        "shape": [n_samples, length],
        "data_type": "uint32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, chunk_len]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": profile.codecs(),
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write a zarr.json; NaN is not JSON, so it is refused here rather than written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, allow_nan=False)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------- root attributes


def root_attributes(
    *,
    chromsizes: Mapping[str, int],
    sample_names: Sequence[str],
    chunk_len: int,
    compression: str,
    stranded: Mapping[str, str],
    average_sparsity: float | None,
    metadata_columns: Mapping[str, Sequence[str]],
    bamstore: Mapping[str, Any],
) -> dict[str, Any]:
    """Every root attribute of QuantNado's table plus `metadata_<col>` lists and `bamstore`."""
    attrs: dict[str, Any] = {
        "chromosomes": sorted(chromsizes),
        "chromsizes": dict(chromsizes),
        "n_samples": len(sample_names),
        "chunk_len": chunk_len,
        "construction_compression": compression,
        "structure": STRUCTURE,
        "bin_size": BIN_SIZE,
        "sample_names": list(sample_names),
        "sample_names_hash": sample_names_hash(sample_names),
        "stranded": {name: stranded.get(name, "") for name in sample_names},
    }
    if average_sparsity is not None:
        attrs["average_sparsity"] = average_sparsity
    for column, values in metadata_columns.items():
        if len(values) != len(sample_names):
            raise ValueError(
                f"metadata column {column!r} has {len(values)} values for "
                f"{len(sample_names)} samples"
            )
        attrs[METADATA_ATTR_PREFIX + column] = [str(v) for v in values]
    attrs[BAMSTORE_ATTR] = dict(bamstore)
    return attrs


def metadata_columns_from_attrs(attrs: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per-sample metadata columns, as QuantNado's readers find them (length must equal n)."""
    n = len(attrs.get("sample_names", []))
    return {
        key[len(METADATA_ATTR_PREFIX) :]: list(value)
        for key, value in attrs.items()
        if key.startswith(METADATA_ATTR_PREFIX) and isinstance(value, list) and len(value) == n
    }


def average_sparsity(sparsity: Sequence[float]) -> float | None:
    values = [float(v) for v in sparsity if v == v]  # drop NaN
    return sum(values) / len(values) if values else None


def contig_members(root_members: Iterable[str]) -> list[str]:
    """QuantNado's rule: every root member other than `metadata` is a contig array."""
    return [m for m in root_members if m != METADATA_GROUP]
