"""Shared set-up for the sending benchmarks (bench_sending, bench_planner, bench_day): an
appliance on a real encrypted database, mailboxes and campaigns made through the services,
leads and enrolments inserted in bulk (executemany) so that 100k of them take seconds.

Not a benchmark itself; the bench_* scripts import it (the script's own directory is on
sys.path when run as `.venv/bin/python bench/bench_x.py`).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from appliance.db.timefmt import utcnow_iso  # noqa: E402
from appliance.runtime import open_appliance  # noqa: E402
from appliance.services import campaigns, mailboxes, sender_identity  # noqa: E402
from appliance.services.authz import Principal  # noqa: E402
from tests.support.access import add_user  # noqa: E402
from tests.support.appliance import make_config  # noqa: E402

ADMIN = "admin@bench.test"
ONE_STEP = [{"delay_minutes": 0, "variants": [
    {"subject": "Quick question, {{first_name}}", "weight": 1,
     "body": "Hi {{first_name}},\n\n{I noticed|I saw} that {{company}} is growing. Would a short call next week "
             "make sense?\n\nBest,\n{{sender_name}}"},
    {"subject": "{{company}} and us", "weight": 1,
     "body": "Hello {{first_name}},\n\nwe help teams like {{company}} send less and reach more. Worth a chat?"
             "\n\n{{sender_name}}"}]}]
FOLLOW_UP = {"delay_minutes": 180, "variants": [
    {"subject": "", "body": "Hi {{first_name}}, just bringing this back to the top of your inbox.\n\n{{sender_name}}"}]}


def new_appliance(prefix: str = "mailflow-bench-"):
    """(appliance, admin principal, temp root). The caller removes root when done."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    app = open_appliance(make_config(root), env={})
    user_id = add_user(app, ADMIN, role="admin")
    principal = Principal(user_id=user_id, email=ADMIN, role="admin", via="session")
    sender_identity.save(app.db, principal, {"company": "Bench GmbH", "postal_address": "Hauptstr. 1, 10115 Berlin"})
    return app, principal, root


def add_mailbox(app, principal, email: str, **over) -> int:
    """A mailbox through the service (password sealed, audited), not live-checked: it stays
    `active`, which is all the planner and the claim look at."""
    body = {"email": email, "display_name": email.split("@")[0].title(), "smtp_host": "127.0.0.2",
            "smtp_port": 587, "smtp_security": "starttls", "imap_host": "127.0.0.2", "imap_port": 993,
            "imap_security": "ssl", "password": "bench-password", "min_gap_seconds": 0, "max_gap_seconds": 0,
            "daily_limit": 10000, "save_sent_copy": False}
    body.update(over)
    return mailboxes.create(app.db, app.keys, principal, body)["id"]


def add_leads(app, rows: list[tuple[str, str, str, str]]) -> list[int]:
    """rows: (email, first_name, company, timezone). One executemany; returns the new ids in order."""
    now = utcnow_iso()
    with app.db.transaction() as conn:
        first = (conn.execute("SELECT coalesce(max(id), 0) FROM leads").fetchone()[0]) + 1
        conn.executemany(
            "INSERT INTO leads (id, email, email_domain, first_name, company, timezone, custom, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, '{}', ?, ?)",
            [(first + i, email, email.rpartition("@")[2], name, company, tz, now, now)
             for i, (email, name, company, tz) in enumerate(rows)])
    return list(range(first, first + len(rows)))


def new_campaign(app, principal, name: str, mailbox_ids: list[int], steps=None, **settings) -> int:
    """A draft campaign through the service (templates validated)."""
    body = {"name": name, "steps": steps or ONE_STEP, "mailbox_ids": mailbox_ids, **settings}
    return campaigns.create(app.db, principal, body)["id"]


def enroll(app, campaign_id: int, lead_ids: list[int]) -> None:
    """Enrolments in bulk, as campaigns.enroll stores them for a draft campaign (not yet due);
    launch() makes them due. The service's per-lead skip checks are left out for set-up speed."""
    now = utcnow_iso()
    with app.db.transaction() as conn:
        conn.executemany("INSERT INTO enrollments (campaign_id, lead_id, next_due_at, enrolled_at) "
                         "VALUES (?, ?, NULL, ?)", [(campaign_id, lid, now) for lid in lead_ids])


def launch(app, principal, campaign_id: int) -> None:
    campaigns.launch(app.db, principal, campaign_id)


class Timers:
    """Wall and CPU seconds per label, by wrapping functions (a few µs of overhead per call).
    CPU is the calling thread's own (time.thread_time): other threads' work is not charged."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, label: str, fn):
        def timed(*args, **kwargs):
            w, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[label] = self.wall.get(label, 0.0) + time.perf_counter() - w
                self.cpu[label] = self.cpu.get(label, 0.0) + time.thread_time() - c
                self.calls[label] = self.calls.get(label, 0) + 1
        timed.__wrapped__ = fn
        return timed

    def report(self, total_wall: float, per: int, labels: list[str] | None = None) -> None:
        for label in labels or list(self.wall):
            if label not in self.wall:
                continue
            w, c = self.wall[label], self.cpu[label]
            print(f"  {label:32} {self.calls[label]:7d} calls  wall {w * 1e6 / per:8.0f} µs/msg "
                  f"({100 * w / total_wall:5.1f} %)  cpu {c * 1e6 / per:8.0f} µs/msg")


def dump_json(obj) -> str:
    return json.dumps(obj, sort_keys=True)
