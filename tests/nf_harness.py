"""Run a Nextflow module's `script:` (or `stub:`) block without Nextflow.

Nextflow cannot run here, so the module contract tests (tests/test_nf_modules.py) do what a task
does, by hand:

1. read the process from `modules/local/<name>/main.nf`: its `input:` and `output:`
   declarations, the statements before the script string (`def args = task.ext.args ?: ''`,
   `prefix = ...`) and the script string itself;
2. evaluate `ext.args` from conf/modules.config (the closure, with `params` from nextflow.config
   plus the test's overrides, and the task's `meta`);
3. stage the inputs as symlinks in a scratch directory laid out like a task work dir (honouring
   `stageAs: 'parts/?/*'`), render the script with Groovy's string rules and Nextflow's
   indentation stripping, and run it with `bash -C -e -u -o pipefail` (process.shell) with
   `bin/` first on PATH, as Nextflow puts it;
4. resolve every declared `path(...)` output (globs and `type: 'dir'` included) in that dir.

The Groovy understood here is deliberately small: string literals with `${...}` and `$name`
interpolation, names and properties (`meta.id`, `task.ext.args`), `?:`, `? :`, `!`, `&&`, `||`,
`==`, `!=`, `+`, list literals, and the methods join, findAll, trim, toString. Anything else in
a script preamble or an ext.args closure raises GroovySubsetError: extend this file (and keep
the module simple) rather than letting a test skip it.
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
PROCESS_SHELL = ["bash", "-C", "-e", "-u", "-o", "pipefail"]  # nextflow.config process.shell


class GroovySubsetError(ValueError):
    """The module uses Groovy this harness does not evaluate."""


# --------------------------------------------------------------------------------------------
# Values as Groovy and Nextflow print them


class PathList(list):
    """A list of staged paths: Nextflow interpolates it blank-separated ("a b c")."""

    def __str__(self) -> str:
        return " ".join(str(p) for p in self)


class Obj(dict):
    """A map or object whose properties are read with `.name` (missing → null)."""


def groovy_str(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, PathList):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(groovy_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{k}:{groovy_str(v)}" for k, v in value.items()) + "]"
    return str(value)


def groovy_truth(value: Any) -> bool:
    return bool(value)  # null, '', 0, empty list/map are false in both languages


# --------------------------------------------------------------------------------------------
# A small Groovy expression evaluator

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>\d+)
      | (?P<op>\?:|==|!=|&&|\|\||[?:.,()\[\]!+\-])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise GroovySubsetError(f"cannot read Groovy at: {text[pos : pos + 40]!r}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


class _Parser:
    def __init__(self, text: str, scope: Mapping[str, Any]):
        self.tokens = _tokenize(text)
        self.i = 0
        self.scope = scope

    def peek(self, value: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        return value is None or self.tokens[self.i][1] == value

    def take(self, value: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise GroovySubsetError(f"unexpected end of expression (wanted {value!r})")
        token = self.tokens[self.i]
        if value is not None and token[1] != value:
            raise GroovySubsetError(f"expected {value!r}, found {token[1]!r}")
        self.i += 1
        return token

    def parse(self) -> Any:
        value = self.ternary()
        if self.i != len(self.tokens):
            raise GroovySubsetError(f"unexpected {self.tokens[self.i][1]!r}")
        return value

    def ternary(self) -> Any:
        cond = self.logical_or()
        if self.peek("?:"):
            self.take()
            other = self.ternary()
            return cond if groovy_truth(cond) else other
        if self.peek("?"):
            self.take()
            yes = self.ternary()
            self.take(":")
            no = self.ternary()
            return yes if groovy_truth(cond) else no
        return cond

    def logical_or(self) -> Any:
        value = self.logical_and()
        while self.peek("||"):
            self.take()
            other = self.logical_and()
            value = groovy_truth(value) or groovy_truth(other)
        return value

    def logical_and(self) -> Any:
        value = self.equality()
        while self.peek("&&"):
            self.take()
            other = self.equality()
            value = groovy_truth(value) and groovy_truth(other)
        return value

    def equality(self) -> Any:
        value = self.additive()
        if self.peek("==") or self.peek("!="):
            op = self.take()[1]
            other = self.additive()
            return (value == other) if op == "==" else (value != other)
        return value

    def additive(self) -> Any:
        value = self.unary()
        while self.peek("+") or self.peek("-"):
            op = self.take()[1]
            other = self.unary()
            if op == "+":
                value = (
                    groovy_str(value) + groovy_str(other)
                    if isinstance(value, str) or isinstance(other, str)
                    else value + other
                )
            else:
                value = value - other
        return value

    def unary(self) -> Any:
        if self.peek("!"):
            self.take()
            return not groovy_truth(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        value = self.primary()
        while self.peek(".") or self.peek("["):
            if self.take()[1] == "[":
                index = self.ternary()
                self.take("]")
                value = value[index]
                continue
            name = self.take()[1]
            if self.peek("("):
                self.take("(")
                args = self.arguments(")")
                value = _call(value, name, args)
            else:
                if value is None:
                    raise GroovySubsetError(f"null.{name} (NullPointerException in Groovy)")
                value = value.get(name) if isinstance(value, dict) else getattr(value, name)
        return value

    def arguments(self, close: str) -> list[Any]:
        args = []
        while not self.peek(close):
            args.append(self.ternary())
            if self.peek(","):
                self.take()
        self.take(close)
        return args

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return render_gstring(text[1:-1], self.scope) if text[0] == '"' else _unescape(text)
        if kind == "num":
            return int(text)
        if text == "(":
            value = self.ternary()
            self.take(")")
            return value
        if text == "[":
            return self.arguments("]")
        if kind == "name":
            if text in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[text]
            if text not in self.scope:
                raise GroovySubsetError(f"unknown name {text!r}")
            return self.scope[text]
        raise GroovySubsetError(f"unexpected {text!r}")


def _unescape(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _call(value: Any, name: str, args: list[Any]) -> Any:
    if name == "toString" and not args:
        return groovy_str(value)
    if isinstance(value, list):
        if name == "join":
            return (args[0] if args else "").join(groovy_str(v) for v in value)
        if name == "findAll" and not args:
            return [v for v in value if groovy_truth(v)]
    if isinstance(value, str) and name == "trim" and not args:
        return value.strip()
    raise GroovySubsetError(f"method {name}() on {type(value).__name__} is not in the subset")


def evaluate(expression: str, scope: Mapping[str, Any]) -> Any:
    return _Parser(expression, scope).parse()


def render_gstring(body: str, scope: Mapping[str, Any]) -> str:
    """The value of a double-quoted (or triple-double-quoted) Groovy string."""
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
        elif c == "$" and body.startswith("${", i):
            end = _closing_brace(body, i + 1)
            out.append(groovy_str(evaluate(body[i + 2 : end], scope)))
            i = end + 1
        elif c == "$" and i + 1 < len(body) and (body[i + 1].isalpha() or body[i + 1] == "_"):
            m = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*").match(body, i + 1)
            assert m
            out.append(groovy_str(evaluate(m.group(0), scope)))
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _closing_brace(text: str, open_at: int) -> int:
    """Index of the `}` closing the `{` at open_at (strings and nested braces skipped)."""
    depth, i, quote = 0, open_at, None
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise GroovySubsetError(f"unbalanced braces in {text[open_at : open_at + 60]!r}")


# --------------------------------------------------------------------------------------------
# Processes


@dataclass
class PathDecl:
    name: str  # the variable (inputs) or the file pattern (outputs, Groovy string)
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Process:
    name: str
    source: Path
    directives: str
    inputs: list[list[tuple[str, PathDecl]]]  # each line: [(qualifier, decl), ...]
    outputs: list[tuple[list[tuple[str, PathDecl]], str | None]]  # (elements, emit)
    script: tuple[list[str], str]  # (preamble statements, string body)
    stub: tuple[list[str], str] | None


_SECTION = re.compile(r"^\s*(input|output|when|script|stub|exec|shell):\s*$")


def read_process(path: Path) -> Process:
    text = path.read_text()
    m = re.search(r"^process\s+([A-Z0-9_]+)\s*\{", text, re.M)
    if not m:
        raise ValueError(f"{path}: no process")
    name = m.group(1)
    body = text[m.end() : _closing_brace(text, m.end() - 1)]
    sections: dict[str, list[str]] = {"directives": []}
    current = "directives"
    for line in body.splitlines():
        sm = _SECTION.match(line)
        if sm:
            current = sm.group(1)
            sections[current] = []
        else:
            sections[current].append(line)
    return Process(
        name=name,
        source=path,
        directives="\n".join(sections["directives"]),
        inputs=[_declarations(line) for line in _decl_lines(sections.get("input", []))],
        outputs=[_output_line(line) for line in _decl_lines(sections.get("output", []))],
        script=_script(sections["script"], path),
        stub=_script(sections["stub"], path) if "stub" in sections else None,
    )


def _decl_lines(lines: list[str]) -> list[str]:
    return [ln.split("//")[0].strip() for ln in lines if ln.split("//")[0].strip()]


def _split_top(text: str, sep: str = ",") -> list[str]:
    parts, depth, quote, cur = [], 0, None, []
    for c in text:
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(c)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def _declarations(line: str) -> list[tuple[str, PathDecl]]:
    """`tuple val(meta), path(bam)` / `path x, stageAs: 'y'` → [(qualifier, decl), ...]."""
    if line.startswith("tuple "):
        items = _split_top(line[len("tuple ") :])
    else:
        m = re.match(r"(val|path|env)\s+(\w+)\s*(?:,\s*(.*))?$", line)
        if m:
            extra = f", {m.group(3)}" if m.group(3) else ""
            items = [f"{m.group(1)}({m.group(2)}{extra})"]
        else:
            items = [line]
    decls = []
    for item in items:
        im = re.match(r"(val|path|env|eval)\s*\((.*)\)$", item)
        if not im:
            raise GroovySubsetError(f"cannot read declaration {item!r}")
        args = _split_top(im.group(2))
        options = {}
        for opt in args[1:]:
            key, _, value = opt.partition(":")
            options[key.strip()] = value.strip().strip("'\"")
        decls.append((im.group(1), PathDecl(args[0], options)))
    return decls


def _output_line(line: str) -> tuple[list[tuple[str, PathDecl]], str | None]:
    emit = None
    m = re.search(r",\s*emit:\s*(\w+)\s*$", line)
    if m:
        emit = m.group(1)
        line = line[: m.start()]
    if line.startswith("path ") and not line.startswith("path("):
        line = f"path({line[len('path ') :]})"
    return _declarations(line), emit


def _script(lines: list[str], path: Path) -> tuple[list[str], str]:
    text = "\n".join(lines)
    start = text.index('"""')
    end = text.index('"""', start + 3)
    preamble = [ln.strip() for ln in text[:start].splitlines() if ln.strip()]
    preamble = [ln for ln in preamble if not ln.startswith("//")]
    body = text[start + 3 : end]
    if body.startswith("\n"):
        body = body[1:]
    return preamble, body


