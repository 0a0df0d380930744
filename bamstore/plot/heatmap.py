"""`bamstore profile --plot`: per-sample mean profile above a heatmap (deeptools plotHeatmap).

One column per sample: the mean over regions of each bin on top, and below it every region as a
row, sorted by its mean signal over all samples and bins (highest first, the same order in every
column, as plotHeatmap's default `--sortUsing mean`), on one colour scale from 0 to the 99th
percentile. Drawn with the same bare matplotlib `Figure` as `bamstore plot` (never pyplot);
matplotlib is the `plot` extra.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bamstore.plot import DPI, UNITS, _matplotlib, picture_output, save_figure
from bamstore.query.profile import Profile

COLUMN_WIDTH = 3.0  # inches per sample
HEIGHT = 9.0  # inches


def region_order(profile: Profile) -> np.ndarray:
    """Regions by mean signal over samples and bins, highest first (NaN last, ties by input)."""
    if profile.matrix.shape[1] == 0:
        return np.zeros(0, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        score = np.nanmean(profile.matrix, axis=(0, 2)) if profile.matrix.size else np.zeros(0)
    score = np.where(np.isnan(score), -np.inf, score)
    return np.argsort(-score, kind="stable")


def plot_profile(profile: Profile, out: str | os.PathLike[str]) -> Path:
    """Draw `profile` to `out` (png, svg or pdf by suffix; png without one)."""
    picture_format = picture_output(out)
    figure_cls, canvas_cls = _matplotlib()
    from matplotlib.ticker import MaxNLocator

    n = len(profile.samples)
    fig = figure_cls(figsize=(COLUMN_WIDTH * n + 1.2, HEIGHT), dpi=DPI)
    canvas_cls(fig)
    grid = fig.add_gridspec(
        2, n + 1, height_ratios=[1, 4], width_ratios=[1] * n + [0.06], hspace=0.08, wspace=0.25
    )
    order = region_order(profile)
    sorted_matrix = profile.matrix[:, order, :]
    finite = sorted_matrix[np.isfinite(sorted_matrix)]
    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    edges = np.append(profile.bin_starts, profile.downstream)
    centres = (edges[:-1] + edges[1:]) / 2
    unit = UNITS[profile.normalise]
    top_axes = []
    image = None
    for i, name in enumerate(profile.samples):
        top = fig.add_subplot(grid[0, i], sharey=top_axes[0] if top_axes else None)
        top_axes.append(top)
        with np.errstate(invalid="ignore"):
            mean = (
                np.nanmean(profile.matrix[i], axis=0)
                if profile.matrix.shape[1]
                else np.zeros(len(centres))
            )
        top.plot(centres, mean, color=f"C{i % 10}", linewidth=1.2)
        top.axvline(0, color="0.6", linewidth=0.6, linestyle="--")
        top.set_title(name, fontsize=10)
        top.set_xlim(edges[0], edges[-1])
        top.tick_params(labelsize=8, labelbottom=False)
        if i == 0:
            top.set_ylabel(f"mean {unit}", fontsize=8)
        heat = fig.add_subplot(grid[1, i])
        image = heat.imshow(
            sorted_matrix[i] if sorted_matrix.shape[1] else np.zeros((1, len(centres))),
            aspect="auto",
            interpolation="nearest",
            cmap="Reds",
            vmin=0,
            vmax=vmax,
            extent=(edges[0], edges[-1], sorted_matrix.shape[1], 0),
        )
        heat.axvline(0, color="0.3", linewidth=0.5, linestyle="--")
        heat.yaxis.set_major_locator(MaxNLocator(integer=True))
        heat.tick_params(labelsize=8)
        heat.set_xlabel("bp from reference point", fontsize=8)
        if i == 0:
            heat.set_ylabel(f"{sorted_matrix.shape[1]:,} regions, by mean signal", fontsize=8)
        else:
            heat.tick_params(labelleft=False)
    if image is not None:
        bar = fig.add_subplot(grid[1, n])
        fig.colorbar(image, cax=bar)
        bar.tick_params(labelsize=8)
        bar.set_ylabel(unit, fontsize=8)
    fig.suptitle(
        f"{Path(profile.store).name}: {profile.upstream:,} bp up, {profile.downstream:,} bp "
        f"down, {profile.bin_size:,} bp bins" + (f", {profile.strand}" if profile.strand else ""),
        fontsize=10,
    )
    save_figure(fig, out, picture_format)
    return Path(out)
