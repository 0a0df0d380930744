"""Everything about an input alignment file before coverage is counted, one question a module.

- `sniff`: what the file is, from its first bytes (never its name), so a stream can be peeked;
- `header`: contigs and sort order, read as htslib reads them;
- `cram`: whether a CRAM needs its reference, and never fetching one from a server;
- `index`: the index found, checked against the file, or built in a scratch folder;
- `contigs`: which contigs are stored, and what leaving contigs out costs;
- `fixes`: the commands printed after "fix:", each naming the real file.

Each problem becomes an `InputError` naming the file, the problem and the command that fixes it.
"""

from __future__ import annotations

from bamstore.engine.bam_input.contigs import (
    PRIMARY_CONTIG,
    account_for_left_out,
    check_same_contigs,
    is_primary,
    parse_selection,
    read_chromsizes,
    report_left_out,
    select_contigs,
)
from bamstore.engine.bam_input.header import (
    AlignmentInput,
    Contigs,
    fingerprint,
    open_alignment,
    prefix_md5,
    quiet_htslib,
)
from bamstore.engine.bam_input.index import BAI_MAX_LENGTH, build_index, find_index, usable_index
from bamstore.engine.bam_input.sniff import PEEK_BYTES, AlignmentFormat, detect_format, sniff_file

__all__ = [
    "BAI_MAX_LENGTH",
    "PEEK_BYTES",
    "PRIMARY_CONTIG",
    "AlignmentFormat",
    "AlignmentInput",
    "Contigs",
    "account_for_left_out",
    "build_index",
    "check_same_contigs",
    "detect_format",
    "find_index",
    "fingerprint",
    "is_primary",
    "open_alignment",
    "parse_selection",
    "prefix_md5",
    "quiet_htslib",
    "read_chromsizes",
    "report_left_out",
    "select_contigs",
    "sniff_file",
    "usable_index",
]
