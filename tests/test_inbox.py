"""The unified inbox through the real Flask app over a real encrypted database, with inbound mail
stored by the real ingest path: list filters and pages, the thread in time order, reading
without side effects, read state, labels (and the lead statuses they set), roles and API-key
scopes, CSRF on cookie calls, bad input, injection, and the pages."""

from __future__ import annotations

import email
import email.policy
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.services import api_keys, html_safety, inbox, suppressions

from .support.access import add_user, signed_in
from .support.campaign_setup import admin_principal
from .support.inbox_setup import (at, auto_reply_from, bounce_for, campaign_with_leads, offline_mailbox,
                                 record_sent_step, reply_from)

SALES, OPS = "sales@acme.test", "ops@acme.test"


@pytest.fixture
def story(appliance):
    """Two mailboxes, two campaigns, five leads: replies, an auto-reply and a bounce."""
    app = appliance
    sales, ops = offline_mailbox(app, SALES), offline_mailbox(app, OPS)
    spring, leads_a = campaign_with_leads(app, [sales], ["ann@lead.test", "bo@lead.test", "cy@lead.test"],
                                          name="Spring")
    autumn, leads_b = campaign_with_leads(app, [ops], ["di@other.test", "ed@other.test"], name="Autumn")
    ann, bo, cy = leads_a
    di, ed = leads_b
    s = {name: record_sent_step(app, campaign, lead, box, 0, at(hour)) for name, campaign, lead, box, hour in (
        ("ann", spring, ann, sales, 0), ("bo", spring, bo, sales, 0.1), ("cy", spring, cy, sales, 0.2),
        ("di", autumn, di, ops, 0.3), ("ed", autumn, ed, ops, 0.4))}
    ids = {
        "ann": reply_from(app, sales, s["ann"], "ann@lead.test", SALES, at(1), sender_name="Ann Archer",
                          subject="Re: Hello"),
        "bo_auto": auto_reply_from(app, sales, s["bo"], "bo@lead.test", SALES, at(2)),
        "cy_bounce": bounce_for(app, sales, s["cy"], "cy@lead.test", SALES, at(3)),
        "di": reply_from(app, ops, s["di"], "di@other.test", OPS, at(4), subject="Re: Pricing 100%_off"),
        "ed": reply_from(app, ops, s["ed"], "ed@other.test", OPS, at(5), subject="Re: Hello",
                         html="<p>Sure, <b>call me</b>.</p>"),
    }
    ann_step_1 = record_sent_step(app, spring, ann, sales, 1, at(6), subject="Hello")
    ids["ann_again"] = reply_from(app, sales, ann_step_1, "ann@lead.test", SALES, at(7), subject="Re: Hello",
                                  text="Tuesday works.")
    return {"app": app, "mailboxes": {"sales": sales, "ops": ops}, "campaigns": {"spring": spring, "autumn": autumn},
            "leads": {"ann": ann, "bo": bo, "cy": cy, "di": di, "ed": ed}, "ids": ids, "steps": s}


@pytest.fixture
def viewer(appliance, web):
    return signed_in(appliance, web, "viewer@x.test", "viewer")


@pytest.fixture
def member(appliance, web):
    return signed_in(appliance, web, "member@x.test", "member")


@pytest.fixture
def admin(appliance, web):
    return signed_in(appliance, web, "boss@x.test", "admin")


def ids_of(session, query: str = "") -> list[int]:
    r = session.client.get(f"/api/v1/replies{query}")
    assert r.status_code == 200, r.get_json()
    return [item["id"] for item in r.get_json()["items"]]


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


# -- list, filters, pages ----------------------------------------------------------------------------

