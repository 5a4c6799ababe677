"""What an inbound message does: classified, matched to the lead and the step it answers, stored
for the unified inbox, and its effects applied, all in one transaction.

- reply: the lead's sequence in that campaign stops (and the whole company's when the campaign
  says so), the lead becomes `replied`, an event is recorded;
- auto-reply: an event; the sequence stops only when the campaign says so;
- hard bounce: the address is suppressed and every sequence of the lead stops;
- soft bounce: counted; the lead's next steps wait a day; after SOFT_BOUNCE_LIMIT soft bounces
  the address is suppressed like a hard bounce;
- complaint and unsubscribe: the address is suppressed and every sequence stops at once.

Idempotent: the row's dedup key (mailbox + Message-ID, or a hash of the header block when there
is none) is inserted first, and effects run only when that insert was new. The same message
read twice (a resync after a UIDVALIDITY change, a dropped connection, INBOX and Junk both
holding a copy) changes nothing the second time. Mail that concerns no lead is not stored.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from email.utils import parseaddr, parsedate_to_datetime

from ..db import Database, campaigns_repo, inbound_repo, leads_repo, mailboxes_repo, messages_repo
from ..db.timefmt import to_iso
from ..mail import bounces
from ..mail.classify import Classification, inspect
from ..mail.mime_view import View, html_to_text
from . import links, suppressions, webhooks
from .audit import Actor

SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_PAUSE = timedelta(days=1)
SNIPPET_LENGTH = 200
# Company-wide stops never apply to shared mail providers: one reply from a gmail.com address
# must not stop every other gmail.com lead.
SHARED_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com", "ymail.com",
    "icloud.com", "me.com", "mac.com", "aol.com", "gmx.de", "gmx.net", "gmx.com", "web.de", "t-online.de",
    "proton.me", "protonmail.com", "zoho.com", "yandex.ru", "mail.ru", "orange.fr", "free.fr", "laposte.net",
    "libero.it", "virgilio.it", "qq.com", "163.com", "fastmail.com"})
_ACTOR = Actor.system("mailbox sync")


def ingest(db: Database, mailbox_id: int, *, folder: str, uid: int | None, raw: bytes,
           truncated: bool = False) -> int | None:
    """Classify one fetched message, store it and apply its effects in one transaction. Returns
    the new inbox_messages id; None when it was seen before, is our own mail, or concerns no lead."""
    mailbox = mailboxes_repo.by_id(db.connection(), mailbox_id)
    if mailbox is None:
        return None
    found, view = inspect(raw, unsubscribe_addresses=frozenset({links.unsubscribe_address(mailbox["email"])}))
    header_id = next(iter(bounces.message_ids(view.first("message-id"))), None)
    now = datetime.now(timezone.utc)
    with db.transaction() as conn:  # durable: a reply's stop must outlive a power cut, like a claim
        if header_id and inbound_repo.is_ours(conn, header_id):
            return None
        match = _match(conn, mailbox_id, found)
        kind = found.kind
        if kind == "other" and match is not None and not found.delayed and found.from_address \
                and match["via"] == "address":
            kind = "reply"  # the lead wrote to us afresh instead of answering: still a human reply
        lead = inbound_repo.lead(conn, match["lead_id"]) if match else None
        if lead is None and kind not in ("unsubscribe", "complaint"):
            return None
        row = _row(mailbox_id, folder, uid, raw, view, found, kind, header_id, match, truncated, now)
        inbox_id = inbound_repo.insert_if_new(conn, row)
        if inbox_id is None:
            return None
        _apply(conn, kind, found, lead, match, inbox_id, to_iso(now))
        if lead is not None:
            _notify(conn, kind, found, lead, match, {**row, "id": inbox_id})
        return inbox_id


def _match(conn, mailbox_id: int, found: Classification) -> dict | None:
    """The step this mail answers: by Message-ID first, then by the lead's address."""
    ours = inbound_repo.our_message(conn, list(found.message_ids))
    if ours is not None and ours["lead_id"] is not None:
        return {**dict(ours), "via": "message-id"}
    address = found.recipient if found.kind in ("bounce", "complaint") else found.from_address
    if address:
        sent = inbound_repo.last_sent_to(conn, mailbox_id, address.lower())
        if sent is not None:
            return {**dict(sent), "via": "address"}
        if found.kind in ("bounce", "complaint"):
            lead = inbound_repo.lead_by_email(conn, address.lower())
            if lead is not None:
                return {"lead_id": lead["id"], "campaign_id": None, "message_id": None, "enrollment_id": None,
                        "step": None, "variant": None, "via": "recipient"}
    return None


