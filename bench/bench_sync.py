"""Mailbox sync against a real local Dovecot (the test mail stack), with the real engine.

(1) One sync cycle over MAILBOXES mailboxes whose sessions are already open (goal: <= 1.5 s and
    <= 150 MB RSS of this process). Each mailbox has one message in INBOX and a Spam folder; the
    first cycle opens the sessions and reads those messages (measured apart), the following ones
    find nothing new, which is the steady state. Measured with polling (STATUS per folder) and
    with IDLE (DONE, STATUS Spam, EXAMINE INBOX, IDLE again).
(2) Reply-to-stop latency with IDLE: REPLIES leads got step 1 of a two-step campaign over SMTP;
    each lead's reply is delivered into its mailbox's INBOX (LMTP) while every session idles, and
    the time until the enrolment is stopped in the database is taken (goal: p99 <= 2 s; Dovecot
    itself announces new mail about 0.5 s after delivery).

    .venv/bin/python bench/bench_sync.py [MAILBOXES] [REPLIES]
"""

from __future__ import annotations

import resource
import statistics
import sys
import threading
import time
from email.utils import formatdate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sending_support import REPO, add_mailbox, new_appliance  # noqa: E402

sys.path.insert(0, str(REPO))
from appliance.logs import configure  # noqa: E402
from appliance.services.sync import SyncEngine  # noqa: E402
from tests.support.campaign_setup import add_leads, launched_campaign  # noqa: E402
from tests.support.mailstack import MailStack  # noqa: E402
from tests.support.sync_setup import LEAD_SINK, reply, send_due  # noqa: E402

GOAL_CYCLE_S, GOAL_RSS_MB, GOAL_P99_S = 1.5, 150, 2.0


def rss_mb() -> tuple[float, float]:
    """(now, peak) resident set size of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def setup(count: int):
    users = {f"box{i}@bench.test": f"box{i}-pw" for i in range(count)}
    users[LEAD_SINK] = "lead-pw"
    stack = MailStack(users=users).start()
    app, principal, root = new_appliance("mailflow-bench-sync-")
    ca = stack.cafile.read_text()
    started = time.perf_counter()
    ids = [add_mailbox(app, principal, email, password=password, smtp_host=stack.host,
                       smtp_port=stack.submission_port, imap_host=stack.host, imap_port=stack.imaps_port, tls_ca_pem=ca)
           for email, password in users.items() if email != LEAD_SINK]
    for i in range(count):
        stack.deliver(f"box{i}@bench.test", f"Subject: old news {i}\r\nMessage-ID: <old{i}@bench.test>\r\n"
                                            f"Date: {formatdate()}\r\n\r\nNot about any lead.\r\n".encode())
    print(f"set-up: {count} users, mailboxes and messages in {time.perf_counter() - started:.1f} s")
    return stack, app, principal, root, ids


def cycles(app, *, idle: bool, count: int, rounds: int = 5) -> SyncEngine:
    engine = SyncEngine(app.db, app.keys, threads=8, interval=3600, idle=idle)
    started = time.perf_counter()
    first = engine.run_cycle()
    opened = time.perf_counter() - started
    counts = engine.counts()
    assert counts["sessions"] == count, counts
    print(f"  first cycle (opens {counts['sessions']} sessions, reads {first.fetched} new messages): {opened:.1f} s "
          f"= {count / opened:.0f} mailboxes/s")
    if idle:
        deadline = time.monotonic() + 30
        while engine.counts()["idling"] < count and time.monotonic() < deadline:
            time.sleep(0.05)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = engine.run_cycle()
        times.append(time.perf_counter() - started)
        assert result.fetched == 0, result
    started = time.perf_counter()
    for _ in range(20):
        engine.tick()  # what the scheduler runs every second: nothing is due
    tick_ms = (time.perf_counter() - started) / 20 * 1000
    now, peak = rss_mb()
    best, median = min(times), statistics.median(times)
    print(f"  steady cycle over {count} open sessions: median {median:.2f} s, best {best:.2f} s "
          f"(goal <= {GOAL_CYCLE_S} s: {verdict(median <= GOAL_CYCLE_S)}), "
          f"{count / median:.0f} mailboxes/s; the scheduler's tick with nothing due: {tick_ms:.1f} ms; "
          f"{engine.counts()}")
    print(f"  RSS {now:.0f} MB now, {peak:.0f} MB peak (goal <= {GOAL_RSS_MB} MB: {verdict(peak <= GOAL_RSS_MB)}); "
          f"{threading.active_count()} threads")
    return engine


def latency(app, stack, engine: SyncEngine, mailbox_ids: list[int], replies: int) -> None:
    pool = mailbox_ids[:replies]
    local, domain = LEAD_SINK.split("@")
    leads = add_leads(app, [f"{local}+r{i}@{domain}" for i in range(replies)])
    launched_campaign(app, pool, leads)
    send_due(app, timeout=120)
    sent = [dict(r) for r in app.db.connection().execute(
        "SELECT m.lead_id, m.message_id, m.enrollment_id, l.email, b.email AS mailbox FROM messages m "
        "JOIN leads l ON l.id = m.lead_id JOIN mailboxes b ON b.id = m.mailbox_id WHERE m.status = 'sent'")]
    samples = []
    for lead in sent:
        raw = reply(lead, lead["mailbox"])
        started = time.perf_counter()
        stack.deliver(lead["mailbox"], raw, mail_from=lead["email"])
        while app.db.connection().execute("SELECT status FROM enrollments WHERE id = ?",
                                          (lead["enrollment_id"],)).fetchone()[0] != "stopped":
            if time.perf_counter() - started > 30:
                raise AssertionError(f"no stop within 30 s for {lead['email']}")
            time.sleep(0.005)
        samples.append(time.perf_counter() - started)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    print(f"  {len(samples)} replies, while {engine.counts()['idling']} sessions idle: p50 {p50:.2f} s, "
          f"p99 {p99:.2f} s, max {samples[-1]:.2f} s (goal p99 <= {GOAL_P99_S} s: {verdict(p99 <= GOAL_P99_S)})")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    replies = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    stack, app, principal, root, ids = setup(count)
    engines = []
    try:
        print("(1a) polling (sync_idle = false)")
        engines.append(cycles(app, idle=False, count=count))
        assert engines[-1].stop(20)
        time.sleep(1)  # Dovecot's session processes end
        print("(1b) IDLE (sync_idle = true)")
        engines.append(cycles(app, idle=True, count=count))
        print("(2) reply-to-stop latency with IDLE")
        latency(app, stack, engines[-1], ids, replies)
        started = time.perf_counter()
        assert engines[-1].stop(20)
        print(f"  stop with {count} open sessions: {time.perf_counter() - started:.2f} s")
    finally:
        for engine in engines:
            engine.stop(20)
        app.close()
        stack.stop()
        import shutil
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    configure("error", "text")
    main()
