"""The README's commands, run exactly as written: the organizer's five lines
are read out of README.md (a continued line joined, a trailing comment
dropped) and typed into a shell-less subprocess in a fresh folder, as a new
organizer would copy them. If the README changes a flag, this runs the new
one; if a command in it stops working, this fails."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from scanner.core.policy import open_policy
from scanner.core.revocations import REVOCATIONS_KIND, revocation_serials
from scanner.core.signed import open_document
from scanner.keyfiles import load_public_key
from scanner.organizer.ledger import Ledger

from ..conftest import ROOT

SCANNER = [sys.executable, "-m", "scanner.cli"]


def readme_commands(section: str) -> list[list[str]]:
    """The ``scanner`` commands of the README section whose heading starts with
    ``section``: its indented block, continuations joined, comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    lines = [line[4:] for line in body.splitlines() if line.startswith("    ")]
    joined = " ".join(line.rstrip("\\").strip() if line.endswith("\\") else line + "\n"
                      for line in lines)  # fmt: skip
    commands = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [c for c in commands if c and c[0] == "scanner"]


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="--pdf needs chromium (scripts/test installs it)"
)
def test_the_organizers_readme_commands_work_as_written(tmp_path):
    commands = readme_commands("The organizer")
    assert [c[1] for c in commands] == ["keygen", "policy", "issue", "passes", "update"]
    shutil.copytree(ROOT / "config", tmp_path / "config")
    # the batch the README's issue line names, with the holder its reissue line names
    (tmp_path / "crew.csv").write_text("holder,tier\nJane Doe,vip\nAna García,aaa\n")
    env = {**os.environ, "SCANNER_KEY_PASSPHRASE": "correct horse battery staple tonight"}
    for command in commands:
        done = subprocess.run([*SCANNER, *command[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr

    # what the organizer now holds: a signed policy, printed cards, a reissued
    # card, and a revocation list that stops Jane's first pass
    organizer = load_public_key(tmp_path / "keys" / "organizer.pub")
    policy = open_policy((tmp_path / "event.policy").read_bytes(), [organizer])
    assert (tmp_path / "passes" / "sheet.pdf").stat().st_size > 0
    assert list((tmp_path / "cards").glob("*.png"))
    with Ledger(tmp_path / f"{policy.event}.issued.db", policy.event) as book:
        jane = sorted(p.serial for p in book.passes(name="Jane Doe"))
        assert len(jane) == 2 and book.revoked() == {jane[0]}
    signed = open_document((tmp_path / "revocations.signed").read_bytes(),
                           kind=REVOCATIONS_KIND, trusted=[organizer])  # fmt: skip
    assert revocation_serials(signed.body, policy.event) == {jane[0]}
