"""Every output lands where the user meant (bamstore/engine/outputs.py, docs/reliability.md).

Each target is tried with each command that writes to it: the file outputs of summarize,
profile (its matrix and its --plot picture), export (bedGraph and bigWig), plot and
`inspect --html`, and the stores of extract, merge and build. The CLI runs as a subprocess, so
exit codes, stdout, permissions and signals are real. Devices are the real /dev/null and
/dev/full (a guard puts them back, and fails the test, should a regression running as root ever
replace one); FIFOs are made here; standard output is the child's own, never this process's.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from support import (
    assert_clean_refusal,
    chunk_files,
    cli_argv,
    extract_here,
    leftovers,
    limit_file_size,
    write_samplesheet,
)

from bamstore.api import BamStore
from bamstore.engine.validate import validate_store
from bamstore.simulate import make_bam

CONTIGS = [("chr1", 3000), ("chr2", 700)]
PNG = b"\x89PNG\r\n\x1a\n"
BIGWIG = struct.pack("<I", 0x888FFC26)
DEVICES = {"/dev/null": (1, 3), "/dev/full": (1, 7)}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Two samples in a store with chunks of 64, their BAMs, one-sample stores of each, and a
    BED of two regions (one per strand)."""
    folder = tmp_path_factory.mktemp("outputs")
    bams = [
        make_bam(folder / f"{name}.bam", 300, CONTIGS, seed=seed, threads=1)
        for seed, name in ((5, "a"), (6, "b"))
    ]
    store = folder / "s.zarr"
    BamStore.from_bam_files(bams, store_path=store, chunk_len=64)
    parts = [folder / f"p{bam.stem}.zarr" for bam in bams]
    for bam, part in zip(bams, parts, strict=True):
        extract_here(bam, part, bam.stem)
    bed = folder / "r.bed"
    bed.write_text("chr1\t100\t200\tx\t0\t+\nchr2\t300\t400\ty\t0\t-\n")
    sheet = write_samplesheet(folder / "sheet.csv", [(bam.stem, bam) for bam in bams])
    return SimpleNamespace(store=store, bams=bams, parts=parts, bed=bed, sheet=sheet)


# ---------------------------------------------------------------------------- file outputs

PROFILE = ["--upstream", 50, "--downstream", 50, "--bin", 10]


def _summarize(d: SimpleNamespace, out: object, _tmp: Path, bed: object = None) -> list[object]:
    return ["summarize", d.store, "--bed", bed or d.bed, "-o", out]


def _profile(d: SimpleNamespace, out: object, _tmp: Path, bed: object = None) -> list[object]:
    return ["profile", d.store, "--bed", bed or d.bed, *PROFILE, "-o", out]


def _profile_plot(d: SimpleNamespace, out: object, tmp: Path, bed: object = None) -> list[object]:
    return [*_profile(d, tmp / "matrix.npz", tmp, bed), "--plot", out]


def _export(fmt: str) -> Callable[..., list[object]]:
    def args(d: SimpleNamespace, out: object, _tmp: Path, bad: bool = False) -> list[object]:
        chromosomes = ["--chromosomes", "chr9"] if bad else []
        return ["export", d.store, "--sample", "a", "--format", fmt, *chromosomes, "-o", out]

    return args


def _plot(d: SimpleNamespace, out: object, _tmp: Path, bad: bool = False) -> list[object]:
    return ["plot", d.store, "--region", "chr9:0-10" if bad else "chr1:0-1000", "-o", out]


def _inspect(d: SimpleNamespace, out: object, tmp: Path, bad: bool = False) -> list[object]:
    return ["inspect", tmp / "missing.zarr" if bad else d.store, "--html", out]


# command -> (its arguments, a file name for its output, what its output starts with)
FILE_COMMANDS: dict[str, tuple[Callable[..., list[object]], str]] = {
    "summarize": (_summarize, "table.tsv"),
    "profile": (_profile, "matrix.npz"),
    "profile --plot": (_profile_plot, "heat.png"),
    "export bedgraph": (_export("bedgraph"), "a.bedGraph"),
    "export bigwig": (_export("bigwig"), "a.bw"),
    "plot": (_plot, "picture.png"),
    "inspect --html": (_inspect, "report.html"),
}


