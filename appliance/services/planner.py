"""The planner: turns due enrolments into planned messages, each on a mailbox of the pool.

Per tick it reads only enrolments whose next step is due (a partial index on next_due_at),
per active campaign, so its cost does not grow with idle enrolments. An enrolment that cannot
go now (window closed, caps spent, sticky mailbox paused) gets a later next_due_at instead of
being looked at again every tick.

Mailbox choice: the lead's first message decides its mailbox and every follow-up stays on it
(same thread, same sender). New threads go to a mailbox of the pool chosen at random weighted
by its remaining capacity today. The real limits (cap, gap, window, suppression, replies) are
checked again when a message is claimed for sending; planning only spreads the work.
"""

from __future__ import annotations

import json
import random
from bisect import bisect_right
from datetime import datetime, timedelta, timezone
from itertools import accumulate

from ..db import Database, messages_repo
from ..db.timefmt import from_iso, to_iso
from ..mail.message import new_message_id
from . import schedule_window as windows
from .mailboxes import daily_cap

BATCH = 500
STICKY_RETRY = timedelta(minutes=15)


def _usable(mailbox) -> bool:
    return mailbox["status"] == "active" and bool(mailbox["sending_enabled"])


def plan_due(db: Database, now: datetime | None = None, rng: random.Random | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    rng = rng or random.Random()
    planned = 0
    for campaign in messages_repo.active_campaigns(db.connection()):
        planned += _plan_campaign(db, campaign, now, rng)
    return planned


def _plan_campaign(db: Database, campaign, now: datetime, rng: random.Random) -> int:
    schedule = json.loads(campaign["schedule"])
    campaign_tz = windows.zone(schedule.get("timezone"))
    use_lead_tz = bool(campaign["use_lead_timezone"])
    now_iso = to_iso(now)
    with db.transaction(durable=False) as conn:  # redone: planning again finds the same due steps
        due = messages_repo.due_enrollments(conn, campaign["id"], now_iso, BATCH)
        if not due:
            return 0
        step_count = len(messages_repo.step_delays(conn, campaign["id"]))
        today = windows.day_start(now, campaign_tz)
        campaign_left = _campaign_room(conn, campaign, to_iso(today))
        pool = Pool(conn, messages_repo.pool_mailboxes(conn, campaign), now, today)
        opens_by_zone: dict[str | None, datetime] = {}
        plans: list[tuple] = []  # (enrolment, mailbox, Message-ID, planned_at), inserted together
        for enrollment in due:
            if enrollment["next_step"] >= step_count:  # steps were removed while it waited
                messages_repo.advance_enrollment(conn, enrollment["id"], enrollment["next_step"], None)
                continue
            zone_key = enrollment["timezone"] if use_lead_tz else None
            if zone_key not in opens_by_zone:  # the window depends only on the zone within a tick
                tz = windows.window_zone(schedule, enrollment["timezone"], use_lead_tz)
                opens_by_zone[zone_key] = windows.next_open(schedule, now, tz)
            opens = opens_by_zone[zone_key]
            if opens > now:
                messages_repo.defer_enrollment(conn, enrollment["id"], to_iso(opens))
                continue
            first = enrollment["next_step"] == 0
            if campaign_left["all"] <= 0 or (first and campaign_left["new"] <= 0):
                messages_repo.defer_enrollment(conn, enrollment["id"], to_iso(windows.next_day_start(now, campaign_tz)))
                continue
            mailbox_id = pool.choose(enrollment["mailbox_id"], rng)
            if mailbox_id is None:
                # a full mailbox has room again tomorrow; a paused one may be back any time
                sticky = pool.rows.get(enrollment["mailbox_id"]) if enrollment["mailbox_id"] else None
                waiting_for_a_pause = sticky is not None and not _usable(sticky)
                later = now + STICKY_RETRY if waiting_for_a_pause else windows.next_day_start(now, campaign_tz)
                messages_repo.defer_enrollment(conn, enrollment["id"], to_iso(later))
                continue
            planned_at = pool.slot(mailbox_id)
            plans.append((enrollment, mailbox_id, new_message_id(pool.rows[mailbox_id]["email"].rpartition("@")[2]),
                          to_iso(planned_at)))
            pool.took(mailbox_id, planned_at)
            campaign_left["all"] -= 1
            campaign_left["new"] -= first
        return messages_repo.plan_many(conn, plans, now_iso)


def _campaign_room(conn, campaign, since: str) -> dict[str, float]:
    big = float("inf")
    room = {"all": big, "new": big}
    if campaign["daily_limit"]:
        room["all"] = campaign["daily_limit"] - messages_repo.campaign_sent_since(conn, campaign["id"], since)
    if campaign["daily_new_leads"]:
        room["new"] = campaign["daily_new_leads"] - messages_repo.campaign_sent_since(
            conn, campaign["id"], since, first_step_only=True)
    return room


class Pool:
    """A campaign's mailboxes during one tick: each one's room today (its cap minus what it sent,
    is sending or has planned) and its queue, read once; the weighted choice among them."""

    def __init__(self, conn, rows, now: datetime, today: datetime):
        self.rows = {m["id"]: m for m in rows}
        self.now = now
        load = messages_repo.pool_load(conn, list(self.rows), to_iso(today)) if rows else {}
        self.room: dict[int, int] = {}
        self.last: dict[int, datetime | str | None] = {}  # parsed when first needed
        for mid, mailbox in self.rows.items():
            sent, queued, last = load.get(mid, (0, 0, None))
            self.room[mid] = daily_cap(dict(mailbox), today.date()) - sent - queued
            self.last[mid] = last
        self._allowed: dict[int, datetime] = {}
        self._table: tuple[list[int], list[int], list[int]] | None = None

    def choose(self, sticky: int | None, rng: random.Random) -> int | None:
        if sticky is not None:  # follow-ups stay with the first message's mailbox, or wait for it
            mailbox = self.rows.get(sticky)
            return sticky if mailbox is not None and _usable(mailbox) and self.room[sticky] > 0 else None
        return self._weighted(rng)

    def _weighted(self, rng: random.Random) -> int | None:
        """A usable mailbox with room, at random with probability proportional to its room now.
        Draws from a table of the rooms when it was built and accepts a draw with probability
        room now / room then (exact, and O(log n) per pick instead of O(n)); the table is rebuilt
        when draws keep failing because rooms have shrunk."""
        for _ in range(2):
            if self._table is None:
                ids = [mid for mid, m in self.rows.items() if _usable(m) and self.room[mid] > 0]
                if not ids:
                    return None
                weights = [self.room[mid] for mid in ids]
                self._table = (ids, list(accumulate(weights)), weights)
            ids, cumulative, weights = self._table
            for _ in range(16):
                i = bisect_right(cumulative, rng.random() * cumulative[-1])
                if rng.random() * weights[i] < self.room[ids[i]]:
                    return ids[i]
            self._table = None
        return None

    def slot(self, mailbox_id: int) -> datetime:
        """An estimate of when the next message can go: after the mailbox's gap and its queue."""
        mailbox, slot = self.rows[mailbox_id], self.now
        if mailbox["next_allowed_at"]:
            if mailbox_id not in self._allowed:
                self._allowed[mailbox_id] = from_iso(mailbox["next_allowed_at"])
            slot = max(slot, self._allowed[mailbox_id])
        last = self.last[mailbox_id]
        if isinstance(last, str):
            last = self.last[mailbox_id] = from_iso(last)
        if last is not None:
            average_gap = (mailbox["min_gap_seconds"] + mailbox["max_gap_seconds"]) / 2
            slot = max(slot, last + timedelta(seconds=average_gap))
        return slot

    def took(self, mailbox_id: int, planned_at: datetime) -> None:
        self.room[mailbox_id] -= 1
        self.last[mailbox_id] = planned_at
