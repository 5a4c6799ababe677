"""A simulated day of sending: 1,000 mailboxes with random daily caps (some on a slow ramp) and
random gaps, 50,000 leads in five campaigns with different time zones, windows, limits and
sequences, driven by a simulated clock through the real planner and claim (`now=` passed in;
sender.record_sent(now=...) stands in for the SMTP conversation). Mid-day, some leads reply or
unsubscribe, some domains are suppressed and some mailboxes are paused.

Afterwards every sent message is checked from the messages table, with checks written here
independently of the services:
  - cap:      no mailbox over its daily cap (ramp included) on any local day
  - gap:      no two sends of a mailbox closer than its minimum gap
  - window:   nothing sent outside the campaign's window (in the lead's zone when the campaign says so)
  - twice:    no lead got the same step of a campaign twice
  - sticky:   every follow-up went from the mailbox of the lead's first message
  - delay:    no follow-up before its delay after the previous step
  - domain:   no two sends to one recipient domain closer than the spread (120 s)
  - campaign: no campaign over its daily limit / daily new-lead limit
  - stopped:  nothing sent after the lead replied or unsubscribed, its domain was suppressed or
              its mailbox was paused
Prints messages sent and the violations of each kind (goal: 0); exits 1 on any violation.

    .venv/bin/python bench/bench_day.py [MAILBOXES] [LEADS] [SEED]
"""

from __future__ import annotations

import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from datetime import date, datetime, time as dtime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sending_support as support  # noqa: E402
from appliance.db import messages_repo  # noqa: E402
from appliance.db.timefmt import from_iso, to_iso  # noqa: E402
from appliance.services import links, mailboxes, planner, sender, suppressions, unsubscribe  # noqa: E402
from appliance.services.audit import Actor  # noqa: E402

UTC = timezone.utc
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STEP = timedelta(seconds=30)        # the dispatch tick of the simulated clock
PLAN_EVERY = timedelta(seconds=60)  # the planner's tick
SPREAD = 120                        # Policy().domain_spread_seconds
LEAD_ZONES = ["Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
              "Australia/Sydney", "", "Mars/Olympus_Mons"]

POOLS = [("eu", 0.4), ("us", 0.3), ("global", 0.2), ("apac", 0.1)]  # mailbox tag, share of the mailboxes

# (name, pool tag, share of the leads, settings)
CAMPAIGNS = [
    ("DACH", "eu", 0.24, {"schedule": {"timezone": "Europe/Berlin", "days": WEEKDAYS, "start": "09:00",
                                            "end": "17:00"}, "steps": [*support.ONE_STEP, support.FOLLOW_UP]}),
    ("DACH mornings", "eu", 0.16, {"schedule": {"timezone": "Europe/Berlin", "days": WEEKDAYS,
                                                     "start": "08:00", "end": "12:00"}, "daily_new_leads": 2000}),
    ("US East", "us", 0.24, {"schedule": {"timezone": "America/New_York", "days": WEEKDAYS, "start": "09:00",
                                               "end": "17:00"}, "steps": [*support.ONE_STEP, support.FOLLOW_UP]}),
    ("Follow the sun", "global", 0.24, {"schedule": {"timezone": "UTC", "days": list(DAYS), "start": "09:00",
                                                          "end": "17:00"}, "use_lead_timezone": True}),
    ("APAC", "apac", 0.12, {"schedule": {"timezone": "Asia/Tokyo", "days": WEEKDAYS, "start": "09:00",
                                              "end": "17:30"}, "daily_limit": 1500,
                                 "steps": [*support.ONE_STEP, {**support.FOLLOW_UP, "delay_minutes": 120}]}),
]


def sim_start() -> datetime:
    """00:00 UTC of the first Monday at least two days ahead: `launch` makes enrolments due at the
    real now, which must lie before the simulated day."""
    day = datetime.now(UTC).date() + timedelta(days=2)
    while day.weekday() != 0:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def zone(name: str):
    return ZoneInfo(name) if name in ZONES else None


ZONES = available_timezones()


