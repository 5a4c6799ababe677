"""CPU per message for plan + render + claim + record at 100,000 enrolments (goal: <= 1 ms),
without SMTP, and the planner's tick cost when every enrolment is idle (100k vs 1k).

Set-up: a real encrypted database, 200 mailboxes (gap 0, cap 1,000), 100k leads each on its own
domain, and one launched two-step campaign (window Mon-Sun 00:00-23:59 Europe/Berlin, follow-up
after three days) with all of them enrolled and due. The clock is passed in (`now=`), starting
at a Wednesday 10:00 in Berlin, one second further per tick.

Sending sample: TICKS planner ticks (500 enrolments each, the planner's batch); after each, the
engine's worker loop for every mailbox with due messages, with no network: one transaction that
records the previous batch as sent and claims the next (up to send_feed.MOST_AHEAD), then
compose_message (render + MIME) for each claimed message. CPU is time.process_time() over the whole loop, divided
by the messages sent; a second line splits it by stage.

Idle ticks: every enrolment's next step pushed three days out, then plan_due timed (median of
many runs); the same on a second database with 1,000 enrolments; then the same with a handful
of enrolments due (the pool's load is read per tick), and with 100k past-due enrolments in a
paused campaign next to the idle running one.

    .venv/bin/python bench/bench_planner.py [ENROLMENTS] [TICKS]
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sending_support as support  # noqa: E402
from appliance.db import messages_repo  # noqa: E402
from appliance.db.timefmt import to_iso  # noqa: E402
from appliance.services import campaigns, planner, send_feed, sender  # noqa: E402
from appliance.mail import message as mime  # noqa: E402

MAILBOXES = 200
SCHEDULE = {"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "00:00", "end": "23:59"}
FOLLOW_UP_3_DAYS = {**support.FOLLOW_UP, "delay_minutes": 3 * 1440}


def start_clock() -> datetime:
    """The next Wednesday, 10:00 in Berlin, at least a day ahead (launch makes leads due 'now')."""
    berlin = ZoneInfo("Europe/Berlin")
    day = datetime.now(berlin).date() + timedelta(days=1)
    while day.weekday() != 2:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=berlin).astimezone(ZoneInfo("UTC"))


def build(enrolments: int):
    """(app, principal, root, campaign id, mailbox ids, setup seconds)."""
    t = time.perf_counter()
    app, principal, root = support.new_appliance()
    boxes = [support.add_mailbox(app, principal, f"rep{i}@sender{i % 20}.test", daily_limit=1000)
             for i in range(MAILBOXES)]
    leads = support.add_leads(app, [(f"lead{i}@co{i}.example", f"Lead{i}", f"Company {i % 997}", "")
                                    for i in range(enrolments)])
    campaign = support.new_campaign(app, principal, "Bench", boxes, steps=[*support.ONE_STEP, FOLLOW_UP_3_DAYS],
                                    schedule=SCHEDULE)
    support.enroll(app, campaign, leads)
    support.launch(app, principal, campaign)
    return app, principal, root, campaign, boxes, leads, time.perf_counter() - t


def send_sample(app, ticks: int, now: datetime) -> tuple[int, float, float, support.Timers, datetime]:
    """(messages, cpu seconds, wall seconds, stage timers, clock after). After each planner tick,
    what each mailbox's worker does minus the SMTP conversation (send_feed.Feed, without its
    thread): record the previous batch and claim the next in one transaction, then compose."""
    rng = random.Random(7)
    policy = sender.Policy()
    timers = support.Timers()
    plan = timers.wrap("plan (plan_due, per message)", planner.plan_due)
    claim = timers.wrap("record + claim (1 transaction)", sender.record_and_claim)
    render = timers.wrap("render (compose_message)", sender.compose_message)
    sent = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(ticks):
        plan(app.db, now=now, rng=rng)
        for mailbox_id in messages_repo.mailboxes_with_due(app.db.connection(), to_iso(now)):
            accepted: list = []
            while True:
                batch = claim(app.db, accepted, mailbox_id, policy, send_feed.MOST_AHEAD, rng, now=now)
                if not batch:
                    break
                accepted = []
                for claimed in batch:
                    _, subject, variant = render(app.db, app.keys, claimed, policy, now)
                    accepted.append(sender.Sent(claimed, subject, variant, now))
                sent += len(batch)
        now += timedelta(seconds=1)
    return sent, time.process_time() - cpu, time.perf_counter() - wall, timers, now


def tick_cost(app, now: datetime, runs: int, before=None) -> tuple[float, float]:
    """Median (cpu, wall) seconds of one plan_due tick; `before()` runs untimed ahead of each."""
    cpus, walls = [], []
    for _ in range(runs):
        if before:
            before()
        c, w = time.process_time(), time.perf_counter()
        planner.plan_due(app.db, now=now)
        cpus.append(time.process_time() - c)
        walls.append(time.perf_counter() - w)
    return statistics.median(cpus), statistics.median(walls)


def make_idle(app, campaign: int, until: datetime) -> None:
    with app.db.transaction() as conn:
        conn.execute("UPDATE enrollments SET next_due_at = ? WHERE campaign_id = ? AND status = 'active'",
                     (to_iso(until), campaign))


def due_some(app, campaign: int, now: datetime, count: int):
    """A function that makes the next `count` idle, never-planned enrolments due (first steps)."""
    def run():
        with app.db.transaction() as conn:
            conn.execute("UPDATE enrollments SET next_due_at = ? WHERE id IN (SELECT id FROM enrollments "
                         "WHERE campaign_id = ? AND status = 'active' AND next_step = 0 AND mailbox_id IS NULL "
                         "AND next_due_at > ? ORDER BY id LIMIT ?)", (to_iso(now), campaign, to_iso(now), count))
    return run


def main(enrolments: int, ticks: int) -> None:
    roots = []
    try:
        app, principal, root, campaign, boxes, leads, took = build(enrolments)
        roots.append((app, root))
        print(f"set-up: {MAILBOXES} mailboxes, {enrolments:,} leads and enrolments, one launched two-step "
              f"campaign: {took:.1f} s")
        conn = app.db.connection()
        for kind, step in (("follow-ups", "e.next_step > 0"), ("first steps", "e.next_step = 0")):
            plan = conn.execute("EXPLAIN QUERY PLAN SELECT e.id FROM enrollments e JOIN leads l ON l.id = e.lead_id "
                                "WHERE e.campaign_id = ? AND e.status = 'active' AND e.next_due_at <= ? AND "
                                f"{step} ORDER BY e.next_due_at", (campaign, "x")).fetchall()
            print(f"due_enrollments query plan, {kind}: " + "; ".join(r[-1] for r in plan))

        now = start_clock()
        sent, cpu, wall, timers, now = send_sample(app, ticks, now)
        print(f"\nplan + render + claim + record, {sent} messages at {enrolments:,} enrolments "
              f"({ticks} ticks of {planner.BATCH}):")
        print(f"  CPU {cpu * 1e6 / sent:.0f} µs/message (goal <= 1000 µs); wall {wall * 1e6 / sent:.0f} µs/message; "
              f"{sent / wall:.0f} messages/s on one thread")
        timers.report(wall, sent)
        # The MIME build inside render, on its own (the stdlib email package's header objects).
        fake = next(iter(messages_repo.in_status(app.db.connection(), "sent")))
        build_cpu = _mime_build_cost(fake)
        print(f"  of render, the MIME build alone (appliance.mail.message.build): {build_cpu:.0f} µs/message CPU")

        # Idle ticks at 100k.
        idle_until = now + timedelta(days=3)
        make_idle(app, campaign, idle_until)
        big_idle = tick_cost(app, now, 200)
        big_some = tick_cost(app, now, 20, due_some(app, campaign, now, 10))

        # The same on 1k enrolments.
        small, s_principal, s_root, s_campaign, _, _, _ = build(1000)
        roots.append((small, s_root))
        make_idle(small, s_campaign, idle_until)
        small_idle = tick_cost(small, now, 200)
        small_some = tick_cost(small, now, 20, due_some(small, s_campaign, now, 10))

        print("\nplanner tick, every enrolment idle (next_due_at three days out), median:")
        print(f"  {enrolments:>7,} idle: CPU {big_idle[0] * 1e6:8.0f} µs, wall {big_idle[1] * 1e6:8.0f} µs")
        print(f"  {1000:>7,} idle: CPU {small_idle[0] * 1e6:8.0f} µs, wall {small_idle[1] * 1e6:8.0f} µs")
        print(f"  ratio {enrolments // 1000}x the idle enrolments: CPU x{big_idle[0] / small_idle[0]:.2f}, "
              f"wall x{big_idle[1] / small_idle[1]:.2f} (goal: ~1, flat)")
        print("planner tick with 10 enrolments due among the idle ones, median:")
        print(f"  {enrolments:>7,} enrolled: CPU {big_some[0] * 1e3:7.2f} ms, wall {big_some[1] * 1e3:7.2f} ms")
        print(f"  {1000:>7,} enrolled: CPU {small_some[0] * 1e3:7.2f} ms, wall {small_some[1] * 1e3:7.2f} ms")
        print(f"  ratio: CPU x{big_some[0] / small_some[0]:.2f} (the pool of {MAILBOXES} mailboxes is read "
              f"whatever the number due)")

        # Past-due enrolments of a paused campaign sit in the due index below `now`.
        other = support.new_campaign(app, principal, "Paused", boxes, schedule=SCHEDULE)
        support.enroll(app, other, leads)
        support.launch(app, principal, other)
        campaigns.pause(app.db, principal, other)
        paused_idle = tick_cost(app, now, 50)
        print(f"planner tick, running campaign idle + a paused campaign with {enrolments:,} past-due enrolments:")
        print(f"  CPU {paused_idle[0] * 1e6:8.0f} µs, wall {paused_idle[1] * 1e6:8.0f} µs "
              f"(x{paused_idle[0] / big_idle[0]:.1f} the idle tick without it)")
    finally:
        for app, root in roots:
            app.close()
            shutil.rmtree(root, ignore_errors=True)


def _mime_build_cost(row, repeat: int = 300) -> float:
    outbound = mime.Outbound(from_email="rep1@sender1.test", from_name="Rep1", to_email=row["to_email"],
                             subject=row["subject"] or "Hello", text="Hi there,\n\nwe help teams.\n\n--\nBench GmbH\n"
                             "Unsubscribe: http://127.0.0.1:8025/u/" + "x" * 60, message_id=row["message_id"],
                             date=datetime.now().astimezone(), unsubscribe_mailto="rep1+unsubscribe@sender1.test",
                             unsubscribe_url="http://127.0.0.1:8025/u/" + "x" * 60)
    c = time.process_time()
    for _ in range(repeat):
        mime.build(outbound)
    return (time.process_time() - c) * 1e6 / repeat


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, int(sys.argv[2]) if len(sys.argv) > 2 else 4)
