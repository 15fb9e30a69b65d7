"""scripts/soak, the gate daemon through a compressed night: what its user
reads before starting a run that takes half an hour (the run itself is a
benchmark, not a test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "scripts" / "soak"


def soak(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SOAK), *args], capture_output=True, text=True, timeout=60
    )


def test_soak_help_names_its_options_and_what_each_exit_code_means():
    result = soak("--help")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    for option in ("--frames", "--scans", "--out DIR", "--no-venue", "--quick"):
        assert option in said
    assert "Exit codes: 0 flat" in said
    assert "1 grew, or the run fell short" in said
    assert "2 bad usage" in said


def test_soak_refuses_a_night_too_short_for_its_scans_before_starting_anything(tmp_path):
    result = soak("--frames", "1000", "--scans", "500", "--out", str(tmp_path / "night"))
    assert result.returncode == 2
    assert "at least 12 per scan" in result.stderr
    assert not (tmp_path / "night").exists()
