"""Cells a spreadsheet will not run: every CSV this project writes, from a
gate's export to the manager's report, passes each cell through one rule."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .schema import SCAN_COLUMNS

__all__ = ["FORMULA_STARTS", "csv_columns_sql", "defuse"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "|", "%")


def defuse(value: Any) -> Any:
    """A value as it may go into a CSV cell: text that a spreadsheet would run
    as a formula (starting with = + - @ | %, tab or CR) gets a leading quote.
    Every CSV this project writes passes every cell through this rule."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_columns_sql(columns: Iterable[str] = tuple(SCAN_COLUMNS)) -> str:
    """``columns`` as SQL for a CSV, every cell defused in SQLite as :func:`defuse` does."""
    starts = ", ".join(f"char({ord(c)})" for c in FORMULA_STARTS)
    quote = "''''"
    return ", ".join(
        f"CASE WHEN typeof({c}) = 'text' AND substr({c}, 1, 1) IN ({starts}) "
        f"THEN {quote} || {c} ELSE {c} END"
        for c in columns
    )
