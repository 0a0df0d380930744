"""Where a command's output goes: one policy for every path bamstore writes to.

Guarantees (docs/reliability.md, "Outputs"): the path the user gave is written through, never
replaced by something else; a failed command leaves no partial output and an earlier file
survives; what cannot be written is refused before any work, in one line naming the path.

A file output (summarize's table, profile's matrix, export's track, plot pictures,
`inspect --html`, `check-samplesheet --out`) is written with `file_output`; what the path is
decides how:

  - `-`, and this process's own descriptors (`/dev/stdout`, `/dev/stderr`, `/dev/fd/N`): the
    output is staged in $TMPDIR and written to the descriptor only once the command succeeded,
    so a failure writes nothing there.
  - a character device or a FIFO (`/dev/null`, a named pipe): staged the same way, then opened
    and written in place; never renamed over (a device or FIFO cannot be renamed into place).
  - a regular file, or a name not yet taken: written to `.NAME.tmp-ID` beside it and renamed
    over it when complete, so the path holds the earlier file or the whole new one. A symlink
    is followed: the file it points to is replaced that way and the link is kept. New files get
    the permissions the umask gives (0644 under umask 022).
  - refused: an existing folder, a block device or socket, a missing folder, a path inside an
    existing Zarr store, and a path that is one of the command's inputs.

A store (extract, merge, build) is a folder and is published by `publish.staged_output`; it
shares `refuse_inside_store`, `refuse_input` and `resolve_links` with files, and refuses `-`,
devices and FIFOs (`store_target`).

A closed reader (`... -o - | head -1`) is `OutputClosedError`, which the CLI ends on as a
SIGPIPE would. Running out of room is `OutOfSpaceError` naming the output as given.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import re
import stat
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bamstore.errors import InputError, OutOfSpaceError, OutputClosedError

STDOUT = "-"
COPY_BYTES = 1 << 20
# Write errors that mean no room for the output, and the first half of what the user does.
NO_ROOM_FIXES = {
    errno.ENOSPC: "free space on that filesystem",
    errno.EDQUOT: "free space within your quota",
    errno.EFBIG: "raise the file size limit (ulimit -f)",
}
# This process's descriptors as paths: /dev/fd/N, /proc/self/fd/N, /proc/<our pid>/fd/N.
_DESCRIPTOR_PATH = re.compile(r"/(?:dev/fd|proc/(?:self|(\d+))/fd)/(\d+)")
_MAX_LINKS = 40  # as the kernel's limit on symlinks in one lookup


class Kind(enum.Enum):
    FILE = "a file, staged beside it and renamed over it"
    STREAM = "a character device or FIFO, written in place"
    DESCRIPTOR = "a descriptor of this process, written in place"


@dataclass(frozen=True)
class OutputTarget:
    """An output path as classified: how it is written, and what is written to."""

    given: str  # as the user gave it: what messages name
    kind: Kind
    path: Path | None = None  # FILE: the file replaced (a symlink's target); STREAM: the node
    fd: int | None = None  # DESCRIPTOR


def _label(out: str | os.PathLike[str]) -> str:
    return os.fspath(out)


def own_descriptor(path: str) -> int | None:
    """The descriptor N when `path` (or a symlink on the way to it) is this process's
    /dev/fd/N or /proc/self/fd/N, else None. /dev/stdout -> /proc/self/fd/1 gives 1."""
    current = os.path.abspath(path)
    for _ in range(_MAX_LINKS):
        match = _DESCRIPTOR_PATH.fullmatch(current)
        if match and (match.group(1) is None or int(match.group(1)) == os.getpid()):
            return int(match.group(2))
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return None


def resolve_links(path: str | os.PathLike[str]) -> Path:
    """The path a write lands on: symlinks followed (a dangling one to where it points)."""
    return Path(os.path.realpath(os.path.abspath(path)))


def refuse_inside_store(given: str, resolved: Path) -> None:
    """Refuse an output inside an existing Zarr store: it would become a member the store's
    layout does not have (and `validate` would fail on it)."""
    for folder in resolved.parents:
        if (folder / "zarr.json").is_file():
            raise InputError(
                given,
                f"is inside the Zarr store {folder}, which must not be written into",
                "choose an output outside the store",
            )


def refuse_input(given: str, resolved: Path, inputs: Iterable[object]) -> None:
    """Refuse an output that is one of the command's inputs (the same file, however named)."""
    if not resolved.exists():
        return
    for item in inputs:
        if not isinstance(item, str | os.PathLike) or _label(item) == STDOUT:
            continue
        with contextlib.suppress(OSError):
            if os.path.samefile(resolved, item):
                same = "" if _label(item) == given else f" ({_label(item)}, the same file)"
                raise InputError(
                    given,
                    f"is one of this command's inputs{same}: writing it would destroy it",
                    "choose another output",
                )


