"""One-time setup tokens (stored as SHA-256 hashes)."""

from __future__ import annotations

from .database import Connection, Row


def replace_all(conn: Connection, token_hash: str, created_at: str, expires_at: str) -> None:
    """Only the newest link works: issuing one retires every earlier unused one."""
    conn.execute("DELETE FROM setup_tokens WHERE used_at IS NULL")
    conn.execute("INSERT INTO setup_tokens (token_hash, created_at, expires_at) VALUES (?, ?, ?)",
                 (token_hash, created_at, expires_at))


def find(conn: Connection, token_hash: str) -> Row | None:
    return conn.execute("SELECT id, created_at, expires_at, used_at FROM setup_tokens "
                        "WHERE token_hash = ?", (token_hash,)).fetchone()


def mark_used(conn: Connection, token_id: int, used_at: str) -> bool:
    """Conditional UPDATE: of two concurrent uses exactly one wins."""
    cur = conn.execute("UPDATE setup_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL",
                       (used_at, token_id))
    return cur.rowcount == 1


def delete_expired(conn: Connection, now: str) -> int:
    return conn.execute("DELETE FROM setup_tokens WHERE used_at IS NULL AND expires_at < ?",
                        (now,)).rowcount
