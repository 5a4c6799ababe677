"""Campaign pages through the real Flask app: the list, the editor without JavaScript (structure
buttons keep what was typed, errors next to their fields), enrolment, launch checks, preview,
test send, read-only viewers and CSRF."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest


from .support.access import add_user, login
from .support.campaign_setup import insert_leads as add_leads

ALICE = "alice@example.test"


class Page(HTMLParser):
    """What a test needs from a page: form values by name, text by element id, forms by id."""

    VOID = {"input", "br", "hr", "img", "meta", "link", "option", "col", "source", "wbr"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.values: dict[str, list[str]] = {}
        self.checked: dict[str, list[str]] = {}
        self.selected: dict[str, str] = {}
        self.text_by_id: dict[str, str] = {}
        self.attrs_by_id: dict[str, dict] = {}
        self.action_buttons: list[str] = []
        self.forms: list[dict] = []
        self._open: list[tuple[str, str | None]] = []  # (tag, id) of open elements
        self._select: str | None = None
        self._textarea: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if "id" in a:
            self.attrs_by_id[a["id"]] = a
            self.text_by_id.setdefault(a["id"], "")
        if tag == "form":
            self.forms.append(a)
        elif tag == "input":
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    self.checked.setdefault(a.get("name", ""), []).append(a.get("value", ""))
            else:
                self.values.setdefault(a.get("name", ""), []).append(a.get("value", ""))
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select and "selected" in a:
            self.selected[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a.get("name")
            self.values.setdefault(self._textarea, []).append("")
        elif tag == "button" and a.get("name") == "action":
            self.action_buttons.append(a.get("value", ""))
        if tag not in self.VOID:
            self._open.append((tag, a.get("id")))

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        if tag == "textarea":
            self._textarea = None
        for k in range(len(self._open) - 1, -1, -1):
            if self._open[k][0] == tag:
                del self._open[k:]
                break

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea][-1] += data
        for _, ident in self._open:
            if ident:
                self.text_by_id[ident] += data

    def value(self, name: str) -> str:
        return self.values[name][0]

    def text(self, ident: str) -> str:
        return " ".join(self.text_by_id[ident].split())

    def error(self, field: str) -> str:
        """The error shown next to an editor field ("steps.1.variants.0.body")."""
        return self.text("e-" + field.replace(".", "-"))


def page(response) -> Page:
    return Page(response.data.decode())


@pytest.fixture
def member(appliance, web):
    add_user(appliance, "member@x.test", role="member")
    client = web.test_client()
    return login(client, "member@x.test")


STEPS = [{"delay_minutes": 0, "variants": [
            {"subject": "Hello {{first_name|there}}",
             "body": "Hi {{first_name}},\n\nA note for {{company|your team}}."},
            {"subject": "Idea", "body": "Hey {{first_name|there}}."}]},
         {"delay_minutes": 3 * 1440, "variants": [{"subject": "", "body": "Bumping this."}]}]


def api_create(session, **over):
    body = {"name": "Q4 outreach", "steps": STEPS, "schedule": {"always": True}, **over}
    r = session.client.post("/api/v1/campaigns", json=body, headers=session.headers())
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def api_get(session, campaign_id):
    return session.client.get(f"/api/v1/campaigns/{campaign_id}").get_json()


def editor_form(session, **over) -> dict:
    form = {"csrf_token": session.csrf, "name": "Spring launch", "schedule_mode": "window",
            "schedule-timezone": "Europe/Berlin", "schedule-days": ["mon", "wed", "fri"], "schedule-start": "08:30",
            "schedule-end": "16:00", "daily_limit": "150", "daily_new_leads": "", "stop_on_reply": "1",
            "stop_company_on_reply": "1", "unsubscribe_footer": "1", "pool_mode": "tag", "mailbox_tag": "EU",
            "steps-0-delay_value": "0", "steps-0-delay_unit": "minutes",
            "steps-0-variants-0-subject": "{Hi|Hello} {{first_name|there}}",
            "steps-0-variants-0-body": "Line one\r\nLine two for {{company|you}}", "steps-0-variants-0-weight": "3",
            "steps-0-variants-1-subject": "Second idea", "steps-0-variants-1-body": "Variant B body",
            "steps-0-variants-1-weight": "1",
            "steps-1-delay_value": "2", "steps-1-delay_unit": "days",
            "steps-1-variants-0-subject": "", "steps-1-variants-0-body": "Following up.",
            "steps-1-variants-0-weight": "1", "action": "save"}
    form.update(over)
    return form


# -- list -----------------------------------------------------------------------------------------

def test_list_shows_status_and_headline_numbers_and_filters(appliance, web, member):
    draft = api_create(member, name="Draft one")
    other = api_create(member, name="Another one")
    ids = add_leads(appliance, [{"email": "a@lead.test"}, {"email": "b@lead.test"}])
    member.client.post(f"/api/v1/campaigns/{other['id']}/leads", json={"lead_ids": ids}, headers=member.headers())
    r = member.client.get("/campaigns")
    assert r.status_code == 200
    p = page(r)
    assert p.attrs_by_id["new-campaign"]["href"] == "/campaigns/new"
    body = r.data.decode()
    assert "Draft one" in body and "Another one" in body and 'class="badge badge-draft"' in body
    row = body.split(f'data-campaign-id="{other["id"]}"')[1].split("</tr>")[0]
    assert 'data-count="total">2<' in row and 'data-count="active">2<' in row and 'data-count="completed">0<' in row
    assert b">Campaigns</a>" in r.data  # the nav link
    assert b"Draft one" not in member.client.get("/campaigns?status=active").data
    assert b"Draft one" in member.client.get("/campaigns?status=draft").data
    assert member.client.get("/campaigns?status=bogus").status_code == 400
    assert draft["status"] == "draft"


# -- the editor -----------------------------------------------------------------------------------

def test_create_through_the_form(appliance, web, member):
    assert member.client.get("/campaigns/new").status_code == 200
    r = member.client.post("/campaigns/new", data=editor_form(member))
    assert r.status_code == 302, page(r).text_by_id.get("editor-errors")
    campaign_id = int(r.headers["Location"].rsplit("/", 1)[1].split("?")[0])
    c = api_get(member, campaign_id)
    assert c["name"] == "Spring launch" and c["daily_limit"] == 150 and c["daily_new_leads"] is None
    assert c["schedule"] == {"timezone": "Europe/Berlin", "days": ["mon", "wed", "fri"], "start": "08:30",
                             "end": "16:00"}
    assert (c["stop_on_reply"], c["stop_company_on_reply"], c["stop_on_auto_reply"], c["html"]) == (True, True, False,
                                                                                                     False)
    assert c["mailbox_tag"] == "eu"
    assert [s["delay_minutes"] for s in c["steps"]] == [0, 2880]
    assert c["steps"][0]["variants"][0]["body"] == "Line one\nLine two for {{company|you}}"  # no CR from the form
    assert [v["weight"] for v in c["steps"][0]["variants"]] == [3, 1]
    # the edit page shows it back, delay in days
    shown = member.client.get(r.headers["Location"])
    assert b"Campaign created." in shown.data
    p = page(shown)
    assert p.value("name") == "Spring launch" and p.value("steps-1-delay_value") == "2"
    assert p.selected["steps-1-delay_unit"] == "days" and p.checked["schedule-days"] == ["mon", "wed", "fri"]
    assert p.value("steps-0-variants-1-body") == "Variant B body"


def test_structure_buttons_keep_everything_typed(web, member):
    form = editor_form(member, action="add_step")
    r = member.client.post("/campaigns/new", data=form)
    assert r.status_code == 200
    p = page(r)
    assert p.value("name") == "Spring launch"
    assert p.value("steps-0-variants-0-body") == "Line one\nLine two for {{company|you}}"
    assert p.value("steps-2-delay_value") == "2" and p.value("steps-2-variants-0-body") == ""
    assert p.selected["schedule-timezone"] == "Europe/Berlin" and p.value("mailbox_tag") == "EU"
    assert p.checked["stop_company_on_reply"] == ["1"] and "stop_on_auto_reply" not in p.checked

    form["action"] = "add_variant:1"
    p = page(member.client.post("/campaigns/new", data=form))
    assert p.value("steps-1-variants-0-body") == "Following up." and p.value("steps-1-variants-1-body") == ""
    assert "remove_variant:1:1" in p.action_buttons

    form["action"] = "remove_variant:0:0"  # the first variant goes; B moves up, as typed
    p = page(member.client.post("/campaigns/new", data=form))
    assert p.value("steps-0-variants-0-subject") == "Second idea" and "steps-0-variants-1-subject" not in p.values
    assert "remove_variant:0:0" not in p.action_buttons  # the last variant of a step stays

    form["action"] = "remove_step:0"
    p = page(member.client.post("/campaigns/new", data=form))
    assert p.value("steps-0-variants-0-body") == "Following up." and "steps-1-delay_value" not in p.values
    # nothing was saved by any of these
    assert member.client.get("/api/v1/campaigns").get_json()["items"] == []


def test_errors_show_next_to_their_fields_and_keep_the_content(web, member):
    form = editor_form(member, **{
        "name": "", "schedule-timezone": "Mars/Base", "schedule-end": "07:00", "steps-0-delay_value": "soon",
        "steps-0-variants-1-subject": "", "steps-0-variants-1-weight": "many",
        "steps-1-variants-0-body": "Hi {{first_name|there},\n{Hey|Hello"})
    r = member.client.post("/campaigns/new", data=form)
    assert r.status_code == 400
    p = page(r)
    assert "Give the campaign a name" in p.error("name")
    assert "time zone" in p.error("schedule.timezone") and "end after it starts" in p.error("schedule.end")
    assert "whole number" in p.error("steps.0.delay")
    assert "first email needs a subject" in p.error("steps.0.variants.1.subject")
    assert "whole number" in p.error("steps.0.variants.1.weight")
    assert "line 1, column" in p.error("steps.1.variants.0.body")
    assert "steps-0-variants-0-body" not in {k.removeprefix("e-") for k in p.text_by_id if k.startswith("e-")}
    assert p.attrs_by_id["f-steps-1-variants-0-body"]["aria-describedby"] == "e-steps-1-variants-0-body"
    # what was typed is all still there
    assert p.value("steps-1-variants-0-body") == "Hi {{first_name|there},\n{Hey|Hello"
    assert p.value("steps-0-delay_value") == "soon" and p.value("steps-0-variants-1-weight") == "many"
    assert p.selected["schedule-timezone"] == "Mars/Base" and p.value("schedule-end") == "07:00"
    # a follow-up with an empty subject replies in the thread, and says so
    assert "replies in the same thread" in p.text("step-1-variant-0")
    assert member.client.get("/api/v1/campaigns").get_json()["items"] == []


def test_a_tag_pool_needs_a_tag(web, member):
    r = member.client.post("/campaigns/new", data=editor_form(member, mailbox_tag=""))
    assert r.status_code == 400 and "tag" in page(r).error("mailbox_tag")


def test_edit_saves_and_refuses_bad_edits(web, member):
    campaign = api_create(member)
    p = page(member.client.get(f"/campaigns/{campaign['id']}"))
    assert p.value("steps-1-delay_value") == "3" and p.selected["steps-1-delay_unit"] == "days"
    assert p.checked["schedule_mode"] == ["always"]
    form = editor_form(member, name="Renamed", pool_mode="mailboxes", mailbox_tag="")
    r = member.client.post(f"/campaigns/{campaign['id']}", data=form)
    assert r.status_code == 302
    assert b"Saved." in member.client.get(r.headers["Location"]).data
    assert api_get(member, campaign["id"])["name"] == "Renamed"
    form["steps-0-variants-0-body"] = "Hello {{compny}}"
    r = member.client.post(f"/campaigns/{campaign['id']}", data=form)
    assert r.status_code == 400 and "unknown variable {{compny}}" in page(r).error("steps.0.variants.0.body")
    assert api_get(member, campaign["id"])["steps"][0]["variants"][0]["body"].startswith("Line one")


# -- preview, enrolment, launch ---------------------------------------------------------------------

def test_preview_is_rendered_for_the_chosen_lead(appliance, web, member):
    campaign = api_create(member)
    ids = add_leads(appliance, [{"email": "ann@lead.test", "first_name": "Ann", "company": "Annco"},
                                {"email": "nofirst@lead.test"}])
    member.client.post(f"/api/v1/campaigns/{campaign['id']}/leads", json={"lead_ids": ids}, headers=member.headers())
    p = page(member.client.get(f"/campaigns/{campaign['id']}"))
    assert p.selected["lead_id"] == str(ids[0])
    preview = p.text("campaign-preview")
    assert "Hi Ann, A note for Annco." in preview and "Step 2 · 3 days after the previous email" in preview
    assert "Re: " in preview  # the follow-up without a subject
    p = page(member.client.get(f"/campaigns/{campaign['id']}?lead_id={ids[1]}"))
    assert "has no value for first_name" in p.text("campaign-preview")
    assert p.attrs_by_id["campaign-preview"]["data-preview-url"] == f"/api/v1/campaigns/{campaign['id']}/preview"
    assert "No such lead" in page(member.client.get(f"/campaigns/{campaign['id']}?lead_id=99999")).text("preview")


def test_enrol_by_tag_reports_counts_and_reasons(appliance, web, member):
    campaign = api_create(member)
    add_leads(appliance, [{"email": "a@lead.test", "tags": ["q4"]}, {"email": "b@lead.test", "tags": ["q4"]},
                          {"email": "gone@lead.test", "status": "unsubscribed", "tags": ["q4"]},
                          {"email": "x@blocked.test", "tags": ["q4"]}, {"email": "other@lead.test"}])
    member.client.post("/api/v1/suppressions", json={"value": "blocked.test", "reason": "manual"},
                       headers=member.headers())
    r = member.client.post(f"/campaigns/{campaign['id']}/enroll", data={"csrf_token": member.csrf, "tag": " Q4 "})
    assert r.status_code == 302
    p = page(member.client.get(r.headers["Location"]))
    result = p.text("enrol-result")
    assert "2 leads enrolled" in result and "2 skipped" in result
    assert "1 unsubscribed" in result and "1 on the suppression list" in result
    assert api_get(member, campaign["id"])["leads"]["active"] == 2
    r = member.client.post(f"/campaigns/{campaign['id']}/enroll", data={"csrf_token": member.csrf, "tag": ""})
    assert r.status_code == 400 and page(r).text("e-enrol-tag") == "Enter a lead tag."


def test_a_refused_launch_lists_every_failing_check(appliance, web, member):
    campaign = api_create(member, unsubscribe_footer=False)
    r = member.client.post(f"/campaigns/{campaign['id']}/launch", data={"csrf_token": member.csrf})
    assert r.status_code == 422
    p = page(r)
    assert "cannot launch yet" in p.text("launch-refused")
    body = r.data.decode()
    failed = {c.split('"')[0] for c in body.split('class="check failed" data-check="')[1:]}
    assert failed == {"sender_identity", "unsubscribe", "mailboxes", "leads"}
    assert 'class="check ok" data-check="templates"' in body
    assert api_get(member, campaign["id"])["status"] == "draft"
    # a wrong-status change is explained, not an error page
    r = member.client.post(f"/campaigns/{campaign['id']}/pause", data={"csrf_token": member.csrf})
    assert r.status_code == 302
    assert b"it cannot be paused" in member.client.get(r.headers["Location"]).data


def test_test_send_errors_stay_next_to_the_fields(web, member):
    campaign = api_create(member)
    r = member.client.post(f"/campaigns/{campaign['id']}/test-send",
                           data={"csrf_token": member.csrf, "to": "not-an-address", "mailbox_id": "", "step": "0"})
    assert r.status_code == 400
    p = page(r)
    assert p.text("e-test-to") and "mailbox" in p.text("e-test-mailbox")
    assert p.value("to") == "not-an-address"


# -- roles and CSRF --------------------------------------------------------------------------------

def test_viewers_read_but_get_no_forms_and_403_on_posts(appliance, web, member):
    campaign = api_create(member)
    add_user(appliance, "viewer@x.test", role="viewer")
    viewer = login(web.test_client(), "viewer@x.test")
    listing = viewer.client.get("/campaigns")
    assert listing.status_code == 200 and "new-campaign" not in page(listing).attrs_by_id
    r = viewer.client.get(f"/campaigns/{campaign['id']}")
    assert r.status_code == 200
    p = page(r)
    assert p.value("name") == "Q4 outreach"  # readable
    assert p.action_buttons == [] and "campaign-form" not in p.attrs_by_id
    assert {f.get("id") for f in p.forms if f.get("method") == "post"} <= {None}  # only the sign-out form
    assert "disabled" in r.data.decode().split('id="campaign-view"')[1].split(">", 2)[1]
    assert viewer.client.get("/campaigns/new").status_code == 403
    base = f"/campaigns/{campaign['id']}"
    for url in ("/campaigns/new", base, base + "/enroll", base + "/launch", base + "/pause", base + "/resume",
                base + "/test-send"):
        r = viewer.client.post(url, data=editor_form(viewer, tag="q4", to="a@b.test"))
        assert r.status_code == 403, url
    assert api_get(member, campaign["id"])["name"] == "Q4 outreach"


def test_posts_without_the_csrf_token_are_refused(web, member):
    campaign = api_create(member)
    form = editor_form(member)
    del form["csrf_token"]
    r = member.client.post("/campaigns/new", data=form)
    assert r.status_code == 400 and b"CSRF check failed" in r.data
    r = member.client.post(f"/campaigns/{campaign['id']}/launch", data={})
    assert r.status_code == 400 and b"CSRF check failed" in r.data
    assert len(member.client.get("/api/v1/campaigns").get_json()["items"]) == 1


# -- the whole way, with a real mailbox --------------------------------------------------------------

@pytest.mark.mailstack
def test_launch_pause_resume_and_test_send_from_the_page(appliance, web, member, mailstack):
    add_user(appliance, "admin@x.test", role="admin")
    admin = login(web.test_client(), "admin@x.test")
    r = admin.client.put("/api/v1/settings/sender-identity", headers=admin.headers(),
                         json={"company": "Acme GmbH", "postal_address": "Hauptstr. 1\n10115 Berlin"})
    assert r.status_code == 200, r.get_json()
    box = admin.client.post("/api/v1/mailboxes", headers=admin.headers(), json={
        "email": ALICE, "display_name": "Alice Sales", "smtp_host": mailstack.host, "password": mailstack.users[ALICE],
        "smtp_port": mailstack.submission_port, "smtp_security": "starttls", "imap_host": mailstack.host,
        "imap_port": mailstack.imaps_port, "imap_security": "ssl",
        "tls_ca_pem": mailstack.cafile.read_text()}).get_json()
    campaign = api_create(member)
    add_leads(appliance, [{"email": "bob@example.test", "first_name": "Bob", "tags": ["go"]}])
    member.client.post(f"/campaigns/{campaign['id']}/enroll", data={"csrf_token": member.csrf, "tag": "go"})
    form = editor_form(member, pool_mode="mailboxes", mailbox_tag="", mailbox_ids=[str(box["id"])])
    p = page(member.client.get(f"/campaigns/{campaign['id']}"))
    assert str(box["id"]) not in p.checked.get("mailbox_ids", [])
    assert member.client.post(f"/campaigns/{campaign['id']}", data=form).status_code == 302
    assert api_get(member, campaign["id"])["mailbox_ids"] == [box["id"]]

    r = member.client.post(f"/campaigns/{campaign['id']}/test-send", data={
        "csrf_token": member.csrf, "to": "bob@example.test", "mailbox_id": str(box["id"]), "step": "0",
        "variant": "B", "lead_id": ""})
    assert r.status_code == 302, page(r).text_by_id.get("test-error")
    assert "Sent “[Test] Second idea” to bob@example.test" in page(member.client.get(r.headers["Location"])).text(
        "test-result")

    for action, status in (("launch", "active"), ("pause", "paused"), ("resume", "active")):
        r = member.client.post(f"/campaigns/{campaign['id']}/{action}", data={"csrf_token": member.csrf})
        assert r.status_code == 302, page(r).text_by_id.get("launch-refused")
        assert api_get(member, campaign["id"])["status"] == status
    p = page(member.client.get(f"/campaigns/{campaign['id']}"))
    assert "pause-form" in p.attrs_by_id and "launch-form" not in p.attrs_by_id
    assert "running" in p.text("campaign-form")
