"""Delivering queued webhook events: by the scheduler, signed, retried, and given up on.

Each tick takes the due pending deliveries (the partial index on next_attempt_at), posts them
on a bounded pool of threads through the SSRF-guarded client, then records every outcome in
the database. A failed attempt is retried with exponential backoff and jitter (1 min, 2, 4 ...
capped at 6 h: 13 attempts over about a day), then the delivery is marked failed. A webhook
whose endpoint has failed every attempt for DISABLE_AFTER is disabled, with an audit row; its
waiting deliveries resume when an admin enables it again. Delivery is at least once: a crash
between the request and its record means one more attempt, so receivers deduplicate on the
event id.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..db import Database, webhooks_repo
from ..db.timefmt import from_iso, to_iso
from ..net.http_client import OutboundError, OutboundPolicy, post
from . import audit, webhook_signing, webhooks
from .audit import Actor
from .authz import Principal
from .errors import NotFound, ValidationError
from .maintenance import JobSpec
from .webhook_input import TEST_EVENT

MAX_ATTEMPTS = 13
FIRST_DELAY = 60                   # seconds; doubles after every failed attempt ...
MAX_DELAY = 6 * 3600               # ... up to this
JITTER = 0.2                       # ±20 %, so retries of many deliveries do not arrive in step
DISABLE_AFTER = timedelta(hours=24)
PER_THREAD_PER_BATCH = 2          # a batch takes at most two timeouts, even if every endpoint hangs
TICK_BUDGET = 5.0                 # seconds; then the tick ends and the next one continues
KEEP_FINISHED = timedelta(days=30)
SYSTEM = Actor.system("webhooks")


def backoff_seconds(failed_attempts: int, rand: float | None = None) -> float:
    base = min(FIRST_DELAY * 2 ** (failed_attempts - 1), MAX_DELAY)
    return base * (1 - JITTER + 2 * JITTER * (random.random() if rand is None else rand))


def policy_for(db: Database, config) -> OutboundPolicy:
    """The outbound policy now: the admin's private-network setting is read at every tick."""
    return OutboundPolicy(addresses=webhooks.address_policy(db, config), timeout=config.webhook_timeout_seconds,
                          ca_file=str(config.webhook_ca_file) if config.webhook_ca_file else None)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    excerpt: str


def attempt(url: str, event_id: str, event_type: str, body: str, secrets: list[str], attempt_no: int,
            policy: OutboundPolicy, now: datetime) -> Outcome:
    """One signed POST (no database access: this runs on the delivery threads)."""
    raw = body.encode("utf-8")
    headers = {"Content-Type": "application/json", "X-MailFlow-Event-Id": event_id,
               "X-MailFlow-Event-Type": event_type, "X-MailFlow-Delivery-Attempt": str(attempt_no),
               webhook_signing.HEADER: webhook_signing.header(secrets, int(now.timestamp()), raw)}
    started = time.monotonic()
    try:
        response = post(url, raw, headers, policy)
    except OutboundError as exc:
        return Outcome(False, None, f"{exc.code}: {exc.message}", _ms(started), "")
    if 200 <= response.status < 300:
        return Outcome(True, response.status, None, _ms(started), response.excerpt)
    error = (f"HTTP {response.status}: redirects are not followed; point the webhook at the final URL"
             if 300 <= response.status < 400 else f"HTTP {response.status}")
    return Outcome(False, response.status, error, _ms(started), response.excerpt)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def deliver_due(db: Database, keys, policy: OutboundPolicy, *, threads: int = 4, now: datetime | None = None,
                budget_seconds: float = TICK_BUDGET) -> dict:
    """One scheduler tick: batches of due deliveries until none is due or the time budget is
    spent (a tick stays short when endpoints are slow, and keeps up when they are fast).
    Returns counts of what happened."""
    started = time.monotonic()
    totals = {"delivered": 0, "failed_attempts": 0}
    batch = threads * PER_THREAD_PER_BATCH
    while True:
        done = _deliver_batch(db, keys, policy, threads, now or datetime.now(timezone.utc), batch)
        totals = {k: totals[k] + done[k] for k in totals}
        if done["taken"] < batch or time.monotonic() - started >= budget_seconds:
            return totals


def _deliver_batch(db: Database, keys, policy: OutboundPolicy, threads: int, now: datetime, limit: int) -> dict:
    conn = db.connection()
    due = webhooks_repo.due(conn, to_iso(now), limit)
    if not due:
        return {"delivered": 0, "failed_attempts": 0, "taken": 0}
    hooks = {r["id"]: r for r in webhooks_repo.by_ids(conn, sorted({d["webhook_id"] for d in due}))}
    signing = {hook_id: webhooks.signing_secrets(keys, row, now) for hook_id, row in hooks.items()}
    jobs = [d for d in due if d["webhook_id"] in hooks and hooks[d["webhook_id"]]["enabled"]]

    def send(d):
        return attempt(hooks[d["webhook_id"]]["url"], d["event_id"], d["event_type"], d["body"],
                       signing[d["webhook_id"]], d["attempts"] + 1, policy, now)

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(jobs))), thread_name_prefix="mailflow-webhook") as pool:
        outcomes = list(pool.map(send, jobs))
    for d, outcome in zip(jobs, outcomes):
        record(db, d, outcome, now)
    delivered = sum(o.ok for o in outcomes)
    return {"delivered": delivered, "failed_attempts": len(outcomes) - delivered, "taken": len(due)}


