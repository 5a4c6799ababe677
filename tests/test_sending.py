"""The sending engine against the real mail stack: lifecycle, threading, the checks made at
claim time, pacing and caps, retries and failures, and reconciliation from the Sent folder."""

from __future__ import annotations

import email
import email.policy
import random
import time
from datetime import datetime, timedelta, timezone

import pytest

from appliance.db import mailboxes_repo, messages_repo
from appliance.db.timefmt import to_iso
from appliance.mail.smtp import SmtpSession
from appliance.services import campaigns, mailboxes, planner, reconcile, send_feed, sender, suppressions
from appliance.services.engine import SendingEngine
from appliance.services.audit import Actor

from .support.campaign_setup import add_leads, admin_principal, connect_mailbox, launched_campaign
from .support.mailstack import MailStack

pytestmark = pytest.mark.mailstack
ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@other.test"
POLICY = sender.Policy(domain_spread_seconds=0, base_url="https://mail.acme.example")


def status_of(app, message_id: int) -> str:
    return messages_repo.by_id(app.db.connection(), message_id)["status"]


def messages(app):
    return [dict(r) for r in app.db.connection().execute("SELECT * FROM messages ORDER BY id")]


def run_until_idle(app, mailbox_id: int, max_messages: int = 50) -> list[str]:
    """What the engine's worker does: claim, send on one reused connection, until nothing is due."""
    creds = mailboxes.credentials(app.db, app.keys, mailbox_id, Actor.system("scheduler"), "send")
    outcomes = []
    with SmtpSession(creds.smtp, creds.username, creds.password, creds.helo) as session:
        for _ in range(max_messages):
            claimed = sender.claim(app.db, mailbox_id, POLICY)
            if claimed is None:
                break
            outcomes.append(sender.send_one(app.db, app.keys, claimed, session, POLICY, random.Random(1)))
    return outcomes


def inbox(stack, user: str, criteria) -> list[email.message.EmailMessage]:
    client = stack.imap(user)
    try:
        found = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            client.select_folder("INBOX", readonly=True)
            uids = client.search(criteria)
            if uids:
                found = [email.message_from_bytes(v[b"BODY[]"], policy=email.policy.default)
                         for v in client.fetch(uids, ["BODY.PEEK[]"]).values()]
                break
            time.sleep(0.1)
        return found
    finally:
        client.logout()


def make_due(app, enrollment_id: int) -> None:
    """Let a follow-up's delay pass (tests do not wait an hour)."""
    with app.db.transaction() as conn:
        messages_repo.defer_enrollment(conn, enrollment_id, to_iso(datetime.now(timezone.utc)))


def test_two_steps_thread_from_the_same_mailbox(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE)
    tag = f"t{time.monotonic_ns()}"
    lead = add_leads(appliance, [f"bob+{tag}@example.test"], first_name="Bob")
    launched_campaign(appliance, [box["id"]], lead)
    assert planner.plan_due(appliance.db) == 1
    assert run_until_idle(appliance, box["id"]) == ["sent"]
    first = messages(appliance)[0]
    assert first["status"] == "sent" and first["subject"] == "Hello Bob" and first["message_id"].endswith("@example.test>")
    enrollment = appliance.db.connection().execute("SELECT * FROM enrollments").fetchone()
    assert enrollment["next_step"] == 1 and enrollment["mailbox_id"] == box["id"]
    assert enrollment["next_due_at"] > to_iso(datetime.now(timezone.utc) + timedelta(minutes=59))

    make_due(appliance, enrollment["id"])
    assert planner.plan_due(appliance.db) == 1
    assert run_until_idle(appliance, box["id"]) == ["sent"]
    second = messages(appliance)[1]
    assert second["subject"] == "Re: Hello Bob" and second["mailbox_id"] == box["id"]
    got = inbox(mailstack, BOB, ["HEADER", "Message-ID", second["message_id"]])[0]
    assert got["In-Reply-To"] == first["message_id"] and got["References"] == first["message_id"]
    assert got["From"] == "Alice <alice@example.test>" and "Step two, Bob." in got.get_body().get_content()
    assert "List-Unsubscribe" in got and "Acme GmbH" in got.get_body().get_content()
    done = appliance.db.connection().execute("SELECT status FROM enrollments").fetchone()[0]
    assert done == "completed"
    kinds = [r[0] for r in appliance.db.connection().execute("SELECT kind FROM events ORDER BY id")]
    assert kinds == ["sent", "sent"]


