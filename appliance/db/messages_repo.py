"""Outbound messages, pacing state and events: the sending engine's storage."""

from __future__ import annotations

import json

from .database import Connection, Row
from .grouping import grouped


# -- planning --------------------------------------------------------------------------------

def active_campaigns(conn: Connection) -> list[Row]:
    return conn.execute("SELECT * FROM campaigns WHERE status = 'active' ORDER BY id").fetchall()


_DUE = ("SELECT e.id, e.campaign_id, e.lead_id, e.next_step, e.mailbox_id, l.email, l.email_domain, "
        "l.timezone, l.status AS lead_status FROM enrollments e JOIN leads l ON l.id = e.lead_id "
        "WHERE e.campaign_id = ? AND e.status = 'active' AND e.next_due_at <= ? ")


def due_enrollments(conn: Connection, campaign_id: int, now: str, limit: int) -> list[Row]:
    """Active enrolments whose next step is due, follow-ups first (a thread already started should
    not starve behind new ones), each kind oldest first. Two index walks that stop after `limit`
    rows (the partial indexes make idle enrolments free, and the follow-up index spares reading
    every due first step); fetchmany stops them, as the index gives the order."""
    rows = conn.execute(_DUE + "AND e.next_step > 0 ORDER BY e.next_due_at", (campaign_id, now)).fetchmany(limit)
    if len(rows) < limit:
        rows += conn.execute(_DUE + "AND e.next_step = 0 ORDER BY e.next_due_at",
                             (campaign_id, now)).fetchmany(limit - len(rows))
    return rows


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


def plan_many(conn: Connection, plans: list[tuple[Row, int, str, str]], now: str) -> int:
    """Insert the planned messages, each (enrolment, mailbox, Message-ID, planned_at), and take
    their enrolments off the due list, together; the number inserted. UNIQUE (enrollment_id,
    step) makes a second plan of the same step impossible."""
    inserted = conn.execute(
        "INSERT OR IGNORE INTO messages (campaign_id, enrollment_id, lead_id, mailbox_id, step, status, message_id, "
        "to_email, to_domain, planned_at, created_at) SELECT p.value ->> 0, p.value ->> 1, p.value ->> 2, "
        "p.value ->> 3, p.value ->> 4, 'planned', p.value ->> 5, p.value ->> 6, p.value ->> 7, p.value ->> 8, ? "
        "FROM json_each(?) AS p RETURNING id",  # RETURNING lists only the rows really inserted
        (now, json.dumps([(e["campaign_id"], e["id"], e["lead_id"], mailbox_id, e["next_step"], message_id,
                           e["email"], e["email_domain"], planned_at) for e, mailbox_id, message_id, planned_at in plans]))
    ).fetchall()
    conn.executemany("UPDATE enrollments SET next_due_at = NULL, mailbox_id = coalesce(mailbox_id, ?) WHERE id = ?",
                     [(mailbox_id, e["id"]) for e, mailbox_id, _, _ in plans])
    return len(inserted)


def pool_mailboxes(conn: Connection, campaign: Row) -> list[Row]:
    if campaign["mailbox_tag"]:
        return conn.execute("SELECT m.*, p.next_allowed_at FROM mailboxes m JOIN mailbox_tags t ON t.mailbox_id = m.id "
                            "LEFT JOIN mailbox_pacing p ON p.mailbox_id = m.id WHERE t.tag = ? ORDER BY m.id",
                            (campaign["mailbox_tag"],)).fetchall()
    return conn.execute("SELECT m.*, p.next_allowed_at FROM mailboxes m "
                        "JOIN campaign_mailboxes c ON c.mailbox_id = m.id "
                        "LEFT JOIN mailbox_pacing p ON p.mailbox_id = m.id WHERE c.campaign_id = ? ORDER BY m.id",
                        (campaign["id"],)).fetchall()


