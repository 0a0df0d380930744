"""docs/cli.md is what scripts/cli_docs.py renders from the click commands, and it lists every
option of every command: regenerated in memory, compared section by section, so a failure names
the commands whose help text or options changed (fix: `make docs`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest
from support import REPO

from bamstore.cli import main

CLI_MD = REPO / "docs" / "cli.md"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_docs", REPO / "scripts" / "cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cli_docs() -> ModuleType:
    return _load_generator()


def test_docs_cli_md_is_current(cli_docs: ModuleType) -> None:
    stale = cli_docs.stale_sections(CLI_MD.read_text())
    assert not stale, (
        f"docs/cli.md is stale for: {', '.join(stale)}; run `make docs` and commit docs/cli.md"
    )


def test_every_command_and_option_is_listed(cli_docs: ModuleType) -> None:
    """Independent of the renderer's layout: each command has its section, and each of its
    option names appears in that section's option table."""
    sections = cli_docs.split_sections(CLI_MD.read_text())
    ctx = click.Context(main, info_name="bamstore")
    names = main.list_commands(ctx)
    assert names, "bamstore has no commands?"
    for name in names:
        assert name in sections, f"docs/cli.md has no section for `bamstore {name}`"
        rows = [line for line in sections[name].splitlines() if line.startswith("| `-")]
        command = main.get_command(ctx, name)
        assert command is not None
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in [*param.opts, *param.secondary_opts]:
                    assert any(f"`{opt}`" in row for row in rows), (
                        f"docs/cli.md: `bamstore {name}` does not list {opt}"
                    )


def test_a_changed_help_text_is_named(cli_docs: ModuleType, monkeypatch) -> None:
    """The check can fail: a help text changed after the page was written names its command
    and no other."""
    committed = cli_docs.render()
    command = main.commands["summarize"]
    option = next(p for p in command.params if p.name == "stat")
    monkeypatch.setattr(option, "help", "A changed help text.")
    assert cli_docs.stale_sections(committed) == ["summarize"]


def test_a_new_option_is_named(cli_docs: ModuleType, monkeypatch) -> None:
    committed = cli_docs.render()
    command = main.commands["validate"]
    monkeypatch.setattr(command, "params", [*command.params, click.Option(["--new-flag"])])
    assert cli_docs.stale_sections(committed) == ["validate"]


def test_a_missing_or_unknown_section_is_named(cli_docs: ModuleType) -> None:
    sections = cli_docs.render_sections()
    without = "\n".join(v for k, v in sections.items() if k != "inspect")
    assert cli_docs.stale_sections(without) == ["inspect"]
    extra = cli_docs.render() + "\n## bamstore frobnicate\n\nGone.\n"
    assert cli_docs.stale_sections(extra) == ["frobnicate"]


def test_check_mode_exits_1_naming_the_commands(cli_docs: ModuleType, tmp_path: Path) -> None:
    page = tmp_path / "cli.md"
    page.write_text(cli_docs.render().replace("## bamstore merge", "## bamstore merge\n\nEdited."))
    assert cli_docs.main(["--check", str(page)]) == 1
    page.write_text(cli_docs.render())
    assert cli_docs.main(["--check", str(page)]) == 0
