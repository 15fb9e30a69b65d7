"""Bytes from outside, read with limits.

Whatever a gate or a laptop reads from a stick, an export, a QR code or a
file somebody else wrote is hostile until checked: its size, its nesting,
its encoding and its shape. The readers here turn every way such bytes can
be wrong into one :class:`~scanner.errors.MalformedError` with a reason,
before a parser can fail in its own way (``RecursionError`` on deep nesting)
or hand on a value that fails much later (a lone surrogate that crashes an
encoder in the middle of a USB import). Callers wrap the error in their own,
naming what they were reading. No I/O.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import MalformedError

__all__ = ["MAX_DEPTH", "check_text", "parse_json", "parse_toml", "time_zone"]

MAX_DEPTH = 16


def _decode(data: bytes, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise MalformedError(f"{len(data)} bytes; at most {max_bytes} are accepted")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MalformedError(f"not UTF-8 text (byte {err.start})") from err


def check_text(text: str) -> str:
    """``text`` if every character is a Unicode scalar value (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise MalformedError(f"text holds an invalid character at {err.start}") from err
    return text


def _check_values(value: Any, depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise MalformedError(f"nested deeper than {max_depth} levels")
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_text(key)
            _check_values(item, depth + 1, max_depth)
    elif isinstance(value, list):
        for item in value:
            _check_values(item, depth + 1, max_depth)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def _reject_constant(name: str) -> None:
    raise MalformedError(f"{name} is not a JSON number")


def parse_json(data: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON of at most ``max_bytes`` and ``max_depth`` levels of nesting.

    Refuses duplicate keys, NaN and Infinity, and strings that are not valid
    Unicode, so that what one reader sees is what every reader sees.
    """
    text = _decode(data, max_bytes)
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise MalformedError(f"not JSON: {err}") from err
    except RecursionError as err:  # the parser's own guard; the depth check follows
        raise MalformedError(f"nested deeper than {max_depth} levels") from err
    _check_values(value, 0, max_depth)
    return value


def parse_toml(data: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse TOML of at most ``max_bytes``, refusing deep nesting."""
    text = _decode(data, max_bytes)
    try:
        value = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MalformedError(f"not valid TOML: {err}") from err
    except RecursionError as err:
        raise MalformedError(f"nested deeper than {max_depth} levels") from err
    _check_values(value, 0, max_depth)
    return value


_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]{0,30}(/[A-Za-z0-9_+\-]{1,30}){0,2}")


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``), or MalformedError: a
    name from a file is never handed to the tz database unchecked (a very
    long or odd one fails there with OSError, not a clean refusal)."""
    if not isinstance(name, str) or not _ZONE_NAME.fullmatch(name):
        raise MalformedError(f"{str(name)[:40]!r} is not a time zone name like Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as err:
        raise MalformedError(f"unknown time zone {name!r}") from err
