"""The `bamstore` command line: extract, merge, build, validate, inspect, check-samplesheet,
plot, and the reading commands summarize, profile and export.

Exit codes: 0 success, 2 bad input or usage (one line per problem: file, problem, fix), 1
internal error. Tracebacks only with --debug. Progress and warnings go to stderr.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bamstore import __version__, layout
from bamstore.errors import BamstoreError, InputError, InputErrors

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("bamstore")


def _configure_logging(quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)

    class _Format(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            prefix = (
                "warning: "
                if record.levelno == logging.WARNING
                else ("error: " if record.levelno >= logging.ERROR else "")
            )
            return prefix + record.getMessage()

    handler.setFormatter(_Format())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if not debug:  # htslib's own [E::...] lines: bamstore reports those problems itself
        from bamstore.bam_input import quiet_htslib

        quiet_htslib()


def command_options(func: F) -> F:
    """--debug and --quiet on every command, and the error contract around it."""

    @click.option("--debug", is_flag=True, help="Show tracebacks and debug messages.")
    @click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")
    @functools.wraps(func)
    def wrapper(*args: Any, debug: bool, quiet: bool, **kwargs: Any) -> Any:
        _configure_logging(quiet, debug)
        try:
            return func(*args, **kwargs)
        except BamstoreError as exc:
            if debug:
                raise
            lines = exc.problems if isinstance(exc, InputErrors) else [exc]
            if isinstance(exc, InputErrors) and exc.header and len(lines) > 1:
                click.echo(f"bamstore: error: {exc.header}", err=True)
            for problem in lines:
                text = problem.line() if isinstance(problem, InputError) else str(problem)
                click.echo(f"bamstore: error: {text}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("bamstore: interrupted", err=True)
            sys.exit(130)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:
            if debug:
                raise
            if (
                isinstance(exc, OSError)
                and exc.errno in _SPACE_ERRNOS
                and func.__name__ in ("extract", "merge", "build")  # staged, published by rename
            ):
                # Out of space: name the output, not the temporary file (already removed);
                # merge --replace writes over its first store.
                output = kwargs.get("out") or next(iter(kwargs.get("parts") or ()), "output")
                click.echo(
                    f"bamstore: error: {output}: cannot be written: {exc.strerror}; "
                    "nothing was published and the partial output was removed; "
                    f"fix: {_SPACE_ERRNOS[exc.errno]}, then re-run",
                    err=True,
                )
                sys.exit(2)
            if isinstance(exc, OSError) and exc.errno is not None and exc.filename:
                click.echo(f"bamstore: error: {exc.filename}: {exc.strerror}", err=True)
                sys.exit(2 if exc.errno in _USER_ERRNOS else 1)
            click.echo(
                f"bamstore: internal error: {type(exc).__name__}: {exc} (re-run with "
                "--debug for the traceback and report it)",
                err=True,
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


# Filesystem errors that are the user's to fix (disk full, quota, permissions, file size limit).
_USER_ERRNOS = {28, 122, 13, 1, 27, 30}
_SPACE_ERRNOS = {
    28: "free space on that filesystem or choose another --out",  # ENOSPC
    122: "free space within your quota or choose another --out",  # EDQUOT
    27: "raise the file size limit (ulimit -f) or choose another --out",  # EFBIG
}


def _parse_flags(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        flags = int(value, 0)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number (use e.g. 0x704 or 1796)") from None
    if not 0 <= flags <= 0xFFFF:
        raise click.BadParameter("must be between 0 and 0xFFFF")
    return flags


def _parse_shift(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.split(",")
    try:
        plus, minus = (int(part) for part in parts)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not two integers P,M (use e.g. 4,-5 or 0,0)"
        ) from None
    return plus, minus


out_option = click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output store, NAME.zarr (missing folders above it are created).",
)
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace an existing --out (only a store bamstore wrote)."
)
copy_option = click.option(
    "--copy", is_flag=True, help="Copy chunk files instead of hard-linking them."
)


def extract_options(func: F) -> F:
    """Options shared by extract and build (the pipeline params of the same names)."""
    decorators = [
        click.option(
            "--chromosomes",
            default="primary",
            show_default=True,
            help="'primary': the chromosomes and organelles of the assembly, in any naming "
            "style (chr1/1, chrX, chrM/MT, chrI..chrXVI, chr2L, Mito, MtDNA, Pt, Chr1, ChrC), "
            "without unplaced, unlocalized, alt, fix, decoy, EBV, HLA or spike-in pieces; "
            "'all'; or a comma-separated list. Left-out contigs holding reads are reported.",
        ),
        click.option(
            "--chromsizes",
            type=click.Path(path_type=Path),
            default=None,
            help="name<TAB>length file; its lengths must match the BAM header (where the "
            "header says LN:0, the file gives the real length).",
        ),
        click.option(
            "--min-mapq",
            type=click.IntRange(0, 255),
            default=0,
            show_default=True,
            help="Skip reads with MAPQ below this (samtools depth -Q).",
        ),
        click.option(
            "--exclude-flags",
            default=f"{layout.DEFAULT_EXCLUDE_FLAGS:#x}",
            show_default=True,
            callback=_parse_flags,
            help="Skip reads with any of these SAM flags. The value replaces the default 0x704 "
            "(unmapped, secondary, QC-fail, duplicate): F counts as `samtools depth -g 0x704 -G F` "
            "(samtools' -G alone adds to its default). Unmapped reads (0x4) never count.",
        ),
        click.option(
            "--count-deletions",
            is_flag=True,
            help="Count deletions (CIGAR D) as covered (samtools depth -J).",
        ),
        click.option(
            "--mode",
            type=click.Choice(["reads", "fragments", "cutsites"]),
            default="reads",
            show_default=True,
            help="What each read adds. reads: its aligned bases (samtools depth). fragments: a "
            "proper pair's whole insert [pos, pos+TLEN) once, from the mate with TLEN > 0 "
            "(improper pairs add nothing), a single-end read its alignment span or --extend "
            "bases (bedtools genomecov -pc, mosdepth --fragment-mode). cutsites: one count at "
            "the 5' end shifted by --shift (bedtools genomecov -5 with 0,0). fragments and "
            "cutsites count primary records only.",
        ),
        click.option(
            "--extend",
            type=click.IntRange(1),
            default=None,
            help="--mode fragments: single-end reads cover N bases from their 5' end in their "
            "direction, longer reads shortened (deeptools --extendReads N); pairs use TLEN.",
        ),
        click.option(
            "--shift",
            metavar="P,M",
            default=None,
            callback=_parse_shift,
            help="--mode cutsites: the cut site is start+P for forward reads and end-1+M for "
            "reverse reads [default: 4,-5, Tn5 as deeptools --ATACshift; 0,0: plain 5' ends].",
        ),
        click.option(
            "--chunk-len",
            type=click.IntRange(1),
            default=layout.DEFAULT_CHUNK_LEN,
            show_default=True,
            help="Positions per chunk along each contig.",
        ),
        click.option(
            "--compression",
            type=click.Choice(sorted(layout.COMPRESSION_PROFILES)),
            default="default",
            show_default=True,
            help="default: blosc zstd 3; fast: zstd 1; none (as QuantNado).",
        ),
        click.option(
            "--shard/--no-shard",
            default=layout.SHARD_BY_DEFAULT,
            show_default=True,
            help="Store each sample's row of a contig as one file (a Zarr v3 shard of "
            "(1, chunk-len) chunks, which QuantNado reads unchanged) instead of one file per "
            "chunk: at most samples x contigs files (docs/scaling.md).",
        ),
        click.option(
            "--reference",
            type=click.Path(path_type=Path),
            default=None,
            help="Reference FASTA, needed for CRAM input.",
        ),
        click.option(
            "--threads",
            type=click.IntRange(1),
            default=1,
            show_default=True,
            help="Worker threads per sample for decompression and compression.",
        ),
        click.option(
            "--tmp-dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Scratch folder for indexes built on the fly (default: $TMPDIR).",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _extract_settings(kw: dict[str, Any], strandedness: str = ""):
    from bamstore.extract import ExtractOptions
    from bamstore.kernel import CountingMode, ReadFilter

    return ExtractOptions(
        read_filter=ReadFilter(
            exclude_flags=kw["exclude_flags"],
            min_mapq=kw["min_mapq"],
            count_deletions=kw["count_deletions"],
        ),
        counting=CountingMode(kw["mode"], extend=kw["extend"], shift=kw["shift"]),
        chromosomes=kw["chromosomes"],
        chromsizes=kw["chromsizes"],
        chunk_len=kw["chunk_len"],
        compression=kw["compression"],
        strandedness=strandedness,
        reference=kw["reference"],
        threads=kw["threads"],
        tmp_dir=kw["tmp_dir"],
        shard=kw["shard"],
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="bamstore")
def main() -> None:
    """Many BAM files into one Zarr store of per-base coverage (QuantNado BamStore layout)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's BLAS threads are never used


