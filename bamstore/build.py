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
from collections.abc import Callable, Sequence
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


def read_samplesheets(paths: list[Path], *, check_files: bool = True) -> Samplesheet:
    """Every problem of every sheet (and duplicates across sheets) in one error."""
    sheets: list[Samplesheet] = []
    problems: list[InputError] = []
    for path in paths:
        sheet, found = check_samplesheet(path, check_files=check_files)
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


@dataclass(frozen=True)
class ExtractJob:
    """One sample to extract into a per-sample store (used by build and the Python API)."""

    sample: str
    bam: Path
    part: Path
    options: ExtractOptions
    index: Path | None = None

    @property
    def label(self) -> str:
        return f"sample {self.sample} ({self.bam})"


def _for_job(exc: InputError, job: ExtractJob, then: str = "") -> list[InputError]:
    """The problems of `exc`, naming the sample where they are about its BAM; `then` is added
    to each fix."""
    out = []
    for p in exc.problems if isinstance(exc, InputErrors) else [exc]:
        subject = job.label if p.subject == str(job.bam) else p.subject
        fix = f"{p.fix}; {then}" if p.fix and then else (p.fix or then or None)
        out.append(InputError(subject, p.problem, fix))
    return out


def check_jobs(
    jobs: Sequence[ExtractJob],
    contigs: Sequence[tuple[str, int]] | None = None,
    contigs_label: str = "the store",
) -> list[tuple[str, int]]:
    """Open every BAM's header before any work: all bad inputs are reported together.

    Every sample must keep the same contigs and lengths: `contigs` if given, else the first
    sample's. Returns them.
    """
    problems: list[InputError] = []
    reference = (contigs_label, list(contigs)) if contigs is not None else None
    for job in jobs:
        try:
            _, kept = prepare_input(job.bam, job.sample, job.options)
            if reference is None:
                reference = (job.label, kept)
            else:
                check_same_contigs(reference[1], kept, job.label, reference[0])
        except InputError as exc:
            for problem in _for_job(exc, job):
                if problem.line() not in {p.line() for p in problems}:  # e.g. a bad --chromsizes
                    problems.append(problem)
    if problems:
        raise InputErrors(problems, header=f"{len(problems)} problem(s) with the input BAMs")
    assert reference is not None
    return reference[1]


def _reusable(job: ExtractJob, contigs: list[tuple[str, int]]) -> bool:
    """A part from an earlier run is reused only if input, settings and content all match."""
    try:
        info = read_store_info(job.part)
        record = info.sample_records.get(job.sample)
        if info.sample_names != [job.sample] or record is None:
            return False
        alignment, _ = prepare_input(job.bam, job.sample, job.options)
        same = (
            {k: v for k, v in record.get("source", {}).items() if k != "path"}
            == fingerprint(alignment)
            and info.settings == job.options.settings_attr()
            and info.contigs == contigs
            and info.chunk_len == job.options.chunk_len
            and info.compression == layout.compression_profile(job.options.compression).name
            and record.get("strandedness", "") == job.options.strandedness
        )
        return same and validate_store(job.part, quick=True).ok
    except BamstoreError:
        return False


def _extract_job(job: ExtractJob, log_level: int) -> SampleResult:
    """Runs in a worker process: configure its logging like the parent's, then extract."""
    logging.basicConfig(level=log_level, format="%(message)s")
    if log_level > logging.DEBUG:
        quiet_htslib()
    return extract_sample(
        job.bam, job.sample, job.part, job.options, index=job.index, overwrite=True
    )


def run_extractions(
    jobs: Sequence[ExtractJob],
    workers: int,
    *,
    on_done: Callable[[ExtractJob, SampleResult], None] | None = None,
    retry_hint: str = "then re-run the build with --resume (finished samples are kept)",
    n_total: int | None = None,
) -> list[SampleResult]:
    """Extract every job, `workers` samples at a time in worker processes (in this process for
    one). `on_done` runs here as each sample finishes, so finished samples are kept even if
    another fails; every failure is reported together at the end."""
    n_total = n_total if n_total is not None else len(jobs)
    results: list[SampleResult] = []
    failures: list[InputError] = []
    done = n_total - len(jobs)

    def finished(job: ExtractJob, get: Callable[[], SampleResult]) -> None:
        nonlocal done
        done += 1
        try:
            res = get()
        except InputError as exc:
            failures.extend(_for_job(exc, job, retry_hint))
            log.error("[%d/%d] %s failed: %s", done, n_total, job.sample, exc.line())
            return
        results.append(res)
        log.info(
            "[%d/%d] %s: %d reads, %.1f s", done, n_total, job.sample, res.total_reads, res.seconds
        )
        if on_done is not None:
            on_done(job, res)

    level = logging.getLogger().getEffectiveLevel()
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            finished(
                job,
                lambda job=job: extract_sample(  # type: ignore[misc]
                    job.bam, job.sample, job.part, job.options, index=job.index, overwrite=True
                ),
            )
    else:
        # spawn, not fork: zarr keeps an event-loop thread that a forked child inherits broken
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            futures = {pool.submit(_extract_job, job, level): job for job in jobs}
            pending: set[Future[SampleResult]] = set(futures)
            while pending:
                ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in ready:
                    finished(futures[fut], fut.result)
    if failures:
        raise InputErrors(
            failures,
            header=f"{len(failures)} of {len(jobs)} sample(s) failed",
        )
    return results


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
    parts_dir = parts_dir_for(out)
    all_jobs = [
        ExtractJob(
            row.sample,
            row.bam,
            parts_dir / f"{row.sample}.zarr",
            _options_for(row, options),
            row.bai,
        )
        for row in sheet.rows
    ]
    contigs = check_jobs(all_jobs)
    result = BuildResult(out, sheet.sample_names)
    with output_lock(parts_dir, subject=out):
        parts_dir.mkdir(exist_ok=True)
        todo = []
        for job in all_jobs:
            if resume and _reusable(job, contigs):
                log.info("[%s] reusing the part from an earlier run", job.sample)
                result.reused.append(job.sample)
            else:
                todo.append(job)
        result.extracted = run_extractions(todo, jobs, n_total=len(all_jobs))
        log.info("merging %d samples into %s", len(all_jobs), out)
        result.merge = merge_stores(
            [job.part for job in all_jobs],
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
