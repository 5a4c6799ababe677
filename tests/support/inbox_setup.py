"""Building an inbox for the inbox tests: mailboxes, leads, a campaign whose steps were sent, and
inbound mail that goes through the real path (appliance.services.inbound.ingest, which
classifies the raw message and links it to the lead and the step it answers).

No tests here; test_inbox.py, test_inbox_respond.py and test_inbox_browser.py use it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from appliance.db.timefmt import to_iso
from appliance.services import inbound, mailboxes

from .campaign_setup import add_leads, admin_principal, launched_campaign

HOURS_AGO = 48  # the story starts two days ago, so every Date header is plausible


def at(hours: float) -> datetime:
    """A moment `hours` after the start of the story."""
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=HOURS_AGO) + timedelta(hours=hours)


def offline_mailbox(app, email: str, **over) -> int:
    """A mailbox row whose servers are never reached (for tests that send nothing)."""
    body = {"email": email, "display_name": email.split("@")[0].title(), "smtp_host": "127.0.0.1", "smtp_port": 9,
            "smtp_security": "starttls", "imap_host": "127.0.0.1", "imap_port": 9, "imap_security": "ssl",
            "password": "not-used-here", "daily_limit": 100}
    body.update(over)
    return mailboxes.create(app.db, app.keys, admin_principal(app), body)["id"]


def campaign_with_leads(app, mailbox_ids: list[int], emails: list[str], name: str = "Test") -> tuple[int, list[int]]:
    lead_ids = add_leads(app, emails)
    campaign = launched_campaign(app, mailbox_ids, lead_ids, launch=False, name=name)
    return campaign["id"], lead_ids


def record_sent_step(app, campaign_id: int, lead_id: int, mailbox_id: int, step: int, when: datetime,
                     subject: str = "Hello") -> str:
    """Our step as the sending engine records it once the server took it: status sent, with its
    Message-ID (what a reply's In-Reply-To names)."""
    conn = app.db.connection()
    enrollment = conn.execute("SELECT id FROM enrollments WHERE campaign_id = ? AND lead_id = ?",
                              (campaign_id, lead_id)).fetchone()[0]
    email = conn.execute("SELECT email FROM leads WHERE id = ?", (lead_id,)).fetchone()[0]
    sender = conn.execute("SELECT email FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()[0]
    message_id = make_msgid(domain=sender.rpartition("@")[2])
    with app.db.transaction() as tx:
        tx.execute("INSERT INTO messages (campaign_id, enrollment_id, lead_id, mailbox_id, step, status, message_id, "
                   "to_email, to_domain, subject, planned_at, claimed_at, sent_at, created_at) "
                   "VALUES (?, ?, ?, ?, ?, 'sent', ?, ?, ?, ?, ?, ?, ?, ?)",
                   (campaign_id, enrollment, lead_id, mailbox_id, step, message_id, email, email.rpartition("@")[2],
                    subject, to_iso(when), to_iso(when), to_iso(when), to_iso(when)))
    return message_id


def eml(*, sender: str, to: str, subject: str, when: datetime, text: str | None = "Thanks, tell me more.",
        html: str | None = None, in_reply_to: str | None = None, sender_name: str = "",
        headers: dict | None = None, message_id: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{sender_name} <{sender}>" if sender_name else sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = message_id or make_msgid(domain=sender.rpartition("@")[2])
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for name, value in (headers or {}).items():
        msg[name] = value
    if text is not None:
        msg.set_content(text)
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def ingest(app, mailbox_id: int, raw: bytes, uid: int | None = None) -> int:
    inbox_id = inbound.ingest(app.db, mailbox_id, folder="INBOX", uid=uid, raw=raw)
    assert inbox_id is not None, "the message was not stored: it concerns no lead"
    return inbox_id


def reply_from(app, mailbox_id: int, step_message_id: str, lead_email: str, mailbox_email: str, when: datetime,
               **kw) -> int:
    """The lead answers our step (In-Reply-To its Message-ID)."""
    kw.setdefault("subject", "Re: Hello")
    return ingest(app, mailbox_id, eml(sender=lead_email, to=mailbox_email, when=when, in_reply_to=step_message_id,
                                       **kw))


def auto_reply_from(app, mailbox_id: int, step_message_id: str, lead_email: str, mailbox_email: str,
                    when: datetime) -> int:
    return ingest(app, mailbox_id, eml(sender=lead_email, to=mailbox_email, when=when, in_reply_to=step_message_id,
                                       subject="Out of office: Hello", text="I am out of the office until Monday.",
                                       headers={"Auto-Submitted": "auto-replied"}))


def bounce_for(app, mailbox_id: int, step_message_id: str, lead_email: str, mailbox_email: str,
               when: datetime) -> int:
    """An RFC 3464 delivery status notification for our step: 5.1.1, unknown user."""
    boundary = "report-boundary-1"
    raw = f"""From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>
To: <{mailbox_email}>
Subject: Returned mail: see transcript for details
Date: {format_datetime(when)}
Message-ID: {make_msgid(domain="mx.example.net")}
Auto-Submitted: auto-generated (failure)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain

Your message could not be delivered to {lead_email}: 550 5.1.1 User unknown.

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {lead_email}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{lead_email}>... User unknown

--{boundary}
Content-Type: text/rfc822-headers

From: <{mailbox_email}>
To: {lead_email}
Subject: Hello
Message-ID: {step_message_id}

--{boundary}--
"""
    return ingest(app, mailbox_id, raw.replace("\n", "\r\n").encode())
