"""The mailbox sync against the real mail stack: incremental reading, never marking read,
UIDVALIDITY changes, oversized messages, a connection cut mid-fetch, IDLE and polling, paused
mailboxes, failed sign-ins, hostile folder names, and a lead's reply stopping its sequence."""

from __future__ import annotations

import itertools
import random
import selectors
import time
from datetime import datetime, timezone

import pytest

from appliance.db import mailboxes_repo, messages_repo, sync_repo
from appliance.db.timefmt import to_iso, utcnow_iso
from appliance.mail import imap, smtp
from appliance.mail.tls import TlsPolicy
from appliance.server import build_scheduler, stop_background
from appliance.services import mailboxes, planner
from appliance.services.errors import ValidationError
from appliance.services.sync import SyncEngine
from appliance.services.sync_folder import Limits
from appliance.services.sync_mailbox import Backoff

from .support.campaign_setup import admin_principal, connect_mailbox
from .support.sync_setup import LEAD_SINK, oversized_reply, reply, send_due, sent_campaign, sync_users
from .support.tcp_proxy import CuttingProxy

pytestmark = pytest.mark.mailstack
USERS = sync_users(30)
_user_numbers = itertools.count()


@pytest.fixture(scope="module")
def stack(mailstack):
    missing = {u: p for u, p in USERS.items() if u not in mailstack.users}
    if missing:
        mailstack.add_users(missing)
    return mailstack


def new_user() -> str:
    email = f"sync{next(_user_numbers)}@example.test"
    assert email in USERS, "add more users to USERS"
    return email


@pytest.fixture
def box(appliance, stack):
    return connect_mailbox(appliance, stack, new_user())


@pytest.fixture
def engines(appliance):
    made = []

    def make(**kw) -> SyncEngine:
        kw = {"threads": 4, "interval": 3600, "idle": False, **kw}
        engine = SyncEngine(appliance.db, appliance.keys, **kw)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        assert engine.stop(10)


def rows(app, sql: str, *params) -> list[dict]:
    return [dict(r) for r in app.db.connection().execute(sql, params)]


def inbox(app) -> list[dict]:
    return rows(app, "SELECT * FROM inbox_messages ORDER BY id")


def events(app, kind: str) -> int:
    return app.db.connection().execute("SELECT count(*) FROM events WHERE kind = ?", (kind,)).fetchone()[0]


def enrollment(app, enrollment_id: int) -> dict:
    return rows(app, "SELECT * FROM enrollments WHERE id = ?", enrollment_id)[0]


def folders(app, mailbox_id: int) -> dict[str, dict]:
    return {r["folder"]: dict(r) for r in sync_repo.folders_of(app.db.connection(), mailbox_id)}