@main.command()
@click.option(
    "--bam",
    required=True,
    type=click.Path(path_type=Path, allow_dash=True),
    help="Coordinate-sorted BAM (or CRAM); '-' reads a BAM stream from standard input "
    "(no index needed).",
)
@click.option("--sample", required=True, help="Sample name (ASCII letters, digits, ._+-).")
@out_option
@click.option(
    "--index",
    type=click.Path(path_type=Path),
    default=None,
    help="Index of the BAM; found beside it or built in scratch if not given.",
)
@click.option(
    "--stranded",
    type=click.Choice(["U", "F", "R"]),
    default=None,
    help="Also write _fwd/_rev arrays with QuantNado's strand rules.",
)
@click.option(
    "--source-path",
    default=None,
    help="Path to record as the sample's source instead of --bam's, e.g. the samplesheet's "
    "path of a staged copy; size, mtime and header are still read from --bam.",
)
@overwrite_option
@extract_options
@command_options
def extract(
    bam: Path,
    sample: str,
    out: Path,
    index: Path | None,
    stranded: str | None,
    source_path: str | None,
    overwrite: bool,
    **kw: Any,
) -> None:
    """One BAM → one per-sample store (the consolidated layout with one sample)."""
    from bamstore.extract import extract_sample

    result = extract_sample(
        bam,
        sample,
        out,
        _extract_settings(kw, stranded or ""),
        index=index,
        overwrite=overwrite,
        source_path=source_path,
    )
    log.info(
        "%s: %d reads on %d contigs in %.1f s → %s",
        sample,
        result.total_reads,
        len(result.contigs),
        result.seconds,
        out,
    )


