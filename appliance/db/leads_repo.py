"""Leads and their tags: single-row reads and writes, batched writes for imports, filtered
pages (newest first, keyset cursor) and batches for exports."""

from __future__ import annotations

from typing import Iterable

from . import columns, like
from .database import Connection, Row
from .grouping import grouped

# Columns a caller may write (the names are fixed here, never user input).
WRITABLE = ("email", "email_domain", "first_name", "last_name", "company", "title", "phone", "website",
            "timezone", "custom", "status", "consent", "source")
_INSERT = (f"INSERT INTO leads ({', '.join(WRITABLE)}, created_at, updated_at) "
           f"VALUES ({', '.join('?' for _ in WRITABLE)}, ?, ?)")
_UPDATE_ALL = f"UPDATE leads SET {', '.join(f'{n} = ?' for n in WRITABLE[2:])}, updated_at = ? WHERE id = ?"


def insert(conn: Connection, fields: dict, now: str) -> int:
    return conn.execute(_INSERT, [fields[n] for n in WRITABLE] + [now, now]).lastrowid


def insert_many(conn: Connection, rows: list[tuple]) -> None:
    """Rows as tuples in WRITABLE order, followed by created_at and updated_at."""
    conn.executemany(_INSERT, rows)


def update(conn: Connection, lead_id: int, fields: dict, now: str) -> None:
    columns.update(conn, "leads", WRITABLE, lead_id, fields, now)


def update_many(conn: Connection, rows: list[tuple]) -> None:
    """Whole rows (every WRITABLE column but email and email_domain, then updated_at, then id)."""
    conn.executemany(_UPDATE_ALL, rows)


def by_id(conn: Connection, lead_id: int) -> Row | None:
    return conn.execute("SELECT * FROM leads WHERE id = ?", (lead_id,)).fetchone()


def by_email(conn: Connection, email: str) -> Row | None:
    return conn.execute("SELECT * FROM leads WHERE email = ?", (email,)).fetchone()


def by_emails(conn: Connection, emails: list[str]) -> list[Row]:
    """The leads among `emails`: one lookup through the unique index for a whole batch."""
    if not emails:
        return []
    marks = ", ".join("?" for _ in emails)
    return conn.execute(f"SELECT * FROM leads WHERE email IN ({marks})", emails).fetchall()


def max_id(conn: Connection) -> int:
    return conn.execute("SELECT coalesce(max(id), 0) FROM leads").fetchone()[0]


def delete(conn: Connection, lead_id: int) -> None:
    conn.execute("DELETE FROM leads WHERE id = ?", (lead_id,))


def _filters(status: str | None, tag: str | None, q: str | None) -> tuple[str, list[str], list]:
    """(FROM clause, WHERE clauses, their parameters) for the list filters.

    A tag filter walks lead_tags' (tag, lead_id) index in id order and joins each lead by id,
    so a page costs the same at any depth. Search: "@domain" and "name@..." are prefix ranges
    on the indexed domain and address (cheap at any size); other text matches anywhere in
    the address, names and company."""
    source = "leads l"
    clauses: list[str] = []
    params: list = []
    if tag:
        source = "lead_tags t JOIN leads l ON l.id = t.lead_id"
        clauses.append("t.tag = ?")
        params.append(tag)
    if status:
        clauses.append("l.status = ?")
        params.append(status)
    if q:
        text = q.lower()
        if text.startswith("@") and len(text) > 1:
            clauses.append("l.email_domain >= ? AND l.email_domain < ?")
            params += [text[1:], text[1:] + "\U0010ffff"]
        elif "@" in text:
            clauses.append("l.email >= ? AND l.email < ?")
            params += [text, text + "\U0010ffff"]
        else:
            pattern = like.contains(q)
            clauses.append("(l.email LIKE ? ESCAPE '\\' OR l.first_name LIKE ? ESCAPE '\\' "
                           "OR l.last_name LIKE ? ESCAPE '\\' OR l.company LIKE ? ESCAPE '\\' "
                           "OR (l.first_name || ' ' || l.last_name) LIKE ? ESCAPE '\\')")
            params += [pattern] * 5
    return source, clauses, params


