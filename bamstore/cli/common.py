"""What every command shares: the error contract (`command_options`), logging, and the options
several commands take."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from bamstore.errors import (
    BamstoreError,
    InputError,
    InputErrors,
    OutputClosedError,
    SettingMismatchError,
)

STORE_HELP = "STORE is a path or an http(s):// or s3:// URL (read-only; needs bamstore[remote])."

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
    # bamstore's own messages at the level asked for; other libraries' (numcodecs, fsspec,
    # imported on first use) only from warnings up, even with --debug
    root.setLevel(logging.WARNING)
    logging.getLogger("bamstore").setLevel(level)
    # htslib's own [E::...] lines: bamstore reports those problems itself (kept with --debug);
    # set when the BAM input is first imported, so commands that read no BAM never load pysam
    from bamstore.engine import bam_input_settings

    bam_input_settings.quiet_htslib = not debug
    if not debug and "bamstore.engine.bam_input" in sys.modules:
        from bamstore.engine.bam_input import quiet_htslib

        quiet_htslib()


# How each recorded setting (`layout.StoreSettings`, by name) is set on the command line: the
# flag a message names where parts disagree on it (a test holds this to the settings and flags).
SETTING_OPTIONS = {
    "chunk_len": "--chunk-len",
    "compression": "--compression",
    "chromosome_selection": "--chromosomes",
    "exclude_flags": "--exclude-flags",
    "min_mapq": "--min-mapq",
    "count_deletions": "--count-deletions",
    "mode": "--mode",
    "extend": "--extend",
    "shift": "--shift",
    "min_fragment_len": "--min-fragment-len",
    "max_fragment_len": "--max-fragment-len",
    "coverage_definition": "bamstore version",
    "shard": "--shard",
}


def in_flags(problem: InputError) -> InputError:
    """`problem` as the command line says it: a setting named by the flag that sets it."""
    if isinstance(problem, SettingMismatchError):
        return problem.naming(SETTING_OPTIONS[problem.setting])
    return problem


def end_as_closed_pipe() -> NoReturn:
    """The reader of our output went away (`... -o - | head -1`): end as coreutils do, killed
    by SIGPIPE (status 141 in the shell) without a message.

    Python ignores SIGPIPE from the start, so that a closed socket is an error to handle (a
    remote store's connection); the default action is restored only here, at the end."""
    with contextlib.suppress(OSError, ValueError):  # nothing left to flush into the pipe
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(128 + signal.SIGPIPE)  # where the signal does not end the process


def command_options(func: F) -> F:
    """--debug and --quiet on every command, and the error contract around it."""

    @click.option("--debug", is_flag=True, help="Show tracebacks and debug messages.")
    @click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")
    @functools.wraps(func)
    def wrapper(*args: Any, debug: bool, quiet: bool, **kwargs: Any) -> Any:
        _configure_logging(quiet, debug)
        try:
            return func(*args, **kwargs)
        except OutputClosedError:
            if debug:
                raise
            end_as_closed_pipe()
        except BamstoreError as exc:
            if debug:
                raise
            lines = exc.problems if isinstance(exc, InputErrors) else [exc]
            if isinstance(exc, InputErrors) and exc.header and len(lines) > 1:
                click.echo(f"bamstore: error: {exc.header}", err=True)
            for problem in lines:
                text = in_flags(problem).line() if isinstance(problem, InputError) else str(problem)
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