@main.command()
@click.argument("parts", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output store, NAME.zarr (missing folders above it are created); not with --replace.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Add samples to an existing cohort in place: the first PARTS store is replaced by "
    "the merge, in one atomic swap once it is complete and checked (its files are linked, "
    "not copied; it survives any failure).",
)
@click.option(
    "--parts-file",
    type=click.Path(path_type=Path),
    default=None,
    help="File listing one per-sample store per line (instead of, or after, PARTS).",
)
@click.option(
    "--metadata",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV/TSV of per-sample metadata (a samplesheet works).",
)
@click.option(
    "--sample-column",
    default="sample",
    show_default=True,
    help="Column of --metadata that holds the sample names.",
)
@click.option(
    "--shard/--no-shard",
    default=None,
    help="One file per sample row per contig (Zarr v3 sharding), or one file per chunk; parts "
    "stored the other way are converted as bytes [default: as the first store].",
)
@overwrite_option
@copy_option
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Threads for placing and checking rows.",
)
@command_options
def merge(
    parts: tuple[Path, ...],
    out: Path | None,
    replace: bool,
    parts_file: Path | None,
    metadata: Path | None,
    sample_column: str,
    shard: bool | None,
    overwrite: bool,
    copy: bool,
    threads: int,
) -> None:
    """Per-sample stores → one consolidated store (sample order as given).

    Stores that already hold several samples merge like per-sample ones, so a cohort grows by
    merging it with the new samples' stores: `--out NEW.zarr COHORT.zarr NEW_PARTS...` writes a
    new store, `--replace COHORT.zarr NEW_PARTS...` replaces the cohort in place.
    """
    from bamstore.merge import append_samples, merge_stores, read_parts_file
    from bamstore.samplesheet import read_metadata_table

    paths = list(parts) + (read_parts_file(parts_file) if parts_file else [])
    if replace and (out is not None or overwrite):
        raise click.UsageError("--replace publishes at the first store's path: omit --out")
    if not replace and out is None:
        raise click.UsageError("give --out NAME.zarr, or --replace to update the first store")
    if replace and not paths:
        raise click.UsageError("--replace needs the store to add samples to, then the parts")
    tables = [read_metadata_table(metadata, sample_column)] if metadata else []
    merge_args: dict[str, Any] = {
        "metadata_tables": tables,
        "metadata_source": str(metadata),
        "copy": copy,
        "threads": threads,
        "shard": shard,
    }
    if replace:
        result = append_samples(paths[0], paths[1:], **merge_args)
    else:
        assert out is not None
        result = merge_stores(paths, out, overwrite=overwrite, **merge_args)
    for part in result.reordered:
        log.info(
            "%s lists its contigs in another order than %s; the store follows %s's order",
            part,
            paths[0],
            paths[0].name,
        )
    files = "shard files" if result.sharded else "chunk files"
    converted = f", {result.rows_converted} rows converted" if result.rows_converted else ""
    log.info(
        "merged %d samples into %s in %.1f s (%d %s linked, %d copied%s)",
        len(result.sample_names),
        result.out,
        result.seconds,
        result.chunks_linked,
        files,
        result.chunks_copied,
        converted,
    )


