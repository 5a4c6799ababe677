"""Users and their invitations."""

from __future__ import annotations

from .database import Connection, Row

USER_COLUMNS = "id, email, name, role, status, password_hash, token_version, created_at, updated_at, last_login_at"


def by_id(conn: Connection, user_id: int) -> Row | None:
    return conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()


def by_email(conn: Connection, email: str) -> Row | None:
    return conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE email = ?", (email,)).fetchone()


def count(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM users").fetchone()[0]


def owner_exists(conn: Connection) -> bool:
    return conn.execute("SELECT 1 FROM users WHERE role = 'owner'").fetchone() is not None


def list_page(conn: Connection, *, after_id: int = 0, limit: int = 50) -> list[Row]:
    return conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE id > ? ORDER BY id LIMIT ?",
                        (after_id, limit)).fetchall()


def insert(conn: Connection, *, email: str, name: str, role: str, status: str,
           password_hash: str | None, now: str) -> int:
    cur = conn.execute(
        "INSERT INTO users (email, name, role, status, password_hash, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", (email, name, role, status, password_hash, now, now))
    return cur.lastrowid


def set_password(conn: Connection, user_id: int, password_hash: str, now: str) -> None:
    """A new password ends every earlier session: the token version moves on."""
    conn.execute("UPDATE users SET password_hash = ?, token_version = token_version + 1, "
                 "updated_at = ? WHERE id = ?", (password_hash, now, user_id))


def bump_token_version(conn: Connection, user_id: int, now: str) -> None:
    conn.execute("UPDATE users SET token_version = token_version + 1, updated_at = ? WHERE id = ?",
                 (now, user_id))


def update_fields(conn: Connection, user_id: int, now: str, **fields) -> None:
    allowed = {"name", "role", "status"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    for name, value in fields.items():  # column names come from the fixed set above
        conn.execute(f"UPDATE users SET {name} = ?, updated_at = ? WHERE id = ?", (value, now, user_id))


def touch_login(conn: Connection, user_id: int, now: str) -> None:
    conn.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (now, user_id))


def delete(conn: Connection, user_id: int) -> None:
    conn.execute("DELETE FROM users WHERE id = ?", (user_id,))


def insert_invite(conn: Connection, *, user_id: int, token_hash: str, created_by: int | None,
                  now: str, expires_at: str) -> int:
    conn.execute("DELETE FROM invites WHERE user_id = ? AND used_at IS NULL", (user_id,))
    cur = conn.execute("INSERT INTO invites (user_id, token_hash, created_by, created_at, expires_at) "
                       "VALUES (?, ?, ?, ?, ?)", (user_id, token_hash, created_by, now, expires_at))
    return cur.lastrowid


def invite_by_hash(conn: Connection, token_hash: str) -> Row | None:
    return conn.execute("SELECT id, user_id, expires_at, used_at FROM invites WHERE token_hash = ?",
                        (token_hash,)).fetchone()


def use_invite(conn: Connection, invite_id: int, now: str) -> bool:
    return conn.execute("UPDATE invites SET used_at = ? WHERE id = ? AND used_at IS NULL",
                        (now, invite_id)).rowcount == 1


def revoke_token(conn: Connection, jti: str, expires_at: str) -> None:
    conn.execute("INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)", (jti, expires_at))


def token_revoked(conn: Connection, jti: str) -> bool:
    return conn.execute("SELECT 1 FROM revoked_tokens WHERE jti = ?", (jti,)).fetchone() is not None


def purge_revoked(conn: Connection, now: str) -> int:
    return conn.execute("DELETE FROM revoked_tokens WHERE expires_at < ?", (now,)).rowcount
