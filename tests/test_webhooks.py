"""Webhooks: secrets shown once and sealed, signed deliveries to a real local receiver, the
outbox in the database (restart-safe), retries with backoff, the failure budget, automatic
disabling, secret rotation with a grace period, and the API's roles, scopes and input checks.

Time moves by passing `now` to the delivery tick (no sleeps). Loopback is allowed in this
module's config: the receiver listens on 127.0.0.1.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from appliance.crypto import SecretBox, SecretDecryptError, location
from appliance.db.timefmt import from_iso
from appliance.runtime import open_appliance
from appliance.services import api_keys, audit, webhook_delivery, webhook_signing, webhooks
from appliance.services.authz import Principal

from .support.access import add_user, login
from .support.appliance import make_config


@pytest.fixture
def config(root):
    return make_config(root, webhook_allow_loopback="true")


@pytest.fixture
def admin(appliance) -> Principal:
    return Principal(user_id=add_user(appliance, "admin@x.test", role="admin"), email="admin@x.test", role="admin",
                     via="session")


@pytest.fixture(autouse=True)
def fresh_key_cache():
    api_keys.cache.clear()
    yield
    api_keys.cache.clear()


def make_hook(appliance, admin, url: str, events=("*",)) -> dict:
    return webhooks.create(appliance.db, appliance.keys, appliance.config, admin, {"url": url, "events": list(events)})


def emit(appliance, event_type: str = "lead.status_changed", data: dict | None = None) -> str | None:
    with appliance.db.transaction() as conn:
        return webhooks.emit(conn, event_type, data or {"lead": {"id": 7, "email": "lead@example.com"}})


def deliver(appliance, now: datetime | None = None) -> dict:
    policy = webhook_delivery.policy_for(appliance.db, appliance.config)
    return webhook_delivery.deliver_due(appliance.db, appliance.keys, policy, now=now)


def deliveries(appliance, hook_id: int) -> list:
    return appliance.db.execute("SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id",
                                (hook_id,)).fetchall()


def bearer(appliance, principal, scopes=("read", "write", "admin")) -> dict:
    key = api_keys.create(appliance.db, principal, name="k", scopes=list(scopes), cost=12)["key"]
    return {"Authorization": f"Bearer {key}"}


# -- secrets --------------------------------------------------------------------------------

def test_the_secret_is_shown_once_and_stored_sealed(appliance, client, admin, receiver):
    auth = bearer(appliance, admin)
    r = client.post("/api/v1/webhooks", json={"url": receiver.url(), "events": ["reply.received", "email.bounced"]},
                    headers=auth)
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created["events"] == ["email.bounced", "reply.received"] and created["enabled"] is True

    # never again: not in the item, the list, an update, the log, the audit trail
    seen = [client.get(f"/api/v1/webhooks/{created['id']}", headers=auth).get_data(as_text=True),
            client.get("/api/v1/webhooks", headers=auth).get_data(as_text=True),
            client.patch(f"/api/v1/webhooks/{created['id']}", json={"description": "CRM"}, headers=auth)
            .get_data(as_text=True),
            client.post(f"/api/v1/webhooks/{created['id']}/test", headers=auth).get_data(as_text=True),
            client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=auth).get_data(as_text=True),
            json.dumps(audit.search(appliance.db, limit=100))]
    assert all(secret not in text and "secret_enc" not in text for text in seen)

    # the column holds AES-GCM ciphertext bound to this row and column, nothing readable
    row = appliance.db.execute("SELECT * FROM webhooks WHERE id = ?", (created["id"],)).fetchone()
    sealed = bytes(row["secret_enc"])
    assert secret.encode() not in sealed and sealed[0] == 1 and len(sealed) == 1 + 12 + len(secret) + 16
    box = SecretBox(appliance.keys.secrets)
    assert box.open(sealed, location("webhooks", created["id"], "secret")) == secret
    with pytest.raises(SecretDecryptError):
        box.open(sealed, location("webhooks", created["id"] + 1, "secret"))
    conn = appliance.db.connection()
    tables = [t["name"] for t in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert not any(secret in repr(tuple(r)) for t in tables for r in conn.execute(f'SELECT * FROM "{t}"'))
    # and the test delivery was signed with it
    assert webhook_signing.verify(secret, receiver.requests[0].headers["X-MailFlow-Signature"],
                                  receiver.requests[0].body)
    actions = [e["action"] for e in audit.search(appliance.db, limit=20)]
    assert {"webhook.created", "webhook.updated", "webhook.test_sent"} <= set(actions)


# -- signed deliveries ----------------------------------------------------------------------

def test_a_delivery_is_signed_over_the_raw_body(appliance, admin, receiver):
    hook = make_hook(appliance, admin, receiver.url("/in?token=abc"), ["lead.status_changed"])
    event_id = emit(appliance, data={"lead": {"id": 7, "email": "zoë@example.com"}, "previous_status": "new"})
    assert event_id.startswith("evt_")
    assert deliver(appliance) == {"delivered": 1, "failed_attempts": 0}

    [got] = receiver.requests
    assert got.path == "/in?token=abc"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-MailFlow-Event-Id"] == event_id
    assert got.headers["X-MailFlow-Event-Type"] == "lead.status_changed"
    assert got.headers["User-Agent"].startswith("MailFlow")
    payload = json.loads(got.body)
    assert payload["id"] == event_id and payload["type"] == "lead.status_changed"
    assert payload["data"] == {"lead": {"id": 7, "email": "zoë@example.com"}, "previous_status": "new"}
    assert payload["created_at"].endswith("Z")

    header = got.headers["X-MailFlow-Signature"]
    t, signatures = webhook_signing.parse(header)
    assert header.startswith(f"t={t},v1=") and len(signatures) == 1 and len(signatures[0]) == 64
    secret = hook["secret"]
    assert webhook_signing.verify(secret, header, got.body)
    assert not webhook_signing.verify(secret, header, got.body.replace(b"7", b"8"))          # body altered
    assert not webhook_signing.verify("whsec_other", header, got.body)                        # wrong secret
    assert not webhook_signing.verify(secret, header, got.body, now=t + 301)                  # too old: replay
    assert not webhook_signing.verify(secret, header.replace(f"t={t}", f"t={t + 1}"), got.body)  # time altered
    assert [d["status"] for d in deliveries(appliance, hook["id"])] == ["delivered"]


def test_emit_joins_the_callers_transaction_and_queues_only_for_subscribers(appliance, admin, receiver):
    assert emit(appliance, "reply.received") is None          # no webhook yet: nothing written
    assert appliance.db.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0

    replies = make_hook(appliance, admin, receiver.url("/replies"), ["reply.received"])
    everything = make_hook(appliance, admin, receiver.url("/all"), ["*"])
    off = make_hook(appliance, admin, receiver.url("/off"), ["*"])
    webhooks.update(appliance.db, appliance.config, admin, off["id"], {"enabled": False})

    with pytest.raises(RuntimeError):  # an event belongs to a change: not outside a transaction
        webhooks.emit(appliance.db.connection(), "reply.received", {})
    with pytest.raises(ValueError):
        emit(appliance, "reply.recieved")
    with pytest.raises(ZeroDivisionError), appliance.db.transaction() as conn:
        webhooks.emit(conn, "reply.received", {"n": 1})
        1 / 0  # the change fails: its event goes too
    assert appliance.db.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0

    emit(appliance, "reply.received")
    emit(appliance, "campaign.paused")
    assert len(deliveries(appliance, replies["id"])) == 1
    assert len(deliveries(appliance, everything["id"])) == 2
    assert deliveries(appliance, off["id"]) == []
    deliver(appliance)
    assert sorted(r.path for r in receiver.requests) == ["/all", "/all", "/replies"]


# -- retries, restart, budget, disabling ----------------------------------------------------

def test_a_500_is_retried_later_with_backoff(appliance, admin, receiver, monkeypatch):
    hook = make_hook(appliance, admin, receiver.url())
    receiver.answers = [500, 503]
    emit(appliance)
    t0 = datetime.now(timezone.utc)
    assert deliver(appliance, t0) == {"delivered": 0, "failed_attempts": 1}
    [d] = deliveries(appliance, hook["id"])
    assert d["status"] == "pending" and d["attempts"] == 1 and d["last_status_code"] == 500
    first_wait = (from_iso(d["next_attempt_at"]) - t0).total_seconds()
    assert 47 <= first_wait <= 73  # 1 minute ± 20 % jitter (whole seconds)

    assert deliver(appliance, t0 + timedelta(seconds=40)) == {"delivered": 0, "failed_attempts": 0}  # not yet
    t1 = from_iso(d["next_attempt_at"])
    assert deliver(appliance, t1)["failed_attempts"] == 1
    [d] = deliveries(appliance, hook["id"])
    second_wait = (from_iso(d["next_attempt_at"]) - t1).total_seconds()
    assert 95 <= second_wait <= 145  # doubled: 2 minutes ± 20 %
    assert deliver(appliance, from_iso(d["next_attempt_at"])) == {"delivered": 1, "failed_attempts": 0}

    log = webhook_delivery.delivery_log(appliance.db, admin, hook["id"])
    assert log[0]["status"] == "delivered" and log[0]["attempts"] == 3
    assert [(a["attempt"], a["status_code"]) for a in log[0]["log"]] == [(1, 500), (2, 503), (3, 200)]
    assert all(a["duration_ms"] >= 0 for a in log[0]["log"]) and log[0]["log"][0]["error"] == "HTTP 500"
    # the same event, signed afresh each time, with the attempt number
    assert len({r.headers["X-MailFlow-Event-Id"] for r in receiver.requests}) == 1
    assert [r.headers["X-MailFlow-Delivery-Attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert webhooks.get(appliance.db, admin, hook["id"])["consecutive_failures"] == 0


def test_backoff_doubles_up_to_a_cap_over_about_a_day():
    waits = [webhook_delivery.backoff_seconds(n, rand=0.5) for n in range(1, webhook_delivery.MAX_ATTEMPTS)]
    assert waits[:4] == [60, 120, 240, 480] and max(waits) == webhook_delivery.MAX_DELAY
    assert 20 * 3600 <= sum(waits) <= 30 * 3600
    assert webhook_delivery.backoff_seconds(1, rand=0.0) == pytest.approx(48)
    assert webhook_delivery.backoff_seconds(1, rand=1.0) == pytest.approx(72)


def test_a_restart_mid_queue_delivers_everything(appliance, config, admin, receiver):
    hook = make_hook(appliance, admin, receiver.url())
    ids = [emit(appliance, data={"n": n}) for n in range(20)]  # more than one batch of a tick
    appliance.close()  # the process stops before delivering anything

    reopened = open_appliance(config, create=False, env={})
    try:
        assert deliver(reopened) == {"delivered": 20, "failed_attempts": 0}
        assert sorted(r.headers["X-MailFlow-Event-Id"] for r in receiver.requests) == sorted(ids)
        assert [d["status"] for d in deliveries(reopened, hook["id"])] == ["delivered"] * 20
        assert deliver(reopened) == {"delivered": 0, "failed_attempts": 0}  # nothing twice
    finally:
        reopened.close()


def test_failure_after_the_budget_disables_the_webhook_with_an_audit_row(appliance, admin, receiver, monkeypatch):
    monkeypatch.setattr(webhook_delivery.random, "random", lambda: 0.5)  # no jitter: exact times
    hook = make_hook(appliance, admin, receiver.url())
    receiver.default = 503
    emit(appliance)
    t = datetime.now(timezone.utc)
    for attempt in range(1, webhook_delivery.MAX_ATTEMPTS + 1):
        assert deliver(appliance, t) == {"delivered": 0, "failed_attempts": 1}, attempt
        [d] = deliveries(appliance, hook["id"])
        if attempt < webhook_delivery.MAX_ATTEMPTS:
            assert d["status"] == "pending" and webhooks.get(appliance.db, admin, hook["id"])["enabled"]
            t = from_iso(d["next_attempt_at"])
    assert d["status"] == "failed" and d["attempts"] == 13 and d["next_attempt_at"] is None
    assert len(receiver.requests) == 13

    after = webhooks.get(appliance.db, admin, hook["id"])
    assert after["enabled"] is False and after["consecutive_failures"] == 13
    assert "Disabled automatically" in after["disabled_reason"] and "HTTP 503" in after["disabled_reason"]
    [entry] = audit.search(appliance.db, action="webhook.disabled", limit=5)
    assert entry["actor"]["type"] == "system" and entry["target"] == {"type": "webhook", "id": str(hook["id"])}
    assert entry["metadata"]["consecutive_failures"] == 13

    # disabled: new events are not queued for it, nothing is attempted
    assert emit(appliance) is None
    assert deliver(appliance, t + timedelta(days=1)) == {"delivered": 0, "failed_attempts": 0}


def test_deliveries_waiting_when_a_webhook_is_disabled_resume_when_it_is_enabled(appliance, admin, receiver):
    hook = make_hook(appliance, admin, receiver.url())
    emit(appliance)
    emit(appliance)
    webhooks.update(appliance.db, appliance.config, admin, hook["id"], {"enabled": False})
    assert deliver(appliance, datetime.now(timezone.utc) + timedelta(hours=1))["delivered"] == 0
    assert all(d["next_attempt_at"] is None for d in deliveries(appliance, hook["id"]))  # parked

    enabled = webhooks.update(appliance.db, appliance.config, admin, hook["id"], {"enabled": True})
    assert enabled["enabled"] and enabled["pending_deliveries"] == 2 and enabled["disabled_reason"] is None
    assert deliver(appliance)["delivered"] == 2
    actions = [e["action"] for e in audit.search(appliance.db, action="webhook.", limit=10)]
    assert actions[:2] == ["webhook.enabled", "webhook.disabled"]


def test_a_test_event_is_tried_once_and_reported(appliance, client, admin, receiver):
    hook = make_hook(appliance, admin, receiver.url())
    auth = bearer(appliance, admin)
    r = client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auth)
    assert r.status_code == 200
    ok = r.get_json()
    assert ok["status"] == "delivered" and ok["event_type"] == "webhook.test" and ok["last_status_code"] == 200
    assert ok["log"][0]["duration_ms"] >= 0 and json.loads(receiver.requests[0].body)["type"] == "webhook.test"

    receiver.answers = [500]
    failed = client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auth).get_json()
    assert failed["status"] == "failed" and failed["last_status_code"] == 500 and failed["next_attempt_at"] is None
    # a person's test does not count against the webhook's health, and is never retried
    assert webhooks.get(appliance.db, admin, hook["id"])["consecutive_failures"] == 0
    assert deliver(appliance, datetime.now(timezone.utc) + timedelta(hours=1))["failed_attempts"] == 0
    assert len(receiver.requests) == 2

    listed = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?status=failed", headers=auth).get_json()
    assert [d["id"] for d in listed["items"]] == [failed["id"]] and listed["next_cursor"] is None
    page = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?limit=1", headers=auth).get_json()
    rest = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?limit=1&cursor={page['next_cursor']}",
                      headers=auth).get_json()
    assert [page["items"][0]["id"], rest["items"][0]["id"]] == [failed["id"], ok["id"]]
    r = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?status=lost", headers=auth)
    assert r.status_code == 400 and "status" in r.get_json()["error"]["details"]["fields"]


# -- rotation -------------------------------------------------------------------------------

def test_rotation_signs_with_both_secrets_during_the_grace_period_then_only_the_new(appliance, client, admin,
                                                                                    receiver):
    hook = make_hook(appliance, admin, receiver.url())
    old = hook["secret"]
    auth = bearer(appliance, admin)
    r = client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"grace_hours": 2}, headers=auth)
    assert r.status_code == 200
    rotated = r.get_json()
    new = rotated["secret"]
    assert new != old and rotated["previous_secret_valid_until"]
    assert new not in client.get(f"/api/v1/webhooks/{hook['id']}", headers=auth).get_data(as_text=True)

    now = datetime.now(timezone.utc)
    emit(appliance)
    deliver(appliance, now)
    during = receiver.requests[-1]
    assert len(webhook_signing.parse(during.headers["X-MailFlow-Signature"])[1]) == 2
    assert webhook_signing.verify(new, during.headers["X-MailFlow-Signature"], during.body, now=now.timestamp())
    assert webhook_signing.verify(old, during.headers["X-MailFlow-Signature"], during.body, now=now.timestamp())

    later = now + timedelta(hours=2, minutes=1)
    emit(appliance)
    deliver(appliance, later)
    after = receiver.requests[-1]
    assert len(webhook_signing.parse(after.headers["X-MailFlow-Signature"])[1]) == 1
    assert webhook_signing.verify(new, after.headers["X-MailFlow-Signature"], after.body, now=later.timestamp())
    assert not webhook_signing.verify(old, after.headers["X-MailFlow-Signature"], after.body, now=later.timestamp())

    # grace 0: the old secret stops at once
    newest = client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"grace_hours": 0},
                         headers=auth).get_json()
    assert newest["previous_secret_valid_until"] is None
    test = client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=auth).get_json()
    assert test["status"] == "delivered"
    last = receiver.requests[-1]
    assert webhook_signing.verify(newest["secret"], last.headers["X-MailFlow-Signature"], last.body)
    assert not webhook_signing.verify(new, last.headers["X-MailFlow-Signature"], last.body)
    assert len(audit.search(appliance.db, action="webhook.secret_rotated", limit=5)) == 2
    for bad in (-1, 169, "soon", True):
        r = client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"grace_hours": bad}, headers=auth)
        assert r.status_code == 400 and "grace_hours" in r.get_json()["error"]["details"]["fields"]


# -- who may, and what is refused -------------------------------------------------------------

def test_wrong_role_or_scope_is_403(appliance, web, admin, receiver):
    hook = make_hook(appliance, admin, receiver.url())
    client = web.test_client()
    member = Principal(user_id=add_user(appliance, "m@x.test", role="member"), email="m@x.test", role="member",
                       via="session")
    routes = [("get", "/api/v1/webhooks", None), ("post", "/api/v1/webhooks", {"url": receiver.url(), "events": ["*"]}),
              ("get", f"/api/v1/webhooks/{hook['id']}", None),
              ("patch", f"/api/v1/webhooks/{hook['id']}", {"description": "x"}),
              ("get", f"/api/v1/webhooks/{hook['id']}/deliveries", None),
              ("post", f"/api/v1/webhooks/{hook['id']}/test", None),
              ("post", f"/api/v1/webhooks/{hook['id']}/rotate-secret", {}),
              ("get", "/api/v1/settings/webhooks", None),
              ("put", "/api/v1/settings/webhooks", {"allow_private_networks": True}),
              ("delete", f"/api/v1/webhooks/{hook['id']}", None)]
    member_auth = bearer(appliance, member, ("read", "write"))
    write_only = bearer(appliance, admin, ("read", "write"))
    for method, path, body in routes:
        assert client.open(path, method=method, json=body).status_code == 401, path
        r = client.open(path, method=method, json=body, headers=member_auth)
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "role_required", path
        r = client.open(path, method=method, json=body, headers=write_only)
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "scope_required", path
    assert receiver.requests == [] and webhooks.get(appliance.db, admin, hook["id"])["description"] == ""
    owner_auth = bearer(appliance, admin)
    assert client.get("/api/v1/webhooks", headers=owner_auth).status_code == 200
    assert client.delete(f"/api/v1/webhooks/{hook['id']}", headers=owner_auth).status_code == 204
    assert client.get(f"/api/v1/webhooks/{hook['id']}", headers=owner_auth).status_code == 404
    assert audit.search(appliance.db, action="webhook.deleted", limit=1)[0]["metadata"]["url"] == receiver.url()


def test_cookie_calls_need_the_csrf_token(appliance, web, admin, receiver):
    client = web.test_client()
    session = login(client, "admin@x.test")
    body = {"url": receiver.url(), "events": ["*"]}
    r = client.post("/api/v1/webhooks", json=body)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "csrf_failed"
    assert client.post("/api/v1/webhooks", json=body, headers=session.headers()).status_code == 201


BAD_URLS = [
    ("ftp://crm.example.com/hook", "https://"),
    ("javascript:alert(1)", "https://"),
    ("crm.example.com/hook", "https://"),
    ("https://user:password@crm.example.com/hook", "user name or password"),
    ("https://token@crm.example.com/hook", "user name or password"),
    ("https://crm.example.com/" + "a" * 2100, "at most 2048"),
    ("https://crm.exa mple.com/hook", "spaces"),
    ("https://crm.example.com/hook\r\nX-Injected: 1", "spaces or control"),
    ("https://crm.example.com/hook#frag", "fragment"),
    ("https://crm.example.com:0/hook", "port"),
    ("https://crm.example.com:99999/hook", "port"),
    ("https:///hook", "host"),
    ("https://-bad-.example.com/", "not valid"),
    ("http://2130706433/", "four decimal numbers"),
    ("http://0x7f000001/", "four decimal numbers"),
    ("http://0177.0.0.1/", "four decimal numbers"),
    ("http://127.1/", "four decimal numbers"),
    ("http://[::1%25lo]/", "zone"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.0.0.5/", "private network"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("https://crm.example.com/ü", "Percent-encode"),
    ("", "Enter the URL"),
]
BAD_FIELDS = [


    ({"url": "https://crm.example.com/", "events": []}, "events"),
    ({"url": "https://crm.example.com/", "events": ["email.opened"]}, "events"),
    ({"url": "https://crm.example.com/", "events": [{"type": "email.sent"}]}, "events"),
    ({"url": "https://crm.example.com/"}, "events"),
    ({"events": ["*"]}, "url"),
    ({"url": "https://crm.example.com/", "events": ["*"], "secret": "mine"}, "secret"),
    ({"url": "https://crm.example.com/", "events": ["*"], "enabled": "yes"}, "enabled"),
    ({"url": "https://crm.example.com/", "events": ["*"], "description": "x" * 201}, "description"),
]


def test_bad_urls_and_fields_are_refused_with_a_clear_400(appliance, client, admin, receiver):
    auth = bearer(appliance, admin)
    for url, problem in BAD_URLS:
        r = client.post("/api/v1/webhooks", json={"url": url, "events": ["*"]}, headers=auth)
        assert r.status_code == 400, url
        error = r.get_json()["error"]
        assert error["code"] == "validation_failed" and problem in error["details"]["fields"]["url"], (url, error)
    for body, field in BAD_FIELDS:
        r = client.post("/api/v1/webhooks", json=body, headers=auth)
        assert r.status_code == 400 and field in r.get_json()["error"]["details"]["fields"], body
    assert appliance.db.execute("SELECT count(*) FROM webhooks").fetchone()[0] == 0
    # the same checks on a change
    hook = make_hook(appliance, admin, receiver.url())
    for body, field in [({"url": "http://127.1/"}, "url"), ({"events": []}, "events"), ({"enabled": 1}, "enabled")]:
        r = client.patch(f"/api/v1/webhooks/{hook['id']}", json=body, headers=auth)
        assert r.status_code == 400 and field in r.get_json()["error"]["details"]["fields"], body
    r = client.post("/api/v1/webhooks", data="url=x", headers={**auth, "Content-Type": "text/plain"})
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "unsupported_media_type"




def test_good_urls_are_normalised(appliance, admin):
    made = make_hook(appliance, admin, "HTTPS://Bücher.Example.com:8443/hooks?x=1", ["email.sent", "*"])
    assert made["url"] == "https://xn--bcher-kva.example.com:8443/hooks?x=1" and made["events"] == ["*"]
    assert make_hook(appliance, admin, "https://[2606:4700::1111]/")["url"] == "https://[2606:4700::1111]/"
    assert make_hook(appliance, admin, "http://93.184.216.34")["url"] == "http://93.184.216.34/"
