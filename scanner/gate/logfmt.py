"""Structured log lines on standard output, which journald picks up.

One line per happening, ``key=value`` pairs (logfmt): readable by a person
watching ``journalctl -fu scanner`` or the demo, and by ``grep`` or any
logfmt parser. Values with spaces or quotes are quoted.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["Emitter", "format_line"]


def _value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if not text or any(c in text for c in ' "=\\\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


def format_line(event: str, fields: dict[str, Any], *, ts: datetime | None = None) -> str:
    when = (ts or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    parts = [f"ts={when}", f"event={event}"]
    parts += [f"{k}={_value(v)}" for k, v in fields.items()]
    return " ".join(parts)


class Emitter:
    """Writes logfmt lines to a stream, one whole line per write."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, event: str, /, **fields: Any) -> None:
        line = format_line(event, fields) + "\n"
        with self._lock:
            try:
                self.out.write(line)
                self.out.flush()
            except (OSError, ValueError):
                pass  # stdout gone (journald restarting): never let logging stop the door