def run_statements(statements: list[str], scope: dict[str, Any]) -> None:
    for stmt in statements:
        m = re.match(r"(?:def\s+)?([A-Za-z_]\w*)\s*=\s*(.+)$", stmt)
        if not m:
            raise GroovySubsetError(f"cannot run statement {stmt!r}")
        scope[m.group(1)] = evaluate(m.group(2), scope)


def render_script(preamble: list[str], body: str, scope: dict[str, Any]) -> str:
    """The task's .command.sh: the Groovy string, then Nextflow's stripIndent()."""
    run_statements(preamble, scope)
    return textwrap.dedent(render_gstring(body, scope))


# --------------------------------------------------------------------------------------------
# Config files


def config_params(path: Path = REPO / "nextflow.config") -> dict[str, Any]:
    """The literal defaults of the `params { }` block (expressions map to the string EXPR)."""
    text = path.read_text()
    m = re.search(r"^params\s*\{", text, re.M)
    if not m:
        raise ValueError(f"{path}: no params block")
    block = text[m.end() : _closing_brace(text, m.end() - 1)]
    out: dict[str, Any] = {}
    for line in block.splitlines():
        line = line.split("//")[0].strip()
        if not line:
            continue
        name, eq, value = line.partition("=")
        if not eq:
            raise ValueError(f"{path}: cannot read params line {line!r}")
        out[name.strip()] = _literal(value.strip())
    return out


