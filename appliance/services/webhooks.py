"""Outbound webhooks: admins manage them; other services report events with `emit()`.

Secrets are generated here (`whsec_...`), shown once in the create and rotate responses, and
stored sealed with AES-256-GCM bound to their row and column, exactly like mailbox passwords.
A rotation keeps the previous secret signing for a grace period, so receivers can switch over
without losing a delivery. Delivery itself (HTTP, retries, the SSRF guard) is webhook_delivery's.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from ..crypto import SecretBox, location
from ..db import Database, settings_repo, webhooks_repo
from ..db.database import Connection
from ..db.timefmt import from_iso, to_iso, utcnow_iso
from ..net.address_policy import AddressPolicy
from . import audit, webhook_signing
from .authz import Principal
from .errors import NotFound, ValidationError
from .webhook_input import (EVENT_TYPES, TEST_EVENT, parse_description, parse_enabled, parse_events,
                            parse_grace_hours, parse_url)

ALLOW_PRIVATE_SETTING = "webhooks.allow_private_networks"
PUBLIC_FIELDS = ("id", "url", "description", "enabled", "disabled_reason", "consecutive_failures", "failing_since",
                 "last_success_at", "last_failure_at", "created_at", "updated_at")


# -- emitting events (called by other services, inside their own transaction) ----------------

def emit(conn: Connection, event_type: str, data: dict) -> str | None:
    """Queue one event for every enabled webhook subscribed to `event_type`, in the caller's
    transaction (so the event commits, or rolls back, with the change it reports). Returns the
    event id, or None when no webhook wants this type (then nothing is written)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    webhook_ids = webhooks_repo.subscribers(conn, event_type)
    return _enqueue(conn, event_type, data, webhook_ids) if webhook_ids else None


def wanted(conn: Connection, event_type: str) -> bool:
    """Whether any enabled webhook takes this type: lets a busy path (a batch of sends) skip
    building payloads nobody receives."""
    return bool(webhooks_repo.subscribers(conn, event_type))


def _enqueue(conn: Connection, event_type: str, data: dict, webhook_ids: list[int], *,
             due_in: timedelta = timedelta()) -> str:
    if not conn.in_transaction:
        raise RuntimeError("webhook events must be queued inside the transaction of the change they report")
    event_id = "evt_" + secrets.token_hex(12)
    now = utcnow_iso()
    body = json.dumps({"id": event_id, "type": event_type, "created_at": now, "data": data},
                      separators=(",", ":"), ensure_ascii=False, default=str)
    webhooks_repo.insert_event(conn, event_id, event_type, body, now)
    webhooks_repo.insert_deliveries(conn, event_id, webhook_ids, now,
                                    to_iso(from_iso(now) + due_in) if due_in else now)
    return event_id


# The objects events carry, built the same way by every service that emits.

def lead_data(row) -> dict:
    return {name: row[name] for name in ("id", "email", "first_name", "last_name", "company", "status")}


def campaign_data(row) -> dict:
    return {"id": row["id"], "name": row["name"], "status": row["status"]}


def mailbox_data(row) -> dict:
    return {"id": row["id"], "email": row["email"], "status": row["status"], "status_reason": row["status_reason"],
            "last_error": row["last_error"], "last_error_code": row["last_error_code"]}


def message_data(row) -> dict:
    """An outbound message (a sequence step): our id, the Message-ID header, step and variant."""
    return {"id": row["id"], "message_id": row["message_id"], "step": row["step"], "variant": row["variant"],
            "subject": row["subject"], "to": row["to_email"], "status": row["status"], "sent_at": row["sent_at"]}


def email_sent_data(*, lead, campaign, mailbox, message: dict) -> dict:
    """email.sent: one shape whether the send was recorded at once or settled by reconcile."""
    return {"lead": lead_data(lead), "campaign": campaign_data(campaign), "mailbox": mailbox_data(mailbox),
            "message": message_data(message)}


# -- settings ---------------------------------------------------------------------------------

def allow_private_networks(db: Database) -> bool:
    return settings_repo.get(db.connection(), ALLOW_PRIVATE_SETTING) == "1"


def address_policy(db: Database, config) -> AddressPolicy:
    """Private networks: an admin's setting. Loopback: only the webhook_allow_loopback option."""
    return AddressPolicy(allow_private=allow_private_networks(db),
                         allow_loopback=bool(config.webhook_allow_loopback))


def get_settings(db: Database, principal: Principal) -> dict:
    principal.require("admin", "admin")
    return {"allow_private_networks": allow_private_networks(db)}


