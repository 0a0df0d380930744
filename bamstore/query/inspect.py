"""A summary of a store: samples, contigs, library sizes, metadata, settings.

`summarize` returns plain data; `--json` prints it as is (stable across runs of the same inputs,
so nf-test can snapshot it: no paths, times or tool versions), the text form is for people.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bamstore import layout
from bamstore.engine.store import StoreInfo


def summarize(info: StoreInfo) -> dict[str, Any]:
    meta = info.metadata_arrays
    record = info.record
    samples = []
    for row, name in enumerate(info.sample_names):
        sample = record.samples.get(name) if record else None
        sparsity = float(meta.sparsity[row])
        samples.append(
            {
                "name": name,
                "completed": bool(meta.completed[row]),
                "total_reads": int(meta.total_reads[row]),
                "sparsity": None if np.isnan(sparsity) else round(sparsity, 4),
                "stranded": info.stranded.get(name, ""),
                "sample_hash": bytes(meta.sample_hashes[row]).hex(),
                "contig_sums": list(sample.contig_sums) if sample else None,
                "scale_factor": sample.scale_factor if sample else None,
                "warnings": dict(sample.warnings) if sample else {},
            }
        )
    settings = info.settings
    return {
        "format": layout.FORMAT_NAME if record else "quantnado",
        "format_version": record.format_version if record else None,
        "n_samples": len(info.sample_names),
        "chunk_len": info.chunk_len,
        "compression": info.compression,
        "stranded_arrays": info.has_strand_arrays,
        "sharded": info.sharded,
        "contigs": [{"name": n, "length": length} for n, length in info.contigs],
        "settings": dataclasses.asdict(settings) if settings else None,
        "metadata_columns": info.metadata_columns,
        "samples": samples,
    }


def settings_facts(settings: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The counting settings as (label, text) rows, for the text summary and the HTML report."""
    if not settings:
        return []
    detail = {"fragments": "extend", "cutsites": "shift"}.get(settings["mode"])
    value = settings.get(detail) if detail else None
    if isinstance(value, list | tuple):
        value = ",".join(str(x) for x in value)
    low, high = settings.get("min_fragment_len"), settings.get("max_fragment_len")
    fragments = (
        ""
        if low is None and high is None
        else f"; proper pairs of {low or 1}–{high if high is not None else '∞'} bp only"
    )
    return [
        (
            "read filter",
            f"exclude flags {settings['exclude_flags']:#x}, min MAPQ {settings['min_mapq']}, "
            f"deletions {'counted' if settings['count_deletions'] else 'not counted'}; "
            f"chromosomes {settings['chromosome_selection']}",
        ),
        (
            "counting",
            settings["mode"]
            + (f" ({detail} {value})" if detail and value is not None else "")
            + fragments,
        ),
    ]


def format_summary(summary: dict[str, Any], path: str, version: str | None) -> str:
    contigs = summary["contigs"]
    total_bp = sum(c["length"] for c in contigs)
    lines = [
        f"store        {path}",
        f"made by      bamstore {version}" if version else "made by      (not bamstore)",
        f"samples      {summary['n_samples']}",
        f"contigs      {len(contigs)} ({total_bp:,} bp): "
        + ", ".join(c["name"] for c in contigs[:8])
        + (" ..." if len(contigs) > 8 else ""),
        f"chunks       (1, {summary['chunk_len']:,}), compression {summary['compression']}; "
        + (
            "sharded: one file per sample per contig"
            if summary["sharded"]
            else "one file per chunk (unsharded)"
        ),
        f"strand       {'yes (_fwd/_rev arrays)' if summary['stranded_arrays'] else 'no'}",
    ]
    for label, text in settings_facts(summary.get("settings")):
        lines.append(f"{label:<12} {text}")
    cols = summary["metadata_columns"]
    lines.append(f"metadata     {', '.join(cols) if cols else '(none)'}")
    lines.append("")
    width = max([len(s["name"]) for s in summary["samples"]] + [6])
    factors = any(s.get("scale_factor") is not None for s in summary["samples"])
    lines.append(
        f"{'sample':<{width}}  {'library size':>14}  {'sparsity %':>10}  strand  complete"
        + ("  scale factor" if factors else "")
    )
    for s in summary["samples"]:
        sparsity = "NA" if s["sparsity"] is None else f"{s['sparsity']:.2f}"
        factor = s.get("scale_factor")
        lines.append(
            f"{s['name']:<{width}}  {s['total_reads']:>14,}  {sparsity:>10}  "
            f"{s['stranded'] or '-':>6}  {'yes' if s['completed'] else 'NO':>8}"
            + (f"  {'NA' if factor is None else f'{factor:g}':>12}" if factors else "")
        )
    return "\n".join(lines)
