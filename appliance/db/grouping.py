"""Rows of a one-to-many query, grouped by the id they belong to."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def grouped(ids: Iterable[int], rows: Iterable, key: str, value: Callable | None = None) -> dict[int, list]:
    """{id: [row (or value(row)), ...]} in the rows' order; every id present, an empty list when it
    has no row."""
    found: dict[int, list] = {i: [] for i in ids}
    for r in rows:
        found[r[key]].append(value(r) if value else r)
    return found
