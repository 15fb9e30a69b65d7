"""Every command has help and is documented in the README, and the README's
set-up promises hold (sqlite-utils keeps a test like this)."""

from __future__ import annotations

import os
import re

import click
import pytest
from click.testing import CliRunner

from scanner.cli import cli

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


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


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0
    help_text = result.output.split("Options:")[0]
    assert len(help_text.split()) > 12, f"scanner {command} --help says too little"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme(command):
    assert f"`scanner {command}`" in README


def test_the_readme_gives_the_two_set_up_commands():
    assert "scripts/demo" in README and "scripts/test" in README
    for script in ("scripts/demo", "scripts/test", ".ci/run"):
        assert os.access(ROOT / script, os.X_OK), script
    assert "scripts/test" in (ROOT / ".ci/run").read_text()


def test_the_signal_table_in_the_readme_matches_the_patterns():
    from scanner.gate.signals import PATTERNS

    documented = set(re.findall(r"^\| (ready|granted|not here|time|already inside|forged|"
                                r"USB done|USB failed)", README, re.M))
    assert {n.replace(" ", "_").lower() for n in documented} <= set(PATTERNS)
    assert len(documented) == 8


def test_the_journal_names_each_signal_as_the_readme_describes_it():
    from scanner.gate.signals import DESCRIPTIONS

    names = {"ready": "ready", "granted": "granted", "not here": "not_here", "time": "time",
             "already inside": "already_inside", "forged": "forged", "USB done": "usb_done",
             "USB failed": "usb_failed", "fault, at a scan": "fault"}
    rows = {m[0]: (m[1], m[2]) for m in re.findall(
        r"^\| ([\w ,]+?) \| [^|]+ \| ([^|]+) \| ([^|]+) \|$", README, re.M)}
    for label, key in names.items():
        lights, sound = rows[label]
        words = f"{lights} {sound}".replace(",", "").split()
        assert DESCRIPTIONS[key].replace(",", "").split() == words, label


def test_every_test_the_threat_model_names_exists():
    model = (ROOT / "docs" / "security.md").read_text()
    refs = set(re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", model))
    assert len(refs) > 30
    for path, name in refs:
        source = ROOT / path
        assert source.is_file(), path
        if name:
            assert re.search(rf"def {name}\b", source.read_text()), f"{path}::{name}"