@pytest.mark.parametrize("change", ["suppressed", "paused", "replied", "unsubscribed"])
def test_what_happens_after_planning_is_checked_at_claim_time(appliance, mailstack, change):
    box = connect_mailbox(appliance, mailstack, ALICE)
    lead = add_leads(appliance, ["bob+late@example.test"])
    campaign = launched_campaign(appliance, [box["id"]], lead)
    planner.plan_due(appliance.db)
    message = messages(appliance)[0]
    with appliance.db.transaction() as conn:
        if change == "suppressed":
            suppressions.suppress(conn, Actor.system(), "example.test", reason="manual")
        elif change == "paused":
            campaigns.pause(appliance.db, admin_principal(appliance), campaign["id"])
        elif change == "replied":
            messages_repo.stop_enrollment(conn, message["enrollment_id"], "replied")
        else:
            conn.execute("UPDATE leads SET status = 'unsubscribed'")
    assert sender.claim(appliance.db, box["id"], POLICY) is None
    expected = "planned" if change == "paused" else "cancelled"
    assert status_of(appliance, message["id"]) == expected
    if change == "paused":  # resuming lets it go
        campaigns.resume(appliance.db, admin_principal(appliance), campaign["id"])
        assert run_until_idle(appliance, box["id"]) == ["sent"]


def test_min_gap_and_daily_cap(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE, min_gap_seconds=600, max_gap_seconds=900, daily_limit=2)
    leads = add_leads(appliance, [f"bob+cap{i}@example.test" for i in range(4)])
    launched_campaign(appliance, [box["id"]], leads)
    assert planner.plan_due(appliance.db) == 2  # the planner fills today's cap, no more
    assert run_until_idle(appliance, box["id"]) == ["sent"]  # then the gap holds the second one back
    pacing = messages_repo.pacing(appliance.db.connection(), box["id"])
    assert timedelta(seconds=599) < datetime.fromisoformat(pacing.replace("Z", "+00:00")) - \
        datetime.now(timezone.utc) <= timedelta(seconds=900)
    later = datetime.now(timezone.utc) + timedelta(seconds=901)
    assert sender.claim(appliance.db, box["id"], POLICY, now=later) is not None
    leftovers = appliance.db.connection().execute(
        "SELECT count(*) FROM enrollments WHERE next_step = 0 AND next_due_at > ?", (to_iso(later),)).fetchone()[0]
    assert leftovers == 2  # deferred to tomorrow, not re-read every tick


def test_outside_the_window_nothing_is_planned(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE)
    lead = add_leads(appliance, ["bob+window@example.test"])
    now = datetime.now(timezone.utc)
    closed_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(now.weekday() + 3) % 7]
    launched_campaign(appliance, [box["id"]], lead,
                      schedule={"timezone": "UTC", "days": [closed_day], "start": "09:00", "end": "10:00"})
    assert planner.plan_due(appliance.db) == 0
    due = appliance.db.connection().execute("SELECT next_due_at FROM enrollments").fetchone()[0]
    assert due.endswith("T09:00:00Z") and due > to_iso(now)


def test_a_permanent_rejection_fails_with_the_reason(appliance):
    stack = MailStack(users={ALICE: "alice-pw"}, unknown_recipient="reject").start()
    try:
        box = connect_mailbox(appliance, stack, ALICE)
        lead = add_leads(appliance, ["nobody@nowhere.test"])
        launched_campaign(appliance, [box["id"]], lead)
        planner.plan_due(appliance.db)
        assert run_until_idle(appliance, box["id"]) == ["failed"]
        failed = messages(appliance)[0]
        assert failed["status"] == "failed" and failed["smtp_code"] == 550 and "User unknown" in failed["last_error"]
        stop = appliance.db.connection().execute("SELECT status, stop_reason FROM enrollments").fetchone()
        assert tuple(stop) == ("stopped", "rejected")
    finally:
        stack.stop()


def test_a_wrong_password_keeps_the_message_and_stops_the_mailbox(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE)
    lead = add_leads(appliance, ["bob+auth@example.test"])
    launched_campaign(appliance, [box["id"]], lead)
    planner.plan_due(appliance.db)
    mailboxes.update(appliance.db, appliance.keys, admin_principal(appliance), box["id"], {"password": "wrong"})
    engine = SendingEngine(appliance, threads=1, policy=POLICY)
    engine._work(box["id"])
    message = messages(appliance)[0]
    assert message["status"] == "planned" and "rejected the username" in message["last_error"]
    health = mailboxes.get(appliance.db, box["id"])
    assert health["status"] == "error" and health["last_error_code"] == "auth_failed"
    # no hammering: while the mailbox is not healthy, nothing is even attempted
    with appliance.db.transaction() as conn:
        conn.execute("UPDATE messages SET planned_at = '2000-01-01T00:00:00Z' WHERE status = 'planned'")
    assert sender.claim(appliance.db, box["id"], POLICY) is None
    assert mailboxes.get(appliance.db, box["id"])["consecutive_failures"] == 1


