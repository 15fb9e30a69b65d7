"""Untrusted documents read into frozen dataclasses, one declaration each.

A structure's keys, their types and their defaults are the fields of its
frozen dataclass; what a key may hold beyond its type (a range, a pattern,
a list of words, a conversion) is a check attached to the field with
``field(metadata=rule(...))``. The rules: a key the structure does not
declare is refused with the list of those it does; a field without a
default must be given; ``float`` takes an integer too, ``int`` never takes a
boolean; ``X | None`` takes JSON's null, and ``Path | None`` an empty
path for none; a nested dataclass is a nested table; a field named like a
Python keyword with a trailing underscore (``from_``) reads the key without
it; every problem names its key path
(``gate.zone: 'Back Stage' is not a zone id``), all of them in one
:class:`~scanner.errors.MalformedError` that the caller wraps with the file
or message it read. A check is any callable that takes the value and
returns it (or its conversion), raising ``ValueError`` with what is wrong.
No I/O.

It is a small reader of our own rather than msgspec or pydantic: the gate's
settings and the venue's messages need only these few rules, their errors
must read the way a technician names a key, and a library would add its
import time and resident memory to every gate for no rule we lack.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from ..errors import MalformedError

__all__ = [
    "Rule",
    "above",
    "at_least",
    "blank_is_none",
    "matching",
    "one_of",
    "printable",
    "read",
    "read_given",
    "rule",
    "shown",
    "within",
]

T = TypeVar("T")
Check = Callable[[Any], Any]
RULE = "scanner.reading"
# What a document may hold for a field of each type, and its name in a message.
RAW: dict[Any, tuple[tuple[type, ...], str]] = {
    str: ((str,), "str"),
    int: ((int,), "int"),
    float: ((int, float), "float"),
    bool: ((bool,), "bool"),
    Path: ((str,), "str"),
    datetime: ((str,), "str"),  # its check reads the time
}
SHOWN = 80  # characters of a value quoted back in a message


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a field may hold beyond its type.

    ``check`` takes the typed value and returns it, or its conversion;
    ``expect`` names the type in a message (``"seconds"``), and what to give
    when a required field is missing; for a tuple, ``items`` checks each
    item and ``most`` caps the count, and ``expect`` replaces an item's
    message unless ``itemwise`` (then it names only a value that is no list,
    and each item's problem keeps its index; ``item`` names what one item
    should be, in that item's message); ``key=False`` marks a field that is
    never read from a document.
    """

    check: Check | None = None
    expect: str = ""
    items: Check | None = None
    most: int | None = None
    key: bool = True
    itemwise: bool = False
    item: str = ""


PLAIN = Rule()


def rule(
    check: Check | None = None,
    *,
    expect: str = "",
    items: Check | None = None,
    most: int | None = None,
    key: bool = True,
    itemwise: bool = False,
    item: str = "",
) -> dict[str, Rule]:
    """A field's metadata: ``field(default=..., metadata=rule(check))``."""
    return {RULE: Rule(check, expect, items, most, key, itemwise, item)}


def read(
    kind: type[T],
    data: Any,
    path: str = "",
    *,
    keys: Collection[str] | None = None,
    table: str = "a table",
) -> T:
    """``data`` (a parsed table) as a ``kind``, every key checked; ``path``
    prefixes each key in messages; ``keys`` limits the fields a document may
    set (the others keep their defaults); ``table`` says what ``data`` should
    be when it is no table at all."""
    given = _read(kind, data, path, keys, complete=True, table=table)
    return kind(**given)


def read_given(
    kind: type[Any], data: Any, path: str = "", *, keys: Collection[str] | None = None
) -> dict[str, Any]:
    """Only the keys ``data`` gives, checked and converted as fields of
    ``kind``: settings that overlay others (``dataclasses.replace``)."""
    return _read(kind, data, path, keys, complete=False)


def _read(
    kind: Any,
    data: Any,
    path: str,
    keys: Collection[str] | None,
    *,
    complete: bool,
    table: str = "a table",
) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise MalformedError(f"{path or 'document'}: expected {table}, got {shown(data)}")
    declared = {
        _key(f): (f, hint) for f, hint in _fields(kind) if keys is None or _key(f) in keys
    }
    problems = []
    unknown = sorted(str(k) for k in data if k not in declared)
    if unknown:
        problems.append(
            f"{', '.join(_join(path, k) for k in unknown)}: unknown key{'s'[: len(unknown) - 1]} "
            f"(known: {', '.join(sorted(declared))})"
        )
    missing = [
        name for name, (f, _) in declared.items() if complete and name not in data and _required(f)
    ]
    told = [k for k in missing if _rule(declared[k][0]).expect]
    if len(told) < len(missing):
        problems.append(
            f"{', '.join(_join(path, k) for k in missing if k not in told)}: missing, and required"
        )
    problems += [
        f"{_join(path, k)}: missing, and required: {_rule(declared[k][0]).expect}" for k in told
    ]
    out = {}
    for name, (f, hint) in declared.items():
        if name in data:
            try:
                out[f.name] = _value(hint, data[name], _rule(f), _join(path, name))
            except MalformedError as err:
                problems.append(str(err))
    if problems:
        raise MalformedError("; ".join(problems))
    return out


