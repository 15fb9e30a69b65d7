"""How the product says a count: ``1 pass``, ``2 passes``, ``1 gate``, ``3 gates``."""

from __future__ import annotations

__all__ = ["plural"]


def plural(n: int, word: str, many: str | None = None, *, shown: str | None = None) -> str:
    """``n`` and ``word``, made plural unless ``n`` is 1: ``many`` when given,
    else English's rule (``pass`` -> ``passes``, ``gate`` -> ``gates``).
    ``shown`` is the number as it should read (``1,234``) when not ``str(n)``."""
    if n != 1:
        word = many or (word + "es" if word.endswith(("s", "x", "ch", "sh")) else word + "s")
    return f"{shown if shown is not None else n} {word}"
