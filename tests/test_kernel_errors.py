"""How the kernels meet indexes and files that disagree, and unsorted records.

- Rsamtools' ex1.bam ships an index made by an old samtools whose last chunk ends at the file
  size (126539:0) where a fresh index says 126511:0, the EOF marker. The fast path once called
  that file "corrupted or truncated … re-download it", though htslib reads it.
- When the fast path cannot read the blocks the index points at, the contig is read through
  htslib instead, with the same result, and a warning says why.
- Records out of order raise `UnsortedInputError` (typed, with the positions) in every kernel.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from bamfactory import Read, samtools_depth, write_bam

from bamstore.engine.blocks import BgzfError, BgzfReader
from bamstore.engine.kernel import UnsortedInputError, available_kernels, open_coverage_reader
from bamstore.options import CountingMode, ReadFilter

KERNELS = available_kernels()
EOF_MARKER_SIZE = 28
EX1_CONTIGS = [("seq1", 1575), ("seq2", 1584)]


def _ex1_like(folder: Path) -> Path:
    """Two contigs of 35 bp reads, as Rsamtools' ex1.bam; seq2's records end the file."""
    reads = [Read("seq1", i * 7, "35M", flag=16 * (i % 2)) for i in range(220)]
    reads += [Read("seq2", i * 7, "35M", flag=16 * (i % 3 == 0)) for i in range(222)]
    return write_bam(folder / "ex1.bam", reads, EX1_CONTIGS)


def _move_last_chunk_end(bam: Path, new_block_offset: int) -> int:
    """Rewrite the index's chunk ends at the EOF marker (a fresh index's end of the last
    contig) to `new_block_offset`:0, as old samtools versions wrote them; returns how many."""
    bai = Path(str(bam) + ".bai")
    eof_marker = bam.stat().st_size - EOF_MARKER_SIZE
    old, new = struct.pack("<Q", eof_marker << 16), struct.pack("<Q", new_block_offset << 16)
    data = bai.read_bytes()
    bai.write_bytes(data.replace(old, new))
    return data.count(old)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("where", ["file_size", "past_the_end"])
def test_index_span_ending_at_the_file_size_is_read(tmp_path, run_cli, read_rows, kernel, where):
    bam = _ex1_like(tmp_path)
    size = bam.stat().st_size
    patched = _move_last_chunk_end(bam, size if where == "file_size" else size + 70_000)
    assert patched >= 1  # the index really ends seq2 where the old samtools did
    out = tmp_path / "ex1.zarr"
    result = run_cli(
        "extract", "--bam", bam, "--sample", "ex1", "--out", out, "--chromosomes", "all",
        env={"BAMSTORE_KERNEL": kernel},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "corrupt" not in result.stderr and "re-download" not in result.stderr
    assert "warning" not in result.stderr  # a span that ends at the file's end is no mismatch
    want = samtools_depth(bam, EX1_CONTIGS)
    for name, _ in EX1_CONTIGS:
        assert want[name].any()
        np.testing.assert_array_equal(read_rows(out, name)[0], want[name], err_msg=name)


def _failing_blocks(after: int):
    """BgzfReader.blocks that raises after `after` blocks of a contig (a fast-path failure)."""
    real = BgzfReader.blocks

    def blocks(self, first_voffset: int, last_voffset: int):
        for i, block in enumerate(real(self, first_voffset, last_voffset)):
            if i == after:
                raise BgzfError(first_voffset >> 16, "injected failure")
            yield block

    return blocks


@pytest.mark.parametrize(
    "counting", [CountingMode(), CountingMode("fragments"), CountingMode("cutsites")]
)
def test_fast_path_failure_falls_back_to_htslib(random_bam, extract, monkeypatch, caplog, counting):
    """The contig is re-read through htslib from its start; the windows already written are
    skipped, so the store is byte-identical to the htslib kernel's and no sum counts twice."""
    reference = extract(random_bam, kernel="htslib", chunk_len=1000, counting=counting)
    monkeypatch.setattr(BgzfReader, "blocks", _failing_blocks(after=3))
    with caplog.at_level(logging.WARNING):
        store = extract(random_bam, kernel="compiled", chunk_len=1000, counting=counting)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "the index does not match the file on chr1 (BGZF block at byte" in w
        and "injected failure); chr1 was read through htslib instead" in w
        for w in warnings
    ), warnings
    files = sorted(p.relative_to(reference) for p in reference.rglob("c/*/*") if p.is_file())
    assert len([f for f in files if f.parts[0] == "chr1"]) > 5  # windows before the failure
    assert files == sorted(p.relative_to(store) for p in store.rglob("c/*/*") if p.is_file())
    for rel in files:
        assert (store / rel).read_bytes() == (reference / rel).read_bytes(), rel
    ref_attrs = (reference / "zarr.json").read_text().replace("htslib", "KERNEL")
    got_attrs = (store / "zarr.json").read_text().replace("compiled", "KERNEL")
    assert got_attrs == ref_attrs  # sums, digests, total_reads, warnings


