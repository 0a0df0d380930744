"""The on-disk format of a bamstore store: the one place it is defined.

It is QuantNado's multi-sample `BamStore` layout (its commit 64ea0a4), so that QuantNado's
`BamStore.open` and readers work on our stores:

    NAME.zarr/                 zarr v3 group; root attributes below
      <contig>/                (n_samples, contig_length) uint32, chunks (1, chunk_len), fill 0
      <contig>_fwd, _rev       the same, present iff any sample is stranded
      metadata/                completed (bool), sparsity (f32), sample_hashes (u8 n x 16),
                               total_reads (i64)

Every root member other than `metadata` is a contig to QuantNado's readers, so nothing else may
live at the root, and a contig is written only if its name is a safe folder name that cannot
collide with another member (`contig_name_problems`). Our own settings and per-sample records
go into one root attribute, `bamstore`, typed here as `BamstoreRecord`; the whole attribute set
is `StoreAttributes`. The writer, merge, validator, builder, inspector and the Python API take
names, documents, codecs and records from this module and nowhere else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

from bamstore import __version__
from bamstore.errors import FormatError

try:  # libdeflate's CRC32: the same value as zlib's, several times faster
    from deflate import crc32 as _crc32
except ImportError:  # pragma: no cover
    _crc32 = zlib.crc32

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
FORMAT_VERSION = 2
STRAND_CODES = ("U", "F", "R")
# What each counting mode stores, recorded with the settings (`bamstore.engine.kernel.CountingMode`
# has the rules in full; the README's semantics table shows them side by side).
COVERAGE_DEFINITIONS = {
    "reads": (
        "per-base depth as samtools depth -a: M/=/X cover, D only with count_deletions, "
        "N and clips never; records with any exclude_flags or MAPQ < min_mapq skipped; "
        "0-based positions; overlapping mates count twice"
    ),
    "fragments": (
        "fragment coverage: primary records passing the read filter; a proper pair (0x2) adds "
        "1 over [pos, pos+TLEN) from its mate with TLEN > 0, other paired records nothing; a "
        "single-end read adds its alignment's span [start, end), or with extend N the N bases "
        "from its 5' end; clipped to the contig; 0-based positions"
    ),
    "cutsites": (
        "cut sites: each primary record passing the read filter adds 1 at start+P (forward) "
        "or end-1+M (reverse), shift [P, M]; sites off the contig dropped; 0-based positions"
    ),
}
COVERAGE_DEFINITION = COVERAGE_DEFINITIONS["reads"]


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


def row_folder(store: Path, array: str, row: int) -> Path:
    return store / array / CHUNK_FOLDER / str(row)


def chunk_path(store: Path, array: str, row: int, col: int) -> Path:
    return row_folder(store, array, row) / str(col)


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
    """CRC32 of a chunk file."""
    return _crc32(path.read_bytes())


def row_chunk_files(store: Path, array: str, row: int) -> dict[int, Path]:
    """Chunk files of one row of a coverage array, by column index."""
    folder = row_folder(store, array, row)
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


# ---------------------------------------------------------------------------- metadata arrays


@dataclass(frozen=True)
class MetadataArraySpec:
    """One array of the `metadata` group: (n_samples, *row_shape) of `dtype`, filled `fill`."""

    name: str
    dtype: np.dtype
    fill: Any
    row_shape: tuple[int, ...] = ()

    def shape(self, n_samples: int) -> tuple[int, ...]:
        return (n_samples, *self.row_shape)


METADATA_SPECS = (
    MetadataArraySpec(COMPLETED, np.dtype(np.bool_), False),
    MetadataArraySpec(SPARSITY, np.dtype(np.float32), "NaN"),
    MetadataArraySpec(SAMPLE_HASHES, np.dtype(np.uint8), 0, (HASH_WIDTH,)),
    MetadataArraySpec(TOTAL_READS, np.dtype(np.int64), 0),
)


@dataclass(frozen=True)
class MetadataArrays:
    """The four per-sample arrays of the `metadata` group, row i = sample i."""

    completed: np.ndarray
    sparsity: np.ndarray
    sample_hashes: np.ndarray
    total_reads: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.completed)
        for spec in METADATA_SPECS:
            values = np.asarray(getattr(self, spec.name), dtype=spec.dtype)
            if values.shape != spec.shape(n):
                raise ValueError(f"{spec.name}: shape {values.shape}, expected {spec.shape(n)}")
            object.__setattr__(self, spec.name, values)

    @classmethod
    def incomplete(cls, n_samples: int) -> MetadataArrays:
        """Rows of samples not counted yet: incomplete, sparsity NaN, zero hash and reads."""
        return cls(
            **{
                spec.name: np.full(
                    spec.shape(n_samples), np.nan if spec.fill == "NaN" else spec.fill, spec.dtype
                )
                for spec in METADATA_SPECS
            }
        )

    @classmethod
    def one_sample(cls, *, sparsity: float, sample_hash: bytes, total_reads: int) -> MetadataArrays:
        return cls(
            completed=np.array([True]),
            sparsity=np.array([sparsity]),
            sample_hashes=np.frombuffer(sample_hash, dtype=np.uint8).reshape(1, -1),
            total_reads=np.array([total_reads]),
        )

    @classmethod
    def concatenate(cls, parts: Sequence[MetadataArrays]) -> MetadataArrays:
        return cls(
            **{s.name: np.concatenate([getattr(p, s.name) for p in parts]) for s in METADATA_SPECS}
        )

    def items(self) -> Iterator[tuple[MetadataArraySpec, np.ndarray]]:
        for spec in METADATA_SPECS:
            yield spec, getattr(self, spec.name)


def average_sparsity(sparsity: Sequence[float]) -> float | None:
    """QuantNado's `average_sparsity`: the mean over samples that have one (NaN: not counted)."""
    values = [float(v) for v in sparsity if v == v]
    return sum(values) / len(values) if values else None


