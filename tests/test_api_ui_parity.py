"""Every action of the web UI exists in /api/v1 (through the same service functions), and the API
routes that exist for that reason: accepting an invitation, the first-run setup link, and the
lead import's column mapping."""

from __future__ import annotations

from appliance.db import users_repo

from .support.access import PASSWORD, add_user, login
from .test_access import setup_token
from .test_openapi import app_routes

# Each state-changing page action and the API operation that does the same.
UI_ACTIONS = {
    "ui_auth.login": "POST /api/v1/auth/login",
    "ui_auth.logout": "POST /api/v1/auth/logout",
    "ui_auth.create_owner": "POST /api/v1/setup/{token}",
    "ui_auth.accept_invite": "POST /api/v1/invites/{token}/accept",
    "ui_auth.profile": "POST /api/v1/auth/password",
    "ui_auth.sign_out_everywhere": "POST /api/v1/auth/sign-out-everywhere",
    "ui_users.invite": "POST /api/v1/users",
    "ui_users.update": "PATCH /api/v1/users/{user_id}",
    "ui_api_keys.create": "POST /api/v1/api-keys",
    "ui_api_keys.revoke": "DELETE /api/v1/api-keys/{key_id}",
    "ui_mailboxes.new": "POST /api/v1/mailboxes",
    "ui_mailboxes.detail": "PATCH /api/v1/mailboxes/{mailbox_id}",
    "ui_mailboxes.test": "POST /api/v1/mailboxes/{mailbox_id}/test",
    "ui_mailboxes.pause": "POST /api/v1/mailboxes/{mailbox_id}/pause",
    "ui_mailboxes.resume": "POST /api/v1/mailboxes/{mailbox_id}/resume",
    "ui_mailboxes.delete": "DELETE /api/v1/mailboxes/{mailbox_id}",
    "ui_mailboxes.import_csv": "POST /api/v1/mailboxes/import",
    "ui_leads.new": "POST /api/v1/leads",
    "ui_leads.detail": "PATCH /api/v1/leads/{lead_id}",
    "ui_leads.delete": "DELETE /api/v1/leads/{lead_id}",
    "ui_leads.upload": "POST /api/v1/leads/import",  # upload and map: the API takes the mapping as ?columns=
    "ui_leads.confirm": "POST /api/v1/leads/import",
    "ui_suppressions.add": "POST /api/v1/suppressions",
    "ui_suppressions.import_csv": "POST /api/v1/suppressions/import",
    "ui_suppressions.delete": "DELETE /api/v1/suppressions/{suppression_id}",
    "ui_settings.save_sender_identity": "PUT /api/v1/settings/sender-identity",
    "ui_campaigns.new": "POST /api/v1/campaigns",
    "ui_campaigns.save": "PATCH /api/v1/campaigns/{campaign_id}",
    "ui_campaigns.enroll": "POST /api/v1/campaigns/{campaign_id}/leads",
    "ui_campaigns.launch": "POST /api/v1/campaigns/{campaign_id}/launch",
    "ui_campaigns.pause": "POST /api/v1/campaigns/{campaign_id}/pause",
    "ui_campaigns.resume": "POST /api/v1/campaigns/{campaign_id}/resume",
    "ui_campaigns.send_test": "POST /api/v1/campaigns/{campaign_id}/test-send",
    "ui_sending.resolve": "POST /api/v1/messages/{message_id}/resolve",
    "ui_webhooks.create": "POST /api/v1/webhooks",
    "ui_webhooks.save_settings": "PUT /api/v1/settings/webhooks",
    "ui_webhooks.save": "PATCH /api/v1/webhooks/{webhook_id}",
    "ui_webhooks.enable": "PATCH /api/v1/webhooks/{webhook_id}",
    "ui_webhooks.disable": "PATCH /api/v1/webhooks/{webhook_id}",
    "ui_webhooks.send_test": "POST /api/v1/webhooks/{webhook_id}/test",
    "ui_webhooks.rotate": "POST /api/v1/webhooks/{webhook_id}/rotate-secret",
    "ui_webhooks.delete": "DELETE /api/v1/webhooks/{webhook_id}",
    "ui_inbox.respond": "POST /api/v1/replies/{reply_id}/respond",
    "ui_inbox.label": "PUT /api/v1/leads/{lead_id}/label",
    "ui_inbox.mark_unread": "PATCH /api/v1/replies/{reply_id}",
    "ui_inbox.create_label": "POST /api/v1/inbox-labels",
    "ui_inbox.delete_label": "DELETE /api/v1/inbox-labels/{name}",
}
# Page actions with no API counterpart, each for a reason.
PAGE_ONLY = {
    "ui_leads.cancel",        # drops the page's pending upload; an API import has no pending upload
    "unsubscribe.one_click",  # is itself the public route (POST /u/{token})
}


def page_actions(web) -> set[str]:
    return {rule.endpoint for rule in web.url_map.iter_rules()
            if not rule.rule.startswith("/api/") and {"POST", "PUT", "PATCH", "DELETE"} & (rule.methods or set())}


