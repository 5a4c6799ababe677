"""Connected mailboxes: connect, edit, check live, watch health, read credentials (audited).

App Passwords are sealed with AES-256-GCM bound to the row and column; they leave this
module only as the argument of a live SMTP/IMAP connection, and every decryption is audited
(a person's: one row each; the scheduler's: one row per mailbox per day plus a counter).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

from ..crypto import SecretBox, location
from ..db import Database, mailboxes_repo, messages_repo
from ..db.timefmt import utcnow_iso
from ..mail import imap, smtp
from ..mail.tls import TlsPolicy, TransportError
from . import audit, webhooks
from .audit import Actor
from .authz import Principal
from .errors import Conflict, NotFound, ValidationError
from .mailbox_input import parse_mailbox

AUTH_FAILURES_BEFORE_PAUSE = 3
PUBLIC_FIELDS = ("id", "email", "display_name", "provider", "smtp_host", "smtp_port", "smtp_security",
                 "imap_host", "imap_port", "imap_security", "username", "reply_to", "signature",
                 "daily_limit", "min_gap_seconds", "max_gap_seconds", "ramp_start", "ramp_step",
                 "ramp_started_on", "sending_enabled", "save_sent_copy", "sent_folder", "junk_folder",
                 "status", "status_reason", "last_error", "last_error_code", "last_error_at",
                 "consecutive_failures", "last_checked_at", "created_at", "updated_at")
CONNECTION_FIELDS = {"smtp_host", "smtp_port", "smtp_security", "imap_host", "imap_port", "imap_security",
                     "username", "tls_ca_pem", "tls_pin_sha256"}


@dataclass(frozen=True)
class Credentials:
    """What a live connection needs. Never stored, logged or returned by the API."""

    smtp: smtp.Endpoint
    imap: smtp.Endpoint
    username: str
    password: str
    helo: str


def public(row, tags: list[str]) -> dict:
    body = {name: row[name] for name in PUBLIC_FIELDS}
    body["sending_enabled"] = bool(body["sending_enabled"])
    body["save_sent_copy"] = bool(body["save_sent_copy"])
    body["tags"] = tags
    body["effective_daily_limit"] = daily_cap(body, datetime.now(timezone.utc).date())
    body["tls"] = ({"mode": "pin", "pinned_sha256": row["tls_pin_sha256"]} if row["tls_pin_sha256"] else
                   {"mode": "ca"} if row["tls_ca_pem"] else {"mode": "system"})
    return body


def _box(keys) -> SecretBox:
    return SecretBox(keys.secrets)


def daily_cap(mailbox: dict, today: date) -> int:
    """Today's sending cap: the daily limit, or less while a slow ramp is under way
    (ramp_start on the first day, plus ramp_step each day after, up to the limit)."""
    if mailbox.get("ramp_start") and mailbox.get("ramp_step") and mailbox.get("ramp_started_on"):
        days = max(0, (today - date.fromisoformat(mailbox["ramp_started_on"])).days)
        return min(mailbox["daily_limit"], mailbox["ramp_start"] + days * mailbox["ramp_step"])
    return mailbox["daily_limit"]


def _row(conn, mailbox_id: int):
    row = mailboxes_repo.by_id(conn, mailbox_id)
    if row is None:
        raise NotFound("No such mailbox.")
    return row


def get(db: Database, mailbox_id: int) -> dict:
    conn = db.connection()
    row = _row(conn, mailbox_id)
    return public(row, mailboxes_repo.tags_of(conn, [mailbox_id])[mailbox_id])


def search(db: Database, *, status: str | None = None, tag: str | None = None, q: str | None = None,
           after_id: int = 0, limit: int = 50) -> list[dict]:
    if status and status not in ("active", "paused", "error"):
        raise ValidationError({"status": "Choose active, paused or error."})
    conn = db.connection()
    rows = mailboxes_repo.search(conn, status=status, tag=(tag or "").strip().lower() or None,
                                 q=(q or "").strip() or None, after_id=after_id, limit=limit)
    tags = mailboxes_repo.tags_of(conn, [r["id"] for r in rows])
    return [public(r, tags[r["id"]]) for r in rows]


def overview(db: Database) -> dict:
    conn = db.connection()
    return {"by_status": mailboxes_repo.count_by_status(conn), "tags": mailboxes_repo.all_tags(conn)}


def create(db: Database, keys, principal: Principal, data: dict) -> dict:
    """Save a new mailbox (secrets sealed). The live check is a separate step (check())."""
    principal.require("admin", "admin")
    fields, password = parse_mailbox(data)
    tags = fields.pop("tags", [])
    now = utcnow_iso()
    with db.transaction() as conn:
        if mailboxes_repo.by_email(conn, fields["email"]):
            raise Conflict(f"The mailbox {fields['email']} is already connected.", code="mailbox_exists")
        mailbox_id = mailboxes_repo.insert(conn, fields, now)
        mailboxes_repo.set_password(conn, mailbox_id,
                                    _box(keys).seal(password, location("mailboxes", mailbox_id, "password")))
        mailboxes_repo.set_tags(conn, mailbox_id, tags)
        audit.record(conn, principal.actor(), "mailbox.connected", target_type="mailbox", target_id=mailbox_id,
                     metadata={"email": fields["email"], "smtp": f"{fields['smtp_host']}:{fields['smtp_port']}",
                               "imap": f"{fields['imap_host']}:{fields['imap_port']}"})
    return get(db, mailbox_id)


def update(db: Database, keys, principal: Principal, mailbox_id: int, data: dict) -> tuple[dict, bool]:
    """Partial update; a blank password keeps the stored one. Returns (mailbox, whether the
    connection settings changed, so the caller re-runs the live check)."""
    principal.require("admin", "admin")
    now = utcnow_iso()
    with db.transaction() as conn:
        existing = dict(_row(conn, mailbox_id))
        fields, password = parse_mailbox(data, existing=existing)
        tags = fields.pop("tags", None)
        if "email" in fields and fields["email"] != existing["email"] and mailboxes_repo.by_email(conn, fields["email"]):
            raise Conflict(f"The mailbox {fields['email']} is already connected.", code="mailbox_exists")
        changed = sorted(k for k, v in fields.items() if existing.get(k) != v)
        mailboxes_repo.update(conn, mailbox_id, {k: fields[k] for k in changed}, now)
        if password is not None:
            mailboxes_repo.set_password(conn, mailbox_id,
                                        _box(keys).seal(password, location("mailboxes", mailbox_id, "password")))
            changed.append("password")
        if tags is not None:
            mailboxes_repo.set_tags(conn, mailbox_id, tags)
            changed.append("tags")
        if changed:
            audit.record(conn, principal.actor(), "mailbox.updated", target_type="mailbox", target_id=mailbox_id,
                         metadata={"fields": changed})
    reconnect = bool(set(changed) & (CONNECTION_FIELDS | {"password"}))
    return get(db, mailbox_id), reconnect


def delete(db: Database, principal: Principal, mailbox_id: int) -> None:
    principal.require("admin", "admin")
    with db.transaction() as conn:
        row = _row(conn, mailbox_id)
        replanned = messages_repo.release_mailbox(conn, mailbox_id, utcnow_iso())
        mailboxes_repo.delete(conn, mailbox_id)
        audit.record(conn, principal.actor(), "mailbox.deleted", target_type="mailbox", target_id=mailbox_id,
                     metadata={"email": row["email"], "replanned_messages": replanned})


def credentials(db: Database, keys, mailbox_id: int, actor: Actor, purpose: str) -> Credentials:
    """Decrypt a mailbox's App Password for a live connection, auditing the read: every read by
    a person or API key gets its own row; the scheduler's reads are counted per day and
    audited once per mailbox per day, so thousands of mailboxes do not flood the log."""
    now = datetime.now(timezone.utc)
    with db.transaction() as conn:
        row = _row(conn, mailbox_id)
        password = _box(keys).open(row["password_enc"], location("mailboxes", mailbox_id, "password"))
        if actor.type == "system":
            reads = mailboxes_repo.count_credential_read(conn, mailbox_id, now.date().isoformat(), utcnow_iso())
            if reads == 1:
                audit.record(conn, actor, "credential.read", target_type="mailbox", target_id=mailbox_id,
                             metadata={"purpose": purpose, "coalesced": "daily"})
        else:
            audit.record(conn, actor, "credential.read", target_type="mailbox", target_id=mailbox_id,
                         metadata={"purpose": purpose})
    policy = TlsPolicy(ca_pem=row["tls_ca_pem"], pinned_sha256=row["tls_pin_sha256"])
    return Credentials(
        smtp=smtp.Endpoint(row["smtp_host"], row["smtp_port"], row["smtp_security"], policy),
        imap=smtp.Endpoint(row["imap_host"], row["imap_port"], row["imap_security"], policy),
        username=row["username"], password=password, helo=row["email"].rpartition("@")[2])


def live_check(creds: Credentials) -> dict:
    """SMTP (connect, TLS, AUTH) and IMAP (connect, TLS, LOGIN, folders), each reported."""
    result: dict = {}
    try:
        smtp.check(creds.smtp, creds.username, creds.password, creds.helo)
        result["smtp"] = {"ok": True, "error": None, "code": None}
    except TransportError as exc:
        result["smtp"] = {"ok": False, "error": exc.message, "code": exc.code}
    try:
        folders = imap.check(creds.imap, creds.username, creds.password)
        problem = None if folders.sent else "No Sent folder was found (special-use \\Sent or a usual name)."
        result["imap"] = {"ok": True, "error": None, "code": None, "warning": problem,
                          "folders": {"inbox": folders.inbox, "sent": folders.sent, "junk": folders.junk}}
    except TransportError as exc:
        result["imap"] = {"ok": False, "error": exc.message, "code": exc.code}
    return result


def check(db: Database, keys, mailbox_id: int, actor: Actor) -> dict:
    """Run the live check and record the mailbox's health from it."""
    creds = credentials(db, keys, mailbox_id, actor, "live_check")
    result = live_check(creds)
    record_check(db, mailbox_id, result, actor)
    return result


