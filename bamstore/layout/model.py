"""The records of a store, typed: the per-sample `metadata` arrays, the settings that decide its
values, the `bamstore` root attribute (`BamstoreRecord`) and the whole root attribute set
(`StoreAttributes`), each with its JSON form.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bamstore import __version__
from bamstore.errors import FormatError
from bamstore.layout.names import (
    BAMSTORE_ATTR,
    BIN_SIZE,
    COMPLETED,
    DEFAULT_CHUNK_LEN,
    DEFAULT_EXCLUDE_FLAGS,
    FORMAT_NAME,
    FORMAT_VERSION,
    FWD_SUFFIX,
    HASH_WIDTH,
    METADATA_ATTR_PREFIX,
    READABLE_FORMAT_VERSIONS,
    REV_SUFFIX,
    SAMPLE_HASHES,
    SPARSITY,
    STRUCTURE,
    TOTAL_READS,
    sample_names_hash,
    strand_array_names,
)

# What each counting mode stores, recorded with the settings (`bamstore.options.CountingMode`
# has the rules in full; docs/building.md's counting-mode table shows them side by side).
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


def shown_value(value: Any) -> str:
    """A recorded value in a message: `none` for no value (as the flags spell it), else repr."""
    return "none" if value is None else repr(value)


def _setting(default: Any, show: Callable[[Any], str] = shown_value, **meta: Any) -> Any:
    """A recorded setting: its default (what records written before it existed meant) and how
    its value is shown (when parts disagree on it). `follows` names the setting it is derived
    from: a difference in that one already says why they differ."""
    return field(default=default, metadata={"show": show, **meta})


@dataclass(frozen=True)
class StoreSettings:
    """Everything that decides a store's values; parts are merged only if all of it agrees.

    To add a setting, add a field here with `_setting`: recording it, reading it back, the
    merge refusal that names it, `build --resume` and `inspect` all follow from this class. The
    model knows settings by name; the command line names the flag that sets each one
    (`bamstore.cli.common.SETTING_OPTIONS`, which a test holds to this class). The
    read-filter and counting fields are those of `bamstore.options.ReadFilter` and
    `CountingMode` (`from_counting` fails for a field of theirs that is not recorded here).
    chunk_len and compression are QuantNado's root attributes, so the `bamstore` record does not
    repeat them (`root=True`).

    `shard` says how the chunks are stored (one file per chunk, or one zarr v3 shard per sample
    row per contig: `bamstore.engine.shard`), not what they hold, so it is a storage setting
    (`storage=True`): `differences` leaves it out, and merge converts a part stored the other
    way (without decoding) instead of refusing it.
    """

    chunk_len: int = _setting(DEFAULT_CHUNK_LEN, root=True)
    compression: str = _setting("default", root=True)
    chromosome_selection: str = _setting("primary")
    exclude_flags: int = _setting(DEFAULT_EXCLUDE_FLAGS, lambda v: f"{v:#x}")
    min_mapq: int = _setting(0)
    count_deletions: bool = _setting(False)
    mode: str = _setting("reads")
    extend: int | None = _setting(None)
    shift: tuple[int, int] | None = _setting(
        None, lambda v: "none" if v is None else f"{v[0]},{v[1]}"
    )
    min_fragment_len: int | None = _setting(None, lambda v: "none" if v is None else str(v))
    max_fragment_len: int | None = _setting(None, lambda v: "none" if v is None else str(v))
    coverage_definition: str = _setting(COVERAGE_DEFINITION, follows="mode")
    shard: bool = _setting(False, storage=True)

    def __post_init__(self) -> None:
        if self.shift is not None:  # JSON gives a list; compare as the tuple the kernel uses
            object.__setattr__(self, "shift", tuple(int(x) for x in self.shift))

    @classmethod
    def from_counting(cls, read_filter: Any, counting: Any, **settings: Any) -> StoreSettings:
        """The fields of a `options.ReadFilter` and an `options.CountingMode`, the definition of
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
        such as `shard` are left out: stores that differ only in them hold the same values; so
        is a setting derived from another that differs, e.g. the mode's coverage definition)."""
        differ = {
            f.name
            for f in dataclasses.fields(self)
            if not f.metadata.get("storage") and getattr(self, f.name) != getattr(other, f.name)
        }
        return [
            SettingDifference(
                f.name,
                f.metadata["show"](getattr(self, f.name)),
                f.metadata["show"](getattr(other, f.name)),
            )
            for f in dataclasses.fields(self)
            if f.name in differ and f.metadata.get("follows") not in differ
        ]


