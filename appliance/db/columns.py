"""Updating a row's columns from a dict, limited to the columns a repository declares writable.

Column names come only from the repository's own constant list (never from the dict's keys),
values are always bound parameters."""

from __future__ import annotations

from .database import Connection


def update(conn: Connection, table: str, writable: tuple[str, ...], row_id: int, fields: dict, now: str) -> None:
    """Sets the given fields and updated_at; a field outside `writable` is a programming error."""
    names = [n for n in writable if n in fields]
    unknown = set(fields) - set(names)
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")
    if names:
        sets = ", ".join(f"{n} = ?" for n in names)
        conn.execute(f"UPDATE {table} SET {sets}, updated_at = ? WHERE id = ?",
                     [fields[n] for n in names] + [now, row_id])
