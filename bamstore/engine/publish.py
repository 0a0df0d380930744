"""Build a store beside its final path and publish it by rename, under a lock.

Guarantees (docs/reliability.md): nothing half-written ever sits at the final path; an existing
store is replaced only when asked and survives any failure of the new build; two processes
writing the same output cannot both proceed.

  - The new store is built at `.<name>.tmp-<id>` in the same directory (same filesystem, so the
    final rename is atomic).
  - Replacing uses renameat2(RENAME_EXCHANGE) where the kernel and filesystem support it: the old
    and new stores swap in one step, then the old one is deleted. Elsewhere (NFS, macOS) the old
    store is first renamed to `.<name>.old-<id>`; a crash between the two renames leaves it
    there, and the next run on the same output puts it back.
  - The lock is an flock on `.<name>.lock`, released by the kernel if the process dies.
  - A symlink at the output is followed: the store it points to is the one built beside and
    replaced, and the link stays. Standard output, devices, FIFOs, a path inside another store
    and a path that is one of the command's inputs are refused (the checks `outputs` applies
    to every output).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from bamstore import layout
from bamstore.engine.outputs import out_of_space, resolve_links, store_target
from bamstore.errors import InputError, OutputExistsError, OutputLockedError

log = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _libc_renameat2():  # pragma: no cover - platform probe
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        func = ctypes.CDLL(name, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_renameat2 = _libc_renameat2()


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False if this system cannot."""
    if _renameat2 is None:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _sibling(final: Path, kind: str) -> Path:
    return final.parent / f".{final.name}.{kind}-{uuid.uuid4().hex[:12]}"


def _siblings(final: Path, kind: str) -> list[Path]:
    return sorted(final.parent.glob(f".{final.name}.{kind}-*"))


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def output_lock(final: Path, subject: Path | None = None) -> Iterator[None]:
    """Exclusive, non-blocking lock for one output path; refuses if another process holds it.

    `subject` is the path named in that refusal (default `final`).
    """
    lock_path = final.parent / f".{final.name}.lock"
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(subject or final) from None
        # The file may have been unlinked by the previous holder after we opened it.
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def _recover(final: Path) -> None:
    """Under the lock, leftovers of dead runs are ours to clean; a set-aside old store returns."""
    olds = _siblings(final, "old")
    if not final.exists() and len(olds) == 1:
        log.warning("%s: restoring the previous store left aside by an interrupted run", final)
        os.rename(olds[0], final)
        olds = []
    for leftover in _siblings(final, "tmp") + olds:
        log.info("removing leftover %s of an interrupted run", leftover)
        remove_tree(leftover)


def check_output_path(
    final: Path, *, overwrite: bool, suffix: str | None = ".zarr", inputs: Iterable[object] = ()
) -> None:
    """Fail early (before any work) on an output that cannot or must not be written.

    Missing folders above `final` are fine (`output_folder` creates them) if the nearest
    existing one is writable. `overwrite` replaces only a store that bamstore wrote, never a
    user's folder or file. A symlink is checked as the store it points to; `inputs` are the
    command's inputs, none of which the output may be.
    """
    final = Path(os.path.abspath(final))
    if suffix and final.suffix != suffix:
        raise InputError(
            final,
            f"output name must end in {suffix}",
            f"use e.g. --out {final.with_suffix(suffix).name} (QuantNado opens only *.zarr stores)",
        )
    target = store_target(final, inputs=inputs)
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(final, f"{parent} is not a folder", "choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(
            final, f"output folder {parent} is not writable", "choose a writable --out"
        )
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise OutputExistsError(final)
        if not layout.written_by_bamstore(target):
            raise InputError(
                final,
                "exists and is not a store written by bamstore, so --overwrite does not replace it",
                "choose another --out, or move it away yourself",
            )


@contextlib.contextmanager
def output_folder(final: Path) -> Iterator[None]:
    """Create the missing folders above `final` (as most tools do); if the body fails, remove
    those it created again, as far as they are still empty."""
    created: list[Path] = []
    folder = Path(os.path.abspath(final)).parent
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    for folder in reversed(created):
        folder.mkdir(exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise


@contextlib.contextmanager
def staged_output(final: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary sibling path to build into; publish it at `final` on success.

    Running out of room while building is OutOfSpaceError naming `final` (as given), raised
    once the temporary path is removed. A symlink at `final` is followed: the store it points
    to is replaced, and the link kept.
    """
    given = final
    check_output_path(final, overwrite=overwrite, suffix=None)
    final = resolve_links(final)
    with output_folder(final), output_lock(final):
        _recover(final)
        check_output_path(final, overwrite=overwrite, suffix=None)
        tmp = _sibling(final, "tmp")
        try:
            yield tmp
            publish(tmp, final)
        except BaseException as exc:
            remove_tree(tmp)
            no_room = out_of_space(
                exc,
                str(given),
                "nothing was published and the partial output was removed",
                "or choose another --out, then re-run",
            )
            if no_room is not None:
                raise no_room from exc
            raise


def publish(tmp: Path, final: Path) -> None:
    """Move `tmp` to `final`; an existing `final` is swapped out in one step where possible."""
    if not final.exists() and not final.is_symlink():
        os.rename(tmp, final)
        return
    if exchange_paths(tmp, final):
        remove_tree(tmp)  # now holds the old store
        return
    old = _sibling(final, "old")
    os.rename(final, old)
    os.rename(tmp, final)
    remove_tree(old)