def setup(app, principal, n_mailboxes: int, n_leads: int, rng: random.Random, start: datetime):
    boxes = {}  # id -> dict(cap, min_gap, ramp)
    for i in range(n_mailboxes):
        share, tag = 0.0, POOLS[-1][0]
        for ptag, pshare in POOLS:
            share += pshare
            if i < share * n_mailboxes:
                tag = ptag
                break
        low = rng.randint(60, 300)
        over = {"daily_limit": rng.randint(20, 60), "min_gap_seconds": low,
                "max_gap_seconds": rng.randint(low, 600), "tags": [tag]}
        if rng.random() < 0.1:
            over.update(ramp_start=rng.randint(5, 10), ramp_step=rng.randint(2, 5),
                        ramp_started_on=(start.date() - timedelta(days=rng.randint(0, 10))).isoformat())
        box = support.add_mailbox(app, principal, f"rep{i}@{tag}{i % 50}.sender.test", **over)
        boxes[box] = {**over, "tag": tag}
    campaigns = {}
    lead_ids_all = []
    first = 0
    for name, tag, lead_share, settings in CAMPAIGNS:
        count = int(n_leads * lead_share)
        use_zone = settings.get("use_lead_timezone", False)
        rows = [(f"p{first + j}@d{(first + j) % (n_leads // 12)}.example", f"Lead{first + j}", f"Company {j % 500}",
                 rng.choice(LEAD_ZONES) if use_zone else "") for j in range(count)]
        first += count
        lead_ids = support.add_leads(app, rows)
        lead_ids_all += lead_ids
        campaign = support.new_campaign(app, principal, name, [], mailbox_tag=tag, **settings)
        support.enroll(app, campaign, lead_ids)
        support.launch(app, principal, campaign)
        campaigns[campaign] = {"name": name, **settings}
    with app.db.transaction() as conn:  # launched at the real now; the simulated day starts later
        conn.execute("UPDATE enrollments SET next_due_at = ? WHERE status = 'active'", (to_iso(start),))
    return boxes, campaigns, lead_ids_all


def disturb(app, principal, now: datetime, rng: random.Random, boxes: dict, stopped: dict) -> None:
    """Mid-day: replies, unsubscribes, suppressed domains, paused mailboxes (recorded in `stopped`)."""
    conn = app.db.connection()
    enrolled = [tuple(r) for r in conn.execute(
        "SELECT lead_id, campaign_id FROM enrollments WHERE status = 'active' ORDER BY id")]
    picks = rng.sample(enrolled, min(len(enrolled), 600))
    for lead_id, campaign_id in picks[:300]:
        token = links.unsubscribe_token(app.keys.tokens, lead_id, campaign_id)
        unsubscribe.unsubscribe(app.db, app.keys, token, via="bench")
        stopped["lead"][lead_id] = now
    with app.db.transaction() as conn:
        for lead_id, _ in picks[300:]:  # what the reply detector does with a reply
            messages_repo.set_lead_status(conn, lead_id, "replied", to_iso(now))
            messages_repo.stop_lead_enrollments(conn, lead_id, "replied")
            stopped["lead"].setdefault(lead_id, now)
        domains = [r[0] for r in conn.execute("SELECT DISTINCT email_domain FROM leads ORDER BY email_domain")]
        for domain in rng.sample(domains, min(len(domains), 30)):
            suppressions.suppress(conn, Actor.system("bench"), domain, reason="manual", source="bench")
            stopped["domain"][domain] = now
    for box in rng.sample(sorted(boxes), 10):
        mailboxes.pause(app.db, principal, box, "bench: paused mid-day")
        stopped["mailbox"][box] = now


class Attribution:
    """Seconds spent in a few storage functions, by the phase (planner or dispatch) calling them."""

    NAMES = ("due_enrollments", "pool_load", "pool_mailboxes", "plan_many", "defer_enrollment", "campaign_sent_since",
             "mailboxes_with_due", "due_for_mailbox", "defer", "last_sends_to_domains")

    def __init__(self):
        self.phase = "planner"
        self.seconds: Counter = Counter()
        self.calls: Counter = Counter()
        self.originals = {name: getattr(messages_repo, name) for name in self.NAMES}
        for name, fn in self.originals.items():
            setattr(messages_repo, name, self._wrap(name, fn))

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                key = (self.phase, name)
                self.seconds[key] += time.perf_counter() - t
                self.calls[key] += 1
        return timed

    def restore(self) -> None:
        for name, fn in self.originals.items():
            setattr(messages_repo, name, fn)


def simulate(app, principal, start: datetime, rng: random.Random, boxes: dict, render: bool):
    policy = sender.Policy(domain_spread_seconds=SPREAD)
    where = Attribution()
    try:
        return _simulate(app, principal, start, rng, boxes, render, policy, where)
    finally:
        where.restore()


