"""Rendering the sheet with a real browser engine: headless Chromium.

The PDF of a sheet is printed by Chromium from the very HTML the organizer
can open, so what prints is what the browser shows (``--print-to-pdf``, no
header or footer, the page's own ``@page`` size). Chromium is found on the
PATH (``chromium``, ``chromium-browser``, ``google-chrome``); without it,
:class:`RenderError` says how to install it. Each run gets its own empty
profile folder, so two renders never share state, and a time limit. It gets
this process's environment less ``SCANNER_KEY_PASSPHRASE``: the browser (and
every process it starts) never sees the key's passphrase.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import IssueError
from ..keyfiles import child_environment

__all__ = ["RenderError", "find_chromium", "print_to_pdf", "screenshot"]

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_SECONDS = 120.0
INSTALL = (
    "install Chromium (Debian: apt install chromium; scripts/bootstrap test does it), "
    "or open sheet.html in a browser and print it at 100 %"
)


class RenderError(IssueError):
    """Chromium is missing or failed to render."""


def find_chromium() -> str:
    """The Chromium executable, or :class:`RenderError` saying how to get one."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RenderError(f"--pdf needs headless Chromium, which is not installed: {INSTALL}")


def _run(args: list[str], out: Path) -> None:
    browser = find_chromium()
    with tempfile.TemporaryDirectory(prefix="scanner-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *(["--no-sandbox"] if os.geteuid() == 0 else []),  # Chromium refuses root otherwise
            *args,
        ]
        out.unlink(missing_ok=True)
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                timeout=TIMEOUT_SECONDS,
                check=False,
                env=child_environment(),
            )
        except subprocess.TimeoutExpired as err:
            raise RenderError(f"Chromium took longer than {TIMEOUT_SECONDS:.0f} s") from err
        except OSError as err:
            raise RenderError(f"cannot run {browser}: {err.strerror}") from err
    if done.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise RenderError(f"Chromium could not render {out.name}: {detail[0]}")


def print_to_pdf(html: Path, pdf: Path) -> None:
    """Print ``html`` to ``pdf`` as a browser would, at the page's own size."""
    _run(
        ["--no-pdf-header-footer", f"--print-to-pdf={pdf.resolve()}", html.resolve().as_uri()],
        pdf,
    )


def screenshot(html: Path, png: Path, *, width: int, height: int, scale: float = 1.0) -> None:
    """A PNG of ``html`` in a ``width`` x ``height`` CSS-pixel window at ``scale``
    device pixels per CSS pixel (3.125 is 300 dpi: 96 CSS pixels per inch)."""
    _run(
        [
            f"--window-size={width},{height}",
            f"--force-device-scale-factor={scale}",
            f"--screenshot={png.resolve()}",
            html.resolve().as_uri(),
        ],
        png,
    )