def test_reconcile_finds_a_message_the_server_took_before_a_crash(appliance):
    stack = MailStack(users={ALICE: "alice-pw", BOB: "bob-pw"}, save_sent_copy=True).start()
    try:
        box = connect_mailbox(appliance, stack, ALICE, save_sent_copy=False)  # the server files sent mail
        leads = add_leads(appliance, ["bob+crash1@example.test", "bob+crash2@example.test"])
        launched_campaign(appliance, [box["id"]], leads)
        planner.plan_due(appliance.db)
        creds = mailboxes.credentials(appliance.db, appliance.keys, box["id"], Actor.system(), "test")
        # crash 1: the server answered 250, we died before recording it
        taken = sender.claim(appliance.db, box["id"], POLICY)
        raw, _, _ = sender.compose_message(appliance.db, appliance.keys, taken, POLICY, datetime.now(timezone.utc))
        with SmtpSession(creds.smtp, creds.username, creds.password, creds.helo) as session:
            session.send(ALICE, [taken.message["to_email"]], raw)
        # crash 2: claimed, died before SMTP
        lost = sender.claim(appliance.db, box["id"], POLICY)
        orphans = reconcile.Orphans(appliance.db)  # what the next process finds at start-up
        assert orphans.ids == {taken.message["id"], lost.message["id"]}
        assert orphans.settle(appliance.db, appliance.keys) == {"sent": 1, "requeued": 1, "uncertain": 0}
        assert orphans.ids == set()
        assert status_of(appliance, taken.message["id"]) == "sent"
        assert status_of(appliance, lost.message["id"]) == "planned"
    finally:
        stack.stop()


def test_without_proof_a_message_is_uncertain_never_resent(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE, save_sent_copy=True)  # we file copies ourselves
    lead = add_leads(appliance, ["bob+unsure@example.test"])
    launched_campaign(appliance, [box["id"]], lead)
    planner.plan_due(appliance.db)
    claimed = sender.claim(appliance.db, box["id"], POLICY)
    assert reconcile.Orphans(appliance.db).settle(appliance.db, appliance.keys) == \
        {"sent": 0, "requeued": 0, "uncertain": 1}
    assert status_of(appliance, claimed.message["id"]) == "uncertain"
    assert sender.claim(appliance.db, box["id"], POLICY) is None


def test_follow_ups_wait_for_their_own_mailbox(appliance, mailstack):
    first = connect_mailbox(appliance, mailstack, ALICE)
    second = connect_mailbox(appliance, mailstack, CAROL)
    leads = add_leads(appliance, [f"bob+pool{i}@example.test" for i in range(20)])
    launched_campaign(appliance, [first["id"], second["id"]], leads)
    assert planner.plan_due(appliance.db, rng=random.Random(3)) == 20
    by_box = {}
    for m in messages(appliance):
        by_box[m["mailbox_id"]] = by_box.get(m["mailbox_id"], 0) + 1
    assert set(by_box) == {first["id"], second["id"]}  # both mailboxes share the work
    mailboxes.pause(appliance.db, admin_principal(appliance), first["id"])
    run_until_idle(appliance, second["id"])
    sticky = appliance.db.connection().execute(
        "SELECT count(*) FROM enrollments WHERE mailbox_id = ? AND next_step = 0", (first["id"],)).fetchone()[0]
    assert sticky == by_box[first["id"]]  # the paused mailbox's leads were not moved elsewhere


def test_one_click_unsubscribe_stops_everything_at_once(appliance, web, mailstack):
    from appliance.services import links
    box = connect_mailbox(appliance, mailstack, ALICE)
    lead = add_leads(appliance, ["bob+unsub@example.test"])
    campaign = launched_campaign(appliance, [box["id"]], lead)
    planner.plan_due(appliance.db)
    token = links.unsubscribe_token(appliance.keys.tokens, lead[0], campaign["id"])
    c = web.test_client()
    page = c.get(f"/u/{token}")
    assert page.status_code == 200 and b'data-state="confirm"' in page.data  # GET changes nothing
    assert sender.claim(appliance.db, box["id"], POLICY) is not None  # (still sendable before the POST)
    with appliance.db.transaction() as conn:  # put it back, unsent
        conn.execute("UPDATE messages SET status = 'planned'")
    r = c.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})  # no session, no CSRF token
    assert r.status_code == 200 and b'data-state="done"' in r.data
    assert c.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200  # replay: harmless
    assert sender.claim(appliance.db, box["id"], POLICY) is None
    assert messages(appliance)[0]["status"] == "cancelled"
    entry = suppressions.suppression_for(appliance.db.connection(), "bob+unsub@example.test")
    assert entry["reason"] == "unsubscribed" and "one-click" in entry["source"]
    assert appliance.db.connection().execute("SELECT status FROM leads").fetchone()[0] == "unsubscribed"
    events = [r[0] for r in appliance.db.connection().execute("SELECT kind FROM events WHERE kind = 'unsubscribed'")]
    assert events == ["unsubscribed"]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert c.post(f"/u/{forged}").status_code == 404 and c.get(f"/u/{forged}").status_code == 404


