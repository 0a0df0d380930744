"""Every public error of bamstore, in one module that imports nothing of bamstore.

Errors users can act on (`InputError` and its kind): the CLI prints each as one line and exits 2,
without a traceback. The others keep the base classes Python callers (and QuantNado's users)
catch: `FormatError` is a ValueError, `ReadOnlyStoreError` a RuntimeError.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from os import PathLike


class BamstoreError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 1


class InputError(BamstoreError):
    """Bad input or usage: names the file, says what is wrong and how to fix it."""

    exit_code = 2

    def __init__(self, subject: str | PathLike[str] | None, problem: str, fix: str | None = None):
        self.subject = str(subject) if subject is not None else None
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.subject}: {self.problem}" if self.subject else self.problem
        if self.fix:
            text += f"; fix: {self.fix}"
        return text


class InputErrors(InputError):
    """Several input problems reported together (samplesheets, merge parts, ...)."""

    def __init__(self, problems: Iterable[InputError], header: str | None = None):
        self.problems = list(problems)
        self.header = header
        lines = [p.line() for p in self.problems]
        BamstoreError.__init__(self, "\n".join(([header] if header else []) + lines))
        self.subject, self.problem, self.fix = None, "\n".join(lines), None

    def line(self) -> str:
        return str(self)


class OutputExistsError(InputError):
    """The output path exists and --overwrite was not given."""

    def __init__(self, path: str | PathLike[str]):
        super().__init__(
            path, "already exists", "pass --overwrite to replace it, or choose another --out"
        )


class OutputLockedError(InputError):
    """Another bamstore process is writing the same output."""

    def __init__(self, path: str | PathLike[str]):
        super().__init__(
            path,
            "another bamstore process is writing this output right now",
            "wait for it to finish, or choose another --out",
        )


class OutOfSpaceError(InputError, OSError):
    """An output that could not be written for lack of room (disk full, quota, file size limit),
    named by its final path, not the temporary one it was staged at. Also an OSError with the
    errno, as Python callers catch a failed write."""

    def __init__(self, subject: str | PathLike[str], errno: int, problem: str, fix: str) -> None:
        super().__init__(subject, problem, fix)
        self.errno = errno

    def __str__(self) -> str:
        return self.line()


class OutputClosedError(BamstoreError, BrokenPipeError):
    """The reader of an output stream went away (`... -o - | head -1`): nothing is wrong with
    the data, so the CLI ends silently, as a SIGPIPE would. Also a BrokenPipeError."""

    def __init__(self, output: str) -> None:
        BrokenPipeError.__init__(self, errno.EPIPE, "the reader of the output closed it", output)
        self.output = output

    def __str__(self) -> str:
        return f"{self.output}: the reader of the output closed it"


class StoreNotFoundError(InputError, FileNotFoundError):
    """No store at the path given; also a FileNotFoundError, as QuantNado's `open` raises."""


class QueryError(InputError, ValueError):
    """A read query that cannot be answered as asked (bad BED line, unknown sample or contig).

    Also a ValueError, so Python callers can catch it as they catch `extract_region`'s errors.
    """

    def __reduce__(self):
        return (type(self), (self.subject, self.problem, self.fix))


class UnanswerableError(QueryError, RuntimeError):
    """The store cannot answer as it stands: chosen samples whose build did not finish, or no
    library sizes to normalise by. Also a RuntimeError, which QuantNado's `extract_region`
    raises for these."""


class ArgumentTypeError(InputError, TypeError):
    """An argument of the wrong type (a float where a sample or a position is expected); also
    a TypeError, as Python callers expect."""

    def __reduce__(self):
        return (type(self), (self.subject, self.problem, self.fix))


class SettingMismatchError(InputError):
    """A store that cannot join another because one setting that decides its values differs.

    Carries the setting's name and both values (as shown). The fix names the setting as `how`
    says it is set: its name here, its flag on the command line (`naming`, called by the CLI).
    """

    def __init__(
        self,
        subject: str | PathLike[str] | None,
        setting: str,
        mine: str,
        theirs: str,
        theirs_label: str,
        how: str | None = None,
    ) -> None:
        self.setting, self.mine, self.theirs, self.theirs_label = (
            setting,
            mine,
            theirs,
            theirs_label,
        )
        super().__init__(
            subject,
            f"has {setting} {mine}, but {theirs_label} has {theirs}",
            f"extract every sample with the same {how or setting}",
        )

    def naming(self, how: str) -> SettingMismatchError:
        """This error with its fix naming the setting as `how` (e.g. its flag)."""
        return SettingMismatchError(
            self.subject, self.setting, self.mine, self.theirs, self.theirs_label, how
        )


class MissingExtraError(InputError, ImportError):
    """An optional dependency is not installed: one line saying which extra to install."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        super().__init__(None, f"{what} needs {package}", f"pip install 'bamstore[{extra}]'")


class ReadOnlyStoreError(RuntimeError):
    """A write method was called on a store opened read-only (QuantNado raises RuntimeError)."""


class StaleKernelError(InputError):
    """The compiled kernel was built from another version of bamstore/engine/_coverage.pyx: the
    user's install to fix (exit 2, one line), not a bug in bamstore."""


class FormatError(ValueError):
    """The `bamstore` attribute cannot be read as this version's record."""


class RemoteReadError(InputError, OSError):
    """A file of a store at a URL that could not be fetched: an error status other than 404,
    a refused or broken connection, a timeout. Names the URL and what the server said."""

    def __init__(self, subject: str, problem: str, fix: str | None = None):
        super().__init__(subject, problem, fix or REMOTE_FIX)

    def __reduce__(self):
        return (type(self), (self.subject, self.problem, self.fix))


REMOTE_FIX = "check that the server is up and serves the store (curl -I the URL), then retry"


class DamagedStoreError(InputError):
    """A store whose files do not hold what its record says: a chunk file or shard that is
    missing, truncated or undecodable. Names the file and points to `bamstore validate`."""

    def __reduce__(self):
        return (type(self), (self.subject, self.problem, self.fix))