@main.command()
@click.option(
    "--input",
    "inputs",
    required=True,
    multiple=True,
    type=click.Path(path_type=Path),
    help="Samplesheet (CSV/TSV); repeat for several.",
)
@out_option
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Samples extracted at the same time (threads of this process).",
)
@overwrite_option
@click.option(
    "--resume",
    is_flag=True,
    help="Reuse per-sample stores of an earlier failed run whose BAM and settings match.",
)
@click.option("--keep-parts", is_flag=True, help="Keep the per-sample stores (.NAME.zarr.parts).")
@copy_option
@extract_options
@command_options
def build(
    inputs: tuple[Path, ...],
    out: Path,
    jobs: int,
    overwrite: bool,
    resume: bool,
    keep_parts: bool,
    copy: bool,
    **kw: Any,
) -> None:
    """The whole job on one machine: extract every sample in parallel, then merge."""
    from bamstore.build import build_store, summary_lines

    result = build_store(
        list(inputs),
        out,
        _extract_settings(kw),
        jobs=jobs,
        overwrite=overwrite,
        resume=resume,
        keep_parts=keep_parts,
        copy=copy,
    )
    for line in summary_lines(result):
        log.info("%s", line)


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--quick", is_flag=True, help="Structure and completeness only (no decoding).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@command_options
def validate(store: Path, quick: bool, threads: int, as_json: bool) -> None:
    """Check a store against the layout and its own recorded totals; exit 0 only if sound."""
    from bamstore.validate import validate_store

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
                },
                indent=2,
            )
        )
    else:
        for problem in report.problems:
            click.echo(f"{store}: {problem}", err=True)
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


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable summary (stable; for tests)."
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the summary and a library-size bar chart as one HTML page.",
)
@command_options
def inspect(store: Path, as_json: bool, html_out: Path | None) -> None:
    """Samples, contigs, library sizes, metadata columns and the settings used."""
    from bamstore.inspect_store import format_summary, summarize
    from bamstore.store import read_store_info

    info = read_store_info(store)
    summary = summarize(info)
    if html_out is not None:
        from bamstore.report import html_report

        html_out.write_text(html_report(summary, f"bamstore store {store.name}"))
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        click.echo(
            format_summary(summary, str(store), info.record.version if info.record else None)
        )