def test_claims_and_unsubscribes_are_committed_to_survive_a_power_cut(appliance, web, mailstack, monkeypatch):
    """A lost claim would let the message go twice; a lost unsubscribe would mail someone who
    was told it is done. Both commit with synchronous=FULL (the WAL synced before COMMIT returns),
    the claim also when it shares its transaction with a record; a record alone may be lost (the
    message is then `sending`, and reconcile settles it)."""
    from appliance.services import claiming, links
    levels: dict[str, list[int]] = {"claim": [], "unsubscribe": [], "record": []}

    def watch(owner, name: str, label: str) -> None:
        real = getattr(owner, name)

        def watched(*args, **kwargs):
            levels[label].append(appliance.db.connection().execute("PRAGMA synchronous").fetchone()[0])
            return real(*args, **kwargs)
        monkeypatch.setattr(owner, name, watched)

    watch(claiming.ClaimRun, "take", "claim")
    watch(suppressions, "suppress", "unsubscribe")
    box = connect_mailbox(appliance, mailstack, ALICE)
    leads = add_leads(appliance, ["bob+durable1@example.test", "bob+durable2@example.test"])
    campaign = launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    claimed = sender.claim(appliance.db, box["id"], POLICY)
    watch(messages_repo, "mark_sent", "record")  # inside the record's transaction
    sender.record_sent(appliance.db, claimed, subject="s", variant="A", now=datetime.now(timezone.utc),
                       rng=random.Random(1))
    SendingEngine(appliance, threads=1, policy=POLICY)._work(box["id"])  # its rounds: record + claim
    token = links.unsubscribe_token(appliance.keys.tokens, leads[0], campaign["id"])
    assert web.test_client().post(f"/u/{token}").status_code == 200
    assert levels["claim"] and set(levels["claim"]) == {2}
    assert levels["unsubscribe"] == [2]
    assert levels["record"][0] == 1  # a record alone: the lighter commit
    assert appliance.db.connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # the default, after all


def test_a_temporary_refusal_plans_the_message_again_with_backoff(appliance, mailstack):
    from appliance.mail.smtp import SmtpRejected
    from .support.deferring_smtp import DeferringSmtp
    deferring = DeferringSmtp(ALICE, mailstack.users[ALICE]).start()
    try:
        both_cas = mailstack.cafile.read_text() + deferring.cafile.read_text()
        box = connect_mailbox(appliance, mailstack, ALICE, smtp_port=deferring.port, tls_ca_pem=both_cas)
        assert box["status"] == "active"
        lead = add_leads(appliance, ["bob+later@example.test"])
        launched_campaign(appliance, [box["id"]], lead)
        planner.plan_due(appliance.db)
        backoffs = []
        for attempt in range(sender.MAX_ATTEMPTS):
            with appliance.db.transaction() as conn:  # the backoff has passed
                conn.execute("UPDATE messages SET planned_at = '2000-01-01T00:00:00Z' WHERE status = 'planned'")
            with pytest.raises(SmtpRejected):
                run_until_idle(appliance, box["id"])
            m = messages(appliance)[0]
            if m["status"] == "planned":
                backoffs.append(round((datetime.fromisoformat(m["planned_at"].replace("Z", "+00:00"))
                                       - datetime.now(timezone.utc)).total_seconds()))
                assert m["smtp_code"] == 451 and "Greylisted" in m["last_error"]
        assert len(backoffs) == len(sender.BACKOFF)  # 1 min, 5 min, 15 min, 1 h, 3 h, 6 h
        assert all(abs(b - s) <= 2 for b, s in zip(backoffs, sender.BACKOFF)), backoffs
        final = messages(appliance)[0]
        assert final["status"] == "failed" and final["attempts"] == sender.MAX_ATTEMPTS
        assert appliance.db.connection().execute("SELECT stop_reason FROM enrollments").fetchone()[0] == "send_failed"
    finally:
        deferring.stop()