EXPR = object()


def _literal(text: str) -> Any:
    if re.fullmatch(r"'[^']*'", text):
        return text[1:-1]
    if re.fullmatch(r'"[^"$]*"', text):
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[text]
    return EXPR


def ext_setting(process: str, setting: str, config: Path = REPO / "conf" / "modules.config"):
    """The Groovy source of `ext.<setting>` in the `withName: '<process>'` block, or None.

    Returns ('closure', body) or ('value', expression).
    """
    text = config.read_text()
    m = re.search(r"withName:\s*['\"]" + re.escape(process) + r"['\"]\s*\{", text)
    if not m:
        return None
    block = text[m.end() : _closing_brace(text, m.end() - 1)]
    sm = re.search(r"ext\." + setting + r"\s*=\s*", block)
    if not sm:
        return None
    rest = block[sm.end() :]
    if rest.startswith("{"):
        return "closure", rest[1 : _closing_brace(rest, 0)]
    return "value", rest.splitlines()[0].strip()


def ext_value(process: str, setting: str, scope: Mapping[str, Any]) -> Any:
    found = ext_setting(process, setting)
    if found is None:
        return None
    return evaluate(found[1], scope)


# --------------------------------------------------------------------------------------------
# A task


@dataclass
class TaskResult:
    workdir: Path
    script: str
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, list[Path]]  # emit name → resolved path outputs
    scope: dict[str, Any]


