"""Sending one mailbox's due messages: claim, render, SMTP, record.

The claim is one transaction that re-checks, at that moment and for each message, everything
that could forbid the send (campaign paused, enrolment stopped by a reply, lead unsubscribed or
bounced, suppression, mailbox paused, its gap and daily cap, the window, the recipient domain's
spread) and moves the message planned → sending with a conditional UPDATE. A mailbox without a
gap between sends may claim a small batch in that one transaction; each message of the batch
is checked exactly as a lone one would be. The SMTP conversation happens outside any
transaction; its outcome is recorded in another one: 250 → sent (and the enrolment moves on);
4xx or a dropped connection → planned again later; 5xx → failed, reason kept. A message stays
`sending` from its claim until its outcome commits, so a crash in between leaves it `sending`,
which reconcile.py settles from the Sent folder at start-up.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .. import templating
from ..db import Database, messages_repo
from ..db.timefmt import to_iso
from ..logs import event
from ..mail import message as mime
from ..mail.smtp import SmtpRejected, SmtpSession
from ..mail.tls import TransportError
from . import compose, links, sender_identity, webhooks
from .claiming import Claimed, ClaimRun, Policy

log = logging.getLogger("mailflow.sender")
BACKOFF = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)  # seconds, by attempt
MAX_ATTEMPTS = len(BACKOFF) + 1

# Claimed and Policy live in claiming.py; callers know them as sender.Claimed and sender.Policy
__all__ = ["BACKOFF", "MAX_ATTEMPTS", "Claimed", "Policy", "Sent", "claim", "claim_batch", "compose_message",
           "compose_or_fail", "record_and_claim", "record_sent", "record_sent_many", "record_retry", "record_failed",
           "release", "send_one", "transmit"]


@dataclass
class Sent:
    """A message the server accepted (250), waiting to be recorded."""
    claimed: Claimed
    subject: str
    variant: str
    at: datetime


def _now() -> datetime:
    return datetime.now(timezone.utc)


def claim(db: Database, mailbox_id: int, policy: Policy, now: datetime | None = None) -> Claimed | None:
    """The mailbox's next message, moved to `sending`; None when nothing may go now."""
    taken = claim_batch(db, mailbox_id, policy, 1, now=now)
    return taken[0] if taken else None


def claim_batch(db: Database, mailbox_id: int, policy: Policy, limit: int,
                now: datetime | None = None) -> list[Claimed]:
    """Up to `limit` of the mailbox's due messages moved to `sending` in one transaction, each
    checked as `claim` checks a lone one. A mailbox with a gap between sends gets one at most:
    its next message may only be claimed once this one's send is recorded."""
    with db.transaction(durable=True) as conn:  # SMTP follows: a claim must outlive a power cut
        return ClaimRun(db, conn, mailbox_id, policy, now or _now()).take(limit)


def record_and_claim(db: Database, accepted: list[Sent], mailbox_id: int, policy: Policy, limit: int,
                     rng: random.Random, now: datetime | None = None) -> list[Claimed]:
    """The worker's database round in one commit: record what the server accepted, then claim
    up to `limit` more (the claim sees those just recorded as sent)."""
    with db.transaction(durable=bool(limit)):
        record_sent_many(db, accepted, rng)
        return claim_batch(db, mailbox_id, policy, limit, now=now) if limit else []


def compose_message(db: Database, keys, claimed: Claimed, policy: Policy, now: datetime) -> tuple[bytes, str, str]:
    """(raw message, subject, variant) as of now; raises MissingValue or HeaderInjection."""
    m, campaign, lead, mailbox = claimed.message, claimed.campaign, claimed.lead, claimed.mailbox
    url = links.unsubscribe_url(policy.base_url, keys.tokens, lead["id"], campaign["id"])
    thread_subject = claimed.thread[0]["subject"] if claimed.thread else None
    identity = claimed.identity if claimed.identity is not None else sender_identity.get(db)
    rendered = compose.render_step(campaign=campaign, steps=claimed.steps, position=m["step"], lead=lead,
                                   mailbox=mailbox, identity=identity, unsubscribe_url=url,
                                   thread_subject=thread_subject)
    references = [t["message_id"] for t in claimed.thread]
    outbound = mime.Outbound(
        from_email=mailbox["email"], from_name=mailbox["display_name"], to_email=m["to_email"],
        subject=rendered.subject, text=rendered.text, html=rendered.html, message_id=m["message_id"], date=now,
        reply_to=mailbox["reply_to"], in_reply_to=references[-1] if references else None, references=references,
        unsubscribe_mailto=links.unsubscribe_address(mailbox["email"]),
        unsubscribe_url=url)
    return mime.build(outbound), rendered.subject, rendered.variant


def record_sent(db: Database, claimed: Claimed, *, subject: str, variant: str, now: datetime,
                rng: random.Random) -> None:
    record_sent_many(db, [Sent(claimed, subject, variant, now)], rng)


