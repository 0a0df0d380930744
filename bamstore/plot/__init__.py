"""A picture of a region: one coverage track per sample, for `bamstore plot`.

Reads through `BamStore.extract_region`, so the region string means exactly what it means there
and in QuantNado (0-based start, end exclusive, commas allowed), and bad input (a region, sample
or strand the store lacks) raises its typed errors (`bamstore.errors.InputError`). Drawn on a
bare matplotlib `Figure` with the Agg canvas, never pyplot, so calling it from a notebook does
not change the notebook's backend. matplotlib is an optional extra (`pip install 'bamstore[plot]'`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bamstore.api import BamStore, format_region
from bamstore.api.regions import resolve_region
from bamstore.engine.outputs import file_output, output_target
from bamstore.errors import InputError, QueryError
from bamstore.extras import require_extra
from bamstore.query.blacklist import open_blacklist
from bamstore.query.normalise import scaling
from bamstore.query.source import check_normalise

DPI = 100
DEFAULT_WIDTH = 1200  # pixels
TRACK_HEIGHT = 130  # pixels per sample track
FRAME_HEIGHT = 120  # title and x axis
POINTS_PER_PIXEL = 2  # longer regions are drawn as the maximum of each bin
UNITS = {None: "depth", "cpm": "CPM", "rpkm": "RPKM", "bpm": "BPM", "rpgc": "RPGC"}
UNITS["scale"] = "scaled depth"
# What a picture's name may end in; a name without a suffix (`-`, /dev/null) gets a PNG.
PICTURE_FORMATS = ("png", "svg", "pdf")
DEFAULT_PICTURE_FORMAT = "png"
NORMALISATION_NOTES = {
    None: "raw depth (reads covering each base), not normalised",
    "cpm": "CPM = depth / (library size / 1e6)",
    "rpkm": "RPKM = CPM / 0.001 kb per position",
    "bpm": "BPM = depth x 1e6 / total coverage",
    "rpgc": "RPGC = depth x effective genome size / total coverage (1x)",
    "scale": "depth x the sample's scale factor",
}


@dataclass(frozen=True)
class PlotInfo:
    """What was drawn, for the CLI's message and for tests."""

    path: Path
    chrom: str
    start: int
    end: int
    samples: list[str]
    width: int
    height: int
    bin_size: int