def _apply(conn, kind: str, found: Classification, lead, match: dict | None, inbox_id: int, now: str) -> None:
    campaign_id = match["campaign_id"] if match else None
    rules = inbound_repo.campaign_rules(conn, campaign_id) if campaign_id else None

    def event(name: str, **data) -> None:
        if lead is not None:
            messages_repo.add_event(conn, name, campaign_id=campaign_id, lead_id=lead["id"],
                                    message_id=match["message_id"], step=match["step"], variant=match["variant"],
                                    data={"inbox_id": inbox_id, **data}, now=now)

    if kind == "reply":
        inbound_repo.set_lead_status_from(conn, lead["id"], "replied", ("new", "contacted"), now)
        if rules is not None and rules["stop_on_reply"]:
            inbound_repo.stop_enrollment(conn, campaign_id, lead["id"], "replied")
            if rules["stop_company_on_reply"] and lead["email_domain"] not in SHARED_DOMAINS:
                inbound_repo.stop_company(conn, campaign_id, lead["email_domain"], "company replied")
        event("replied")
    elif kind == "auto_reply":
        if rules is not None and rules["stop_on_auto_reply"]:
            inbound_repo.stop_enrollment(conn, campaign_id, lead["id"], "auto-reply")
        event("auto_replied", evidence=found.evidence)
    elif kind == "bounce":
        detail = {"status": found.status, "hard": found.hard, "reason": (found.reason or "")[:300]}
        if found.hard is False and inbound_repo.count_soft_bounce(conn, lead["id"], now) < SOFT_BOUNCE_LIMIT:
            until = datetime.fromisoformat(now.replace("Z", "+00:00")) + SOFT_BOUNCE_PAUSE
            inbound_repo.postpone_lead(conn, lead["id"], to_iso(until))
            event("soft_bounced", **detail)
            return
        _suppress(conn, lead["email"], "bounced", f"bounce {found.status or ''}".strip())
        inbound_repo.set_lead_status_from(conn, lead["id"], "bounced", ("new", "contacted", "replied"), now)
        inbound_repo.stop_lead(conn, lead["id"], "bounced")
        event("bounced", **detail)
    elif kind in ("complaint", "unsubscribe"):
        address = lead["email"] if lead is not None else (found.recipient if kind == "complaint"
                                                          else found.from_address)
        if not address:
            return
        _suppress(conn, address, "complained" if kind == "complaint" else "unsubscribed",
                  "spam complaint (feedback report)" if kind == "complaint" else "unsubscribe request by mail")
        if lead is not None:
            inbound_repo.set_lead_status_from(conn, lead["id"], "unsubscribed", _ALL_BUT_UNSUBSCRIBED, now)
            inbound_repo.stop_lead(conn, lead["id"], "complained" if kind == "complaint" else "unsubscribed")
            event("complained" if kind == "complaint" else "unsubscribed", via="mail")


