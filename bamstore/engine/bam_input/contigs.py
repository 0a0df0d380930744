"""Which contigs become arrays: --chromosomes, --chromsizes, and what leaving contigs out costs.

`primary` keeps the chromosomes and organelles of an assembly by their names, whatever the
naming style: UCSC (chr1, chrX, chrM, chrI..chrXVI, chr2L), Ensembl/NCBI (1, X, MT, I, Mito,
MtDNA, Mt, Pt), TAIR (Chr1, ChrC). It drops the pieces around them: unplaced and unlocalized
scaffolds (chrUn_*, *_random, GL000009.2, KI270728.1), alternate haplotypes and fix patches
(*_alt, *_fix), decoys (hs37d5, *_decoy), viruses and spike-ins (chrEBV, NC_007605, lambda)
and HLA alleles. tests/data/assemblies/ holds the real contig lists this is tested on.

A contig whose header length is 0 cannot hold coverage: with reads on it, the input is refused
(its real length can be given with --chromsizes, which may replace a zero header length and
only a zero one); without reads it is skipped with a warning. Contigs with reads that the
selection leaves out are counted from the index and reported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from bamstore.engine.bam_input import fixes
from bamstore.engine.bam_input.header import AlignmentInput, Contigs
from bamstore.engine.bam_input.index import read_counts
from bamstore.errors import InputError

log = logging.getLogger(__name__)


def _roman(n: int) -> str:
    out = ""
    for value, numeral in ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while n >= value:
            out += numeral
            n -= value
    return out


# Nuclear chromosomes: numbered (1, 01, chr22), arms (Drosophila 2L/3R), Roman numerals (yeast
# I..XVI, worm I..V), sex chromosomes. Organelles: mitochondrion and plastid in each style.
_ROMAN = "|".join(sorted((_roman(n) for n in range(1, 31)), key=len, reverse=True))
_NUCLEAR = rf"(?:0*[1-9][0-9]{{0,2}}[LR]?|{_ROMAN}|X|Y|W|Z)"
_ORGANELLE = r"(?:M|MT|Mt|mt|Mito|mito|MtDNA|mtDNA|Pt|Pltd)"
PRIMARY_CONTIG = re.compile(rf"^(?:(?:chr|Chr|CHR)?(?:{_NUCLEAR}|{_ORGANELLE})|(?:chr|Chr)C)$")


def is_primary(name: str) -> bool:
    """A chromosome or organelle of an assembly (see the module docstring)."""
    return PRIMARY_CONTIG.match(name) is not None


def read_chromsizes(path: Path) -> Contigs:
    """A `name<TAB>length` file without header (UCSC chrom.sizes, samtools faidx .fai)."""
    if not path.is_file():
        raise InputError(path, "chromsizes file does not exist", "check --chromsizes")
    contigs: Contigs = []
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2 or not fields[1].strip().isdigit() or int(fields[1]) <= 0:
            raise InputError(
                f"{path}:{lineno}",
                f"expected 'name<TAB>length', got {line!r}",
                "use a chrom.sizes or .fai file",
            )
        name = fields[0].strip()
        if name in seen:
            raise InputError(
                f"{path}:{lineno}", f"contig {name!r} is listed twice", "remove the duplicate line"
            )
        seen.add(name)
        contigs.append((name, int(fields[1])))
    if not contigs:
        raise InputError(path, "chromsizes file lists no contigs", "use a chrom.sizes or .fai file")
    return contigs


def parse_selection(selection: str) -> str | list[str]:
    """'primary', 'all' or an explicit comma-separated list of contig names."""
    text = selection.strip()
    if text.lower() in ("primary", "all"):
        return text.lower()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(
            None,
            f"--chromosomes {selection!r} names no contigs",
            "use 'primary', 'all' or a comma-separated list such as chr1,chr2",
        )
    return names


def _zero_length_fix(name: str) -> str:
    return (
        f"give its real length with --chromsizes (a file with the line '{name}<TAB>length'; "
        "it may replace a zero header length), or leave it out with --chromosomes"
    )


def _universe(
    alignment: AlignmentInput, chromsizes: Contigs | None, chromsizes_path: Path | None
) -> Contigs:
    """The contigs a selection chooses from: the header, or --chromsizes checked against it."""
    if chromsizes is None:
        return alignment.contigs
    header = dict(alignment.contigs)
    for name, length in chromsizes:
        if name not in header:
            raise InputError(
                alignment.path,
                f"contig {name!r} from {chromsizes_path} is not in the BAM header",
                "use the chromsizes of the genome the BAM was "
                "aligned to, or remove the contig from the file",
            )
        if header[name] != length and header[name] != 0:
            raise InputError(
                alignment.path,
                f"contig {name!r} is {header[name]} bp in the BAM "
                f"header but {length} bp in {chromsizes_path}",
                "use the chromsizes of the genome the BAM was aligned to",
            )
    return chromsizes


def select_contigs(
    alignment: AlignmentInput,
    selection: str = "primary",
    chromsizes: Contigs | None = None,
    chromsizes_path: Path | None = None,
) -> Contigs:
    """The contigs to store, in chromsizes order if given, else header order.

    `primary`: chromosomes and organelles (`is_primary`); `all`: every contig; otherwise the
    listed names, which must exist. Zero-length contigs chosen by `primary`/`all` are left out
    here (`account_for_left_out` checks they hold no reads); listed by name, they are refused.
    """
    universe = _universe(alignment, chromsizes, chromsizes_path)
    wanted = parse_selection(selection)
    if wanted == "all":
        chosen = list(universe)
    elif wanted == "primary":
        chosen = [(n, length) for n, length in universe if is_primary(n)]
    else:
        if len(set(wanted)) != len(wanted):
            raise InputError(None, "--chromosomes lists a contig twice", "list each contig once")
        available = dict(universe)
        missing = [n for n in wanted if n not in available]
        if missing:
            raise InputError(
                alignment.path,
                f"contig(s) {', '.join(missing)} from --chromosomes "
                "are not in " + ("the chromsizes file" if chromsizes else "the BAM header"),
                "check the names (e.g. chr1 vs 1) with: " + fixes.idxstats(alignment.path),
            )
        chosen = [(n, available[n]) for n in wanted]
        empty = [n for n, length in chosen if length == 0]
        if empty:
            raise InputError(
                alignment.path,
                f"contig {empty[0]!r} has length 0 in the BAM header (@SQ LN:0)",
                _zero_length_fix(empty[0]),
            )
    kept = [(n, length) for n, length in chosen if length > 0]
    if not kept:
        if chosen:
            raise InputError(
                alignment.path,
                f"--chromosomes {selection} keeps no contig: every contig it selects has "
                f"length 0 in the BAM header ({', '.join(n for n, _ in chosen[:5])})",
                _zero_length_fix(chosen[0][0]),
            )
        names = ", ".join(n for n, _ in universe[:5]) + (", ..." if len(universe) > 5 else "")
        raise InputError(
            alignment.path,
            f"--chromosomes {selection} keeps no contig (the header has {names})",
            "use --chromosomes all or list the contigs to keep",
        )
    return kept


def account_for_left_out(
    alignment: AlignmentInput,
    kept: Sequence[tuple[str, int]],
    selection: str,
    index: Path,
    *,
    from_chromsizes: bool = False,
) -> None:
    """What the selection leaves out, from the index's per-contig read counts."""
    report_left_out(
        alignment, kept, selection, read_counts(alignment, index), from_chromsizes=from_chromsizes
    )


