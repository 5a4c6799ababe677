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
from datetime import datetime, timedelta, timezone

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
    planned = 0
    with db.transaction() as conn:
        due = messages_repo.due_enrollments(conn, campaign["id"], to_iso(now), BATCH)
        if not due:
            return 0
        step_count = len(messages_repo.step_delays(conn, campaign["id"]))
        today = windows.day_start(now, campaign_tz)
        campaign_left = _campaign_room(conn, campaign, to_iso(today))
        pool = {m["id"]: m for m in messages_repo.pool_mailboxes(conn, campaign)}
        room = {}
        for mailbox in pool.values():
            sent, queued, last = messages_repo.mailbox_load(conn, mailbox["id"], to_iso(today))
            room[mailbox["id"]] = [daily_cap(dict(mailbox), today.date()) - sent - queued, last]
        for enrollment in due:
            if enrollment["next_step"] >= step_count:  # steps were removed while it waited
                messages_repo.advance_enrollment(conn, enrollment["id"], enrollment["next_step"], None)
                continue
            tz = windows.window_zone(schedule, enrollment["timezone"], bool(campaign["use_lead_timezone"]))
            opens = windows.next_open(schedule, now, tz)
            if opens > now:
                messages_repo.defer_enrollment(conn, enrollment["id"], to_iso(opens))
                continue
            first = enrollment["next_step"] == 0
            if campaign_left["all"] <= 0 or (first and campaign_left["new"] <= 0):
                messages_repo.defer_enrollment(conn, enrollment["id"], to_iso(windows.next_day_start(now, campaign_tz)))
                continue
            mailbox_id = _choose(enrollment, pool, room, rng)
            if mailbox_id is None:
                # a full mailbox has room again tomorrow; a paused one may be back any time
                sticky = pool.get(enrollment["mailbox_id"]) if enrollment["mailbox_id"] else None
                waiting_for_a_pause = sticky is not None and not _usable(sticky)
                later = now + STICKY_RETRY if waiting_for_a_pause else windows.next_day_start(now, campaign_tz)
                messages_repo.defer_enrollment(conn, enrollment["id"], to_iso(later))
                continue
            mailbox = pool[mailbox_id]
            planned_at = _slot(now, mailbox, room[mailbox_id][1])
            if messages_repo.plan(conn, enrollment=enrollment, mailbox_id=mailbox_id,
                                  message_id=new_message_id(mailbox["email"].rpartition("@")[2]),
                                  planned_at=to_iso(planned_at), now=to_iso(now)):
                planned += 1
                room[mailbox_id] = [room[mailbox_id][0] - 1, to_iso(planned_at)]
                campaign_left["all"] -= 1
                campaign_left["new"] -= first
    return planned


def _campaign_room(conn, campaign, since: str) -> dict[str, float]:
    big = float("inf")
    room = {"all": big, "new": big}
    if campaign["daily_limit"]:
        room["all"] = campaign["daily_limit"] - messages_repo.campaign_sent_since(conn, campaign["id"], since)
    if campaign["daily_new_leads"]:
        room["new"] = campaign["daily_new_leads"] - messages_repo.campaign_sent_since(
            conn, campaign["id"], since, first_step_only=True)
    return room


def _choose(enrollment, pool: dict, room: dict, rng: random.Random) -> int | None:
    sticky = enrollment["mailbox_id"]
    if sticky is not None:  # follow-ups stay with the first message's mailbox, or wait for it
        mailbox = pool.get(sticky)
        return sticky if mailbox is not None and _usable(mailbox) and room[sticky][0] > 0 else None
    candidates = [(mid, room[mid][0]) for mid, m in pool.items() if _usable(m) and room[mid][0] > 0]
    if not candidates:
        return None
    ids, weights = zip(*candidates)
    return rng.choices(ids, weights=weights)[0]


def _slot(now: datetime, mailbox, last_planned: str | None) -> datetime:
    """An estimate of when this message can go: after the mailbox's gap and its queue."""
    slot = now
    if mailbox["next_allowed_at"]:
        slot = max(slot, from_iso(mailbox["next_allowed_at"]))
    if last_planned:
        average_gap = (mailbox["min_gap_seconds"] + mailbox["max_gap_seconds"]) / 2
        slot = max(slot, from_iso(last_planned) + timedelta(seconds=average_gap))
    return slot
