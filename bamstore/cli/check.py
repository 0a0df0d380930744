"""The commands that check stores and samplesheets: validate, inspect, check-samplesheet."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bamstore.cli.common import STORE_HELP, command_options, log
from bamstore.errors import InputError


@click.command(epilog=STORE_HELP)
@click.argument("store")
@click.option(
    "--quick",
    is_flag=True,
    help="Structure, completeness and the presence of every chunk the record lists (no decoding).",
)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@command_options
def validate(store: str, quick: bool, threads: int, as_json: bool) -> None:
    """Check a store against the layout and its own recorded totals; exit 0 only if sound."""
    from bamstore.engine.validate import validate_store

    report = validate_store(store, quick=quick, threads=threads)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "store": str(store),
                    "ok": report.ok,
                    "quick": quick,
                    "problems": report.problems,
                    "samples": report.samples,
                    "contigs": report.contigs,
                    "chunks_decoded": report.chunks_decoded,
                    "notes": report.notes,
                },
                indent=2,
            )
        )
    else:
        for problem in report.problems:
            click.echo(f"{store}: {problem}", err=True)
        for note in report.notes:
            log.info("%s: %s", store, note)
    if not report.ok:
        raise InputError(
            store,
            f"is not sound: {len(report.problems)} problem(s) found",
            "rebuild the store (or the samples named above)",
        )
    if not as_json:
        what = "structure" if quick else f"structure and content ({report.chunks_decoded} chunks)"
        click.echo(
            f"{store}: OK — {report.samples} samples, {report.contigs} contigs, {what} checked"
        )


@click.command(epilog=STORE_HELP)
@click.argument("store")
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable summary (stable; for tests)."
)
@click.option(
    "--html",
    "html_out",
    default=None,
    help="Also write the summary and a library-size bar chart as one HTML page.",
)
@command_options
def inspect(store: str, as_json: bool, html_out: str | None) -> None:
    """Samples, contigs, library sizes, metadata columns and the settings used."""
    from bamstore.engine.outputs import file_output, output_target
    from bamstore.engine.store import read_store_info
    from bamstore.query.inspect import format_summary, summarize

    if html_out is not None:  # standard output carries the summary
        output_target(html_out, stdout=False)
    info = read_store_info(store)
    summary = summarize(info)
    if html_out is not None:
        from bamstore.query.report import html_report

        page = html_report(summary, f"bamstore store {Path(store.rstrip('/')).name}")
        with file_output(html_out, stdout=False) as staged:
            staged.write_text(page, encoding="utf-8")
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        click.echo(
            format_summary(summary, str(store), info.record.version if info.record else None)
        )


@click.command("check-samplesheet")
@click.argument("samplesheets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    default=None,
    help="Also write the checked sheet as CSV: absolute paths, columns sample,bam,bai,"
    "strandedness,scale_factor then the metadata columns, samples in their order (what the "
    "pipeline reads).",
)
@click.option(
    "--no-check-files",
    "check_files",
    flag_value=False,
    default=True,
    help="Skip the checks that the bam and bai files exist and can be read (the pipeline "
    "checks them where the files are visible; every other rule still applies).",
)
@click.option(
    "--new-samples-for",
    "cohort",
    type=click.Path(path_type=Path),
    default=None,
    help="An existing store the samples are to be added to: --out lists only the samples it "
    "does not hold yet (the pipeline's --append_to extracts those).",
)
@command_options
def check_samplesheet(
    samplesheets: tuple[Path, ...], out: str | None, check_files: bool, cohort: Path | None
) -> None:
    """Report every problem of the samplesheet(s) at once, with line numbers."""
    from bamstore.engine.outputs import output_target
    from bamstore.engine.samplesheet import read_samplesheets, without_samples, write_normalised

    if out is not None:  # standard output carries the report
        output_target(out, inputs=samplesheets, stdout=False)
    sheet = read_samplesheets(list(samplesheets), check_files=check_files)
    if cohort is not None:
        from bamstore.engine.store import read_store_info

        stored = read_store_info(cohort).sample_names
        sheet, skipped = without_samples(sheet, stored)
        log.info(
            "%d of the samples are already in %s and are left out%s",
            len(skipped),
            cohort,
            f": {', '.join(skipped[:10])}{' ...' if len(skipped) > 10 else ''}" if skipped else "",
        )
    if out is not None:
        write_normalised(sheet, out)
    stranded = sum(1 for r in sheet.rows if r.strandedness)
    factors = sum(1 for r in sheet.rows if r.scale_factor is not None)
    with_factors = f", {factors} with a scale factor" if factors else ""
    click.echo(
        f"OK: {len(sheet.rows)} samples ({stranded} stranded{with_factors}), metadata columns: "
        f"{', '.join(sheet.metadata_columns) or '(none)'}"
    )
