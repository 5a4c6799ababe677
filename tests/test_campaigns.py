"""Campaigns: sequences with validated templates, enrolment with reasons, launch checks,
preview, state changes with audit, and a real test send through the local mail stack."""

from __future__ import annotations

import email
import email.policy
import json
import time

import pytest

from appliance.db import audit_repo, users_repo

from .support.access import add_user, login
from .support.campaign_setup import insert_leads as add_leads

ALICE = "alice@example.test"

STEPS = [
    {"delay_minutes": 0, "variants": [
        {"subject": "{Quick|Short} question, {{first_name|there}}", "body": "Hi {{first_name|there}},\n\n"
         "Saw {{company}} is hiring.\n\n{{signature}}", "weight": 1},
        {"subject": "Idea for {{company}}", "body": "Hello {{first_name|there}}, a thought for {{company}}.",
         "weight": 1}]},
    {"delay_minutes": 2 * 1440, "variants": [{"subject": "", "body": "Just bumping this, {{first_name|there}}."}]},
]


@pytest.fixture
def member(appliance, web):
    add_user(appliance, "member@x.test", role="member")
    return login(web.test_client(), "member@x.test").headers(bearer=True)


def set_identity(web, headers):
    r = web.test_client().put("/api/v1/settings/sender-identity", headers=headers,
                              json={"company": "Acme GmbH", "postal_address": "Hauptstr. 1\n10115 Berlin",
                                    "website": "https://acme.example"})
    assert r.status_code == 200, r.get_json()


def create(web, headers, **over):
    body = {"name": "Q4 outreach", "steps": STEPS, "schedule": {"always": True}}
    body.update(over)
    return web.test_client().post("/api/v1/campaigns", json=body, headers=headers)


def test_create_and_read_back(web, member):
    r = create(web, member, schedule={"timezone": "Europe/Berlin", "days": ["mon", "tue"], "start": "09:00",
                                      "end": "17:00"}, daily_limit=200)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["status"] == "draft" and body["stop_on_reply"] is True and body["stop_on_auto_reply"] is False
    assert [len(s["variants"]) for s in body["steps"]] == [2, 1]
    assert body["steps"][0]["variants"][1]["label"] == "B" and body["steps"][1]["delay_minutes"] == 2880
    got = web.test_client().get(f"/api/v1/campaigns/{body['id']}", headers=member).get_json()
    assert got["schedule"]["days"] == ["mon", "tue"] and got["daily_limit"] == 200


def test_template_mistakes_are_refused_with_their_place(web, member):
    bad = [{"delay_minutes": 0, "variants": [{"subject": "Hi {{first_name", "body": "x {{compny}} y"}]},
           {"delay_minutes": 60, "variants": [{"subject": "", "body": "{Hi|Hello"}]}]
    r = create(web, member, steps=bad)
    fields = r.get_json()["error"]["details"]["fields"]
    assert r.status_code == 400
    assert "line 1, column 4" in fields["steps.0.variants.0.subject"]
    assert "unknown variable {{compny}}" in fields["steps.0.variants.0.body"]
    assert "not closed by '}'" in fields["steps.1.variants.0.body"]


@pytest.mark.parametrize("over, field", [
    ({"name": ""}, "name"),
    ({"schedule": {"timezone": "Mars/Base", "days": ["mon"], "start": "09:00", "end": "17:00"}}, "schedule.timezone"),
    # found by the schema run: a time zone that is not text was a 500
    ({"schedule": {"timezone": ["UTC"], "days": ["mon"], "start": "09:00", "end": "17:00"}}, "schedule.timezone"),
    ({"schedule": {"timezone": "UTC", "days": ["funday"], "start": "09:00", "end": "17:00"}}, "schedule.days"),
    ({"schedule": {"timezone": "UTC", "days": ["mon"], "start": "18:00", "end": "09:00"}}, "schedule.end"),
    ({"steps": [{"delay_minutes": 0, "variants": [{"subject": "", "body": "x"}]}]}, "steps.0.variants.0.subject"),
    ({"steps": [{"delay_minutes": -5, "variants": [{"subject": "s", "body": "x"}]}]}, "steps.0.delay_minutes"),
    ({"daily_limit": 0}, "daily_limit"),
    ({"mailbox_ids": ["1"]}, "mailbox_ids"),
])
def test_bad_settings_are_reported_per_field(web, member, over, field):
    r = create(web, member, **over)
    assert r.status_code == 400 and field in r.get_json()["error"]["details"]["fields"]


def test_custom_fields_are_known_variables(appliance, web, member):
    add_leads(appliance, [{"email": "a@lead.test", "custom": {"pain_point": "churn"}}])
    steps = [{"delay_minutes": 0, "variants": [{"subject": "About {{pain_point}}", "body": "x"}]}]
    assert create(web, member, steps=steps).status_code == 201


