#!/usr/bin/env python3
"""Static checks of the Nextflow code with reftrace (`make lint`; Nextflow itself is not needed).

1. Every `.nf` file in the repository parses (reftrace's Nextflow grammar).
2. Every `include { A; B as C } from '...'` resolves: a relative path to `X.nf` or `X/main.nf`
   that parses and defines A and B (as a process, workflow or function); `plugin/<id>` only for
   a plugin that nextflow.config declares with a pinned version.
3. Every Nextflow config file parses, and every `includeConfig` names an existing file.
4. Every `withName:` selector in conf/ names a process that exists (what Nextflow's
   configProcessNamesValidation warns about), and every local module is included somewhere.

Prints every problem found (file: problem) and exits 1 if there is any; exits 0 otherwise.
Usage: python tests/nf_lint.py [REPO]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import reftrace

SKIP_DIRS = {".git", ".venv", "venv", "build", "work", "results", ".nextflow", ".nf-test"}
SKIP_DIRS |= {"node_modules", "__pycache__", ".pytest_cache", ".ruff_cache", "null", "demo"}


def repo_files(root: Path, pattern: str) -> list[Path]:
    return sorted(
        p
        for p in root.rglob(pattern)
        if p.is_file() and not any(part in SKIP_DIRS for part in p.relative_to(root).parts)
    )


def config_files(root: Path) -> list[Path]:
    """Nextflow configs (nf-test.config is nf-test's own format, not a Nextflow config)."""
    return [p for p in repo_files(root, "*.config") if p.name != "nf-test.config"]


def declared_plugins(root: Path) -> dict[str, str]:
    text = (root / "nextflow.config").read_text()
    block = re.search(r"^plugins\s*\{(.*?)^\}", text, re.M | re.S)
    found = re.findall(r"id\s+['\"]([\w.-]+)(?:@([\w.+-]+))?['\"]", block.group(1) if block else "")
    return {name: version for name, version in found}


def functions_defined(path: Path) -> set[str]:
    return set(re.findall(r"^def\s+(\w+)\s*\(", path.read_text(), re.M))


def resolve_include(source: Path, target: str) -> Path | None:
    base = (source.parent / target).resolve()
    for candidate in (base, Path(f"{base}.nf"), base / "main.nf"):
        if candidate.is_file() and candidate.suffix == ".nf":
            return candidate
    return None


def lint(root: Path) -> tuple[list[str], dict[str, int]]:
    problems: list[str] = []
    rel = lambda p: str(Path(p).resolve().relative_to(root))  # noqa: E731
    nf_files = repo_files(root, "*.nf")
    if not nf_files:
        problems.append(f"{root}: no .nf files found")
    modules: dict[Path, reftrace.Module] = {}
    for path in nf_files:
        parsed = reftrace.Module.from_file(str(path))
        if isinstance(parsed, reftrace.ParseError):
            problems.append(f"{rel(path)}: does not parse: {parsed.error}")
        else:
            modules[path.resolve()] = parsed

    plugins = declared_plugins(root)
    for name, version in plugins.items():
        if not version:
            problems.append(f"nextflow.config: plugin {name} is not pinned (use {name}@<version>)")

    includes = 0
    included_files: set[Path] = set()
    for path, module in modules.items():
        for inc in module.includes:
            includes += 1
            names = [item.name for item in inc.items]
            where = f"{rel(path)}:{inc.line}"
            if inc.from_module.startswith("plugin/"):
                plugin = inc.from_module[len("plugin/") :]
                if plugin not in plugins:
                    problems.append(
                        f"{where}: includes from plugin {plugin}, which nextflow.config's "
                        "plugins { } block does not declare"
                    )
                continue
            target = resolve_include(path, inc.from_module)
            if target is None:
                problems.append(
                    f"{where}: include from '{inc.from_module}' resolves to no file "
                    f"({inc.from_module}.nf or {inc.from_module}/main.nf)"
                )
                continue
            included_files.add(target)
            defined = modules.get(target)
            if defined is None:
                continue  # its parse error is already reported
            known = {p.name for p in defined.processes} | {w.name for w in defined.workflows}
            known |= functions_defined(target)
            for name in names:
                if name not in known:
                    problems.append(
                        f"{where}: {name} is not defined in {rel(target)} "
                        f"(it defines: {', '.join(sorted(known)) or 'nothing'})"
                    )

    for path in sorted(modules):
        if "modules" in path.relative_to(root).parts and path not in included_files:
            problems.append(f"{rel(path)}: module is never included")

    processes = {p.name for m in modules.values() for p in m.processes}
    configs = config_files(root)
    for path in configs:
        result = reftrace.ConfigFile.from_file(str(path))
        if result.error is not None:
            problems.append(f"{rel(path)}: does not parse: {result.error.error.strip()}")
        text = path.read_text()
        for target in re.findall(r"^\s*includeConfig\s+['\"]([^'\"$]+)['\"]", text, re.M):
            if not (path.parent / target).is_file() and not (root / target).is_file():
                problems.append(f"{rel(path)}: includeConfig '{target}' names no file")
        for selector in re.findall(r"withName:\s*['\"]?([\w:|.*]+)['\"]?\s*\{", text):
            pattern = re.compile(selector.replace("*", ".*") if "*" in selector else selector)
            if not any(
                pattern.fullmatch(p) or pattern.fullmatch(p.split(":")[-1]) for p in processes
            ):
                problems.append(f"{rel(path)}: withName: '{selector}' matches no process")

    counts = {"nf_files": len(nf_files), "includes": includes, "configs": len(configs)}
    return problems, counts


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parents[1]).resolve()
    problems, counts = lint(root)
    if problems:
        print(f"nf_lint: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(
        f"nf_lint: OK: {counts['nf_files']} .nf files parse, {counts['includes']} includes "
        f"resolve, {counts['configs']} config files parse"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
