"""Messages, the queue and campaign numbers through the real Flask app over a real encrypted
database, with messages made by the real sending engine against the local mail stack: list
and filters, pagination, queue order and what holds a message back, numbers per step and
variant, settling uncertain sends (roles, CSRF, audit), and the Sending pages."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from appliance.db import messages_repo
from appliance.db.timefmt import to_iso
from appliance.services import campaigns, compose, mailboxes, planner, reconcile, sender

from .support.access import signed_in
from .support.campaign_setup import ADMIN, add_leads, admin_principal, connect_mailbox, launched_campaign
from .test_sending import POLICY, inbox, make_due, run_until_idle

pytestmark = pytest.mark.mailstack
ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@other.test"


def rows(app, sql: str = "SELECT * FROM messages ORDER BY id", params=()):
    return [dict(r) for r in app.db.connection().execute(sql, params)]


@pytest.fixture
def viewer(appliance, web):
    return signed_in(appliance, web, "viewer@x.test", "viewer")


@pytest.fixture
def member(appliance, web):
    return signed_in(appliance, web, "member@x.test", "member")


def all_pages(session, path: str, limit: int) -> list[dict]:
    items, cursor, seen = [], None, 0
    while True:
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = session.client.get(url)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        seen += 1
        assert seen < 50
        if cursor is None:
            return items


# -- the list -------------------------------------------------------------------------------------

def test_messages_list_filters_and_pages(appliance, web, mailstack, viewer):
    box = connect_mailbox(appliance, mailstack, ALICE)
    first = add_leads(appliance, [f"bob+list{i}@example.test" for i in range(4)])
    other = add_leads(appliance, ["bob+elsewhere@example.test"], first_name="Eve")
    one = launched_campaign(appliance, [box["id"]], first)
    two = launched_campaign(appliance, [box["id"]], other)
    assert planner.plan_due(appliance.db) == 5
    assert run_until_idle(appliance, box["id"]) == ["sent"] * 5
    make_due(appliance, rows(appliance, "SELECT id FROM enrollments WHERE lead_id = ?", (first[0],))[0]["id"])
    assert planner.plan_due(appliance.db) == 1  # one follow-up, left planned

    r = viewer.client.get("/api/v1/messages")
    assert r.status_code == 200
    items = r.get_json()["items"]
    assert [m["id"] for m in items] == sorted((m["id"] for m in items), reverse=True)  # newest first
    assert len(items) == 6 and r.get_json()["next_cursor"] is None
    follow_up, sent = items[0], items[-1]
    assert follow_up["status"] == "planned" and follow_up["step"] == 1 and follow_up["sent_at"] is None
    assert set(sent) >= {"id", "campaign_id", "lead_id", "to_email", "mailbox_id", "step", "variant", "status",
                         "message_id", "subject", "planned_at", "claimed_at", "sent_at", "attempts", "smtp_code",
                         "last_error"}
    assert sent["status"] == "sent" and sent["to_email"] == "bob+list0@example.test" and sent["variant"] == "A"
    assert sent["subject"] == "Hello Lead0" and sent["message_id"].endswith("@example.test>")
    assert sent["mailbox_id"] == box["id"] and sent["mailbox_email"] == ALICE and sent["campaign_name"] == "Test"
    assert sent["sent_at"].endswith("Z") and sent["attempts"] == 1 and sent["smtp_code"] is None

    def ids(query: str) -> list[int]:
        return [m["id"] for m in viewer.client.get(f"/api/v1/messages?{query}").get_json()["items"]]

    assert len(ids(f"campaign_id={one['id']}")) == 5 and len(ids(f"campaign_id={two['id']}")) == 1
    assert ids(f"lead_id={first[0]}") == [follow_up["id"], sent["id"]]
    assert ids("status=planned") == [follow_up["id"]] and len(ids("status=sent")) == 5
    assert ids(f"campaign_id={two['id']}&status=planned") == []
    assert len(ids(f"mailbox_id={box['id']}")) == 6 and ids(f"mailbox_id={box['id'] + 99}") == []

    paged = all_pages(viewer, "/api/v1/messages", limit=4)
    assert [m["id"] for m in paged] == [m["id"] for m in items]  # every message once, in order
    assert [m["id"] for m in all_pages(viewer, f"/api/v1/messages?campaign_id={one['id']}", limit=2)] == \
        ids(f"campaign_id={one['id']}")

    detail = viewer.client.get(f"/api/v1/messages/{sent['id']}").get_json()
    assert {k: detail[k] for k in sent} == sent and [e["kind"] for e in detail["events"]] == ["sent"]
    assert viewer.client.get("/api/v1/messages/999999").status_code == 404
    for bad in ("status=bogus", "campaign_id=x", "limit=0", "limit=501", "cursor=-1"):
        r = viewer.client.get(f"/api/v1/messages?{bad}")
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "validation_failed", bad
    anonymous = web.test_client()
    assert anonymous.get("/api/v1/messages").status_code == 401
    assert anonymous.get("/api/v1/queue").status_code == 401


# -- the queue ------------------------------------------------------------------------------------

def test_queue_is_in_due_order_and_says_what_holds_a_message(appliance, web, mailstack, viewer):
    first = connect_mailbox(appliance, mailstack, ALICE, min_gap_seconds=60, max_gap_seconds=60)
    second = connect_mailbox(appliance, mailstack, CAROL, min_gap_seconds=120, max_gap_seconds=120)
    leads = add_leads(appliance, [f"bob+queue{i}@example.test" for i in range(7)])
    campaign = launched_campaign(appliance, [first["id"], second["id"]], leads)
    assert planner.plan_due(appliance.db, rng=random.Random(5)) == 7
    planned = rows(appliance)
    assert {m["mailbox_id"] for m in planned} == {first["id"], second["id"]}

    items = all_pages(viewer, "/api/v1/queue", limit=3)
    assert [q["id"] for q in items] == [m["id"] for m in sorted(planned, key=lambda m: (m["planned_at"], m["id"]))]
    assert [q["planned_at"] for q in items] == sorted(q["planned_at"] for q in items)
    assert len({q["planned_at"] for q in items}) > 2  # the gaps spread them out
    q = items[0]
    assert q["mailbox_email"] in (ALICE, CAROL) and q["to_email"].startswith("bob+queue") and q["step"] == 0
    assert q["campaign_name"] == "Test" and q["held_by"] is None
    mine = all_pages(viewer, f"/api/v1/queue?mailbox_id={second['id']}", limit=2)
    assert mine and {q["mailbox_id"] for q in mine} == {second["id"]}
    assert len(mine) == sum(1 for m in planned if m["mailbox_id"] == second["id"])
    assert viewer.client.get("/api/v1/queue?cursor=nonsense").status_code == 400

    # pausing the campaign holds everything before the next claim; the queue says why
    campaigns.pause(appliance.db, admin_principal(appliance), campaign["id"])
    late = datetime.now(timezone.utc) + timedelta(hours=1)
    assert sender.claim(appliance.db, first["id"], POLICY, now=late) is None
    held = viewer.client.get("/api/v1/queue").get_json()["items"]
    assert {q["held_by"] for q in held} == {"campaign_paused"}
    campaigns.resume(appliance.db, admin_principal(appliance), campaign["id"])
    assert sender.claim(appliance.db, first["id"], POLICY, now=late) is not None  # at once
    with appliance.db.transaction() as conn:  # (put it back)
        conn.execute("UPDATE messages SET status = 'planned' WHERE status = 'sending'")

    # pausing a mailbox holds its messages (not the other mailbox's) before the next claim
    mailboxes.pause(appliance.db, admin_principal(appliance), second["id"])
    assert sender.claim(appliance.db, second["id"], POLICY, now=late) is None
    held = viewer.client.get(f"/api/v1/queue?mailbox_id={second['id']}").get_json()["items"]
    assert held and {q["held_by"] for q in held} == {"mailbox_paused"}
    assert all(q["held_by"] is None for q in viewer.client.get(f"/api/v1/queue?mailbox_id={first['id']}")
               .get_json()["items"])
    assert all(m["status"] == "planned" for m in rows(appliance))  # nothing lost
    mailboxes.resume(appliance.db, appliance.keys, admin_principal(appliance), second["id"])
    # the claim that found it paused put its first message back by five minutes
    assert sender.claim(appliance.db, second["id"], POLICY, now=late + timedelta(minutes=6)) is not None


# -- numbers per step and variant -----------------------------------------------------------------

AB_STEPS = [
    {"delay_minutes": 0, "variants": [{"subject": "A {{first_name}}", "body": "Version A.", "weight": 1},
                                      {"subject": "B {{first_name}}", "body": "Version B.", "weight": 1}]},
    {"delay_minutes": 60, "variants": [{"subject": "", "body": "Following up."}]},
]


def test_stats_per_step_and_variant(appliance, web, mailstack, viewer):
    box = connect_mailbox(appliance, mailstack, ALICE)
    leads = add_leads(appliance, [f"bob+ab{i}@example.test" for i in range(8)])
    campaign = launched_campaign(appliance, [box["id"]], leads, steps=AB_STEPS)
    cid = campaign["id"]
    planner.plan_due(appliance.db)
    assert run_until_idle(appliance, box["id"]) == ["sent"] * 8
    first = {m["lead_id"]: m for m in rows(appliance)}
    by_variant = {"A": [], "B": []}
    for lead_id, m in first.items():
        by_variant[m["variant"]].append(lead_id)
        # the variant the engine chose is the seeded one (as resolve_uncertain relies on)
        ab = [{"label": "A", "weight": 1}, {"label": "B", "weight": 1}]
        assert compose.pick_variant(ab, compose.rng_for(lead_id, cid, 0))["label"] == m["variant"]
    a, b = by_variant["A"], by_variant["B"]
    assert len(a) >= 2 and len(b) >= 2, by_variant

    # follow-ups: two A leads get step 2; one B lead is suppressed before its claim
    enrollments = {r["lead_id"]: r["id"] for r in rows(appliance, "SELECT id, lead_id FROM enrollments")}
    for lead_id in (a[0], a[1], b[0]):
        make_due(appliance, enrollments[lead_id])
    assert planner.plan_due(appliance.db) == 3
    with appliance.db.transaction() as conn:
        conn.execute("UPDATE leads SET status = 'bounced' WHERE id = ?", (b[0],))
    assert sorted(run_until_idle(appliance, box["id"])) == ["sent", "sent"]

    # what happened afterwards (written by the reply and bounce features): a reply to an A
    # first email (twice from the same lead: counts once), a reply to a step-2 email, a bounce
    # of a B email, and an unsubscribe through the one-click link (names no message)
    now = to_iso(datetime.now(timezone.utc) + timedelta(seconds=1))
    step2 = {m["lead_id"]: m for m in rows(appliance, "SELECT * FROM messages WHERE step = 1 AND status = 'sent'")}
    with appliance.db.transaction() as conn:
        for _ in range(2):
            messages_repo.add_event(conn, "replied", campaign_id=cid, lead_id=a[0], message_id=first[a[0]]["id"],
                                    step=None, variant=None, data={}, now=now)
        messages_repo.add_event(conn, "replied", campaign_id=cid, lead_id=a[1], message_id=step2[a[1]]["id"],
                                step=None, variant=None, data={}, now=now)
        messages_repo.add_event(conn, "bounced", campaign_id=cid, lead_id=b[1], message_id=None, step=0,
                                variant="B", data={}, now=now)
    from appliance.services import links
    assert web.test_client().post(f"/u/{links.unsubscribe_token(appliance.keys.tokens, b[-1], cid)}").status_code == 200

    r = viewer.client.get(f"/api/v1/campaigns/{cid}/stats")
    assert r.status_code == 200
    s = r.get_json()
    t = s["totals"]
    assert (t["sent"], t["planned"], t["cancelled"], t["failed"], t["uncertain"]) == (10, 0, 1, 0, 0)
    assert (t["replied"], t["bounced"], t["unsubscribed"], t["auto_replied"], t["complained"]) == (2, 1, 1, 0, 0)
    assert t["reply_rate"] == 0.2 and t["bounce_rate"] == 0.1 and t["unsubscribe_rate"] == 0.1
    counts = {row["status"]: row["n"] for row in rows(
        appliance, "SELECT status, count(*) AS n FROM enrollments GROUP BY status")}
    assert s["leads"] == {"enrolled": 8, **{k: counts.get(k, 0) for k in ("active", "completed", "stopped")}}

    step1, step2_stats = s["steps"]
    assert step1["step"] == 0 and step2_stats["step"] == 1
    variants = {v["variant"]: v for v in step1["variants"]}
    assert set(variants) == {"A", "B"}
    assert variants["A"]["sent"] == len(a) and variants["B"]["sent"] == len(b) and step1["sent"] == 8
    assert variants["A"]["replied"] == 1 and variants["A"]["reply_rate"] == round(1 / len(a), 4)
    assert variants["B"]["bounced"] == 1 and variants["B"]["unsubscribed"] == 1  # the link: last email it got
    assert variants["B"]["replied"] == 0 and variants["B"]["reply_rate"] == 0.0
    assert step1["replied"] == 1 and step1["bounced"] == 1 and step1["unsubscribed"] == 1
    assert step2_stats["sent"] == 2 and step2_stats["cancelled"] == 1 and step2_stats["replied"] == 1
    assert step2_stats["reply_rate"] == 0.5
    labels = [v["variant"] for v in step2_stats["variants"]]
    assert labels == ["A", None]  # sent under A; the cancelled one was never composed
    assert step2_stats["variants"][1]["cancelled"] == 1 and step2_stats["variants"][1]["reply_rate"] is None
    assert viewer.client.get("/api/v1/campaigns/999999/stats").status_code == 404

    # the campaign page shows the same numbers
    page = viewer.client.get(f"/campaigns/{cid}")
    assert page.status_code == 200
    html = page.data.decode()
    assert 'id="campaign-stats"' in html and 'data-total="sent">sent: 10<' in html
    assert "replied: 2 (20.0%)" in html
    row = html.split('class="stats-variant" data-step="0" data-variant="A"')[1].split("</tr>")[0]
    assert f'data-count="sent">{len(a)}<' in row and 'data-count="replied">1<' in row


def test_stats_of_a_campaign_that_sent_nothing(appliance, web, viewer):
    leads = add_leads(appliance, ["nobody@example.test"])
    campaign = launched_campaign(appliance, [], leads, launch=False)
    s = viewer.client.get(f"/api/v1/campaigns/{campaign['id']}/stats").get_json()
    assert s["totals"]["sent"] == 0 and s["totals"]["reply_rate"] is None
    assert [(st["step"], [v["variant"] for v in st["variants"]]) for st in s["steps"]] == [(0, ["A"]), (1, ["A"])]
    assert s["leads"] == {"enrolled": 1, "active": 1, "completed": 0, "stopped": 0}
    page = viewer.client.get(f"/campaigns/{campaign['id']}")
    assert page.status_code == 200 and b'id="campaign-stats"' not in page.data  # a draft has no results yet


# -- uncertain sends: a person decides ------------------------------------------------------------

def uncertain_messages(appliance, mailstack, count: int):
    """Messages claimed, then the process 'died': on a mailbox whose server does not file sent
    mail (we append copies ourselves), start-up reconciliation cannot prove either way."""
    box = connect_mailbox(appliance, mailstack, ALICE, save_sent_copy=True)
    leads = add_leads(appliance, [f"bob+unsure{i}@example.test" for i in range(count)])
    campaign = launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    claimed = [sender.claim(appliance.db, box["id"], POLICY) for _ in range(count)]
    assert all(claimed)
    assert reconcile.Orphans(appliance.db).settle(appliance.db, appliance.keys)["uncertain"] == count
    return box, campaign, [dict(messages_repo.by_id(appliance.db.connection(), c.message["id"])) for c in claimed]


def test_resolving_uncertain_sends_through_the_api(appliance, web, mailstack, viewer, member):
    box, campaign, (went, lost) = uncertain_messages(appliance, mailstack, 2)
    problems = viewer.client.get("/api/v1/messages?status=uncertain").get_json()["items"]
    assert {m["id"] for m in problems} == {went["id"], lost["id"]}
    assert "cannot be proven" in problems[0]["last_error"]

    # viewers (cookie or bearer) may look, not decide; the body must say which way
    r = viewer.client.post(f"/api/v1/messages/{went['id']}/resolve", json={"sent": True}, headers=viewer.headers())
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "role_required"
    r = web.test_client().post(f"/api/v1/messages/{went['id']}/resolve", json={"sent": True},
                               headers=viewer.headers(bearer=True))
    assert r.status_code == 403
    for body in ({}, {"sent": "yes"}, {"sent": 1}):
        r = member.client.post(f"/api/v1/messages/{went['id']}/resolve", json=body, headers=member.headers())
        assert r.status_code == 400, body
    r = member.client.post(f"/api/v1/messages/{went['id']}/resolve", json={"sent": True})  # no CSRF token
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "csrf_failed"
    assert messages_repo.by_id(appliance.db.connection(), went["id"])["status"] == "uncertain"

    # it went: sent as of the claim, the sequence moves on, the variant is the one composed
    r = member.client.post(f"/api/v1/messages/{went['id']}/resolve", json={"sent": True}, headers=member.headers())
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["status"] == "sent" and body["sent_at"] == went["claimed_at"] and body["variant"] == "A"
    assert "marked as sent by member@x.test" in body["last_error"]
    enrollment = rows(appliance, "SELECT * FROM enrollments WHERE id = ?", (went["enrollment_id"],))[0]
    assert enrollment["next_step"] == 1 and enrollment["next_due_at"] > went["claimed_at"]
    assert rows(appliance, "SELECT status FROM leads WHERE id = ?", (went["lead_id"],))[0]["status"] == "contacted"
    stats = viewer.client.get(f"/api/v1/campaigns/{campaign['id']}/stats").get_json()
    assert stats["totals"]["sent"] == 1 and stats["totals"]["uncertain"] == 1
    assert stats["steps"][0]["variants"][0] == {**stats["steps"][0]["variants"][0], "variant": "A", "sent": 1}

    # deciding twice, or on a message that is not uncertain: 409; unknown: 404
    r = member.client.post(f"/api/v1/messages/{went['id']}/resolve", json={"sent": False}, headers=member.headers())
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "not_uncertain"
    assert member.client.post("/api/v1/messages/999999/resolve", json={"sent": True},
                              headers=member.headers()).status_code == 404

    # it did not go: planned again now, and the engine sends it (same Message-ID), once
    r = member.client.post(f"/api/v1/messages/{lost['id']}/resolve", json={"sent": False}, headers=member.headers())
    assert r.status_code == 200 and r.get_json()["status"] == "planned"
    assert r.get_json()["planned_at"] <= to_iso(datetime.now(timezone.utc))
    assert [q["id"] for q in viewer.client.get("/api/v1/queue").get_json()["items"]] == [lost["id"]]
    assert run_until_idle(appliance, box["id"]) == ["sent"]
    again = messages_repo.by_id(appliance.db.connection(), lost["id"])
    assert again["status"] == "sent" and again["message_id"] == lost["message_id"]
    assert len(inbox(mailstack, BOB, ["HEADER", "Message-ID", lost["message_id"]])) == 1

    entries = rows(appliance, "SELECT * FROM audit_log WHERE action = 'message.resolved' ORDER BY id")
    assert [(e["target_id"], e["actor_label"]) for e in entries] == [(str(went["id"]), "member@x.test"),
                                                                    (str(lost["id"]), "member@x.test")]
    assert [json.loads(e["metadata"])["sent"] for e in entries] == [True, False]
    assert json.loads(entries[0]["metadata"])["message_id"] == went["message_id"]


def test_the_problems_tab_buttons_need_csrf_and_a_member(appliance, web, mailstack, viewer, member):
    _, campaign, (went, lost) = uncertain_messages(appliance, mailstack, 2)
    page = member.client.get("/sending/problems")
    html = page.data.decode()
    assert page.status_code == 200 and "Mark as sent" in html and "Send again" in html
    assert f'action="/sending/messages/{went["id"]}/resolve"' in html and 'name="csrf_token"' in html
    seen_by_viewer = viewer.client.get("/sending/problems").data.decode()
    assert f'data-message-id="{went["id"]}"' in seen_by_viewer and "Mark as sent" not in seen_by_viewer

    url = f"/sending/messages/{went['id']}/resolve"
    r = member.client.post(url, data={"sent": "yes"})  # no token
    assert r.status_code == 400 and b"CSRF check failed" in r.data
    r = viewer.client.post(url, data={"sent": "yes", "csrf_token": viewer.csrf})
    assert r.status_code == 403
    assert member.client.post(url, data={"sent": "maybe", "csrf_token": member.csrf}).status_code == 400
    assert messages_repo.by_id(appliance.db.connection(), went["id"])["status"] == "uncertain"

    r = member.client.post(url, data={"sent": "yes", "csrf_token": member.csrf, "campaign_id": str(campaign["id"])})
    assert r.status_code == 302 and f"/sending/problems?campaign_id={campaign['id']}" in r.headers["Location"]
    done = member.client.get(r.headers["Location"]).data.decode()
    assert "Recorded as sent to" in done and f'data-message-id="{went["id"]}"' not in done.split('id="failed"')[0]
    r = member.client.post(f"/sending/messages/{lost['id']}/resolve", data={"sent": "no", "csrf_token": member.csrf})
    assert r.status_code == 302
    assert "Planned again" in member.client.get(r.headers["Location"]).data.decode()
    assert messages_repo.by_id(appliance.db.connection(), went["id"])["status"] == "sent"
    assert messages_repo.by_id(appliance.db.connection(), lost["id"])["status"] == "planned"
    r = member.client.post(url, data={"sent": "no", "csrf_token": member.csrf})  # already settled
    assert r.status_code == 302
    assert "only an uncertain message" in member.client.get(r.headers["Location"]).data.decode()


# -- the pages ------------------------------------------------------------------------------------

def test_the_sending_page_renders_each_tab(appliance, web, mailstack, viewer):
    from .support.mailstack import MailStack
    stack = MailStack(users={ALICE: "alice-pw"}, unknown_recipient="reject").start()
    try:
        box = connect_mailbox(appliance, stack, ALICE)
        leads = add_leads(appliance, ["nobody@nowhere.test", "bob+page@example.test"])
        launched_campaign(appliance, [box["id"]], leads[:1])
        planner.plan_due(appliance.db)
        assert run_until_idle(appliance, box["id"]) == ["failed"]
    finally:
        stack.stop()
    good = connect_mailbox(appliance, mailstack, CAROL)
    campaign = launched_campaign(appliance, [good["id"]], leads[1:])
    planner.plan_due(appliance.db)  # planned, not sent: in the queue

    queue = viewer.client.get("/sending")
    html = queue.data.decode()
    assert queue.status_code == 200 and 'aria-current="page">Queue' in html.replace("\n", "")
    assert 'href="/sending" class="active">Sending</a>' in html  # the nav link
    assert "bob+page@example.test" in html and CAROL in html and 'id="queue-table"' in html
    only = viewer.client.get(f"/sending?mailbox_id={box['id']}").data.decode()
    assert 'id="queue-items-empty"' in only
    assert viewer.client.get("/sending?mailbox_id=x").status_code == 400

    sent = viewer.client.get("/sending/sent")
    html = sent.data.decode()
    assert sent.status_code == 200 and "nobody@nowhere.test" in html and 'data-status="failed"' in html
    assert "bob+page@example.test" not in html  # still planned: not on this tab
    assert 'data-status="failed"' not in viewer.client.get("/sending/sent?status=sent").data.decode()
    filtered = viewer.client.get(f"/sending/sent?campaign_id={campaign['id']}").data.decode()
    assert 'id="sent-empty"' in filtered
    assert viewer.client.get("/sending/sent?status=bogus").status_code == 400

    problems = viewer.client.get("/sending/problems")
    html = problems.data.decode()
    assert problems.status_code == 200 and 'id="failed-table"' in html and "User unknown" in html
    assert 'id="uncertain-empty"' in html and 'id="retrying-empty"' in html


def test_sent_tab_pages_through_messages(appliance, web, mailstack, viewer, monkeypatch):
    from webui.blueprints import ui_sending
    monkeypatch.setattr(ui_sending, "PAGE", 2)
    box = connect_mailbox(appliance, mailstack, ALICE)
    leads = add_leads(appliance, [f"bob+pages{i}@example.test" for i in range(5)])
    launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    assert run_until_idle(appliance, box["id"]) == ["sent"] * 5
    shown, url = [], "/sending/sent"
    for _ in range(5):
        html = viewer.client.get(url).data.decode()
        shown += [line.split('data-message-id="')[1].split('"')[0] for line in html.splitlines()
                  if 'data-message-id="' in line]
        if 'rel="next"' not in html:
            break
        url = html.split('id="next-page" rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert shown == [str(m["id"]) for m in reversed(rows(appliance))]


def test_mailbox_page_lists_its_upcoming_sends(appliance, web, mailstack):
    admin = signed_in(appliance, web, ADMIN, "admin")
    box = connect_mailbox(appliance, mailstack, ALICE, min_gap_seconds=60, max_gap_seconds=60)
    leads = add_leads(appliance, [f"bob+soon{i}@example.test" for i in range(3)])
    launched_campaign(appliance, [box["id"]], leads)
    planner.plan_due(appliance.db)
    html = admin.client.get(f"/mailboxes/{box['id']}").data.decode()
    section = html.split('id="upcoming-sends"')[1].split("</section>")[0]
    due_order = [m["to_email"] for m in rows(appliance, "SELECT to_email FROM messages ORDER BY planned_at, id")]
    assert len(set(due_order)) == 3
    assert sorted(due_order, key=section.index) == due_order and all(e in section for e in due_order)
    other = connect_mailbox(appliance, mailstack, CAROL)
    assert 'id="upcoming-empty"' in admin.client.get(f"/mailboxes/{other['id']}").data.decode()


def test_id_filters_beyond_64_bits_are_refused_not_a_server_error(viewer):
    """Found by the schema run: such ids overflowed in the database driver, and non-ASCII digits
    failed int() (500s)."""
    for name in ("campaign_id", "lead_id", "mailbox_id"):
        for value in (2**63, "%C2%B2"):  # past 64 bits; a superscript two (a digit to str.isdigit)
            r = viewer.client.get(f"/api/v1/messages?{name}={value}")
            assert r.status_code == 400 and name in r.get_json()["error"]["details"]["fields"], (name, value)
    assert viewer.client.get(f"/api/v1/messages/{2**63}").status_code == 404
    for ident in (2**63, "%C2%B2"):
        r = viewer.client.get(f"/api/v1/queue?cursor=2026-01-01T00:00:00Z~{ident}")
        assert r.status_code == 400 and r.get_json()["error"]["details"]["fields"] == {"cursor": "Invalid cursor."}