def _simulate(app, principal, start, rng, boxes, render, policy, where):
    stopped = {"lead": {}, "domain": {}, "mailbox": {}}
    disturb_at = start + timedelta(hours=11)
    now, end, next_plan = start, start + timedelta(hours=24), start
    ticks = claims = sent = 0
    plan_s = dispatch_s = 0.0
    while now < end:
        if now >= next_plan:
            where.phase = "planner"
            t = time.perf_counter()
            planner.plan_due(app.db, now=now, rng=rng)
            plan_s += time.perf_counter() - t
            next_plan += PLAN_EVERY
        if disturb_at is not None and now >= disturb_at:
            disturb(app, principal, now, rng, boxes, stopped)
            disturb_at = None
        where.phase = "dispatch"
        t = time.perf_counter()
        for mailbox_id in messages_repo.mailboxes_with_due(app.db.connection(), to_iso(now)):
            while True:  # the engine's worker loop, with the network left out
                claims += 1
                claimed = sender.claim(app.db, mailbox_id, policy, now=now)
                if claimed is None:
                    break
                if render:
                    _, subject, variant = sender.compose_message(app.db, app.keys, claimed, policy, now)
                else:
                    subject, variant = f"step {claimed.message['step']}", "A"
                sender.record_sent(app.db, claimed, subject=subject, variant=variant, now=now, rng=rng)
                sent += 1
        dispatch_s += time.perf_counter() - t
        ticks += 1
        now += STEP
    return stopped, {"ticks": ticks, "claims": claims, "sent": sent, "plan_s": plan_s, "dispatch_s": dispatch_s,
                     "where": where}


def cap_on(box: dict, day: date) -> int:
    if box.get("ramp_start"):
        days = max(0, (day - date.fromisoformat(box["ramp_started_on"])).days)
        return min(box["daily_limit"], box["ramp_start"] + days * box["ramp_step"])
    return box["daily_limit"]


def in_window(schedule: dict, moment: datetime, tz) -> bool:
    local = moment.astimezone(tz)
    start, end = (dtime.fromisoformat(schedule[k]) for k in ("start", "end"))
    return DAYS[local.weekday()] in schedule["days"] and start <= local.time().replace(tzinfo=None) < end


def verify(app, boxes: dict, campaigns: dict, stopped: dict) -> tuple[dict, dict]:
    conn = app.db.connection()
    rows = conn.execute("SELECT m.id, m.campaign_id, m.enrollment_id, m.lead_id, m.mailbox_id, m.step, m.sent_at, "
                        "m.to_domain, l.timezone FROM messages m JOIN leads l ON l.id = m.lead_id "
                        "WHERE m.status = 'sent' ORDER BY m.sent_at, m.id").fetchall()
    bad: dict[str, list] = defaultdict(list)
    by_box, by_domain, by_step = defaultdict(list), defaultdict(list), Counter()
    for r in rows:
        r = dict(r)
        r["at"] = from_iso(r["sent_at"])
        by_box[r["mailbox_id"]].append(r)
        by_domain[r["to_domain"]].append(r["at"])
        by_step[(r["campaign_id"], r["lead_id"], r["step"])] += 1
        c = campaigns[r["campaign_id"]]
        schedule = c["schedule"]
        lead_zone = zone(r["timezone"]) if c.get("use_lead_timezone") and r["timezone"] else None
        if not in_window(schedule, r["at"], lead_zone or ZoneInfo(schedule["timezone"])):
            bad["window"].append((r["id"], r["sent_at"], r["timezone"] or schedule["timezone"]))
        for kind, key in (("lead", r["lead_id"]), ("domain", r["to_domain"]), ("mailbox", r["mailbox_id"])):
            if key in stopped[kind] and r["at"] >= stopped[kind][key]:
                bad["stopped"].append((r["id"], kind, key))
    sent_step = {(r["enrollment_id"], r["step"]): r for r in rows}
    for r in rows:
        if r["step"] == 0:
            continue
        first, prev = sent_step.get((r["enrollment_id"], 0)), sent_step.get((r["enrollment_id"], r["step"] - 1))
        if first is None or first["mailbox_id"] != r["mailbox_id"]:
            bad["sticky"].append((r["id"], first and first["mailbox_id"], r["mailbox_id"]))
        delay = campaigns[r["campaign_id"]].get("steps", support.ONE_STEP)[r["step"]]["delay_minutes"]
        if prev is None or from_iso(r["sent_at"]) < from_iso(prev["sent_at"]) + timedelta(minutes=delay):
            bad["delay"].append((r["id"], prev and prev["sent_at"], r["sent_at"]))
    for key, count in by_step.items():
        if count > 1:
            bad["twice"].append((key, count))
    for box_id, sends in by_box.items():
        box = boxes[box_id]
        for a, b in zip(sends, sends[1:]):
            if (b["at"] - a["at"]).total_seconds() < box["min_gap_seconds"]:
                bad["gap"].append((box_id, a["sent_at"], b["sent_at"], box["min_gap_seconds"]))
        for tz_name in {campaigns[s["campaign_id"]]["schedule"]["timezone"] for s in sends}:
            per_day = Counter(s["at"].astimezone(ZoneInfo(tz_name)).date() for s in sends)
            for day, count in per_day.items():
                if count > cap_on(box, day):
                    bad["cap"].append((box_id, tz_name, day.isoformat(), count, cap_on(box, day)))
    for times in by_domain.values():
        for a, b in zip(times, times[1:]):
            if (b - a).total_seconds() < SPREAD:
                bad["domain"].append((a.isoformat(), b.isoformat()))
    for cid, c in campaigns.items():
        tz = ZoneInfo(c["schedule"]["timezone"])
        mine = [r for r in rows if r["campaign_id"] == cid]
        for limit_name, step0 in (("daily_limit", False), ("daily_new_leads", True)):
            if not c.get(limit_name):
                continue
            per_day = Counter(from_iso(r["sent_at"]).astimezone(tz).date() for r in mine if not step0 or r["step"] == 0)
            for day, count in per_day.items():
                if count > c[limit_name]:
                    bad["campaign"].append((c["name"], limit_name, day.isoformat(), count))
    stats = {
        "sent": len(rows),
        "status": dict(Counter(r[0] for r in conn.execute("SELECT status FROM messages"))),
        "by_campaign": {campaigns[cid]["name"]: dict(sorted(Counter(r["step"] for r in rows
                                                                    if r["campaign_id"] == cid).items()))
                        for cid in campaigns},
        "boxes_used": len(by_box),
        "boxes_at_cap": sum(1 for b, s in by_box.items() if len(s) >= cap_on(boxes[b], s[0]["at"].date())),
    }
    return bad, stats


