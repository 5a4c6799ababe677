"""The suppression list: addresses and whole domains never to be mailed again.

Every lookup goes through the UNIQUE index on `value`: a batch of candidate values is passed
as one JSON array parameter and joined with `json_each`, so checking 10,000 addresses is one
query, not 10,000.
"""

from __future__ import annotations

import json
from typing import Iterable

from . import like
from .database import Connection, Row

COLUMNS = "s.id, s.value, s.kind, s.reason, s.source, s.created_by, s.created_at"


def insert_if_absent(conn: Connection, *, value: str, kind: str, reason: str, source: str,
                     created_by: int | None, now: str) -> int | None:
    """The new row's id, or None when the value is already on the list (the first row stays)."""
    cur = conn.execute(
        "INSERT INTO suppressions (value, kind, reason, source, created_by, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (value) DO NOTHING",
        (value, kind, reason, source, created_by, now))
    return cur.lastrowid if cur.rowcount == 1 else None


def insert_many_if_absent(conn: Connection, rows: Iterable[tuple[str, str, str, str]],
                          created_by: int | None, now: str) -> int:
    """(value, kind, reason, source) rows; values already listed are left as they are.
    Returns how many rows were added."""
    cur = conn.executemany(
        "INSERT INTO suppressions (value, kind, reason, source, created_by, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (value) DO NOTHING",
        [(value, kind, reason, source, created_by, now) for value, kind, reason, source in rows])
    return max(cur.rowcount, 0)


def by_id(conn: Connection, suppression_id: int) -> Row | None:
    return conn.execute(f"SELECT {COLUMNS} FROM suppressions s WHERE s.id = ?", (suppression_id,)).fetchone()


def by_value(conn: Connection, value: str) -> Row | None:
    return conn.execute(f"SELECT {COLUMNS} FROM suppressions s WHERE s.value = ?", (value,)).fetchone()


def matching(conn: Connection, values: list[str]) -> list[Row]:
    """Rows whose value is one of `values` (exact, through the unique index), in one query."""
    if not values:
        return []
    return conn.execute(
        f"SELECT {COLUMNS} FROM json_each(?) AS j JOIN suppressions s ON s.value = j.value",
        (json.dumps(values),)).fetchall()


def search(conn: Connection, *, kind: str | None = None, reason: str | None = None, q: str | None = None,
           before_id: int | None = None, limit: int = 50) -> list[Row]:
    """Newest first; `before_id` continues below the previous page's last id."""
    clauses, params = [], []
    if before_id:
        clauses.append("s.id < ?")
        params.append(before_id)
    if kind:
        clauses.append("s.kind = ?")
        params.append(kind)
    if reason:
        clauses.append("s.reason = ?")
        params.append(reason)
    if q:
        pattern = like.contains(q)
        clauses.append("(s.value LIKE ? ESCAPE '\\' OR s.source LIKE ? ESCAPE '\\')")
        params += [pattern, pattern]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    return conn.execute(f"SELECT {COLUMNS} FROM suppressions s {where} ORDER BY s.id DESC LIMIT ?",
                        params).fetchall()


def count_by_reason(conn: Connection) -> dict[str, int]:
    rows = conn.execute("SELECT reason, count(*) AS n FROM suppressions GROUP BY reason")
    return {r["reason"]: r["n"] for r in rows}


def count_by_kind(conn: Connection) -> dict[str, int]:
    rows = conn.execute("SELECT kind, count(*) AS n FROM suppressions GROUP BY kind")
    return {r["kind"]: r["n"] for r in rows}


def delete(conn: Connection, suppression_id: int) -> None:
    conn.execute("DELETE FROM suppressions WHERE id = ?", (suppression_id,))