def test_every_page_action_has_an_api_route(web):
    unmapped = sorted(page_actions(web) - set(UI_ACTIONS) - PAGE_ONLY)
    assert unmapped == [], f"page actions with no API route listed here: {unmapped}"
    routes = {f"{method.upper()} {path}" for path, method in app_routes(web)}
    missing = sorted({api for ui, api in UI_ACTIONS.items() if ui in page_actions(web)} - routes)
    assert missing == []


# -- invitations and the setup link over the API --------------------------------------------------

def invite(web, admin_headers, email="new@x.test", role="member") -> str:
    r = web.test_client().post("/api/v1/users", json={"email": email, "role": role}, headers=admin_headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["invite_url"].rsplit("/", 1)[1]


def test_an_invitation_is_accepted_over_the_api(appliance, web):
    add_user(appliance, "admin@x.test", role="admin")
    token = invite(web, login(web.test_client(), "admin@x.test").headers(bearer=True), role="viewer")
    client = web.test_client()
    state = client.get(f"/api/v1/invites/{token}")
    assert state.status_code == 200
    assert (state.get_json()["email"], state.get_json()["status"], state.get_json()["role"]) == \
        ("new@x.test", "invited", "viewer")

    short = client.post(f"/api/v1/invites/{token}/accept", json={"password": "short"})
    assert short.status_code == 400 and "password" in short.get_json()["error"]["details"]["fields"]
    r = client.post(f"/api/v1/invites/{token}/accept", json={"password": PASSWORD, "name": "Nina"})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["user"]["status"] == "active" and body["user"]["name"] == "Nina" and body["csrf_token"]
    assert "mf_session=" in r.headers["Set-Cookie"]
    me = web.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.get_json()["email"] == "new@x.test"

    again = web.test_client().post(f"/api/v1/invites/{token}/accept", json={"password": PASSWORD})
    assert again.status_code == 410 and again.get_json()["error"]["code"] == "invite_used"
    assert web.test_client().get("/api/v1/invites/not-a-token").status_code == 404


def test_accepting_needs_json_and_a_csrf_token_when_a_cookie_is_sent(appliance, web):
    add_user(appliance, "admin@x.test", role="admin")
    token = invite(web, login(web.test_client(), "admin@x.test").headers(bearer=True))
    form = web.test_client().post(f"/api/v1/invites/{token}/accept", data={"password": PASSWORD})
    assert form.status_code == 415
    cookie_client = web.test_client()
    login(cookie_client, "admin@x.test")  # a session cookie in the jar: a cross-site post would carry it
    r = cookie_client.post(f"/api/v1/invites/{token}/accept", json={"password": PASSWORD})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "csrf_failed"
    assert users_repo.by_email(appliance.db.connection(), "new@x.test")["status"] == "invited"


def test_the_setup_link_creates_the_owner_over_the_api_once(appliance, client):
    token = setup_token(appliance)
    bad = client.post(f"/api/v1/setup/{token}", json={"email": "not an address", "password": PASSWORD})
    assert bad.status_code == 400 and "email" in bad.get_json()["error"]["details"]["fields"]
    r = client.post(f"/api/v1/setup/{token}", json={"email": "Owner@Example.com", "name": "Olga",
                                                   "password": PASSWORD})
    assert r.status_code == 201, r.get_json()
    assert (r.get_json()["user"]["role"], r.get_json()["user"]["email"]) == ("owner", "owner@example.com")
    assert client.get("/api/v1/me").get_json()["role"] == "owner"  # signed in by the cookie
    again = client.application.test_client().post(f"/api/v1/setup/{token}",
                                                  json={"email": "second@example.com", "password": PASSWORD})
    assert again.status_code == 410 and again.get_json()["error"]["code"] == "setup_link_used"
    assert client.application.test_client().post("/api/v1/setup/nope", json={
        "email": "x@example.com", "password": PASSWORD}).status_code == 404
    assert users_repo.count(appliance.db.connection()) == 1


# -- the import page's column mapping over the API ------------------------------------------------

def test_lead_import_takes_the_column_mapping(appliance, web):
    add_user(appliance, "member@x.test", role="member")
    headers = login(web.test_client(), "member@x.test").headers(bearer=True)
    csv = "Contact,Given,Notes,Region\nada@example.test,Ada,call her,EU\n".encode()
    r = web.test_client().post("/api/v1/leads/import?columns=email,first_name,,custom:area", data=csv,
                               content_type="text/csv", headers=headers)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["imported"] == 1
    lead = web.test_client().get("/api/v1/leads?q=ada@", headers=headers).get_json()["items"][0]
    assert (lead["email"], lead["first_name"], lead["custom"]) == ("ada@example.test", "Ada", {"area": "EU"})

    wrong = web.test_client().post("/api/v1/leads/import?columns=email,shoe_size", data=csv,
                                   content_type="text/csv", headers=headers)
    assert wrong.status_code == 422 and "shoe_size" in wrong.get_json()["error"]["message"]
    no_email = web.test_client().post("/api/v1/leads/import?columns=,first_name", data=csv,
                                      content_type="text/csv", headers=headers)
    assert no_email.status_code == 422 and no_email.get_json()["error"]["code"] == "no_email_column"
