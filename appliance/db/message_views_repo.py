"""Read views over outbound messages: lists, the queue, per-campaign numbers, and the one
write a person makes on a message (settling an uncertain send).

Filters are built from fixed column fragments with every value bound as a parameter, so
each query names only the columns it filters on and SQLite can use the matching index.
"""

from __future__ import annotations

from .database import Connection, Row

_MESSAGE_COLUMNS = (
    "m.id, m.campaign_id, c.name AS campaign_name, m.lead_id, m.to_email, m.mailbox_id, mb.email AS mailbox_email, "
    "m.step, m.variant, m.status, m.message_id, m.subject, m.planned_at, m.claimed_at, m.sent_at, m.attempts, "
    "m.smtp_code, m.last_error, m.created_at")
_MESSAGE_FROM = ("FROM messages m JOIN campaigns c ON c.id = m.campaign_id "
                 "LEFT JOIN mailboxes mb ON mb.id = m.mailbox_id")


def search(conn: Connection, *, campaign_id: int | None, lead_id: int | None, statuses: tuple[str, ...] | None,
           mailbox_id: int | None, retrying: bool = False, before_id: int | None, limit: int) -> list[Row]:
    """Messages, newest first (by id), below `before_id` when given.

    The page's ids are chosen first (from an index alone where one fits, e.g. campaign and
    status), and only those rows are read whole: sorting a big campaign's full rows would
    cost hundreds of milliseconds."""
    where, params = [], []
    for column, value in (("campaign_id", campaign_id), ("lead_id", lead_id), ("mailbox_id", mailbox_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if statuses:
        if set(statuses) <= {"sending", "uncertain"}:
            where.append("status IN ('sending', 'uncertain')")  # the partial index messages_sending's own terms
        where.append(f"status IN ({', '.join('?' for _ in statuses)})")
        params.extend(statuses)
    if retrying:
        where.append("attempts > 0")
    if before_id:
        where.append("id < ?")
        params.append(before_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return conn.execute(f"SELECT {_MESSAGE_COLUMNS} {_MESSAGE_FROM} WHERE m.id IN "
                        f"(SELECT id FROM messages{clause} ORDER BY id DESC LIMIT ?) ORDER BY m.id DESC",
                        (*params, limit)).fetchall()


def by_id(conn: Connection, message_id: int) -> Row | None:
    return conn.execute(f"SELECT {_MESSAGE_COLUMNS} {_MESSAGE_FROM} WHERE m.id = ?", (message_id,)).fetchone()


def message_events(conn: Connection, message_id: int, limit: int = 100) -> list[Row]:
    return conn.execute("SELECT id, kind, data, created_at FROM events WHERE message_id = ? ORDER BY id LIMIT ?",
                        (message_id, limit)).fetchall()


# -- the queue -----------------------------------------------------------------------------------

def queue(conn: Connection, *, mailbox_id: int | None, after: tuple[str, int] | None, limit: int) -> list[Row]:
    """Planned messages in the order they are due: (planned_at, id), after the given key.
    The literal status lets SQLite use the partial index messages_planned."""
    where, params = ["m.status = 'planned'"], []
    if mailbox_id is not None:
        where.append("m.mailbox_id = ?")
        params.append(mailbox_id)
    if after is not None:
        where.append("(m.planned_at > ? OR (m.planned_at = ? AND m.id > ?))")
        params.extend((after[0], after[0], after[1]))
    return conn.execute(
        "SELECT m.id, m.campaign_id, c.name AS campaign_name, c.status AS campaign_status, m.lead_id, m.to_email, "
        "m.mailbox_id, mb.email AS mailbox_email, mb.status AS mailbox_status, mb.sending_enabled, m.step, "
        "m.planned_at, m.attempts, m.last_error "
        f"{_MESSAGE_FROM} WHERE {' AND '.join(where)} ORDER BY m.planned_at, m.id LIMIT ?",
        (*params, limit)).fetchall()


def queue_by_mailbox(conn: Connection, limit: int) -> list[Row]:
    """Per mailbox with planned messages: how many, the next and last planned times, and the
    pacing state (the earliest moment its next message may go)."""
    return conn.execute(
        "SELECT q.mailbox_id, mb.email AS mailbox_email, mb.status AS mailbox_status, mb.sending_enabled, "
        "q.planned, q.next_planned_at, q.last_planned_at, p.next_allowed_at, p.last_sent_at FROM ("
        "  SELECT mailbox_id, count(*) AS planned, min(planned_at) AS next_planned_at, "
        "  max(planned_at) AS last_planned_at FROM messages WHERE status = 'planned' GROUP BY mailbox_id"
        ") q LEFT JOIN mailboxes mb ON mb.id = q.mailbox_id LEFT JOIN mailbox_pacing p ON p.mailbox_id = q.mailbox_id "
        "ORDER BY q.next_planned_at, q.mailbox_id LIMIT ?", (limit,)).fetchall()


# -- per-campaign numbers ------------------------------------------------------------------------

def message_counts(conn: Connection, campaign_id: int) -> list[Row]:
    """(step, variant, status, n) for one campaign."""
    return conn.execute("SELECT step, variant, status, count(*) AS n FROM messages WHERE campaign_id = ? "
                        "GROUP BY step, variant, status", (campaign_id,)).fetchall()


# An event names its message, or its step and variant, or (an unsubscribe through a link that
# names only lead and campaign) neither: then it counts for the last message that lead had
# been sent in that campaign when it happened.
_ATTRIBUTED_EVENTS = (
    "SELECT e.kind AS kind, coalesce(e.lead_id, -e.id) AS who, "
    "CASE WHEN e.step IS NOT NULL THEN e.step WHEN m.id IS NOT NULL THEN m.step ELSE "
    "  (SELECT x.step FROM messages x WHERE x.lead_id = e.lead_id AND x.campaign_id = e.campaign_id "
    "   AND x.status = 'sent' AND x.sent_at <= e.created_at ORDER BY x.step DESC LIMIT 1) END AS step, "
    "CASE WHEN e.step IS NOT NULL THEN e.variant WHEN m.id IS NOT NULL THEN m.variant ELSE "
    "  (SELECT x.variant FROM messages x WHERE x.lead_id = e.lead_id AND x.campaign_id = e.campaign_id "
    "   AND x.status = 'sent' AND x.sent_at <= e.created_at ORDER BY x.step DESC LIMIT 1) END AS variant "
    "FROM events e LEFT JOIN messages m ON m.id = e.message_id "
    "WHERE e.campaign_id = ? AND e.kind IN ({kinds})")


def event_counts(conn: Connection, campaign_id: int, kinds: tuple[str, ...]) -> list[Row]:
    """(kind, step, variant, n): distinct leads per kind and the step and variant it answered."""
    inner = _ATTRIBUTED_EVENTS.format(kinds=", ".join("?" for _ in kinds))
    return conn.execute(f"SELECT kind, step, variant, count(DISTINCT who) AS n FROM ({inner}) "
                        "GROUP BY kind, step, variant", (campaign_id, *kinds)).fetchall()


def event_totals(conn: Connection, campaign_id: int, kinds: tuple[str, ...]) -> dict[str, int]:
    """Distinct leads per kind over the whole campaign (a lead who replied twice counts once)."""
    marks = ", ".join("?" for _ in kinds)
    rows = conn.execute(f"SELECT kind, count(DISTINCT coalesce(lead_id, -id)) AS n FROM events "
                        f"WHERE campaign_id = ? AND kind IN ({marks}) GROUP BY kind", (campaign_id, *kinds))
    return {r["kind"]: r["n"] for r in rows}


def campaign_choices(conn: Connection, limit: int) -> list[Row]:
    """Campaign ids and names, newest first, for filter menus."""
    return conn.execute("SELECT id, name, status FROM campaigns ORDER BY id DESC LIMIT ?", (limit,)).fetchall()


# -- a person's decision on an uncertain send ----------------------------------------------------

def fill_variant(conn: Connection, message_id: int, variant: str) -> None:
    conn.execute("UPDATE messages SET variant = ? WHERE id = ? AND variant IS NULL", (variant, message_id))


def annotate(conn: Connection, message_id: int, note: str) -> None:
    conn.execute("UPDATE messages SET last_error = ? WHERE id = ?", (note, message_id))