def test_htslib_failing_too_reports_the_damaged_block(random_bam, tmp_path, extract):
    """Both paths fail on a damaged block: the error names the block (the fast path's)."""
    from bamstore.errors import InputError

    damaged = tmp_path / "damaged.bam"
    data = bytearray(random_bam.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # inside some block's deflate stream
    damaged.write_bytes(bytes(data))
    shutil.copy(str(random_bam) + ".bai", str(damaged) + ".bai")  # newer than the BAM
    with pytest.raises(InputError) as caught:
        extract(damaged, kernel="compiled", chunk_len=1000)
    assert "is corrupted or truncated: BGZF block at byte" in str(caught.value)


UNSORTED = [Read("chr1", 100, "50M"), Read("chr1", 10, "50M"), Read("chr2", 5, "50M")]
SORT_CONTIGS = [("chr1", 2000), ("chr2", 1500)]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mode", ["reads", "fragments", "cutsites"])
def test_unsorted_records_raise_a_typed_error(tmp_path, kernel, mode):
    """A BAM whose header says sorted, with an index that fits (made from the sorted twin)."""
    sorted_bam = write_bam(tmp_path / "sorted.bam", UNSORTED, SORT_CONTIGS)
    liar = write_bam(tmp_path / "liar.bam", UNSORTED, SORT_CONTIGS, sort=False, index=False)
    assert liar.stat().st_size == sorted_bam.stat().st_size
    reader = open_coverage_reader(
        str(liar),
        str(sorted_bam) + ".bai",
        chunk_len=64,
        read_filter=ReadFilter(),
        counting=CountingMode(mode),  # type: ignore[arg-type]
        kernel=kernel,  # type: ignore[arg-type]
    )
    buf = np.zeros(64, dtype=np.uint32)
    try:
        reader.start_contig(0, 2000)
        with pytest.raises(UnsortedInputError) as caught:
            while reader.next_window(buf, buf, buf) >= 0:
                pass
    finally:
        reader.close()
    assert (caught.value.tid, caught.value.prev_pos, caught.value.pos) == (0, 100, 10)


def test_a_stale_compiled_kernel_is_named_with_the_fix(tmp_path: Path) -> None:
    """An extension built from another _coverage.pyx (an editable install after `git pull`)
    is refused with the command that rebuilds it, before any of its calls can fail."""
    from types import SimpleNamespace

    from bamstore.engine.kernel import check_compiled_source
    from bamstore.errors import StaleKernelError

    (tmp_path / "_coverage.pyx").write_text("# the source as it is now\n")
    built = tmp_path / "_coverage.cpython-311-x86_64-linux-gnu.so"
    stale = SimpleNamespace(__file__=str(built), SOURCE_SHA256="0" * 64)
    with pytest.raises(StaleKernelError, match=r"rebuild it with `make install`"):
        check_compiled_source(stale)
    current = hashlib.sha256((tmp_path / "_coverage.pyx").read_bytes()).hexdigest()
    check_compiled_source(SimpleNamespace(__file__=str(built), SOURCE_SHA256=current))
    # an installed package has no .pyx beside the extension: nothing to compare
    (tmp_path / "_coverage.pyx").unlink()
    check_compiled_source(stale)


def test_this_checkout_runs_the_kernel_built_from_its_source() -> None:
    from bamstore.engine.kernel import _compiled_module

    module = _compiled_module()
    source = Path(module.__file__).with_name("_coverage.pyx")
    assert hashlib.sha256(source.read_bytes()).hexdigest() == module.SOURCE_SHA256


def test_kernels_are_the_compiled_ones_and_an_unknown_choice_is_refused(monkeypatch) -> None:
    """Both kernels are the compiled extension (over libdeflate blocks, or htslib's iterator);
    BAMSTORE_KERNEL names one of them, and anything else (the removed "python") is refused."""
    from bamstore.engine.kernel import default_kernel
    from bamstore.errors import InputError

    assert KERNELS == ["compiled", "htslib"]
    assert default_kernel() == "compiled"
    monkeypatch.setenv("BAMSTORE_KERNEL", "htslib")
    assert default_kernel() == "htslib"
    monkeypatch.setenv("BAMSTORE_KERNEL", "python")
    with pytest.raises(InputError) as caught:
        default_kernel()
    assert caught.value.line() == (
        "BAMSTORE_KERNEL: 'python' is not a kernel; fix: set it to compiled or htslib, or unset it"
    )