# ---------------------------------------------------------------------------- the `bamstore` record


def _setting(default: Any, option: str, show: Callable[[Any], str] = repr, **meta: Any) -> Any:
    """A recorded setting: its default (what records written before it existed meant), the
    option that sets it (named when parts disagree) and how its value is shown."""
    return field(default=default, metadata={"option": option, "show": show, **meta})


@dataclass(frozen=True)
class StoreSettings:
    """Everything that decides a store's values; parts are merged only if all of it agrees.

    To add a setting, add a field here with `_setting`: recording it, reading it back, the
    merge refusal that names it, `build --resume` and `inspect` all follow from this class. The
    read-filter and counting fields are those of `bamstore.engine.kernel.ReadFilter` and
    `CountingMode` (`from_counting` fails for a field of theirs that is not recorded here).
    chunk_len and compression are QuantNado's root attributes, so the `bamstore` record does not
    repeat them (`root=True`).

    `shard` says how the chunks are stored (one file per chunk, or one zarr v3 shard per sample
    row per contig: `bamstore.engine.shard`), not what they hold, so it is a storage setting
    (`storage=True`): `differences` leaves it out, and merge converts a part stored the other
    way (without decoding) instead of refusing it.
    """

    chunk_len: int = _setting(DEFAULT_CHUNK_LEN, "--chunk-len", root=True)
    compression: str = _setting("default", "--compression", root=True)
    chromosome_selection: str = _setting("primary", "--chromosomes")
    exclude_flags: int = _setting(DEFAULT_EXCLUDE_FLAGS, "--exclude-flags", lambda v: f"{v:#x}")
    min_mapq: int = _setting(0, "--min-mapq")
    count_deletions: bool = _setting(False, "--count-deletions")
    mode: str = _setting("reads", "--mode")
    extend: int | None = _setting(None, "--extend")
    shift: tuple[int, int] | None = _setting(
        None, "--shift", lambda v: "none" if v is None else f"{v[0]},{v[1]}"
    )
    coverage_definition: str = _setting(COVERAGE_DEFINITION, "bamstore version")
    shard: bool = _setting(False, "--shard", storage=True)

    def __post_init__(self) -> None:
        if self.shift is not None:  # JSON gives a list; compare as the tuple the kernel uses
            object.__setattr__(self, "shift", tuple(int(x) for x in self.shift))

    @classmethod
    def from_counting(cls, read_filter: Any, counting: Any, **settings: Any) -> StoreSettings:
        """The fields of a `kernel.ReadFilter` and a `kernel.CountingMode`, the definition of
        that mode and the other `settings`; a field of either that is not recorded here fails."""
        return cls(
            **dataclasses.asdict(read_filter),
            **dataclasses.asdict(counting),
            coverage_definition=COVERAGE_DEFINITIONS[counting.mode],
            **settings,
        )

    def to_json(self) -> dict[str, Any]:
        """The settings the `bamstore` record holds."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.metadata.get("root")
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, chunk_len: int, compression: str
    ) -> StoreSettings:
        known = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("root")}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FormatError(f"its 'bamstore' record has unknown setting(s) {', '.join(unknown)}")
        return cls(chunk_len=chunk_len, compression=compression, **data)

    def differences(self, other: StoreSettings) -> list[SettingDifference]:
        """The settings that decide values and differ, in declaration order (storage settings
        such as `shard` are left out: stores that differ only in them hold the same values)."""
        return [
            SettingDifference(f.name, f.metadata["option"], f.metadata["show"], mine, theirs)
            for f in dataclasses.fields(self)
            if not f.metadata.get("storage")
            and (mine := getattr(self, f.name)) != (theirs := getattr(other, f.name))
        ]


@dataclass(frozen=True)
class SettingDifference:
    """One setting on which two stores disagree."""

    name: str
    option: str
    show: Callable[[Any], str]
    mine: Any
    theirs: Any

    def problem(self, theirs_label: str) -> str:
        return (
            f"has {self.name} {self.show(self.mine)}, but {theirs_label} has "
            f"{self.show(self.theirs)}"
        )

    @property
    def fix(self) -> str:
        return f"extract every sample with the same {self.option}"


@dataclass(frozen=True)
class SourceFingerprint:
    """Which file a sample was counted from, as `build --resume` recognises it again."""

    path: str
    size: int
    mtime_ns: int
    header_md5: str

    def same_file(self, other: SourceFingerprint) -> bool:
        """Same content by size, mtime and header, wherever it lies now."""
        return (self.size, self.mtime_ns, self.header_md5) == (
            other.size,
            other.mtime_ns,
            other.header_md5,
        )


@dataclass(frozen=True)
class ArrayRow:
    """What one row of one coverage array must hold: the digest of its chunk files and the
    sum of its values."""

    array: str
    contig_index: int
    coverage_sum: int
    digest: str


EMPTY_ROW_DIGEST = "00000000"  # chunk_digest([]): a row without chunk files


@dataclass(frozen=True)
class SampleRecord:
    """What extraction learned about one sample; merge and validate check the store against
    it. Per-contig lists follow the store's contig order; strand lists are empty for samples
    that are not stranded."""

    strandedness: str
    source: SourceFingerprint
    total_reads: int
    contig_sums: tuple[int, ...]
    digests: tuple[str, ...]
    fwd_sums: tuple[int, ...] = ()
    rev_sums: tuple[int, ...] = ()
    fwd_digests: tuple[str, ...] = ()
    rev_digests: tuple[str, ...] = ()
    warnings: Mapping[str, int] = field(default_factory=dict)
    kernel: str = ""

    def rows(self, contigs: Sequence[str], strand_arrays: bool) -> list[ArrayRow]:
        """Every array row this sample has in a store with these contigs; a sample that is not
        stranded has empty strand rows in a store that has strand arrays."""
        out: list[ArrayRow] = []
        for i, contig in enumerate(contigs):
            out.append(ArrayRow(contig, i, self.contig_sums[i], self.digests[i]))
            if strand_arrays:
                fwd, rev = strand_array_names(contig)
                if self.strandedness:
                    out.append(ArrayRow(fwd, i, self.fwd_sums[i], self.fwd_digests[i]))
                    out.append(ArrayRow(rev, i, self.rev_sums[i], self.rev_digests[i]))
                else:
                    out.append(ArrayRow(fwd, i, 0, EMPTY_ROW_DIGEST))
                    out.append(ArrayRow(rev, i, 0, EMPTY_ROW_DIGEST))
        return out

    def in_order(self, contigs: Sequence[str], order: Sequence[str]) -> SampleRecord:
        """This record, whose per-contig lists follow `contigs`, with the lists in `order` (the
        same contigs): a part whose header listed the contigs differently joins a store."""
        if list(contigs) == list(order):
            return self
        index = {contig: i for i, contig in enumerate(contigs)}
        pick = [index[contig] for contig in order]
        lists = ("contig_sums", "digests", "fwd_sums", "rev_sums", "fwd_digests", "rev_digests")
        return dataclasses.replace(
            self,
            **{k: tuple(getattr(self, k)[i] for i in pick) for k in lists if getattr(self, k)},
        )

    def length_problems(self, n_contigs: int) -> list[str]:
        """Per-contig lists that do not list every contig."""
        keys = ["contig_sums", "digests"]
        if self.strandedness:
            keys += ["fwd_sums", "rev_sums", "fwd_digests", "rev_digests"]
        return [k for k in keys if len(getattr(self, k)) != n_contigs]

    def to_json(self) -> dict[str, Any]:
        data = {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }
        if not self.strandedness:
            for key in ("fwd_sums", "rev_sums", "fwd_digests", "rev_digests"):
                del data[key]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SampleRecord:
        values = dict(data)
        values["source"] = SourceFingerprint(**values["source"])
        for key in ("contig_sums", "digests", "fwd_sums", "rev_sums", "fwd_digests", "rev_digests"):
            values[key] = tuple(values.get(key, ()))
        values["warnings"] = dict(values.get("warnings", {}))
        return cls(**values)


@dataclass(frozen=True)
class BamstoreRecord:
    """The `bamstore` root attribute: how the store was made and what each sample holds."""

    settings: StoreSettings
    samples: Mapping[str, SampleRecord]
    version: str = __version__

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "settings": self.settings.to_json(),
            "samples": {name: record.to_json() for name, record in self.samples.items()},
        }

    @classmethod
    def from_json(cls, data: Any, *, chunk_len: int, compression: str) -> BamstoreRecord:
        """The record of a store with these root attributes; FormatError says what is wrong."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_NAME:
            raise FormatError("it has no 'bamstore' record (not made by bamstore)")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise FormatError(
                f"its 'bamstore' record is format version {version}, this bamstore reads "
                f"version {FORMAT_VERSION}"
            )
        try:
            return cls(
                settings=StoreSettings.from_json(
                    data["settings"], chunk_len=chunk_len, compression=compression
                ),
                samples={n: SampleRecord.from_json(r) for n, r in data["samples"].items()},
                version=str(data.get("version", "")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"its 'bamstore' record is malformed ({exc!r})") from None

    def with_samples(self, samples: Mapping[str, SampleRecord]) -> BamstoreRecord:
        """This record with `samples` added (replacing records of the same names)."""
        return dataclasses.replace(self, samples={**self.samples, **samples}, version=__version__)


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


def written_by_bamstore(path: Path) -> bool:
    """Whether `path` is a store that bamstore wrote (a group whose attributes carry the
    `bamstore` record): the only thing `--overwrite` may replace."""
    try:
        doc = read_json(Path(path) / ZARR_JSON)
    except (OSError, ValueError):
        return False
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    record = attrs.get(BAMSTORE_ATTR) if isinstance(attrs, dict) else None
    return (
        doc.get("node_type") == "group"
        and isinstance(record, dict)
        and record.get("format") == FORMAT_NAME
    )


# ---------------------------------------------------------------------------- root attributes

REQUIRED_ROOT_ATTRS = ("sample_names", "chromsizes", "chunk_len")  # QuantNado's open needs these
# QuantNado's root attributes, written for every store (average_sparsity once a sample is done)
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
)


