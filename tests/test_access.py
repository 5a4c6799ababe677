"""Users, first run, sessions and roles: the security page's promises about who gets in."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from appliance.db import users_repo
from appliance.services import passwords, sessions, users
from appliance.services.setup import issue_setup_link

from .support.access import PASSWORD, add_user, login
from .support.appliance import serve_env


def setup_token(appliance) -> str:
    return issue_setup_link(appliance.db, "http://x", 3600).rsplit("/", 1)[1]


# -- first run ------------------------------------------------------------------------------

def test_setup_link_creates_the_owner_once(appliance, client):
    token = setup_token(appliance)
    page = client.get(f"/setup/{token}")
    assert page.status_code == 200 and b'name="csrf_token"' in page.data
    csrf = page.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    form = {"csrf_token": csrf, "email": "Owner@Example.com", "name": "Olga", "password": PASSWORD,
            "password_confirm": PASSWORD}
    r = client.post(f"/setup/{token}", data=form)
    assert r.status_code == 302 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert "mf_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    owner = users_repo.by_email(appliance.db.connection(), "owner@example.com")
    assert owner["role"] == "owner" and passwords.hash_cost(owner["password_hash"]) == 12
    assert client.get("/api/v1/me").get_json()["email"] == "owner@example.com"
    again = client.post(f"/setup/{token}", data=form)
    assert again.status_code == 410
    assert users_repo.count(appliance.db.connection()) == 1


def test_setup_form_keeps_input_and_shows_field_errors(appliance, client):
    token = setup_token(appliance)
    page = client.get(f"/setup/{token}")
    csrf = page.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    r = client.post(f"/setup/{token}", data={"csrf_token": csrf, "email": "not-an-email", "name": "Kept Name",
                                             "password": "short", "password_confirm": "short"})
    assert r.status_code == 400
    assert b"Enter a valid email address" in r.data and b"at least 12 characters" in r.data
    assert b'value="Kept Name"' in r.data and b'value="not-an-email"' in r.data
    assert users_repo.count(appliance.db.connection()) == 0


def test_expired_setup_link_is_refused(appliance, client):
    link = issue_setup_link(appliance.db, "http://x", 3600, now=datetime.now(timezone.utc) - timedelta(hours=2))
    r = client.get("/setup/" + link.rsplit("/", 1)[1])
    assert r.status_code == 410 and b"expired" in r.data


def test_create_admin_reads_the_password_from_stdin(tmp_path):
    env = serve_env(tmp_path)
    run = lambda *a, stdin: subprocess.run([sys.executable, "-m", "appliance.cli", *a], env=env, input=stdin,
                                           capture_output=True, text=True, timeout=60)
    assert run("migrate", stdin="").returncode == 0
    first = run("create-admin", "boss@example.com", stdin=PASSWORD + "\n")
    assert first.returncode == 0 and "created owner boss@example.com" in first.stdout
    second = run("create-admin", "second@example.com", stdin=PASSWORD + "\n")
    assert "created admin second@example.com" in second.stdout
    weak = run("create-admin", "weak@example.com", stdin="short\n")
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr
    dup = run("create-admin", "boss@example.com", stdin=PASSWORD + "\n")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    assert "--password" not in run("create-admin", "--help", stdin="").stdout


# -- passwords ------------------------------------------------------------------------------

def test_bcrypt_cost_12_and_long_passwords(appliance):
    long_a = "a" * 100 + "1"
    long_b = "a" * 100 + "2"  # differs only after bcrypt's 72-byte horizon
    hashed = passwords.hash_password(long_a)
    assert hashed.startswith("$2b$12$")
    assert passwords.verify_password(long_a, hashed) and not passwords.verify_password(long_b, hashed)
    with pytest.raises(ValueError):
        passwords.hash_password("x" * 20, cost=10)


def test_cost_below_12_cannot_be_configured():
    from appliance.config import load_config
    from appliance.errors import ConfigError
    with pytest.raises(ConfigError, match="bcrypt_cost"):
        load_config(os.devnull, env={"MAILFLOW_BCRYPT_COST": "10"})


# -- sign-in --------------------------------------------------------------------------------

def test_wrong_password_and_unknown_email_look_the_same(appliance, client):
    add_user(appliance, "m@example.com")
    wrong = client.post("/api/v1/auth/login", json={"email": "m@example.com", "password": "wrong password!"})
    unknown = client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "x" * 12})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()


def test_login_requires_json(client):
    r = client.post("/api/v1/auth/login", data={"email": "a@b.c", "password": "x"})
    assert r.status_code == 415


def test_session_cookie_is_secure_over_https(appliance, web):
    add_user(appliance, "m@example.com")
    https = web.test_client()
    r = https.post("/api/v1/auth/login", json={"email": "m@example.com", "password": PASSWORD},
                   base_url="https://mailflow.example.com")
    cookie = [c for c in r.headers.getlist("Set-Cookie") if c.startswith("mf_session=")][0]
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_disabled_user_cannot_sign_in(appliance, client):
    add_user(appliance, "gone@example.com", status="disabled")
    r = client.post("/api/v1/auth/login", json={"email": "gone@example.com", "password": PASSWORD})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "account_disabled"


# -- tokens ---------------------------------------------------------------------------------

def bearer(client, token):
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def test_algorithm_is_pinned(appliance, client):
    add_user(appliance, "m@example.com")
    session = login(client, "m@example.com")
    claims = jwt.decode(session.token, options={"verify_signature": False})
    key = appliance.keys.sessions
    none_token = jwt.encode(claims, None, algorithm="none")
    hs512 = jwt.encode(claims, key, algorithm="HS512")
    other_key = jwt.encode(claims, os.urandom(32), algorithm="HS256")
    no_version = jwt.encode({k: v for k, v in claims.items() if k != "ver"}, key, algorithm="HS256")
    expired = jwt.encode(dict(claims, exp=int(datetime.now(timezone.utc).timestamp()) - 1), key, algorithm="HS256")
    fresh = client.application.test_client()
    for token in (none_token, hs512, other_key, no_version, expired):
        assert bearer(fresh, token).status_code == 401
    assert bearer(fresh, session.token).status_code == 200


def test_password_change_kills_every_earlier_token(appliance, web):
    add_user(appliance, "m@example.com")
    first, second = web.test_client(), web.test_client()
    a, b = login(first, "m@example.com"), login(second, "m@example.com")
    r = first.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": "a new passphrase!"},
                   headers=a.headers())
    assert r.status_code == 200
    assert second.get("/api/v1/me").status_code == 401          # the other cookie session
    assert bearer(web.test_client(), b.token).status_code == 401  # and its Bearer token
    assert bearer(web.test_client(), a.token).status_code == 401  # even the caller's old token
    assert first.get("/api/v1/me").status_code == 200            # the caller continues with its new cookie
    assert bearer(web.test_client(), r.get_json()["token"]).status_code == 200


def test_wrong_current_password_changes_nothing(appliance, client):
    add_user(appliance, "m@example.com")
    s = login(client, "m@example.com")
    r = client.post("/api/v1/auth/password", json={"current_password": "not it at all", "new_password": "x" * 20},
                    headers=s.headers())
    assert r.status_code == 400 and "current_password" in r.get_json()["error"]["details"]["fields"]
    assert client.get("/api/v1/me").status_code == 200


def test_logout_ends_only_this_token(appliance, web):
    add_user(appliance, "m@example.com")
    one, two = web.test_client(), web.test_client()
    a, b = login(one, "m@example.com"), login(two, "m@example.com")
    assert one.post("/api/v1/auth/logout", headers=a.headers()).status_code == 200
    assert bearer(web.test_client(), a.token).status_code == 401
    assert bearer(web.test_client(), b.token).status_code == 200


def test_sign_out_everywhere_and_disable_and_role_change_end_sessions(appliance, web):
    owner_id = add_user(appliance, "owner@example.com", role="owner")
    add_user(appliance, "m@example.com")
    owner = login(web.test_client(), "owner@example.com")
    member_id = users_repo.by_email(appliance.db.connection(), "m@example.com")["id"]

    m1 = login(web.test_client(), "m@example.com")
    r = web.test_client().patch(f"/api/v1/users/{member_id}", json={"role": "viewer"}, headers=owner.headers(True))
    assert r.status_code == 200 and r.get_json()["role"] == "viewer"
    assert bearer(web.test_client(), m1.token).status_code == 401

    m2 = login(web.test_client(), "m@example.com")
    web.test_client().patch(f"/api/v1/users/{member_id}", json={"status": "disabled"}, headers=owner.headers(True))
    assert bearer(web.test_client(), m2.token).status_code == 401

    o2 = login(web.test_client(), "owner@example.com")
    assert web.test_client().post("/api/v1/auth/sign-out-everywhere", headers=o2.headers(True)).status_code == 200
    assert bearer(web.test_client(), owner.token).status_code == 401
    assert owner_id


def test_idle_refresh_and_absolute_limit(appliance, client):
    user_id = add_user(appliance, "m@example.com")
    user = users_repo.by_id(appliance.db.connection(), user_id)
    past = datetime.now(timezone.utc) - timedelta(minutes=10)
    token, claims = sessions.issue(appliance.keys.sessions, user, idle_minutes=120, max_hours=24, now=past)
    client.set_cookie("mf_session", token)
    r = client.get("/api/v1/me")
    assert r.status_code == 200
    refreshed = [c for c in r.headers.getlist("Set-Cookie") if c.startswith("mf_session=")]
    assert refreshed, "a cookie session in use is refreshed"
    new_claims = jwt.decode(refreshed[0].split("=", 1)[1].split(";")[0], appliance.keys.sessions,
                            algorithms=["HS256"])
    assert new_claims["exp"] > claims["exp"] and new_claims["auth_time"] == claims["auth_time"]
    # absolute: a session started 23h59m ago cannot be extended beyond 24h
    old = datetime.now(timezone.utc) - timedelta(hours=23, minutes=59)
    _, late = sessions.issue(appliance.keys.sessions, user, idle_minutes=120, max_hours=24,
                             auth_time=int(old.timestamp()))
    assert late["exp"] == int(old.timestamp()) + 24 * 3600


# -- roles ----------------------------------------------------------------------------------

@pytest.fixture
def team(appliance, web):
    for email, role in (("owner@x.test", "owner"), ("admin@x.test", "admin"), ("member@x.test", "member"),
                        ("viewer@x.test", "viewer")):
        add_user(appliance, email, role=role)
    ids = {r["email"].split("@")[0]: r["id"] for r in users_repo.list_page(appliance.db.connection())}
    tokens = {name: login(web.test_client(), f"{name}@x.test").headers(True) for name in ids}
    return ids, tokens


def test_role_rules(web, team):
    ids, h = team
    c = web.test_client()
    assert c.get("/api/v1/users", headers=h["viewer"]).status_code == 403
    assert c.get("/api/v1/users", headers=h["member"]).status_code == 403
    assert c.get("/api/v1/users", headers=h["admin"]).status_code == 200
    assert c.post("/api/v1/users", json={"email": "n@x.test", "role": "viewer"}, headers=h["member"]).status_code == 403
    # an admin cannot touch the owner, nor make admins; the owner can
    assert c.patch(f"/api/v1/users/{ids['owner']}", json={"status": "disabled"}, headers=h["admin"]).status_code == 403
    assert c.patch(f"/api/v1/users/{ids['member']}", json={"role": "admin"}, headers=h["admin"]).status_code == 403
    assert c.patch(f"/api/v1/users/{ids['member']}", json={"role": "owner"}, headers=h["owner"]).status_code == 403
    assert c.patch(f"/api/v1/users/{ids['admin']}", json={"status": "disabled"}, headers=h["admin"]).status_code == 403
    assert c.delete(f"/api/v1/users/{ids['owner']}", headers=h["admin"]).status_code == 403
    r = c.patch(f"/api/v1/users/{ids['member']}", json={"role": "admin"}, headers=h["owner"])
    assert r.status_code == 200 and r.get_json()["role"] == "admin"


def test_invite_flow(appliance, web, team):
    _, h = team
    c = web.test_client()
    r = c.post("/api/v1/users", json={"email": "New@X.test", "role": "member"}, headers=h["admin"])
    assert r.status_code == 201
    body = r.get_json()
    assert body["status"] == "invited" and "password_hash" not in body
    path = "/" + body["invite_url"].split("/", 3)[3]
    assert c.post("/api/v1/users", json={"email": "new@x.test"}, headers=h["admin"]).status_code == 409
    invitee = web.test_client()
    page = invitee.get(path)
    assert page.status_code == 200 and b"new@x.test" in page.data
    csrf = page.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    done = invitee.post(path, data={"csrf_token": csrf, "name": "Nia", "password": PASSWORD,
                                    "password_confirm": PASSWORD})
    assert done.status_code == 302
    assert invitee.get("/api/v1/me").get_json()["status"] == "active"
    assert web.test_client().get(path).status_code == 410


def test_security_txt(client):
    r = client.get("/.well-known/security.txt")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    lines = dict(line.split(": ", 1) for line in r.get_data(as_text=True).strip().splitlines())
    assert lines["Contact"] == "mailto:security@mailflow.dev"
    expires = datetime.strptime(lines["Expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert timedelta(days=300) < expires - datetime.now(timezone.utc) <= timedelta(days=366)


def test_users_service_never_exposes_hashes(appliance):
    add_user(appliance, "m@example.com")
    listed = users.list_users(appliance.db)
    assert listed and all("password_hash" not in u and "token_version" not in u for u in listed)


def test_an_account_without_a_password_sets_its_first_one(appliance, web):
    """Accounts made by single sign-on have no password; signed in, they may set one."""
    from appliance.services.authz import Principal
    with appliance.db.transaction() as conn:
        user_id = users_repo.insert(conn, email="sso@x.test", name="", role="viewer", status="active",
                                    password_hash=None, now="2026-01-01T00:00:00Z")
    principal = Principal(user_id=user_id, email="sso@x.test", role="viewer", via="session")
    assert users.get(appliance.db, user_id)["has_password"] is False
    users.change_password(appliance.db, principal, current_password="", new_password=PASSWORD, cost=12)
    assert login(web.test_client(), "sso@x.test").user["has_password"] is True