def _id_column(tag: str | None) -> str:
    return "t.lead_id" if tag else "l.id"


def search(conn: Connection, *, status: str | None = None, tag: str | None = None, q: str | None = None,
           before_id: int = 0, limit: int = 50) -> list[Row]:
    """One page, newest first; `before_id` continues below the last id of the previous page."""
    source, clauses, params = _filters(status, tag, q)
    key = _id_column(tag)
    if before_id:
        clauses.append(f"{key} < ?")
        params.append(before_id)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return conn.execute(f"SELECT l.* FROM {source} {where} ORDER BY {key} DESC LIMIT ?",
                        params + [limit]).fetchall()


def export_batch(conn: Connection, *, status: str | None = None, tag: str | None = None, q: str | None = None,
                 after_id: int = 0, limit: int = 1000) -> list[Row]:
    """The next batch for an export, oldest first (the order they were added)."""
    source, clauses, params = _filters(status, tag, q)
    key = _id_column(tag)
    clauses.append(f"{key} > ?")
    params.append(after_id)
    return conn.execute(f"SELECT l.* FROM {source} WHERE {' AND '.join(clauses)} ORDER BY {key} LIMIT ?",
                        params + [limit]).fetchall()


def custom_keys(conn: Connection, *, status: str | None = None, tag: str | None = None,
                q: str | None = None) -> list[str]:
    """Every custom field name used by the leads matching the filters (an export's columns)."""
    source, clauses, params = _filters(status, tag, q)
    clauses.append("l.custom != '{}'")
    return [r[0] for r in conn.execute(
        f"SELECT DISTINCT j.key FROM {source}, json_each(l.custom) AS j WHERE {' AND '.join(clauses)} "
        "ORDER BY j.key", params)]


def count_by_status(conn: Connection) -> dict[str, int]:
    return {r["status"]: r["n"] for r in conn.execute("SELECT status, count(*) AS n FROM leads GROUP BY status")}


def tags_of(conn: Connection, lead_ids: list[int]) -> dict[int, list[str]]:
    if not lead_ids:
        return {}
    marks = ", ".join("?" for _ in lead_ids)
    rows = conn.execute(f"SELECT lead_id, tag FROM lead_tags WHERE lead_id IN ({marks}) ORDER BY tag", lead_ids)
    return grouped(lead_ids, rows, "lead_id", lambda r: r["tag"])


def set_tags(conn: Connection, lead_id: int, tags: list[str]) -> None:
    conn.execute("DELETE FROM lead_tags WHERE lead_id = ?", (lead_id,))
    conn.executemany("INSERT INTO lead_tags (lead_id, tag) VALUES (?, ?)", [(lead_id, t) for t in tags])


def add_tags(conn: Connection, pairs: Iterable[tuple[int, str]]) -> None:
    """(lead id, tag) pairs; tags a lead already has are left alone."""
    conn.executemany("INSERT OR IGNORE INTO lead_tags (lead_id, tag) VALUES (?, ?)", pairs)


def add_tags_by_email(conn: Connection, pairs: Iterable[tuple[str, str]]) -> None:
    """(tag, email) pairs: tags rows just inserted in bulk without first reading their ids back."""
    conn.executemany("INSERT OR IGNORE INTO lead_tags (lead_id, tag) SELECT id, ? FROM leads WHERE email = ?",
                     pairs)


def remove_tags(conn: Connection, pairs: Iterable[tuple[int, str]]) -> None:
    conn.executemany("DELETE FROM lead_tags WHERE lead_id = ? AND tag = ?", pairs)


def existing_ids(conn: Connection, lead_ids: list[int]) -> list[int]:
    if not lead_ids:
        return []
    marks = ", ".join("?" for _ in lead_ids)
    return [r[0] for r in conn.execute(f"SELECT id FROM leads WHERE id IN ({marks})", lead_ids)]


def all_tags(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT tag FROM lead_tags ORDER BY tag")]

