"""The command that shows and sets the samples' scale factors: scale-factors."""

from __future__ import annotations

from pathlib import Path

import click

from bamstore.cli.common import command_options, log


@click.command("scale-factors")
@click.argument("store", type=click.Path(path_type=Path))
@click.option(
    "--set",
    "factors_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Replace the factors of the samples listed in this file, one sample<TAB>factor line "
    "each (NA or empty: no factor), in one atomic rewrite of the store's zarr.json; the other "
    "samples keep theirs. Any problem changes nothing.",
)
@command_options
def scale_factors(store: Path, factors_file: Path | None) -> None:
    """Print each sample's scale factor (sample<TAB>factor, NA where unset), or set them.

    Factors (a spike-in factor, for example) are what --normalise scale multiplies a sample's
    coverage by; extract --scale-factor and a samplesheet's scale_factor column give them too.
    """
    from bamstore.engine.scale_factors import read_factor_file, scale_factors, set_scale_factors
    from bamstore.engine.store import read_store_info

    if factors_file is None:
        for name, factor in scale_factors(read_store_info(store).attrs).items():
            click.echo(f"{name}\t{'NA' if factor is None else repr(factor)}")
        return
    lines, problems = read_factor_file(factors_file)
    set_scale_factors(
        store,
        {line.sample: line.factor for line in lines},
        where={line.sample: line.where for line in lines},
        problems=problems,
    )
    log.info("%s: scale factors of %d sample(s) set from %s", store, len(lines), factors_file)