def test_enrolment_reports_why_leads_were_skipped(appliance, web, member):
    ids = add_leads(appliance, [{"email": "ok@lead.test"}, {"email": "gone@lead.test", "status": "unsubscribed"},
                                {"email": "x@blocked.test"}, {"email": "tagged@lead.test", "tags": ["q4"]}])
    c = web.test_client()
    c.post("/api/v1/suppressions", json={"value": "blocked.test", "reason": "manual"}, headers=member)
    campaign = create(web, member).get_json()
    r = c.post(f"/api/v1/campaigns/{campaign['id']}/leads", json={"lead_ids": ids[:3] + [999999]}, headers=member)
    assert r.get_json() == {"enrolled": 1, "skipped": 3,
                            "reasons": {"not_found": 1, "suppressed": 1, "unsubscribed": 1}}
    again = c.post(f"/api/v1/campaigns/{campaign['id']}/leads", json={"lead_ids": ids[:1]}, headers=member)
    assert again.get_json()["reasons"] == {"already_enrolled": 1}
    by_tag = c.post(f"/api/v1/campaigns/{campaign['id']}/leads", json={"tag": "q4"}, headers=member)
    assert by_tag.get_json()["enrolled"] == 1


def test_launch_lists_every_failing_check(appliance, web, member):
    steps = [{"delay_minutes": 0, "variants": [{"subject": "Hi", "body": "Hi {{first_name}}"}]}]
    campaign = create(web, member, steps=steps, unsubscribe_footer=False).get_json()
    add_leads(appliance, [{"email": "nofirst@lead.test"}])
    r = web.test_client().post(f"/api/v1/campaigns/{campaign['id']}/launch", headers=member)
    assert r.status_code == 422
    failed = {c["check"] for c in r.get_json()["error"]["details"]["checks"]}
    assert failed == {"sender_identity", "unsubscribe", "mailboxes", "leads"}
    assert web.test_client().get(f"/api/v1/campaigns/{campaign['id']}", headers=member).get_json()["status"] == "draft"


def ready_campaign(appliance, web, member, mailstack, admin_headers, **over):
    """A campaign that passes every launch check: identity, a healthy mailbox, a lead."""
    set_identity(web, admin_headers)
    c = web.test_client()
    box = c.post("/api/v1/mailboxes", headers=admin_headers, json={
        "email": ALICE, "display_name": "Alice Sales", "smtp_host": mailstack.host, "password": mailstack.users[ALICE],
        "smtp_port": mailstack.submission_port, "smtp_security": "starttls", "imap_host": mailstack.host,
        "imap_port": mailstack.imaps_port, "imap_security": "ssl", "tls_ca_pem": mailstack.cafile.read_text(),
        "signature": "Alice\nAcme"}).get_json()
    assert box["status"] == "active", box
    campaign = create(web, member, mailbox_ids=[box["id"]], **over).get_json()
    lead_ids = add_leads(appliance, [{"email": "bob@example.test", "first_name": "Bob", "company": "Bobco"}])
    c.post(f"/api/v1/campaigns/{campaign['id']}/leads", json={"lead_ids": lead_ids}, headers=member)
    return campaign, box, lead_ids


@pytest.fixture
def admin(appliance, web):
    add_user(appliance, "admin@x.test", role="admin")
    return login(web.test_client(), "admin@x.test").headers(bearer=True)


@pytest.mark.mailstack
def test_launch_pause_resume_are_audited(appliance, web, member, admin, mailstack):
    campaign, _, _ = ready_campaign(appliance, web, member, mailstack, admin)
    c = web.test_client()
    checks = c.get(f"/api/v1/campaigns/{campaign['id']}/launch-checks", headers=member).get_json()
    assert checks["ready"] is True, checks
    assert c.post(f"/api/v1/campaigns/{campaign['id']}/launch", headers=member).get_json()["status"] == "active"
    assert c.post(f"/api/v1/campaigns/{campaign['id']}/launch", headers=member).status_code == 409
    assert c.post(f"/api/v1/campaigns/{campaign['id']}/pause", headers=member).get_json()["status"] == "paused"
    assert c.post(f"/api/v1/campaigns/{campaign['id']}/resume", headers=member).get_json()["status"] == "active"
    actions = [r["action"] for r in audit_repo.search(appliance.db.connection(), action="campaign.", limit=50)]
    assert actions[:3] == ["campaign.resumed", "campaign.paused", "campaign.launched"]
    # enrolments became due at launch
    due = appliance.db.connection().execute("SELECT count(*) FROM enrollments WHERE next_due_at IS NOT NULL").fetchone()[0]
    assert due == 1
    # editing a running campaign is allowed and audited
    r = c.patch(f"/api/v1/campaigns/{campaign['id']}", json={"steps": STEPS[:1]}, headers=member)
    assert r.status_code == 200 and len(r.get_json()["steps"]) == 1
    assert audit_repo.search(appliance.db.connection(), action="campaign.edited_while_running", limit=5)


