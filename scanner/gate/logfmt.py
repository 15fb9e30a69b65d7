"""Structured log lines on standard output, which journald picks up.

One line per happening, ``key=value`` pairs (logfmt): readable by a person
watching ``journalctl -fu scanner`` or the demo, and by ``grep`` or any
logfmt parser. Values with spaces or quotes are quoted, and no value can
break a line or carry a terminal escape (see :func:`_escape`).
"""

from __future__ import annotations

import sys
import threading
import unicodedata
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["Emitter", "format_line"]


# What a value may not carry into the journal as it is: a line break of any
# kind would start a forged line, and a terminal escape (ESC, CSI) would
# rewrite what someone reading ``journalctl`` in a terminal sees. Every
# control and format character becomes a visible escape.
_PLAIN = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(c: str) -> str:
    if c in _PLAIN:
        return _PLAIN[c]
    if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
        code = ord(c)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return c


def _needs_quotes(text: str) -> bool:
    return not text or any(
        c in ' "=\\' or (unicodedata.category(c)[0] in "CZ" and c != " ") for c in text
    )


def _value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if _needs_quotes(text):
        return '"' + "".join(_escape(c) for c in text) + '"'
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
