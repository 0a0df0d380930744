"""Normalisation: what each sample's values are scaled by (`--normalise`), a `Scaling`.

  - `cpm`: value / (library size / 1e6) (`metadata/total_reads`, or the API's `library_sizes`);
  - `rpkm`: the same; the callers make it per kb (x 1000 per position, or / the kb a sum
    covers);
  - `bpm`: value / (T / 1e6) = value x 1e6 / T: over the whole genome a bpm track sums to 1e6
    (deeptools' BPM is 1e6 / mapped reads, its CPM: tests/test_deeptools_compat.py);
  - `rpgc`: value / (T / G) = value x G / T with the effective genome size G (required): 1x mean
    depth over the effective genome, deeptools' RPGC when T = reads x fragment length;
  - `scale`: value x f, the sample's stored scale factor f (a sample without one is an error
    naming it).

T is the sample's total coverage: the sum of depth over every stored position of its total
array, all contigs of the store, without the blacklisted positions when a blacklist is given.
It comes from the per-contig sums in the sample's record (no pass over the data); the
blacklisted part is one reduction over the merged blacklist (`Reducer`). A sample without a
record (a store QuantNado wrote) has its T computed by one reduction over its whole total
arrays, said in an info line. The same T serves the strand arrays, so fwd + rev = total holds
after normalising.

A factor that would divide by zero (a library size or T of 0) is refused (`zero="refuse"`,
what the commands and the queries do: a track or table of NaN for a whole sample is a mistake,
and a bigWig holding NaN crashes readers), or NaN (`zero="nan"`, what `extract_region` and the
array readers return, as QuantNado does).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bamstore.errors import QueryError, UnanswerableError
from bamstore.query.blacklist import Blacklist
from bamstore.query.reduce import Intervals, Reducer
from bamstore.query.source import CoverageSource, check_normalise

log = logging.getLogger(__name__)

DIVIDES = {"cpm": "library size", "rpkm": "library size", "bpm": "total coverage"}
DIVIDES["rpgc"] = "total coverage"


def check_genome_size(method: str | None, genome_size: float | None) -> float | None:
    """G for rpgc (required there, a positive number), refused with any other method."""
    if method == "rpgc":
        if genome_size is None:
            raise QueryError(
                None,
                "--normalise rpgc needs --effective-genome-size",
                "give the mappable genome size in bases (e.g. 2913022398 for GRCh38)",
            )
        if isinstance(genome_size, bool) or not float(genome_size) > 0:
            raise QueryError(
                None,
                f"--effective-genome-size {genome_size} is not a positive number",
                "give the mappable genome size in bases",
            )
        return float(genome_size)
    if genome_size is not None:
        raise QueryError(
            None,
            "--effective-genome-size applies to --normalise rpgc only",
            "leave it out, or use --normalise rpgc",
        )
    return None


def total_coverage(
    source: CoverageSource,
    rows: Sequence[int],
    blacklist: Blacklist | None = None,
    threads: int = 1,
) -> np.ndarray:
    """T of each row (float64): the sum of its total arrays over every contig, less the
    blacklisted positions."""
    contigs = list(source.chromsizes)
    record = source.attrs.bamstore
    recorded = record.samples if record is not None else {}
    totals = np.zeros(len(rows), dtype=np.float64)
    unrecorded: list[int] = []
    for i, row in enumerate(rows):
        sample = recorded.get(source.sample_names[row])
        if sample is None or len(sample.contig_sums) != len(contigs):
            unrecorded.append(i)
        else:
            totals[i] = float(sum(sample.contig_sums))
    if unrecorded:
        chosen = [rows[i] for i in unrecorded]
        log.info(
            "%s: summing the coverage of %d sample(s) over their whole arrays (the store has "
            "no per-contig sums for them)",
            source.label,
            len(chosen),
        )
        lengths = np.array([source.chromsizes[c] for c in contigs], dtype=np.int64)
        whole = Intervals(np.arange(len(contigs), dtype=np.int64), np.zeros_like(lengths), lengths)
        sums = Reducer(source, chosen, threads).reduce(contigs, whole, "sum").sum(axis=0)
        totals[unrecorded] = sums
    if blacklist is not None:
        totals -= blacklist.removed_depth(Reducer(source, list(rows), threads), contigs)
    return totals


@dataclass(frozen=True)
class Scaling:
    """Per row: value x `times` / `over` (float64; `over` NaN where it would be 0)."""

    times: np.ndarray
    over: np.ndarray

    def apply(self, values: np.ndarray, axis: int = 0) -> np.ndarray:
        """`values` scaled, rows along `axis` (float64)."""
        shape = [1] * values.ndim
        shape[axis] = -1
        return values.astype(np.float64) * self.times.reshape(shape) / self.over.reshape(shape)

    def at(self, i: int) -> tuple[float, float]:
        """(times, over) of the i-th row."""
        return float(self.times[i]), float(self.over[i])


def scaling(
    source: CoverageSource,
    rows: Sequence[int],
    normalise: str | None,
    *,
    genome_size: float | None = None,
    blacklist: Blacklist | None = None,
    library_sizes: Mapping[str, float] | None = None,
    zero: str = "refuse",
    threads: int = 1,
) -> Scaling | None:
    """How each row's values are scaled, None without normalisation.

    `zero`: "refuse" (UnanswerableError naming the samples) or "nan" for a divisor of 0.
    """
    method = check_normalise(normalise)
    genome = check_genome_size(method, genome_size)
    if method is None:
        return None
    names = [source.sample_names[r] for r in rows]
    if library_sizes is not None and method not in ("cpm", "rpkm"):
        raise QueryError(None, f"library_sizes apply to cpm and rpkm, not {method}")
    if method == "scale":
        factors = _scale_factors(source, rows)
        return Scaling(factors, np.ones_like(factors))
    if method in ("cpm", "rpkm"):
        divisor = _library_sizes(source, rows, library_sizes) / 1e6
    else:
        total = total_coverage(source, rows, blacklist, threads)
        divisor = total / (1e6 if method == "bpm" else float(genome or 0.0))
    empty = ~(divisor > 0)
    if empty.any() and zero == "refuse":
        chosen = list(dict.fromkeys(n for n, e in zip(names, empty.tolist(), strict=True) if e))
        where = (
            " outside the blacklist" if blacklist is not None and method in ("bpm", "rpgc") else ""
        )
        raise UnanswerableError(
            source.label,
            f"sample(s) {', '.join(chosen)} have {DIVIDES[method]} 0{where}, so --normalise "
            f"{method} would divide by zero",
            "leave them out with --samples, or use --normalise none",
        )
    return Scaling(np.ones_like(divisor), np.where(empty, np.nan, divisor))


def _library_sizes(
    source: CoverageSource, rows: Sequence[int], library_sizes: Mapping[str, float] | None
) -> np.ndarray:
    if library_sizes is not None:
        sizes = {str(name): float(size) for name, size in dict(library_sizes).items()}
        chosen = [source.sample_names[r] for r in rows]
        missing = [n for n in chosen if n not in sizes]
        if missing:
            raise QueryError(None, f"Library sizes missing for samples: {missing}")
        return np.array([sizes[n] for n in chosen], dtype=np.float64)
    if source.total_reads is None:
        raise UnanswerableError(
            source.label,
            "has no metadata/total_reads, so it cannot be normalised by library size",
            "use --normalise none, bpm or rpgc (in Python, pass library_sizes)",
        )
    return source.total_reads[np.asarray(rows, dtype=np.int64)]


def _scale_factors(source: CoverageSource, rows: Sequence[int]) -> np.ndarray:
    record = source.attrs.bamstore
    recorded = record.samples if record is not None else {}
    values: list[float] = []
    unset: list[str] = []
    for row in rows:
        name = source.sample_names[row]
        sample = recorded.get(name)
        factor = None if sample is None else sample.scale_factor
        if factor is None:
            unset.append(name)
        else:
            values.append(float(factor))
    if unset:
        raise UnanswerableError(
            source.label,
            f"sample(s) {', '.join(dict.fromkeys(unset))} have no scale factor, so --normalise "
            "scale cannot be applied",
            f"set them with `bamstore scale-factors {source.label} --set FILE.tsv`, or choose "
            "other samples",
        )
    return np.array(values, dtype=np.float64)


def apply(values: np.ndarray, how: Scaling | None, method: str | None) -> np.ndarray:
    """Per-position `values` of the rows (rows on the first axis) scaled (float64; RPKM, CPM
    per 0.001 kb, also x 1000); unchanged without normalisation."""
    if how is None:
        return values
    out = how.apply(values, axis=0)
    return out / 0.001 if method == "rpkm" else out  # 1 bp = 0.001 kb (QuantNado's RPKM)
