"""Responding to a lead from the inbox: a plain-text reply through the mailbox the lead wrote to,
in the same thread, recorded in the conversation.

- To: the sender of the message answered; From: the mailbox, with its display name (and its
  Reply-To when set); the mailbox's signature appended after the standard "-- " line, then the
  lead's message quoted.
- Subject "Re: <theirs>", without stacking prefixes; In-Reply-To their Message-ID; References
  the conversation's Message-IDs between this mailbox and this lead, oldest first (the last
  MAX_REFERENCES); a new Message-ID on the mailbox's domain.
- Refused before anything is sent: an address on the suppression list (409), an empty body
  (422), a bounce or complaint (422: there is nobody to answer), a deleted mailbox (409).
  Every header value comes from stored data and is checked for line breaks; the person
  writes only the body, which cannot reach a header.
- An SMTP failure answers 502 with the transport's code and the text written, so nothing
  typed is lost. A sent reply is stored as an inbox row (direction out, kind sent), audited
  (reply.sent), and appended to the Sent folder when the mailbox is set to save a copy.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

from ..db import Database, inbox_repo
from ..db.timefmt import to_iso
from ..logs import event
from ..mail import message as mime
from ..mail.imap import ImapSession, validate_folder_name
from ..mail.smtp import SmtpAmbiguous, SmtpRejected, SmtpSession
from ..mail.tls import TransportError
from . import audit, inbox, mailboxes
from .authz import Principal
from .errors import Conflict, NotFound, ServiceError, Unprocessable, ValidationError
from .suppressions import suppression_for
from .users import email_problem

log = logging.getLogger("mailflow.inbox")

MAX_BODY = 100_000
MAX_QUOTE = 20_000
MAX_REFERENCES = 20
ANSWERABLE = ("reply", "auto_reply", "unsubscribe", "other")
_RE_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|vs|antw|odp|res|r)\s*(?:\[\d{1,3}\])?\s*:\s*)+", re.I)
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}>")


class SendFailed(ServiceError):
    """The mail server refused the reply or could not be reached."""

    status = 502
    code = "smtp_failed"


def reply_subject(subject: str) -> str:
    """"Re: " once, whatever prefixes (Re:, AW:, SV: ...) the subject already carries."""
    bare = _RE_PREFIX.sub("", " ".join((subject or "").split()))
    return f"Re: {bare}" if bare else "Re:"


def _body(data: dict) -> str:
    body = data.get("body")
    if body is not None and not isinstance(body, str):
        raise ValidationError({"body": "Expected the reply's text."})
    if data.get("html") not in (None, False):
        raise ValidationError({"html": "Replies are sent as plain text; leave html out or false."})
    body = (body or "").replace("\r\n", "\n").replace("\r", "\n")
    if len(body) > MAX_BODY:
        raise ValidationError({"body": f"Use at most {MAX_BODY} characters."})
    if not body.strip():
        raise Unprocessable("Write something to send.", code="empty_body", details={"fields": {"body": "Required."}})
    return body.rstrip()


def _quote(row) -> str:
    text = (row["body_text"] or "")[:MAX_QUOTE].rstrip()
    if not text:
        return ""
    who = row["from_name"] or row["from_address"]
    when = (row["received_at"] or "").replace("T", " ").replace("Z", " UTC")
    quoted = "\n".join(("> " + line) if line else ">" for line in text.split("\n"))
    return f"\n\nOn {when}, {who} wrote:\n{quoted}"


def compose_text(body: str, signature: str, row) -> str:
    text = body
    if signature.strip():
        text += "\n\n-- \n" + signature.strip()
    return text + _quote(row)


def _references(conn, row) -> list[str]:
    ids = inbox_repo.thread_header_ids(conn, row["lead_id"], row["mailbox_id"], MAX_REFERENCES) \
        if row["lead_id"] is not None else []
    if row["header_message_id"]:
        ids.append(row["header_message_id"])
    clean = [i for i in dict.fromkeys(ids) if i and _MESSAGE_ID.fullmatch(i)]
    if row["header_message_id"] in clean:  # the message answered comes last
        clean.remove(row["header_message_id"])
        clean.append(row["header_message_id"])
    return clean[-MAX_REFERENCES:]


def _target(conn, inbox_id: int):
    row = inbox_repo.by_id(conn, inbox_id)
    if row is None:
        raise NotFound("No such message.")
    if row["direction"] != "in":
        raise Unprocessable("Respond to a message the lead sent, not to a reply written here.",
                            code="cannot_respond")
    if row["kind"] not in ANSWERABLE:
        raise Unprocessable(f"This is a {inbox.classification(row['kind'], {})}: there is nobody to answer.",
                            code="cannot_respond")
    to = (row["from_address"] or "").strip().lower()
    if email_problem(to) or mime.has_line_break(to):
        raise Unprocessable("The message has no usable sender address to answer.", code="cannot_respond")
    if row["mailbox_id"] is None:
        raise Conflict("The mailbox this message came to was deleted; there is nothing to answer from.",
                       code="mailbox_gone")
    if (hit := suppression_for(conn, to)) is not None:
        raise Conflict(f"{to} is on the suppression list ({hit['reason']}); nothing was sent.", code="suppressed",
                       details={"suppression": hit})
    return row, to


def _smtp_failure(exc: Exception, body: str) -> SendFailed:
    if isinstance(exc, SmtpRejected):
        detail = {"transport_code": "rejected", "smtp_code": exc.code, "smtp_message": exc.message}
        text = f"The mail server refused the reply: {exc.code} {exc.message}"
    elif isinstance(exc, SmtpAmbiguous):
        detail = {"transport_code": "ambiguous", "smtp_code": None, "smtp_message": exc.message}
        text = f"The connection broke while sending; the reply may or may not have gone: {exc.message}"
    else:
        detail = {"transport_code": getattr(exc, "code", "connection_failed"), "smtp_code": None,
                  "smtp_message": getattr(exc, "message", str(exc))}
        text = f"Could not send through the mailbox: {detail['smtp_message']}"
    return SendFailed(text, details={**detail, "body": body})


def respond(db: Database, keys, principal: Principal, inbox_id: int, data: dict) -> dict:
    """Send a reply to an inbound message. Returns the stored reply (an inbox row) with
    `sent_copy`: "saved", "failed" or "not_needed"."""
    principal.require("member", "write")
    body = _body(data)
    conn = db.connection()
    row, to = _target(conn, inbox_id)
    mailbox = inbox_repo.mailbox(conn, row["mailbox_id"])
    if mailbox is None:
        raise Conflict("The mailbox this message came to was deleted.", code="mailbox_gone")
    now = datetime.now(timezone.utc)
    domain = mailbox["email"].rpartition("@")[2]
    references = _references(conn, row)
    text = compose_text(body, mailbox["signature"] or "", row)
    outbound = mime.Outbound(
        from_email=mailbox["email"], from_name=mailbox["display_name"] or "", to_email=to,
        subject=reply_subject(row["subject"]), text=text, message_id=mime.new_message_id(domain), date=now,
        reply_to=mailbox["reply_to"] or None, in_reply_to=references[-1] if references else None,
        references=references)
    try:
        raw = mime.build(outbound)
    except mime.HeaderInjection as exc:
        raise ValidationError({"body": f"The reply cannot be built: {exc}."}) from None
    creds = mailboxes.credentials(db, keys, mailbox["id"], principal.actor(), "respond")
    try:
        with SmtpSession(creds.smtp, creds.username, creds.password, creds.helo) as session:
            session.send(mailbox["email"], [to], raw)
    except (SmtpRejected, SmtpAmbiguous, TransportError, OSError) as exc:
        event(log, "inbox.respond_failed", level=logging.WARNING, inbox_id=inbox_id, mailbox=mailbox["id"],
              error=f"{type(exc).__name__}: {exc}"[:200])
        raise _smtp_failure(exc, body) from None
    reply_id = _record(db, principal, row, mailbox, outbound, body, text, to_iso(now))
    sent_copy = _save_sent_copy(creds, mailbox, raw) if mailbox["save_sent_copy"] else "not_needed"
    reply = inbox.detail(inbox_repo.by_id(db.connection(), reply_id))
    reply["sent_copy"] = sent_copy
    return reply


def _record(db: Database, principal: Principal, row, mailbox, outbound: mime.Outbound, body: str, text: str,
            now: str) -> int:
    with db.transaction() as conn:
        reply_id = inbox_repo.insert_out(conn, {
            "direction": "out", "dedup_key": f"out:{outbound.message_id}", "mailbox_id": mailbox["id"],
            "kind": "sent", "header_message_id": outbound.message_id, "in_reply_to": row["header_message_id"],
            "lead_id": row["lead_id"], "campaign_id": row["campaign_id"], "message_id": row["message_id"],
            "from_address": mailbox["email"], "from_name": mailbox["display_name"] or "", "to_address":
            outbound.to_email, "subject": outbound.subject, "snippet": " ".join(body.split())[:200],
            "body_text": text, "truncated": 0, "details": "{}", "unread": 0, "sent_by": principal.user_id,
            "received_at": now, "created_at": now})
        inbox_repo.set_unread(conn, row["id"], False)
        audit.record(conn, principal.actor(), "reply.sent", target_type="inbox_message", target_id=reply_id,
                     metadata={"in_reply_to": row["id"], "mailbox_id": mailbox["id"], "lead_id": row["lead_id"],
                               "to": outbound.to_email, "message_id": outbound.message_id})
    return reply_id


def _save_sent_copy(creds: mailboxes.Credentials, mailbox, raw: bytes) -> str:
    """APPEND the reply to the mailbox's Sent folder (providers that do not file submitted
    mail themselves). A failure is reported, not fatal: the reply went."""
    try:
        with ImapSession(creds.imap, creds.username, creds.password) as session:
            folder = mailbox["sent_folder"] or session.folders().sent
            if not folder:
                return "failed"
            session.client.append(validate_folder_name(folder), raw, flags=[b"\\Seen"])
        return "saved"
    except Exception as exc:  # noqa: BLE001 (the reply is sent; a missing copy is logged)
        event(log, "inbox.sent_copy_failed", level=logging.WARNING, mailbox=mailbox["id"],
              error=f"{type(exc).__name__}: {exc}"[:200])
        return "failed"

