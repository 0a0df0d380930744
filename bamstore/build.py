"""The whole job on one machine: extract every sample in worker processes, then merge.

This is what the Nextflow pipeline does across a cluster (one EXTRACT task per sample, one
MERGE), in one command for laptops and tests. Per-sample stores are kept in a parts folder
beside the output (`.<name>.parts`, same filesystem so merge can hard-link chunks) until the
merge has published; `--resume` reuses parts whose input and settings match.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from bamstore import layout
from bamstore.bam_input import check_same_contigs, fingerprint, quiet_htslib
from bamstore.errors import BamstoreError, InputError, InputErrors
from bamstore.extract import ExtractOptions, SampleResult, extract_sample, prepare_input
from bamstore.merge import MergeResult, merge_stores
from bamstore.publish import check_output_path, output_lock
from bamstore.samplesheet import SampleRow, Samplesheet, check_samplesheet, merge_samplesheets
from bamstore.store import read_store_info
from bamstore.validate import validate_store

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    out: Path
    samples: list[str]
    extracted: list[SampleResult] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    merge: MergeResult | None = None
    seconds: float = 0.0


def parts_dir_for(out: Path) -> Path:
    out = out.absolute()
    return out.parent / f".{out.name}.parts"


def read_samplesheets(paths: list[Path]) -> Samplesheet:
    """Every problem of every sheet (and duplicates across sheets) in one error."""
    sheets: list[Samplesheet] = []
    problems: list[InputError] = []
    for path in paths:
        sheet, found = check_samplesheet(path)
        sheets.append(sheet)
        problems += found
    try:
        merged = merge_samplesheets(sheets)  # duplicates across sheets, with the rest
    except InputErrors as exc:
        problems += exc.problems
    if problems:
        raise InputErrors(problems, header=f"{len(problems)} problem(s) in the samplesheet(s)")
    return merged


def _options_for(row: SampleRow, options: ExtractOptions) -> ExtractOptions:
    return dataclasses.replace(options, strandedness=row.strandedness)


def check_inputs(sheet: Samplesheet, options: ExtractOptions) -> list[tuple[str, int]]:
    """Open every BAM's header before any work: all bad inputs are reported together."""
    problems: list[InputError] = []
    reference: tuple[str, list[tuple[str, int]]] | None = None
    for row in sheet.rows:
        try:
            _, contigs = prepare_input(row.bam, row.sample, _options_for(row, options))
            if reference is None:
                reference = (f"sample {row.sample} ({row.bam})", contigs)
            else:
                check_same_contigs(
                    reference[1], contigs, f"sample {row.sample} ({row.bam})", reference[0]
                )
        except InputError as exc:
            for problem in _for_sample(exc, row):
                if problem.line() not in {p.line() for p in problems}:  # e.g. a bad --chromsizes
                    problems.append(problem)
    if problems:
        raise InputErrors(problems, header=f"{len(problems)} problem(s) with the input BAMs")
    assert reference is not None
    return reference[1]


def _for_sample(exc: InputError, row: SampleRow, then: str = "") -> list[InputError]:
    """The problems of `exc`, naming the sample where they are about its BAM; `then` is added
    to each fix."""
    out = []
    for p in exc.problems if isinstance(exc, InputErrors) else [exc]:
        subject = f"sample {row.sample} ({row.bam})" if p.subject == str(row.bam) else p.subject
        fix = f"{p.fix}; {then}" if p.fix and then else (p.fix or then or None)
        out.append(InputError(subject, p.problem, fix))
    return out


def _reusable(
    part: Path, row: SampleRow, options: ExtractOptions, contigs: list[tuple[str, int]]
) -> bool:
    """A part from an earlier run is reused only if input, settings and content all match."""
    try:
        info = read_store_info(part)
        record = info.sample_records.get(row.sample)
        if info.sample_names != [row.sample] or record is None:
            return False
        alignment, _ = prepare_input(row.bam, row.sample, _options_for(row, options))
        same = (
            {k: v for k, v in record.get("source", {}).items() if k != "path"}
            == fingerprint(alignment)
            and info.settings == _options_for(row, options).settings_attr()
            and info.contigs == contigs
            and info.chunk_len == options.chunk_len
            and info.compression == layout.compression_profile(options.compression).name
            and record.get("strandedness", "") == row.strandedness
        )
        return same and validate_store(part, quick=True).ok
    except BamstoreError:
        return False


