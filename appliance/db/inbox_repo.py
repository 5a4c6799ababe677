"""Reading the unified inbox: inbound mail (and replies written in the app) with their lead,
campaign and mailbox, the conversation with one lead, read state, and lead labels.

Rows are written by inbound_repo (mail that came in) and by insert_out here (a reply a person
sent). Filters are fixed column fragments with every value bound as a parameter.
"""

from __future__ import annotations

from . import like
from .database import Connection, Row

_LIST_COLUMNS = (
    "i.id, i.direction, i.kind, i.mailbox_id, mb.email AS mailbox_email, i.lead_id, l.email AS lead_email, "
    "l.first_name AS lead_first_name, l.last_name AS lead_last_name, l.company AS lead_company, "
    "l.status AS lead_status, l.label AS lead_label, i.campaign_id, c.name AS campaign_name, i.message_id, "
    "i.from_address, i.from_name, i.to_address, i.subject, i.snippet, i.details, i.unread, i.truncated, "
    "i.received_at, i.created_at")
_DETAIL_COLUMNS = (_LIST_COLUMNS + ", i.folder, i.header_message_id, i.in_reply_to, i.body_text, i.body_html, "
                   "i.sent_by, u.email AS sent_by_email, mb.display_name AS mailbox_display_name")
_FROM = ("FROM inbox_messages i LEFT JOIN leads l ON l.id = i.lead_id "
         "LEFT JOIN mailboxes mb ON mb.id = i.mailbox_id LEFT JOIN campaigns c ON c.id = i.campaign_id")
_OUT_COLUMNS = ("direction", "dedup_key", "mailbox_id", "kind", "header_message_id", "in_reply_to", "lead_id",
                "campaign_id", "message_id", "from_address", "from_name", "to_address", "subject", "snippet",
                "body_text", "truncated", "details", "unread", "sent_by", "received_at", "created_at")


