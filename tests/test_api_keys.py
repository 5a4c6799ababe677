"""API keys: format, storage, scopes, revocation, the verified-key cache, last use, failure
limits, and the Settings → API keys page. The real Flask app over a real encrypted database."""

from __future__ import annotations

import json
import re
import secrets as secrets_module
from datetime import datetime, timedelta, timezone

import bcrypt
import pytest

from appliance.db import api_keys_repo
from appliance.db.timefmt import to_iso, utcnow_iso
from appliance.services import api_keys, users
from appliance.services.authz import Principal
from webui.auth import API_KEY_FAILURES
from webui.limits import limiter

from .support.access import add_user, login

KEY_FORMAT = re.compile(r"^mf_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")
CSRF_FIELD = re.compile(rb'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def fresh_cache():
    api_keys.cache.clear()
    yield
    api_keys.cache.clear()


@pytest.fixture
def people(appliance):
    """Principals as sessions would produce them (no sign-in cost), by role."""
    found = {}
    for role in ("owner", "admin", "member", "viewer"):
        email = f"{role}@x.test"
        found[role] = Principal(user_id=add_user(appliance, email, role=role), email=email, role=role,
                                via="session")
    return found


def new_key(appliance, principal, scopes=("read",), name="test key") -> dict:
    return api_keys.create(appliance.db, principal, name=name, scopes=list(scopes), cost=12)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def dump_database(appliance) -> str:
    """Every value of every table, decrypted, as text."""
    conn = appliance.db.connection()
    tables = [r["name"] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return "\n".join(repr(tuple(r)) for t in tables for r in conn.execute(f'SELECT * FROM "{t}"'))


def row(appliance, key_id):
    return appliance.db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()


@pytest.fixture
def checkpw_calls(monkeypatch):
    """Counts bcrypt verifications (the 250 ms the cache is there to save)."""
    calls = []
    real = bcrypt.checkpw

    def counting(password, hashed):
        calls.append(1)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


# -- format and storage ---------------------------------------------------------------------

def test_format_and_only_the_prefix_is_stored_in_plaintext(appliance, client, people):
    created = new_key(appliance, people["member"], ["read", "write"], name="CRM sync")
    match = KEY_FORMAT.match(created["key"])
    assert match, created["key"]
    prefix, secret = match.groups()
    assert created["prefix"] == prefix and created["name"] == "CRM sync"
    assert created["scopes"] == ["read", "write"] and created["last_used_at"] is None

    stored = row(appliance, created["id"])
    assert stored["prefix"] == prefix
    assert stored["secret_hash"].startswith("$2b$12$")
    # nowhere in the decrypted database (audit metadata included) ...
    dump = dump_database(appliance)
    assert prefix in dump and secret not in dump and created["key"] not in dump
    # ... nor in the bytes on disk (main file, WAL, shared memory)
    appliance.db.checkpoint()
    files = [p for p in appliance.db.path.parent.iterdir() if p.name.startswith(appliance.db.path.name)]
    assert appliance.db.path in files
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data and created["key"].encode() not in data

    assert client.get("/api/v1/me", headers=bearer(created["key"])).get_json()["auth"] == {
        "via": "api_key", "scopes": ["read", "write"]}


def test_a_secret_containing_underscores_still_works(appliance, client, people, monkeypatch):
    monkeypatch.setattr(secrets_module, "token_urlsafe", lambda n: "under_score_" + "A" * 31)
    created = new_key(appliance, people["member"])
    assert created["key"].count("_") == 4
    assert client.get("/api/v1/me", headers=bearer(created["key"])).status_code == 200


def test_create_over_the_api_shows_the_key_once(appliance, web, people):
    add = web.test_client()
    admin_key = new_key(appliance, people["admin"], ["read", "write", "admin"])["key"]
    r = add.post("/api/v1/api-keys", json={"name": "deploy bot", "scopes": ["read", "write"]},
                 headers=bearer(admin_key))
    assert r.status_code == 201
    body = r.get_json()
    assert list(body)[:4] == ["id", "name", "prefix", "key"] and KEY_FORMAT.match(body["key"])
    assert body["scopes"] == ["read", "write"]

    listed = add.get("/api/v1/api-keys", headers=bearer(admin_key)).get_json()
    assert {k["id"] for k in listed["items"]} >= {body["id"]}
    for item in listed["items"]:
        assert "key" not in item and "secret_hash" not in item
        assert body["key"] not in json.dumps(item)
    assert listed["next_cursor"] is None


@pytest.mark.parametrize("body, field", [
    ({"name": "", "scopes": ["read"]}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "k", "scopes": ["read", "root"]}, "scopes"),
    ({"name": "k", "scopes": "read"}, "scopes"),
    ({"name": "k", "scopes": [{"read": 1}]}, "scopes"),
])
def test_create_validates_input(appliance, client, people, body, field):
    admin_key = new_key(appliance, people["admin"], ["read", "write", "admin"])["key"]
    r = client.post("/api/v1/api-keys", json=body, headers=bearer(admin_key))
    assert r.status_code == 400
    assert field in r.get_json()["error"]["details"]["fields"]


def test_list_paginates_and_shows_each_user_their_own(appliance, client, people):
    for i in range(3):
        new_key(appliance, people["member"], name=f"m{i}")
    admin = new_key(appliance, people["admin"], ["read", "write", "admin"], name="a")
    admin_read = new_key(appliance, people["admin"], ["read"], name="a-read")
    member_key = api_keys.create(appliance.db, people["member"], name="m-last", scopes=["read"], cost=12)["key"]

    mine = client.get("/api/v1/api-keys?limit=2", headers=bearer(member_key)).get_json()
    assert [k["name"] for k in mine["items"]] == ["m0", "m1"] and mine["next_cursor"]
    rest = client.get(f"/api/v1/api-keys?limit=2&cursor={mine['next_cursor']}",
                      headers=bearer(member_key)).get_json()
    assert [k["name"] for k in rest["items"]] == ["m2", "m-last"]
    assert client.get("/api/v1/api-keys?limit=0", headers=bearer(member_key)).status_code == 400

    everyone = client.get("/api/v1/api-keys", headers=bearer(admin["key"])).get_json()["items"]
    assert {k["user_email"] for k in everyone} == {"member@x.test", "admin@x.test"}
    # an admin's key without the admin scope sees only its user's keys
    own = client.get("/api/v1/api-keys", headers=bearer(admin_read["key"])).get_json()["items"]
    assert {k["user_email"] for k in own} == {"admin@x.test"}


# -- scopes and roles -----------------------------------------------------------------------

def test_scopes_are_enforced(appliance, client, people):
    read = new_key(appliance, people["admin"], ["read"])
    write = new_key(appliance, people["admin"], ["read", "write"])
    admin = new_key(appliance, people["admin"], ["read", "write", "admin"])
    invite = {"email": "new@x.test", "role": "viewer"}

    assert client.get("/api/v1/me", headers=bearer(read["key"])).status_code == 200
    r = client.post("/api/v1/users", json=invite, headers=bearer(read["key"]))
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "scope_required"
    r = client.post("/api/v1/api-keys", json={"name": "more"}, headers=bearer(read["key"]))
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "scope_required"
    assert client.delete(f"/api/v1/api-keys/{write['id']}", headers=bearer(read["key"])).status_code == 403

    # write is not admin
    assert client.get("/api/v1/users", headers=bearer(write["key"])).status_code == 403
    assert client.post("/api/v1/users", json=invite, headers=bearer(write["key"])).status_code == 403
    assert client.post("/api/v1/api-keys", json={"name": "more"}, headers=bearer(write["key"])).status_code == 403

    assert client.get("/api/v1/users", headers=bearer(admin["key"])).status_code == 200
    assert client.post("/api/v1/users", json=invite, headers=bearer(admin["key"])).status_code == 201


def test_who_may_create_which_scopes(appliance, web, people):
    add_user(appliance, "v2@x.test", role="viewer")
    add_user(appliance, "m2@x.test", role="member")
    viewer, member = login(web.test_client(), "v2@x.test"), login(web.test_client(), "m2@x.test")
    create = lambda s, scopes: s.client.post("/api/v1/api-keys", json={"name": "k", "scopes": scopes},
                                             headers=s.headers(bearer=True))

    r = create(viewer, ["read", "write"])
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "scope_not_allowed"
    assert create(viewer, ["read"]).status_code == 201
    r = create(member, ["read", "admin"])
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "scope_not_allowed"
    assert create(member, ["read", "write"]).status_code == 201
    assert api_keys.grantable_scopes(people["viewer"]) == ["read"]
    assert api_keys.grantable_scopes(people["member"]) == ["read", "write"]
    assert api_keys.grantable_scopes(people["owner"]) == ["read", "write", "admin"]


def test_roles_are_read_live_and_a_disabled_user_keys_stop(appliance, client, people):
    admin_key = new_key(appliance, people["admin"], ["read", "write", "admin"])
    h = bearer(admin_key["key"])
    assert client.get("/api/v1/users", headers=h).status_code == 200  # cached from here on
    users.update(appliance.db, people["owner"], people["admin"].user_id, role="member")
    r = client.get("/api/v1/users", headers=h)
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "role_required"
    assert client.get("/api/v1/me", headers=h).status_code == 200

    users.update(appliance.db, people["owner"], people["admin"].user_id, status="disabled")
    r = client.get("/api/v1/me", headers=h)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "account_disabled"


# -- revocation -----------------------------------------------------------------------------

def test_revoke_takes_effect_at_once_even_when_cached(appliance, web, people, checkpw_calls):
    c = web.test_client()
    key = new_key(appliance, people["member"], ["read", "write"])
    other = new_key(appliance, people["member"], ["read"])
    assert c.get("/api/v1/me", headers=bearer(key["key"])).status_code == 200
    assert api_keys.cache.get(key["key"]) == key["id"]

    r = c.delete(f"/api/v1/api-keys/{key['id']}", headers=bearer(other["key"]))
    assert r.status_code == 403  # a read key cannot revoke
    r = c.delete(f"/api/v1/api-keys/{key['id']}", headers=bearer(key["key"]))
    assert r.status_code == 204  # a key may revoke itself
    assert api_keys.cache.get(key["key"]) is None
    r = c.get("/api/v1/me", headers=bearer(key["key"]))
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "api_key_revoked"
    assert row(appliance, key["id"])["revoked_at"]
    assert c.delete(f"/api/v1/api-keys/{key['id']}", headers=bearer(other["key"])).status_code == 403


def test_the_database_wins_over_the_cache(appliance, client, people):
    """Revoked behind the service's back (no cache drop): still refused on the next call."""
    key = new_key(appliance, people["member"])
    assert client.get("/api/v1/me", headers=bearer(key["key"])).status_code == 200
    with appliance.db.transaction() as conn:
        api_keys_repo.revoke(conn, key["id"], utcnow_iso())
    assert client.get("/api/v1/me", headers=bearer(key["key"])).status_code == 401


def test_only_owners_and_admins_revoke(appliance, client, people):
    admins = new_key(appliance, people["admin"], ["read", "write", "admin"])
    members = new_key(appliance, people["member"], ["read", "write"])
    r = client.delete(f"/api/v1/api-keys/{admins['id']}", headers=bearer(members["key"]))
    assert r.status_code == 404  # someone else's key does not exist for a member
    assert client.delete("/api/v1/api-keys/99999", headers=bearer(members["key"])).status_code == 404
    assert client.delete(f"/api/v1/api-keys/{members['id']}", headers=bearer(admins["key"])).status_code == 204
    assert client.get("/api/v1/me", headers=bearer(members["key"])).status_code == 401


def test_audit_rows_for_create_and_revoke(appliance, client, people):
    admin = new_key(appliance, people["admin"], ["read", "write", "admin"], name="root")
    made = client.post("/api/v1/api-keys", json={"name": "via api"}, headers=bearer(admin["key"])).get_json()
    assert client.delete(f"/api/v1/api-keys/{made['id']}", headers=bearer(admin["key"])).status_code == 204
    rows = appliance.db.execute("SELECT action, actor_type, actor_label, target_id, metadata FROM audit_log "
                                "WHERE action LIKE 'api_key.%' ORDER BY id").fetchall()
    assert [(r["action"], r["actor_type"], r["target_id"]) for r in rows] == [
        ("api_key.created", "user", str(admin["id"])),
        ("api_key.created", "api_key", str(made["id"])),
        ("api_key.revoked", "api_key", str(made["id"])),
    ]
    assert f"key {admin['prefix']}" in rows[1]["actor_label"]
    assert json.loads(rows[1]["metadata"]) == {"name": "via api", "prefix": made["prefix"], "scopes": ["read"]}
    assert all(made["key"] not in r["metadata"] for r in rows)


# -- authentication failures ----------------------------------------------------------------

def test_unknown_prefix_and_wrong_secret_look_the_same(appliance, client, people, checkpw_calls):
    key = new_key(appliance, people["member"])
    prefix = key["prefix"]
    wrong_secret = f"mf_{prefix}_" + secrets_module.token_urlsafe(32)
    unknown = "mf_zzzzzzzz_" + secrets_module.token_urlsafe(32)
    malformed = "mf_short_x"
    bodies = []
    for token in (wrong_secret, unknown, malformed):
        checkpw_calls.clear()
        r = client.get("/api/v1/me", headers=bearer(token))
        assert r.status_code == 401
        assert len(checkpw_calls) == 1  # every failure pays one bcrypt (no timing oracle)
        bodies.append(r.get_json())
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["error"]["code"] == "invalid_api_key"
    assert client.get("/api/v1/me").status_code == 401


def test_the_cache_saves_bcrypt_on_later_calls(appliance, client, people, checkpw_calls):
    key = new_key(appliance, people["member"])
    assert client.get("/api/v1/me", headers=bearer(key["key"])).status_code == 200
    assert len(checkpw_calls) == 1
    for _ in range(5):
        assert client.get("/api/v1/me", headers=bearer(key["key"])).status_code == 200
    assert len(checkpw_calls) == 1
    # the cache is keyed by the whole key: a wrong secret with the same prefix is verified
    wrong = f"mf_{key['prefix']}_" + secrets_module.token_urlsafe(32)
    assert client.get("/api/v1/me", headers=bearer(wrong)).status_code == 401
    assert len(checkpw_calls) == 2
    # no key material in the cache, only a SHA-256 fingerprint
    assert key["key"] not in repr(api_keys.cache._entries)
    # and an expired entry means one bcrypt again
    api_keys.cache.clear()
    assert client.get("/api/v1/me", headers=bearer(key["key"])).status_code == 200
    assert len(checkpw_calls) == 3


def test_last_used_is_recorded_at_most_once_a_minute(appliance, client, people, monkeypatch):
    key = new_key(appliance, people["member"])
    touches = []
    real_touch = api_keys_repo.touch
    monkeypatch.setattr(api_keys_repo, "touch", lambda conn, kid, now: (touches.append(now), real_touch(conn, kid, now)))
    for _ in range(5):
        assert client.get("/api/v1/me", headers=bearer(key["key"])).status_code == 200
    assert len(touches) == 1
    first = row(appliance, key["id"])["last_used_at"]
    assert first and abs(datetime.now(timezone.utc) - datetime.fromisoformat(first.replace("Z", "+00:00"))) \
        < timedelta(seconds=5)
    listed = client.get("/api/v1/api-keys", headers=bearer(key["key"])).get_json()["items"]
    assert listed[0]["last_used_at"] == first

    # two minutes later, the next call records again
    earlier = to_iso(datetime.now(timezone.utc) - timedelta(minutes=2))
    appliance.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (earlier, key["id"]))
    assert client.get("/api/v1/me", headers=bearer(key["key"])).status_code == 200
    assert len(touches) == 2 and row(appliance, key["id"])["last_used_at"] > earlier


