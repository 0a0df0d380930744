"""`bamstore plot` and `bamstore inspect --html`: pictures of a store, from generated data."""

from __future__ import annotations

import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bamstore.api import BamStore, MissingExtraError
from bamstore.cli import main
from bamstore.simulate import make_bam

pytest.importorskip("matplotlib")

CONTIGS = [("chr1", 20_000), ("chr2", 8_000)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plot")
    bams = [make_bam(folder / f"{n}.bam", 800, CONTIGS, seed=s) for s, n in ((1, "x"), (2, "y"))]
    out = folder / "p.zarr"
    BamStore.from_bam_files(bams, store_path=out, chunk_len=4096, stranded={"y": "R"})
    return out


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR is the first chunk)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def coloured_pixels(path: Path) -> int:
    """Pixels that are neither white nor grey: the drawn coverage."""
    from matplotlib.image import imread

    rgb = imread(str(path))[..., :3]
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    return int((spread > 0.15).sum())


def test_plot_cli_renders_a_png_of_the_requested_size(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "region.png"
    result = CliRunner().invoke(
        main,
        [
            "plot",
            str(store),
            "--region",
            "chr1:10,000-20,000",
            "--normalise",
            "cpm",
            "-o",
            str(out),
            "--width",
            "900",
            "--height",
            "500",
        ],
    )
    assert result.exit_code == 0, result.output
    assert png_size(out) == (900, 500)
    assert coloured_pixels(out) > 5000  # two filled coverage tracks, not a blank frame


def test_plot_default_size_grows_with_tracks(store: Path, tmp_path: Path) -> None:
    from bamstore.plot import plot_region

    one = plot_region(store, "chr2:0-8,000", tmp_path / "one.png", samples=["x"])
    two = plot_region(store, "chr2", tmp_path / "two.png")
    assert png_size(one.path) == (1200, 250) and png_size(two.path) == (1200, 380)
    assert (one.chrom, one.start, one.end, two.end) == ("chr2", 0, 8000, 8000)
    assert two.samples == ["x", "y"]
    assert coloured_pixels(two.path) > coloured_pixels(one.path) > 1000


def test_plot_bins_long_regions_by_maximum(store: Path, tmp_path: Path) -> None:
    """A region longer than 2 points per pixel is drawn as per-bin maxima: peaks survive."""
    from bamstore.plot import _bin_max, plot_region

    info = plot_region(store, "chr1", tmp_path / "long.png", width=400)
    assert info.bin_size == 25  # 20,000 bp over 800 points
    values = np.array([[0, 5, 0, 0, 1, 9, 2]])
    assert _bin_max(values, 3).tolist() == [[5, 9, 2]]


def test_plot_strand_tracks(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "strand.png"
    result = CliRunner().invoke(
        main, ["plot", str(store), "--region", "chr1:0-5,000", "--strand", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert png_size(out) == (1200, 250)  # only the stranded sample y
    assert coloured_pixels(out) > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--region", "chr9:0-10"],
            "{store}: Chromosome 'chr9' not in store. Available: ['chr1', 'chr2']",
        ),
        (["--region", "chr1:50-10"], "End coordinate must not be less than start: chr1:50-10"),
        (
            ["--region", "chr1:50-50"],
            "{store}: region chr1:50-50 is empty: nothing to draw; fix: give end > start",
        ),
        (
            ["--region", "chr1:0-10", "--samples", "nope"],
            "{store}: sample 'nope' is not in the store; fix: choose from x, y",
        ),
        (
            ["--region", "chr1:0-10", "--samples", "x", "--strand"],
            "{store}: sample(s) x were not built stranded, so they have no fwd coverage; fix: "
            "choose stranded samples, or omit --strand",
        ),
        (["--region", "chr1:0-10", "--samples", "x,x"], None),  # repeats are drawn twice
    ],
)
def test_plot_cli_errors_are_one_line(
    store: Path, tmp_path: Path, args: list[str], message: str | None
) -> None:
    result = CliRunner().invoke(main, ["plot", str(store), *args, "-o", str(tmp_path / "e.png")])
    if message is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2
    assert result.output == f"bamstore: error: {message.format(store=store)}\n"
    assert not (tmp_path / "e.png").exists()


def test_plot_without_stranded_samples_is_bad_input(tmp_path: Path) -> None:
    bam = make_bam(tmp_path / "u.bam", 50, CONTIGS, seed=3)
    flat = tmp_path / "u.zarr"
    BamStore.from_bam_files([bam], store_path=flat, chunk_len=4096)
    result = CliRunner().invoke(
        main, ["plot", str(flat), "--region", "chr1", "--strand", "-o", str(tmp_path / "u.png")]
    )
    assert (result.exit_code, result.output) == (
        2,
        f"bamstore: error: {flat}: no sample in this store was built stranded; fix: omit "
        "--strand\n",
    )


def test_plot_internal_value_errors_are_not_bad_input(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ValueError that is not about the input is a bug: exit 1 and 'internal error'."""
    import bamstore.plot

    def broken(values: np.ndarray, bin_size: int) -> np.ndarray:
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(bamstore.plot, "_bin_max", broken)
    result = CliRunner().invoke(
        main, ["plot", str(store), "--region", "chr1:0-10", "-o", str(tmp_path / "i.png")]
    )
    assert result.exit_code == 1
    assert result.output.startswith(
        "bamstore: internal error: ValueError: operands could not be broadcast together"
    )


def test_plot_without_matplotlib_says_what_to_install(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    from bamstore.plot import plot_region

    with pytest.raises(MissingExtraError):
        plot_region(store, "chr1:0-10", tmp_path / "m.png")
    result = CliRunner().invoke(
        main, ["plot", str(store), "--region", "chr1:0-10", "-o", str(tmp_path / "m.png")]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [
        "bamstore: error: bamstore plot needs matplotlib; fix: pip install 'bamstore[plot]'"
    ]


def test_inspect_html_has_table_and_library_chart(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "inspect.html"
    result = CliRunner().invoke(main, ["inspect", str(store), "--html", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    svg = page[page.index("<svg") : page.index("</svg>") + 6]
    bars = ET.fromstring(svg).findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == 2
    sizes = BamStore.open(store).library_sizes
    widths = [float(b.get("width", "0")) for b in bars]
    assert widths[0] / widths[1] == pytest.approx(sizes["x"] / sizes["y"], rel=1e-3)
    for name, size in sizes.items():
        assert f"<td>{name}</td><td>{int(size):,}</td>" in page
    # the counting settings, as the text summary shows them
    assert (
        "<tr><th>read filter</th><td>exclude flags 0x704, min MAPQ 0, deletions not counted;"
        in page
    )
    assert "<tr><th>counting</th><td>reads</td></tr>" in page


def test_plot_of_a_missing_or_foreign_store_is_bad_input(tmp_path: Path) -> None:
    missing = tmp_path / "none.zarr"
    foreign = tmp_path / "foreign.zarr"
    foreign.mkdir()
    (foreign / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    for path, message in (
        (missing, f"Store does not exist at {missing}"),
        (foreign, "Missing required attribute in store: sample_names, chromsizes, chunk_len"),
    ):
        result = CliRunner().invoke(
            main, ["plot", str(path), "--region", "chr1", "-o", str(tmp_path / "f.png")]
        )
        assert (result.exit_code, result.output) == (2, f"bamstore: error: {message}\n")
