"""What inbound mail does to leads and sequences (appliance/services/inbound.py), on the real
encrypted database with messages really sent through the local mail stack: replies stop the
sequence, bounces and complaints suppress, auto-replies only count, and every effect happens
once however often the same message is read."""

from __future__ import annotations

import json
import random
import time

import pytest

from appliance.db.timefmt import utcnow_iso
from appliance.mail.smtp import SmtpSession
from appliance.services import inbound, links, mailboxes, planner, sender, suppressions
from appliance.services.audit import Actor

from .support.campaign_setup import add_leads, connect_mailbox, launched_campaign

pytestmark = pytest.mark.mailstack
ALICE = "alice@example.test"
POLICY = sender.Policy(domain_spread_seconds=0, base_url="https://mail.acme.example")


def send_first_step(app, stack, emails: list[str], **settings):
    """A launched two-step campaign whose first step really went out to each address."""
    box = connect_mailbox(app, stack, ALICE)
    leads = add_leads(app, emails)
    campaign = launched_campaign(app, [box["id"]], leads, **settings)
    planner.plan_due(app.db)
    creds = mailboxes.credentials(app.db, app.keys, box["id"], Actor.system("scheduler"), "send")
    with SmtpSession(creds.smtp, creds.username, creds.password, creds.helo) as session:
        while (claimed := sender.claim(app.db, box["id"], POLICY)) is not None:
            assert sender.send_one(app.db, app.keys, claimed, session, POLICY, random.Random(1)) == "sent"
    sent = {r["lead_id"]: dict(r) for r in app.db.connection().execute("SELECT * FROM messages WHERE status = 'sent'")}
    return box, campaign, leads, sent


def mail(headers: dict[str, str], body: str = "Thanks, tell me more.") -> bytes:
    head = {"Message-ID": f"<{time.monotonic_ns()}.{random.random()}@lead.example>",
            "Date": "Tue, 24 Nov 2026 10:00:00 +0000", "Subject": "Re: Hello", **headers}
    return ("\r\n".join(f"{k}: {v}" for k, v in head.items()) + "\r\n\r\n" + body + "\r\n").encode()


def dsn(recipient: str, status: str, original_id: str) -> bytes:
    action = "failed" if status.startswith("5") else "delayed" if status == "4.4.7" else "failed"
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\nTo: {ALICE}\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn.{time.monotonic_ns()}@mx.example.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
            f"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.test\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
            f"Diagnostic-Code: smtp; {status.replace('.', '')[:3]} {status} mailbox problem\r\n\r\n"
            f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {original_id}\r\nTo: {recipient}\r\n"
            "Subject: Hello\r\n\r\n--b--\r\n").encode()


def arf(recipient: str, original_id: str) -> bytes:
    return (f"From: Feedback Loop <fbl@fbl.example.net>\r\nTo: {ALICE}\r\nSubject: complaint\r\n"
            f"Message-ID: <arf.{time.monotonic_ns()}@fbl.example.net>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n"
            f"--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n"
            f"Original-Rcpt-To: <{recipient}>\r\n\r\n"
            f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {original_id}\r\nTo: {recipient}\r\n\r\n"
            "--b--\r\n").encode()


def enrollment(app, lead_id: int) -> dict:
    return dict(app.db.connection().execute("SELECT * FROM enrollments WHERE lead_id = ?", (lead_id,)).fetchone())


def lead(app, lead_id: int) -> dict:
    return dict(app.db.connection().execute("SELECT * FROM leads WHERE id = ?", (lead_id,)).fetchone())


def events(app, lead_id: int) -> list[str]:
    return [r[0] for r in app.db.connection().execute("SELECT kind FROM events WHERE lead_id = ? AND kind != 'sent' "
                                                      "ORDER BY id", (lead_id,))]