@main.command("check-samplesheet")
@click.argument("samplesheets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the checked sheet as CSV: absolute paths, columns sample,bam,bai,"
    "strandedness then the metadata columns, samples in their order (what the pipeline reads).",
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
    samplesheets: tuple[Path, ...], out: Path | None, check_files: bool, cohort: Path | None
) -> None:
    """Report every problem of the samplesheet(s) at once, with line numbers."""
    from bamstore.samplesheet import read_samplesheets, without_samples, write_normalised

    sheet = read_samplesheets(list(samplesheets), check_files=check_files)
    if cohort is not None:
        from bamstore.store import read_store_info

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
    click.echo(
        f"OK: {len(sheet.rows)} samples ({stranded} stranded), metadata columns: "
        f"{', '.join(sheet.metadata_columns) or '(none)'}"
    )


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
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
    "--out", "-o", required=True, type=click.Path(path_type=Path), help="Image file (.png/.svg)."
)
@click.option("--width", type=click.IntRange(200), default=None, help="Pixels [default: 1200].")
@click.option(
    "--height", type=click.IntRange(100), default=None, help="Pixels [default: 130 per sample]."
)
@command_options
def plot(
    store: Path,
    region: str,
    samples: str | None,
    normalise: str | None,
    strand: bool,
    out: Path,
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


# ---------------------------------------------------------------------------- reading (query)

STORE_HELP = "STORE is a path or an http(s):// or s3:// URL (read-only; needs bamstore[remote])."
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


def _output_file(out: str) -> str:
    """An output file's folder must exist (checked before any work)."""
    if out != "-":
        parent = Path(out).parent
        if not parent.is_dir():
            raise InputError(out, "its folder does not exist", "create it, or choose another -o")
    return out


@main.command(epilog=STORE_HELP)
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
    rows = write_tsv(summary, _output_file(out))
    log.info(
        "%s: %d region(s) x %d sample(s), %s%s (%d chunk(s) read)",
        out,
        rows,
        len(summary.samples),
        stat,
        "" if summary.normalise is None else f", {summary.normalise}",
        summary.chunks_read,
    )


@main.command(epilog=STORE_HELP)
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
@click.option("--out", "-o", required=True, help="Output matrix, MATRIX.npz.")
@click.option(
    "--plot",
    "plot_out",
    default=None,
    help="Also draw per-sample mean profiles above a heatmap (png/svg/pdf; bamstore[plot]).",
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

    _output_file(out)
    if plot_out is not None:
        _output_file(plot_out)
        from bamstore.plot import _matplotlib

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
        "%s: %d sample(s) x %d region(s) x %d bin(s) of %d bp (%d chunk(s) read)",
        out,
        samples_n,
        regions_n,
        bins_n,
        bin_size,
        result.chunks_read,
    )
    if plot_out is not None:
        from bamstore.query.heatmap import plot_profile

        plot_profile(result, plot_out)
        log.info("%s: heatmap of %d region(s)", plot_out, regions_n)


@main.command(epilog=STORE_HELP)
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
@click.option("--out", "-o", required=True, help="Output file (.bw / .bedGraph).")
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

    result = export_track(
        _open_source(store),
        sample,
        _output_file(out),
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


if __name__ == "__main__":  # pragma: no cover
    main()
