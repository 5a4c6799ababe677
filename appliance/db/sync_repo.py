"""Mailbox sync state: per mailbox folder, the UIDVALIDITY and the highest UID already read
(sync_folders), and the mailboxes the sync should be reading."""

from __future__ import annotations

from .database import Connection, Row


def active_mailboxes(conn: Connection) -> list[Row]:
    """Active mailboxes with what their IMAP session depends on: when any of these columns
    changes (a new password, host or trust setting), an open session is replaced."""
    return conn.execute(
        "SELECT id, created_at, junk_folder, imap_host, imap_port, imap_security, username, password_enc, "
        "tls_ca_pem, tls_pin_sha256 FROM mailboxes WHERE status = 'active' ORDER BY id").fetchall()


def folders_of(conn: Connection, mailbox_id: int) -> list[Row]:
    return conn.execute("SELECT * FROM sync_folders WHERE mailbox_id = ? ORDER BY role, folder",
                        (mailbox_id,)).fetchall()


def ensure(conn: Connection, mailbox_id: int, folder: str, role: str) -> Row:
    """The folder's state, created (nothing read yet) when it is new."""
    conn.execute("INSERT INTO sync_folders (mailbox_id, folder, role) VALUES (?, ?, ?) "
                 "ON CONFLICT (mailbox_id, folder) DO UPDATE SET role = excluded.role", (mailbox_id, folder, role))
    return conn.execute("SELECT * FROM sync_folders WHERE mailbox_id = ? AND folder = ?",
                        (mailbox_id, folder)).fetchone()


def save(conn: Connection, mailbox_id: int, folder: str, *, uidvalidity: int | None, last_uid: int,
         synced_at: str | None, last_error: str | None) -> None:
    conn.execute("UPDATE sync_folders SET uidvalidity = ?, last_uid = ?, synced_at = ?, last_error = ? "
                 "WHERE mailbox_id = ? AND folder = ?",
                 (uidvalidity, last_uid, synced_at, last_error, mailbox_id, folder))


def forget_others(conn: Connection, mailbox_id: int, keep: list[str]) -> int:
    """Drop the state of folders no longer read (the junk folder was renamed or chosen anew)."""
    marks = ", ".join("?" for _ in keep) or "''"
    return conn.execute(f"DELETE FROM sync_folders WHERE mailbox_id = ? AND folder NOT IN ({marks})",
                        (mailbox_id, *keep)).rowcount