def _matplotlib() -> tuple[Any, Any]:
    require_extra("plot", "bamstore plot", "matplotlib.figure", "matplotlib.backends.backend_agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return Figure, FigureCanvasAgg


def picture_output(out: str | os.PathLike[str]) -> str:
    """The format of the picture `out` by its name's suffix, after checking that the path can
    be written (`engine.outputs`); refused before any work (InputError) otherwise."""
    suffix = Path(os.fspath(out)).suffix.lower().removeprefix(".")
    if suffix and suffix not in PICTURE_FORMATS:
        listed = ", ".join(f".{f}" for f in PICTURE_FORMATS)
        raise InputError(
            out,
            f"{suffix!r} is not a picture format bamstore draws ({listed})",
            f"end the name in one of {listed}",
        )
    output_target(out)
    return suffix or DEFAULT_PICTURE_FORMAT


def save_figure(fig: Any, out: str | os.PathLike[str], picture_format: str) -> None:
    """Write `fig` to `out` as `engine.outputs` says (a picture is a file output like any)."""
    with file_output(out) as staged:
        fig.savefig(staged, dpi=DPI, format=picture_format)


def _bin_max(values: np.ndarray, bin_size: int) -> np.ndarray:
    """Maximum of each `bin_size` run along the last axis (peaks stay visible when binned);
    NaN (blacklisted) positions are ignored, a bin of only NaN stays NaN (a gap)."""
    if bin_size <= 1:
        return values
    starts = np.arange(0, values.shape[-1], bin_size)
    return np.fmax.reduceat(values, starts, axis=-1)


def plot_region(
    store: BamStore | str | os.PathLike[str],
    region: str,
    out: str | os.PathLike[str],
    *,
    samples: Sequence[str | int] | None = None,
    normalise: str | None = None,
    strand: bool = False,
    width: int | None = None,
    height: int | None = None,
    effective_genome_size: float | None = None,
    blacklist: Any = None,
) -> PlotInfo:
    """Draw `region` of `samples` (default all; with `strand`, all stranded samples) to `out`.

    One track per sample on shared axes; with `strand`, + strand coverage above the axis and -
    strand below. The image is `width` x `height` pixels (defaults: 1200 wide, 130 per track
    plus 120); the format follows the file suffix (png, svg, pdf; png without a suffix).
    `normalise` as `extract_region` (a sample whose normalisation would divide by 0 is refused
    here, not drawn as NaN); `blacklist`: its positions are left out of the picture (gaps).
    """
    picture_format = picture_output(out)
    figure_cls, canvas_cls = _matplotlib()
    bs = store if isinstance(store, BamStore) else BamStore.open(store)
    label = bs.source.label
    chrom, start, end = resolve_region(bs.chromsizes, region, subject=label)
    if end == start:
        raise QueryError(label, f"region {region} is empty: nothing to draw", "give end > start")
    if samples is None:
        names = bs.sample_names
        samples = [n for n in names if bs.stranded.get(n)] if strand else names
        if not samples:
            raise QueryError(label, "no sample in this store was built stranded", "omit --strand")
    method = check_normalise(normalise)
    listed = open_blacklist(blacklist, bs.chromsizes)
    scaling(  # refuse a divisor of 0 (extract_region would give NaN)
        bs.source,
        bs.source.rows(list(samples), "fwd" if strand else None, repeats=True),
        method,
        genome_size=effective_genome_size,
        blacklist=listed,
    )
    options: dict[str, Any] = {
        "chrom": chrom,
        "start": start,
        "end": end,
        "samples": samples,
        "normalise": method,
        "effective_genome_size": effective_genome_size,
        "blacklist": listed,
    }
    if strand:
        upper = bs.extract_region(strand="+", **options)
        lower = bs.extract_region(strand="-", **options)
    else:
        upper = bs.extract_region(**options)
        lower = None
    labels = [s if isinstance(s, str) else bs.sample_names[int(s)] for s in samples]
    n = len(labels)
    px_w = int(width or DEFAULT_WIDTH)
    px_h = int(height or FRAME_HEIGHT + TRACK_HEIGHT * n)
    length = end - start
    bin_size = max(1, -(-length // (POINTS_PER_PIXEL * px_w)))
    x = np.append(np.arange(start, end, bin_size), end)  # bin edges, last one closes the step

    fig = figure_cls(figsize=(px_w / DPI, px_h / DPI), dpi=DPI)
    canvas_cls(fig)
    axes = fig.subplots(n, 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    colours = [f"C{i % 10}" for i in range(n)]
    for i, (ax, label) in enumerate(zip(axes, labels, strict=True)):
        tracks = [(_bin_max(upper[i], bin_size), 1.0, colours[i])]
        if lower is not None:
            tracks.append((_bin_max(lower[i], bin_size), -1.0, "0.45"))
        for values, sign, colour in tracks:
            y = sign * np.append(values, values[-1]).astype(float)  # NaN: a gap
            ax.fill_between(x, y, step="post", color=colour, alpha=0.55, linewidth=0)
            ax.step(x, y, where="post", color=colour, linewidth=0.6)
        ax.text(
            0.005,
            0.92,
            label + (" (+ above, - below)" if lower is not None else ""),
            transform=ax.transAxes,
            va="top",
            fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1.5},
        )
        ax.set_ylabel(UNITS[method], fontsize=8)
        ax.tick_params(labelsize=8)
        if lower is not None:
            ax.axhline(0, color="0.2", linewidth=0.5)
        ax.margins(x=0)
    axes[-1].set_xlim(start, end)
    axes[-1].xaxis.set_major_formatter(lambda value, _pos: f"{int(value):,}")
    axes[-1].set_xlabel(
        f"{chrom} position (0-based; region {format_region(chrom, start, end)}, end exclusive)",
        fontsize=9,
    )
    binned = f"; maximum per {bin_size:,} bp bin" if bin_size > 1 else ""
    fig.suptitle(
        f"{bs.store_path.name}  {format_region(chrom, start, end)}  ({length:,} bp)\n"
        f"{NORMALISATION_NOTES[method]}{binned}",
        fontsize=10,
    )
    fig.subplots_adjust(
        left=0.07,
        right=0.975,
        top=1 - 55 / px_h,
        bottom=60 / px_h,
        hspace=0.12,
    )
    save_figure(fig, out, picture_format)
    return PlotInfo(Path(out), chrom, start, end, labels, px_w, px_h, bin_size)
