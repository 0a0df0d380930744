"""Each pipeline module's meta.yml (nf-core conventions) against its main.nf: the same inputs
and outputs, in the same order, with types that fit their declarations (path -> file or
directory, `type: 'dir'` -> directory, val -> neither, eval -> eval), every output under its
emit name and, when it goes to a topic, under that topic too."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted((REPO / "modules" / "local").glob("*/main.nf"))
SECTIONS = ("input", "output", "when", "script", "shell", "exec", "stub")


@dataclass(frozen=True)
class Element:
    """One value of a declaration: ('val', 'meta') for val(meta), ('path', '*.html') for
    path("*.html")."""

    kind: str  # val, path, eval
    name: str
    directory: bool = False  # path(..., type: 'dir')


@dataclass(frozen=True)
class Declaration:
    elements: tuple[Element, ...]
    tuple_: bool
    options: dict[str, str]


def without_comment(line: str) -> str:
    """The line up to a // that is not inside a string."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif line.startswith("//", i):
            return line[:i]
    return line


def split_top_level(text: str) -> list[str]:
    """Comma-separated arguments, not splitting inside parentheses or strings."""
    parts, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    return [*parts, current.strip()] if current.strip() else parts


def unquoted(text: str) -> str:
    return text[1:-1] if text[:1] in "'\"" and text[-1:] == text[:1] else text


def element(kind: str, argument: str) -> Element:
    first, *options = split_top_level(argument)
    directory = any(re.fullmatch(r"type:\s*'dir'", option) for option in options)
    return Element(kind, unquoted(first), directory)


def parse_declaration(line: str) -> Declaration:
    qualifier, _, rest = line.strip().partition(" ")
    arguments = split_top_level(rest)
    values = [a for a in arguments if not re.match(r"^\w+:", a)]
    options = dict(re.match(r"^(\w+):\s*(.*)$", a).groups() for a in arguments if a not in values)
    if qualifier == "tuple":
        elements = []
        for value in values:
            kind, argument = re.fullmatch(r"(\w+)\((.*)\)", value, re.S).groups()
            elements.append(element(kind, argument))
        return Declaration(tuple(elements), True, options)
    # `path samplesheet, stageAs: '...'`: the first argument, then the qualifier's options
    first = element(qualifier, ", ".join([values[0], *(f"{k}: {v}" for k, v in options.items())]))
    return Declaration((first,), False, options)


def declarations(module: Path, section: str) -> list[Declaration]:
    lines = [without_comment(line).rstrip() for line in module.read_text().splitlines()]
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{section}:")
    found = []
    for line in lines[start + 1 :]:
        if line.strip().rstrip(":") in SECTIONS and line.strip().endswith(":"):
            break
        if line.strip():
            found.append(parse_declaration(line))
    return found


def entries(item: object) -> list[tuple[str, dict]]:
    """A meta.yml channel entry (a one-key map, or a list of them for a tuple) as (name, spec)."""
    items = item if isinstance(item, list) else [item]
    assert all(isinstance(entry, dict) and len(entry) == 1 for entry in items), item
    return [next(iter(entry.items())) for entry in items]


def check_types(declared: Declaration, documented: list[tuple[str, dict]], where: str) -> None:
    names = [e.name for e in declared.elements]
    assert [name for name, _ in documented] == names, where
    for value, (name, spec) in zip(declared.elements, documented, strict=True):
        assert spec.get("description"), f"{where}: {name} has no description"
        kind = spec.get("type")
        if value.kind == "path":
            allowed = {"directory"} if value.directory else {"file", "directory"}
            if where.startswith("output") and not value.directory:
                allowed = {"file"}
            assert kind in allowed, f"{where}: {name} is {kind}, not one of {allowed}"
        elif value.kind == "eval":
            assert kind == "eval", f"{where}: {name} is {kind}, not eval"
        else:
            assert kind not in ("file", "directory", "eval"), (
                f"{where}: {name} is a val, not {kind}"
            )


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.parent.name)
def test_meta_yml_matches_main_nf(module: Path) -> None:
    meta = yaml.safe_load((module.parent / "meta.yml").read_text())
    assert meta["name"] == module.parent.name
    assert meta["description"].strip()
    assert len(meta["keywords"]) >= 3
    for tool in meta["tools"]:
        ((name, spec),) = tool.items()
        assert spec["homepage"] and spec["licence"], name
    assert meta["authors"]

    inputs = declarations(module, "input")
    assert len(meta["input"]) == len(inputs)
    for i, (declared, item) in enumerate(zip(inputs, meta["input"], strict=True)):
        assert isinstance(item, list) == declared.tuple_, f"input {i}"
        check_types(declared, entries(item), f"input {i}")

    outputs = declarations(module, "output")
    emits = [d.options.get("emit") for d in outputs]
    assert all(emits), f"every output of {module} needs an emit name"
    assert list(meta["output"]) == emits
    topics: dict[str, list] = {}
    for declared in outputs:
        (item,) = meta["output"][declared.options["emit"]]
        assert isinstance(item, list) == declared.tuple_, declared.options["emit"]
        check_types(declared, entries(item), f"output {declared.options['emit']}")
        if "topic" in declared.options:
            topics.setdefault(declared.options["topic"], []).append(item)
    assert (meta.get("topics") or {}) == topics


def test_every_module_has_a_meta_yml_and_an_nf_test() -> None:
    assert len(MODULES) == 5
    for module in MODULES:
        assert (module.parent / "meta.yml").is_file(), module
        tests = module.parent / "tests"
        assert (tests / "main.nf.test").is_file() and (tests / "main.nf.test.snap").is_file()
        text = (tests / "main.nf.test").read_text()
        assert 'options "-stub"' in text, f"{module}: no stub test"
