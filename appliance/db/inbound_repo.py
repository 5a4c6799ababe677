"""Inbound mail: recording what came in (the inbox_messages dedup row) and the effects it has
on leads and their sequences. Reading the inbox for display lives in inbox_repo."""

from __future__ import annotations

from .database import Connection, Row

_COLUMNS = ("direction", "dedup_key", "mailbox_id", "folder", "uid", "kind", "header_message_id", "in_reply_to",
            "lead_id", "campaign_id", "message_id", "from_address", "from_name", "to_address", "subject", "snippet",
            "body_text", "body_html", "truncated", "details", "unread", "sent_by", "received_at", "created_at")


def insert_if_new(conn: Connection, fields: dict) -> int | None:
    """The new row's id, or None when a row with the same dedup_key exists (seen before)."""
    values = [fields.get(c) for c in _COLUMNS]
    cursor = conn.execute(f"INSERT OR IGNORE INTO inbox_messages ({', '.join(_COLUMNS)}) "
                          f"VALUES ({', '.join('?' for _ in _COLUMNS)})", values)
    return cursor.lastrowid if cursor.rowcount == 1 else None


def is_ours(conn: Connection, header_message_id: str) -> bool:
    """A Message-ID we generated: a sequence step, or a reply written in the app."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE message_id = ?) "
        "OR EXISTS (SELECT 1 FROM inbox_messages WHERE direction = 'out' AND header_message_id = ?)",
        (header_message_id, header_message_id)).fetchone()[0] == 1


def our_message(conn: Connection, message_ids: list[str]) -> Row | None:
    """The first of the given Message-IDs that is one of ours, as (message, lead, campaign)."""
    if not message_ids:
        return None
    marks = ", ".join("?" for _ in message_ids)
    rows = {r["header"]: r for r in conn.execute(
        f"SELECT m.message_id AS header, m.id AS message_id, m.lead_id, m.campaign_id, m.enrollment_id, m.step, "
        f"m.variant, m.mailbox_id FROM messages m WHERE m.message_id IN ({marks}) "
        f"UNION ALL SELECT i.header_message_id, i.message_id, i.lead_id, i.campaign_id, e.id, NULL, NULL, i.mailbox_id "
        f"FROM inbox_messages i LEFT JOIN enrollments e ON e.lead_id = i.lead_id AND e.campaign_id = i.campaign_id "
        f"WHERE i.direction = 'out' AND i.header_message_id IN ({marks})", (*message_ids, *message_ids))}
    return next((rows[i] for i in message_ids if i in rows), None)


def last_sent_to(conn: Connection, mailbox_id: int, email: str) -> Row | None:
    """Our latest sent step from this mailbox to this address (the reply fallback)."""
    return conn.execute(
        "SELECT m.id AS message_id, m.lead_id, m.campaign_id, m.enrollment_id, m.step, m.variant, m.mailbox_id "
        "FROM messages m JOIN leads l ON l.id = m.lead_id WHERE l.email = ? AND m.mailbox_id = ? "
        "AND m.status = 'sent' ORDER BY m.id DESC LIMIT 1", (email, mailbox_id)).fetchone()


def lead(conn: Connection, lead_id: int) -> Row | None:
    return conn.execute("SELECT id, email, email_domain, status, soft_bounces FROM leads WHERE id = ?",
                        (lead_id,)).fetchone()


def lead_by_email(conn: Connection, email: str) -> Row | None:
    return conn.execute("SELECT id, email, email_domain, status, soft_bounces FROM leads WHERE email = ?",
                        (email,)).fetchone()


def campaign_rules(conn: Connection, campaign_id: int) -> Row | None:
    return conn.execute("SELECT id, stop_on_reply, stop_on_auto_reply, stop_company_on_reply FROM campaigns "
                        "WHERE id = ?", (campaign_id,)).fetchone()


def set_lead_status_from(conn: Connection, lead_id: int, status: str, allowed_from: tuple[str, ...],
                         now: str) -> bool:
    """Moves the lead to `status` only from one of `allowed_from` (a reply does not undo a label
    such as meeting_booked, a bounce does not undo an unsubscribe)."""
    marks = ", ".join("?" for _ in allowed_from)
    return conn.execute(f"UPDATE leads SET status = ?, updated_at = ? WHERE id = ? AND status IN ({marks})",
                        (status, now, lead_id, *allowed_from)).rowcount == 1


def stop_enrollment(conn: Connection, campaign_id: int, lead_id: int, reason: str) -> int:
    stopped = conn.execute("UPDATE enrollments SET status = 'stopped', stop_reason = ?, next_due_at = NULL "
                           "WHERE campaign_id = ? AND lead_id = ? AND status = 'active'",
                           (reason, campaign_id, lead_id)).rowcount
    _cancel_planned(conn, "campaign_id = ? AND lead_id = ?", (campaign_id, lead_id), reason)
    return stopped


def stop_company(conn: Connection, campaign_id: int, domain: str, reason: str) -> int:
    """Every active enrolment in the campaign whose lead is at the same company domain."""
    where = "campaign_id = ? AND lead_id IN (SELECT id FROM leads WHERE email_domain = ?)"
    stopped = conn.execute(f"UPDATE enrollments SET status = 'stopped', stop_reason = ?, next_due_at = NULL "
                           f"WHERE status = 'active' AND {where}", (reason, campaign_id, domain)).rowcount
    _cancel_planned(conn, where, (campaign_id, domain), reason)
    return stopped


def stop_lead(conn: Connection, lead_id: int, reason: str) -> int:
    """Every active sequence of the lead, in every campaign."""
    stopped = conn.execute("UPDATE enrollments SET status = 'stopped', stop_reason = ?, next_due_at = NULL "
                           "WHERE lead_id = ? AND status = 'active'", (reason, lead_id)).rowcount
    _cancel_planned(conn, "lead_id = ?", (lead_id,), reason)
    return stopped


def _cancel_planned(conn: Connection, where: str, params: tuple, reason: str) -> None:
    # the claim would cancel these too; doing it now keeps the queue view honest
    conn.execute(f"UPDATE messages SET status = 'cancelled', last_error = ? WHERE status = 'planned' AND {where}",
                 (f"the lead's sequence stopped: {reason}", *params))


def count_soft_bounce(conn: Connection, lead_id: int, now: str) -> int:
    return conn.execute("UPDATE leads SET soft_bounces = soft_bounces + 1, updated_at = ? WHERE id = ? "
                        "RETURNING soft_bounces", (now, lead_id)).fetchone()[0]


def postpone_lead(conn: Connection, lead_id: int, until: str) -> None:
    """A soft bounce: the lead's next steps wait (nothing is sent to a full mailbox meanwhile)."""
    conn.execute("UPDATE enrollments SET next_due_at = max(next_due_at, ?) WHERE lead_id = ? AND status = 'active' "
                 "AND next_due_at IS NOT NULL", (until, lead_id))
    conn.execute("UPDATE messages SET planned_at = ? WHERE lead_id = ? AND status = 'planned' AND planned_at < ?",
                 (until, lead_id, until))