def test_filters_narrow_the_list(story, viewer):
    ids, mb, camp = story["ids"], story["mailboxes"], story["campaigns"]
    everything = ids_of(viewer)
    assert everything == sorted(ids.values(), reverse=True)  # newest first
    assert ids_of(viewer, f"?campaign_id={camp['autumn']}") == [ids["ed"], ids["di"]]
    assert ids_of(viewer, f"?mailbox_id={mb['sales']}") == [ids["ann_again"], ids["cy_bounce"], ids["bo_auto"],
                                                            ids["ann"]]
    assert ids_of(viewer, "?kind=bounce") == [ids["cy_bounce"]]
    assert ids_of(viewer, "?kind=auto_reply") == [ids["bo_auto"]]
    # only human replies arrive unread
    assert ids_of(viewer, "?unread=true") == [ids["ann_again"], ids["ed"], ids["di"], ids["ann"]]
    assert ids_of(viewer, "?unread=false") == [ids["cy_bounce"], ids["bo_auto"]]
    assert ids_of(viewer, "?lead_status=bounced") == [ids["cy_bounce"]]
    assert ids_of(viewer, f"?lead_id={story['leads']['ann']}") == [ids["ann_again"], ids["ann"]]
    assert ids_of(viewer, f"?kind=reply&mailbox_id={mb['ops']}&unread=1") == [ids["ed"], ids["di"]]
    # q: sender address, sender name or subject; % and _ are plain characters
    assert ids_of(viewer, "?q=archer") == [ids["ann"]]
    assert ids_of(viewer, "?q=ed@other") == [ids["ed"]]
    assert ids_of(viewer, "?q=100%25_off") == [ids["di"]]
    assert ids_of(viewer, "?q=100%25") == [ids["di"]]
    assert ids_of(viewer, "?q=_") == [ids["di"]]
    assert ids_of(viewer, "?q=" + "x" * 200) == []
    item = viewer.client.get("/api/v1/replies?kind=bounce").get_json()["items"][0]
    assert item["classification"] == "bounce 5.1.1 (hard)" and item["details"]["status"] == "5.1.1"
    assert item["lead"]["email"] == "cy@lead.test" and item["campaign_name"] == "Spring"
    assert item["mailbox_email"] == SALES and "body_html" not in item  # bodies only on the message itself


