"""Setting the scene for mailbox sync tests: mailboxes on the real mail stack, a campaign that
really sent its first step to leads hosted on the stack, and the leads' replies."""

from __future__ import annotations

import time
from email.utils import formatdate, make_msgid

from appliance.services import planner
from appliance.services.engine import SendingEngine
from appliance.services.sender import Policy

from .campaign_setup import add_leads, launched_campaign

LEAD_SINK = "synclead@example.test"  # leads are its plus-addresses: mail to them lands on the stack
# Two steps, so that after the first one the sequence is still running and a reply can stop it.
TWO_STEPS = [{"delay_minutes": 0, "variants": [{"subject": "Hello {{first_name}}", "body": "Hi {{first_name}}."}]},
             {"delay_minutes": 60, "variants": [{"subject": "", "body": "Following up, {{first_name}}."}]}]


def sync_users(count: int) -> dict[str, str]:
    users = {f"sync{i}@example.test": f"sync{i}-app-password" for i in range(count)}
    users[LEAD_SINK] = "synclead-app-password"
    return users


def send_due(app, timeout: float = 30) -> None:
    """Plan what is due and let the real sending engine send it over SMTP."""
    planner.plan_due(app.db)
    engine = SendingEngine(app, threads=2, policy=Policy(domain_spread_seconds=0, base_url="https://mf.example"))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            pending = app.db.connection().execute(
                "SELECT count(*) FROM messages WHERE status IN ('planned', 'sending')").fetchone()[0]
            if not pending:
                return
            engine.tick()
            time.sleep(0.05)
        raise AssertionError("the sending engine did not send everything in time")
    finally:
        engine.stop(10)


def sent_campaign(app, box: dict, count: int, *, tag: str, steps=None, **settings) -> list[dict]:
    """A launched campaign from `box` whose first step really went to `count` leads; per lead
    its id, address, enrolment and the Message-ID we sent."""
    local, domain = LEAD_SINK.split("@")
    emails = [f"{local}+{tag}{i}@{domain}" for i in range(count)]
    lead_ids = add_leads(app, emails)
    launched_campaign(app, [box["id"]], lead_ids, steps=steps or TWO_STEPS, **settings)
    send_due(app)
    rows = app.db.connection().execute(
        "SELECT m.lead_id, m.message_id, m.enrollment_id, l.email FROM messages m JOIN leads l ON l.id = m.lead_id "
        "WHERE m.status = 'sent' AND m.mailbox_id = ? ORDER BY m.lead_id", (box["id"],)).fetchall()
    assert len(rows) == count, f"{len(rows)} of {count} sent"
    return [dict(r) for r in rows]


def reply(lead: dict, to: str, *, body: str = "Sounds good, tell me more.", padding: int = 0) -> bytes:
    """The lead's answer to our message, threaded by In-Reply-To; `padding` adds quoted text."""
    quoted = "".join(f"> line {i} of what you wrote before, kept in the reply\r\n" for i in range(padding // 50))
    return (f"From: Lead <{lead['email']}>\r\nTo: {to}\r\nSubject: Re: Hello\r\n"
            f"Date: {formatdate(localtime=True)}\r\nMessage-ID: {make_msgid(domain='lead.example')}\r\n"
            f"In-Reply-To: {lead['message_id']}\r\nReferences: {lead['message_id']}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\r\n{quoted}").encode()


def oversized_reply(lead: dict, to: str, *, body: str, attachment_bytes: int) -> bytes:
    """A reply whose first part is text and whose second is a large attachment."""
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\r\n"
    attachment = line * (attachment_bytes // len(line) + 1)
    head = (f"From: Lead <{lead['email']}>\r\nTo: {to}\r\nSubject: Re: Hello\r\n"
            f"Date: {formatdate(localtime=True)}\r\nMessage-ID: {make_msgid(domain='lead.example')}\r\n"
            f"In-Reply-To: {lead['message_id']}\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="cut-here"\r\n\r\n'
            f"--cut-here\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
            f"--cut-here\r\nContent-Type: application/pdf; name=deck.pdf\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode()
    return head + attachment + b"--cut-here--\r\n"
