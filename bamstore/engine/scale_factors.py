"""Per-sample scale factors (a spike-in factor, for example), kept in each sample's record.

A factor is given at extraction (`extract --scale-factor`, a samplesheet's `scale_factor`
column) or set later, here. It changes no stored value (`--normalise scale` multiplies by it),
so setting one rewrites no chunk, and merge keeps it with the sample's record.

Guarantee of `set_scale_factors`: every listed sample is checked first, then the factors are
replaced in one atomic rewrite of the root zarr.json, under the store's output lock (a merge
replacing the same store cannot interleave); on any error nothing changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bamstore import layout
from bamstore.engine.publish import output_lock
from bamstore.engine.samplesheet import SCALE_FACTOR_FIX, parse_scale_factor, scale_factor_problem
from bamstore.engine.store import read_store_info
from bamstore.errors import InputError, InputErrors

FILE_FORMAT = "one line per sample, sample<TAB>factor (NA or empty: no factor)"


def scale_factors(attrs: layout.StoreAttributes) -> dict[str, float | None]:
    """Every sample's factor in store order; None where unset (and in stores that bamstore
    did not make, or samples not counted yet: they have no record to hold one)."""
    records = attrs.bamstore.samples if attrs.bamstore else {}
    return {
        name: records[name].scale_factor if name in records else None for name in attrs.sample_names
    }


@dataclass(frozen=True)
class FactorLine:
    """One line of a scale-factors file: the sample, its factor (None: none) and where it is."""

    sample: str
    factor: float | None
    where: str


def read_factor_file(path: Path) -> tuple[list[FactorLine], list[InputError]]:
    """The `sample<TAB>factor` lines of `path` (blank lines and # comments skipped), and the
    problems of the others, each naming its line; a file that cannot be read is raised."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise InputError(path, f"scale-factors file {what}", f"give a file of {FILE_FORMAT}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "scale-factors file is not UTF-8 text", FILE_FORMAT) from None
    lines: list[FactorLine] = []
    problems: list[InputError] = []
    seen: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        fields = line.split("\t")
        if len(fields) != 2:
            problems.append(
                InputError(where, f"has {len(fields)} tab-separated field(s), not 2", FILE_FORMAT)
            )
            continue
        sample = fields[0].strip()
        factor, problem = parse_scale_factor(fields[1])
        if not sample:
            problems.append(InputError(where, "sample name is empty", FILE_FORMAT))
        elif sample in seen:
            problems.append(
                InputError(where, f"sample {sample!r} is also on {seen[sample]}", "list it once")
            )
        elif problem:
            problems.append(InputError(where, problem, SCALE_FACTOR_FIX))
        else:
            seen[sample] = f"line {number}"
            lines.append(FactorLine(sample, factor, where))
    if not lines and not problems:
        problems.append(InputError(path, "lists no scale factors", FILE_FORMAT))
    return lines, problems


def factor_problems(
    attrs: layout.StoreAttributes, factors: Mapping[str, float | None]
) -> dict[str, tuple[str, str]]:
    """{sample: (why its factor cannot be set, the fix)} for the samples of `factors` that are
    not in the store, not counted yet (no record to hold a factor) or whose factor is not a
    positive finite number."""
    records = attrs.bamstore.samples if attrs.bamstore else {}
    names = attrs.sample_names
    known = f"use one of its samples ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
    problems: dict[str, tuple[str, str]] = {}
    for name, factor in factors.items():
        if name not in names:
            problems[name] = (f"sample {name!r} is not in the store", known)
        elif name not in records:
            problems[name] = (
                f"sample {name!r} has not been counted yet (it has no record)",
                "set its factor once it is counted (BamStore.process_samples)",
            )
        elif factor is not None and (problem := scale_factor_problem(factor)):
            problems[name] = (problem, SCALE_FACTOR_FIX)
    return problems


def set_scale_factors(
    store: Path,
    factors: Mapping[str, float | None],
    where: Mapping[str, str] | None = None,
    problems: Sequence[InputError] = (),
) -> layout.StoreAttributes:
    """Replace the factors of the samples in `factors` (None: no factor) and return the store's
    new root attributes; the other samples keep theirs. `where` says where each sample was
    listed (a file's line), for messages; `problems` found before (a file's other lines) are
    reported with the store's, and like them leave the store unchanged."""
    store = Path(store).resolve()  # a symlink's target is the store that is rewritten
    read_store_info(store)  # a path that is no store is refused before the lock is taken
    with output_lock(store):
        info = read_store_info(store)
        record = info.record
        if record is None:
            raise InputError(
                store,
                f"has no sample records to hold scale factors: {info.attrs.record_problem}",
                "rebuild it with bamstore build (or merge its parts again)",
            )
        found = [*problems] + [
            InputError((where or {}).get(name, store), problem, fix)
            for name, (problem, fix) in factor_problems(info.attrs, factors).items()
        ]
        _raise(found, f"{len(found)} problem(s): no scale factor of {store} was changed")
        updated = dataclasses.replace(
            info.attrs,
            bamstore=record.with_samples(
                {
                    name: dataclasses.replace(
                        record.samples[name], scale_factor=None if f is None else float(f)
                    )
                    for name, f in factors.items()
                }
            ),
        )
        layout.rewrite_root_attributes(store, updated)
    return updated


def _raise(problems: list[InputError], header: str) -> None:
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputErrors(problems, header=header)