def pool_load(conn: Connection, mailbox_ids: list[int], since: str) -> dict[int, tuple[int, int, str | None]]:
    """{mailbox: (sent since `since` or sending now, planned now, the latest planned time)}: one
    query for the whole pool, each count an index seek, plus one look at what is in flight."""
    sending: dict[int, int] = {}
    for r in in_flight(conn):
        sending[r["mailbox_id"]] = sending.get(r["mailbox_id"], 0) + 1
    rows = conn.execute(
        "SELECT j.value, (SELECT count(*) FROM messages WHERE mailbox_id = j.value AND sent_at >= ?), "
        "(SELECT count(*) FROM messages WHERE mailbox_id = j.value AND status = 'planned'), "
        "(SELECT max(planned_at) FROM messages WHERE mailbox_id = j.value AND status = 'planned') "
        "FROM json_each(?) AS j", (since, json.dumps(mailbox_ids)))
    return {r[0]: (r[1] + sending.get(r[0], 0), r[2], r[3]) for r in rows}


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
    """Mailboxes with a message of a running campaign due by `now`: one index seek per mailbox,
    not a scan of every planned message."""
    return [r[0] for r in conn.execute(
        "SELECT b.id FROM mailboxes b WHERE EXISTS (SELECT 1 FROM messages m JOIN campaigns c ON c.id = m.campaign_id "
        "WHERE m.mailbox_id = b.id AND m.status = 'planned' AND m.planned_at <= ? AND c.status = 'active') "
        "ORDER BY b.id", (now,))]


def due_for_mailbox(conn: Connection, mailbox_id: int, now: str, limit: int) -> list[Row]:
    """The mailbox's next due messages of running campaigns, oldest first, with what the claim
    checks: the enrolment's and the lead's status and the lead's time zone."""
    # No LIMIT clause: the index gives the order, so SQLite produces rows as they are fetched
    # and fetchmany stops after `limit`; a bound `LIMIT ?` made this query three times slower.
    return conn.execute(
        "SELECT m.*, e.status AS enrollment_status, l.status AS lead_status, l.timezone AS lead_timezone "
        "FROM messages m JOIN enrollments e ON e.id = m.enrollment_id "
        "JOIN leads l ON l.id = m.lead_id JOIN campaigns c ON c.id = m.campaign_id "
        "WHERE m.mailbox_id = ? AND m.status = 'planned' AND m.planned_at <= ? AND c.status = 'active' "
        "ORDER BY m.planned_at, m.id", (mailbox_id, now)).fetchmany(limit)


def claim_many(conn: Connection, message_ids: list[int], claimed_at: str) -> int:
    """planned → sending for each; the count moved (conditional, like set_status)."""
    return conn.execute("UPDATE messages SET status = 'sending', claimed_at = ?, attempts = attempts + 1 "
                        "WHERE id IN (SELECT value FROM json_each(?)) AND status = 'planned'",
                        (claimed_at, json.dumps(message_ids))).rowcount


def release(conn: Connection, message_ids: list[int]) -> int:
    """Claimed messages that never reached SMTP go back to planned, as if never claimed."""
    return conn.execute("UPDATE messages SET status = 'planned', claimed_at = NULL, attempts = attempts - 1 "
                        "WHERE id IN (SELECT value FROM json_each(?)) AND status = 'sending'",
                        (json.dumps(message_ids),)).rowcount


def in_flight(conn: Connection) -> list[Row]:
    """Every message now `sending` (claimed, its outcome not yet recorded): mailbox, domain, claim time."""
    # the IN term lets SQLite use the partial index messages_sending instead of scanning the table
    return conn.execute("SELECT mailbox_id, to_domain, claimed_at FROM messages "
                        "WHERE status IN ('sending', 'uncertain') AND status = 'sending'").fetchall()


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


def last_sends_to_domains(conn: Connection, domains: list[str]) -> dict[str, str]:
    """{domain: latest sent_at} for those of `domains` that were ever sent to (one index seek each)."""
    rows = conn.execute("SELECT j.value, (SELECT max(sent_at) FROM messages WHERE to_domain = j.value) "
                        "FROM json_each(?) AS j", (json.dumps(domains),))
    return {r[0]: r[1] for r in rows if r[1] is not None}


def pacing(conn: Connection, mailbox_id: int) -> str | None:
    row = conn.execute("SELECT next_allowed_at FROM mailbox_pacing WHERE mailbox_id = ?", (mailbox_id,)).fetchone()
    return row[0] if row else None


