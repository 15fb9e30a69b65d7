"""Every command has help and is documented on the page its table row names,
the README gives the set-up commands and leads to every page in docs/, the
links between the pages resolve, and the gate's page shows the signals as the
door shows them (sqlite-utils keeps a test like this)."""

from __future__ import annotations

import os
import re
import unicodedata

import click
import pytest
from click.testing import CliRunner

from scanner.cli import cli

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
COMMANDS_PAGE = (DOCS / "commands.md").read_text()
GATE_PAGE = (DOCS / "gate.md").read_text()  # what the door shows
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def all_commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            names += all_commands(command, f"{full} ")
        else:
            names.append(full)
    return names


COMMANDS = all_commands(cli)
# | `scanner logs merge` | merge exports into one SQLite file | [manager](manager.md) |
COMMAND_ROWS = {m[0]: m[1] for m in re.findall(
    r"^\| `scanner ([\w -]+)` \| [^|]+ \| \[[^]]+\]\(([\w-]+\.md)\) \|$", COMMANDS_PAGE, re.M)}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0
    help_text = result.output.split("Options:")[0]
    assert len(help_text.split()) > 12, f"scanner {command} --help says too little"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_command_table_and_on_the_page_it_names(command):
    assert command in COMMAND_ROWS, f"docs/commands.md has no row for scanner {command}"
    page = " ".join((DOCS / COMMAND_ROWS[command]).read_text().split())
    assert f"scanner {command}" in page, f"docs/{COMMAND_ROWS[command]} never shows it"


def test_the_command_table_names_only_real_commands():
    assert set(COMMAND_ROWS) == set(COMMANDS)


def test_the_exit_codes_are_documented_beside_the_commands():
    assert "## Exit codes" in COMMANDS_PAGE
    codes = COMMANDS_PAGE.split("## Exit codes", 1)[1]
    for code in ("0 success", "1 failed", "2 usage error", "3 the gate cannot run"):
        assert code in codes


def test_the_readme_gives_the_two_set_up_commands():
    assert "scripts/demo" in README and "scripts/test" in README
    for script in ("scripts/demo", "scripts/test", ".ci/run"):
        assert os.access(ROOT / script, os.X_OK), script
    assert "scripts/test" in (ROOT / ".ci/run").read_text()


def test_the_readme_stays_a_readme_and_leads_to_every_page():
    assert len(README.splitlines()) <= 180, "the rest belongs in docs/"
    for page in DOCS.glob("*.md"):
        assert f"](docs/{page.name})" in README, f"the README never links docs/{page.name}"


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = unicodedata.normalize("NFC", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    body = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # no headings in code
    return {_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", body, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_between_the_pages_resolves(page):
    text = page.read_text()
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", link):
            continue  # the web
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link}"
        if fragment:
            assert target.suffix == ".md", f"{page.name}: {link}"
            assert fragment in _anchors(target.read_text()), f"{page.name}: {link}"


def test_the_signal_table_in_the_gate_page_matches_the_patterns():
    from scanner.gate.signals import PATTERNS

    documented = set(re.findall(r"^\| (ready|granted|not here|time|already inside|forged|"
                                r"USB done|USB failed)", GATE_PAGE, re.M))
    assert {n.replace(" ", "_").lower() for n in documented} <= set(PATTERNS)
    assert len(documented) == 8


def test_the_journal_names_each_signal_as_the_gate_page_describes_it():
    from scanner.gate.signals import DESCRIPTIONS

    names = {"ready": "ready", "granted": "granted", "not here": "not_here", "time": "time",
             "already inside": "already_inside", "forged": "forged", "USB done": "usb_done",
             "USB failed": "usb_failed", "fault, at a scan": "fault"}
    rows = {m[0]: (m[1], m[2]) for m in re.findall(
        r"^\| ([\w ,]+?) \| [^|]+ \| ([^|]+) \| ([^|]+) \|$", GATE_PAGE, re.M)}
    for label, key in names.items():
        lights, sound = rows[label]
        words = f"{lights} {sound}".replace(",", "").split()
        assert DESCRIPTIONS[key].replace(",", "").split() == words, label


def test_every_test_the_threat_model_names_exists():
    model = (DOCS / "security.md").read_text()
    refs = set(re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", model))
    assert len(refs) > 30
    for path, name in refs:
        source = ROOT / path
        assert source.is_file(), path
        if name:
            assert re.search(rf"def {name}\b", source.read_text()), f"{path}::{name}"