def test_a_reply_stops_the_sequence_once_however_often_it_is_read(appliance, mailstack):
    box, campaign, (lead_id,), sent = send_first_step(appliance, mailstack, ["bob+r1@example.test"])
    reply = mail({"From": "Bob <bob+r1@example.test>", "To": ALICE, "In-Reply-To": sent[lead_id]["message_id"]})
    inbox_id = inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=7, raw=reply)
    assert inbox_id is not None
    row = dict(appliance.db.connection().execute("SELECT * FROM inbox_messages WHERE id = ?", (inbox_id,)).fetchone())
    assert (row["kind"], row["lead_id"], row["campaign_id"], row["message_id"]) == (
        "reply", lead_id, campaign["id"], sent[lead_id]["id"])
    assert row["from_name"] == "Bob" and row["snippet"] == "Thanks, tell me more." and row["unread"] == 1
    assert enrollment(appliance, lead_id)["status"] == "stopped"
    assert enrollment(appliance, lead_id)["stop_reason"] == "replied"
    assert lead(appliance, lead_id)["status"] == "replied"
    assert events(appliance, lead_id) == ["replied"]
    # read again: from the Junk folder, after a resync with new UIDs, twice
    for folder, uid in (("INBOX", 7), ("Spam", 1), ("INBOX", 99)):
        assert inbound.ingest(appliance.db, box["id"], folder=folder, uid=uid, raw=reply) is None
    assert events(appliance, lead_id) == ["replied"]
    assert appliance.db.connection().execute("SELECT count(*) FROM inbox_messages").fetchone()[0] == 1


def test_the_planned_follow_up_of_a_lead_who_replied_is_never_sent(appliance, mailstack):
    box, _, (lead_id,), sent = send_first_step(appliance, mailstack, ["bob+r2@example.test"])
    with appliance.db.transaction() as conn:  # the follow-up is due and already planned
        conn.execute("UPDATE enrollments SET next_due_at = ? WHERE lead_id = ?", (utcnow_iso(), lead_id))
    assert planner.plan_due(appliance.db) == 1
    reply = mail({"From": "bob+r2@example.test", "References": sent[lead_id]["message_id"]})
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=reply)
    assert sender.claim(appliance.db, box["id"], POLICY) is None
    statuses = [r[0] for r in appliance.db.connection().execute("SELECT status FROM messages ORDER BY id")]
    assert statuses == ["sent", "cancelled"]


def test_a_lead_writing_afresh_counts_as_a_reply(appliance, mailstack):
    box, _, (lead_id,), _ = send_first_step(appliance, mailstack, ["bob+r3@example.test"])
    fresh = mail({"From": "bob+r3@example.test", "Subject": "Question"})  # no In-Reply-To, no References
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=fresh)
    assert enrollment(appliance, lead_id)["status"] == "stopped" and events(appliance, lead_id) == ["replied"]


def test_company_wide_stop_spares_shared_mail_providers(appliance, mailstack, monkeypatch):
    box, _, leads, sent = send_first_step(appliance, mailstack, ["bob+c1@example.test", "bob+c2@example.test"],
                                          stop_company_on_reply=True)
    first, colleague = leads
    reply = mail({"From": "bob+c1@example.test", "In-Reply-To": sent[first]["message_id"]})
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=reply)
    assert enrollment(appliance, colleague)["stop_reason"] == "company replied"
    assert lead(appliance, colleague)["status"] != "replied"  # only the one who wrote replied


def test_company_wide_stop_never_applies_to_a_shared_provider(appliance, mailstack, monkeypatch):
    monkeypatch.setattr(inbound, "SHARED_DOMAINS", frozenset({"example.test"}))
    box, _, (first, other), sent = send_first_step(
        appliance, mailstack, ["bob+s1@example.test", "bob+s2@example.test"], stop_company_on_reply=True)
    reply = mail({"From": "bob+s1@example.test", "In-Reply-To": sent[first]["message_id"]})
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=reply)
    assert enrollment(appliance, first)["status"] == "stopped"
    assert enrollment(appliance, other)["status"] == "active"