def search(conn: Connection, *, campaign_id: int | None = None, mailbox_id: int | None = None,
           lead_id: int | None = None, lead_status: str | None = None, label: str | None = None,
           kind: str | None = None, unread: bool | None = None, q: str | None = None,
           before_id: int | None = None, limit: int = 50) -> list[Row]:
    """Inbound messages, newest first (by id), below `before_id` when given."""
    where = ["i.direction = 'in'"]
    params: list = []
    for column, value in (("i.campaign_id", campaign_id), ("i.mailbox_id", mailbox_id), ("i.lead_id", lead_id),
                          ("i.kind", kind), ("l.status", lead_status), ("l.label", label)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if unread is True:
        where.append("i.unread = 1")  # with direction = 'in': the partial index inbox_messages_unread
    elif unread is False:
        where.append("i.unread = 0")
    if q:
        pattern = like.contains(q)
        where.append("(i.from_address LIKE ? ESCAPE '\\' OR i.from_name LIKE ? ESCAPE '\\' "
                     "OR i.subject LIKE ? ESCAPE '\\')")
        params += [pattern] * 3
    if before_id:
        where.append("i.id < ?")
        params.append(before_id)
    return conn.execute(f"SELECT {_LIST_COLUMNS} {_FROM} WHERE {' AND '.join(where)} ORDER BY i.id DESC LIMIT ?",
                        (*params, limit)).fetchall()


def by_id(conn: Connection, inbox_id: int) -> Row | None:
    return conn.execute(f"SELECT {_DETAIL_COLUMNS} {_FROM} LEFT JOIN users u ON u.id = i.sent_by WHERE i.id = ?",
                        (inbox_id,)).fetchone()


def unread_count(conn: Connection, cap: int) -> int:
    """Unread inbound messages, counted up to `cap` (the navigation shows "cap+" beyond)."""
    return conn.execute("SELECT count(*) FROM (SELECT 1 FROM inbox_messages WHERE unread = 1 AND direction = 'in' "
                        "LIMIT ?)", (cap,)).fetchone()[0]


def set_unread(conn: Connection, inbox_id: int, unread: bool) -> bool:
    """True when the state changed."""
    return conn.execute("UPDATE inbox_messages SET unread = ? WHERE id = ? AND direction = 'in' AND unread != ?",
                        (int(unread), inbox_id, int(unread))).rowcount == 1


# -- the conversation with one lead ---------------------------------------------------------------

def thread_messages(conn: Connection, lead_id: int, limit: int) -> list[Row]:
    """The lead's inbox rows (in and out), the latest `limit` of them, oldest first."""
    return conn.execute(
        f"SELECT * FROM (SELECT {_DETAIL_COLUMNS} {_FROM} LEFT JOIN users u ON u.id = i.sent_by "
        "WHERE i.lead_id = ? ORDER BY i.received_at DESC, i.id DESC LIMIT ?) ORDER BY received_at, id",
        (lead_id, limit)).fetchall()


def thread_steps(conn: Connection, lead_id: int, limit: int) -> list[Row]:
    """Our sequence steps that went to the lead, the latest `limit` of them, oldest first."""
    return conn.execute(
        "SELECT * FROM (SELECT m.id, m.campaign_id, c.name AS campaign_name, m.mailbox_id, mb.email AS mailbox_email, "
        "m.step, m.variant, m.message_id, m.subject, m.to_email, m.sent_at FROM messages m "
        "JOIN campaigns c ON c.id = m.campaign_id LEFT JOIN mailboxes mb ON mb.id = m.mailbox_id "
        "WHERE m.lead_id = ? AND m.status = 'sent' ORDER BY m.sent_at DESC, m.id DESC LIMIT ?) "
        "ORDER BY sent_at, id", (lead_id, limit)).fetchall()


def step_by_id(conn: Connection, message_id: int) -> Row | None:
    """One sent step (for mail that answers it but names no lead any more)."""
    return conn.execute(
        "SELECT m.id, m.campaign_id, c.name AS campaign_name, m.mailbox_id, mb.email AS mailbox_email, m.step, "
        "m.variant, m.message_id, m.subject, m.to_email, m.sent_at FROM messages m "
        "JOIN campaigns c ON c.id = m.campaign_id LEFT JOIN mailboxes mb ON mb.id = m.mailbox_id "
        "WHERE m.id = ? AND m.status = 'sent'", (message_id,)).fetchone()


def thread_header_ids(conn: Connection, lead_id: int, mailbox_id: int, limit: int) -> list[str]:
    """Message-IDs of the conversation between one mailbox and one lead, oldest first (for
    References): our steps, their mail, and replies written in the app."""
    rows = conn.execute(
        "SELECT * FROM (SELECT at, header FROM ("
        "  SELECT sent_at AS at, message_id AS header FROM messages "
        "  WHERE lead_id = ? AND mailbox_id = ? AND status = 'sent' "
        "  UNION ALL SELECT received_at, header_message_id FROM inbox_messages "
        "  WHERE lead_id = ? AND mailbox_id = ? AND header_message_id IS NOT NULL"
        ") ORDER BY at DESC LIMIT ?) ORDER BY at", (lead_id, mailbox_id, lead_id, mailbox_id, limit)).fetchall()
    return [r["header"] for r in rows]


# -- replies written in the app -------------------------------------------------------------------

def insert_out(conn: Connection, fields: dict) -> int:
    values = [fields.get(c) for c in _OUT_COLUMNS]
    return conn.execute(f"INSERT INTO inbox_messages ({', '.join(_OUT_COLUMNS)}) "
                        f"VALUES ({', '.join('?' for _ in _OUT_COLUMNS)})", values).lastrowid


def mailbox(conn: Connection, mailbox_id: int) -> Row | None:
    return conn.execute("SELECT id, email, display_name, reply_to, signature, save_sent_copy, sent_folder, status "
                        "FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()


# -- labels ---------------------------------------------------------------------------------------

def lead_label(conn: Connection, lead_id: int) -> Row | None:
    return conn.execute("SELECT id, email, status, label FROM leads WHERE id = ?", (lead_id,)).fetchone()


def set_lead_label(conn: Connection, lead_id: int, label: str | None, now: str) -> None:
    conn.execute("UPDATE leads SET label = ?, updated_at = ? WHERE id = ?", (label, now, lead_id))


def custom_labels(conn: Connection) -> list[Row]:
    return conn.execute("SELECT name, color, created_at FROM inbox_labels ORDER BY name").fetchall()


def custom_label(conn: Connection, name: str) -> Row | None:
    return conn.execute("SELECT name, color, created_at FROM inbox_labels WHERE name = ?", (name,)).fetchone()


def insert_label(conn: Connection, name: str, color: str, now: str) -> bool:
    """False when the name exists already."""
    return conn.execute("INSERT OR IGNORE INTO inbox_labels (name, color, created_at) VALUES (?, ?, ?)",
                        (name, color, now)).rowcount == 1


def delete_label(conn: Connection, name: str, now: str) -> int:
    """Remove a custom label and take it off every lead that has it; returns how many leads."""
    cleared = conn.execute("UPDATE leads SET label = NULL, updated_at = ? WHERE label = ?", (now, name)).rowcount
    conn.execute("DELETE FROM inbox_labels WHERE name = ?", (name,))
    return cleared


# -- filter menus ---------------------------------------------------------------------------------

def mailbox_choices(conn: Connection, limit: int) -> list[Row]:
    return conn.execute("SELECT id, email FROM mailboxes ORDER BY email LIMIT ?", (limit,)).fetchall()
