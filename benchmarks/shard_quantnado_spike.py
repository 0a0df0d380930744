"""Spike: does QuantNado 0.4.3 read a sharded store unchanged? (`make quantnado` first.)

Builds the bundled test cohort (chunk_len 4096, stranded sample included), makes a sharded copy
by moving each row's chunk files into one shard with `bamstore.engine.shard.ShardWriter` (no
decoding),
then asks QuantNado's `BamStore.open(...).extract_region(...)` (in .venv-quantnado, its own
zarr-python) for the same regions from both stores and compares with plain numpy over the
unsharded store. Replaced by tests/test_quantnado_compat.py once `--shard` is integrated.

    .venv/bin/python benchmarks/shard_quantnado_spike.py [WORKDIR]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr

from bamstore import layout
from bamstore.engine import shard
from bamstore.engine.build import build_store
from bamstore.engine.extract import ExtractOptions

REPO = Path(__file__).resolve().parents[1]
QUANTNADO_PYTHON = REPO / ".venv-quantnado" / "bin" / "python"
REGIONS = [
    ("chr1:0-5,000", None),  # first base, crosses the 4,096 chunk boundary
    ("chr1:39,000-40,000", None),  # last base of chr1
    ("chr2:4,090-4,100", None),
    ("chrM", None),
    ("chr1:1,000-9,000", "+"),
    ("chr1:1,000-9,000", "-"),
]
PROBE = """
import json, sys
import numpy as np, zarr
from quantnado.dataset.store_bam import BamStore

store = BamStore.open(sys.argv[1])
out = {"zarr": zarr.__version__, "sample_names": list(store.sample_names), "regions": [],
       "shards": {k: list(store.root[k].shards or []) for k in store.chromosomes}}
for region, strand in json.loads(sys.argv[2]):
    samples = ["rna_r"] if strand else None
    values = store.extract_region(region, strand=strand, samples=samples, as_xarray=False)
    out["regions"].append(np.asarray(values).tolist())
print(json.dumps(out))
"""


def shard_copy(src: Path, dst: Path) -> int:
    """Copy store `src` to `dst` with every coverage row moved into one shard; shard count."""
    shutil.copytree(src, dst)
    attrs = layout.read_json(src / layout.ZARR_JSON)["attributes"]
    profile = layout.compression_profile(attrs["construction_compression"])
    n, chunk_len = attrs["n_samples"], attrs["chunk_len"]
    stranded = any(attrs["stranded"].values())
    shards = 0
    for contig, length in attrs["chromsizes"].items():
        n_inner = shard.inner_chunks_per_shard(length, chunk_len)
        for array in layout.coverage_array_names([contig], stranded):
            doc = shard.sharded_array_document(n, length, chunk_len, profile)
            layout.write_json(dst / array / layout.ZARR_JSON, doc)
            shutil.rmtree(dst / array / "c", ignore_errors=True)
            for row in range(n):
                files = layout.row_chunk_files(src, array, row)
                shards += shard.pack_chunk_files(files, shard.shard_path(dst, array, row), n_inner)
    return shards


def quantnado_view(store: Path) -> dict:
    done = subprocess.run(
        [str(QUANTNADO_PYTHON), "-c", PROBE, str(store), json.dumps(REGIONS)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        sys.exit(f"QuantNado failed on {store}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if not QUANTNADO_PYTHON.exists():
        sys.exit(f"{QUANTNADO_PYTHON} missing: run `make quantnado`")
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="shardqn"))
    plain, sharded = work / "plain.zarr", work / "sharded.zarr"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    build_store(
        [REPO / "tests" / "data" / "samplesheet.csv"], plain, ExtractOptions(chunk_len=4096), jobs=2
    )
    n_shards = shard_copy(plain, sharded)
    files = {p: sum(1 for f in p.rglob("*") if f.is_file()) for p in (plain, sharded)}
    root = zarr.open_group(str(plain), mode="r")
    sizes = root.attrs["chromsizes"]
    expected = []
    for region, strand in REGIONS:
        chrom, _, span = region.partition(":")
        start, end = (
            (int(x.replace(",", "")) for x in span.split("-")) if span else (0, sizes[chrom])
        )
        if strand:
            expected.append(root[chrom + ("_fwd" if strand == "+" else "_rev")][3:4, start:end])
        else:
            expected.append(root[chrom][:, start:end])
    for store in (plain, sharded):
        view = quantnado_view(store)
        for (region, strand), theirs, ours in zip(REGIONS, view["regions"], expected, strict=True):
            np.testing.assert_array_equal(np.asarray(theirs), ours, err_msg=f"{region} {strand}")
        print(
            f"{store.name}: QuantNado (zarr {view['zarr']}) read {len(REGIONS)} regions equal to "
            f"numpy over the unsharded store; shards {view['shards']}; {files[store]} files"
        )
    print(f"sharded copy: {n_shards} shard files")


if __name__ == "__main__":
    main()