@dataclass(frozen=True)
class SettingDifference:
    """One setting on which two stores disagree: its name and both values, as shown."""

    name: str
    mine: str
    theirs: str


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


def columns_text(columns: Iterable[int]) -> str:
    """Chunk columns as ranges, `0-57,60,62-63` ("" for none): how records list a row's chunks
    (one range for a row covered end to end, a few bytes for any real one)."""
    parts: list[str] = []
    run: list[int] = []
    for col in sorted(set(columns)):
        if run and col == run[-1] + 1:
            run[-1] = col
        else:
            if run:
                parts.append(str(run[0]) if run[0] == run[1] else f"{run[0]}-{run[1]}")
            run = [col, col]
    if run:
        parts.append(str(run[0]) if run[0] == run[1] else f"{run[0]}-{run[1]}")
    return ",".join(parts)


def parse_columns(text: str) -> frozenset[int]:
    """The columns of `columns_text`; ValueError for anything else."""
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if lo < 0 or hi < lo:
            raise ValueError(f"bad chunk column range {part!r}")
        out.update(range(lo, hi + 1))
    return frozenset(out)


@dataclass(frozen=True)
class ArrayRow:
    """What one row of one coverage array must hold: the digest of its chunk files, the sum of
    its values and (records since format 3) the columns of its chunks (`columns_text`)."""

    array: str
    contig_index: int
    coverage_sum: int
    digest: str
    columns: str | None = None


EMPTY_ROW_DIGEST = "00000000"  # chunk_digest([]): a row without chunk files


