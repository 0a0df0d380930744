"""The commands that write stores: extract, merge, build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bamstore import layout
from bamstore.cli.common import F, command_options, copy_option, log, out_option, overwrite_option
from bamstore.errors import InputError


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
            "--min-fragment-len",
            type=int,
            default=None,
            metavar="N",
            help="--mode fragments or cutsites: count only proper pairs with |TLEN| >= N "
            "(both mates; single-end reads are not counted).",
        ),
        click.option(
            "--max-fragment-len",
            type=int,
            default=None,
            metavar="M",
            help="--mode fragments or cutsites: count only proper pairs with |TLEN| <= M, e.g. "
            "nucleosome-free ATAC with --max-fragment-len 99, mono-nucleosomes with "
            "--min-fragment-len 180 --max-fragment-len 247.",
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


def _extract_settings(
    kw: dict[str, Any], strandedness: str = "", scale_factor: float | None = None
):
    from bamstore.engine.extract import ExtractOptions
    from bamstore.options import CountingMode, ReadFilter

    return ExtractOptions(
        read_filter=ReadFilter(
            exclude_flags=kw["exclude_flags"],
            min_mapq=kw["min_mapq"],
            count_deletions=kw["count_deletions"],
        ),
        counting=CountingMode(
            kw["mode"],
            extend=kw["extend"],
            shift=kw["shift"],
            min_fragment_len=kw["min_fragment_len"],
            max_fragment_len=kw["max_fragment_len"],
        ),
        chromosomes=kw["chromosomes"],
        chromsizes=kw["chromsizes"],
        chunk_len=kw["chunk_len"],
        compression=kw["compression"],
        strandedness=strandedness,
        reference=kw["reference"],
        threads=kw["threads"],
        tmp_dir=kw["tmp_dir"],
        shard=kw["shard"],
        scale_factor=scale_factor,
    )


@click.command()
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
    "--scale-factor",
    metavar="F",
    default=None,
    help="The sample's scale factor (a spike-in factor, for example; a positive number), "
    "recorded with it for --normalise scale; it changes no stored value "
    "(`bamstore scale-factors` shows and sets them later).",
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
    scale_factor: str | None,
    source_path: str | None,
    overwrite: bool,
    **kw: Any,
) -> None:
    """One BAM → one per-sample store (the consolidated layout with one sample)."""
    from bamstore.engine.extract import extract_sample
    from bamstore.engine.samplesheet import SCALE_FACTOR_FIX, parse_scale_factor

    factor, problem = parse_scale_factor(scale_factor or "")
    if problem:
        raise InputError(None, f"--scale-factor: {problem}", SCALE_FACTOR_FIX)
    options = _extract_settings(kw, stranded or "", factor)
    result = extract_sample(
        bam, sample, out, options, index=index, overwrite=overwrite, source_path=source_path
    )
    log.info(
        "%s: %d reads on %d contigs in %.1f s → %s",
        sample,
        result.total_reads,
        len(result.contigs),
        result.seconds,
        out,
    )


@click.command()
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
    from bamstore.engine.merge import append_samples, merge_stores, read_parts_file
    from bamstore.engine.samplesheet import read_metadata_table

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


@click.command()
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
    from bamstore.engine.build import build_store, summary_lines

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