def set_pacing(conn: Connection, mailbox_id: int, sent_at: str, next_allowed_at: str) -> None:
    conn.execute("INSERT INTO mailbox_pacing (mailbox_id, next_allowed_at, last_sent_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (mailbox_id) DO UPDATE SET next_allowed_at = excluded.next_allowed_at, "
                 "last_sent_at = excluded.last_sent_at", (mailbox_id, next_allowed_at, sent_at))


def threads_of(conn: Connection, enrollment_ids: list[int]) -> dict[int, list[Row]]:
    """Messages already sent to each lead in its campaign, in order (for In-Reply-To/References)."""
    rows = conn.execute("SELECT m.enrollment_id, m.message_id, m.subject, m.step FROM json_each(?) AS j "
                        "JOIN messages m ON m.enrollment_id = j.value WHERE m.status = 'sent' "
                        "ORDER BY m.enrollment_id, m.step", (json.dumps(enrollment_ids),))
    return grouped(enrollment_ids, rows, "enrollment_id")


def mark_sent(conn: Connection, sent: list[tuple[int, str, str, str | None]]) -> set[int]:
    """sending → sent for each (message id, sent_at, subject, variant); the ids that moved (a
    message settled meanwhile by reconcile or a person is left as it is)."""
    rows = conn.execute("UPDATE messages SET status = 'sent', sent_at = v.value ->> 1, subject = v.value ->> 2, "
                        "variant = v.value ->> 3 FROM json_each(?) AS v "
                        "WHERE messages.id = v.value ->> 0 AND messages.status = 'sending' RETURNING messages.id",
                        (json.dumps(sent),)).fetchall()
    return {r[0] for r in rows}


def advance_enrollments(conn: Connection, moves: list[tuple[int, int, str | None]]) -> None:
    """For each (enrolment, next step, when it is due): move on, or complete without a due time."""
    conn.executemany("UPDATE enrollments SET next_step = ?, next_due_at = ? WHERE id = ? AND status = 'active'",
                     [(step, due, i) for i, step, due in moves if due is not None])
    conn.executemany("UPDATE enrollments SET status = 'completed', next_step = ?, next_due_at = NULL "
                     "WHERE id = ? AND status = 'active'", [(step, i) for i, step, due in moves if due is None])


def mark_contacted_many(conn: Connection, contacts: list[tuple[int, str]]) -> None:
    """Each (lead, when) still `new` becomes `contacted`."""
    conn.executemany("UPDATE leads SET status = 'contacted', updated_at = ? WHERE id = ? AND status = 'new'",
                     [(at, lead_id) for lead_id, at in contacts])


def add_events(conn: Connection, events: list[tuple]) -> None:
    """Many events at once: (kind, campaign_id, lead_id, message_id, step, variant, data, created_at)."""
    conn.executemany("INSERT INTO events (kind, campaign_id, lead_id, message_id, step, variant, data, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     [(k, c, lead, m, step, v, json.dumps(d), at) for k, c, lead, m, step, v, d, at in events])


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
    if status in ("sending", "uncertain"):  # the partial index messages_sending, not a table scan
        return conn.execute("SELECT * FROM messages WHERE status IN ('sending', 'uncertain') AND status = ? "
                            "ORDER BY id", (status,)).fetchall()
    return conn.execute("SELECT * FROM messages WHERE status = ? ORDER BY id", (status,)).fetchall()


def search(conn: Connection, *, campaign_id: int | None, lead_id: int | None, status: str | None,
           mailbox_id: int | None, after_id: int, limit: int) -> list[Row]:
    return conn.execute(
        "SELECT * FROM messages WHERE id > ? AND (? IS NULL OR campaign_id = ?) AND (? IS NULL OR lead_id = ?) "
        "AND (? IS NULL OR status = ?) AND (? IS NULL OR mailbox_id = ?) ORDER BY id LIMIT ?",
        (after_id, campaign_id, campaign_id, lead_id, lead_id, status, status, mailbox_id, mailbox_id,
         limit)).fetchall()