def test_a_copy_goes_to_sent_where_the_server_does_not_file_one(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, CAROL, save_sent_copy=True)
    tag = f"copy{time.monotonic_ns()}"
    leads = add_leads(appliance, [f"bob+{tag}.{i}@example.test" for i in range(3)])
    launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    engine = SendingEngine(appliance, threads=1, policy=POLICY)
    engine._work(box["id"])
    sent = messages(appliance)
    assert [m["status"] for m in sent] == ["sent"] * 3
    client = mailstack.imap(CAROL)
    try:
        client.select_folder("Sent", readonly=True)
        for m in sent:
            uids = client.search(["HEADER", "Message-ID", m["message_id"]])
            assert len(uids) == 1 and b"\\Seen" in client.get_flags(uids)[uids[0]]
    finally:
        client.logout()
    # one SMTP and one IMAP session for the whole run: two credential reads, not one per copy
    reads = mailboxes_repo.credential_reads(appliance.db.connection(), box["id"])
    assert [r["reads"] for r in reads] == [2]


def test_a_failing_copy_never_holds_up_sending(appliance, mailstack, caplog):
    box = connect_mailbox(appliance, mailstack, CAROL, save_sent_copy=True)
    with appliance.db.transaction() as conn:  # a folder the server refuses to APPEND to
        conn.execute("UPDATE mailboxes SET sent_folder = 'No such folder' WHERE id = ?", (box["id"],))
    leads = add_leads(appliance, [f"bob+nocopy{i}@example.test" for i in range(4)])
    launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    with caplog.at_level("WARNING", logger="mailflow.engine"):
        SendingEngine(appliance, threads=1, policy=POLICY)._work(box["id"])
    assert [m["status"] for m in messages(appliance)] == ["sent"] * 4
    failures = [r for r in caplog.records if r.getMessage() == "engine.sent_copy_failed"]
    assert len(failures) == 2  # a fresh session once, then no more tries in this run
    reads = mailboxes_repo.credential_reads(appliance.db.connection(), box["id"])
    assert [r["reads"] for r in reads] == [3]  # SMTP once, IMAP twice


def test_deleting_a_mailbox_moves_its_unsent_work_to_the_pool(appliance, mailstack):
    first = connect_mailbox(appliance, mailstack, ALICE)
    second = connect_mailbox(appliance, mailstack, CAROL)
    leads = add_leads(appliance, [f"bob+del{i}@example.test" for i in range(10)])
    launched_campaign(appliance, [first["id"], second["id"]], leads)
    planner.plan_due(appliance.db, rng=random.Random(5))
    on_first = [m for m in messages(appliance) if m["mailbox_id"] == first["id"]]
    assert on_first
    mailboxes.delete(appliance.db, admin_principal(appliance), first["id"])
    assert planner.plan_due(appliance.db) == len(on_first)
    assert {m["mailbox_id"] for m in messages(appliance)} == {second["id"]}


# -- batches: several messages of one mailbox claimed, sent and recorded together ----------------

def test_a_batch_claim_checks_every_message_at_claim_time(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE)
    emails = [f"lead{i}@batch{i}.example" for i in range(6)]
    leads = add_leads(appliance, emails)
    launched_campaign(appliance, [box["id"]], leads)
    assert planner.plan_due(appliance.db) == 6
    planned = {m["to_email"]: m for m in messages(appliance)}
    # recorded after planning, before the claim: one suppression, one reply, one unsubscribe
    with appliance.db.transaction() as conn:
        suppressions.suppress(conn, Actor.system(), emails[1], reason="manual")
        messages_repo.stop_enrollment(conn, planned[emails[2]]["enrollment_id"], "replied")
        conn.execute("UPDATE leads SET status = 'unsubscribed' WHERE email = ?", (emails[3],))
    taken = sender.claim_batch(appliance.db, box["id"], POLICY, 10)
    assert sorted(c.message["to_email"] for c in taken) == [emails[0], emails[4], emails[5]]
    after = {m["to_email"]: m for m in messages(appliance)}
    assert [after[e]["status"] for e in emails] == ["sending", "cancelled", "cancelled", "cancelled", "sending",
                                                    "sending"]
    assert after[emails[1]]["last_error"] == "suppressed" and after[emails[3]]["last_error"] == "unsubscribed"
    assert all(c.identity["company"] == "Acme GmbH" and c.steps and c.thread == [] for c in taken)


