"""`bamstore inspect --html`: the inspect summary as one self-contained HTML page.

The library-size bar chart is inline SVG, so the page needs no plotting library, no network
and no files beside it (it can be mailed or attached to a pipeline report).
"""

from __future__ import annotations

import html
from typing import Any

from bamstore.query.inspect import settings_facts

BAR_HEIGHT = 22
CHART_WIDTH = 640
LABEL_WIDTH = 180


def _library_chart(samples: list[dict[str, Any]]) -> str:
    """Horizontal bars of total_reads; incomplete samples are drawn grey and labelled."""
    top = max([s["total_reads"] for s in samples] + [1])
    bar_space = CHART_WIDTH - LABEL_WIDTH - 110
    height = BAR_HEIGHT * len(samples) + 10
    rows = []
    for i, s in enumerate(samples):
        y = 5 + i * BAR_HEIGHT
        width = bar_space * s["total_reads"] / top
        colour = "#4c78a8" if s["completed"] else "#bbbbbb"
        note = f"{s['total_reads']:,}" + ("" if s["completed"] else " (incomplete)")
        rows.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">'
            f"{html.escape(s['name'])}</text>"
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{width:.1f}" '
            f'height="{BAR_HEIGHT - 6}" fill="{colour}"/>'
            f'<text x="{LABEL_WIDTH + width + 4:.1f}" y="{y + 15}">{note}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="12" role="img" '
        f'aria-label="library size per sample">{"".join(rows)}</svg>'
    )


def html_report(summary: dict[str, Any], title: str) -> str:
    """The page for `query.inspect.summarize(...)` output."""
    esc = html.escape
    contigs = summary["contigs"]
    facts = [
        ("samples", str(summary["n_samples"])),
        ("contigs", f"{len(contigs)} ({sum(c['length'] for c in contigs):,} bp)"),
        ("chunks", f"(1, {summary['chunk_len']:,}), compression {summary['compression']}"),
        ("strand arrays", "yes" if summary["stranded_arrays"] else "no"),
        ("metadata columns", ", ".join(summary["metadata_columns"]) or "(none)"),
    ]
    facts += settings_facts(summary.get("settings"))
    fact_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    columns = list(summary["metadata_columns"])
    head = ["sample", "library size", "sparsity %", "strand", "complete", *columns]
    body = []
    for i, s in enumerate(summary["samples"]):
        sparsity = "NA" if s["sparsity"] is None else f"{s['sparsity']:.2f}"
        cells = [
            s["name"],
            f"{s['total_reads']:,}",
            sparsity,
            s["stranded"] or "-",
            "yes" if s["completed"] else "NO",
            *(summary["metadata_columns"][c][i] for c in columns),
        ]
        body.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
td:nth-child(2), td:nth-child(3) {{ text-align: right; }}
</style></head><body>
<h1>{esc(title)}</h1>
<table>{fact_rows}</table>
<h2>Samples</h2>
<table><tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr>{"".join(body)}</table>
<h2>Library size (metadata/total_reads)</h2>
{_library_chart(summary["samples"])}
</body></html>
"""