def report_left_out(
    alignment: AlignmentInput,
    kept: Sequence[tuple[str, int]],
    selection: str,
    counts: Mapping[str, int | None],
    *,
    from_chromsizes: bool = False,
) -> None:
    """What the selection leaves out, given the contigs that hold mapped reads and how many
    (None: not known), from an index or counted while a stream was read.

    A zero-length contig the selection chose but could not keep: refused if reads are placed
    on it, otherwise skipped with a warning (with --chromsizes the selection chooses from
    that file, whose lengths are never 0). Other contigs with reads that are left out: one
    warning with how many contigs and reads.
    """
    kept_names = {n for n, _ in kept}
    wanted = parse_selection(selection)
    for name, length in alignment.contigs:
        if length != 0 or name in kept_names or from_chromsizes:
            continue
        if wanted == "all" or (wanted == "primary" and is_primary(name)):
            if name in counts:
                reads = counts[name]
                held = (
                    "reads are"
                    if reads is None
                    else ("1 read is" if reads == 1 else f"{reads} reads are")
                )
                raise InputError(
                    alignment.path,
                    f"contig {name!r} has length 0 in the BAM header (@SQ LN:0) but {held} "
                    "placed on it",
                    _zero_length_fix(name),
                )
            log.warning(
                "%s: contig %s has length 0 in the BAM header and no reads; skipped",
                alignment.path,
                name,
            )
    dropped = {n: c for n, c in counts.items() if n not in kept_names}
    if not dropped:
        return
    known = [c for c in dropped.values() if c is not None]
    reads = f"{sum(known)} mapped reads" if len(known) == len(dropped) else "mapped reads"
    names = ", ".join(list(dropped)[:3]) + (", ..." if len(dropped) > 3 else "")
    log.warning(
        "%s: --chromosomes %s leaves out %d contig(s) holding %s (%s); their coverage is not "
        "stored (use --chromosomes all to keep every contig)",
        alignment.path,
        selection,
        len(dropped),
        reads,
        names,
    )


def check_same_contigs(
    reference: Sequence[tuple[str, int]],
    other: Sequence[tuple[str, int]],
    subject: str,
    reference_label: str,
) -> None:
    """Refuse a sample whose kept contigs or lengths differ from the others' (the order may
    differ: the store follows the reference's)."""
    ref = dict(reference)
    oth = dict(other)
    for name, length in reference:
        if name not in oth:
            raise InputError(
                subject,
                f"has no contig {name!r}, which {reference_label} has",
                "build all samples against the same genome",
            )
        if oth[name] != length:
            raise InputError(
                subject,
                f"contig {name!r} is {oth[name]} bp here but {length} bp in {reference_label}",
                "build all samples against the same genome",
            )
    extra = [n for n in oth if n not in ref]
    if extra:
        raise InputError(
            subject,
            f"has contig(s) {', '.join(extra[:5])} that {reference_label} lacks",
            "build all samples with the same --chromosomes/--chromsizes",
        )
