"""Ids as they arrive in input: whole numbers that can name a row (SQLite's 64-bit integers).

A number outside that range names nothing; checking it here keeps it from overflowing in the
database driver (a 500) and turns it into the caller's mistake (a 400 or 404)."""

from __future__ import annotations

MAX_ID = 2**63 - 1


def is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def id_from_text(text: object) -> int | None:
    """An id typed in a query string or form: ASCII digits naming a possible row, else None.
    (str.isdigit() alone also accepts "²" and other digits int() refuses.)"""
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None