def looks_right(command: str, data: bytes) -> None:
    """The output of `command` (as FILE_COMMANDS runs it), whole."""
    if command == "summarize":
        lines = data.decode().splitlines()
        assert lines[0] == "chrom\tstart\tend\tname\ta\tb" and len(lines) == 3, data[:200]
    elif command == "profile":
        with np.load(io.BytesIO(data)) as npz:
            assert npz["matrix"].shape == (2, 2, 10)
    elif command in ("profile --plot", "plot"):
        assert data.startswith(PNG) and data.rstrip().endswith(b"IEND\xaeB`\x82"), data[:16]
    elif command == "export bedgraph":
        lines = data.decode().splitlines()
        assert lines[0].startswith("chr1\t0\t"), lines[0]
        assert lines[-1].split("\t")[0::2] == ["chr2", "700"], lines[-1]
    elif command == "export bigwig":
        assert data.startswith(BIGWIG), data[:16]
    else:
        assert data.startswith(b"<!DOCTYPE html>") and data.rstrip().endswith(b"</html>")


def run(
    *args: object,
    cwd: Path | None = None,
    umask: int | None = None,
    stdout: object = subprocess.PIPE,
    timeout: float = 300,
) -> subprocess.CompletedProcess[bytes]:
    """bin/bamstore in a fresh process; stdout as bytes (pictures, bigWig, npz)."""

    def prepare() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run(
        cli_argv(*args),
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=cwd,
        preexec_fn=prepare,
        timeout=timeout,
        check=False,
    )


def refused(done: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    text = subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout, done.stderr.decode()
    )
    line = assert_clean_refusal(text, *needles)  # type: ignore[arg-type]
    assert ".tmp-" not in line and ".partial" not in line, line  # never a hidden temp name
    return line


def assert_done(done: subprocess.CompletedProcess[bytes]) -> None:
    assert done.returncode == 0, done.stderr.decode()


@pytest.fixture
def real_devices() -> Iterator[None]:
    """Fail, and put the device back, should a test's command have replaced /dev/null or
    /dev/full (possible only as root: what the output policy exists to prevent)."""
    yield
    broken = []
    for path, (major, minor) in DEVICES.items():
        st = os.lstat(path)
        if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == major:
            continue
        broken.append(path)
        os.remove(path)
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(path, 0o666)
    assert not broken, f"replaced (and put back): {broken}"


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_a_new_file_gets_the_umask_permissions(data, tmp_path: Path, command: str) -> None:
    args, name = FILE_COMMANDS[command]
    out = tmp_path / name
    assert_done(run(*args(data, out, tmp_path), umask=0o022))
    looks_right(command, out.read_bytes())
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert leftovers(tmp_path, name) == []


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_an_existing_folder_is_refused_naming_it(data, tmp_path: Path, command: str) -> None:
    args, name = FILE_COMMANDS[command]
    folder = tmp_path / name
    folder.mkdir()
    refused(run(*args(data, folder, tmp_path)), f"{folder}: is a folder")
    assert list(folder.iterdir()) == [] and leftovers(tmp_path, name) == []


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_a_symlinks_target_is_replaced_and_the_link_kept(
    data, tmp_path: Path, command: str
) -> None:
    args, name = FILE_COMMANDS[command]
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / name
    target.write_text("an earlier file\n")
    link = tmp_path / name
    link.symlink_to(Path("real") / name)
    assert_done(run(*args(data, link, tmp_path), umask=0o022))
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / name)
    looks_right(command, target.read_bytes())
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert leftovers(tmp_path, name) == [] and leftovers(tmp_path / "real", name) == []
    dangling = tmp_path / ("new-" + name)  # a link to a file not yet there: the file is made
    dangling.symlink_to(Path("real") / ("new-" + name))
    assert_done(run(*args(data, dangling, tmp_path)))
    assert dangling.is_symlink()
    looks_right(command, (tmp_path / "real" / ("new-" + name)).read_bytes())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_devices_are_written_through(
    data, tmp_path: Path, command: str, device: str, real_devices
) -> None:
    args, _ = FILE_COMMANDS[command]
    done = run(*args(data, device, tmp_path))
    if device == "/dev/null":
        assert_done(done)
    else:
        refused(done, "/dev/full: cannot be written: No space left on device")
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    assert not list(Path("/dev").glob(f".{Path(device).name}.*"))


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_a_fifo_is_written_through(data, tmp_path: Path, command: str) -> None:
    args, _ = FILE_COMMANDS[command]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            received.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    done = run(*args(data, fifo, tmp_path))
    if reader.is_alive():  # the command never opened the FIFO: let the reader see its end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    reader.join(30)
    assert_done(done)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    looks_right(command, received[0])


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_dash_is_standard_output(data, tmp_path: Path, command: str) -> None:
    args, _ = FILE_COMMANDS[command]
    done = run(*args(data, "-", tmp_path), cwd=tmp_path)
    if command == "inspect --html":  # its standard output carries the summary
        refused(done, "-: standard output already carries this command's report")
    else:
        assert_done(done)
        looks_right(command, done.stdout)
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("command", [c for c in FILE_COMMANDS if c != "inspect --html"])
def test_dev_stdout_redirected_to_a_file_is_written_not_replaced(
    data, tmp_path: Path, command: str
) -> None:
    """`-o /dev/stdout` with the child's stdout a file: what the shell opened is written."""
    args, _ = FILE_COMMANDS[command]
    redirected = tmp_path / "redirected"
    with redirected.open("wb") as fh:
        inode = os.fstat(fh.fileno()).st_ino
        assert_done(run(*args(data, "/dev/stdout", tmp_path), stdout=fh))
    assert redirected.stat().st_ino == inode
    looks_right(command, redirected.read_bytes())