def wait_for(condition, timeout: float = 10, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return condition()


def credential_reads(app, mailbox_id: int) -> int:
    """How often the scheduler decrypted the App Password (audited, counted per day)."""
    return sum(r["reads"] for r in mailboxes.credential_reads(app.db, mailbox_id))


def tick_until(engine: SyncEngine, condition, timeout: float = 10):
    """What the scheduler does every second, faster: tick until the condition holds."""
    def ticked():
        engine.tick()
        return condition()
    return wait_for(ticked, timeout, step=0.1)


def flags(stack, user: str, folder: str = "INBOX") -> dict[int, tuple]:
    client = stack.imap(user)
    try:
        client.select_folder(folder, readonly=True)
        found = client.fetch(client.search("ALL"), ["FLAGS"])
        assert found, "no messages to look at"
        return {uid: data[b"FLAGS"] for uid, data in found.items()}
    finally:
        client.logout()


def test_reads_incrementally_and_never_marks_anything_read(appliance, stack, box, engines):
    leads = sent_campaign(appliance, box, 3, tag="inc")
    for lead in leads:
        stack.deliver(box["email"], reply(lead, box["email"]))
    engine = engines()

    first = engine.run_cycle()
    assert (first.fetched, first.new) == (3, 3)
    reads = credential_reads(appliance, box["id"])
    stored = inbox(appliance)
    assert [r["kind"] for r in stored] == ["reply"] * 3 and {r["folder"] for r in stored} == {"INBOX"}
    assert all(enrollment(appliance, lead["enrollment_id"])["stop_reason"] == "replied" for lead in leads)
    state = folders(appliance, box["id"])
    assert set(state) == {"INBOX", "Spam"} and state["Spam"]["role"] == "junk"
    assert state["INBOX"]["last_uid"] == 3 and state["INBOX"]["uidvalidity"] and state["INBOX"]["last_error"] is None

    second = engine.run_cycle()
    assert (second.fetched, second.new) == (0, 0)  # nothing new: STATUS said so, nothing fetched

    stack.deliver(box["email"], reply(leads[0], box["email"], body="One more thing."))
    third = engine.run_cycle()
    assert (third.fetched, third.new) == (1, 1) and folders(appliance, box["id"])["INBOX"]["last_uid"] == 4
    # BODY.PEEK on a read-only EXAMINE: not one message became \Seen
    assert all(b"\\Seen" not in f for f in flags(stack, box["email"]).values())
    assert credential_reads(appliance, box["id"]) == reads  # the session stayed open: no new sign-in


def test_search_from_drops_the_highest_uid_the_server_adds(stack):
    user = new_user()
    for n in range(2):
        stack.deliver(user, f"Subject: m{n}\r\nMessage-ID: <m{n}.{time.time_ns()}@x.test>\r\n\r\nhi\r\n".encode())
    endpoint = smtp.Endpoint(stack.host, stack.imaps_port, "ssl", TlsPolicy(ca_pem=stack.cafile.read_text()))
    with imap.ImapSession(endpoint, user, USERS[user]) as session:
        session.examine("INBOX")
        assert session.client.search(["UID", "5:*"]) == [2]  # RFC 3501: "*" is the highest UID in use
        assert session.search_from(5) == [] and session.search_from(2) == [2] and session.search_from(1) == [1, 2]


def test_a_renumbered_folder_is_read_again_without_any_effect_twice(appliance, stack, box, engines):
    leads = sent_campaign(appliance, box, 2, tag="uidv")
    client = stack.imap(box["email"])
    answers = [reply(lead, box["email"]) for lead in leads]
    try:
        client.append("Spam", answers[0])  # replies filtered as spam count too
        stack.deliver(box["email"], answers[1])
        engine = engines()
        assert engine.run_cycle().new == 2
        before = folders(appliance, box["id"])
        replied = events(appliance, "replied")
        assert replied == 2 and {r["folder"] for r in inbox(appliance)} == {"INBOX", "Spam"}

        # The server renumbers Spam: deleted and created again (a new UIDVALIDITY), same mail in it.
        client.delete_folder("Spam")
        client.create_folder("Spam")
        client.append("Spam", answers[0])
        again = engine.run_cycle()
        after = folders(appliance, box["id"])
        assert after["Spam"]["uidvalidity"] != before["Spam"]["uidvalidity"]
        assert (again.fetched, again.new) == (1, 0)
    finally:
        client.logout()

    # A stored UIDVALIDITY that no longer matches (here: changed by hand) means the same.
    with appliance.db.transaction() as conn:
        sync_repo.save(conn, box["id"], "INBOX", uidvalidity=1, last_uid=99, synced_at=utcnow_iso(), last_error=None)
    fresh = engines().run_cycle()
    assert (fresh.fetched, fresh.new) == (1, 0)  # INBOX read again: its reply recognised, nothing doubled
    assert folders(appliance, box["id"])["INBOX"]["last_uid"] == 1
    assert events(appliance, "replied") == replied and len(inbox(appliance)) == 2


def test_an_oversized_message_is_read_by_its_header_and_first_part(appliance, stack, box, engines):
    [lead] = sent_campaign(appliance, box, 1, tag="big")
    stack.deliver(box["email"], oversized_reply(lead, box["email"], body="Yes, interested. Deck attached.",
                                                attachment_bytes=3 * 1024 * 1024))
    seen = []

    def spy(db, mailbox_id, **kw):
        seen.append(kw)
        from appliance.services.inbound import ingest
        return ingest(db, mailbox_id, **kw)

    assert engines(ingest=spy).run_cycle().new == 1
    assert seen[0]["truncated"] is True and len(seen[0]["raw"]) < 70 * 1024
    [row] = inbox(appliance)
    assert row["truncated"] == 1 and row["kind"] == "reply" and "interested" in row["body_text"]
    assert enrollment(appliance, lead["enrollment_id"])["stop_reason"] == "replied"


def test_a_connection_cut_mid_fetch_loses_nothing_and_doubles_nothing(appliance, stack, engines):
    proxy = CuttingProxy((stack.host, stack.imaps_port)).start()
    try:
        box = connect_mailbox(appliance, stack, new_user(), imap_host=proxy.host, imap_port=proxy.port)
        leads = sent_campaign(appliance, box, 12, tag="cut")
        for lead in leads:
            stack.deliver(box["email"], reply(lead, box["email"], padding=20_000))
        engine = engines(limits=Limits(chunk_messages=3), backoff=Backoff(base=0.05, cap=0.2))
        proxy.cut_after(6 * 20_000)  # about half of the replies' bytes, after login: in the middle of the fetch

        engine.run_cycle()
        assert proxy.cuts == 1
        got = len(inbox(appliance))
        assert 0 < got < 12, "the cut should fall between two chunks' worth of messages"
        cursor = folders(appliance, box["id"])["INBOX"]
        assert cursor["last_uid"] < 12 and cursor["last_error"]  # the cursor holds only what was recorded
        assert engine.counts()["backing_off"] == 1

        # reconnect after the backoff (scheduler ticks), read the rest
        assert tick_until(engine, lambda: len(inbox(appliance)) == 12)
    finally:
        proxy.stop()
    assert events(appliance, "replied") == 12 and len({r["lead_id"] for r in inbox(appliance)}) == 12
    assert wait_for(lambda: folders(appliance, box["id"])["INBOX"]["last_uid"] == 12)
    # each message was fetched exactly once: the chunk cut in half was not yet counted as read
    assert engine.mailbox(box["id"]).fetched == 12


def test_an_idle_session_that_drops_reconnects_with_backoff(appliance, stack, engines):
    proxy = CuttingProxy((stack.host, stack.imaps_port)).start()
    try:
        box = connect_mailbox(appliance, stack, new_user(), imap_host=proxy.host, imap_port=proxy.port)
        [lead] = sent_campaign(appliance, box, 1, tag="drop")
        engine = engines(idle=True, backoff=Backoff(base=0.3, cap=1))
        engine.run_cycle()
        assert wait_for(lambda: engine.counts()["idling"] == 1)
        reads = credential_reads(appliance, box["id"])

        proxy.cut_now()  # the selector sees the end of the connection, not a message
        assert wait_for(lambda: engine.counts() == {"mailboxes": 1, "sessions": 0, "idling": 0, "backing_off": 1})
        state = engine.mailbox(box["id"])
        assert state.failures == 1 and state.retry_at > time.monotonic() - 1
        engine.tick()
        assert engine.counts()["sessions"] == 0  # not before the backoff has passed
        assert tick_until(engine, lambda: engine.counts()["idling"] == 1)
        assert credential_reads(appliance, box["id"]) == reads + 1 and state.failures == 0

        stack.deliver(box["email"], reply(lead, box["email"]))
        assert wait_for(lambda: enrollment(appliance, lead["enrollment_id"])["status"] == "stopped")
    finally:
        proxy.stop()


def test_backoff_grows_with_jitter_up_to_a_cap():
    backoff, rng = Backoff(base=2, cap=300), random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(1, 12)]
    assert all(2 ** (n - 1) <= d <= 2 ** n for n, d in zip(range(1, 6), delays))  # within [0.5, 1] x base x 2^(n-1)
    assert max(delays) <= 300 and delays[-1] >= 150
    assert len({round(backoff.delay(3, rng), 6) for _ in range(20)}) > 1  # jitter: not all at the same instant


