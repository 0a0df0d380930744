"""The commands bamstore prints after "fix:", each naming the real file.

A fix is only useful if it can be pasted as it is: every command here is built from the path
the user gave (quoted for the shell), never from a placeholder standing in for it.
"""

from __future__ import annotations

import shlex
from os import PathLike
from pathlib import Path


def _q(path: str | PathLike[str]) -> str:
    return shlex.quote(str(path))


def sorted_copy(path: Path) -> Path:
    """Where a sorted copy of `path` goes: beside it for a file, in the working directory for
    a stream (a pipe or /dev/stdin has no folder to write into)."""
    stem = path.name.split(".")[0] or "reads"
    if path.is_file():
        return path.with_name(stem + ".sorted.bam")
    return Path(stem + ".sorted.bam")


# For standard input (`--bam -`) the fix is a step in the user's pipe, not a file to write.
_IN_THE_PIPE = "samtools sort -O bam - | bamstore extract --bam - ..."


def _is_stdin(path: str | PathLike[str]) -> bool:
    return str(path) == "-"


def sort_and_index(path: Path) -> str:
    """Sort (and convert from SAM/CRAM/gzip SAM, which samtools sort reads) and index."""
    if _is_stdin(path):
        return "sort it in the pipe: ... | " + _IN_THE_PIPE
    out = sorted_copy(path)
    return f"samtools sort -o {_q(out)} {_q(path)} && samtools index {_q(out)}"


def convert_to_bam(path: Path) -> str:
    """SAM text (plain, gzip or BGZF) to a sorted, indexed BAM."""
    if _is_stdin(path):
        return "... | " + _IN_THE_PIPE
    out = sorted_copy(path)
    return f"samtools view -b {_q(path)} | samtools sort -o {_q(out)} - && samtools index {_q(out)}"


def read_every_record(path: str | PathLike[str]) -> str:
    """A check that finds damage inside the file (a bad block in the middle): it reads every
    record. `samtools quickcheck` reads only the header and the end, and passes such a file."""
    if _is_stdin(path):
        return "samtools view -c on the file the stream comes from (it reads every record)"
    return f"samtools view -c {_q(path)} (it reads every record; samtools quickcheck does not)"


def quickcheck(path: str | PathLike[str]) -> str:
    if _is_stdin(path):
        return "samtools quickcheck -v on the file the stream comes from"
    return f"samtools quickcheck -v {_q(path)}"


def index(path: str | PathLike[str]) -> str:
    return f"samtools index {_q(path)}"


def idxstats(path: str | PathLike[str]) -> str:
    return f"samtools idxstats {_q(path)}"
