"""API keys: the prefix in plaintext for lookup, the key itself only as a bcrypt hash."""

from __future__ import annotations

from .database import Connection, Row

COLUMNS = "k.id, k.user_id, k.name, k.prefix, k.secret_hash, k.scopes, k.created_at, k.last_used_at, k.revoked_at"


def insert(conn: Connection, *, user_id: int, name: str, prefix: str, secret_hash: str, scopes: str,
           now: str) -> int:
    return conn.execute("INSERT INTO api_keys (user_id, name, prefix, secret_hash, scopes, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (user_id, name, prefix, secret_hash, scopes, now)).lastrowid


def by_prefix(conn: Connection, prefix: str) -> Row | None:
    """The key with its owner's current state (a disabled owner disables the key)."""
    return conn.execute(f"SELECT {COLUMNS}, u.email, u.role, u.status AS user_status FROM api_keys k "
                        "JOIN users u ON u.id = k.user_id WHERE k.prefix = ?", (prefix,)).fetchone()


def by_id(conn: Connection, key_id: int) -> Row | None:
    return conn.execute(f"SELECT {COLUMNS} FROM api_keys k WHERE k.id = ?", (key_id,)).fetchone()


def list_for_user(conn: Connection, user_id: int | None, *, after_id: int = 0, limit: int = 50) -> list[Row]:
    """Keys of one user, or of everyone when user_id is None (admins)."""
    return conn.execute(f"SELECT {COLUMNS}, u.email FROM api_keys k JOIN users u ON u.id = k.user_id "
                        "WHERE (? IS NULL OR k.user_id = ?) AND k.id > ? ORDER BY k.id LIMIT ?",
                        (user_id, user_id, after_id, limit)).fetchall()


def revoke(conn: Connection, key_id: int, now: str) -> bool:
    return conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                        (now, key_id)).rowcount == 1


def touch(conn: Connection, key_id: int, now: str) -> None:
    """Record a use; never moves last_used_at backwards (racing requests may touch together)."""
    conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                 (now, key_id, now))