def test_a_batch_claim_keeps_the_daily_cap_counting_messages_in_flight(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE)
    leads = add_leads(appliance, [f"lead{i}@cap{i}.example" for i in range(6)])
    launched_campaign(appliance, [box["id"]], leads)
    assert planner.plan_due(appliance.db) == 6
    mailboxes.update(appliance.db, appliance.keys, admin_principal(appliance), box["id"], {"daily_limit": 3})
    assert len(sender.claim_batch(appliance.db, box["id"], POLICY, 2)) == 2  # claimed, not yet sent
    assert len(sender.claim_batch(appliance.db, box["id"], POLICY, 10)) == 1  # the two in flight count
    assert sender.claim_batch(appliance.db, box["id"], POLICY, 10) == []
    states = [m["status"] for m in messages(appliance)]
    assert states.count("sending") == 3 and states.count("planned") == 3
    held = [m for m in messages(appliance) if m["status"] == "planned" and m["last_error"] == "daily cap reached"]
    assert held and all(m["planned_at"] > to_iso(datetime.now(timezone.utc)) for m in held)


def test_a_batch_claim_spreads_one_domain_also_across_mailboxes(appliance, mailstack):
    first = connect_mailbox(appliance, mailstack, ALICE)
    second = connect_mailbox(appliance, mailstack, CAROL)
    spread = sender.Policy(domain_spread_seconds=120, base_url=POLICY.base_url)
    one = add_leads(appliance, ["a@same.example", "b@same.example", "c@other.example"])
    launched_campaign(appliance, [first["id"]], one)
    two = add_leads(appliance, ["d@same.example"])
    launched_campaign(appliance, [second["id"]], two)
    planner.plan_due(appliance.db)
    taken = sender.claim_batch(appliance.db, first["id"], spread, 10)
    assert sorted(c.message["to_email"] for c in taken) == ["a@same.example", "c@other.example"]
    # the other mailbox's message to the same company waits for the one in flight (claimed, not sent)
    assert sender.claim_batch(appliance.db, second["id"], spread, 10) == []
    now = datetime.now(timezone.utc)
    for m in messages(appliance):
        if m["to_email"] in ("b@same.example", "d@same.example"):
            assert m["status"] == "planned"
            assert timedelta(seconds=110) < datetime.fromisoformat(m["planned_at"].replace("Z", "+00:00")) - now \
                <= timedelta(seconds=120)


def test_a_mailbox_with_a_gap_claims_one_message_at_a_time(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE, min_gap_seconds=60, max_gap_seconds=120)
    leads = add_leads(appliance, [f"lead{i}@gap{i}.example" for i in range(3)])
    launched_campaign(appliance, [box["id"]], leads)
    with appliance.db.transaction() as conn:  # all three due now, whatever the planner estimated
        planner.plan_due(appliance.db)
        conn.execute("UPDATE messages SET planned_at = '2000-01-01T00:00:00Z'")
    assert len(sender.claim_batch(appliance.db, box["id"], POLICY, 10)) == 1


def composed_while_waiting(monkeypatch) -> list[bool]:
    """Each compose in order: True when it ran while a message was on its way to the server."""
    sending, seen = [False], []
    real_send, real_compose = SmtpSession.send, sender.compose_or_fail

    def send(session, *args, **kwargs):
        sending[0] = True
        try:
            return real_send(session, *args, **kwargs)
        finally:
            sending[0] = False

    def compose(*args, **kwargs):
        seen.append(sending[0])
        return real_compose(*args, **kwargs)

    monkeypatch.setattr(SmtpSession, "send", send)
    monkeypatch.setattr(sender, "compose_or_fail", compose)
    return seen


def test_the_engine_sends_a_batch_exactly_once_and_records_each(appliance, mailstack, monkeypatch):
    composes = composed_while_waiting(monkeypatch)
    box = connect_mailbox(appliance, mailstack, ALICE)
    tag = f"b{time.monotonic_ns()}"
    leads = add_leads(appliance, [f"bob+{tag}.{i}@example.test" for i in range(40)])
    launched_campaign(appliance, [box["id"]], leads)
    assert planner.plan_due(appliance.db) == 40
    SendingEngine(appliance, threads=1, policy=POLICY)._work(box["id"])
    sent = messages(appliance)
    assert [m["status"] for m in sent] == ["sent"] * 40 and all(m["attempts"] == 1 for m in sent)
    events = appliance.db.connection().execute("SELECT count(*) FROM events WHERE kind = 'sent'").fetchone()[0]
    assert events == 40
    assert messages_repo.pacing(appliance.db.connection(), box["id"]) is not None
    got = inbox(mailstack, BOB, ["TO", tag])
    deadline = time.monotonic() + 5
    while len(got) < 40 and time.monotonic() < deadline:
        time.sleep(0.2)
        got = inbox(mailstack, BOB, ["TO", tag])
    assert sorted(g["Message-ID"] for g in got) == sorted(m["message_id"] for m in sent)
    # every message after the first was composed while the one before it waited for the server
    assert len(composes) == 40 and composes[0] is False and all(composes[1:])


