"""Webhooks, their subscriptions, the event outbox, deliveries and the attempt log."""

from __future__ import annotations

from . import columns
from .database import Connection, Row
from .grouping import grouped

# Columns a caller may write through update (the names are fixed here, never user input).
WRITABLE = ("url", "description", "enabled", "disabled_reason", "consecutive_failures", "failing_since",
            "last_success_at", "last_failure_at")
DELIVERY_WRITABLE = ("status", "attempts", "next_attempt_at", "last_attempt_at", "last_status_code", "last_error",
                     "duration_ms", "finished_at")


# -- webhooks -------------------------------------------------------------------------------

def insert(conn: Connection, *, url: str, description: str, created_by: int | None, now: str) -> int:
    return conn.execute("INSERT INTO webhooks (url, description, secret_enc, created_by, created_at, updated_at) "
                        "VALUES (?, ?, x'', ?, ?, ?)", (url, description, created_by, now, now)).lastrowid


def update(conn: Connection, webhook_id: int, fields: dict, now: str) -> None:
    columns.update(conn, "webhooks", WRITABLE, webhook_id, fields, now)


def set_secrets(conn: Connection, webhook_id: int, secret_enc: bytes, previous_enc: bytes | None,
                previous_expires_at: str | None) -> None:
    conn.execute("UPDATE webhooks SET secret_enc = ?, previous_secret_enc = ?, previous_secret_expires_at = ? "
                 "WHERE id = ?", (secret_enc, previous_enc, previous_expires_at, webhook_id))


def by_id(conn: Connection, webhook_id: int) -> Row | None:
    return conn.execute("SELECT * FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()


def by_ids(conn: Connection, webhook_ids: list[int]) -> list[Row]:
    if not webhook_ids:
        return []
    marks = ", ".join("?" for _ in webhook_ids)
    return conn.execute(f"SELECT * FROM webhooks WHERE id IN ({marks})", webhook_ids).fetchall()


def page(conn: Connection, *, after_id: int, limit: int) -> list[Row]:
    return conn.execute("SELECT * FROM webhooks WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()


def delete(conn: Connection, webhook_id: int) -> None:
    conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))


def set_events(conn: Connection, webhook_id: int, events: list[str]) -> None:
    conn.execute("DELETE FROM webhook_subscriptions WHERE webhook_id = ?", (webhook_id,))
    conn.executemany("INSERT INTO webhook_subscriptions (webhook_id, event_type) VALUES (?, ?)",
                     [(webhook_id, e) for e in events])


def events_of(conn: Connection, webhook_ids: list[int]) -> dict[int, list[str]]:
    if not webhook_ids:
        return {}
    marks = ", ".join("?" for _ in webhook_ids)
    rows = conn.execute(f"SELECT webhook_id, event_type FROM webhook_subscriptions WHERE webhook_id IN ({marks}) "
                        "ORDER BY event_type", webhook_ids)
    return grouped(webhook_ids, rows, "webhook_id", lambda r: r["event_type"])


def subscribers(conn: Connection, event_type: str) -> list[int]:
    """Enabled webhooks that want this type (by name or '*'): one indexed lookup per emit."""
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT s.webhook_id FROM webhook_subscriptions s JOIN webhooks w ON w.id = s.webhook_id "
        "WHERE s.event_type IN (?, '*') AND w.enabled = 1 ORDER BY s.webhook_id", (event_type,))]


# -- events and deliveries ------------------------------------------------------------------

def insert_event(conn: Connection, event_id: str, event_type: str, body: str, now: str) -> None:
    conn.execute("INSERT INTO webhook_events (id, type, body, created_at) VALUES (?, ?, ?, ?)",
                 (event_id, event_type, body, now))


def insert_deliveries(conn: Connection, event_id: str, webhook_ids: list[int], now: str, due_at: str) -> None:
    conn.executemany("INSERT INTO webhook_deliveries (webhook_id, event_id, status, next_attempt_at, created_at) "
                     "VALUES (?, ?, 'pending', ?, ?)", [(w, event_id, due_at, now) for w in webhook_ids])