@dataclass(frozen=True)
class SampleRecord:
    """What extraction learned about one sample; merge and validate check the store against
    it, and readers know from it which chunk files must exist. Per-contig lists follow the
    store's contig order; strand lists are empty for samples that are not stranded; the
    `columns` lists (format 3: each row's chunk columns as `columns_text`) are empty in records
    written before them (which chunks exist is then unknown). `scale_factor` (a spike-in factor,
    for example; None: none) is what `--normalise scale` multiplies the sample's coverage by:
    given at extraction or set later, it changes no stored value."""

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
    scale_factor: float | None = None
    columns: tuple[str, ...] = ()
    fwd_columns: tuple[str, ...] = ()
    rev_columns: tuple[str, ...] = ()

    PER_CONTIG = (
        "contig_sums",
        "digests",
        "fwd_sums",
        "rev_sums",
        "fwd_digests",
        "rev_digests",
        "columns",
        "fwd_columns",
        "rev_columns",
    )
    STRAND_LISTS = ("fwd_sums", "rev_sums", "fwd_digests", "rev_digests")

    def _columns(self, key: str, i: int) -> str | None:
        values = getattr(self, key)
        return values[i] if values else None

    def rows(self, contigs: Sequence[str], strand_arrays: bool) -> list[ArrayRow]:
        """Every array row this sample has in a store with these contigs; a sample that is not
        stranded has empty strand rows in a store that has strand arrays."""
        out: list[ArrayRow] = []
        for i, contig in enumerate(contigs):
            total = self._columns("columns", i)
            out.append(ArrayRow(contig, i, self.contig_sums[i], self.digests[i], total))
            if strand_arrays:
                fwd, rev = strand_array_names(contig)
                if self.strandedness:
                    out.append(
                        ArrayRow(
                            fwd,
                            i,
                            self.fwd_sums[i],
                            self.fwd_digests[i],
                            self._columns("fwd_columns", i),
                        )
                    )
                    out.append(
                        ArrayRow(
                            rev,
                            i,
                            self.rev_sums[i],
                            self.rev_digests[i],
                            self._columns("rev_columns", i),
                        )
                    )
                else:
                    out.append(ArrayRow(fwd, i, 0, EMPTY_ROW_DIGEST, ""))
                    out.append(ArrayRow(rev, i, 0, EMPTY_ROW_DIGEST, ""))
        return out

    def with_columns(
        self, contigs: Sequence[str], placed: Mapping[str, Iterable[int]]
    ) -> SampleRecord:
        """This record listing the chunk columns of each of its rows as `placed` ({array:
        columns}, every array of the sample's rows): what merge found in the files it placed
        and checked against the digests."""

        def listed(suffix: str) -> tuple[str, ...]:
            return tuple(columns_text(placed[contig + suffix]) for contig in contigs)

        stranded = bool(self.strandedness)
        return dataclasses.replace(
            self,
            columns=listed(""),
            fwd_columns=listed(FWD_SUFFIX) if stranded else (),
            rev_columns=listed(REV_SUFFIX) if stranded else (),
        )

    def in_order(self, contigs: Sequence[str], order: Sequence[str]) -> SampleRecord:
        """This record, whose per-contig lists follow `contigs`, with the lists in `order` (the
        same contigs): a part whose header listed the contigs differently joins a store."""
        if list(contigs) == list(order):
            return self
        index = {contig: i for i, contig in enumerate(contigs)}
        pick = [index[contig] for contig in order]
        return dataclasses.replace(
            self,
            **{
                k: tuple(getattr(self, k)[i] for i in pick)
                for k in self.PER_CONTIG
                if getattr(self, k)
            },
        )

    def length_problems(self, n_contigs: int) -> list[str]:
        """Per-contig lists that do not list every contig (the column lists may be absent)."""
        keys = ["contig_sums", "digests"]
        if self.strandedness:
            keys += list(self.STRAND_LISTS)
        keys += [k for k in ("columns", "fwd_columns", "rev_columns") if getattr(self, k)]
        if self.strandedness and bool(self.columns) != bool(self.fwd_columns):
            keys += ["fwd_columns", "rev_columns"]
        problems = [k for k in keys if len(getattr(self, k)) != n_contigs]
        for key in ("columns", "fwd_columns", "rev_columns"):
            try:
                for text in getattr(self, key):
                    parse_columns(text)
            except (TypeError, ValueError, AttributeError):
                problems.append(key)
        return problems

    def to_json(self) -> dict[str, Any]:
        data = {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }
        if not self.strandedness:
            for key in (*self.STRAND_LISTS, "fwd_columns", "rev_columns"):
                del data[key]
        if not self.columns:
            for key in ("columns", "fwd_columns", "rev_columns"):
                data.pop(key, None)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SampleRecord:
        values = dict(data)
        values["source"] = SourceFingerprint(**values["source"])
        for key in cls.PER_CONTIG:
            values[key] = tuple(values.get(key, ()))
        values["warnings"] = dict(values.get("warnings", {}))
        factor = values.get("scale_factor")
        if factor is not None and (
            isinstance(factor, bool)
            or not isinstance(factor, int | float)
            or not math.isfinite(factor)
            or factor <= 0
        ):
            raise FormatError(
                f"its 'bamstore' record has scale factor {factor!r}, not a positive number"
            )
        return cls(**values)


@dataclass(frozen=True)
class BamstoreRecord:
    """The `bamstore` root attribute: how the store was made and what each sample holds."""

    settings: StoreSettings
    samples: Mapping[str, SampleRecord]
    version: str = __version__
    format_version: int = FORMAT_VERSION  # as read (written back as FORMAT_VERSION)

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
        if version not in READABLE_FORMAT_VERSIONS:
            readable = " and ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
            raise FormatError(
                f"its 'bamstore' record is format version {version}, this bamstore reads "
                f"versions {readable}"
            )
        try:
            return cls(
                settings=StoreSettings.from_json(
                    data["settings"], chunk_len=chunk_len, compression=compression
                ),
                samples={n: SampleRecord.from_json(r) for n, r in data["samples"].items()},
                version=str(data.get("version", "")),
                format_version=int(version),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"its 'bamstore' record is malformed ({exc!r})") from None

    def with_samples(self, samples: Mapping[str, SampleRecord]) -> BamstoreRecord:
        """This record with `samples` added (replacing records of the same names), as this
        bamstore writes it."""
        return dataclasses.replace(
            self,
            samples={**self.samples, **samples},
            version=__version__,
            format_version=FORMAT_VERSION,
        )


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
