"""The commands that read stores: plot, and summarize, profile and export (`bamstore.query`)."""

from __future__ import annotations

from pathlib import Path

import click

from bamstore.cli.common import STORE_HELP, command_options, log
from bamstore.errors import InputError


@click.command(epilog=STORE_HELP)
@click.argument("store")
@click.option(
    "--region",
    required=True,
    help="CHROM:START-END, 0-based start and end exclusive as in QuantNado's extract_region "
    "(commas allowed, e.g. chr1:10,000-20,000), or CHROM for the whole contig.",
)
@click.option("--samples", default=None, help="Comma-separated sample names (default: all).")
@click.option(
    "--normalise",
    "--normalize",
    type=click.Choice(["cpm", "rpkm"], case_sensitive=False),
    default=None,
    help="Divide by library size (metadata/total_reads): CPM, or RPKM per base.",
)
@click.option(
    "--strand", is_flag=True, help="Stranded samples: + strand above the axis, - strand below."
)
@click.option(
    "--out",
    "-o",
    required=True,
    help="Picture: .png, .svg or .pdf (a name without a suffix, or -: PNG).",
)
@click.option("--width", type=click.IntRange(200), default=None, help="Pixels [default: 1200].")
@click.option(
    "--height", type=click.IntRange(100), default=None, help="Pixels [default: 130 per sample]."
)
@command_options
def plot(
    store: str,
    region: str,
    samples: str | None,
    normalise: str | None,
    strand: bool,
    out: str,
    width: int | None,
    height: int | None,
) -> None:
    """Coverage of a region, one track per sample on shared axes (needs bamstore[plot])."""
    from bamstore.plot import plot_region

    names = [s.strip() for s in samples.split(",") if s.strip()] if samples else None
    info = plot_region(
        store,
        region,
        out,
        samples=names,
        normalise=normalise,
        strand=strand,
        width=width,
        height=height,
    )
    log.info(
        "%s: %s, %d sample(s), %dx%d px",
        info.path,
        f"{info.chrom}:{info.start:,}-{info.end:,}",
        len(info.samples),
        info.width,
        info.height,
    )


normalise_option = click.option(
    "--normalise",
    "--normalize",
    type=click.Choice(["none", "cpm", "rpkm"], case_sensitive=False),
    default="none",
    show_default=True,
    help="Divide by library size (metadata/total_reads) / 1e6 (cpm); rpkm also per kb.",
)
samples_option = click.option(
    "--samples", default=None, help="Comma-separated sample names [default: all]."
)
strand_option = click.option(
    "--strand",
    type=click.Choice(["fwd", "rev"]),
    default=None,
    help="Read the _fwd/_rev arrays of stranded samples [default: total coverage; with a "
    "strand, all stranded samples].",
)
skip_missing_option = click.option(
    "--skip-missing",
    is_flag=True,
    help="Skip (and count in a warning) BED lines on contigs the store lacks or past a "
    "contig's end, instead of stopping with an error.",
)
threads_option = click.option(
    "--threads", type=click.IntRange(1), default=1, show_default=True, help="Reading threads."
)


def _open_source(store: str):
    from bamstore.query import CoverageSource

    return CoverageSource.open(store)


def _check_output(out: str, *inputs: str) -> None:
    """Refuse an output that cannot or must not be written, before any work (`engine.outputs`:
    `-` is standard output; a folder, or one of the command's `inputs`, is refused)."""
    from bamstore.engine.outputs import output_target

    output_target(out, inputs=inputs)


@click.command(epilog=STORE_HELP)
@click.argument("store")
@click.option(
    "--bed",
    required=True,
    help="BED of regions (0-based, end exclusive; extra columns allowed; - reads stdin).",
)
@click.option(
    "--stat",
    type=click.Choice(["mean", "sum", "max", "min"]),
    default="mean",
    show_default=True,
    help="Statistic over each region's positions.",
)
@normalise_option
@samples_option
@strand_option
@skip_missing_option
@threads_option
@click.option(
    "--out",
    "-o",
    required=True,
    help="Output TSV (chrom start end name, one column per sample); - for stdout.",
)
@command_options
def summarize(
    store: str,
    bed: str,
    stat: str,
    normalise: str,
    samples: str | None,
    strand: str | None,
    skip_missing: bool,
    threads: int,
    out: str,
) -> None:
    """One row per BED region, one column per sample (deeptools multiBigwigSummary BED-file)."""
    from bamstore.query import summarize as run_summary
    from bamstore.query import write_tsv

    _check_output(out, bed)
    summary = run_summary(
        _open_source(store),
        bed,
        stat=stat,
        normalise=normalise,
        samples=samples,
        strand=strand,
        skip_missing=skip_missing,
        threads=threads,
    )
    rows = write_tsv(summary, out)
    log.info(
        "%s: %d region(s) x %d sample(s), %s%s (%d block(s) decoded)",
        out,
        rows,
        len(summary.samples),
        stat,
        "" if summary.normalise is None else f", {summary.normalise}",
        summary.blocks_read,
    )