def test_failed_keys_are_rate_limited_per_ip(appliance, web, people, checkpw_calls):
    good = new_key(appliance, people["member"])
    cached = new_key(appliance, people["member"], name="busy integration")
    attacker = web.test_client()
    neighbour = web.test_client()  # same address
    elsewhere = web.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert neighbour.get("/api/v1/me", headers=bearer(cached["key"])).status_code == 200

    # successful calls never count
    for _ in range(8):
        assert neighbour.get("/api/v1/me", headers=bearer(cached["key"])).status_code == 200
    guess = lambda: f"mf_{good['prefix']}_" + secrets_module.token_urlsafe(32)
    for _ in range(5):
        assert attacker.get("/api/v1/me", headers=bearer(guess())).status_code == 401

    checkpw_calls.clear()
    r = attacker.get("/api/v1/me", headers=bearer(guess()))
    assert r.status_code == 429 and r.get_json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # blocked before any bcrypt, and a valid but unverified key from that address waits too
    assert attacker.get("/api/v1/me", headers=bearer(good["key"])).status_code == 429
    assert checkpw_calls == []
    # a key verified within the cache's lifetime carries on (it tells a guesser nothing)
    assert neighbour.get("/api/v1/me", headers=bearer(cached["key"])).status_code == 200
    # other addresses are unaffected
    assert elsewhere.get("/api/v1/me", headers=bearer(good["key"])).status_code == 200
    assert elsewhere.get("/api/v1/me", headers=bearer(guess())).status_code == 401