BAD_BED = "chr1\t100\t200\tx\nchr1\t5\n"  # the second line is bad: found after the first


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_a_failed_command_writes_nothing(data, tmp_path: Path, command: str) -> None:
    """Nothing on stdout for `-`, and an earlier file survives, whatever failed."""
    args, name = FILE_COMMANDS[command]
    if command in ("summarize", "profile", "profile --plot"):
        bad = tmp_path / "bad.bed"
        bad.write_text(BAD_BED)
        failing = lambda out: args(data, out, tmp_path, bad)  # noqa: E731
    else:
        failing = lambda out: args(data, out, tmp_path, True)  # noqa: E731
    if command != "inspect --html":
        done = run(*failing("-"), cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == b"", done.stderr.decode()
    earlier = tmp_path / name
    earlier.write_text("an earlier file\n")
    done = run(*failing(earlier))
    assert done.returncode == 2, done.stderr.decode()
    assert earlier.read_text() == "an earlier file\n"
    assert leftovers(tmp_path, name) == []


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_no_room_is_one_line_and_the_earlier_file_survives(
    data, tmp_path: Path, command: str
) -> None:
    """A file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) stands for a full disk: one line naming
    the output, exit 2, nothing half-written. profile's matrix fits, its picture does not.
    pyBigWig fails on its header (40 bytes) with a RuntimeError, but at 2,000 bytes only says
    so on its stderr at close: the bigWig is then found cut short by its indexes."""
    args, name = FILE_COMMANDS[command]
    earlier = tmp_path / name
    earlier.write_text("earlier\n")
    limits = {"profile --plot": [10_000], "export bigwig": [40, 2_000]}.get(command, [40])
    for limit in limits:
        done = subprocess.run(
            cli_argv(*args(data, earlier, tmp_path)),
            capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size(limit),
            check=False,
        )  # fmt: skip
        assert_clean_refusal(done, f"{earlier}: cannot be written: ")
        assert earlier.read_text() == "earlier\n" and leftovers(tmp_path, name) == []


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_a_file_inside_a_store_is_refused(data, tmp_path: Path, command: str) -> None:
    args, name = FILE_COMMANDS[command]
    inside = data.store / name
    refused(run(*args(data, inside, tmp_path)), f"{inside}: is inside the Zarr store")
    assert not inside.exists() and validate_store(data.store, quick=True).ok


def test_an_output_that_is_an_input_is_refused(data, tmp_path: Path) -> None:
    bed = tmp_path / "r.bed"
    bed.write_bytes(data.bed.read_bytes())
    link = tmp_path / "link.bed"
    link.symlink_to(bed)
    for out in (bed, link):
        refused(run(*_summarize(data, out, tmp_path, bed)), f"{out}: is one of this command's")
        refused(run(*_profile(data, out, tmp_path, bed)), f"{out}: is one of this command's")
        assert bed.read_bytes() == data.bed.read_bytes()
    sheet = tmp_path / "sheet.csv"
    sheet.write_bytes(data.sheet.read_bytes())
    refused(run("check-samplesheet", sheet, "--out", sheet), f"{sheet}: is one of this command's")
    assert sheet.read_bytes() == data.sheet.read_bytes()


@pytest.mark.parametrize("command", ["summarize", "export bedgraph"])
def test_a_closed_pipe_ends_quietly(data, tmp_path: Path, command: str) -> None:
    """The reader is gone before anything is written: ended by SIGPIPE, as coreutils are,
    without a message."""
    args, _ = FILE_COMMANDS[command]
    proc = subprocess.Popen(
        cli_argv(*args(data, "-", tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(300) == -signal.SIGPIPE
    assert b"error" not in stderr and b"Traceback" not in stderr, stderr
    piped = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$@" | head -1', "bash", *map(str, cli_argv(
            *args(data, "-", tmp_path)))],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert piped.returncode in (0, 128 + signal.SIGPIPE), piped.stderr
    assert len(piped.stdout.splitlines()) == 1
    assert "error" not in piped.stderr, piped.stderr


@pytest.mark.parametrize("command", ["plot", "profile --plot"])
def test_an_unsupported_picture_format_is_refused_before_any_work(
    data, tmp_path: Path, command: str
) -> None:
    args, _ = FILE_COMMANDS[command]
    picture = tmp_path / "p.txt"
    refused(
        run(*args(data, picture, tmp_path)),
        f"{picture}: 'txt' is not a picture format bamstore draws (.png, .svg, .pdf)",
    )
    assert list(tmp_path.iterdir()) == []  # profile's matrix was not written either


# ---------------------------------------------------------------------------- store outputs


def _store_args(command: str, d: SimpleNamespace, out: object) -> list[object]:
    if command == "extract":
        return ["extract", "--bam", d.bams[0], "--sample", "a", "--chromosomes", "all",
                "--out", out]  # fmt: skip
    if command == "merge":
        return ["merge", "--out", out, *d.parts]
    return ["build", "--input", d.sheet, "--chromosomes", "all", "--out", out]


STORE_COMMANDS = ["extract", "merge", "build"]


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_a_store_is_never_written_to_a_stream(
    data, tmp_path: Path, command: str, real_devices
) -> None:
    """`-`, a device and a FIFO cannot hold a store (a folder): refused, left as they were."""
    refused(run(*_store_args(command, data, "-"), cwd=tmp_path), "-: ")
    refused(run(*_store_args(command, data, "/dev/null")), "/dev/null: ")
    fifo = tmp_path / "fifo.zarr"
    os.mkfifo(fifo)
    to_null = tmp_path / "null.zarr"
    to_null.symlink_to("/dev/null")
    for out in (fifo, to_null):
        refused(
            run(*_store_args(command, data, out), "--overwrite"),
            f"{out}: is a device or FIFO, and a store is a folder",
        )
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and to_null.is_symlink()
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_a_symlinked_store_is_replaced_and_the_link_kept(
    data, tmp_path: Path, command: str
) -> None:
    real = tmp_path / "real" / "cohort.zarr"
    real.parent.mkdir()
    extract_here(data.bams[1], real, "old")
    link = tmp_path / "cohort.zarr"
    link.symlink_to(real)
    assert_done(run(*_store_args(command, data, link), "--overwrite"))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "old" not in BamStore.open(real).sample_names
    assert validate_store(real).ok
    assert leftovers(tmp_path, link.name) == [] and leftovers(real.parent, real.name) == []
    dangling = tmp_path / "new.zarr"
    dangling.symlink_to(tmp_path / "real" / "new.zarr")
    assert_done(run(*_store_args(command, data, dangling)))
    assert dangling.is_symlink() and validate_store(tmp_path / "real" / "new.zarr").ok


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_a_store_inside_a_store_is_refused(data, tmp_path: Path, command: str) -> None:
    before = chunk_files(data.store)
    inside = data.store / "x.zarr"
    refused(run(*_store_args(command, data, inside)), f"{inside}: is inside the Zarr store")
    assert not inside.exists() and chunk_files(data.store) == before
    assert validate_store(data.store, quick=True).ok


def test_merge_into_one_of_its_parts_is_refused(data, tmp_path: Path) -> None:
    part = tmp_path / "a.zarr"
    extract_here(data.bams[0], part, "a")
    inode = part.stat().st_ino
    refused(
        run("merge", "--out", part, "--overwrite", part, data.parts[1]),
        f"{part}: is one of this command's inputs",
    )
    assert part.stat().st_ino == inode and BamStore.open(part).sample_names == ["a"]
