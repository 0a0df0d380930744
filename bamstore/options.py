"""The counting options recorded with a store: which records count (`ReadFilter`), what a
counted record adds (`CountingMode`) and how stranded libraries are split (`STRAND_MODES`,
`is_sense_strand`).

Plain values, checked on construction, shared by the command line, the Python API and the engine;
the kernel (`bamstore.engine.kernel`, `_coverage.pyx`) implements them, with the codes below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bamstore.errors import InputError
from bamstore.layout import DEFAULT_EXCLUDE_FLAGS

# Values shared with _coverage.pyx.
STRAND_MODES: dict[str, int] = {"": 0, "U": 1, "F": 2, "R": 3}

# SAM flags the strand rule reads
FLAG_PAIRED = 0x1
FLAG_REVERSE = 0x10
FLAG_READ1 = 0x40
FLAG_READ2 = 0x80


@dataclass(frozen=True)
class ReadFilter:
    """Which records count and how their CIGAR covers the reference (recorded in the store)."""

    exclude_flags: int = DEFAULT_EXCLUDE_FLAGS
    min_mapq: int = 0
    count_deletions: bool = False


CountingModeName = Literal["reads", "fragments", "cutsites"]
# Codes shared with _coverage.pyx (MODE_READS, MODE_FRAGMENTS, MODE_CUTSITES).
COUNTING_MODES: dict[str, int] = {"reads": 0, "fragments": 1, "cutsites": 2}
# Tn5 duplicates 9 bp where it inserts: +4 / -5 moves both reads' 5' ends to the middle of them
TN5_SHIFT = (4, -5)
MAX_OFFSET = 1_000_000  # largest --extend / |--shift|: bounds how far the kernel looks back
MAX_FRAGMENT_LEN = 2**31 - 1  # |TLEN| is a 32-bit field


@dataclass(frozen=True)
class CountingMode:
    """What one counted record adds to the coverage (recorded in the store).

    reads: +1 over each aligned block (M, =, X; D with count_deletions), as samtools depth.
    fragments (primary records only): a properly paired record (0x1 and 0x2) with TLEN > 0, the
      leftmost mate, adds +1 over [pos, pos + TLEN); other paired records add nothing (counted as
      improper); a single-end record adds [start, end) of its alignment (gaps included), or with
      `extend` N the N bases from its 5' end: [start, start + N) forward, [end - N, end) reverse.
    cutsites (primary records only): +1 at start + shift[0] (forward) or end - 1 + shift[1]
      (reverse); sites off the contig are dropped and counted.
    Coverage is clipped to the contig in every mode. `extend` is only set in fragments mode and
    `shift` only (and always) in cutsites mode, so equal settings compare equal.

    `min_fragment_len`/`max_fragment_len` (fragments and cutsites): only records of proper
    pairs with min <= |TLEN| <= max count (in total_reads too); single-end records, improper
    pairs and pairs outside the range are counted by why they do not. Fragments mode then adds
    the fragment from the mate with TLEN > 0, cutsites mode both mates' sites. Either bound
    alone is a filter; the lower one is then 1 (TLEN 0 is no length), recorded so.
    """

    mode: CountingModeName = "reads"
    extend: int | None = None
    shift: tuple[int, int] | None = None
    min_fragment_len: int | None = None
    max_fragment_len: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in COUNTING_MODES:
            raise InputError(
                None, f"--mode {self.mode!r} is not one of {', '.join(COUNTING_MODES)}", None
            )
        if self.extend is not None:
            if self.mode != "fragments":
                raise InputError(
                    None, "--extend applies to --mode fragments only", "add --mode fragments"
                )
            if not 1 <= self.extend <= MAX_OFFSET:
                raise InputError(
                    None,
                    f"--extend {self.extend} must be between 1 and {MAX_OFFSET:,}",
                    "give the fragment length in bases, e.g. --extend 200",
                )
        if self.mode == "cutsites" and self.shift is None:
            object.__setattr__(self, "shift", TN5_SHIFT)
        if self.shift is not None:
            if self.mode != "cutsites":
                raise InputError(
                    None, "--shift applies to --mode cutsites only", "add --mode cutsites"
                )
            shift = tuple(int(x) for x in self.shift)
            if len(shift) != 2 or any(abs(x) > MAX_OFFSET for x in shift):
                raise InputError(
                    None,
                    f"--shift {self.shift} must be two offsets P,M within ±{MAX_OFFSET:,}",
                    "use e.g. --shift 4,-5 (Tn5) or --shift 0,0 (plain 5' ends)",
                )
            object.__setattr__(self, "shift", shift)
        self._check_fragment_len()

    @property
    def filters_fragment_len(self) -> bool:
        return self.min_fragment_len is not None or self.max_fragment_len is not None

    def _check_fragment_len(self) -> None:
        low, high = self.min_fragment_len, self.max_fragment_len
        if not self.filters_fragment_len:
            return
        given = [f"--{n}-fragment-len" for n, v in (("min", low), ("max", high)) if v is not None]
        flags = " and ".join(given)
        applies, leaves = ("apply", "leave") if len(given) > 1 else ("applies", "leaves")
        if self.mode == "reads":
            raise InputError(
                None,
                f"{flags} {applies} to --mode fragments or cutsites only",
                "add --mode fragments (fragment coverage) or --mode cutsites (ATAC cut sites)",
            )
        for name, value in (("min", low), ("max", high)):
            if value is not None and not 1 <= value <= MAX_FRAGMENT_LEN:
                raise InputError(
                    None,
                    f"--{name}-fragment-len {value} must be between 1 and {MAX_FRAGMENT_LEN:,}",
                    "give the length in bases, e.g. --max-fragment-len 100",
                )
        if low is not None and high is not None and low > high:
            raise InputError(
                None,
                f"--min-fragment-len {low} is more than --max-fragment-len {high}",
                "give the shortest fragment length first, e.g. --min-fragment-len 180 "
                "--max-fragment-len 247",
            )
        if self.extend is not None:
            raise InputError(
                None,
                f"--extend applies to single-end reads, which {flags} {leaves} out",
                "drop --extend (pairs use TLEN)",
            )
        if low is None:
            object.__setattr__(self, "min_fragment_len", 1)

    @property
    def lookbehind(self) -> int:
        """How far before its record's start a record can add coverage.

        The kernels finish a window only once the next record starts this far past its end.
        A reverse read extended to N bases starts N before its end, which is at least its start;
        a cut site lies at start + P (forward) or end - 1 + M >= start - 1 + M (reverse).
        """
        if self.mode == "fragments":
            return self.extend or 0
        if self.mode == "cutsites":
            assert self.shift is not None
            return max(0, -self.shift[0], 1 - self.shift[1])
        return 0

    def kernel_args(self) -> dict[str, int]:
        shift = self.shift or (0, 0)
        return {
            "mode": COUNTING_MODES[self.mode],
            "extend": self.extend or 0,
            "shift_fwd": shift[0],
            "shift_rev": shift[1],
            "lookbehind": self.lookbehind,
            "min_fragment_len": self.min_fragment_len or 0,
            "max_fragment_len": self.max_fragment_len or 0,
        }


def is_sense_strand(flag: int, mode: int) -> bool:
    """QuantNado's strand rules (docs/building.md, "Strand"): True sends the read to `_fwd`."""
    reverse = bool(flag & FLAG_REVERSE)
    if mode == STRAND_MODES["U"]:
        return not reverse
    if flag & FLAG_PAIRED:
        read1, read2 = bool(flag & FLAG_READ1), bool(flag & FLAG_READ2)
        if mode == STRAND_MODES["R"]:
            return (read1 and reverse) or (read2 and not reverse)
        return (read1 and not reverse) or (read2 and reverse)
    if mode == STRAND_MODES["R"]:
        return reverse
    return not reverse