def test_stopping_puts_claimed_but_unsent_messages_back(appliance, mailstack, monkeypatch):
    monkeypatch.setattr(send_feed, "FIRST_CLAIM", 20)  # claimed well ahead of the stop
    box = connect_mailbox(appliance, mailstack, ALICE)
    leads = add_leads(appliance, [f"bob+stop{i}@example.test" for i in range(12)])
    launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    engine = SendingEngine(appliance, threads=1, policy=POLICY)
    real, sent = sender.transmit, []

    def transmit_then_stop(*args, **kwargs):  # SIGTERM arrives while the sixth message is on the wire
        sent.append(1)
        if len(sent) == 6:
            engine._stopping.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(sender, "transmit", transmit_then_stop)
    engine._work(box["id"])
    states = [(m["status"], m["attempts"], m["claimed_at"]) for m in messages(appliance)]
    assert states.count(("planned", 0, None)) == 6  # claimed ahead, never sent: as if never claimed
    assert [s for s, _, _ in states].count("sent") == 6
    monkeypatch.setattr(sender, "transmit", real)
    SendingEngine(appliance, threads=1, policy=POLICY)._work(box["id"])
    assert [m["status"] for m in messages(appliance)] == ["sent"] * 12
    assert all(m["attempts"] == 1 for m in messages(appliance))


def test_a_pause_mid_burst_stops_all_that_was_not_yet_claimed(appliance, mailstack, monkeypatch):
    monkeypatch.setattr(send_feed, "FIRST_CLAIM", 4)
    monkeypatch.setattr(send_feed, "MOST_AHEAD", 4)  # how far ahead a burst claims, at most
    box = connect_mailbox(appliance, mailstack, ALICE)
    leads = add_leads(appliance, [f"bob+pause{i}@example.test" for i in range(12)])
    campaign = launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    real, sent = sender.transmit, []

    def transmit_then_pause(*args, **kwargs):  # someone pauses while the second message is on the wire
        sent.append(1)
        if len(sent) == 2:
            campaigns.pause(appliance.db, admin_principal(appliance), campaign["id"])
        return real(*args, **kwargs)

    monkeypatch.setattr(sender, "transmit", transmit_then_pause)
    SendingEngine(appliance, threads=1, policy=POLICY)._work(box["id"])
    statuses = [m["status"] for m in messages(appliance)]
    assert statuses.count("sent") == 4 and statuses.count("planned") == 8  # the claimed four, then nothing
    assert not [s for s in statuses if s == "sending"]


def test_a_message_that_cannot_be_composed_fails_alone(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE)
    tag = f"c{time.monotonic_ns()}"
    leads = add_leads(appliance, [f"bob+{tag}.{i}@example.test" for i in range(6)])
    launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    with appliance.db.transaction() as conn:  # edited after the launch check: no name, no fallback
        conn.execute("UPDATE leads SET first_name = '' WHERE id IN (?, ?)", (leads[0], leads[3]))
    SendingEngine(appliance, threads=1, policy=POLICY)._work(box["id"])
    by_lead = {m["lead_id"]: m for m in messages(appliance)}
    assert [by_lead[lead]["status"] for lead in leads] == ["failed", "sent", "sent", "failed", "sent", "sent"]
    assert "no first_name" in by_lead[leads[3]]["last_error"]
    assert len(inbox(mailstack, BOB, ["TO", tag])) >= 1
    assert not [m for m in messages(appliance) if m["status"] in ("sending", "planned")]


def test_a_database_error_while_waiting_stops_the_worker_and_loses_nothing(appliance, mailstack, monkeypatch):
    monkeypatch.setattr(send_feed, "FIRST_CLAIM", 3)
    monkeypatch.setattr(send_feed, "MOST_AHEAD", 3)
    box = connect_mailbox(appliance, mailstack, ALICE)
    tag = f"d{time.monotonic_ns()}"
    leads = add_leads(appliance, [f"bob+{tag}.{i}@example.test" for i in range(10)])
    launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    real, rounds = sender.record_and_claim, []

    def second_round_fails(*args, **kwargs):  # the round run while the third message waits
        rounds.append(1)
        if len(rounds) == 2:
            raise sqlite_error("database is locked")
        return real(*args, **kwargs)

    monkeypatch.setattr(sender, "record_and_claim", second_round_fails)
    SendingEngine(appliance, threads=1, policy=POLICY)._work(box["id"])
    statuses = [m["status"] for m in messages(appliance)]
    assert statuses.count("sent") == 3 and statuses.count("planned") == 7  # the third went; it is recorded
    monkeypatch.setattr(sender, "record_and_claim", real)
    SendingEngine(appliance, threads=1, policy=POLICY)._work(box["id"])
    sent = messages(appliance)
    assert [m["status"] for m in sent] == ["sent"] * 10 and all(m["attempts"] == 1 for m in sent)
    got = inbox(mailstack, BOB, ["TO", tag])
    deadline = time.monotonic() + 5
    while len(got) < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
        got = inbox(mailstack, BOB, ["TO", tag])
    assert sorted(g["Message-ID"] for g in got) == sorted(m["message_id"] for m in sent)  # once each


