"""Fixtures of the image tests: progress lines on the terminal, and the image
built once per session (see card.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from . import card

# What a test that boots the image needs on this machine.
NEEDS_IMAGE_TOOLS = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the image build needs root (chroot)"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None
                       or shutil.which("qemu-system-aarch64") is None,
                       reason="scripts/bootstrap test installs mmdebstrap and QEMU"),
]


@pytest.fixture(scope="session", autouse=True)
def _progress_on_the_terminal(pytestconfig: pytest.Config):
    card._config.append(pytestconfig)
    yield
    card._config.clear()


@pytest.fixture(scope="session")
def built_image() -> dict[str, Path]:
    return card.build_image()