def output_target(
    out: str | os.PathLike[str], *, inputs: Iterable[object] = (), stdout: bool = True
) -> OutputTarget:
    """Classify the file output `out`, refusing (InputError) what must not be written.

    Cheap and side-effect free, so commands call it before any work; `file_output` calls it
    again. `stdout` False refuses `-` (for a command whose standard output carries a report).
    """
    given = _label(out)
    if given == STDOUT:
        if not stdout:
            raise InputError(
                given,
                "standard output already carries this command's report",
                "give a file name",
            )
        return OutputTarget(given, Kind.DESCRIPTOR, fd=1)
    fd = own_descriptor(given)
    if fd is not None:
        try:
            os.fstat(fd)
        except OSError:
            message = f"descriptor {fd} is not open"
            raise InputError(given, message, "choose another output") from None
        return OutputTarget(given, Kind.DESCRIPTOR, fd=fd)
    resolved = resolve_links(given)
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise InputError(given, f"cannot be written: {exc.strerror}", "check the path") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise InputError(given, "is a folder", "give a file name (e.g. inside that folder)")
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        if not os.access(resolved, os.W_OK):
            raise InputError(given, "is not writable", "choose another output")
        return OutputTarget(given, Kind.STREAM, path=resolved)
    if mode is not None and not stat.S_ISREG(mode):
        raise InputError(given, "is not a file (a block device or socket)", "choose another output")
    folder = resolved.parent
    if not folder.is_dir():
        raise InputError(given, "its folder does not exist", "create it, or choose another output")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(given, f"its folder {folder} is not writable", "choose another output")
    refuse_inside_store(given, resolved)
    refuse_input(given, resolved, inputs)
    return OutputTarget(given, Kind.FILE, path=resolved)


def file_name_problem(name: str, suffix: str = "") -> str | None:
    """Why `name` + `suffix` cannot be one file name inside a folder (it would be empty, leave
    the folder, or not be a name at all), or None. For names that come from elsewhere, such as
    a store's sample names."""
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return f"{name!r} is not a file inside the folder"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "it contains a control character"
    if len((name + suffix).encode()) > 255:
        return "it is longer than a file name may be (255 bytes)"
    return None


def store_target(out: str | os.PathLike[str], *, inputs: Iterable[object] = ()) -> Path:
    """The folder a store at `out` is published at (a symlink's target), refusing standard
    output, devices, FIFOs, a path inside another store and one of the command's inputs."""
    given = _label(out)
    if given == STDOUT or own_descriptor(given) is not None:
        raise InputError(given, "a store is a folder, not a stream", "give --out NAME.zarr")
    resolved = resolve_links(given)
    try:
        mode = os.stat(resolved).st_mode
    except OSError:
        mode = stat.S_IFDIR  # not there (yet): checked as a path by publish.check_output_path
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise InputError(
            given, "is a device or FIFO, and a store is a folder", "give --out NAME.zarr"
        )
    refuse_inside_store(given, resolved)
    refuse_input(given, resolved, inputs)
    return resolved


def out_of_space(
    exc: BaseException, given: str, problem: str, fix_tail: str, fix: str | None = None
) -> InputError | None:
    """`exc` as OutOfSpaceError naming `given` if it means no room (disk full, quota, size
    limit), else None. The fix is the errno's (NO_ROOM_FIXES) followed by `fix_tail`, or `fix`."""
    if isinstance(exc, OutOfSpaceError) or not isinstance(exc, OSError):
        return None
    first = NO_ROOM_FIXES.get(exc.errno)  # type: ignore[arg-type]
    if first is None:
        return None
    return OutOfSpaceError(
        given,
        exc.errno,  # type: ignore[arg-type]
        f"cannot be written: {exc.strerror}; {problem}",
        fix or f"{first} {fix_tail}",
    )


def _staged_beside(final: Path) -> Path:
    """A new empty file beside `final`, with the permissions the umask gives new files."""
    while True:
        tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextlib.contextmanager
def file_output(
    out: str | os.PathLike[str], *, inputs: Iterable[object] = (), stdout: bool = True
) -> Iterator[Path]:
    """Yield a path to write the output into; on success it lands at `out` by the policy above
    (`inputs` and `stdout` as for `output_target`).

    If the body raises, nothing reaches `out` (an earlier file there is kept) and the staged
    file is removed.
    """
    target = output_target(out, inputs=inputs, stdout=stdout)
    if target.kind is Kind.FILE:
        assert target.path is not None
        tmp = _staged_beside(target.path)
        try:
            yield tmp
            os.replace(tmp, target.path)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            no_room = out_of_space(
                exc, target.given, "nothing was written there", "or choose another output"
            )
            if no_room is not None:
                raise no_room from exc
            raise
        return
    fd, name = tempfile.mkstemp(prefix="bamstore-output-")
    os.close(fd)
    staged = Path(name)
    try:
        try:
            yield staged
        except OSError as exc:
            no_room = out_of_space(
                exc,
                target.given,
                f"it is staged in {staged.parent} first, and nothing was written",
                "there, or set TMPDIR to a folder with room",
            )
            if no_room is not None:
                raise no_room from exc
            raise
        _copy_into(staged, target)
    finally:
        staged.unlink(missing_ok=True)


def _copy_into(staged: Path, target: OutputTarget) -> None:
    """Write the staged output to a descriptor, device or FIFO (opened, never replaced)."""
    try:
        with staged.open("rb") as src:
            sink = getattr(sys.stdout, "buffer", None) if target.fd == 1 else None
            if sink is not None:  # through Python's own buffer of stdout, which is flushed
                sys.stdout.flush()
                while block := src.read(COPY_BYTES):
                    sink.write(block)
                sink.flush()
                return
            if target.kind is Kind.DESCRIPTOR:
                assert target.fd is not None
                _write_all(target.fd, src)
                return
            assert target.path is not None
            fd = os.open(target.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                _write_all(fd, src)
            finally:
                os.close(fd)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise OutputClosedError(target.given) from exc
        no_room = out_of_space(
            exc,
            target.given,
            "what reached it is incomplete",
            "",
            "make room where it leads, or choose another output",
        )
        if no_room is not None:
            raise no_room from exc
        raise


def _write_all(fd: int, src: object) -> None:
    while block := src.read(COPY_BYTES):  # type: ignore[attr-defined]
        view = memoryview(block)
        while view:
            view = view[os.write(fd, view) :]