def test_the_hourly_failure_budget(appliance, client, people):
    key = new_key(appliance, people["member"])
    per_minute, per_hour = API_KEY_FAILURES
    assert (per_minute.amount, per_hour.amount) == (5, 20)
    for _ in range(20):
        limiter.limiter.hit(per_hour, "apikey-fail", "127.0.0.1")
    r = client.get("/api/v1/me", headers=bearer(key["key"]))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 60


# -- CSRF -----------------------------------------------------------------------------------

def test_bearer_calls_need_no_csrf_but_cookie_calls_do(appliance, web, people):
    admin_key = new_key(appliance, people["admin"], ["read", "write", "admin"])
    bot = web.test_client()
    r = bot.post("/api/v1/api-keys", json={"name": "no csrf needed"}, headers=bearer(admin_key["key"]))
    assert r.status_code == 201
    assert bot.delete(f"/api/v1/api-keys/{r.get_json()['id']}", headers=bearer(admin_key["key"])).status_code == 204

    add_user(appliance, "m2@x.test", role="member")
    browser = web.test_client()
    session = login(browser, "m2@x.test")
    r = browser.post("/api/v1/api-keys", json={"name": "forged"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "csrf_failed"
    r = browser.post("/api/v1/api-keys", json={"name": "mine"}, headers=session.headers())
    assert r.status_code == 201
    key_id = r.get_json()["id"]
    assert browser.delete(f"/api/v1/api-keys/{key_id}").status_code == 400
    assert browser.delete(f"/api/v1/api-keys/{key_id}", headers=session.headers()).status_code == 204
    names = {k["name"] for k in browser.get("/api/v1/api-keys").get_json()["items"]}
    assert names == {"mine"}


# -- the page -------------------------------------------------------------------------------

def csrf_of(page) -> str:
    return CSRF_FIELD.search(page.data).group(1).decode()


def test_page_creates_shows_once_and_revokes(appliance, web):
    add_user(appliance, "m2@x.test", role="member")
    browser = web.test_client()
    login(browser, "m2@x.test")
    page = browser.get("/settings/api-keys")
    assert page.status_code == 200
    assert b'href="/settings/api-keys"' in page.data  # in the navigation
    assert b'value="read"' in page.data and b'value="write"' in page.data and b'value="admin"' not in page.data
    assert b"No API keys yet" in page.data

    # field errors next to the field, input kept
    bad = browser.post("/settings/api-keys", data={"csrf_token": csrf_of(page), "name": " ", "scopes": ["write"]})
    assert bad.status_code == 400 and b'id="e-name"' in bad.data
    assert re.search(rb'value="write"\s+checked', bad.data)
    denied = browser.post("/settings/api-keys", data={"csrf_token": csrf_of(page), "name": "x", "scopes": ["admin"]})
    assert denied.status_code == 403 and b'id="e-scopes"' in denied.data

    assert browser.post("/settings/api-keys", data={"name": "no token"}).status_code == 400
    made = browser.post("/settings/api-keys", data={"csrf_token": csrf_of(page), "name": "Zapier",
                                                    "scopes": ["read", "write"]})
    assert made.status_code == 200
    assert made.headers["Cache-Control"] == "no-store"
    text = made.get_data(as_text=True)
    assert "Copy it now, it will not be shown again" in text
    key = re.search(r'id="new-key-value">(mf_[^<]+)<', text).group(1)
    assert KEY_FORMAT.match(key)
    assert web.test_client().get("/api/v1/me", headers=bearer(key)).status_code == 200

    again = browser.get("/settings/api-keys").get_data(as_text=True)
    prefix = key.split("_")[1]
    assert key not in again and key.split("_", 2)[2] not in again
    assert f"mf_{prefix}_" in again and "Zapier" in again and "read, write" in again

    key_id = appliance.db.execute("SELECT id FROM api_keys WHERE name = 'Zapier'").fetchone()["id"]
    assert browser.post(f"/settings/api-keys/{key_id}/revoke").status_code == 400  # no CSRF token
    done = browser.post(f"/settings/api-keys/{key_id}/revoke", data={"csrf_token": csrf_of(page)})
    assert done.status_code == 302 and done.headers["Location"].endswith("/settings/api-keys?done=revoked")
    after = browser.get("/settings/api-keys").get_data(as_text=True)
    assert "revoked" in after and "Revoke Zapier" not in after
    assert web.test_client().get("/api/v1/me", headers=bearer(key)).status_code == 401


def test_page_admins_see_every_key_viewers_only_read(appliance, web, people):
    new_key(appliance, people["member"], name="members-key")
    admin = web.test_client()
    login(admin, "admin@x.test")
    page = admin.get("/settings/api-keys").get_data(as_text=True)
    assert "members-key" in page and "member@x.test" in page and 'value="admin"' in page

    viewer = web.test_client()
    login(viewer, "viewer@x.test")
    page = viewer.get("/settings/api-keys")
    assert b"members-key" not in page.data
    assert b'value="read"' in page.data and b'value="write"' not in page.data
    # someone else's key cannot be revoked through the page either
    key_id = appliance.db.execute("SELECT id FROM api_keys").fetchone()["id"]
    r = viewer.post(f"/settings/api-keys/{key_id}/revoke", data={"csrf_token": csrf_of(page)})
    assert r.status_code == 404 and row(appliance, key_id)["revoked_at"] is None


def test_the_page_needs_a_sign_in(client):
    r = client.get("/settings/api-keys")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