def _stage(workdir: Path, value: Any, decl: PathDecl) -> Any:
    if value in (None, []):
        return PathList()
    files = value if isinstance(value, list) else [value]
    pattern = decl.options.get("stageAs")
    staged = []
    for index, src in enumerate(files, start=1):
        src = Path(src)
        name = pattern.replace("?", str(index)).replace("*", src.name) if pattern else src.name
        target = workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(src.resolve())
        staged.append(name)
    return staged[0] if not isinstance(value, list) else PathList(staged)


def _expand_braces(pattern: str) -> list[str]:
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [
        variant
        for alt in m.group(1).split(",")
        for variant in _expand_braces(pattern[: m.start()] + alt + pattern[m.end() :])
    ]


def run_task(
    process: Process,
    workdir: Path,
    inputs: Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    cpus: int = 2,
    stub: bool = False,
    ext_prefix: str | None = None,
) -> TaskResult:
    """Stage `inputs` (name → value: a Path, a list of Paths, [] or a plain value), compute
    task.ext.args from conf/modules.config, run the script and collect the declared outputs.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    declared = {decl.name for line in process.inputs for _, decl in line}
    if set(inputs) != declared:
        raise AssertionError(
            f"{process.name} declares inputs {sorted(declared)}, the test gave {sorted(inputs)}"
        )
    all_params = {k: v for k, v in config_params().items() if v is not EXPR}
    all_params.update(params or {})
    scope: dict[str, Any] = {"params": Obj(all_params)}
    for line in process.inputs:
        for qualifier, decl in line:
            value = inputs[decl.name]
            if qualifier == "path":
                scope[decl.name] = _stage(workdir, value, decl)
            else:
                scope[decl.name] = Obj(value) if isinstance(value, dict) else value
    ext = Obj(
        args=ext_value(process.name, "args", scope),
        prefix=ext_prefix,
        when=None,
    )
    scope["task"] = Obj(cpus=cpus, ext=ext, process=process.name, attempt=1)
    preamble, body = process.stub if stub else process.script
    script = render_script(preamble, body, scope)
    (workdir / ".command.sh").write_text(script)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(REPO / "bin"), str(VENV_BIN), env.get("PATH", "")])
    env.pop("BAMSTORE_PACKAGE", None)
    proc = subprocess.run(
        [*PROCESS_SHELL, ".command.sh"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outputs: dict[str, list[Path]] = {}
    staged_inputs = {p for p in workdir.rglob("*") if p.is_symlink()}
    if proc.returncode == 0:
        for elements, emit in process.outputs:
            found: list[Path] = []
            for qualifier, decl in elements:
                if qualifier != "path":
                    continue
                pattern = render_gstring(decl.name.strip("'\""), scope)
                matches = sorted(
                    {p for pat in _expand_braces(pattern) for p in workdir.glob(pat)}
                    - staged_inputs
                )
                kind = decl.options.get("type", "any")
                if kind == "dir":
                    matches = [p for p in matches if p.is_dir()]
                elif kind == "file":
                    matches = [p for p in matches if p.is_file()]
                if not matches and decl.options.get("optional") != "true":
                    raise AssertionError(
                        f"{process.name}: declared output {pattern!r} (type {kind}) missing in "
                        f"{workdir}; script was:\n{script}"
                    )
                found += matches
            outputs[emit or f"out{len(outputs)}"] = found
    return TaskResult(workdir, script, proc.returncode, proc.stdout, proc.stderr, outputs, scope)