def save_settings(db: Database, principal: Principal, data: dict) -> dict:
    principal.require("admin", "admin")
    try:
        allow = parse_enabled(data.get("allow_private_networks"))
    except ValueError as exc:
        raise ValidationError({"allow_private_networks": str(exc)}) from None
    with db.transaction() as conn:
        if (settings_repo.get(conn, ALLOW_PRIVATE_SETTING) == "1") != allow:
            settings_repo.put(conn, ALLOW_PRIVATE_SETTING, "1" if allow else "0")
            audit.record(conn, principal.actor(), "webhook.settings_changed",
                         metadata={"allow_private_networks": allow})
    return {"allow_private_networks": allow}


# -- managing webhooks (admins) ------------------------------------------------------------------

def public(row, events: list[str]) -> dict:
    body = {name: row[name] for name in PUBLIC_FIELDS}
    body["enabled"] = bool(body["enabled"])
    body["events"] = events
    expires = row["previous_secret_expires_at"]
    body["previous_secret_valid_until"] = expires if expires and expires > utcnow_iso() else None
    return body


def _row(conn, webhook_id: int):
    row = webhooks_repo.by_id(conn, webhook_id)
    if row is None:
        raise NotFound("No such webhook.")
    return row


def _box(keys) -> SecretBox:
    return SecretBox(keys.secrets)


def _seal(keys, webhook_id: int, secret: str, column: str) -> bytes:
    return _box(keys).seal(secret, location("webhooks", webhook_id, column))