@pytest.mark.parametrize("stop", [False, True])
def test_an_auto_reply_is_an_event_and_stops_only_when_the_campaign_says_so(appliance, mailstack, stop):
    box, _, (lead_id,), sent = send_first_step(appliance, mailstack, [f"bob+a{int(stop)}@example.test"],
                                               stop_on_auto_reply=stop)
    ooo = mail({"From": f"bob+a{int(stop)}@example.test", "Subject": "Out of office", "Auto-Submitted": "auto-replied",
                "In-Reply-To": sent[lead_id]["message_id"]}, "I am away until Monday.")
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=ooo)
    assert events(appliance, lead_id) == ["auto_replied"]
    assert lead(appliance, lead_id)["status"] == "contacted"  # never a human reply
    assert enrollment(appliance, lead_id)["status"] == ("stopped" if stop else "active")


def test_a_hard_bounce_suppresses_the_address_and_stops_every_sequence(appliance, mailstack):
    box, _, (lead_id,), sent = send_first_step(appliance, mailstack, ["bob+h@example.test"])
    bounce = dsn("bob+h@example.test", "5.1.1", sent[lead_id]["message_id"])
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=bounce)
    assert suppressions.suppression_for(appliance.db.connection(), "bob+h@example.test")["reason"] == "bounced"
    assert lead(appliance, lead_id)["status"] == "bounced"
    assert enrollment(appliance, lead_id)["stop_reason"] == "bounced"
    assert events(appliance, lead_id) == ["bounced"]
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=2, raw=bounce) is None


def test_soft_bounces_postpone_the_lead_and_suppress_after_the_limit(appliance, mailstack):
    box, _, (lead_id,), sent = send_first_step(appliance, mailstack, ["bob+soft@example.test"])
    due_before = enrollment(appliance, lead_id)["next_due_at"]
    for n in range(1, inbound.SOFT_BOUNCE_LIMIT + 1):
        bounce = dsn("bob+soft@example.test", "4.2.2", sent[lead_id]["message_id"])
        assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=n, raw=bounce)
        assert lead(appliance, lead_id)["soft_bounces"] == n
        if n < inbound.SOFT_BOUNCE_LIMIT:
            assert enrollment(appliance, lead_id)["status"] == "active"
            assert enrollment(appliance, lead_id)["next_due_at"] >= due_before
            assert suppressions.suppression_for(appliance.db.connection(), "bob+soft@example.test") is None
    assert suppressions.suppression_for(appliance.db.connection(), "bob+soft@example.test")["reason"] == "bounced"
    assert enrollment(appliance, lead_id)["status"] == "stopped"
    assert events(appliance, lead_id) == ["soft_bounced"] * (inbound.SOFT_BOUNCE_LIMIT - 1) + ["bounced"]


def test_a_complaint_suppresses_at_once(appliance, mailstack):
    box, _, (lead_id,), sent = send_first_step(appliance, mailstack, ["bob+fbl@example.test"])
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1,
                          raw=arf("bob+fbl@example.test", sent[lead_id]["message_id"]))
    assert suppressions.suppression_for(appliance.db.connection(), "bob+fbl@example.test")["reason"] == "complained"
    assert lead(appliance, lead_id)["status"] == "unsubscribed"
    assert events(appliance, lead_id) == ["complained"]


def test_unsubscribe_by_mail_from_a_lead_and_from_a_stranger(appliance, mailstack):
    box, _, (lead_id,), sent = send_first_step(appliance, mailstack, ["bob+u@example.test"])
    words = mail({"From": "bob+u@example.test", "In-Reply-To": sent[lead_id]["message_id"]}, "Remove me")
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=words)
    assert lead(appliance, lead_id)["status"] == "unsubscribed" and events(appliance, lead_id) == ["unsubscribed"]
    assert enrollment(appliance, lead_id)["stop_reason"] == "unsubscribed"
    to_address = mail({"From": "someone@elsewhere.example", "To": links.unsubscribe_address(ALICE),
                       "Subject": "unsubscribe"}, "")
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=2, raw=to_address)
    assert suppressions.suppression_for(appliance.db.connection(), "someone@elsewhere.example")["reason"] == \
        "unsubscribed"


