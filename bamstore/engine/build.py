"""The whole job on one machine: extract every sample (several at a time, in threads), then merge.

This is what the Nextflow pipeline does across a cluster (one EXTRACT task per sample, one
MERGE), in one command for laptops and tests. Per-sample stores are kept in a parts folder
beside the output (`.<name>.parts`, same filesystem so merge can hard-link chunks) until the
merge has published; `--resume` reuses parts whose input and settings match.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bamstore import layout
from bamstore.engine.bam_input import check_same_contigs, fingerprint
from bamstore.engine.extract import ExtractOptions, SampleResult, extract_sample, prepare_input
from bamstore.engine.merge import MergeResult, merge_stores
from bamstore.engine.publish import check_output_path, output_folder, output_lock, remove_tree
from bamstore.engine.samplesheet import read_samplesheets
from bamstore.engine.scale_factors import set_scale_factors
from bamstore.engine.store import read_store_info
from bamstore.engine.validate import validate_store
from bamstore.errors import BamstoreError, InputError, InputErrors, OutOfSpaceError

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
    sample's, whose order the store follows (a sample listing them in another order is said
    so). Returns them.
    """
    problems: list[InputError] = []
    reference = (contigs_label, list(contigs)) if contigs is not None else None
    for job in jobs:
        try:
            _, kept = prepare_input(job.bam, job.sample, job.options)
            if reference is None:
                reference = (job.label, kept)
                continue
            check_same_contigs(reference[1], kept, job.label, reference[0])
            if kept != reference[1]:
                log.info(
                    "%s lists its contigs in another order than %s; the store follows %s's order",
                    job.label,
                    reference[0],
                    reference[0].split(" (")[0],
                )
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
        record = info.record.samples.get(job.sample) if info.record else None
        if info.sample_names != [job.sample] or record is None:
            return False
        alignment, _ = prepare_input(job.bam, job.sample, job.options)
        source = layout.SourceFingerprint(path=str(job.bam), **fingerprint(alignment))
        same = (
            record.source.same_file(source)
            and info.settings == job.options.store_settings()
            and sorted(info.contigs) == sorted(contigs)
            and record.strandedness == job.options.strandedness
        )
        return same and validate_store(job.part, quick=True).ok
    except BamstoreError:
        return False


def _update_scale_factor(job: ExtractJob) -> None:
    """A reused part takes the sample's factor as given now (it changes no value, so a part
    counted with another factor is not extracted again for it)."""
    record = read_store_info(job.part).record
    assert record is not None  # _reusable checked it
    if record.samples[job.sample].scale_factor != job.options.scale_factor:
        set_scale_factors(job.part, {job.sample: job.options.scale_factor})


def run_extractions(
    jobs: Sequence[ExtractJob],
    workers: int,
    *,
    on_done: Callable[[ExtractJob, SampleResult], None] | None = None,
    retry_hint: str = "then re-run the build with --resume (finished samples are kept)",
    n_total: int | None = None,
) -> list[SampleResult]:
    """Extract every job, `workers` samples at a time, each in a thread of this process.

    Threads, not processes: the kernel, inflate (libdeflate) and encode (blosc) release the
    GIL, so samples run in parallel without a process pool, which would re-import the caller's
    script (a Python user's script without a `__main__` guard would run again) and leave
    workers behind when the parent is killed. `on_done` runs here as each sample finishes, so
    finished samples are kept even if another fails; every failure is reported together at
    the end. On KeyboardInterrupt (Ctrl-C) the running samples stop at their next window, their
    partial stores are removed, and the interrupt is raised again.
    """
    n_total = n_total if n_total is not None else len(jobs)
    results: list[SampleResult] = []
    failures: list[InputError] = []
    done = n_total - len(jobs)
    cancel = threading.Event()

    def finished(job: ExtractJob, future: Future[SampleResult]) -> None:
        nonlocal done
        done += 1
        try:
            res = future.result()
        except OutOfSpaceError:
            raise  # not this sample's problem: the others cannot be written either
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

    def extract(job: ExtractJob) -> SampleResult:
        return extract_sample(
            job.bam, job.sample, job.part, job.options, index=job.index, overwrite=True,
            cancel=cancel,
        )  # fmt: skip

    with ThreadPoolExecutor(
        max_workers=max(1, min(workers, len(jobs))), thread_name_prefix="bamstore-sample"
    ) as pool:
        futures = {pool.submit(extract, job): job for job in jobs}
        pending: set[Future[SampleResult]] = set(futures)
        try:
            while pending:  # a timeout, so that Ctrl-C reaches this thread at once
                ready, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in ready:
                    finished(futures[fut], fut)
        except BaseException:
            cancel.set()
            for fut in pending:
                fut.cancel()
            wait(pending)
            raise
    if failures:
        raise InputErrors(
            failures,
            header=f"{len(failures)} of {len(jobs)} sample(s) failed",
        )
    return results