def test_idle_sees_a_reply_without_a_poll(appliance, stack, box, engines):
    [lead] = sent_campaign(appliance, box, 1, tag="idle")
    engine = engines(idle=True, interval=3600)
    engine.run_cycle()
    assert wait_for(lambda: engine.counts()["idling"] == 1)

    stack.deliver(box["email"], reply(lead, box["email"]))  # no tick from here on: only IDLE can see it
    assert wait_for(lambda: enrollment(appliance, lead["enrollment_id"])["status"] == "stopped", timeout=10)
    assert [r["kind"] for r in inbox(appliance)] == ["reply"]
    assert wait_for(lambda: engine.counts()["idling"] == 1)  # back in IDLE for the next one


def test_polling_works_with_idle_off(appliance, stack, box, engines):
    [lead] = sent_campaign(appliance, box, 1, tag="poll")
    engine = engines(idle=False, interval=1)
    engine.run_cycle()
    assert engine.counts() == {"mailboxes": 1, "sessions": 1, "idling": 0, "backing_off": 0}
    reads = credential_reads(appliance, box["id"])
    stack.deliver(box["email"], reply(lead, box["email"]))
    time.sleep(1.5)
    assert inbox(appliance) == []  # nothing reads it until the next poll ...
    assert tick_until(engine, lambda: len(inbox(appliance)) == 1)
    assert enrollment(appliance, lead["enrollment_id"])["status"] == "stopped"  # ... which does
    assert credential_reads(appliance, box["id"]) == reads