def _notify(conn, kind: str, found: Classification, lead, match: dict, row: dict) -> None:
    """Webhook events, in the same transaction: what came in, and the lead's new status."""
    current = leads_repo.by_id(conn, lead["id"])
    campaign = campaigns_repo.by_id(conn, match["campaign_id"]) if match["campaign_id"] else None
    message = messages_repo.by_id(conn, match["message_id"]) if match["message_id"] else None
    mailbox = mailboxes_repo.by_id(conn, row["mailbox_id"])
    data = {"lead": webhooks.lead_data(current), "campaign": webhooks.campaign_data(campaign) if campaign else None,
            "mailbox": webhooks.mailbox_data(mailbox) if mailbox else None,
            "message": webhooks.message_data(message) if message else None}
    inbound_mail = {"id": row["id"], "from": row["from_address"], "subject": row["subject"],
                    "snippet": row["snippet"], "message_id": row["header_message_id"],
                    "received_at": row["received_at"]}
    if kind == "reply":
        webhooks.emit(conn, "reply.received", {**data, "reply": inbound_mail})
    elif kind == "auto_reply":
        webhooks.emit(conn, "auto_reply.received", {**data, "reply": inbound_mail})
    elif kind == "bounce":
        webhooks.emit(conn, "email.bounced", {**data, "bounce": {
            "status": found.status, "hard": found.hard is not False, "reason": (found.reason or "")[:300],
            "recipient": found.recipient, "soft_bounces": current["soft_bounces"]}})
    elif kind in ("complaint", "unsubscribe"):
        webhooks.emit(conn, "lead.unsubscribed", {**data, "via": "complaint" if kind == "complaint" else "mail"})
    if current["status"] != lead["status"]:
        webhooks.emit(conn, "lead.status_changed", {"lead": webhooks.lead_data(current),
                                                    "previous_status": lead["status"], "by": "mailbox sync"})


_ALL_BUT_UNSUBSCRIBED = ("new", "contacted", "replied", "interested", "not_interested", "meeting_booked", "won",
                         "lost", "bounced")


def _suppress(conn, address: str, reason: str, source: str) -> None:
    try:
        suppressions.suppress(conn, _ACTOR, address, reason=reason, source=source)
    except ValueError:  # not a usable address (a hostile From:): nothing to suppress
        pass


def _row(mailbox_id: int, folder: str, uid: int | None, raw: bytes, view: View, found: Classification, kind: str,
         header_id: str | None, match: dict | None, truncated: bool, now: datetime) -> dict:
    text = view.plain[0] if view.plain else (html_to_text(view.html[0]) if view.html else "")
    details = found.to_dict()
    details.pop("subject", None)
    return {
        "direction": "in", "dedup_key": _dedup_key(mailbox_id, header_id, raw), "mailbox_id": mailbox_id,
        "folder": folder, "uid": uid, "kind": kind, "header_message_id": header_id,
        "lead_id": match["lead_id"] if match else None, "campaign_id": match["campaign_id"] if match else None,
        "message_id": match["message_id"] if match else None, "from_address": found.from_address,
        "from_name": parseaddr(view.first("from"))[0][:200], "to_address": next(iter(bounces.addresses(
            view.first("to"))), None), "subject": found.subject[:1000], "snippet": _snippet(text), "body_text": text,
        "body_html": view.html[0] if view.html else None, "truncated": int(truncated), "details": json.dumps(details),
        "unread": int(kind == "reply"), "received_at": to_iso(_sent_at(view.first("date"), now)),
        "created_at": to_iso(now)}


def _dedup_key(mailbox_id: int, header_id: str | None, raw: bytes) -> str:
    if header_id:
        basis = f"{mailbox_id}\0id\0{header_id}".encode()
    else:  # no Message-ID: the header block is what stays the same between two reads
        basis = f"{mailbox_id}\0headers\0".encode() + bytes(raw[:64 * 1024]).split(b"\r\n\r\n")[0].split(b"\n\n")[0]
    return hashlib.sha256(basis).hexdigest()


def _snippet(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith(">")]
    return " ".join(" ".join(lines).split())[:SNIPPET_LENGTH]


def _sent_at(header: str, now: datetime) -> datetime:
    """The Date header, when it is plausible; else the time we read it."""
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return now
    if when is None or when.tzinfo is None or not (now - timedelta(days=3650) < when < now + timedelta(days=1)):
        return now
    return when.astimezone(timezone.utc)