def test_pages_walk_every_message_once(story, viewer):
    seen, cursor, pages = [], None, 0
    while True:
        r = viewer.client.get("/api/v1/replies?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        body = r.get_json()
        assert set(body) == {"items", "next_cursor"} and len(body["items"]) <= 2
        seen += [i["id"] for i in body["items"]]
        cursor, pages = body["next_cursor"], pages + 1
        if cursor is None:
            break
    assert seen == sorted(story["ids"].values(), reverse=True) and pages == 4
    # filters hold across pages
    first = viewer.client.get("/api/v1/replies?kind=reply&limit=1").get_json()
    second = viewer.client.get(f"/api/v1/replies?kind=reply&limit=1&cursor={first['next_cursor']}").get_json()
    assert [i["kind"] for i in first["items"] + second["items"]] == ["reply", "reply"]
    assert second["items"][0]["id"] < first["items"][0]["id"]
    assert len(viewer.client.get("/api/v1/replies").get_json()["items"]) == 6  # default limit 50


@pytest.mark.parametrize("query, field", [
    ("?limit=0", "limit"), ("?limit=501", "limit"), ("?limit=ten", "limit"), ("?cursor=-3", "cursor"),
    ("?kind=spam", "kind"), ("?lead_status=happy", "lead_status"), ("?unread=maybe", "unread"),
    ("?campaign_id=1%20OR%201=1", "campaign_id"), ("?mailbox_id=x", "mailbox_id"), ("?label=%27;--", "label"),
    ("?q=" + "x" * 201, "q"),
])
def test_bad_filters_are_a_clear_400(story, viewer, query, field):
    r = viewer.client.get("/api/v1/replies" + query)
    assert r.status_code == 400
    error = error_of(r)
    assert field in error["details"]["fields"], error


def test_search_text_is_never_sql(story, viewer):
    for q in ("' OR 1=1 --", "\" OR \"\"=\"", "%' UNION SELECT password_hash FROM users --", "\\", "%%"):
        r = viewer.client.get("/api/v1/replies", query_string={"q": q})
        assert r.status_code == 200 and r.get_json()["items"] == [], q


# -- one message and its thread ----------------------------------------------------------------------

def test_thread_is_in_time_order_and_reading_changes_nothing(story, viewer):
    ids = story["ids"]
    r = viewer.client.get(f"/api/v1/replies/{ids['ann']}")
    assert r.status_code == 200
    message = r.get_json()
    assert message["unread"] is True and message["from_name"] == "Ann Archer"
    assert message["body_text"].startswith("Thanks, tell me more.") and message["body_html"] is None
    assert [(t["type"], t.get("step"), t["id"]) for t in message["thread"]] == [
        ("step", 0, message["thread"][0]["id"]), ("in", None, ids["ann"]),
        ("step", 1, message["thread"][2]["id"]), ("in", None, ids["ann_again"])]
    assert message["thread"][0]["header_message_id"] == story["steps"]["ann"]
    times = [t["at"] for t in message["thread"]]
    assert times == sorted(times)
    # the other lead's conversation is not in it
    assert all(t.get("lead_id", story["leads"]["ann"]) == story["leads"]["ann"] for t in message["thread"])
    # reading through the API changes nothing
    assert viewer.client.get(f"/api/v1/replies/{ids['ann']}").get_json()["unread"] is True
    assert inbox.unread_count(story["app"].db) == 4
    assert viewer.client.get("/api/v1/replies/999999").status_code == 404


def test_html_is_served_sanitised_beside_the_raw_body(story, viewer):
    message = viewer.client.get(f"/api/v1/replies/{story['ids']['ed']}").get_json()
    assert message["body_html"].startswith("<p>Sure, <b>call me</b>.</p>")
    assert message["body_html_safe"].strip() == "<p>Sure, <b>call me</b>.</p>"


def test_read_state_is_changed_only_by_patch(story, viewer):
    ann = story["ids"]["ann"]
    r = viewer.client.patch(f"/api/v1/replies/{ann}", json={"unread": False}, headers=viewer.headers())
    assert r.status_code == 200 and r.get_json()["unread"] is False
    assert ann not in ids_of(viewer, "?unread=true")
    r = viewer.client.patch(f"/api/v1/replies/{ann}", json={"unread": True}, headers=viewer.headers())
    assert r.get_json()["unread"] is True
    for body in ({"unread": "yes"}, {"unread": 1}, {"unread": None}, {}):
        r = viewer.client.patch(f"/api/v1/replies/{ann}", json=body, headers=viewer.headers())
        assert r.status_code == 400 and "unread" in error_of(r)["details"]["fields"], body
    r = viewer.client.patch(f"/api/v1/replies/{ann}", data="unread=false", headers=viewer.headers(),
                            content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415
    assert viewer.client.patch("/api/v1/replies/999999", json={"unread": False},
                               headers=viewer.headers()).status_code == 404


# -- labels ------------------------------------------------------------------------------------------

def audit_actions(app, prefix: str) -> list[tuple[str, str]]:
    return [(r["action"], r["metadata"]) for r in app.db.connection().execute(
        "SELECT action, metadata FROM audit_log WHERE action LIKE ? ORDER BY id", (prefix + "%",))]


def lead_row(app, lead_id: int):
    return app.db.connection().execute("SELECT status, label FROM leads WHERE id = ?", (lead_id,)).fetchone()


def test_labels_set_the_lead_status_and_are_audited(story, member, admin):
    app, ann, ed = story["app"], story["leads"]["ann"], story["leads"]["ed"]
    put = lambda s, lead, label: s.client.put(f"/api/v1/leads/{lead}/label", json={"label": label},
                                              headers=s.headers())
    r = put(member, ann, "interested")
    assert r.status_code == 200 and r.get_json() == {"lead_id": ann, "label": "interested", "status": "interested"}
    assert tuple(lead_row(app, ann)) == ("interested", "interested")
    assert put(member, ann, "meeting_booked").get_json()["status"] == "meeting_booked"
    # out of office and wrong person label without touching the status
    assert put(member, ann, "out_of_office").get_json() == {"lead_id": ann, "label": "out_of_office",
                                                          "status": "meeting_booked"}
    assert put(member, ann, None).get_json() == {"lead_id": ann, "label": None, "status": "meeting_booked"}
    assert put(member, ed, "not_interested").get_json()["status"] == "not_interested"
    # the list filters by label and by the status the label set
    assert ids_of(member, "?label=not_interested") == [story["ids"]["ed"]]
    assert ids_of(member, "?lead_status=meeting_booked") == [story["ids"]["ann_again"], story["ids"]["ann"]]
    # custom labels: created by members, must exist before use, deleted by admins (taken off leads)
    assert put(member, ann, "champion").status_code == 400
    r = member.client.post("/api/v1/inbox-labels", json={"name": "Champion", "color": "#12AB34"},
                           headers=member.headers())
    assert r.status_code == 201 and r.get_json()["name"] == "champion" and r.get_json()["color"] == "#12ab34"
    assert put(member, ann, "champion").get_json()["label"] == "champion"
    names = [l["name"] for l in member.client.get("/api/v1/inbox-labels").get_json()["items"]]
    assert names == ["interested", "not_interested", "meeting_booked", "out_of_office", "wrong_person", "champion"]
    assert member.client.delete("/api/v1/inbox-labels/champion", headers=member.headers()).status_code == 403
    r = admin.client.delete("/api/v1/inbox-labels/champion", headers=admin.headers())
    assert r.status_code == 200 and r.get_json() == {"name": "champion", "leads_cleared": 1}
    assert tuple(lead_row(app, ann)) == ("meeting_booked", None)
    assert admin.client.delete("/api/v1/inbox-labels/champion", headers=admin.headers()).status_code == 404
    assert admin.client.delete("/api/v1/inbox-labels/interested", headers=admin.headers()).status_code == 409
    actions = [a for a, _ in audit_actions(app, "lead.labelled")]
    assert len(actions) == 6
    assert '"label":"interested"' in audit_actions(app, "lead.labelled")[0][1]
    assert [a for a, _ in audit_actions(app, "inbox_label.")] == ["inbox_label.created", "inbox_label.deleted"]


@pytest.mark.parametrize("body, status, field", [
    ({"name": ""}, 400, "name"), ({"name": "x" * 41}, 400, "name"), ({"name": "<script>"}, 400, "name"),
    ({"name": "a\r\nb"}, 400, "name"), ({"name": 7}, 400, "name"), ({"name": "ok", "color": "red"}, 400, "color"),
    ({"name": "interested"}, 409, None), ({"name": "dupe"}, 409, None),
])
def test_bad_labels_are_refused(story, member, body, status, field):
    member.client.post("/api/v1/inbox-labels", json={"name": "dupe"}, headers=member.headers())
    r = member.client.post("/api/v1/inbox-labels", json=body, headers=member.headers())
    assert r.status_code == status
    error = error_of(r)
    if field:
        assert field in error["details"]["fields"]
    else:
        assert error["code"] == "label_exists"


def test_a_lead_label_must_be_named_right(story, member):
    ann = story["leads"]["ann"]
    for body in ({}, {"label": 3}, {"label": "' OR 1=1 --"}, {"label": "x" * 41}):
        r = member.client.put(f"/api/v1/leads/{ann}/label", json=body, headers=member.headers())
        assert r.status_code == 400 and "label" in error_of(r)["details"]["fields"], body
    r = member.client.put("/api/v1/leads/999999/label", json={"label": "interested"}, headers=member.headers())
    assert r.status_code == 404


# -- who may do what ---------------------------------------------------------------------------------

def test_roles(story, viewer):
    ids, ann = story["ids"], story["leads"]["ann"]
    assert viewer.client.get("/api/v1/replies").status_code == 200
    assert viewer.client.get("/api/v1/inbox-labels").status_code == 200
    # the shared read state: viewers may mark it
    assert viewer.client.patch(f"/api/v1/replies/{ids['ann']}", json={"unread": False},
                               headers=viewer.headers()).status_code == 200
    for method, path, body in (("put", f"/api/v1/leads/{ann}/label", {"label": "interested"}),
                               ("post", "/api/v1/inbox-labels", {"name": "vip"}),
                               ("post", f"/api/v1/replies/{ids['ann']}/respond", {"body": "Hi"}),
                               ("delete", "/api/v1/inbox-labels/vip", None)):
        r = getattr(viewer.client, method)(path, json=body, headers=viewer.headers())
        assert r.status_code == 403 and error_of(r)["code"] == "role_required", (method, path)
    assert lead_row(story["app"], ann)["label"] is None


def test_api_key_scopes(story, appliance, web):
    user = add_user(appliance, "bot@x.test", role="admin")
    from appliance.services.authz import Principal
    owner = Principal(user_id=user, email="bot@x.test", role="admin", via="session")
    read_key = api_keys.create(appliance.db, owner, name="reader", scopes=["read"], cost=12)["key"]
    write_key = api_keys.create(appliance.db, owner, name="writer", scopes=["read", "write"], cost=12)["key"]
    client = web.test_client()
    reader, writer = ({"Authorization": f"Bearer {k}"} for k in (read_key, write_key))
    ann = story["ids"]["ann"]
    assert client.get("/api/v1/replies", headers=reader).status_code == 200
    assert client.get(f"/api/v1/replies/{ann}", headers=reader).status_code == 200
    r = client.patch(f"/api/v1/replies/{ann}", json={"unread": False}, headers=reader)
    assert r.status_code == 403 and error_of(r)["code"] == "scope_required"
    r = client.put(f"/api/v1/leads/{story['leads']['ann']}/label", json={"label": "interested"}, headers=reader)
    assert r.status_code == 403
    assert client.patch(f"/api/v1/replies/{ann}", json={"unread": False}, headers=writer).status_code == 200
    assert client.post("/api/v1/inbox-labels", json={"name": "vip"}, headers=writer).status_code == 201
    assert client.get("/api/v1/replies").status_code == 401
    assert error_of(client.get("/api/v1/replies"))["code"] == "unauthenticated"


def test_cookie_calls_need_the_csrf_token(story, member):
    ann = story["ids"]["ann"]
    calls = (("patch", f"/api/v1/replies/{ann}", {"unread": False}),
             ("put", f"/api/v1/leads/{story['leads']['ann']}/label", {"label": "interested"}),
             ("post", "/api/v1/inbox-labels", {"name": "vip"}),
             ("post", f"/api/v1/replies/{ann}/respond", {"body": "Hello"}))
    for method, path, body in calls:
        r = getattr(member.client, method)(path, json=body)
        assert r.status_code == 400 and error_of(r)["code"] == "csrf_failed", path
    assert lead_row(story["app"], story["leads"]["ann"])["label"] is None
    assert member.client.patch(f"/api/v1/replies/{ann}", json={"unread": False},
                               headers=member.headers()).status_code == 200


# -- responding: what is refused before any mail server is involved ---------------------------------

def test_responses_refused_before_sending(story, member):
    ids = story["ids"]
    respond = lambda inbox_id, body: member.client.post(f"/api/v1/replies/{inbox_id}/respond", json=body,
                                                        headers=member.headers())
    for body in ({"body": ""}, {"body": "  \n\t "}, {}):
        r = respond(ids["ann"], body)
        assert r.status_code == 422 and error_of(r)["code"] == "empty_body", body
    assert respond(ids["ann"], {"body": 5}).status_code == 400
    assert respond(ids["ann"], {"body": "x" * 100_001}).status_code == 400
    r = respond(ids["ann"], {"body": "Hi", "html": True})
    assert r.status_code == 400 and "html" in error_of(r)["details"]["fields"]
    r = respond(ids["cy_bounce"], {"body": "Hello?"})
    assert r.status_code == 422 and error_of(r)["code"] == "cannot_respond"
    assert respond(999999, {"body": "Hi"}).status_code == 404
    suppressions.add(story["app"].db, admin_principal(story["app"]), {"value": "other.test", "reason": "manual"})
    r = respond(ids["di"], {"body": "Hi Di"})
    assert r.status_code == 409 and error_of(r)["code"] == "suppressed"
    assert error_of(r)["details"]["suppression"]["value"] == "other.test"
    # nothing was recorded or audited
    conn = story["app"].db.connection()
    assert conn.execute("SELECT count(*) FROM inbox_messages WHERE direction = 'out'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM audit_log WHERE action IN ('reply.sent', 'credential.read')"
                        ).fetchone()[0] == 0


def test_reply_subjects_never_stack_prefixes():
    from appliance.services.inbox_reply import reply_subject
    assert reply_subject("Hello") == "Re: Hello"
    assert reply_subject("Re: Hello") == "Re: Hello"
    assert reply_subject("RE: re:Re : Hello") == "Re: Hello"
    assert reply_subject("AW: SV: Re[2]: Angebot") == "Re: Angebot"
    assert reply_subject("Regarding the offer") == "Re: Regarding the offer"
    assert reply_subject("") == "Re:"
    assert reply_subject("Re: line\r\nBcc: x@evil.test") == "Re: line Bcc: x@evil.test"


# -- the pages ---------------------------------------------------------------------------------------

def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    return match.group(1).strip() if match else ""


def test_inbox_pages(story, member):
    ids, client = story["ids"], member.client
    page = client.get("/inbox").get_data(as_text=True)
    assert text_of(page, "nav-unread") == "4"
    assert page.count('data-inbox-id="') == 6
    assert page.count('data-unread="true"') == 4
    assert 'data-kind="bounce">bounce 5.1.1 (hard)' in page
    filtered = client.get(f"/inbox?kind=reply&mailbox_id={story['mailboxes']['ops']}").get_data(as_text=True)
    assert filtered.count('data-inbox-id="') == 2
    assert client.get("/inbox?kind=nope").status_code == 400
    paged = client.get(f"/inbox?cursor={ids['bo_auto']}").get_data(as_text=True)
    assert paged.count('data-inbox-id="') == 1  # only the oldest is below the auto-reply
    # opening a message marks it read, shows the thread in order and the label buttons
    thread = client.get(f"/inbox/{ids['ann']}").get_data(as_text=True)
    assert text_of(thread, "nav-unread") == "3"
    assert re.findall(r'data-type="(step|in|out)"', thread) == ["step", "in", "step", "in"]
    assert 'id="respond-form"' in thread and 'id="label-bar"' in thread
    token = re.search(r'name="csrf_token" value="([^"]+)"', thread).group(1)
    r = client.post(f"/inbox/{ids['ann']}/label", data={"csrf_token": token, "lead_id": story["leads"]["ann"],
                                                        "label": "interested"})
    assert r.status_code == 302
    thread = client.get(f"/inbox/{ids['ann']}").get_data(as_text=True)
    assert 'id="lead-label" data-label="interested"' in thread and "Label: interested." in thread
    assert client.post(f"/inbox/{ids['ann']}/label", data={"lead_id": story["leads"]["ann"],
                                                           "label": "lost"}).status_code == 400  # no CSRF token
    r = client.post(f"/inbox/{ids['ann']}/unread", data={"csrf_token": token})
    assert r.status_code == 302
    assert text_of(client.get("/inbox").get_data(as_text=True), "nav-unread") == "4"
    # an empty reply keeps the page, says why, and sends nothing
    r = client.post(f"/inbox/{ids['ann']}/respond", data={"csrf_token": token, "body": "   "})
    assert r.status_code == 422 and "Write something to send." in r.get_data(as_text=True)


def test_viewers_see_no_reply_form_or_label_buttons(story, viewer):
    thread = viewer.client.get(f"/inbox/{story['ids']['ann']}").get_data(as_text=True)
    assert 'id="respond-form"' not in thread and 'id="label-bar"' not in thread
    token = re.search(r'name="csrf_token" value="([^"]+)"', thread).group(1)
    r = viewer.client.post(f"/inbox/{story['ids']['ann']}/respond", data={"csrf_token": token, "body": "Hi"})
    assert r.status_code == 403


def test_label_pages(story, member, admin):
    page = member.client.get("/inbox/labels").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = member.client.post("/inbox/labels", data={"csrf_token": token, "name": "Hot lead", "color": ""})
    assert r.status_code == 302
    r = member.client.post("/inbox/labels", data={"csrf_token": token, "name": "bad<name>", "color": ""})
    assert r.status_code == 400 and 'value="bad&lt;name&gt;"' in r.get_data(as_text=True)  # kept, escaped
    assert 'data-label="hot lead"' in member.client.get("/inbox/labels").get_data(as_text=True)
    assert member.client.post("/inbox/labels/hot lead/delete", data={"csrf_token": token}).status_code == 403
    admin_page = admin.client.get("/inbox/labels").get_data(as_text=True)
    admin_token = re.search(r'name="csrf_token" value="([^"]+)"', admin_page).group(1)
    assert admin.client.post("/inbox/labels/hot lead/delete", data={"csrf_token": admin_token}).status_code == 302
    assert 'data-label="hot lead"' not in admin.client.get("/inbox/labels").get_data(as_text=True)


# -- the sanitiser on its own ------------------------------------------------------------------------

def test_plain_text_is_escaped_and_only_http_links_are_made():
    out = html_safety.text_to_html('see https://ok.example/a?b=1&c=2. <script>alert(1)</script> '
                                   'javascript:alert(1) "quoted" http://x.example/"onmouseover=alert(1)')
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert out.count("<a ") == 2
    assert '<a href="https://ok.example/a?b=1&amp;c=2" rel="noopener noreferrer nofollow" target="_blank">' in out
    assert 'href="http://x.example/"' in out and "onmouseover=alert(1)" in out.split("</a>")[-1]
    assert 'href="javascript' not in out


class _Elements(HTMLParser):
    """Every start tag and its attributes, as a browser-like tokenizer sees them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def active_parts(markup: str, images: bool = False) -> list[str]:
    parser = _Elements()
    parser.feed(markup)
    parser.close()
    bad = []
    for tag, attrs in parser.found:
        if tag not in ALLOWED_TAGS:
            bad.append(tag)
        for name, value in attrs.items():
            value = (value or "").strip().lower()
            if name.startswith("on") or name in ("style", "class", "id", "srcset", "background", "action"):
                bad.append(f"{tag}@{name}")
            if name == "href" and not value.startswith(("http:", "https:", "mailto:")):
                bad.append(f"{tag}@href={value}")
            if name == "src" and (not images or not value.startswith(("http:", "https:"))):
                bad.append(f"{tag}@src={value}")
        if tag == "a" and "href" in attrs and (attrs.get("rel") != html_safety.LINK_REL or
                                               attrs.get("target") != "_blank"):
            bad.append("a without rel/target")
    return bad


ALLOWED_TAGS = {"a", "abbr", "acronym", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite", "code",
                "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "font", "h1",
                "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s",
                "samp", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
                "thead", "tr", "tt", "u", "ul", "var", "wbr"}
HOSTILE = sorted((Path(__file__).parent / "samples" / "hostile").glob("*.eml"))


@pytest.mark.parametrize("sample", HOSTILE, ids=lambda p: p.stem)
def test_hostile_samples_sanitise_to_inert_markup(sample):
    message = email.message_from_bytes(sample.read_bytes(), policy=email.policy.default)
    part = message.get_body(("html", "plain"))
    markup = part.get_content()
    for images in (False, True):
        safe = html_safety.sanitize_html(markup, images=images)
        assert active_parts(safe.html, images) == [], safe.html
        assert "sample" in safe.html or part.get_content_type() == "text/plain"
    assert active_parts(html_safety.text_to_html(markup)) == []


_PIECES = st.sampled_from([
    "<", ">", "</", "/>", '"', "'", "=", " ", "\n", "`", "&", "&#x3c;", "&lt;", "<!--", "-->", "<![CDATA[", "]]>",
    "script", "img", "svg", "math", "style", "noscript", "iframe", "a", "p", "title", "textarea", "xmp", "template",
    "mglyph", "mtext", "table", "form", "select", "option", "src", "href", "onerror", "onload", "style",
    "javascript:", "data:", "http://x.example/i.png", "alert(1)", "expression(", "url(", "srcset", "xlink:href"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=60).map("".join))
def test_nothing_active_survives_any_markup(markup):
    assert active_parts(html_safety.sanitize_html(markup).html) == []
    assert active_parts(html_safety.sanitize_html(markup, images=True).html, images=True) == []


def test_a_leads_page_leads_to_its_conversation(story, member):
    ann, client = story["leads"]["ann"], member.client
    lead_page = client.get(f"/leads/{ann}").get_data(as_text=True)
    link = re.search(r'id="lead-conversation" href="([^"]+)"', lead_page).group(1).replace("&amp;", "&")
    assert text_of(lead_page, "lead-label") == "none"
    only_ann = client.get(link).get_data(as_text=True)
    shown = set(re.findall(r'data-inbox-id="(\d+)"', only_ann))
    assert shown == {str(story["ids"]["ann"]), str(story["ids"]["ann_again"])}
    assert 'name="lead_id" value="%d"' % ann in only_ann  # the filter form keeps the lead
    assert client.get("/inbox?lead_id=%C2%B2").status_code == 400
    token = re.search(r'name="csrf_token" value="([^"]+)"', only_ann).group(1)
    client.post(f"/inbox/{story['ids']['ann']}/label", data={"csrf_token": token, "lead_id": ann,
                                                             "label": "meeting_booked"})
    assert text_of(client.get(f"/leads/{ann}").get_data(as_text=True), "lead-label") == "meeting booked"
    api = client.get(f"/api/v1/leads/{ann}", headers=member.headers()).get_json()
    assert (api["label"], api["status"], api["soft_bounces"]) == ("meeting_booked", "meeting_booked", 0)
