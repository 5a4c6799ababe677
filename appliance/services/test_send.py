"""Test send: one step of a campaign to any address, through a chosen mailbox, marked [Test].

With a lead, the message is rendered exactly as that lead would get it; without one, every
variable shows its own name in brackets ("[first_name]") so the layout can be checked.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .. import templating
from ..db import Database, campaigns_repo
from ..mail import message, smtp
from ..mail.tls import TransportError
from . import audit, compose, links, mailboxes, sender_identity
from .authz import Principal
from .errors import NotFound, ServiceError, ValidationError
from .ids import is_id
from .users import email_problem, normalize_email


class TestSendFailed(ServiceError):
    status = 502
    code = "test_send_failed"


def _placeholder_lead(to: str, steps: list[dict]) -> dict:
    names = {v.name for s in steps for var in s["variants"] for part in ("subject", "body")
             for v in templating.variables(templating.parse(var[part]))}
    custom = {name: f"[{name}]" for name in names if name not in compose.LEAD_FIELDS}
    lead = {name: f"[{name}]" for name in compose.LEAD_FIELDS}
    return dict(lead, id=0, email=to, custom=custom)


def send(db: Database, keys, principal: Principal, campaign_id: int, body: dict, base_url: str) -> dict:
    principal.require("member", "write")
    to = normalize_email(str(body.get("to") or ""))
    problems = {}
    if p := email_problem(to):
        problems["to"] = p
    mailbox_id, position = body.get("mailbox_id"), body.get("step", 0)
    if not is_id(mailbox_id):
        problems["mailbox_id"] = "Choose the mailbox to send through."
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        problems["step"] = "Expected a step number (0 = the first email)."
    if problems:
        raise ValidationError(problems)
    conn = db.connection()
    campaign = campaigns_repo.by_id(conn, campaign_id)
    if campaign is None:
        raise NotFound("No such campaign.")
    steps = campaigns_repo.steps(conn, campaign_id)
    if position >= len(steps):
        raise ValidationError({"step": f"The campaign has {len(steps)} step(s)."})
    variant = next((v for v in steps[position]["variants"] if v["label"] == body.get("variant")), None)
    if body.get("variant") and variant is None:
        raise ValidationError({"variant": "No such variant in this step."})
    if body.get("lead_id") is not None:
        found = campaigns_repo.leads_by_ids(conn, [body["lead_id"]]) if is_id(body["lead_id"]) else []
        if not found:
            raise ValidationError({"lead_id": "No such lead."})
        lead = found[0]
    else:
        lead = _placeholder_lead(to, steps)
    mailbox = mailboxes.get(db, mailbox_id)
    identity = sender_identity.get(db)
    url = links.unsubscribe_url(base_url, keys.tokens, lead["id"], campaign_id)
    try:
        rendered = compose.render_step(campaign=campaign, steps=steps, position=position, lead=lead,
                                       mailbox=mailbox, identity=identity, unsubscribe_url=url, variant=variant)
    except templating.MissingValue as exc:
        raise ValidationError({"lead_id": f"This lead has no {exc.name} and the template gives no fallback."})
    creds = mailboxes.credentials(db, keys, mailbox_id, principal.actor(), "test_send")
    domain = mailbox["email"].rpartition("@")[2]
    outbound = message.Outbound(
        from_email=mailbox["email"], from_name=mailbox["display_name"], to_email=to,
        subject="[Test] " + rendered.subject, text=rendered.text, html=rendered.html,
        message_id=message.new_message_id(domain), date=datetime.now(timezone.utc),
        reply_to=mailbox["reply_to"], unsubscribe_url=url)
    try:
        with smtp.SmtpSession(creds.smtp, creds.username, creds.password, creds.helo) as session:
            session.send(mailbox["email"], [to], message.build(outbound))
    except (TransportError, smtp.SmtpRejected) as exc:
        raise TestSendFailed(f"The test email was not sent: {getattr(exc, 'message', exc)}") from None
    audit.record_now(db, principal.actor(), "campaign.test_sent", target_type="campaign", target_id=campaign_id,
                     metadata={"to": to, "mailbox_id": mailbox_id, "step": position, "variant": rendered.variant})
    return {"sent": True, "to": to, "message_id": outbound.message_id, "subject": outbound.subject,
            "variant": rendered.variant}
