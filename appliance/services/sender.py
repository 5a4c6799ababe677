"""Sending one mailbox's due messages: claim, render, SMTP, record.

The claim is one transaction that re-checks, at that moment, everything that could forbid
the send (campaign paused, enrolment stopped by a reply, lead unsubscribed or bounced,
suppression, mailbox paused, its gap and daily cap, the window, the recipient domain's
spread) and moves the message planned → sending with a conditional UPDATE. The SMTP
conversation happens outside any transaction; its outcome is recorded in a second one:
250 → sent (and the enrolment moves on); 4xx or a dropped connection → planned again later;
5xx → failed, reason kept. A crash between the server's 250 and that second commit leaves
the message `sending`, which reconcile.py settles from the Sent folder at start-up.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .. import templating
from ..db import Database, campaigns_repo, mailboxes_repo, messages_repo
from ..db.timefmt import from_iso, to_iso
from ..logs import event
from ..mail import message as mime
from ..mail.smtp import SmtpRejected, SmtpSession
from ..mail.tls import TransportError
from . import compose, links, schedule_window as windows, sender_identity, suppressions
from .mailboxes import daily_cap

log = logging.getLogger("mailflow.sender")
BACKOFF = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)  # seconds, by attempt
MAX_ATTEMPTS = len(BACKOFF) + 1
BLOCKING_LEAD_STATUSES = ("unsubscribed", "bounced")


@dataclass
class Claimed:
    message: dict
    campaign: object
    steps: list[dict]
    lead: object
    mailbox: object
    thread: list
    raw: bytes | None = None  # the bytes that went out, once composed


@dataclass(frozen=True)
class Policy:
    domain_spread_seconds: int = 120
    base_url: str = "http://127.0.0.1:8025"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def claim(db: Database, mailbox_id: int, policy: Policy, now: datetime | None = None) -> Claimed | None:
    """The mailbox's next message, moved to `sending`; None when nothing may go now."""
    now = now or _now()
    with db.transaction() as conn:
        while True:
            m = messages_repo.next_planned(conn, mailbox_id, to_iso(now))
            if m is None:
                return None
            if m["enrollment_status"] != "active":
                messages_repo.set_status(conn, m["id"], "cancelled", expect="planned",
                                         last_error="the lead's sequence stopped before this step")
                continue
            if m["lead_status"] in BLOCKING_LEAD_STATUSES or suppressions.suppression_for(conn, m["to_email"]):
                reason = m["lead_status"] if m["lead_status"] in BLOCKING_LEAD_STATUSES else "suppressed"
                messages_repo.set_status(conn, m["id"], "cancelled", expect="planned", last_error=reason)
                messages_repo.stop_enrollment(conn, m["enrollment_id"], reason)
                continue
            mailbox = mailboxes_repo.by_id(conn, mailbox_id)
            if mailbox is None or mailbox["status"] != "active" or not mailbox["sending_enabled"]:
                # looked at again within a minute: a resumed mailbox starts again promptly
                messages_repo.defer(conn, m["id"], to_iso(now + timedelta(minutes=1)), "mailbox not sending")
                return None
            campaign = campaigns_repo.by_id(conn, m["campaign_id"])
            schedule = json.loads(campaign["schedule"])
            lead = campaigns_repo.leads_by_ids(conn, [m["lead_id"]])[0]
            tz = windows.window_zone(schedule, lead["timezone"], bool(campaign["use_lead_timezone"]))
            gap_until = messages_repo.pacing(conn, mailbox_id)
            if gap_until and from_iso(gap_until) > now:
                messages_repo.defer(conn, m["id"], gap_until)
                return None
            cap_tz = windows.zone(schedule.get("timezone"))
            sent_today = messages_repo.mailbox_sent_since(conn, mailbox_id, to_iso(windows.day_start(now, cap_tz)))
            if sent_today >= daily_cap(dict(mailbox), now.astimezone(cap_tz).date()):
                messages_repo.defer(conn, m["id"], to_iso(windows.next_day_start(now, cap_tz)), "daily cap reached")
                return None
            opens = windows.next_open(schedule, now, tz)
            if opens > now:
                messages_repo.defer(conn, m["id"], to_iso(opens))
                continue
            if policy.domain_spread_seconds:
                last = messages_repo.last_send_to_domain(conn, m["to_domain"])
                if last and from_iso(last) + timedelta(seconds=policy.domain_spread_seconds) > now:
                    messages_repo.defer(conn, m["id"], to_iso(from_iso(last) + timedelta(
                        seconds=policy.domain_spread_seconds)))
                    continue
            if not messages_repo.set_status(conn, m["id"], "sending", expect="planned", claimed_at=to_iso(now)):
                continue
            return Claimed(message=dict(m), campaign=campaign, steps=campaigns_repo.steps(conn, campaign["id"]),
                           lead=lead, mailbox=mailbox, thread=messages_repo.thread_of(conn, m["enrollment_id"]))