def test_a_paused_mailbox_is_not_read_and_loses_its_session(appliance, stack, box, engines):
    [lead] = sent_campaign(appliance, box, 1, tag="pause")
    engine = engines(idle=True)
    engine.run_cycle()
    assert wait_for(lambda: engine.counts()["idling"] == 1)
    mailboxes.pause(appliance.db, admin_principal(appliance), box["id"])
    engine.tick()
    assert wait_for(lambda: engine.counts()["sessions"] == 0)
    stack.deliver(box["email"], reply(lead, box["email"]))
    time.sleep(1.2)  # longer than the server's IDLE notification delay
    assert engine.run_cycle().fetched == 0 and inbox(appliance) == []
    assert enrollment(appliance, lead["enrollment_id"])["status"] == "active"


def test_a_failed_sign_in_is_recorded_and_three_pause_the_mailbox(appliance, stack, box, engines):
    mailboxes.update(appliance.db, appliance.keys, admin_principal(appliance), box["id"], {"password": "wrong"})
    engine = engines()
    for attempt in (1, 2, 3):
        engine.run_cycle()
        got = mailboxes.get(appliance.db, box["id"])
        assert got["last_error_code"] == "auth_failed" and got["consecutive_failures"] == attempt
        if attempt < 3:
            assert got["status"] == "error"
            assert engine.run_cycle().fetched == 0 and engine.counts()["mailboxes"] == 0  # not active: not tried
            with appliance.db.transaction() as conn:  # as the periodic re-check would, while it still fails
                mailboxes_repo.update(conn, box["id"], {"status": "active"}, utcnow_iso())
    assert got["status"] == "paused" and "failed sign-ins" in got["status_reason"]


def test_a_hostile_folder_name_is_refused(appliance, stack, box, engines):
    with pytest.raises(ValidationError):
        mailboxes.update(appliance.db, appliance.keys, admin_principal(appliance), box["id"],
                         {"junk_folder": "Spam\r\nA1 CREATE Injected"})
    with appliance.db.transaction() as conn:  # as if stored before validation existed, or by hand
        mailboxes_repo.update(conn, box["id"], {"junk_folder": "Spam\r\nA1 CREATE Injected"}, utcnow_iso())
    engines().run_cycle()
    assert set(folders(appliance, box["id"])) == {"INBOX"}  # INBOX still read; the bad name never sent
    client = stack.imap(box["email"])
    try:
        assert "Injected" not in {name for _, _, name in client.list_folders()}
    finally:
        client.logout()


