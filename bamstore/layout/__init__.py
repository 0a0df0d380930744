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
names, documents, codecs and records from this package and nowhere else:

    names   constants, array names and paths, which contig names can be arrays
    model   the records (metadata arrays, settings, sample records, root attributes)
    codec   compression profiles, chunk encoding, chunk digests
    io      zarr.json documents, reading and rewriting them, a row's chunk files

Every public name of those modules is importable from here (`layout.X`).
"""

from bamstore.errors import FormatError
from bamstore.layout.codec import (
    COMPRESSION_ALIASES,
    COMPRESSION_PROFILES,
    ChunkEncoder,
    CompressionProfile,
    chunk_digest,
    compression_profile,
    file_crc32,
    same_chunk_codecs,
)
from bamstore.layout.io import (
    coverage_array_document,
    group_document,
    read_json,
    rewrite_root_attributes,
    row_chunk_files,
    write_json,
    written_by_bamstore,
)
from bamstore.layout.model import (
    COVERAGE_DEFINITION,
    COVERAGE_DEFINITIONS,
    EMPTY_ROW_DIGEST,
    METADATA_SPECS,
    REQUIRED_ROOT_ATTRS,
    ROOT_ATTRS,
    ArrayRow,
    BamstoreRecord,
    MetadataArrays,
    MetadataArraySpec,
    SampleRecord,
    SettingDifference,
    SourceFingerprint,
    StoreAttributes,
    StoreSettings,
    average_sparsity,
    columns_text,
    parse_columns,
    shown_value,
)
from bamstore.layout.names import (
    BAMSTORE_ATTR,
    BIN_SIZE,
    BLOSC_BLOCK_BYTES,
    CHUNK_FOLDER,
    COMPLETED,
    COVERAGE_DTYPE,
    DEFAULT_CHUNK_LEN,
    DEFAULT_EXCLUDE_FLAGS,
    FORMAT_NAME,
    FORMAT_VERSION,
    FWD_SUFFIX,
    HASH_PREFIX_BYTES,
    HASH_WIDTH,
    MAX_CONTIG_NAME_BYTES,
    METADATA_ATTR_PREFIX,
    METADATA_GROUP,
    READABLE_FORMAT_VERSIONS,
    RESERVED_ROOT_NAMES,
    REV_SUFFIX,
    SAMPLE_HASHES,
    SHARD_BY_DEFAULT,
    SPARSITY,
    STORE_SUFFIX,
    STRAND_CODES,
    STRUCTURE,
    TOTAL_READS,
    ZARR_JSON,
    chunk_path,
    contig_name_problem,
    contig_name_problems,
    coverage_array_names,
    n_chunks,
    row_folder,
    sample_names_hash,
    sample_names_hash_problem,
    strand_array_names,
)

__all__ = [
    "BAMSTORE_ATTR",
    "BIN_SIZE",
    "BLOSC_BLOCK_BYTES",
    "CHUNK_FOLDER",
    "COMPLETED",
    "COMPRESSION_ALIASES",
    "COMPRESSION_PROFILES",
    "COVERAGE_DEFINITION",
    "COVERAGE_DEFINITIONS",
    "COVERAGE_DTYPE",
    "DEFAULT_CHUNK_LEN",
    "DEFAULT_EXCLUDE_FLAGS",
    "EMPTY_ROW_DIGEST",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FWD_SUFFIX",
    "HASH_PREFIX_BYTES",
    "HASH_WIDTH",
    "MAX_CONTIG_NAME_BYTES",
    "METADATA_ATTR_PREFIX",
    "METADATA_GROUP",
    "METADATA_SPECS",
    "READABLE_FORMAT_VERSIONS",
    "REQUIRED_ROOT_ATTRS",
    "RESERVED_ROOT_NAMES",
    "REV_SUFFIX",
    "ROOT_ATTRS",
    "SAMPLE_HASHES",
    "SHARD_BY_DEFAULT",
    "SPARSITY",
    "STORE_SUFFIX",
    "STRAND_CODES",
    "STRUCTURE",
    "TOTAL_READS",
    "ZARR_JSON",
    "ArrayRow",
    "BamstoreRecord",
    "ChunkEncoder",
    "CompressionProfile",
    "FormatError",
    "MetadataArraySpec",
    "MetadataArrays",
    "SampleRecord",
    "SettingDifference",
    "SourceFingerprint",
    "StoreAttributes",
    "StoreSettings",
    "average_sparsity",
    "chunk_digest",
    "chunk_path",
    "columns_text",
    "compression_profile",
    "contig_name_problem",
    "contig_name_problems",
    "coverage_array_document",
    "coverage_array_names",
    "file_crc32",
    "group_document",
    "n_chunks",
    "parse_columns",
    "read_json",
    "rewrite_root_attributes",
    "row_chunk_files",
    "row_folder",
    "same_chunk_codecs",
    "sample_names_hash",
    "sample_names_hash_problem",
    "shown_value",
    "strand_array_names",
    "write_json",
    "written_by_bamstore",
]