@pytest.mark.mailstack
def test_preview_renders_every_step_for_a_lead(appliance, web, member, admin, mailstack):
    campaign, _, lead_ids = ready_campaign(appliance, web, member, mailstack, admin)
    r = web.test_client().get(f"/api/v1/campaigns/{campaign['id']}/preview?lead_id={lead_ids[0]}", headers=member)
    steps = r.get_json()["steps"]
    first_a, first_b = steps[0]["variants"]
    assert first_a["subject"] in ("Quick question, Bob", "Short question, Bob")
    assert first_a["body"].startswith("Hi Bob,\n\nSaw Bobco is hiring.\n\nAlice\nAcme")
    assert "Acme GmbH\nHauptstr. 1\n10115 Berlin\nUnsubscribe: http" in first_a["body"]
    assert first_b["subject"] == "Idea for Bobco"
    follow_up = steps[1]["variants"][0]
    assert follow_up["subject"].startswith("Re: ") and follow_up["body"].startswith("Just bumping this, Bob.")
    again = web.test_client().get(f"/api/v1/campaigns/{campaign['id']}/preview?lead_id={lead_ids[0]}",
                                  headers=member).get_json()["steps"]
    assert again == steps  # spintax is stable per lead and step


@pytest.mark.mailstack
def test_test_send_arrives_with_list_unsubscribe(appliance, web, member, admin, mailstack):
    campaign, box, lead_ids = ready_campaign(appliance, web, member, mailstack, admin)
    r = web.test_client().post(f"/api/v1/campaigns/{campaign['id']}/test-send", headers=member,
                               json={"to": "bob@example.test", "mailbox_id": box["id"], "step": 0, "variant": "B",
                                     "lead_id": lead_ids[0]})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["subject"] == "[Test] Idea for Bobco"
    client = mailstack.imap("bob@example.test")
    try:
        client.select_folder("INBOX", readonly=True)
        deadline, uids = time.monotonic() + 5, []
        while not uids and time.monotonic() < deadline:
            uids = client.search(["HEADER", "Message-ID", r.get_json()["message_id"]])
            time.sleep(0.05)
        raw = client.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"].decode()
    finally:
        client.logout()
    received = email.message_from_string(raw, policy=email.policy.default)
    assert str(received["List-Unsubscribe"]).startswith("<http://localhost/u/")
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["From"] == "Alice Sales <alice@example.test>"
    reads = [row for row in audit_repo.search(appliance.db.connection(), action="credential.read", limit=10)
             if json.loads(row["metadata"])["purpose"] == "test_send"]
    assert reads and reads[0]["actor_label"] == "member@x.test"


def test_viewers_read_but_cannot_change(appliance, web, member):
    add_user(appliance, "viewer@x.test", role="viewer")
    viewer = login(web.test_client(), "viewer@x.test").headers(bearer=True)
    campaign = create(web, member).get_json()
    c = web.test_client()
    assert c.get(f"/api/v1/campaigns/{campaign['id']}", headers=viewer).status_code == 200
    assert create(web, viewer).status_code == 403
    assert c.post(f"/api/v1/campaigns/{campaign['id']}/launch", headers=viewer).status_code == 403
    assert users_repo.count(appliance.db.connection()) == 2


def test_ids_beyond_64_bits_are_field_errors_not_a_server_error(web, member):
    """Found by the schema run: such ids overflowed in the database driver (500)."""
    c, too_big = web.test_client(), 2**63
    r = create(web, member, mailbox_ids=[too_big])
    assert r.status_code == 400 and "mailbox_ids" in r.get_json()["error"]["details"]["fields"]
    campaign_id = create(web, member).get_json()["id"]
    r = c.post(f"/api/v1/campaigns/{campaign_id}/leads", json={"lead_ids": [1, too_big]}, headers=member)
    assert r.status_code == 400 and "lead_ids" in r.get_json()["error"]["details"]["fields"]
    r = c.get(f"/api/v1/campaigns/{campaign_id}/preview?lead_id={too_big}", headers=member)
    assert r.status_code == 400 and "lead_id" in r.get_json()["error"]["details"]["fields"]
    for body, field in (({"mailbox_id": too_big}, "mailbox_id"), ({"mailbox_id": 1, "lead_id": too_big}, "lead_id")):
        r = c.post(f"/api/v1/campaigns/{campaign_id}/test-send", json={"to": "me@example.test", **body},
                   headers=member)
        assert r.status_code == 400 and field in r.get_json()["error"]["details"]["fields"], body
    assert c.get(f"/api/v1/campaigns/{too_big}/stats", headers=member).status_code == 404
