"""The claim transaction: which of a mailbox's due messages may go now, checked one by one.

Everything that could forbid a send is looked at inside the transaction that moves the message
planned → sending: the enrolment (stopped by a reply?), the lead (unsubscribed, bounced?), the
suppression list, the campaign (paused? the join leaves paused campaigns out), the mailbox
(paused, in error?), its gap and daily cap in the campaign's time zone, the window, and the
recipient domain's spread. What a batch shares (the mailbox row, its pacing and count of the
day, each campaign and its steps, the sender identity) is read once per transaction; what is
per message (suppression, the lead, the enrolment, the domain's last send) is looked up for
every message of the batch, in one query per kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ..db import Database, campaigns_repo, mailboxes_repo, messages_repo
from ..db.database import Connection
from ..db.timefmt import from_iso, to_iso
from . import schedule_window as windows, sender_identity, suppressions
from .mailboxes import daily_cap

BLOCKING_LEAD_STATUSES = ("unsubscribed", "bounced")
MAILBOX_RETRY = timedelta(minutes=1)  # a resumed mailbox starts again promptly


@dataclass(frozen=True)
class Policy:
    domain_spread_seconds: int = 120
    base_url: str = "http://127.0.0.1:8025"


@dataclass
class Claimed:
    message: dict
    campaign: object
    steps: list[dict]
    lead: object
    mailbox: object
    thread: list
    identity: dict | None = None  # the sender identity as of the claim (read once per batch)
    raw: bytes | None = None  # the bytes that went out, once composed


def usable(mailbox) -> bool:
    return mailbox is not None and mailbox["status"] == "active" and bool(mailbox["sending_enabled"])


def paced(mailbox) -> bool:
    """A gap between sends: the next claim must see this send's recorded time."""
    return mailbox["max_gap_seconds"] > 0


