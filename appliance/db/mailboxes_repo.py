"""Mailboxes, their tags, credential-read counters and background jobs."""

from __future__ import annotations

from . import columns, like
from .database import Connection, Row
from .grouping import grouped

# Columns a caller may write through insert/update (the names are fixed here, never user input).
WRITABLE = ("email", "display_name", "provider", "smtp_host", "smtp_port", "smtp_security", "imap_host",
            "imap_port", "imap_security", "username", "tls_ca_pem", "tls_pin_sha256", "reply_to",
            "signature", "daily_limit", "min_gap_seconds", "max_gap_seconds", "ramp_start", "ramp_step",
            "ramp_started_on", "sending_enabled", "save_sent_copy", "sent_folder", "junk_folder")
HEALTH = ("status", "status_reason", "last_error", "last_error_code", "last_error_at",
          "consecutive_failures", "last_checked_at")


def insert(conn: Connection, fields: dict, now: str) -> int:
    names = [n for n in WRITABLE if n in fields]
    placeholders = ", ".join("?" for _ in names)
    cur = conn.execute(
        f"INSERT INTO mailboxes ({', '.join(names)}, password_enc, created_at, updated_at) "
        f"VALUES ({placeholders}, x'', ?, ?)", [fields[n] for n in names] + [now, now])
    return cur.lastrowid


def update(conn: Connection, mailbox_id: int, fields: dict, now: str) -> None:
    columns.update(conn, "mailboxes", (*WRITABLE, *HEALTH), mailbox_id, fields, now)


def set_password(conn: Connection, mailbox_id: int, sealed: bytes) -> None:
    conn.execute("UPDATE mailboxes SET password_enc = ? WHERE id = ?", (sealed, mailbox_id))


def by_id(conn: Connection, mailbox_id: int) -> Row | None:
    return conn.execute("SELECT * FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()


def by_email(conn: Connection, email: str) -> Row | None:
    return conn.execute("SELECT * FROM mailboxes WHERE email = ?", (email,)).fetchone()


def search(conn: Connection, *, status: str | None = None, tag: str | None = None, q: str | None = None,
           after_id: int = 0, limit: int = 50) -> list[Row]:
    clauses, params = ["m.id > ?"], [after_id]
    if status:
        clauses.append("m.status = ?")
        params.append(status)
    if tag:
        clauses.append("m.id IN (SELECT mailbox_id FROM mailbox_tags WHERE tag = ?)")
        params.append(tag)
    if q:
        pattern = like.contains(q)
        clauses.append("(m.email LIKE ? ESCAPE '\\' OR m.display_name LIKE ? ESCAPE '\\')")
        params += [pattern, pattern]
    params.append(limit)
    return conn.execute(f"SELECT m.* FROM mailboxes m WHERE {' AND '.join(clauses)} ORDER BY m.id LIMIT ?",
                        params).fetchall()


def count_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) AS n FROM mailboxes GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


def delete(conn: Connection, mailbox_id: int) -> None:
    conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))


def tags_of(conn: Connection, mailbox_ids: list[int]) -> dict[int, list[str]]:
    if not mailbox_ids:
        return {}
    marks = ", ".join("?" for _ in mailbox_ids)
    rows = conn.execute(f"SELECT mailbox_id, tag FROM mailbox_tags WHERE mailbox_id IN ({marks}) "
                        "ORDER BY tag", mailbox_ids)
    return grouped(mailbox_ids, rows, "mailbox_id", lambda r: r["tag"])


def set_tags(conn: Connection, mailbox_id: int, tags: list[str]) -> None:
    conn.execute("DELETE FROM mailbox_tags WHERE mailbox_id = ?", (mailbox_id,))
    conn.executemany("INSERT INTO mailbox_tags (mailbox_id, tag) VALUES (?, ?)",
                     [(mailbox_id, t) for t in tags])


def all_tags(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT tag FROM mailbox_tags ORDER BY tag")]


def count_credential_read(conn: Connection, mailbox_id: int, day: str, now: str) -> int:
    """Add one to today's counter; returns the new count (1 = first read of the day)."""
    conn.execute("INSERT INTO credential_reads (mailbox_id, day, reads, last_at) VALUES (?, ?, 1, ?) "
                 "ON CONFLICT (mailbox_id, day) DO UPDATE SET reads = reads + 1, last_at = excluded.last_at",
                 (mailbox_id, day, now))
    return conn.execute("SELECT reads FROM credential_reads WHERE mailbox_id = ? AND day = ?",
                        (mailbox_id, day)).fetchone()[0]


def credential_reads(conn: Connection, mailbox_id: int, limit: int = 30) -> list[Row]:
    return conn.execute("SELECT day, reads, last_at FROM credential_reads WHERE mailbox_id = ? "
                        "ORDER BY day DESC LIMIT ?", (mailbox_id, limit)).fetchall()


def ids_in_status(conn: Connection, status: str, limit: int) -> list[int]:
    """The longest-unchecked first, so a periodic re-check goes round all of them."""
    return [r[0] for r in conn.execute("SELECT id FROM mailboxes WHERE status = ? "
                                       "ORDER BY coalesce(last_checked_at, '') LIMIT ?", (status, limit))]