def compose_message(db: Database, keys, claimed: Claimed, policy: Policy, now: datetime) -> tuple[bytes, str, str]:
    """(raw message, subject, variant) as of now; raises MissingValue or HeaderInjection."""
    m, campaign, lead, mailbox = claimed.message, claimed.campaign, claimed.lead, claimed.mailbox
    url = links.unsubscribe_url(policy.base_url, keys.tokens, lead["id"], campaign["id"])
    thread_subject = claimed.thread[0]["subject"] if claimed.thread else None
    rendered = compose.render_step(campaign=campaign, steps=claimed.steps, position=m["step"], lead=lead,
                                   mailbox=mailbox, identity=sender_identity.get(db), unsubscribe_url=url,
                                   thread_subject=thread_subject)
    domain = mailbox["email"].rpartition("@")[2]
    references = [t["message_id"] for t in claimed.thread]
    outbound = mime.Outbound(
        from_email=mailbox["email"], from_name=mailbox["display_name"], to_email=m["to_email"],
        subject=rendered.subject, text=rendered.text, html=rendered.html, message_id=m["message_id"], date=now,
        reply_to=mailbox["reply_to"], in_reply_to=references[-1] if references else None, references=references,
        unsubscribe_mailto=f"{mailbox['email'].partition('@')[0]}+unsubscribe@{domain}",
        unsubscribe_url=url)
    return mime.build(outbound), rendered.subject, rendered.variant


def record_sent(db: Database, claimed: Claimed, *, subject: str, variant: str, now: datetime,
                rng: random.Random) -> None:
    m, mailbox = claimed.message, claimed.mailbox
    with db.transaction() as conn:
        if not messages_repo.set_status(conn, m["id"], "sent", expect="sending", sent_at=to_iso(now),
                                        subject=subject, variant=variant):
            return
        _advance(conn, claimed.campaign["id"], m, now)
        gap = rng.uniform(mailbox["min_gap_seconds"], mailbox["max_gap_seconds"])
        messages_repo.set_pacing(conn, mailbox["id"], to_iso(now), to_iso(now + timedelta(seconds=gap)))
        messages_repo.mark_contacted(conn, m["lead_id"], to_iso(now))
        messages_repo.add_event(conn, "sent", campaign_id=m["campaign_id"], lead_id=m["lead_id"], message_id=m["id"],
                                step=m["step"], variant=variant, data={"mailbox_id": mailbox["id"]}, now=to_iso(now))


def _advance(conn, campaign_id: int, m: dict, now: datetime) -> None:
    delays = messages_repo.step_delays(conn, campaign_id)
    following = m["step"] + 1
    due = to_iso(now + timedelta(minutes=delays[following])) if following < len(delays) else None
    messages_repo.advance_enrollment(conn, m["enrollment_id"], following, due)


def record_retry(db: Database, claimed: Claimed, error: str, now: datetime, code: int | None = None) -> None:
    """Temporary trouble: planned again after a backoff, or failed after the last attempt."""
    m = claimed.message
    attempts = m["attempts"] + 1
    with db.transaction() as conn:
        if attempts >= MAX_ATTEMPTS:
            messages_repo.set_status(conn, m["id"], "failed", expect="sending", last_error=error, smtp_code=code)
            messages_repo.stop_enrollment(conn, m["enrollment_id"], "send_failed")
            return
        later = now + timedelta(seconds=BACKOFF[attempts - 1])
        messages_repo.set_status(conn, m["id"], "planned", expect="sending", planned_at=to_iso(later),
                                 last_error=error, smtp_code=code)


def record_failed(db: Database, claimed: Claimed, error: str, code: int | None, stop_reason: str) -> None:
    m = claimed.message
    with db.transaction() as conn:
        messages_repo.set_status(conn, m["id"], "failed", expect="sending", last_error=error, smtp_code=code)
        messages_repo.stop_enrollment(conn, m["enrollment_id"], stop_reason)
        messages_repo.add_event(conn, "send_failed", campaign_id=m["campaign_id"], lead_id=m["lead_id"],
                                message_id=m["id"], step=m["step"], variant=None,
                                data={"error": error, "smtp_code": code}, now=to_iso(_now()))


def send_one(db: Database, keys, claimed: Claimed, session: SmtpSession, policy: Policy,
             rng: random.Random) -> str:
    """Compose and send a claimed message; record the outcome. Returns the new status."""
    now = _now()
    try:
        raw, subject, variant = compose_message(db, keys, claimed, policy, now)
    except templating.MissingValue as exc:
        record_failed(db, claimed, f"the lead has no {exc.name} and the template gives no fallback", None, "template")
        return "failed"
    except mime.HeaderInjection as exc:
        record_failed(db, claimed, str(exc), None, "invalid_header")
        return "failed"
    claimed.raw = raw
    try:
        session.send(claimed.mailbox["email"], [claimed.message["to_email"]], raw)
    except SmtpRejected as exc:
        if exc.permanent:
            record_failed(db, claimed, exc.message, exc.code, "rejected")
            return "failed"
        record_retry(db, claimed, exc.message, now, exc.code)
        raise
    except (TransportError, OSError) as exc:
        record_retry(db, claimed, getattr(exc, "message", str(exc)), now)
        raise
    record_sent(db, claimed, subject=subject, variant=variant, now=_now(), rng=rng)
    event(log, "message.sent", message=claimed.message["id"], mailbox=claimed.mailbox["id"])
    return "sent"