def test_a_reply_delivered_to_the_mailbox_stops_the_leads_sequence(appliance, stack, box, engines):
    steps = [{"delay_minutes": 0, "variants": [{"subject": "Quick question", "body": "Hi {{first_name}}."}]},
             {"delay_minutes": 60, "variants": [{"subject": "", "body": "Following up, {{first_name}}."}]}]
    [lead] = sent_campaign(appliance, box, 1, tag="e2e", steps=steps)
    sync = engines(idle=True)
    sync.run_cycle()

    # The lead receives step 1 in its own mailbox on the stack and answers it.
    client = stack.imap(LEAD_SINK)
    try:
        client.select_folder("INBOX", readonly=True)
        [uid] = wait_for(lambda: client.search(["HEADER", "Message-ID", lead["message_id"]]), timeout=5)
        received = client.fetch([uid], ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM)]"])[uid]
    finally:
        client.logout()
    assert lead["message_id"].encode() in next(iter(v for k, v in received.items() if k != b"SEQ"))
    stack.deliver(box["email"], reply(lead, box["email"], body="Yes, let's talk on Tuesday."),
                  mail_from=lead["email"])

    stopped = wait_for(lambda: enrollment(appliance, lead["enrollment_id"])["status"] == "stopped", timeout=10)
    assert stopped and enrollment(appliance, lead["enrollment_id"])["stop_reason"] == "replied"
    assert rows(appliance, "SELECT status FROM leads WHERE id = ?", lead["lead_id"])[0]["status"] == "replied"
    assert events(appliance, "replied") == 1
    # step 2's delay passes: nothing more goes to this lead
    with appliance.db.transaction() as conn:
        messages_repo.defer_enrollment(conn, lead["enrollment_id"], to_iso(datetime.now(timezone.utc)))
    planner.plan_due(appliance.db)
    send_due(appliance)
    assert len(rows(appliance, "SELECT id FROM messages WHERE lead_id = ?", lead["lead_id"])) == 1


def test_the_server_runs_the_sync_and_stops_it_cleanly(appliance, stack, box):
    scheduler = build_scheduler(appliance)
    assert "sync.dispatch" in {job.name for job in scheduler.jobs()}
    sync = appliance.sync
    assert sync.state == "not_started"
    sync.tick()
    assert sync.state == "running" and wait_for(lambda: sync.counts()["idling"] == 1)
    started = time.monotonic()
    stop_background(appliance, 5)
    assert time.monotonic() - started < 5 and sync.state == "stopped"
    assert sync.counts()["sessions"] == 0 and sync.tick() == []


def test_idle_watcher_notices_an_answer_already_buffered(stack):
    """An answer can arrive together with IDLE's continuation, read into our buffers where the
    selector cannot see it; has_buffered_input() finds it."""
    user = new_user()
    endpoint = smtp.Endpoint(stack.host, stack.imaps_port, "ssl", TlsPolicy(ca_pem=stack.cafile.read_text()))
    with imap.ImapSession(endpoint, user, USERS[user]) as session:
        session.examine("INBOX")
        session.idle_start()
        assert not session.has_buffered_input()
        stack.deliver(user, b"Subject: x\r\nMessage-ID: <buffered@x.test>\r\n\r\nhi\r\n")
        time.sleep(1.2)  # the server's IDLE notification delay
        session.client._imap.file.peek(1)  # as a reader that read ahead would have
        with selectors.DefaultSelector() as selector:
            selector.register(session.fileno(), selectors.EVENT_READ)
            assert selector.select(0) == []  # the socket itself has nothing more to say
        assert session.has_buffered_input()
        assert session.idle_done() is True and session.search_from(1) == [1]
