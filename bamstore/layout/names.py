"""Names and paths of a store: its constants, the arrays of a contig, where a chunk lies, and which
contig names may become arrays at all."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

STORE_SUFFIX = ".zarr"
METADATA_GROUP = "metadata"
COMPLETED = "completed"
SPARSITY = "sparsity"
SAMPLE_HASHES = "sample_hashes"
TOTAL_READS = "total_reads"
FWD_SUFFIX = "_fwd"
REV_SUFFIX = "_rev"
ZARR_JSON = "zarr.json"
CHUNK_FOLDER = "c"  # zarr v3 default chunk key encoding: <array>/c/<row>/<col>
STRUCTURE = "per-chromosome (sample x position)"
BIN_SIZE = 1
DEFAULT_CHUNK_LEN = 1_048_576
SHARD_BY_DEFAULT = False  # new stores' layout (docs/scaling.md says why); records say their own
# unmapped, secondary, QC-fail, duplicate: samtools depth's default filter (and ours)
DEFAULT_EXCLUDE_FLAGS = 0x704
COVERAGE_DTYPE = np.dtype("<u4")
HASH_PREFIX_BYTES = 16384  # sample_hashes: MD5 of the first 16 KiB of the BAM file (QuantNado)
HASH_WIDTH = 16
BAMSTORE_ATTR = "bamstore"
METADATA_ATTR_PREFIX = "metadata_"
FORMAT_NAME = "bamstore"
# The `bamstore` record's version (docs/format.md lists what each one changed); records of
# every version in READABLE_FORMAT_VERSIONS are read, and written back as FORMAT_VERSION.
FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (2, 3)
# blosc's block size in the coverage chunks written since format 3: 4,096 positions, so a
# window decodes one or two 16 KiB blocks of a 4 MiB chunk (bamstore.query.chunks). Measured on
# the benchmark store: the same size as blosc's own choice (128 KiB) within 0.1%, one window
# 6x faster than pyBigWig; whole-chunk decoding through zarr costs 2.7x blosc's own choice
# (benchmarks/README.md, "Block size").
BLOSC_BLOCK_BYTES = 16_384
STRAND_CODES = ("U", "F", "R")


def strand_array_names(contig: str) -> tuple[str, str]:
    return contig + FWD_SUFFIX, contig + REV_SUFFIX


def coverage_array_names(contigs: Iterable[str], stranded: bool) -> list[str]:
    names: list[str] = []
    for contig in contigs:
        names.append(contig)
        if stranded:
            names.extend(strand_array_names(contig))
    return names


def row_folder(store: Path, array: str, row: int) -> Path:
    return store / array / CHUNK_FOLDER / str(row)


def chunk_path(store: Path, array: str, row: int, col: int) -> Path:
    return row_folder(store, array, row) / str(col)


def n_chunks(length: int, chunk_len: int) -> int:
    return -(-length // chunk_len)


def sample_names_hash(names: Sequence[str]) -> str:
    """QuantNado's check value for the sample order: sha256 of the '|'-joined names, 16 hex."""
    return hashlib.sha256("|".join(names).encode()).hexdigest()[:16]


def sample_names_hash_problem(raw: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """Why QuantNado's `open` refuses root attributes `raw` whose `sample_names_hash` is not
    that of `names` (their sample order), or None; a store without the hash is opened."""
    stored = raw.get("sample_names_hash")
    expected = sample_names_hash(names)
    if stored and stored != expected:
        return f"Sample names hash mismatch (stored={stored}, current={expected})"
    return None


# ---------------------------------------------------------------------------- contig names

# Root members that a contig array must never replace: the metadata group, the group's own
# document, and the chunk folder name (`c`) a reader could mistake for the root's chunks.
RESERVED_ROOT_NAMES = frozenset({METADATA_GROUP, ZARR_JSON, CHUNK_FOLDER})
# A name is one folder; 255 bytes is the common file name limit, less the longest suffix.
MAX_CONTIG_NAME_BYTES = 255 - len(FWD_SUFFIX)


def contig_name_problem(name: str) -> str | None:
    """Why `name` cannot be the array of a contig, or None if it can.

    Contig names come from BAM headers and chromsizes files: untrusted text that becomes a
    folder at the store's root. It must be exactly one folder name inside the store (SAM allows
    `/`; `..` would write beside the store), must not replace a member of the store itself,
    and Zarr reserves names that start with `__`.
    """
    if not name:
        return "its name is empty"
    if name in (".", ".."):
        return f"{name!r} is not a folder inside the store"
    if "/" in name or "\\" in name:
        return "its name contains a path separator"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "its name contains a control character"
    if name.startswith("__"):
        return "names starting with '__' are reserved by Zarr"
    if name in RESERVED_ROOT_NAMES:
        return f"{name!r} is the name of a member of the store itself"
    if len(name.encode()) > MAX_CONTIG_NAME_BYTES:
        return f"its name is longer than {MAX_CONTIG_NAME_BYTES} bytes"
    return None


def contig_name_problems(contigs: Iterable[str], stranded: bool) -> list[tuple[str, str]]:
    """(contig, problem) for every contig that cannot be written, including arrays that would
    land on the same path: a repeated name, or `chr1_fwd` next to `chr1`'s strand array."""
    problems: list[tuple[str, str]] = []
    owner: dict[str, str] = {}  # array name -> the contig whose array it is
    for contig in contigs:
        problem = contig_name_problem(contig)
        if problem:
            problems.append((contig, problem))
            continue
        for array in coverage_array_names([contig], stranded):
            other = owner.get(array)
            if other is None:
                owner[array] = contig
            elif other == contig:
                problems.append((contig, "it is listed twice"))
            else:
                mine = "its array" if array == contig else f"its strand array {array!r}"
                theirs = "the array" if array == other else f"the strand array {array!r}"
                problems.append((contig, f"{mine} would be {theirs} of contig {other!r}"))
    return problems
