"""Settings → Webhooks: the pages (admins only, CSRF on every form, the secret shown once), and
the whole path in a real browser against `mailflow serve`, whose scheduler delivers an event
to a real receiver."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from appliance.services import audit, webhook_signing

from .support.access import PASSWORD, signed_in
from .support.appliance import make_config
from .support.live_server import LiveServer

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
SECRET = re.compile(r'id="new-secret">(whsec_[A-Za-z0-9_-]+)<')


@pytest.fixture
def config(root):
    return make_config(root, webhook_allow_loopback="true")


def token(client, path: str = "/settings/webhooks") -> str:
    return CSRF_FIELD.search(client.get(path).get_data(as_text=True)).group(1)


def test_only_admins_see_the_pages(appliance, web):
    assert web.test_client().get("/settings/webhooks").status_code == 302  # to the sign-in page
    member = signed_in(appliance, web, "m@x.test", "member").client
    assert member.get("/settings/webhooks").status_code == 403
    assert "Webhooks" not in member.get("/").get_data(as_text=True)
    admin = signed_in(appliance, web, "a@x.test", "admin").client
    page = admin.get("/settings/webhooks")
    assert page.status_code == 200 and 'href="/settings/webhooks"' in admin.get("/").get_data(as_text=True)
    assert "Allow private networks" in page.get_data(as_text=True)


def test_create_shows_the_secret_once_then_manage_it(appliance, web, receiver):
    client = signed_in(appliance, web, "a@x.test", "admin").client
    csrf = token(client)
    form = {"csrf_token": csrf, "url": receiver.url(), "description": "CRM", "events": ["reply.received"]}

    r = client.post("/settings/webhooks", data={**form, "csrf_token": ""})
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    r = client.post("/settings/webhooks", data={**form, "url": "http://user:pw@crm.example.com/"})
    text = r.get_data(as_text=True)
    assert r.status_code == 400 and "user name or password" in text and 'value="CRM"' in text  # input kept
    assert client.post("/settings/webhooks", data={**form, "events": []}).status_code == 400

    r = client.post("/settings/webhooks", data=form)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    secret = SECRET.search(r.get_data(as_text=True)).group(1)
    listing = client.get("/settings/webhooks").get_data(as_text=True)
    assert secret not in listing and receiver.url() in listing
    hook_id = int(re.search(r'data-webhook-id="(\d+)"', listing).group(1))
    detail = f"/settings/webhooks/{hook_id}"
    assert secret not in client.get(detail).get_data(as_text=True)

    # send a test event: delivered, signed with the secret shown once
    r = client.post(f"{detail}/test", data={"csrf_token": csrf})
    assert r.status_code == 200 and 'id="test-result"' in r.get_data(as_text=True)
    assert "delivered, HTTP 200" in r.get_data(as_text=True)
    [got] = receiver.requests
    assert webhook_signing.verify(secret, got.headers["X-MailFlow-Signature"], got.body)
    assert "webhook.test" in client.get(detail).get_data(as_text=True)  # in the delivery log

    # edit the events, disable, enable
    r = client.post(detail, data={"csrf_token": csrf, "url": receiver.url("/v2"), "description": "CRM",
                                  "events": ["email.sent", "email.bounced"]})
    assert r.status_code == 302
    page = client.get(detail).get_data(as_text=True)
    assert "/v2" in page and 'value="email.sent" checked' in page and 'value="reply.received" checked' not in page
    client.post(f"{detail}/disable", data={"csrf_token": csrf})
    assert 'id="webhook-status">disabled' in client.get(detail).get_data(as_text=True)
    client.post(f"{detail}/enable", data={"csrf_token": csrf})
    assert 'id="webhook-status">enabled' in client.get(detail).get_data(as_text=True)

    # rotate: the new secret once, the old one still signing during the grace period
    assert client.post(f"{detail}/rotate", data={"csrf_token": csrf, "grace_hours": "999"}).status_code == 400
    r = client.post(f"{detail}/rotate", data={"csrf_token": csrf, "grace_hours": "1"})
    new_secret = SECRET.search(r.get_data(as_text=True)).group(1)
    assert new_secret != secret and "signed with both" in " ".join(r.get_data(as_text=True).split())
    client.post(f"{detail}/test", data={"csrf_token": csrf})
    header, body = receiver.requests[-1].headers["X-MailFlow-Signature"], receiver.requests[-1].body
    assert webhook_signing.verify(new_secret, header, body) and webhook_signing.verify(secret, header, body)

    # the private-network setting, then delete
    assert client.post("/settings/webhooks/settings", data={"csrf_token": csrf, "allow_private_networks": "on"}
                       ).status_code == 302
    assert "allow_private_networks" in client.get("/settings/webhooks").get_data(as_text=True)
    assert client.post(f"{detail}/delete", data={}).status_code == 400  # CSRF
    assert client.post(f"{detail}/delete", data={"csrf_token": csrf}).status_code == 302
    assert client.get(detail).status_code == 404
    actions = {e["action"] for e in audit.search(appliance.db, action="webhook.", limit=50)}
    assert actions == {"webhook.created", "webhook.test_sent", "webhook.updated", "webhook.disabled",
                       "webhook.enabled", "webhook.secret_rotated", "webhook.settings_changed", "webhook.deleted"}


# -- in a real browser, against the real server and its scheduler -------------------------------

@pytest.fixture
def webhook_server():
    root = Path(tempfile.mkdtemp(prefix="mailflow-webhooks-"))
    server = LiveServer(root, MAILFLOW_WEBHOOK_ALLOW_LOOPBACK="true").start()
    subprocess.run([sys.executable, "-m", "appliance.cli", "create-admin", "boss@example.com"],
                   env=server.env, input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_in_the_browser_and_delivered_by_the_scheduler(webhook_server, page, receiver):
    from playwright.sync_api import expect

    p, url = page.page, webhook_server.url
    p.goto(url + "/login")
    p.fill("#f-email", "boss@example.com")
    p.fill("#f-password", PASSWORD)
    p.click("#login-form button[type=submit]")
    p.wait_for_url(url + "/")
    p.click(".sidenav a:has-text('Webhooks')")
    p.fill("#f-url", receiver.url("/crm"))
    p.check("input[name=events][value='lead.status_changed']")
    p.click("#create-webhook-form button[type=submit]")
    secret = p.locator("#new-secret").inner_text()
    assert secret.startswith("whsec_")
    p.click("#new-webhook a")
    p.click("#send-test")
    expect(p.locator("#test-result")).to_contain_text("delivered")
    assert page.problems == []

    # an event from the API reaches the receiver through the scheduler's delivery job
    api = requests.Session()
    login_body = api.post(url + "/api/v1/auth/login", json={"email": "boss@example.com", "password": PASSWORD},
                          timeout=10).json()
    headers = {"Authorization": f"Bearer {login_body['token']}"}
    lead = api.post(url + "/api/v1/leads", json={"email": "pat@lead.test"}, headers=headers, timeout=10).json()
    api.patch(url + f"/api/v1/leads/{lead['id']}", json={"status": "won"}, headers=headers, timeout=10)
    deadline = time.monotonic() + 30
    while len(receiver.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    event = receiver.requests[-1]
    assert event.headers["X-MailFlow-Event-Type"] == "lead.status_changed"
    assert webhook_signing.verify(secret, event.headers["X-MailFlow-Signature"], event.body)