def _extract_worker(
    row: SampleRow, part: Path, options: ExtractOptions, log_level: int
) -> SampleResult:
    logging.basicConfig(level=log_level, format="%(message)s")
    if log_level > logging.DEBUG:
        quiet_htslib()
    return extract_sample(
        row.bam, row.sample, part, _options_for(row, options), index=row.bai, overwrite=True
    )


def build_store(
    inputs: list[Path],
    out: Path,
    options: ExtractOptions,
    *,
    jobs: int = 1,
    overwrite: bool = False,
    resume: bool = False,
    keep_parts: bool = False,
    copy: bool = False,
) -> BuildResult:
    started = time.monotonic()
    out = Path(out).absolute()
    check_output_path(out, overwrite=overwrite)
    sheet = read_samplesheets(inputs)
    contigs = check_inputs(sheet, options)
    parts_dir = parts_dir_for(out)
    result = BuildResult(out, sheet.sample_names)
    with output_lock(parts_dir, subject=out):
        parts_dir.mkdir(exist_ok=True)
        parts = {row.sample: parts_dir / f"{row.sample}.zarr" for row in sheet.rows}
        todo = []
        for row in sheet.rows:
            if resume and _reusable(parts[row.sample], row, options, contigs):
                log.info("[%s] reusing the part from an earlier run", row.sample)
                result.reused.append(row.sample)
            else:
                todo.append(row)
        result.extracted = _extract_all(todo, parts, options, jobs, len(sheet.rows))
        log.info("merging %d samples into %s", len(sheet.rows), out)
        result.merge = merge_stores(
            [parts[name] for name in sheet.sample_names],
            out,
            metadata_tables=[sheet.metadata_table()],
            metadata_source=str(sheet.path),
            overwrite=overwrite,
            copy=copy,
            threads=options.threads,
        )
        if not keep_parts:
            shutil.rmtree(parts_dir, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def _extract_all(
    rows: list[SampleRow], parts: dict[str, Path], options: ExtractOptions, jobs: int, n_total: int
) -> list[SampleResult]:
    """Extract in `jobs` worker processes; report every failed sample, keep finished parts."""
    if not rows:
        return []
    level = logging.getLogger().getEffectiveLevel()
    results: list[SampleResult] = []
    failures: list[InputError] = []
    done = n_total - len(rows)
    # spawn, not fork: zarr keeps an event-loop thread that a forked child would inherit broken
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(rows))), mp_context=ctx) as pool:
        futures: dict[Future[SampleResult], SampleRow] = {
            pool.submit(_extract_worker, row, parts[row.sample], options, level): row
            for row in rows
        }
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                row = futures[fut]
                done += 1
                try:
                    res = fut.result()
                except InputError as exc:
                    failures += _for_sample(exc, row, "then re-run the build with --resume")
                    log.error("[%d/%d] %s failed: %s", done, n_total, row.sample, exc.line())
                    continue
                results.append(res)
                log.info(
                    "[%d/%d] %s: %d reads, %.1f s",
                    done,
                    n_total,
                    row.sample,
                    res.total_reads,
                    res.seconds,
                )
    if failures:
        raise InputErrors(
            failures,
            header=f"{len(failures)} of {len(rows)} sample(s) failed; "
            "finished samples are kept for --resume",
        )
    return results


def summary_lines(result: BuildResult) -> list[str]:
    merge = result.merge
    lines = [
        f"built {result.out} with {len(result.samples)} samples in {result.seconds:.1f} s"
        f" ({len(result.extracted)} extracted, {len(result.reused)} reused)"
    ]
    if merge is not None:
        lines.append(
            f"merge: {merge.chunks_linked} chunks linked, {merge.chunks_copied} copied, "
            f"{merge.seconds:.1f} s"
        )
    return lines
