"""The events MailFlow's own services emit, each in the transaction of its change: campaigns
launched, paused and completed, a mailbox going to error or paused, a lead's status changed
by a person, a lead unsubscribing (one-click link, or a person recording it)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from appliance.services import audit, campaigns, leads, links, mailboxes, suppressions, unsubscribe, webhook_delivery
from appliance.services import webhooks
from appliance.services.authz import Principal

from .support.access import add_user, login
from .support.appliance import make_config
from .support.campaign_setup import add_leads, admin_principal, connect_mailbox, launched_campaign


@pytest.fixture
def config(root):
    return make_config(root, webhook_allow_loopback="true")


@pytest.fixture
def hook(appliance, receiver):
    return webhooks.create(appliance.db, appliance.keys, appliance.config, admin_principal(appliance),
                           {"url": receiver.url(), "events": ["*"]})


def outbox(appliance, event_type: str | None = None) -> list[dict]:
    rows = appliance.db.execute("SELECT body FROM webhook_events WHERE ? IS NULL OR type = ? ORDER BY rowid",
                                (event_type, event_type)).fetchall()
    return [json.loads(r["body"]) for r in rows]


def test_campaign_launched_paused_and_completed(appliance, mailstack, hook, receiver):
    box = connect_mailbox(appliance, mailstack, "alice@example.test")
    lead_ids = add_leads(appliance, ["a@lead.test", "b@lead.test"])
    campaign = launched_campaign(appliance, [box["id"]], lead_ids)
    [launched] = outbox(appliance, "campaign.launched")
    assert launched["data"]["campaign"] == {"id": campaign["id"], "name": "Test", "status": "active"}
    assert launched["data"]["previous_status"] == "draft" and launched["data"]["by"] == "admin@x.test"

    campaigns.pause(appliance.db, admin_principal(appliance), campaign["id"])
    [paused] = outbox(appliance, "campaign.paused")
    assert paused["data"]["campaign"]["status"] == "paused"
    campaigns.resume(appliance.db, admin_principal(appliance), campaign["id"])

    assert campaigns.complete_finished(appliance.db) == 0  # leads still in their sequences
    assert outbox(appliance, "campaign.completed") == []
    appliance.db.execute("UPDATE enrollments SET status = 'completed', next_due_at = NULL WHERE lead_id = ?",
                         (lead_ids[0],))
    appliance.db.execute("UPDATE enrollments SET status = 'stopped', next_due_at = NULL WHERE lead_id = ?",
                         (lead_ids[1],))
    assert campaigns.complete_finished(appliance.db) == 1
    assert campaigns.complete_finished(appliance.db) == 0  # once
    assert campaigns.get(appliance.db, campaign["id"])["status"] == "completed"
    [completed] = outbox(appliance, "campaign.completed")
    assert completed["data"]["campaign"]["status"] == "completed"
    assert completed["data"]["leads"] == {"total": 2, "completed": 1, "stopped": 1}
    assert audit.search(appliance.db, action="campaign.completed", limit=1)[0]["actor"]["type"] == "system"

    webhook_delivery.deliver_due(appliance.db, appliance.keys, webhook_delivery.policy_for(appliance.db,
                                                                                           appliance.config))
    assert {r.headers["X-MailFlow-Event-Type"] for r in receiver.requests} == {
        "campaign.launched", "campaign.paused", "campaign.completed"}


def test_mailbox_error_when_a_mailbox_goes_to_error_or_is_paused(appliance, hook):
    admin = admin_principal(appliance)
    box = mailboxes.create(appliance.db, appliance.keys, admin, {
        "email": "sales@example.com", "smtp_host": "smtp.example.com", "smtp_port": 587, "smtp_security": "starttls",
        "imap_host": "imap.example.com", "imap_port": 993, "imap_security": "ssl", "password": "app password"})
    mailboxes.record_transport_failure(appliance.db, box["id"], "host_unreachable", "smtp.example.com did not answer.")
    [error] = outbox(appliance, "mailbox.error")
    assert error["data"]["previous_status"] == "active"
    assert error["data"]["mailbox"] == {"id": box["id"], "email": "sales@example.com", "status": "error",
                                        "status_reason": "smtp.example.com did not answer.",
                                        "last_error": "smtp.example.com did not answer.",
                                        "last_error_code": "host_unreachable"}
    mailboxes.record_transport_failure(appliance.db, box["id"], "host_unreachable", "Still down.")
    assert len(outbox(appliance, "mailbox.error")) == 1  # no change of status, no new event
    for _ in range(3):
        mailboxes.record_transport_failure(appliance.db, box["id"], "auth_failed", "Wrong password.")
    paused = outbox(appliance, "mailbox.error")[-1]
    assert paused["data"]["mailbox"]["status"] == "paused" and paused["data"]["previous_status"] == "error"
    assert "app password" not in json.dumps(outbox(appliance))


def test_lead_status_changed_by_a_person_or_the_system(appliance, web, hook):
    add_user(appliance, "m@x.test", role="member")
    client = web.test_client()
    session = login(client, "m@x.test")
    [lead_id] = add_leads(appliance, ["pat@lead.test"])
    r = client.patch(f"/api/v1/leads/{lead_id}", json={"status": "interested"}, headers=session.headers())
    assert r.status_code == 200
    [changed] = outbox(appliance, "lead.status_changed")
    assert changed["data"]["lead"]["status"] == "interested" and changed["data"]["lead"]["email"] == "pat@lead.test"
    assert changed["data"]["previous_status"] == "new" and changed["data"]["by"] == "m@x.test"

    client.patch(f"/api/v1/leads/{lead_id}", json={"first_name": "Pat"}, headers=session.headers())
    leads.set_status(appliance.db, None, lead_id, "interested")  # unchanged: no event
    assert len(outbox(appliance, "lead.status_changed")) == 1
    leads.set_status(appliance.db, None, lead_id, "won")
    assert outbox(appliance, "lead.status_changed")[-1]["data"]["by"] == "system"


def test_lead_unsubscribed_by_link_or_recorded_by_a_person(appliance, mailstack, hook):
    box = connect_mailbox(appliance, mailstack, "alice@example.test")
    lead_ids = add_leads(appliance, ["quit@lead.test", "other@lead.test"])
    campaign = launched_campaign(appliance, [box["id"]], lead_ids)
    token = links.unsubscribe_token(appliance.keys.tokens, lead_ids[0], campaign["id"])
    assert unsubscribe.unsubscribe(appliance.db, appliance.keys, token, via="one-click")
    assert unsubscribe.unsubscribe(appliance.db, appliance.keys, token, via="one-click")["already"]
    [event] = outbox(appliance, "lead.unsubscribed")  # once, however often the link is used
    assert event["data"]["lead"]["email"] == "quit@lead.test" and event["data"]["lead"]["status"] == "unsubscribed"
    assert event["data"]["campaign"]["id"] == campaign["id"] and event["data"]["via"] == "one-click"

    admin = admin_principal(appliance)
    suppressions.add(appliance.db, admin, {"value": "other@lead.test", "reason": "unsubscribed"})
    suppressions.add(appliance.db, admin, {"value": "stranger@else.test", "reason": "unsubscribed"})  # no lead
    suppressions.add(appliance.db, admin, {"value": "lead.test", "reason": "manual"})
    recorded = outbox(appliance, "lead.unsubscribed")
    assert len(recorded) == 2 and recorded[1]["data"]["lead"]["email"] == "other@lead.test"
    assert recorded[1]["data"]["via"] == "suppression_list" and recorded[1]["data"]["by"] == "admin@x.test"


def test_no_webhook_no_outbox_rows(appliance):
    """Emitting costs one indexed lookup when nobody listens, and writes nothing."""
    [lead_id] = add_leads(appliance, ["pat@lead.test"])
    leads.set_status(appliance.db, None, lead_id, "won")
    assert outbox(appliance) == []
    member = Principal(user_id=add_user(appliance, "m@x.test", role="member"), email="m@x.test", role="member",
                       via="session")
    leads.set_status(appliance.db, member, lead_id, "lost")
    assert appliance.db.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0] == 0


def test_email_sent_for_every_step_that_went_out(appliance, mailstack, hook):
    import random

    from appliance.mail.smtp import SmtpSession
    from appliance.services import planner, sender
    from appliance.services.audit import Actor
    box = connect_mailbox(appliance, mailstack, "alice@example.test")
    lead_ids = add_leads(appliance, ["bob+sent1@example.test", "bob+sent2@example.test"])
    campaign = launched_campaign(appliance, [box["id"]], lead_ids)
    planner.plan_due(appliance.db)
    policy = sender.Policy(domain_spread_seconds=0, base_url="https://mail.acme.example")
    creds = mailboxes.credentials(appliance.db, appliance.keys, box["id"], Actor.system("scheduler"), "send")
    with SmtpSession(creds.smtp, creds.username, creds.password, creds.helo) as session:
        while (claimed := sender.claim(appliance.db, box["id"], policy)) is not None:
            sender.send_one(appliance.db, appliance.keys, claimed, session, policy, random.Random(1))
    sent = outbox(appliance, "email.sent")
    ids = {r["lead_id"]: r["message_id"] for r in appliance.db.execute("SELECT lead_id, message_id FROM messages")}
    assert sorted(e["data"]["lead"]["id"] for e in sent) == sorted(lead_ids)
    for e in sent:
        data = e["data"]
        assert data["campaign"]["id"] == campaign["id"] and data["mailbox"]["email"] == "alice@example.test"
        assert data["message"]["message_id"] == ids[data["lead"]["id"]] and data["message"]["status"] == "sent"
        assert data["message"]["subject"].startswith("Hello ") and data["message"]["sent_at"].endswith("Z")


def test_email_sent_also_for_a_send_settled_by_reconcile(appliance, hook):
    """The server took the message and the process died before recording it: the next start
    finds it in the Sent folder and emits email.sent as a recorded send would have."""
    from appliance.mail.smtp import SmtpSession
    from appliance.services import planner, reconcile, sender
    from appliance.services.audit import Actor

    from .support.mailstack import MailStack
    stack = MailStack(users={"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"},
                      save_sent_copy=True).start()  # a server that files what it is given in Sent
    try:
        box = connect_mailbox(appliance, stack, "alice@example.test", save_sent_copy=False)
        [lead_id] = add_leads(appliance, ["bob+reconciled@example.test"])
        campaign = launched_campaign(appliance, [box["id"]], [lead_id])
        planner.plan_due(appliance.db)
        policy = sender.Policy(domain_spread_seconds=0, base_url="https://mail.acme.example")
        taken = sender.claim(appliance.db, box["id"], policy)
        raw, _, _ = sender.compose_message(appliance.db, appliance.keys, taken, policy, datetime.now(timezone.utc))
        creds = mailboxes.credentials(appliance.db, appliance.keys, box["id"], Actor.system("scheduler"), "send")
        with SmtpSession(creds.smtp, creds.username, creds.password, creds.helo) as session:
            session.send("alice@example.test", [taken.message["to_email"]], raw)  # ... and the process dies here
        assert outbox(appliance, "email.sent") == []
        assert reconcile.Orphans(appliance.db).settle(appliance.db, appliance.keys)["sent"] == 1
        [sent] = outbox(appliance, "email.sent")
        assert sent["data"]["lead"]["id"] == lead_id and sent["data"]["campaign"]["id"] == campaign["id"]
        assert sent["data"]["message"]["message_id"] == taken.message["message_id"]
        assert sent["data"]["message"]["status"] == "sent" and sent["data"]["mailbox"]["email"] == "alice@example.test"
    finally:
        stack.stop()
