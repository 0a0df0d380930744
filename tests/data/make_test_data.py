"""Regenerate the bundled test data: small BAMs and the samplesheet used by `make demo`,
the Nextflow `test` profile and the tests. Deterministic (fixed seeds, no @PG lines):

    python tests/data/make_test_data.py

Contigs chr1, chr2, chrM (kept by the default `primary` selection) and chrUn_test (dropped by it).
`atac_se` is single-end and ships without an index, so extraction builds one in scratch.
`rna_r` is stranded (R).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bamstore.simulate import make_bam

HERE = Path(__file__).resolve().parent
CONTIGS = [("chr1", 40_000), ("chr2", 25_000), ("chrM", 2_000), ("chrUn_test", 3_000)]
SAMPLES = [
    # name, reads, seed, paired, index, strandedness, condition, replicate
    ("chip_a", 4000, 11, True, True, "", "treated", "1"),
    ("chip_b", 4000, 12, True, True, "", "control", "1"),
    ("atac_se", 3000, 13, False, False, "", "treated", "2"),
    ("rna_r", 4000, 14, True, True, "R", "control", "2"),
]


def samplesheet_text() -> str:
    lines = ["sample,bam,bai,strandedness,condition,replicate"]
    for name, _, _, _, index, strand, condition, replicate in SAMPLES:
        bai = f"{name}.bam.bai" if index else ""
        lines.append(f"{name},{name}.bam,{bai},{strand},{condition},{replicate}")
    return "\n".join(lines) + "\n"


def main() -> int:
    for name, reads, seed, paired, index, *_ in SAMPLES:
        bam = HERE / f"{name}.bam"
        make_bam(bam, reads, CONTIGS, seed=seed, paired=paired, threads=1, index=index)
    (HERE / "samplesheet.csv").write_text(samplesheet_text())
    for stamp in HERE.glob("*.params"):
        stamp.unlink()
    print(f"wrote {len(SAMPLES)} BAMs and samplesheet.csv to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