class ClaimRun:
    """One claim transaction for one mailbox."""

    def __init__(self, db: Database, conn: Connection, mailbox_id: int, policy: Policy, now: datetime):
        self.db, self.conn, self.mailbox_id, self.policy = db, conn, mailbox_id, policy
        self.now, self.now_iso = now, to_iso(now)
        self.mailbox = mailboxes_repo.by_id(conn, mailbox_id)
        self.campaigns: dict[int, tuple[object, dict]] = {}
        self.opens: dict[tuple, datetime] = {}
        self.taken: list = []
        self.sent_today: dict[str, int] = {}  # by the time zone whose day counts
        self.caps: dict[date, int] = {}
        self.flying: int | None = None  # this mailbox's messages claimed earlier, not yet recorded
        self.latest: dict[str, str] = {}  # domain → its latest send or claim
        self.gap_until: datetime | None | bool = False  # False: not read yet
        self.stop = False

    def take(self, limit: int) -> list[Claimed]:
        if self.mailbox is not None and paced(self.mailbox):
            limit = 1
        while len(self.taken) < limit and not self.stop:
            # taken rows stay `planned` until _finish: the next look skips them
            taken = {m["id"] for m in self.taken}
            rows = [r for r in messages_repo.due_for_mailbox(self.conn, self.mailbox_id, self.now_iso, limit)
                    if r["id"] not in taken]
            if not rows:
                break
            suppressed = suppressions.suppressed_among(self.conn, [r["to_email"] for r in rows])
            if self.policy.domain_spread_seconds:
                domains = sorted({r["to_domain"] for r in rows})
                for domain, at in messages_repo.last_sends_to_domains(self.conn, domains).items():
                    self._note(domain, at)
            for m in rows:
                self._check(m, m["to_email"] in suppressed)
                if self.stop:
                    break
        return self._finish()

    def _check(self, m, suppressed: bool) -> None:
        """Claim m, cancel it, or defer it (and maybe stop: nothing else of this mailbox may go)."""
        conn, now = self.conn, self.now
        if m["enrollment_status"] != "active":
            messages_repo.set_status(conn, m["id"], "cancelled", expect="planned",
                                     last_error="the lead's sequence stopped before this step")
            return
        if m["lead_status"] in BLOCKING_LEAD_STATUSES or suppressed:
            reason = m["lead_status"] if m["lead_status"] in BLOCKING_LEAD_STATUSES else "suppressed"
            messages_repo.set_status(conn, m["id"], "cancelled", expect="planned", last_error=reason)
            messages_repo.stop_enrollment(conn, m["enrollment_id"], reason)
            return
        if not usable(self.mailbox):
            messages_repo.defer(conn, m["id"], to_iso(now + MAILBOX_RETRY), "mailbox not sending")
            self.stop = True
            return
        campaign, schedule = self._campaign(m["campaign_id"])
        gap_until = self._gap_until()
        if gap_until and gap_until > now:
            messages_repo.defer(conn, m["id"], to_iso(gap_until))
            self.stop = True
            return
        self._load_in_flight()
        cap_tz = windows.zone(schedule.get("timezone"))
        # the daily cap counts messages in flight too: claimed and not yet recorded, they may be on their way
        if self._sent_today(cap_tz) + self.flying + len(self.taken) >= self._cap(now.astimezone(cap_tz).date()):
            messages_repo.defer(conn, m["id"], to_iso(windows.next_day_start(now, cap_tz)), "daily cap reached")
            self.stop = True
            return
        opens = self._opens(campaign, schedule, m["lead_timezone"])
        if opens > now:
            messages_repo.defer(conn, m["id"], to_iso(opens))
            return
        if self.policy.domain_spread_seconds:
            last = self.latest.get(m["to_domain"])
            free_at = from_iso(last) + timedelta(seconds=self.policy.domain_spread_seconds) if last else None
            if free_at and free_at > now:
                messages_repo.defer(conn, m["id"], to_iso(free_at))
                return
            self._note(m["to_domain"], self.now_iso)
        self.taken.append(m)

    def _note(self, domain: str, at: str) -> None:
        """Remember the latest send (or claim) to a domain; ISO-8601 UTC strings sort as times."""
        if at > self.latest.get(domain, ""):
            self.latest[domain] = at

    def _gap_until(self) -> datetime | None:
        """The mailbox's next allowed send, before this transaction claimed anything (a paced
        mailbox claims one message at most; an unpaced one has no gap to keep inside a batch)."""
        if self.gap_until is False:
            allowed = messages_repo.pacing(self.conn, self.mailbox_id)
            self.gap_until = from_iso(allowed) if allowed else None
        return self.gap_until

    def _campaign(self, campaign_id: int):
        if campaign_id not in self.campaigns:
            row = campaigns_repo.by_id(self.conn, campaign_id)
            self.campaigns[campaign_id] = (row, json.loads(row["schedule"]))
        return self.campaigns[campaign_id]

    def _opens(self, campaign, schedule: dict, lead_timezone: str | None) -> datetime:
        key = (campaign["id"], lead_timezone if campaign["use_lead_timezone"] else None)
        if key not in self.opens:
            tz = windows.window_zone(schedule, lead_timezone, bool(campaign["use_lead_timezone"]))
            self.opens[key] = windows.next_open(schedule, self.now, tz)
        return self.opens[key]

    def _cap(self, day: date) -> int:
        if day not in self.caps:
            self.caps[day] = daily_cap(dict(self.mailbox), day)
        return self.caps[day]

    def _load_in_flight(self) -> None:
        """Messages claimed and not yet recorded, of any mailbox: this mailbox's count for its cap,
        and every one's domain for the spread (they may be on their way this very moment)."""
        if self.flying is None:
            flying = messages_repo.in_flight(self.conn)
            self.flying = sum(1 for r in flying if r["mailbox_id"] == self.mailbox_id)
            for r in flying:
                if r["claimed_at"]:
                    self._note(r["to_domain"], r["claimed_at"])

    def _sent_today(self, cap_tz) -> int:
        """What the mailbox sent since midnight in the campaign's zone (its daily cap's day)."""
        key = str(cap_tz)
        if key not in self.sent_today:
            since = to_iso(windows.day_start(self.now, cap_tz))
            self.sent_today[key] = messages_repo.mailbox_sent_since(self.conn, self.mailbox_id, since)
        return self.sent_today[key]

    def _finish(self) -> list[Claimed]:
        taken = self.taken
        if not taken:
            return []
        moved = messages_repo.claim_many(self.conn, [m["id"] for m in taken], self.now_iso)
        if moved != len(taken):  # cannot happen inside one write transaction; never send on doubt
            raise RuntimeError(f"claimed {moved} of {len(taken)} messages")
        leads = {r["id"]: r for r in campaigns_repo.leads_by_ids(self.conn, [m["lead_id"] for m in taken])}
        threads = messages_repo.threads_of(self.conn, [m["enrollment_id"] for m in taken if m["step"] > 0])
        steps = {cid: campaigns_repo.steps(self.conn, cid) for cid in {m["campaign_id"] for m in taken}}
        identity = sender_identity.get(self.db)
        return [Claimed(message=dict(m), campaign=self.campaigns[m["campaign_id"]][0], steps=steps[m["campaign_id"]],
                        lead=leads[m["lead_id"]], mailbox=self.mailbox, thread=threads.get(m["enrollment_id"], []),
                        identity=identity) for m in taken]