@dataclass(frozen=True)
class Sample:
    """One input of a build: a samplesheet row, or a BAM given to the Python API."""

    name: str
    bam: Path
    bai: Path | None = None
    strandedness: str = ""
    scale_factor: float | None = None


def build_store(
    inputs: list[Path], out: Path, options: ExtractOptions, **build: Any
) -> BuildResult:
    """`bamstore build`: the samples of the samplesheet(s) `inputs` into one store at `out`;
    `build` takes the keywords of `build_samples` (jobs, overwrite, resume, ...)."""
    sheet = read_samplesheets(inputs)
    return build_samples(
        [
            Sample(row.sample, row.bam, row.bai, row.strandedness, row.scale_factor)
            for row in sheet.rows
        ],
        out,
        options,
        metadata_tables=[sheet.metadata_table()],
        metadata_source=str(sheet.path),
        **build,
    )


def build_samples(
    samples: Sequence[Sample],
    out: Path,
    options: ExtractOptions,
    *,
    jobs: int = 1,
    overwrite: bool = False,
    resume: bool = False,
    keep_parts: bool = False,
    copy: bool = False,
    metadata_tables: Sequence[Mapping[str, Mapping[str, str]]] = (),
    metadata_source: str = "metadata",
    parts_dir: Path | None = None,
    retry_hint: str = "then re-run the build with --resume (finished samples are kept)",
    interrupted_hint: str | None = "re-run the same command with --resume to continue from them",
) -> BuildResult:
    """Extract every sample into a per-sample store in `parts_dir` (default: beside `out`),
    then merge them into `out`; the parts are removed once the store is published.

    All inputs are checked before any work. With `resume`, parts of an earlier run whose input
    and settings match are reused. On Ctrl-C the finished parts are kept and
    `interrupted_hint` says what to do with them.
    """
    started = time.monotonic()
    given_out, out = out, Path(out).absolute()
    check_output_path(out, overwrite=overwrite, inputs=[p for s in samples for p in (s.bam, s.bai)])
    parts_dir = parts_dir or parts_dir_for(out)
    all_jobs = [
        ExtractJob(
            sample.name,
            sample.bam,
            parts_dir / f"{sample.name}.zarr",
            dataclasses.replace(
                options, strandedness=sample.strandedness, scale_factor=sample.scale_factor
            ),
            sample.bai,
        )
        for sample in samples
    ]
    contigs = check_jobs(all_jobs)
    result = BuildResult(out, [sample.name for sample in samples])
    with output_folder(out), output_folder(parts_dir), output_lock(parts_dir, subject=out):
        parts_dir.mkdir(exist_ok=True)
        todo = []
        for job in all_jobs:
            if resume and _reusable(job, contigs):
                log.info("[%s] reusing the part from an earlier run", job.sample)
                _update_scale_factor(job)
                result.reused.append(job.sample)
            else:
                todo.append(job)
        try:
            result.extracted = run_extractions(
                todo, jobs, n_total=len(all_jobs), retry_hint=retry_hint
            )
        except OutOfSpaceError as exc:  # a part could not be written: the build's output fails
            raise OutOfSpaceError(given_out, exc.errno, exc.problem, exc.fix or "") from exc
        except KeyboardInterrupt:
            kept = sum(1 for job in all_jobs if job.part.exists())
            log.warning(
                "interrupted: %d of %d samples are finished and kept in %s%s",
                kept,
                len(all_jobs),
                parts_dir,
                f"; {interrupted_hint}" if interrupted_hint else "",
            )
            raise
        log.info("merging %d samples into %s", len(all_jobs), out)
        result.merge = merge_stores(
            [job.part for job in all_jobs],
            out,
            metadata_tables=metadata_tables,
            metadata_source=metadata_source,
            overwrite=overwrite,
            copy=copy,
            threads=options.threads,
            shard=options.shard,
        )
        if not keep_parts:
            remove_parts(parts_dir, [job.part for job in all_jobs])
    result.seconds = time.monotonic() - started
    return result


def remove_parts(parts_dir: Path, parts: Sequence[Path]) -> None:
    """Remove the per-sample stores of this build, then their folder if nothing else is in it."""
    for part in parts:
        remove_tree(part)
    try:
        parts_dir.rmdir()
    except OSError:
        log.warning("%s holds files bamstore did not write; left in place", parts_dir)


def summary_lines(result: BuildResult) -> list[str]:
    merge = result.merge
    lines = [
        f"built {result.out} with {len(result.samples)} samples in {result.seconds:.1f} s"
        f" ({len(result.extracted)} extracted, {len(result.reused)} reused)"
    ]
    if merge is not None:
        files = "shard files" if merge.sharded else "chunk files"
        lines.append(
            f"merge: {merge.chunks_linked} {files} linked, {merge.chunks_copied} copied, "
            f"{merge.seconds:.1f} s"
        )
    return lines