def record_check(db: Database, mailbox_id: int, result: dict, actor: Actor) -> None:
    now = utcnow_iso()
    ok = result["smtp"]["ok"] and result["imap"]["ok"]
    with db.transaction() as conn:
        row = _row(conn, mailbox_id)
        fields: dict = {"last_checked_at": now}
        if ok:
            folders = result["imap"]["folders"]
            fields.update(consecutive_failures=0, last_error=None, last_error_code=None,
                          sent_folder=row["sent_folder"] or folders["sent"],
                          junk_folder=row["junk_folder"] or folders["junk"])
            if row["status"] == "error":
                fields.update(status="active", status_reason=None)
        else:
            failed = result["smtp"] if not result["smtp"]["ok"] else result["imap"]
            failures = row["consecutive_failures"] + 1
            fields.update(consecutive_failures=failures, last_error=failed["error"], last_error_code=failed["code"],
                          last_error_at=now)
            if failed["code"] == "auth_failed" and failures >= AUTH_FAILURES_BEFORE_PAUSE:
                fields.update(status="paused", status_reason=f"Paused after {failures} failed sign-ins: "
                                                              f"{failed['error']} Fix the App Password, then resume.")
            elif row["status"] == "active":
                fields.update(status="error", status_reason=failed["error"])
        mailboxes_repo.update(conn, mailbox_id, fields, now)
        if fields.get("status") in ("error", "paused") and fields["status"] != row["status"]:
            webhooks.emit(conn, "mailbox.error", {"mailbox": webhooks.mailbox_data({**dict(row), **fields}),
                                                  "previous_status": row["status"]})
        audit.record(conn, actor, "mailbox.checked", target_type="mailbox", target_id=mailbox_id,
                     metadata={"ok": ok, "smtp": result["smtp"]["code"], "imap": result["imap"]["code"]})