def sqlite_error(text: str) -> Exception:
    import sqlcipher3
    return sqlcipher3.dbapi2.OperationalError(text)


def test_an_edited_template_is_used_from_the_next_claim(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE)
    leads = add_leads(appliance, ["ann@edit.example", "ben@edit.example"], first_name="Ann")
    campaign = launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    now = datetime.now(timezone.utc)
    first = sender.claim_batch(appliance.db, box["id"], POLICY, 1)[0]
    assert sender.compose_message(appliance.db, appliance.keys, first, POLICY, now)[1] == "Hello Ann"
    steps = [{"delay_minutes": 0, "variants": [{"subject": "Changed for {{first_name}}", "body": "New text."}]},
             {"delay_minutes": 60, "variants": [{"subject": "", "body": "Step two."}]}]
    campaigns.update(appliance.db, admin_principal(appliance), campaign["id"], {"steps": steps})
    second = sender.claim_batch(appliance.db, box["id"], POLICY, 1)[0]
    raw, subject, _ = sender.compose_message(appliance.db, appliance.keys, second, POLICY, now)
    assert subject == "Changed for Ann" and b"New text." in raw


def test_due_follow_ups_are_planned_before_new_leads(appliance, mailstack, monkeypatch):
    box = connect_mailbox(appliance, mailstack, ALICE)
    started = add_leads(appliance, [f"bob+f{i}@example.test" for i in range(2)])
    campaign = launched_campaign(appliance, [box["id"]], started)
    planner.plan_due(appliance.db)
    assert run_until_idle(appliance, box["id"]) == ["sent", "sent"]
    for row in appliance.db.connection().execute("SELECT id FROM enrollments").fetchall():
        make_due(appliance, row["id"])
    campaigns.enroll(appliance.db, admin_principal(appliance), campaign["id"],
                     add_leads(appliance, [f"bob+n{i}@example.test" for i in range(3)]))
    monkeypatch.setattr(planner, "BATCH", 2)  # room for two this tick: the threads already started
    assert planner.plan_due(appliance.db) == 2
    assert sorted(m["step"] for m in messages(appliance) if m["status"] == "planned") == [1, 1]
    assert planner.plan_due(appliance.db) == 2 and planner.plan_due(appliance.db) == 1


def test_the_pool_picks_mailboxes_by_remaining_room_never_a_full_or_paused_one():
    rows = [{"id": i, "status": status, "sending_enabled": 1, "next_allowed_at": None, "min_gap_seconds": 0,
             "max_gap_seconds": 0} for i, status in enumerate(["active", "active", "active", "paused"], 1)]
    pool = planner.Pool.__new__(planner.Pool)  # the choice alone, without the database read
    pool.rows, pool.room, pool._table = {r["id"]: r for r in rows}, {1: 3000, 2: 1000, 3: 0, 4: 5000}, None
    rng = random.Random(11)
    picks = [pool.choose(None, rng) for _ in range(4000)]
    assert set(picks) == {1, 2}
    assert 2.6 < picks.count(1) / picks.count(2) < 3.4
    pool.room = {1: 1, 2: 0, 3: 0, 4: 5000}  # rooms shrank under the table: still exact
    assert pool.choose(None, rng) == 1
    pool.room[1] = 0
    assert pool.choose(None, rng) is None and pool.choose(4, rng) is None  # a paused sticky mailbox waits


def test_a_step_is_never_planned_twice(appliance, mailstack):
    box = connect_mailbox(appliance, mailstack, ALICE)
    leads = add_leads(appliance, ["bob+once@example.test", "bob+once2@example.test"])
    launched_campaign(appliance, [box["id"]], leads)
    assert planner.plan_due(appliance.db) == 2
    first = messages(appliance)[0]
    make_due(appliance, first["enrollment_id"])  # its step due again, by mistake
    assert planner.plan_due(appliance.db) == 0  # the planner counts only what it really inserted
    assert len(messages(appliance)) == 2