@functools.cache
def _fields(kind: Any) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    hints = typing.get_type_hints(kind)
    return tuple(
        (f, hints[f.name])
        for f in dataclasses.fields(kind)
        if f.metadata.get(RULE, PLAIN).key
    )


def _rule(f: dataclasses.Field[Any]) -> Rule:
    how: Rule = f.metadata.get(RULE, PLAIN)
    return how


def _key(f: dataclasses.Field[Any]) -> str:
    """The document's key for a field: ``from_`` reads ``from``."""
    name = f.name.removesuffix("_")
    return name if keyword.iskeyword(name) else f.name


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _value(kind: Any, raw: Any, how: Rule, path: str) -> Any:
    optional = False
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        optional = len(args) < len(typing.get_args(kind))
        if raw is None and optional:
            return None
        (kind,) = args
    origin = typing.get_origin(kind) or kind
    if dataclasses.is_dataclass(kind):
        if not isinstance(raw, Mapping):
            raise MalformedError(f"{path}: expected {how.expect or 'a table'}, got {shown(raw)}")
        return read(typing.cast(type[Any], kind), raw, path)
    if origin is tuple:
        return _items(kind, raw, how, path)
    accepted: tuple[type, ...]
    if isinstance(kind, type) and issubclass(kind, Enum):
        accepted, name = (str,), "str"
    elif origin in (Mapping, dict):
        accepted, name = (dict,), "a table"
    else:
        accepted, name = RAW[kind]
    if not isinstance(raw, accepted) or (isinstance(raw, bool) and bool not in accepted):
        raise MalformedError(f"{path}: expected {how.expect or name}, got {shown(raw)}")
    try:
        value = _convert(kind, raw)
        if value is None:
            if optional:
                return None
            raise ValueError("empty path")
        return how.check(value) if how.check is not None else value
    except ValueError as err:
        raise MalformedError(f"{path}: {err}") from err


def _convert(kind: Any, raw: Any) -> Any:
    if kind is float:
        return float(raw)
    if kind is Path:
        return Path(raw) if raw else None  # no path: none where a field may be none
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{shown(raw)} is not {' or '.join(m.value for m in kind)}") from None
    return raw


def _items(kind: Any, raw: Any, how: Rule, path: str) -> tuple[Any, ...]:
    if not isinstance(raw, list):
        raise MalformedError(f"{path}: expected {how.expect or 'list'}, got {shown(raw)}")
    if how.most is not None and len(raw) > how.most:
        raise MalformedError(f"{path}: {len(raw)} items; at most {how.most}")
    item = typing.get_args(kind)[0]
    read_item = Rule(check=how.items, expect=how.item)
    try:
        return tuple(_value(item, x, read_item, f"{path}[{i}]") for i, x in enumerate(raw))
    except MalformedError as err:
        if how.expect and not how.itemwise:  # the whole list says more than one item's type
            raise MalformedError(f"{path}: expected {how.expect}, got {shown(raw)}") from err
        raise


def shown(value: Any) -> str:
    """``repr(value)``, cut short: what a message quotes of a hostile value."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


# -- checks that fields attach ------------------------------------------------------


def one_of(choices: Collection[str], what: str = "") -> Check:
    names = tuple(choices)
    listed = ", ".join(names)

    def check(value: Any) -> Any:
        if value not in names:
            raise ValueError(
                f"{shown(value)} is not {what} ({listed})" if what
                else f"{shown(value)} is not one of {listed}"
            )
        return value

    return check


def within(low: int, high: int, what: str) -> Check:
    def check(value: Any) -> Any:
        if not low <= value <= high:
            raise ValueError(f"{value} is not {what} ({low} to {high})")
        return value

    return check


def above(low: float) -> Check:
    def check(value: Any) -> Any:
        if value <= low:
            raise ValueError(f"{value} must be more than {low}")
        return value

    return check


def at_least(low: float) -> Check:
    def check(value: Any) -> Any:
        if value < low:
            raise ValueError(f"{value} must be {low} or more")
        return value

    return check


def matching(pattern: re.Pattern[str], what: str) -> Check:
    def check(value: Any) -> Any:
        if not pattern.fullmatch(value):
            raise ValueError(f"{shown(value)} is not {what}")
        return value

    return check


def printable(most: int) -> Check:
    def check(value: Any) -> Any:
        if len(value) > most or not value.isprintable():
            raise ValueError(f"{shown(value)} is not printable text of {most} characters at most")
        return value

    return check


def blank_is_none(value: Any) -> Any:
    """An empty string is the same as no value."""
    return value or None
