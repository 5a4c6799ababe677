"""The append-only audit log table."""

from __future__ import annotations

from typing import Iterator

from . import like
from .database import Connection, Row

GENESIS = "0" * 64
COLUMNS = ("at", "actor_type", "actor_id", "actor_label", "ip", "action", "target_type", "target_id",
           "metadata", "prev_hash", "hash")


def last_hash(conn: Connection) -> str:
    row = conn.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    return row["hash"] if row else GENESIS


def head(conn: Connection) -> tuple[int, str]:
    row = conn.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    return (row["id"], row["hash"]) if row else (0, GENESIS)


def insert(conn: Connection, entry: dict) -> int:
    cur = conn.execute(
        "INSERT INTO audit_log (at, actor_type, actor_id, actor_label, ip, action, target_type, "
        "target_id, metadata, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        tuple(entry[c] for c in COLUMNS))
    return cur.lastrowid


def search(conn: Connection, *, action: str | None = None, actor: str | None = None,
           since: str | None = None, until: str | None = None, before_id: int | None = None,
           target: tuple[str, str] | None = None, limit: int = 50) -> list[Row]:
    """Newest first. `action` matches exactly or as a prefix ending in '.' (e.g. 'user.');
    `target` is (type, id), e.g. ("mailbox", "7")."""
    clauses, params = [], []
    if target:
        clauses.append("target_type = ? AND target_id = ?")
        params += [target[0], str(target[1])]
    if action:
        if action.endswith("."):
            clauses.append("action LIKE ? ESCAPE '\\'")
            params.append(like.prefix(action))
        else:
            clauses.append("action = ?")
            params.append(action)
    if actor:
        # a person's own actions and those of their API keys ("alice@x.test (key ab12cd34)")
        clauses.append("(actor_label = ? OR actor_label LIKE ? ESCAPE '\\')")
        params += [actor, like.prefix(actor + " (key ")]
    if since:
        clauses.append("at >= ?")
        params.append(since)
    if until:
        clauses.append("at < ?")
        params.append(until)
    if before_id:
        clauses.append("id < ?")
        params.append(before_id)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    params.append(limit)
    return conn.execute(f"SELECT * FROM audit_log {where} ORDER BY id DESC LIMIT ?", params).fetchall()


def all_in_order(conn: Connection) -> Iterator[Row]:
    yield from conn.execute("SELECT * FROM audit_log ORDER BY id")


def count(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