@click.command(epilog=STORE_HELP)
@click.argument("store")
@click.option(
    "--bed",
    required=True,
    help="BED of reference points: start on + and ., end on - (6th column); - reads stdin.",
)
@click.option("--upstream", type=click.IntRange(0), required=True, help="Bases upstream.")
@click.option("--downstream", type=click.IntRange(0), required=True, help="Bases downstream.")
@click.option(
    "--bin",
    "bin_size",
    type=click.IntRange(1),
    required=True,
    help="Bin size; must divide --upstream and --downstream.",
)
@normalise_option
@samples_option
@strand_option
@skip_missing_option
@threads_option
@click.option("--out", "-o", required=True, help="Output matrix, MATRIX.npz; - for stdout.")
@click.option(
    "--plot",
    "plot_out",
    default=None,
    help="Also draw per-sample mean profiles above a heatmap (.png/.svg/.pdf; bamstore[plot]).",
)
@command_options
def profile(
    store: str,
    bed: str,
    upstream: int,
    downstream: int,
    bin_size: int,
    normalise: str,
    samples: str | None,
    strand: str | None,
    skip_missing: bool,
    threads: int,
    out: str,
    plot_out: str | None,
) -> None:
    """Mean signal in bins around reference points (deeptools computeMatrix reference-point)."""
    from bamstore.query import profile as run_profile

    _check_output(out, bed)
    if plot_out is not None:
        from bamstore.plot import _matplotlib, picture_output

        if Path(plot_out).absolute() == Path(out).absolute():
            raise InputError(plot_out, "is also -o, the matrix", "give --plot another name")
        picture_output(plot_out)
        _matplotlib()  # a missing extra is reported before the work, not after
    result = run_profile(
        _open_source(store),
        bed,
        upstream=upstream,
        downstream=downstream,
        bin_size=bin_size,
        normalise=normalise,
        samples=samples,
        strand=strand,
        skip_missing=skip_missing,
        threads=threads,
    )
    result.save_npz(out)
    samples_n, regions_n, bins_n = result.matrix.shape
    log.info(
        "%s: %d sample(s) x %d region(s) x %d bin(s) of %d bp (%d block(s) decoded)",
        out,
        samples_n,
        regions_n,
        bins_n,
        bin_size,
        result.blocks_read,
    )
    if plot_out is not None:
        from bamstore.plot.heatmap import plot_profile

        plot_profile(result, plot_out)
        log.info("%s: heatmap of %d region(s)", plot_out, regions_n)


@click.command(epilog=STORE_HELP)
@click.argument("store")
@click.option("--sample", required=True, help="The sample to export.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["bigwig", "bedgraph"], case_sensitive=False),
    required=True,
    help="bigwig (needs bamstore[bigwig]) or bedgraph (text).",
)
@normalise_option
@click.option(
    "--bin",
    "bin_size",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Mean of each N positions (1: every base).",
)
@click.option(
    "--chromosomes", default=None, help="Comma-separated contigs [default: all, store order]."
)
@click.option(
    "--strand",
    type=click.Choice(["fwd", "rev"]),
    default=None,
    help="Export the sample's _fwd or _rev coverage (stranded samples).",
)
@click.option(
    "--skip-zeros",
    is_flag=True,
    help="Leave zero runs out (of both formats alike) [default: written as 0].",
)
@threads_option
@click.option("--out", "-o", required=True, help="Output file (.bw / .bedGraph); - for stdout.")
@command_options
def export(
    store: str,
    sample: str,
    fmt: str,
    normalise: str,
    bin_size: int,
    chromosomes: str | None,
    strand: str | None,
    skip_zeros: bool,
    threads: int,
    out: str,
) -> None:
    """One sample's coverage as a bigWig or bedGraph track (like deeptools bamCoverage)."""
    from bamstore.query import export_track

    _check_output(out)
    result = export_track(
        _open_source(store),
        sample,
        out,
        fmt=fmt,
        normalise=normalise,
        bin_size=bin_size,
        chromosomes=chromosomes,
        strand=strand,
        skip_zeros=skip_zeros,
        threads=threads,
    )
    log.info(
        "%s: %s of %s, %d contig(s), %d run(s)",
        out,
        result.format,
        result.sample,
        len(result.contigs),
        result.runs,
    )