def record_sent_many(db: Database, sent: list[Sent], rng: random.Random) -> None:
    """Accepted messages → sent, in one transaction: each enrolment moves on, its lead counts as
    contacted, a `sent` event, and the mailbox's next allowed send after its last one + a gap."""
    if not sent:
        return
    # reconciled: the message is `sending` again and looked up in Sent
    with db.transaction(durable=False) as conn:
        rows = [(s.claimed.message["id"], to_iso(s.at), s.subject, s.variant) for s in sent]
        moved = messages_repo.mark_sent(conn, rows)  # one statement for the batch
        done = [(s, at) for s, (_, at, _, _) in zip(sent, rows) if s.claimed.message["id"] in moved]
        delays: dict[int, list[int]] = {}
        moves, events = [], []
        for s, at in done:
            m = s.claimed.message
            if m["campaign_id"] not in delays:
                delays[m["campaign_id"]] = messages_repo.step_delays(conn, m["campaign_id"])
            following, steps = m["step"] + 1, delays[m["campaign_id"]]
            due = to_iso(s.at + timedelta(minutes=steps[following])) if following < len(steps) else None
            moves.append((m["enrollment_id"], following, due))  # no due time: the sequence is complete
            events.append(("sent", m["campaign_id"], m["lead_id"], m["id"], m["step"], s.variant,
                           {"mailbox_id": s.claimed.mailbox["id"]}, at))
        messages_repo.advance_enrollments(conn, moves)
        messages_repo.mark_contacted_many(conn, [(s.claimed.message["lead_id"], at) for s, at in done])
        messages_repo.add_events(conn, events)
        if webhooks.wanted(conn, "email.sent"):
            for s, at in done:
                c = s.claimed
                message = {**dict(c.message), "status": "sent", "sent_at": at, "subject": s.subject,
                           "variant": s.variant}
                webhooks.emit(conn, "email.sent", webhooks.email_sent_data(lead=c.lead, campaign=c.campaign,
                                                                           mailbox=c.mailbox, message=message))
        last = {s.claimed.mailbox["id"]: s for s, _ in done}
        for s in last.values():
            mailbox = s.claimed.mailbox
            gap = rng.uniform(mailbox["min_gap_seconds"], mailbox["max_gap_seconds"])
            messages_repo.set_pacing(conn, mailbox["id"], to_iso(s.at), to_iso(s.at + timedelta(seconds=gap)))


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


def release(db: Database, claimed: list[Claimed]) -> None:
    """Claimed messages that never reached SMTP (a stop, a broken connection) go back to planned."""
    if claimed:
        with db.transaction() as conn:
            messages_repo.release(conn, [c.message["id"] for c in claimed])


def compose_or_fail(db: Database, keys, claimed: Claimed, policy: Policy,
                    now: datetime) -> tuple[bytes, str, str] | None:
    """compose_message, or None after recording why this lead's message cannot be built."""
    try:
        return compose_message(db, keys, claimed, policy, now)
    except templating.MissingValue as exc:
        record_failed(db, claimed, f"the lead has no {exc.name} and the template gives no fallback", None, "template")
    except mime.HeaderInjection as exc:
        record_failed(db, claimed, str(exc), None, "invalid_header")
    return None


def transmit(db: Database, claimed: Claimed, session: SmtpSession, raw: bytes, now: datetime,
             while_waiting=None) -> bool:
    """The SMTP conversation for one message. True: accepted (record it as sent). False: refused
    for good, recorded as failed. Temporary trouble is recorded for a retry, then re-raised so the
    caller drops the connection; SmtpAmbiguous propagates untouched (the caller settles it).
    `while_waiting`: see SmtpSession.send."""
    try:
        session.send(claimed.mailbox["email"], [claimed.message["to_email"]], raw, while_waiting)
    except SmtpRejected as exc:
        if exc.permanent:
            record_failed(db, claimed, exc.message, exc.code, "rejected")
            return False
        record_retry(db, claimed, exc.message, now, exc.code)
        raise
    except (TransportError, OSError) as exc:
        record_retry(db, claimed, getattr(exc, "message", str(exc)), now)
        raise
    return True


def send_one(db: Database, keys, claimed: Claimed, session: SmtpSession, policy: Policy,
             rng: random.Random) -> str:
    """Compose and send a claimed message; record the outcome. Returns the new status."""
    now = _now()
    composed = compose_or_fail(db, keys, claimed, policy, now)
    if composed is None:
        return "failed"
    raw, subject, variant = composed
    claimed.raw = raw
    if not transmit(db, claimed, session, raw, now):
        return "failed"
    record_sent(db, claimed, subject=subject, variant=variant, now=_now(), rng=rng)
    event(log, "message.sent", message=claimed.message["id"], mailbox=claimed.mailbox["id"])
    return "sent"