def test_our_own_mail_and_mail_about_nobody_are_not_recorded(appliance, mailstack):
    box, _, (lead_id,), sent = send_first_step(appliance, mailstack, ["bob+own@example.test"])
    own = mail({"From": ALICE, "Message-ID": sent[lead_id]["message_id"], "Subject": "Hello"})
    newsletter = mail({"From": "news@shop.example", "Subject": "Sale", "Precedence": "bulk"})
    stranger = mail({"From": "someone@elsewhere.example", "Subject": "Hi"})
    for raw in (own, newsletter, stranger, b"", b"\x00\xff garbage", b"From: \r\n\r\n"):
        assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=raw) is None
    assert appliance.db.connection().execute("SELECT count(*) FROM inbox_messages").fetchone()[0] == 0
    assert enrollment(appliance, lead_id)["status"] == "active" and events(appliance, lead_id) == []


def test_a_message_without_message_id_is_still_recorded_once(appliance, mailstack):
    box, _, (lead_id,), sent = send_first_step(appliance, mailstack, ["bob+noid@example.test"])
    raw = (f"From: bob+noid@example.test\r\nTo: {ALICE}\r\nSubject: Re: Hello\r\n"
           f"In-Reply-To: {sent[lead_id]['message_id']}\r\n\r\nYes please.\r\n").encode()
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=raw)
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=raw) is None
    assert events(appliance, lead_id) == ["replied"]


def test_a_hostile_from_header_changes_nothing_it_should_not(appliance, mailstack):
    box, _, (lead_id,), sent = send_first_step(appliance, mailstack, ["bob+x@example.test"])
    hostile = mail({"From": "\"x\r\nBcc: evil@x.test\" <'; DROP TABLE leads;--@x>",
                    "To": links.unsubscribe_address(ALICE), "Subject": "unsubscribe"}, "")
    inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=hostile)
    assert lead(appliance, lead_id)["status"] == "contacted"
    assert appliance.db.connection().execute("SELECT count(*) FROM leads").fetchone()[0] == 1


def test_inbound_mail_queues_webhook_events_in_the_same_transaction(appliance, mailstack):
    from appliance.services import webhooks

    from .support.campaign_setup import admin_principal
    box, campaign, (lead_id,), sent = send_first_step(appliance, mailstack, ["bob+wh@example.test"])
    webhooks.create(appliance.db, appliance.keys, appliance.config, admin_principal(appliance),
                    {"url": "https://93.184.215.14/hook", "events": ["*"]})
    reply = mail({"From": "bob+wh@example.test", "In-Reply-To": sent[lead_id]["message_id"]}, "Call me.")
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=1, raw=reply)
    queued = [json.loads(r[0]) for r in appliance.db.connection().execute("SELECT body FROM webhook_events ORDER BY "
                                                                          "rowid")]
    assert [e["type"] for e in queued] == ["reply.received", "lead.status_changed"]
    received = queued[0]["data"]
    assert received["lead"]["email"] == "bob+wh@example.test" and received["campaign"]["id"] == campaign["id"]
    assert received["message"]["message_id"] == sent[lead_id]["message_id"]
    assert received["reply"]["snippet"] == "Call me." and received["mailbox"]["email"] == ALICE
    assert queued[1]["data"]["previous_status"] == "contacted" and queued[1]["data"]["lead"]["status"] == "replied"
    bounce = dsn("bob+wh@example.test", "5.1.1", sent[lead_id]["message_id"])
    assert inbound.ingest(appliance.db, box["id"], folder="INBOX", uid=2, raw=bounce)
    types = [r[0] for r in appliance.db.connection().execute("SELECT type FROM webhook_events ORDER BY rowid")]
    assert types[2:] == ["email.bounced", "lead.status_changed"]
    dead = json.loads(appliance.db.connection().execute("SELECT body FROM webhook_events ORDER BY rowid DESC")
                      .fetchone()[0])
    assert (dead["data"]["previous_status"], dead["data"]["lead"]["status"]) == ("replied", "bounced")
