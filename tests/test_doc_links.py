"""Every relative link in README.md and docs/*.md resolves: the file (or folder) exists, and a
`#anchor` into one of our markdown files names one of its headings (GitHub's heading ids).
External links (http, https, mailto) are not fetched."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from support import REPO

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+).+?\1")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:", "ftp://")


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks and HTML comments, code spans removed."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    in_comment = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        if in_comment or "<!--" in line:
            in_comment = "-->" not in line.split("<!--")[-1]
            continue
        out.append((number, CODE_SPAN.sub("", line)))
    return out


def slug(heading: str) -> str:
    """GitHub's id for a heading: its text lowercased, punctuation other than `-` and `_`
    dropped, spaces turned into hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = text.replace("`", "").strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The ids of every heading of a markdown file (repeats get -1, -2, ... as on GitHub)."""
    seen: Counter[str] = Counter()
    out: set[str] = set()
    fence: str | None = None
    for line in path.read_text().splitlines():
        stripped = line.lstrip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            out.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return out


def broken_links(path: Path) -> list[str]:
    """`file:line: target: why` for every relative link of `path` that does not resolve."""
    problems: list[str] = []
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    for number, line in _prose_lines(path.read_text()):
        for target in LINK.findall(line):
            if target.startswith(EXTERNAL):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                problems.append(f"{where}:{number}: {target}: {file_part} does not exist")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{where}:{number}: {target}: no heading #{anchor} there")
    return problems


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path: Path) -> None:
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## The samplesheet (`--input`)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#the-samplesheet---input) and [here](#page) and "
        "[web](https://example.org/x.md)\n"
        "[gone](missing.md) and [no heading](other.md#nowhere)\n"
        "`[in code](missing.md)`\n\n"
        "```\n[in a block](missing.md)\n```\n"
    )
    assert broken_links(page) == [
        f"{page}:4: missing.md: missing.md does not exist",
        f"{page}:4: other.md#nowhere: no heading #nowhere there",
    ]


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Normalisation (`--normalise`, `normalise=`)", "normalisation---normalise-normalise"),
        ("SLURM (`-profile slurm`)", "slurm--profile-slurm"),
        (
            "A lazy xarray / Dask view: more than one machine",
            "a-lazy-xarray--dask-view-more-than-one-machine",
        ),
        ("Against deeptools 4.0", "against-deeptools-40"),
        ("bamstore scale-factors", "bamstore-scale-factors"),
    ],
)
def test_heading_ids_follow_github(heading: str, expected: str) -> None:
    assert slug(heading) == expected
