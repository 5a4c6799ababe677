"""Outbound messages, pacing state and events: the sending engine's storage."""

from __future__ import annotations

import json

from .database import Connection, Row


# -- planning --------------------------------------------------------------------------------

def active_campaigns(conn: Connection) -> list[Row]:
    return conn.execute("SELECT * FROM campaigns WHERE status = 'active' ORDER BY id").fetchall()


def due_enrollments(conn: Connection, campaign_id: int, now: str, limit: int) -> list[Row]:
    """Active enrolments whose next step is due (the partial index makes idle ones free)."""
    return conn.execute(
        "SELECT e.id, e.campaign_id, e.lead_id, e.next_step, e.mailbox_id, l.email, l.email_domain, "
        "l.timezone, l.status AS lead_status FROM enrollments e JOIN leads l ON l.id = e.lead_id "
        "WHERE e.campaign_id = ? AND e.status = 'active' AND e.next_due_at <= ? "
        # follow-ups first: a thread already started should not starve behind new ones
        "ORDER BY e.next_step = 0, e.next_due_at LIMIT ?", (campaign_id, now, limit)).fetchall()


def step_delays(conn: Connection, campaign_id: int) -> list[int]:
    """Delay in minutes of each step, in order."""
    return [r[0] for r in conn.execute("SELECT delay_minutes FROM campaign_steps WHERE campaign_id = ? "
                                       "ORDER BY position", (campaign_id,))]


def defer_enrollment(conn: Connection, enrollment_id: int, until: str) -> None:
    conn.execute("UPDATE enrollments SET next_due_at = ? WHERE id = ?", (until, enrollment_id))


def stop_enrollment(conn: Connection, enrollment_id: int, reason: str) -> None:
    conn.execute("UPDATE enrollments SET status = 'stopped', stop_reason = ?, next_due_at = NULL "
                 "WHERE id = ? AND status = 'active'", (reason, enrollment_id))


def stop_lead_enrollments(conn: Connection, lead_id: int, reason: str) -> int:
    """Every active sequence of a lead stops (unsubscribe, complaint, erasure)."""
    return conn.execute("UPDATE enrollments SET status = 'stopped', stop_reason = ?, next_due_at = NULL "
                        "WHERE lead_id = ? AND status = 'active'", (reason, lead_id)).rowcount


def set_lead_status(conn: Connection, lead_id: int, status: str, now: str) -> None:
    conn.execute("UPDATE leads SET status = ?, updated_at = ? WHERE id = ?", (status, now, lead_id))


def release_mailbox(conn: Connection, mailbox_id: int, now: str) -> int:
    """A mailbox is going away: its planned (unsent) messages are dropped and their leads made
    due again, to be planned on another mailbox of the pool."""
    rows = conn.execute("SELECT enrollment_id FROM messages WHERE mailbox_id = ? AND status = 'planned'",
                        (mailbox_id,)).fetchall()
    conn.execute("DELETE FROM messages WHERE mailbox_id = ? AND status = 'planned'", (mailbox_id,))
    conn.executemany("UPDATE enrollments SET next_due_at = ?, mailbox_id = NULL WHERE id = ? AND status = 'active'",
                     [(now, r[0]) for r in rows])
    conn.execute("UPDATE enrollments SET mailbox_id = NULL WHERE mailbox_id = ?", (mailbox_id,))
    return len(rows)