@dataclass(frozen=True)
class StoreAttributes:
    """The root attributes, typed: QuantNado's (its readers open the store from them), one
    `metadata_<column>` list per metadata column, and our `bamstore` record (None in a store
    that bamstore did not make; `record_problem` then says why)."""

    contigs: tuple[tuple[str, int], ...]
    sample_names: tuple[str, ...]
    chunk_len: int
    compression: str
    stranded: Mapping[str, str]
    metadata: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    average_sparsity: float | None = None
    bamstore: BamstoreRecord | None = None
    record_problem: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "contigs", tuple((str(c), int(n)) for c, n in self.contigs))
        set_(self, "sample_names", tuple(str(s) for s in self.sample_names))
        set_(self, "stranded", {s: self.stranded.get(s) or "" for s in self.sample_names})
        set_(self, "metadata", {c: tuple(str(v) for v in vs) for c, vs in self.metadata.items()})
        n = len(self.sample_names)
        for column, values in self.metadata.items():
            if len(values) != n:
                raise ValueError(
                    f"metadata column {column!r} has {len(values)} values for {n} samples"
                )
        settings = self.bamstore.settings if self.bamstore else None
        if settings and (settings.chunk_len, settings.compression) != (
            self.chunk_len,
            self.compression,
        ):
            raise ValueError("the bamstore record's chunk_len/compression differ from the root's")

    @property
    def contig_names(self) -> list[str]:
        return [name for name, _ in self.contigs]

    @property
    def has_strand_arrays(self) -> bool:
        """Strand arrays exist iff any sample is stranded (unstranded samples: empty rows)."""
        return any(self.stranded.values())

    @property
    def settings(self) -> StoreSettings | None:
        return self.bamstore.settings if self.bamstore else None

    def to_json(self) -> dict[str, Any]:
        names = list(self.sample_names)
        attrs: dict[str, Any] = {
            "chromosomes": sorted(name for name, _ in self.contigs),
            "chromsizes": dict(self.contigs),
            "n_samples": len(names),
            "chunk_len": self.chunk_len,
            "construction_compression": self.compression,
            "structure": STRUCTURE,
            "bin_size": BIN_SIZE,
            "sample_names": names,
            "sample_names_hash": sample_names_hash(names),
            "stranded": dict(self.stranded),
        }
        if self.average_sparsity is not None:
            attrs["average_sparsity"] = self.average_sparsity
        for column, values in self.metadata.items():
            attrs[METADATA_ATTR_PREFIX + column] = list(values)
        if self.bamstore is not None:
            attrs[BAMSTORE_ATTR] = self.bamstore.to_json()
        return attrs

    def written_over(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The root attributes `raw` (as read) with these written over them: attributes of
        other tools are kept, metadata columns no longer in `metadata` are dropped."""
        kept = {k: v for k, v in raw.items() if not k.startswith(METADATA_ATTR_PREFIX)}
        return {**kept, **self.to_json()}

    @classmethod
    def from_json(cls, attrs: Mapping[str, Any]) -> StoreAttributes:
        """Read a store's root attributes; FormatError if QuantNado's readers could not open it.

        A missing or unreadable `bamstore` record is not an error here (QuantNado's own stores
        have none): `bamstore` is None and `record_problem` says why.
        """
        missing = [a for a in REQUIRED_ROOT_ATTRS if a not in attrs]
        if missing:
            raise FormatError(f"lacks root attribute(s) {', '.join(missing)}")
        names = attrs["sample_names"]
        chromsizes = attrs["chromsizes"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise FormatError("root attribute 'sample_names' is not a list of names")
        if not isinstance(chromsizes, dict):
            raise FormatError("root attribute 'chromsizes' is not a mapping of contig to length")
        chunk_len = attrs["chunk_len"]
        if not isinstance(chunk_len, int) or isinstance(chunk_len, bool) or chunk_len < 1:
            raise FormatError(
                f"root attribute 'chunk_len' is {chunk_len!r}, not a positive integer"
            )
        compression = str(attrs.get("construction_compression", "default"))
        stranded = attrs.get("stranded") or {}
        if isinstance(stranded, str):  # older QuantNado stores: one code for every sample
            stranded = dict.fromkeys(names, stranded)
        n = len(names)
        metadata = {
            key[len(METADATA_ATTR_PREFIX) :]: value
            for key, value in attrs.items()
            if key.startswith(METADATA_ATTR_PREFIX) and isinstance(value, list) and len(value) == n
        }
        record: BamstoreRecord | None = None
        problem: str | None = None
        try:
            record = BamstoreRecord.from_json(
                attrs.get(BAMSTORE_ATTR), chunk_len=chunk_len, compression=compression
            )
        except FormatError as exc:
            problem = str(exc)
        return cls(
            contigs=tuple(chromsizes.items()),
            sample_names=tuple(names),
            chunk_len=chunk_len,
            compression=compression,
            stranded=stranded,
            metadata=metadata,
            average_sparsity=attrs.get("average_sparsity"),
            bamstore=record,
            record_problem=problem,
        )


def rewrite_root_attributes(store: Path, attrs: StoreAttributes) -> None:
    """Replace the root attributes of the store at `store` with `attrs` in one atomic write of
    its zarr.json (attributes of other tools are kept)."""
    path = Path(store) / ZARR_JSON
    doc = read_json(path)
    doc["attributes"] = attrs.written_over(doc.get("attributes", {}))
    write_json(path, doc)