def record(db: Database, delivery, outcome: Outcome, now: datetime) -> None:
    """Log the attempt, move the delivery on (delivered, retry later, failed) and keep the
    webhook's failure streak; a streak as long as DISABLE_AFTER disables the webhook."""
    at = to_iso(now)
    attempts = delivery["attempts"] + 1
    is_test = delivery["event_type"] == TEST_EVENT
    with db.transaction(durable=False) as conn:  # redone: delivery is at least once
        hook = webhooks_repo.by_id(conn, delivery["webhook_id"])
        if hook is None:  # deleted meanwhile: its deliveries went with it
            return
        webhooks_repo.add_attempt(conn, delivery_id=delivery["id"], attempt=attempts, at=at,
                                  status_code=outcome.status_code, duration_ms=outcome.duration_ms,
                                  error=outcome.error, excerpt=outcome.excerpt)
        fields = {"attempts": attempts, "last_attempt_at": at, "last_status_code": outcome.status_code,
                  "last_error": outcome.error, "duration_ms": outcome.duration_ms}
        if outcome.ok:
            fields.update(status="delivered", next_attempt_at=None, finished_at=at)
        elif is_test or attempts >= MAX_ATTEMPTS:
            fields.update(status="failed", next_attempt_at=None, finished_at=at)
        else:
            retry_at = to_iso(now + timedelta(seconds=backoff_seconds(attempts)))
            fields.update(next_attempt_at=retry_at if hook["enabled"] else None)
        webhooks_repo.update_delivery(conn, delivery["id"], fields)
        if not is_test:
            _track_health(conn, hook, outcome, now)


def _track_health(conn, hook, outcome: Outcome, now: datetime) -> None:
    at = to_iso(now)
    if outcome.ok:
        webhooks_repo.update(conn, hook["id"], {"consecutive_failures": 0, "failing_since": None,
                                                "last_success_at": at}, at)
        return
    failures = hook["consecutive_failures"] + 1
    since = hook["failing_since"] or at
    webhooks_repo.update(conn, hook["id"], {"consecutive_failures": failures, "failing_since": since,
                                            "last_failure_at": at}, at)
    if hook["enabled"] and now - from_iso(since) >= DISABLE_AFTER:
        reason = (f"Disabled automatically: every delivery failed since {since} ({failures} attempts in a row; "
                  f"last: {outcome.error}). Fix the endpoint, then enable the webhook again.")
        webhooks_repo.update(conn, hook["id"], {"enabled": 0, "disabled_reason": reason[:500]}, at)
        parked = webhooks_repo.park(conn, hook["id"])
        audit.record(conn, SYSTEM, "webhook.disabled", target_type="webhook", target_id=hook["id"],
                     metadata={"by": "system", "consecutive_failures": failures, "failing_since": since,
                               "last_error": outcome.error, "waiting_deliveries": parked})


def send_test(db: Database, keys, policy: OutboundPolicy, principal: Principal, webhook_id: int,
              now: datetime | None = None) -> dict:
    """Queue a `webhook.test` event for this webhook and deliver it now, once; returns the
    delivery as the log shows it (status code, duration, error)."""
    event_id = webhooks.queue_test_event(db, principal, webhook_id)
    now = now or datetime.now(timezone.utc)
    conn = db.connection()
    delivery = webhooks_repo.delivery_for(conn, event_id, webhook_id)
    hook = webhooks_repo.by_id(conn, webhook_id)
    if delivery is None or hook is None:
        raise NotFound("No such webhook.")
    outcome = attempt(hook["url"], event_id, TEST_EVENT, delivery["body"], webhooks.signing_secrets(keys, hook, now),
                      1, policy, now)
    record(db, delivery, outcome, now)
    return delivery_log(db, principal, webhook_id, limit=1)[0]


def delivery_log(db: Database, principal: Principal, webhook_id: int, *, status: str | None = None,
                 before_id: int | None = None, limit: int = 50) -> list[dict]:
    """Deliveries of one webhook, newest first, each with its attempts."""
    principal.require("admin", "admin")
    conn = db.connection()
    if webhooks_repo.by_id(conn, webhook_id) is None:
        raise NotFound("No such webhook.")
    if status not in (None, "pending", "delivered", "failed"):
        raise ValidationError({"status": "Choose pending, delivered or failed."})
    rows = webhooks_repo.deliveries(conn, webhook_id, status=status, before_id=before_id, limit=limit)
    attempts = webhooks_repo.attempts_of(conn, [r["id"] for r in rows])
    return [{"id": r["id"], "event_id": r["event_id"], "event_type": r["event_type"], "status": r["status"],
             "attempts": r["attempts"], "next_attempt_at": r["next_attempt_at"],
             "last_status_code": r["last_status_code"], "last_error": r["last_error"],
             "duration_ms": r["duration_ms"], "created_at": r["created_at"], "finished_at": r["finished_at"],
             "log": [{"attempt": a["attempt"], "at": a["at"], "status_code": a["status_code"],
                      "duration_ms": a["duration_ms"], "error": a["error"], "response": a["response_excerpt"]}
                     for a in attempts[r["id"]]]}
            for r in rows]


def purge_finished(db: Database, now: datetime | None = None) -> int:
    """Delivered and failed deliveries (and their events) older than KEEP_FINISHED."""
    before = to_iso((now or datetime.now(timezone.utc)) - KEEP_FINISHED)
    with db.transaction() as conn:
        return webhooks_repo.purge_finished(conn, before)


def jobs(app) -> list[JobSpec]:
    threads = app.config.webhook_threads
    return [
        JobSpec("webhooks.deliver", 2, lambda: deliver_due(app.db, app.keys, policy_for(app.db, app.config),
                                                           threads=threads), first_delay=3),
        JobSpec("webhooks.purge", 86400, lambda: purge_finished(app.db), first_delay=900),
    ]
