"""docs/api.md is the contract users get: it lists exactly the server's routes and the CLI's
commands and options (nothing undocumented, nothing documented that does not exist)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import lookalike
from lookalike.cli import build_parser
from lookalike.server.app import create_app

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"
ROUTE = re.compile(r"^#### `(GET|POST|PUT|DELETE|PATCH) (/v1/\S+)`\s*$")
COMMAND = re.compile(r"^### `lookalike ([a-z-]+)`\s*$")
OPTION = re.compile(r"`(-{1,2}[a-z][a-z0-9-]*)`")
COMMON = "### Options every command takes"


def _sections(text: str) -> tuple[dict[str, str], str]:
    """{command: its section's text}, and the text of the common options section."""
    sections: dict[str, list[str]] = {}
    common: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            match = COMMAND.match(line)
            current = sections.setdefault(match.group(1), []) if match else (common if line == COMMON else None)
            continue
        if current is not None:
            current.append(line)
    return {k: "\n".join(v) for k, v in sections.items()}, "\n".join(common)


def _table_options(section: str) -> set[str]:
    """Options named in the first cell of the section's table rows."""
    out: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `-"):
            out |= set(OPTION.findall(line.split("|")[1]))
    return out


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.fixture(scope="module")
def doc() -> str:
    return API.read_text(encoding="utf-8")


def test_http_routes_match_the_openapi_schema(doc, tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("contract"), allow_file=False)
    try:
        schema = create_app(db).openapi()
    finally:
        db.close()
    served = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    documented = {m.groups() for m in map(ROUTE.match, doc.splitlines()) if m}
    assert served - documented == set(), "routes the server has that docs/api.md does not list"
    assert documented - served == set(), "routes docs/api.md lists that the server does not have"


def test_cli_commands_and_options_match_the_parser(doc):
    sections, common_text = _sections(doc)
    common = _table_options(common_text)
    subparsers = _subparsers()
    assert set(subparsers) - set(sections) == set(), "commands without a section in docs/api.md"
    assert set(sections) - set(subparsers) == set(), "documented commands the CLI does not have"
    every: set[str] = set()
    for name, sub in subparsers.items():
        options = {s for a in sub._actions for s in a.option_strings}
        every |= options
        own = _table_options(sections[name])
        assert options - common - own == set(), f"options of `lookalike {name}` missing from docs/api.md"
        assert own - options == set(), f"docs/api.md documents options `lookalike {name}` does not have"
        needs_collection = any("-c" in a.option_strings and a.required for a in sub._actions)
        usage = sections[name].strip().splitlines()[0]
        assert ("-c NAME" in usage) == needs_collection, f"usage line of {name}: {usage}"
    assert common - every == set(), "common options documented that no command has"


def test_every_option_and_command_has_help():
    for name, sub in _subparsers().items():
        assert sub.description is None or sub.description.strip()
        for action in sub._actions:
            assert action.help and action.help.strip(), f"lookalike {name} {action.option_strings or action.dest}"
    top = build_parser()
    sub_action = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    for choice in sub_action._choices_actions:
        assert choice.help, choice.dest


def test_readme_and_http_doc_point_to_the_shipped_contract():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    http = (ROOT / "docs" / "http.md").read_text(encoding="utf-8")
    for text in (readme, http):
        assert "shared/API.md" not in text
        assert "docs/api.md" in text or "(api.md)" in text or "`api.md`" in text
    assert ". .venv/bin/activate" in readme  # lookalike on the PATH after `make demo`
    assert "pip install torch==2.13.0" in readme and "pip install -e" in readme  # without make