def plan(conn: Connection, *, enrollment: Row, mailbox_id: int, message_id: str, planned_at: str,
         now: str) -> bool:
    """Insert the planned message and take the enrolment off the due list, together. UNIQUE
    (enrollment_id, step) makes a second plan of the same step impossible."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO messages (campaign_id, enrollment_id, lead_id, mailbox_id, step, status, message_id, "
        "to_email, to_domain, planned_at, created_at) VALUES (?, ?, ?, ?, ?, 'planned', ?, ?, ?, ?, ?)",
        (enrollment["campaign_id"], enrollment["id"], enrollment["lead_id"], mailbox_id, enrollment["next_step"],
         message_id, enrollment["email"], enrollment["email_domain"], planned_at, now))
    conn.execute("UPDATE enrollments SET next_due_at = NULL, mailbox_id = coalesce(mailbox_id, ?) WHERE id = ?",
                 (mailbox_id, enrollment["id"]))
    return cur.rowcount == 1


def pool_mailboxes(conn: Connection, campaign: Row) -> list[Row]:
    if campaign["mailbox_tag"]:
        return conn.execute("SELECT m.*, p.next_allowed_at FROM mailboxes m JOIN mailbox_tags t ON t.mailbox_id = m.id "
                            "LEFT JOIN mailbox_pacing p ON p.mailbox_id = m.id WHERE t.tag = ? ORDER BY m.id",
                            (campaign["mailbox_tag"],)).fetchall()
    return conn.execute("SELECT m.*, p.next_allowed_at FROM mailboxes m "
                        "JOIN campaign_mailboxes c ON c.mailbox_id = m.id "
                        "LEFT JOIN mailbox_pacing p ON p.mailbox_id = m.id WHERE c.campaign_id = ? ORDER BY m.id",
                        (campaign["id"],)).fetchall()


def mailbox_load(conn: Connection, mailbox_id: int, since: str) -> tuple[int, int, str | None]:
    """(sent or sending since `since`, planned now, the latest planned time) for one mailbox."""
    sent = conn.execute("SELECT count(*) FROM messages WHERE mailbox_id = ? AND sent_at >= ?",
                        (mailbox_id, since)).fetchone()[0]
    sending = conn.execute("SELECT count(*) FROM messages WHERE mailbox_id = ? AND status = 'sending'",
                           (mailbox_id,)).fetchone()[0]
    planned = conn.execute("SELECT count(*), max(planned_at) FROM messages WHERE mailbox_id = ? AND status = 'planned'",
                           (mailbox_id,)).fetchone()
    return sent + sending, planned[0], planned[1]


def mailbox_sent_since(conn: Connection, mailbox_id: int, since: str) -> int:
    """Messages a mailbox sent since `since` (its daily cap counts these)."""
    return conn.execute("SELECT count(*) FROM messages WHERE mailbox_id = ? AND sent_at >= ?",
                        (mailbox_id, since)).fetchone()[0]


def campaign_sent_since(conn: Connection, campaign_id: int, since: str, *, first_step_only: bool = False) -> int:
    step = " AND step = 0" if first_step_only else ""
    return conn.execute(f"SELECT count(*) FROM messages WHERE campaign_id = ? AND status IN ('sent', 'sending', "
                        f"'planned') AND coalesce(sent_at, planned_at) >= ?{step}", (campaign_id, since)).fetchone()[0]


# -- claiming and recording -------------------------------------------------------------------

def mailboxes_with_due(conn: Connection, now: str) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT m.mailbox_id FROM messages m JOIN campaigns c ON c.id = m.campaign_id "
        "WHERE m.status = 'planned' AND m.planned_at <= ? AND c.status = 'active' AND m.mailbox_id IS NOT NULL",
        (now,))]


def next_planned(conn: Connection, mailbox_id: int, now: str) -> Row | None:
    return conn.execute(
        "SELECT m.*, e.status AS enrollment_status, e.next_step, l.status AS lead_status, "
        "c.status AS campaign_status FROM messages m JOIN enrollments e ON e.id = m.enrollment_id "
        "JOIN leads l ON l.id = m.lead_id JOIN campaigns c ON c.id = m.campaign_id "
        "WHERE m.mailbox_id = ? AND m.status = 'planned' AND m.planned_at <= ? AND c.status = 'active' "
        "ORDER BY m.planned_at, m.id LIMIT 1", (mailbox_id, now)).fetchone()


def set_status(conn: Connection, message_id: int, status: str, *, expect: str, **fields) -> bool:
    """Conditional state change: of two workers, exactly one moves a message on."""
    allowed = {"planned_at", "claimed_at", "sent_at", "smtp_code", "last_error", "subject", "variant"}
    names = [n for n in fields if n in allowed]  # fixed column names only
    sets = "".join(f", {n} = ?" for n in names)
    bump = ", attempts = attempts + 1" if status == "sending" else ""
    return conn.execute(f"UPDATE messages SET status = ?{sets}{bump} WHERE id = ? AND status = ?",
                        [status, *(fields[n] for n in names), message_id, expect]).rowcount == 1


def defer(conn: Connection, message_id: int, until: str, reason: str | None = None) -> None:
    conn.execute("UPDATE messages SET planned_at = ?, last_error = coalesce(?, last_error) "
                 "WHERE id = ? AND status = 'planned'", (until, reason, message_id))


def last_send_to_domain(conn: Connection, domain: str) -> str | None:
    row = conn.execute("SELECT max(sent_at) FROM messages WHERE to_domain = ? AND sent_at IS NOT NULL",
                       (domain,)).fetchone()
    return row[0]


def pacing(conn: Connection, mailbox_id: int) -> str | None:
    row = conn.execute("SELECT next_allowed_at FROM mailbox_pacing WHERE mailbox_id = ?", (mailbox_id,)).fetchone()
    return row[0] if row else None


def set_pacing(conn: Connection, mailbox_id: int, sent_at: str, next_allowed_at: str) -> None:
    conn.execute("INSERT INTO mailbox_pacing (mailbox_id, next_allowed_at, last_sent_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (mailbox_id) DO UPDATE SET next_allowed_at = excluded.next_allowed_at, "
                 "last_sent_at = excluded.last_sent_at", (mailbox_id, next_allowed_at, sent_at))


def thread_of(conn: Connection, enrollment_id: int) -> list[Row]:
    """Messages already sent to this lead in this campaign, in order (for In-Reply-To/References)."""
    return conn.execute("SELECT message_id, subject, step FROM messages WHERE enrollment_id = ? AND status = 'sent' "
                        "ORDER BY step", (enrollment_id,)).fetchall()


def advance_enrollment(conn: Connection, enrollment_id: int, next_step: int, due_at: str | None) -> None:
    if due_at is None:
        conn.execute("UPDATE enrollments SET status = 'completed', next_step = ?, next_due_at = NULL "
                     "WHERE id = ? AND status = 'active'", (next_step, enrollment_id))
    else:
        conn.execute("UPDATE enrollments SET next_step = ?, next_due_at = ? WHERE id = ? AND status = 'active'",
                     (next_step, due_at, enrollment_id))


def mark_contacted(conn: Connection, lead_id: int, now: str) -> None:
    conn.execute("UPDATE leads SET status = 'contacted', updated_at = ? WHERE id = ? AND status = 'new'",
                 (now, lead_id))


def add_event(conn: Connection, kind: str, *, campaign_id: int | None, lead_id: int | None,
              message_id: int | None, step: int | None, variant: str | None, data: dict, now: str) -> int:
    return conn.execute("INSERT INTO events (kind, campaign_id, lead_id, message_id, step, variant, data, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (kind, campaign_id, lead_id, message_id, step, variant, json.dumps(data), now)).lastrowid


def by_id(conn: Connection, message_id: int) -> Row | None:
    return conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()


def in_status(conn: Connection, status: str) -> list[Row]:
    return conn.execute("SELECT * FROM messages WHERE status = ? ORDER BY id", (status,)).fetchall()


def search(conn: Connection, *, campaign_id: int | None, lead_id: int | None, status: str | None,
           mailbox_id: int | None, after_id: int, limit: int) -> list[Row]:
    return conn.execute(
        "SELECT * FROM messages WHERE id > ? AND (? IS NULL OR campaign_id = ?) AND (? IS NULL OR lead_id = ?) "
        "AND (? IS NULL OR status = ?) AND (? IS NULL OR mailbox_id = ?) ORDER BY id LIMIT ?",
        (after_id, campaign_id, campaign_id, lead_id, lead_id, status, status, mailbox_id, mailbox_id,
         limit)).fetchall()
