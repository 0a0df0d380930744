"""Faults: real SIGKILLs during extract and merge, a full disk (RLIMIT_FSIZE), two
builds on one --out, and `build --resume`. Nothing half-published, nothing lost.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from bamfactory import CONTIGS, random_reads, write_bam
from support import (
    assert_clean_refusal,
    chunk_files,
    cli_argv,
    default_sigint,
    extract_here,
    leftovers,
    limit_file_size,
    store_attrs,
    write_samplesheet,
)

from bamstore.engine.merge import merge_stores, verify_rows
from bamstore.engine.store import read_store_info
from bamstore.engine.validate import validate_store
from bamstore.errors import OutOfSpaceError
from bamstore.simulate import make_bam

SIM_CONTIGS = [("chr1", 2_000_000), ("chr2", 600_000)]
CHUNK = 2000  # ~1300 chunk files per sample: extraction and merge take a second or two
KILLS = 4


@pytest.fixture(scope="module")
def sim_bam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    return make_bam(folder / "sim.bam", 60_000, SIM_CONTIGS, seed=21, threads=1)


def _digests(store: Path) -> dict:
    return {n: r["digests"] for n, r in store_attrs(store)["bamstore"]["samples"].items()}


def _sound(store: Path) -> bool:
    """Structure, completeness and every chunk file against its recorded digest (no decoding)."""
    info = read_store_info(store)
    if not validate_store(store, quick=True).ok:
        return False
    return not verify_rows(store, info.attrs)


def _run_killed(args: list, out: Path, delay: float) -> bool:
    """Start `bamstore ARGS`; once its temporary output exists wait `delay` s, then SIGKILL.

    Returns whether the process was still running when the signal was sent.
    """
    proc = subprocess.Popen(cli_argv(*args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if any(".tmp-" in name for name in leftovers(out.parent, out.name)):
                break
            time.sleep(0.002)
        time.sleep(delay)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return alive


def _timed(args: list, out: Path) -> float:
    """Seconds from the temporary output's appearance to the end of a complete run."""
    proc = subprocess.Popen(cli_argv(*args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen = None
    while proc.poll() is None:
        if seen is None and any(".tmp-" in n for n in leftovers(out.parent, out.name)):
            seen = time.monotonic()
        time.sleep(0.002)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return time.monotonic() - (seen or time.monotonic())


def _kill_points(duration: float, seed: int, kills: int = KILLS) -> list[float]:
    """Seeded random delays within the first 60% of a complete run's duration (runs vary in
    speed; a kill after the end proves nothing)."""
    rng = random.Random(seed)
    return sorted(rng.uniform(0, 0.6 * duration) for _ in range(kills))


# ---------------------------------------------------------------------------- SIGKILL


def test_extract_killed_at_random_points_leaves_nothing_and_rerun_succeeds(
    sim_bam, tmp_path, run_cli
):
    args = ["extract", "--bam", sim_bam, "--sample", "s", "--chunk-len", CHUNK]
    reference = tmp_path / "reference.zarr"
    duration = _timed([*args, "--out", reference], reference)
    out = tmp_path / "killed.zarr"
    hits = 0
    for delay in _kill_points(duration, seed=1):
        alive = _run_killed([*args, "--out", out], out, delay)
        hits += alive
        if alive:
            assert not out.exists(), f"killed {delay:.2f} s in: something at the final path"
        else:  # it had finished: then the store is whole
            assert _sound(out)
            shutil.rmtree(out)
    assert hits >= KILLS - 1, "too few kills landed while extraction was running"
    result = run_cli(*args, "--out", out)
    assert result.returncode == 0, result.stderr
    assert leftovers(tmp_path, out.name) == []  # the dead runs' temporary stores are gone
    assert _digests(out) == _digests(reference)
    check = run_cli("validate", out)
    assert check.returncode == 0, check.stderr


@pytest.fixture(scope="module")
def sim_parts(sim_bam: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("parts")
    parts = []
    for name in ("a", "b", "c"):
        part = folder / f"{name}.zarr"
        extract_here(sim_bam, part, name, chunk_len=CHUNK, chromosomes="primary")
        parts.append(part)
    return parts


@pytest.mark.parametrize("previous", [True, False], ids=["overwrite", "fresh"])
def test_merge_killed_at_random_points_keeps_previous_store(sim_parts, tmp_path, previous, run_cli):
    args = ["merge", *sim_parts, "--copy", "--overwrite"]
    reference = tmp_path / "reference.zarr"
    duration = _timed([*args, "--out", reference], reference)
    out = tmp_path / "merged.zarr"
    if previous:
        merge_stores(sim_parts[:2], out)
        old = _digests(out)
    hits = 0
    for delay in _kill_points(duration, seed=2 if previous else 3, kills=KILLS - 1):
        alive = _run_killed([*args, "--out", out], out, delay)
        hits += alive
        if out.exists():
            assert _sound(out), f"killed {delay:.2f} s in: the store at --out is damaged"
            names = read_store_info(out).sample_names
            assert names in ([["a", "b"], ["a", "b", "c"]] if previous else [["a", "b", "c"]])
            if alive and previous and names == ["a", "b"]:
                assert _digests(out) == old
        else:
            assert not previous, f"killed {delay:.2f} s in: the previous store is gone"
    assert hits >= KILLS - 2, "too few kills landed while the merge was running"
    result = run_cli(*args, "--out", out)
    assert result.returncode == 0, result.stderr
    assert leftovers(tmp_path, out.name) == []
    assert _digests(out) == _digests(reference)
    check = run_cli("validate", out)
    assert check.returncode == 0, check.stderr


def test_store_set_aside_by_a_crash_between_renames_is_restored(tmp_path: Path, run_cli):
    """Where renameat2 cannot swap, the old store is renamed aside first; a crash right then
    leaves it at .NAME.old-*: the next run on that output puts it back."""
    bam = write_bam(tmp_path / "a.bam", random_reads(3, 50), CONTIGS)
    out = tmp_path / "a.zarr"
    extract_here(bam, out, "a")
    before = _digests(out)
    os.rename(out, tmp_path / ".a.zarr.old-0123456789ab")
    (tmp_path / ".a.zarr.tmp-0123456789ab").mkdir()  # and the new one, half written
    result = run_cli("extract", "--bam", bam, "--sample", "a", "--out", out,
                     "--chromosomes", "all")  # fmt: skip
    assert_clean_refusal(result, f"{out}: already exists")  # no --overwrite: the old one is back
    assert "restoring the previous store" in result.stderr
    assert _digests(out) == before and _sound(out)
    assert leftovers(tmp_path, out.name) == []


def test_publish_without_renameat2_replaces_the_store(tmp_path: Path, monkeypatch):
    from bamstore.engine import publish

    monkeypatch.setattr(publish, "_renameat2", None)
    bam = write_bam(tmp_path / "a.bam", random_reads(4, 50), CONTIGS)
    out = tmp_path / "a.zarr"
    extract_here(bam, out, "a")
    extract_here(bam, out, "b", overwrite=True)
    assert read_store_info(out).sample_names == ["b"]
    assert leftovers(tmp_path, out.name) == []


def test_a_late_write_failure_is_not_lost(tmp_path: Path, monkeypatch):
    """A chunk write that fails after the kernel has finished still fails the extraction
    (it was once checked only before waiting for the last writes: a store with a missing chunk
    was published)."""
    from bamstore.engine.writer import StoreWriter

    real = StoreWriter.write_chunk

    def slow_last_write(self, array, row, col, data):
        if array == "chr2":
            time.sleep(0.3)
            raise OSError(28, "No space left on device")
        real(self, array, row, col, data)

    monkeypatch.setattr(StoreWriter, "write_chunk", slow_last_write)
    bam = write_bam(tmp_path / "a.bam", random_reads(5, 100), CONTIGS)
    out = tmp_path / "a.zarr"
    with pytest.raises(OSError, match="No space left") as caught:
        extract_here(bam, out, "a", threads=2)
    assert not out.exists() and leftovers(tmp_path, out.name) == []
    # the publishing code names the output (not its temporary path) and still says OSError
    assert isinstance(caught.value, OutOfSpaceError) and caught.value.errno == 28
    assert caught.value.line() == (
        f"{out}: cannot be written: No space left on device; nothing was published and the "
        "partial output was removed; fix: free space on that filesystem or choose another "
        "--out, then re-run"
    )


# ---------------------------------------------------------------------------- out of space

SPACE_CONTIGS = [("chr1", 1_500_000)]  # chunk_len 1M, no compression: 4 MB and 2 MB chunks
LIMIT = 1_000_000


@pytest.fixture(scope="module")
def space_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("space")
    inputs: dict[str, Path] = {}
    for name in ("a", "b"):
        bam = write_bam(folder / f"{name}.bam", random_reads(7, 200, SPACE_CONTIGS), SPACE_CONTIGS)
        inputs[name] = bam
        extract_here(bam, folder / f"{name}.zarr", name, compression="none",
                     chunk_len=1_000_000)  # fmt: skip
    return inputs


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "overwrite"])
@pytest.mark.parametrize("command", ["extract", "merge", "build"])
def test_out_of_space_is_clear_and_leaves_no_partial_store(space_inputs, tmp_path, command,
                                                           existing, run_cli):  # fmt: skip
    out = tmp_path / "out.zarr"
    settings = ["--compression", "none", "--chunk-len", "1000000", "--chromosomes", "all"]
    if command == "extract":
        args = ["extract", "--bam", space_inputs["a"], "--sample", "a", *settings]
    elif command == "merge":
        parts = [space_inputs[n].with_suffix(".zarr") for n in ("a", "b")]
        args = ["merge", *parts, "--copy"]
    else:
        sheet = write_samplesheet(tmp_path / "s.csv", [("a", space_inputs["a"])])
        args = ["build", "--input", sheet, *settings, "--copy"]
    if existing:
        shutil.copytree(space_inputs["b"].with_suffix(".zarr"), out)
        before = _digests(out)
        args.append("--overwrite")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = run_cli(*args, "--out", out, env={"TMPDIR": str(scratch)},
                     preexec_fn=limit_file_size(LIMIT))  # fmt: skip
    assert_clean_refusal(
        result, f"{out}: cannot be written: File too large", "partial output was removed",
        "fix: raise the file size limit",
    )  # fmt: skip
    if existing:
        assert _digests(out) == before and _sound(out)
    else:
        assert not out.exists()
    assert leftovers(tmp_path, out.name) == [] or command == "build"
    if command == "build":  # finished samples are kept for --resume, never a partial one
        parts = tmp_path / ".out.zarr.parts"
        assert not [p for p in parts.iterdir() if ".tmp-" in p.name]
    assert os.listdir(scratch) == []
    result = run_cli(*args, "--out", out, env={"TMPDIR": str(scratch)})  # space is back
    assert result.returncode == 0, result.stderr
    assert _sound(out)


# ---------------------------------------------------------------------------- concurrency


def test_two_builds_on_one_output_one_refuses(sim_bam: Path, tmp_path: Path, run_cli):
    names = ["a", "b", "c"]
    sheet = write_samplesheet(tmp_path / "s.csv", [(n, sim_bam) for n in names])
    out = tmp_path / "both.zarr"
    args = cli_argv("build", "--input", sheet, "--out", out, "--chunk-len", 1000)
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parts = tmp_path / ".both.zarr.parts"  # made once the first build holds the lock
    deadline = time.monotonic() + 60
    while not parts.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    second = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    still_running = first.poll() is None
    _, first_err = first.communicate(timeout=120)
    assert still_running, "the first build ended before the second started: no overlap"
    assert first.returncode == 0, first_err
    assert_clean_refusal(second, f"{out}: another bamstore process is writing this output",
                         "wait for it to finish")  # fmt: skip
    check = run_cli("validate", out)
    assert check.returncode == 0, check.stderr
    assert read_store_info(out).sample_names == names


# ---------------------------------------------------------------------------- resume


def _corrupt_middle(bam: Path) -> None:
    """Flip a byte in a block in the middle; the header (and a fresh index) still open."""
    data = bytearray(bam.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bam.write_bytes(bytes(data))
    os.utime(str(bam) + ".bai", (time.time() + 5,) * 2)


def test_resume_reuses_matching_parts_and_redoes_the_rest(tmp_path: Path, run_cli):
    contigs = [("chr1", 150_000), ("chr2", 60_000)]
    bams = {}
    for i, name in enumerate(("same", "changed", "broken")):
        bams[name] = make_bam(tmp_path / f"{name}.bam", 12_000, contigs, seed=40 + i, threads=1)
    _corrupt_middle(bams["broken"])
    sheet = write_samplesheet(tmp_path / "s.csv", list(bams.items()))
    out = tmp_path / "run.zarr"
    args = ["build", "--input", sheet, "--out", out, "--chromosomes", "all", "--chunk-len", 5000]
    failed = run_cli(*args)
    assert_clean_refusal(failed, f"sample broken ({bams['broken']}): is corrupted",
                         "then re-run the build with --resume")  # fmt: skip
    parts = tmp_path / ".run.zarr.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["changed.zarr", "same.zarr"]
    same_before = chunk_files(parts / "same.zarr")
    changed_before = chunk_files(parts / "changed.zarr")
    # repair the broken BAM, and change another one (new reads: size, mtime and content differ)
    (tmp_path / "broken.bam.params").unlink()  # make_bam's cache would keep the damage
    make_bam(tmp_path / "broken.bam", 12_000, contigs, seed=42, threads=1)
    (tmp_path / "changed.bam.params").unlink()
    make_bam(tmp_path / "changed.bam", 11_000, contigs, seed=99, threads=1)
    resumed = run_cli(*args, "--resume", "--keep-parts")
    assert resumed.returncode == 0, resumed.stderr
    assert "[same] reusing the part" in resumed.stderr
    assert "[changed] reusing" not in resumed.stderr and "[broken] reusing" not in resumed.stderr
    assert "(2 extracted, 1 reused)" in resumed.stderr
    assert chunk_files(parts / "same.zarr") == same_before  # untouched: same inodes and mtimes
    changed_after = chunk_files(parts / "changed.zarr")
    assert not set(changed_after.values()) & set(changed_before.values())  # rewritten
    assert _sound(out) and run_cli("validate", out).returncode == 0
    fresh = tmp_path / "fresh.zarr"
    assert run_cli(*args[:4], fresh, *args[5:]).returncode == 0
    assert _digests(out) == _digests(fresh)
    # different settings: nothing is reused
    shutil.rmtree(out)
    again = run_cli(*args, "--resume", "--keep-parts", "--min-mapq", "5")
    assert again.returncode == 0, again.stderr
    assert "reusing" not in again.stderr and "(3 extracted, 0 reused)" in again.stderr


# ---------------------------------------------------------------------------- interrupts


def _start_build(sim_bam: Path, tmp_path: Path, n: int) -> tuple[subprocess.Popen, Path, Path]:
    """`build --jobs 2` of `n` samples in its own session (its own process group), and the
    output and parts folder; returns once the first sample is finished."""
    sheet = write_samplesheet(tmp_path / "s.csv", [(f"s{i}", sim_bam) for i in range(n)])
    out = tmp_path / "run.zarr"
    proc = subprocess.Popen(
        cli_argv("build", "--input", sheet, "--out", out, "--jobs", 2, "--chunk-len", CHUNK,
                 "--chromosomes", "all"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=default_sigint,
    )  # fmt: skip
    parts = tmp_path / ".run.zarr.parts"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if parts.is_dir() and any(not p.name.startswith(".") for p in parts.iterdir()):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the build ended before it could be interrupted"
    return proc, out, parts


def test_ctrl_c_stops_build_at_once_keeps_finished_samples_and_says_resume(
    sim_bam: Path, tmp_path: Path, run_cli
):
    """Ctrl-C (SIGINT to the process group) once went on extracting every remaining sample
    before exiting 130."""
    n = 8
    proc, out, parts = _start_build(sim_bam, tmp_path, n)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert took < 2.5, f"took {took:.1f} s to stop"
    kept = sorted(p.name for p in parts.iterdir())
    assert 1 <= len(kept) < n and all(not name.startswith(".") for name in kept), kept
    hint = [line for line in stderr.splitlines() if line.startswith("warning: interrupted")]
    assert hint == [
        f"warning: interrupted: {len(kept)} of {n} samples are finished and kept in {parts}; "
        "re-run the same command with --resume to continue from them"
    ], stderr
    assert stderr.splitlines()[-1] == "bamstore: interrupted"
    assert not out.exists() and leftovers(tmp_path, out.name) == [parts.name]
    for name in kept:
        assert validate_store(parts / name, quick=True).ok
    sheet = tmp_path / "s.csv"
    resumed = run_cli("build", "--input", sheet, "--out", out, "--jobs", 2, "--chunk-len", CHUNK,
                      "--chromosomes", "all", "--resume")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"({n - len(kept)} extracted, {len(kept)} reused)" in resumed.stderr
    assert _sound(out)


def test_sigterm_to_build_leaves_no_process_behind(sim_bam: Path, tmp_path: Path):
    """SIGTERM to build's main process once left its worker processes and the resource
    tracker running."""
    proc, _, _ = _start_build(sim_bam, tmp_path, 6)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 5
    survivors = ""
    while time.monotonic() < deadline:
        survivors = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(proc.pid)],
                                   capture_output=True, text=True).stdout.strip()  # fmt: skip
        if not survivors:
            break
        time.sleep(0.05)
    if survivors:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not survivors, f"processes of the build are still running:\n{survivors}"
