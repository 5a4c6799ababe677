"""API-key scopes and user roles on every /api/v1 route, as the OpenAPI document states them.

Every operation's `x-mailflow-scope` (read, write, admin; none for public routes) and
`x-mailflow-role` are checked against the running app by calling each route with keys of each
scope and sessions of each role. Ids in paths name nothing and bodies are empty, so a call that
gets past the access check ends in 400/404/415 and changes nothing.
"""

from __future__ import annotations

import pytest
from werkzeug.routing import IntegerConverter

from appliance.services.authz import RANK
from webui.openapi import SPEC

from .support.access import add_user, login

ACCESS_DENIED = {"scope_required", "role_required"}
MISSING_ID = 987654321
SESSION_ENDING = {"logout", "sign_out_everywhere"}  # called with a session of their own


def operations():
    """Every described operation; those that end sessions last, so they end no session still in use."""
    ops = [(path, method, op) for path, item in SPEC["paths"].items() for method, op in item.items()]
    return sorted(ops, key=lambda o: o[2]["operationId"] in SESSION_ENDING)


def url_for_spec_path(path: str, op: dict) -> str:
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = MISSING_ID if param["schema"]["type"] == "integer" else "not-a-real-token"
            path = path.replace("{" + param["name"] + "}", str(value))
    return path


def call(client, path: str, method: str, op: dict, headers: dict):
    return client.open(url_for_spec_path(path, op), method=method.upper(), json={}, headers=headers)


def denied(response) -> str | None:
    """The access-check code of a 401/403, or None when the call got past the check."""
    if response.status_code == 401:
        return "unauthenticated"
    body = response.get_json(silent=True) or {}
    code = body.get("error", {}).get("code")
    return code if response.status_code == 403 and code in ACCESS_DENIED else None


@pytest.fixture
def people(appliance, web):
    """An admin with a key of each scope; a member, and a viewer, signed in."""
    add_user(appliance, "owner@x.test", role="owner")
    add_user(appliance, "admin@x.test", role="admin")
    add_user(appliance, "member@x.test", role="member")
    add_user(appliance, "viewer@x.test", role="viewer")
    client = web.test_client()
    sessions = {email.split("@")[0]: login(client, email) for email in
                ("admin@x.test", "member@x.test", "viewer@x.test")}
    keys = {}
    for scope in ("read", "write", "admin"):
        r = client.post("/api/v1/api-keys", json={"name": scope, "scopes": [scope]},
                        headers=sessions["admin"].headers(bearer=True))
        assert r.status_code == 201, r.get_json()
        keys[scope] = {"Authorization": f"Bearer {r.get_json()['key']}"}
    return {"keys": keys, "sessions": {name: s.headers(bearer=True) for name, s in sessions.items()},
            "fresh": lambda role: login(client, f"{role}@x.test").headers(bearer=True)}


def test_each_key_scope_gets_exactly_the_operations_its_scope_allows(web, people):
    client = web.test_client()
    wrong, checked = [], 0
    for path, method, op in operations():
        needed = op["x-mailflow-scope"]
        if needed == "none":
            continue
        for scope, headers in people["keys"].items():
            # scopes do not nest: a key holds the scopes it lists (an admin-only key cannot read)
            allowed = scope == needed
            code = denied(call(client, path, method, op, headers))
            if allowed and code is not None:
                wrong.append(f"{method.upper()} {path}: a {scope} key was refused ({code})")
            elif not allowed and code != "scope_required":
                wrong.append(f"{method.upper()} {path}: a {scope} key was not refused (needs {needed})")
            checked += 1
    assert wrong == []
    assert checked > 150


def test_a_read_key_cannot_change_anything(web, people):
    client = web.test_client()
    allowed = []
    for path, method, op in operations():
        if method == "get" or op["x-mailflow-scope"] == "none":
            continue
        r = call(client, path, method, op, people["keys"]["read"])
        if denied(r) != "scope_required":
            allowed.append(f"{method.upper()} {path} -> {r.status_code}")
    # logging out ends the caller's own session token; for an API key it changes nothing
    assert allowed == ["POST /api/v1/auth/logout -> 200"]


def test_each_role_gets_exactly_the_operations_its_role_allows(web, people):
    client = web.test_client()
    wrong = []
    for path, method, op in operations():
        needed = op["x-mailflow-role"]
        if needed == "none":
            continue
        for role in ("viewer", "member", "admin"):
            headers = people["fresh"](role) if op["operationId"] in SESSION_ENDING else people["sessions"][role]
            code = denied(call(client, path, method, op, headers))
            allowed = RANK[role] >= RANK[needed]
            if allowed and code is not None:
                wrong.append(f"{method.upper()} {path}: a {role} was refused ({code})")
            elif not allowed and code != "role_required":
                wrong.append(f"{method.upper()} {path}: a {role} was not refused (needs {needed}, got {code})")
    assert wrong == []


def test_admin_areas_need_the_admin_scope_and_role():
    """Users, the audit log, mailboxes (their credentials), settings changes and webhooks."""
    admin_prefixes = ("/api/v1/users", "/api/v1/audit-log", "/api/v1/mailboxes", "/api/v1/webhooks")
    found = []
    for path, method, op in operations():
        if path.startswith(admin_prefixes) or (path.startswith("/api/v1/settings/") and method != "get"):
            assert (op["x-mailflow-scope"], op["x-mailflow-role"]) == ("admin", "admin"), f"{method} {path}"
            found.append(path)
    assert len(found) >= 10


def test_without_credentials_every_non_public_operation_answers_401(web):
    client = web.test_client()
    wrong = []
    for path, method, op in operations():
        r = call(client, path, method, op, {})
        public = op["x-mailflow-scope"] == "none"
        if public and r.status_code == 401 or not public and r.status_code != 401:
            wrong.append(f"{method.upper()} {path} -> {r.status_code}")
    assert wrong == []


def test_every_described_route_checks_access_in_its_view(web):
    """The scope and role a route demands come from webui.auth.require, which marks its views."""
    public = {(path, method) for path, method, op in operations() if op["x-mailflow-scope"] == "none"}
    unmarked = []
    for rule in web.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = rule.rule
        for name, converter in rule._converters.items():
            kind = "int" if isinstance(converter, IntegerConverter) else "string"
            path = path.replace(f"<{kind}:{name}>", "{" + name + "}").replace(f"<{name}>", "{" + name + "}")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            view = web.view_functions[rule.endpoint]
            if (path, method.lower()) not in public and not hasattr(view, "required_role"):
                unmarked.append(f"{method} {rule.rule}")
    assert unmarked == []


def test_a_write_key_cannot_revoke_someone_elses_key(web, people):
    client = web.test_client()
    member_key = client.post("/api/v1/api-keys", json={"name": "m", "scopes": ["read"]},
                             headers=people["sessions"]["member"]).get_json()
    r = client.delete(f"/api/v1/api-keys/{member_key['id']}", headers=people["keys"]["write"])
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "scope_required"
    both = client.post("/api/v1/api-keys", json={"name": "wa", "scopes": ["write", "admin"]},
                       headers=people["sessions"]["admin"]).get_json()["key"]
    r = client.delete(f"/api/v1/api-keys/{member_key['id']}", headers={"Authorization": f"Bearer {both}"})
    assert r.status_code == 204