def main(n_mailboxes: int, n_leads: int, seed: int, render: bool) -> int:
    rng = random.Random(seed)
    app, principal, root = support.new_appliance()
    try:
        start = sim_start()
        t = time.perf_counter()
        boxes, campaigns, _ = setup(app, principal, n_mailboxes, n_leads, rng, start)
        print(f"set-up: {n_mailboxes} mailboxes (caps 20-60, gaps 60-600 s, "
              f"{sum(1 for b in boxes.values() if b.get('ramp_start'))} on a ramp), {n_leads:,} leads in "
              f"{len(campaigns)} campaigns: {time.perf_counter() - t:.1f} s")
        print(f"simulated day: {start:%a %Y-%m-%d} 00:00-24:00 UTC, dispatch every {STEP.seconds} s, planner every "
              f"{PLAN_EVERY.seconds} s, seed {seed}{', rendering every message' if render else ''}")
        t = time.perf_counter()
        stopped, run = simulate(app, principal, start, rng, boxes, render)
        took = time.perf_counter() - t
        print(f"simulation: {took:.1f} s ({run['ticks']} ticks; planner {run['plan_s']:.1f} s, dispatch "
              f"{run['dispatch_s']:.1f} s; {run['claims']} claims for {run['sent']} sends)")
        where = run["where"]
        for (phase, name), seconds in sorted(where.seconds.items(), key=lambda kv: -kv[1]):
            print(f"  {phase:8} messages_repo.{name:18} {where.calls[(phase, name)]:8d} calls {seconds:6.1f} s")
        bad, stats = verify(app, boxes, campaigns, stopped)
        print(f"messages sent: {stats['sent']:,}; by status at the end: {stats['status']}")
        for name, steps in stats["by_campaign"].items():
            print(f"  {name:16} sent by step: {steps}")
        print(f"mailboxes that sent: {stats['boxes_used']} of {n_mailboxes}; at their cap: {stats['boxes_at_cap']}")
        print(f"mid-day: {len(stopped['lead'])} leads replied/unsubscribed, {len(stopped['domain'])} domains "
              f"suppressed, {len(stopped['mailbox'])} mailboxes paused")
        total = 0
        print("violations (goal 0):")
        for kind in ("cap", "gap", "window", "twice", "sticky", "delay", "domain", "campaign", "stopped"):
            found = bad.get(kind, [])
            total += len(found)
            print(f"  {kind:9} {len(found):6d}" + (f"   e.g. {found[:3]}" if found else ""))
        print(f"total violations: {total}")
        return 1 if total else 0
    finally:
        app.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(int(args[0]) if args else 1000, int(args[1]) if len(args) > 1 else 50_000,
                  int(args[2]) if len(args) > 2 else 1, "--render" in sys.argv))
