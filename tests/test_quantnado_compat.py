"""QuantNado itself reads our consolidated store, unsharded and sharded, and gets the same
numbers.

QuantNado needs Python >= 3.12; `make quantnado` installs quantnado 0.4.3 (the multi-sample
BamStore layout of commit 64ea0a4, with bamnado 0.4.4) into .venv-quantnado, and .ci/run does so
on CI. Without it these tests are skipped, saying why.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from support import REPO, TEST_DATA

from bamstore.engine.build import build_store
from bamstore.engine.extract import ExtractOptions
from bamstore.engine.scale_factors import scale_factors, set_scale_factors
from bamstore.engine.store import read_store_info

QUANTNADO_PYTHON = Path(
    os.environ.get("BAMSTORE_QUANTNADO_PYTHON") or REPO / ".venv-quantnado" / "bin" / "python"
)
pytestmark = pytest.mark.skipif(
    not QUANTNADO_PYTHON.exists(),
    reason=f"QuantNado not installed ({QUANTNADO_PYTHON}); run `make quantnado` (Python >= 3.12)",
)

REGIONS = [
    ("chr1:0-5,000", None),  # first base, crosses the 4,096 chunk boundary
    ("chr1:39,000-40,000", None),  # last base of chr1
    ("chr2:4,090-4,100", None),
    ("chrM", None),  # a whole contig
    ("chr1:1,000-9,000", "+"),
    ("chr1:1,000-9,000", "-"),
]

PROBE = """
import json, sys
import numpy as np
from quantnado.dataset.store_bam import BamStore

store = BamStore.open(sys.argv[1])
regions = json.loads(sys.argv[2])
out = {
    "sample_names": list(store.sample_names),
    "chromosomes": list(store.chromosomes),
    "completed": store.completed_mask.tolist(),
    "library_sizes": store.library_sizes.tolist(),
    "metadata": store.get_metadata().astype(str).to_dict(orient="list"),
    "regions": [],
}
for region, strand in regions:
    samples = ["rna_r"] if strand else None
    values = store.extract_region(region, strand=strand, samples=samples, as_xarray=False)
    out["regions"].append(np.asarray(values).tolist())
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=[False, True], ids=["unsharded", "sharded"])
def store(request, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cohort in both layouts: QuantNado reads the sharded one (`--shard`) unchanged, as
    zarr-python 3 reads the shards' inner (1, chunk_len) chunks. Its samples have scale
    factors, from the samplesheet and set afterwards (a rewrite of the root zarr.json)."""
    folder = tmp_path_factory.mktemp("qn")
    out = folder / "cohort.zarr"
    sheet = folder / "samplesheet.csv"
    with (TEST_DATA / "samplesheet.csv").open() as src, sheet.open("w") as dst:
        rows = list(csv.DictReader(src))
        writer = csv.DictWriter(dst, [*rows[0], "scale_factor"])
        writer.writeheader()
        for row, factor in zip(rows, ["0.5", "", "1.25", "2"], strict=True):
            paths = {k: str(TEST_DATA / row[k]) if row[k] else "" for k in ("bam", "bai")}
            writer.writerow({**row, **paths, "scale_factor": factor})
    options = ExtractOptions(chunk_len=4096, shard=request.param)
    build_store([sheet], out, options, jobs=2)
    set_scale_factors(out, {"chip_b": 3.0})
    array = zarr.open_group(str(out), mode="r")["chr1"]
    assert (array.shards is not None) is request.param
    assert array.chunks == (1, 4096)
    return out


@pytest.fixture(scope="module")
def quantnado_view(store: Path) -> dict:
    done = subprocess.run(
        [str(QUANTNADO_PYTHON), "-c", PROBE, str(store), json.dumps(REGIONS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_quantnado_opens_the_store(quantnado_view: dict) -> None:
    assert quantnado_view["sample_names"] == ["chip_a", "chip_b", "atac_se", "rna_r"]
    assert quantnado_view["chromosomes"] == ["chr1", "chr2", "chrM"]
    assert quantnado_view["completed"] == [True] * 4


def test_quantnado_library_sizes_and_metadata(store: Path, quantnado_view: dict) -> None:
    root = zarr.open_group(str(store), mode="r")
    assert quantnado_view["library_sizes"] == root["metadata"]["total_reads"][:].tolist()
    metadata = quantnado_view["metadata"]
    assert metadata["condition"] == ["treated", "control", "treated", "control"]
    assert metadata["replicate"] == ["1", "1", "2", "2"]
    assert "scale_factor" not in metadata  # a sample's record holds it, not a metadata column


def test_the_store_holds_the_scale_factors(store: Path) -> None:
    info = read_store_info(store)
    assert scale_factors(info.attrs) == {
        "chip_a": 0.5,
        "chip_b": 3.0,
        "atac_se": 1.25,
        "rna_r": 2.0,
    }


def test_quantnado_regions_equal_ours(store: Path, quantnado_view: dict) -> None:
    root = zarr.open_group(str(store), mode="r")
    sizes = root.attrs["chromsizes"]
    for (region, strand), theirs in zip(REGIONS, quantnado_view["regions"], strict=True):
        chrom, _, span = region.partition(":")
        start, end = (
            (int(x.replace(",", "")) for x in span.split("-")) if span else (0, sizes[chrom])
        )
        if strand:
            array = chrom + ("_fwd" if strand == "+" else "_rev")
            ours = root[array][3:4, start:end]
        else:
            ours = root[chrom][:, start:end]
        np.testing.assert_array_equal(np.asarray(theirs), ours, err_msg=f"{region} {strand}")
        assert np.asarray(theirs).sum() > 0, region
