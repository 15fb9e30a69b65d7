"""The ``scanner`` command: a thin shell over the library, one module per user.

Each command parses its options, calls one library function and prints the
result. A :class:`~scanner.errors.ScannerError` becomes a one-line
``Error: ...`` and a non-zero exit, never a traceback.

Exit codes (every command): 0 success, 1 failure or denial, 2 usage error
(bad option, unreadable or invalid input file), 3 the gate is not fit to run
(``scanner run`` and ``scanner selftest`` faults).
"""

from __future__ import annotations

from . import gate, manager, organizer, tools, venue  # noqa: F401 - they register their commands
from .base import EXIT_FAILED, EXIT_FAULT, EXIT_OK, EXIT_USAGE, Failure, cli

__all__ = ["EXIT_FAILED", "EXIT_FAULT", "EXIT_OK", "EXIT_USAGE", "Failure", "cli", "main"]


def main() -> None:
    cli(prog_name="scanner")