def redacted(url: str) -> str:
    """The URL without its query (receivers sometimes put a token there): for the audit log."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _parse(data: dict, policy: AddressPolicy, *, partial: bool) -> dict:
    fields, problems = {}, {}
    parsers = {"url": lambda v: parse_url(v, policy), "events": parse_events,
               "description": parse_description, "enabled": parse_enabled}
    for name, parse in parsers.items():
        if name not in data and (partial or name in ("description", "enabled")):
            continue
        try:
            fields[name] = parse(data.get(name))
        except ValueError as exc:
            problems[name] = str(exc)
    unknown = sorted(set(data) - set(parsers))
    if unknown:
        problems[unknown[0]] = "Unknown field." if unknown[0] != "secret" else \
            "The secret is generated by MailFlow; use rotate-secret to replace it."
    if problems:
        raise ValidationError(problems)
    return fields


def list_webhooks(db: Database, principal: Principal, *, after_id: int = 0, limit: int = 50) -> list[dict]:
    principal.require("admin", "admin")
    conn = db.connection()
    rows = webhooks_repo.page(conn, after_id=after_id, limit=limit)
    events = webhooks_repo.events_of(conn, [r["id"] for r in rows])
    return [public(r, events[r["id"]]) for r in rows]


def get(db: Database, principal: Principal, webhook_id: int) -> dict:
    principal.require("admin", "admin")
    conn = db.connection()
    body = public(_row(conn, webhook_id), webhooks_repo.events_of(conn, [webhook_id])[webhook_id])
    body["pending_deliveries"] = webhooks_repo.pending_count(conn, webhook_id)
    return body


def create(db: Database, keys, config, principal: Principal, data: dict) -> dict:
    """A new webhook; the response carries its `secret`, the only time it is ever shown."""
    principal.require("admin", "admin")
    fields = _parse(data, address_policy(db, config), partial=False)
    secret = webhook_signing.new_secret()
    now = utcnow_iso()
    with db.transaction() as conn:
        webhook_id = webhooks_repo.insert(conn, url=fields["url"], description=fields.get("description", ""),
                                          created_by=principal.user_id, now=now)
        webhooks_repo.set_secrets(conn, webhook_id, _seal(keys, webhook_id, secret, "secret"), None, None)
        webhooks_repo.set_events(conn, webhook_id, fields["events"])
        if fields.get("enabled") is False:
            webhooks_repo.update(conn, webhook_id, {"enabled": 0, "disabled_reason": "Created disabled."}, now)
        audit.record(conn, principal.actor(), "webhook.created", target_type="webhook", target_id=webhook_id,
                     metadata={"url": redacted(fields["url"]), "events": fields["events"]})
    return dict(get(db, principal, webhook_id), secret=secret)


def update(db: Database, config, principal: Principal, webhook_id: int, data: dict) -> dict:
    """Change the URL, events, description or enabled. Enabling again resumes the deliveries
    that were waiting and starts the failure count afresh."""
    principal.require("admin", "admin")
    fields = _parse(data, address_policy(db, config), partial=True)
    now = utcnow_iso()
    with db.transaction() as conn:
        row = _row(conn, webhook_id)
        events = fields.pop("events", None)
        enabled = fields.pop("enabled", None)
        changed = {k: v for k, v in fields.items() if row[k] != v}
        if events is not None and events != webhooks_repo.events_of(conn, [webhook_id])[webhook_id]:
            webhooks_repo.set_events(conn, webhook_id, events)
            changed["events"] = events
        webhooks_repo.update(conn, webhook_id, {k: v for k, v in changed.items() if k != "events"}, now)
        if changed:
            audit.record(conn, principal.actor(), "webhook.updated", target_type="webhook", target_id=webhook_id,
                         metadata={"fields": sorted(changed), **({"url": redacted(changed["url"])}
                                                                 if "url" in changed else {})})
        if enabled is not None and enabled != bool(row["enabled"]):
            _set_enabled(conn, principal, webhook_id, enabled, now)
    return get(db, principal, webhook_id)


def _set_enabled(conn, principal: Principal, webhook_id: int, enabled: bool, now: str) -> None:
    if enabled:
        webhooks_repo.update(conn, webhook_id, {"enabled": 1, "disabled_reason": None, "consecutive_failures": 0,
                                                "failing_since": None}, now)
        resumed = webhooks_repo.unpark(conn, webhook_id, now)
        audit.record(conn, principal.actor(), "webhook.enabled", target_type="webhook", target_id=webhook_id,
                     metadata={"resumed_deliveries": resumed})
    else:
        webhooks_repo.update(conn, webhook_id, {"enabled": 0, "disabled_reason": f"Disabled by {principal.email}."},
                             now)
        parked = webhooks_repo.park(conn, webhook_id)
        audit.record(conn, principal.actor(), "webhook.disabled", target_type="webhook", target_id=webhook_id,
                     metadata={"by": "person", "waiting_deliveries": parked})


def delete(db: Database, principal: Principal, webhook_id: int) -> None:
    principal.require("admin", "admin")
    with db.transaction() as conn:
        row = _row(conn, webhook_id)
        webhooks_repo.delete(conn, webhook_id)
        audit.record(conn, principal.actor(), "webhook.deleted", target_type="webhook", target_id=webhook_id,
                     metadata={"url": redacted(row["url"])})


def rotate_secret(db: Database, keys, principal: Principal, webhook_id: int, grace_hours: object = None) -> dict:
    """A new secret (returned once). The old one keeps signing for `grace_hours` (default 24,
    0 = stop at once): during that time each delivery carries both signatures."""
    principal.require("admin", "admin")
    try:
        hours = parse_grace_hours(grace_hours)
    except ValueError as exc:
        raise ValidationError({"grace_hours": str(exc)}) from None
    secret = webhook_signing.new_secret()
    now = datetime.now(timezone.utc)
    with db.transaction() as conn:
        row = _row(conn, webhook_id)
        old = _box(keys).open(row["secret_enc"], location("webhooks", webhook_id, "secret"))
        until = to_iso(now + timedelta(hours=hours)) if hours else None
        webhooks_repo.set_secrets(conn, webhook_id, _seal(keys, webhook_id, secret, "secret"),
                                  _seal(keys, webhook_id, old, "previous_secret") if hours else None, until)
        audit.record(conn, principal.actor(), "webhook.secret_rotated", target_type="webhook", target_id=webhook_id,
                     metadata={"previous_secret_valid_until": until})
    return dict(get(db, principal, webhook_id), secret=secret)


def signing_secrets(keys, row, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one while its
    grace period lasts (newest first)."""
    box = _box(keys)
    found = [box.open(row["secret_enc"], location("webhooks", row["id"], "secret"))]
    expires = row["previous_secret_expires_at"]
    if row["previous_secret_enc"] and expires and from_iso(expires) > now:
        found.append(box.open(row["previous_secret_enc"], location("webhooks", row["id"], "previous_secret")))
    return found


def queue_test_event(db: Database, principal: Principal, webhook_id: int) -> str:
    """A `webhook.test` event for this one webhook (enabled or not); delivery tries it once."""
    principal.require("admin", "admin")
    with db.transaction() as conn:
        row = _row(conn, webhook_id)
        event_id = _enqueue(conn, TEST_EVENT, {"webhook": {"id": webhook_id, "url": row["url"]},
                                               "message": "A test event sent from MailFlow.",
                                               "sent_by": principal.email}, [webhook_id],
                               # delivered by the caller right away; the scheduler only steps
                               # in if that never happened (the process stopped in between)
                               due_in=timedelta(minutes=5))
        audit.record(conn, principal.actor(), "webhook.test_sent", target_type="webhook", target_id=webhook_id,
                     metadata={"event_id": event_id})
    return event_id
