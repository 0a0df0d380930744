"""Cohorts of clones: a per-sample store under another sample name, its files hard-linked.

Used by benchmarks/scale.py (100 to 5,000-sample cohorts) and benchmarks/read_bench.py (a
100-sample store to read across): extracting that many BAMs would take far longer than what is
measured. A clone is a part like any other to merge; only the page cache is kinder (clones share
inodes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bamstore import layout


def clone_part(part: Path, out: Path, sample: str) -> Path:
    """`part` under the sample name `sample`: every file hard-linked but the root zarr.json,
    which is written anew (a linked one would change the real part's too)."""
    for root, _dirs, names in os.walk(part):
        rel = Path(root).relative_to(part)
        (out / rel).mkdir(parents=True, exist_ok=True)
        for name in names:
            if rel == Path(".") and name == layout.ZARR_JSON:
                continue
            os.link(Path(root) / name, out / rel / name)
    doc = json.loads((part / layout.ZARR_JSON).read_text())
    attrs = doc["attributes"]
    (old,) = attrs["sample_names"]
    attrs["sample_names"] = [sample]
    attrs["sample_names_hash"] = layout.sample_names_hash([sample])
    attrs["stranded"] = {sample: attrs["stranded"][old]}
    attrs["bamstore"]["samples"] = {sample: attrs["bamstore"]["samples"][old]}
    (out / layout.ZARR_JSON).write_text(json.dumps(doc, indent=2))
    return out