def record_transport_failure(db: Database, mailbox_id: int, code: str, message: str) -> None:
    """A send could not connect or sign in: the same health rules as a failed live check
    (repeated authentication failures pause the mailbox, with the reason shown)."""
    failed = {"ok": False, "error": message, "code": code}
    imap_ok = {"ok": True, "error": None, "code": None, "folders": {"sent": None, "junk": None}}
    record_check(db, mailbox_id, {"smtp": failed, "imap": imap_ok}, Actor.system("scheduler"))


def recheck_errored(db: Database, keys, limit: int = 20) -> int:
    """Mailboxes in `error` (a host was down, a TLS hiccup) get a fresh live check now and
    then, so a passing problem heals by itself. Paused ones wait for a person."""
    healed = 0
    for mailbox_id in mailboxes_repo.ids_in_status(db.connection(), "error", limit):
        result = check(db, keys, mailbox_id, Actor.system("scheduler"))
        healed += result["smtp"]["ok"] and result["imap"]["ok"]
    return healed


def pause(db: Database, principal: Principal, mailbox_id: int, reason: str = "Paused by a person.") -> dict:
    principal.require("admin", "admin")
    with db.transaction() as conn:
        _row(conn, mailbox_id)
        mailboxes_repo.update(conn, mailbox_id, {"status": "paused", "status_reason": reason[:300]}, utcnow_iso())
        audit.record(conn, principal.actor(), "mailbox.paused", target_type="mailbox", target_id=mailbox_id)
    return get(db, mailbox_id)


def resume(db: Database, keys, principal: Principal, mailbox_id: int) -> tuple[dict, dict]:
    """Resume only after a successful live check; returns (mailbox, check result)."""
    principal.require("admin", "admin")
    result = check(db, keys, mailbox_id, principal.actor())
    if result["smtp"]["ok"] and result["imap"]["ok"]:
        with db.transaction() as conn:
            mailboxes_repo.update(conn, mailbox_id, {"status": "active", "status_reason": None}, utcnow_iso())
            audit.record(conn, principal.actor(), "mailbox.resumed", target_type="mailbox", target_id=mailbox_id)
    return get(db, mailbox_id), result


def recent_activity(db: Database, mailbox_id: int, limit: int = 20) -> list[dict]:
    return audit.search(db, target=("mailbox", str(mailbox_id)), limit=limit)


def credential_reads(db: Database, mailbox_id: int) -> list[dict]:
    return [dict(r) for r in mailboxes_repo.credential_reads(db.connection(), mailbox_id)]