def delivery_for(conn: Connection, event_id: str, webhook_id: int) -> Row | None:
    return conn.execute("SELECT d.*, e.type AS event_type, e.body FROM webhook_deliveries d "
                        "JOIN webhook_events e ON e.id = d.event_id WHERE d.event_id = ? AND d.webhook_id = ?",
                        (event_id, webhook_id)).fetchone()


def due(conn: Connection, now: str, limit: int) -> list[Row]:
    """Pending deliveries whose time has come, earliest first (parked ones have no time)."""
    return conn.execute(
        "SELECT d.id, d.webhook_id, d.event_id, d.attempts, e.type AS event_type, e.body, e.created_at AS event_at "
        "FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id "
        "JOIN webhooks w ON w.id = d.webhook_id "
        "WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND w.enabled = 1 ORDER BY d.next_attempt_at, d.id LIMIT ?",
        (now, limit)).fetchall()


def update_delivery(conn: Connection, delivery_id: int, fields: dict) -> None:
    names = [n for n in DELIVERY_WRITABLE if n in fields]
    if set(fields) - set(names):
        raise ValueError(f"not writable: {sorted(set(fields) - set(names))}")
    sets = ", ".join(f"{n} = ?" for n in names)
    conn.execute(f"UPDATE webhook_deliveries SET {sets} WHERE id = ?", [fields[n] for n in names] + [delivery_id])


def add_attempt(conn: Connection, *, delivery_id: int, attempt: int, at: str, status_code: int | None,
                duration_ms: int, error: str | None, excerpt: str) -> None:
    conn.execute("INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, duration_ms, error, "
                 "response_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (delivery_id, attempt, at, status_code, duration_ms, error, excerpt))


def park(conn: Connection, webhook_id: int) -> int:
    """A disabled webhook's pending deliveries wait without a time (the due index skips them)."""
    return conn.execute("UPDATE webhook_deliveries SET next_attempt_at = NULL "
                        "WHERE webhook_id = ? AND status = 'pending'", (webhook_id,)).rowcount


def unpark(conn: Connection, webhook_id: int, now: str) -> int:
    return conn.execute("UPDATE webhook_deliveries SET next_attempt_at = ? "
                        "WHERE webhook_id = ? AND status = 'pending' AND next_attempt_at IS NULL",
                        (now, webhook_id)).rowcount


def deliveries(conn: Connection, webhook_id: int, *, status: str | None, before_id: int | None,
               limit: int) -> list[Row]:
    """The delivery log of one webhook, newest first."""
    return conn.execute(
        "SELECT d.*, e.type AS event_type FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id "
        "WHERE d.webhook_id = ? AND (? IS NULL OR d.status = ?) AND (? IS NULL OR d.id < ?) "
        "ORDER BY d.id DESC LIMIT ?", (webhook_id, status, status, before_id, before_id, limit)).fetchall()


def attempts_of(conn: Connection, delivery_ids: list[int]) -> dict[int, list[Row]]:
    if not delivery_ids:
        return {}
    marks = ", ".join("?" for _ in delivery_ids)
    rows = conn.execute(f"SELECT * FROM webhook_attempts WHERE delivery_id IN ({marks}) "
                        "ORDER BY delivery_id, attempt", delivery_ids)
    return grouped(delivery_ids, rows, "delivery_id")


def pending_count(conn: Connection, webhook_id: int) -> int:
    return conn.execute("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = ? AND status = 'pending'",
                        (webhook_id,)).fetchone()[0]


def purge_finished(conn: Connection, before: str) -> int:
    """Delete deliveries finished before `before` (their attempts go with them), then events
    no delivery refers to any more."""
    removed = conn.execute("DELETE FROM webhook_deliveries WHERE status != 'pending' AND finished_at < ?",
                           (before,)).rowcount
    conn.execute("DELETE FROM webhook_events WHERE created_at < ? AND NOT EXISTS "
                 "(SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)", (before,))
    return removed
