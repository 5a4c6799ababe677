"""CSRF on every state-changing route, and rate limits that a spoofed header cannot reset."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

from .support.access import PASSWORD, add_user, login

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Views that must work without a CSRF token, each for a stated reason (see webui/auth.py).
CSRF_EXEMPT = {
    "api_auth.login",   # JSON only: a cross-site form cannot send application/json
    "unsubscribe.one_click",  # public RFC 8058 one-click: the signed token is the authority
}


def concrete_url(rule) -> str:
    values = {}
    for name, converter in rule._converters.items():
        values[name] = 1 if isinstance(converter, IntegerConverter) else "x"
    return rule.build(values)[1]


def state_changing_routes(app):
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & STATE_CHANGING):
            yield rule, method


def test_every_state_changing_route_refuses_a_cookie_request_without_the_token(appliance, web):
    add_user(appliance, "owner@x.test", role="owner")
    client = web.test_client()
    login(client, "owner@x.test")  # the session cookie is now in the client's jar
    checked = []
    for rule, method in state_changing_routes(web):
        if rule.endpoint in CSRF_EXEMPT:
            continue
        url = concrete_url(rule)
        r = client.open(url, method=method, json={})
        body = r.get_json(silent=True) or {}
        refused = r.status_code == 400 and (body.get("error", {}).get("code") == "csrf_failed"
                                            or b"CSRF check failed" in r.data)
        assert refused, f"{method} {rule.rule} accepted a cookie request without a CSRF token ({r.status_code})"
        checked.append(f"{method} {rule.rule}")
    assert len(checked) >= 10, checked
    assert client.get("/api/v1/me").status_code == 200  # and the session is still fine


def test_the_exempt_list_is_exactly_what_the_app_exempts(web):
    from webui.auth import csrf
    exempt = {name for name in web.view_functions
              if f"{web.view_functions[name].__module__}.{web.view_functions[name].__name__}" in csrf._exempt_views}
    assert exempt == CSRF_EXEMPT


def test_bearer_calls_need_no_csrf_token(appliance, web):
    add_user(appliance, "owner@x.test", role="owner")
    session = login(web.test_client(), "owner@x.test")
    r = web.test_client().post("/api/v1/users", json={"email": "n@x.test", "role": "viewer"},
                               headers=session.headers(bearer=True))
    assert r.status_code == 201


def test_cookie_calls_with_the_token_work(appliance, web):
    add_user(appliance, "owner@x.test", role="owner")
    client = web.test_client()
    session = login(client, "owner@x.test")
    r = client.post("/api/v1/users", json={"email": "n@x.test", "role": "viewer"}, headers=session.headers())
    assert r.status_code == 201


def test_login_is_throttled_per_ip_with_retry_after(appliance, client):
    add_user(appliance, "m@x.test")
    codes = [client.post("/api/v1/auth/login", json={"email": "m@x.test", "password": "wrong password"}).status_code
             for _ in range(6)]
    assert codes == [401] * 5 + [429]
    r = client.post("/api/v1/auth/login", json={"email": "m@x.test", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert r.get_json()["error"]["code"] == "too_many_requests"


def test_a_spoofed_forwarded_for_does_not_reset_the_limit(appliance, client):
    add_user(appliance, "m@x.test")
    codes = [client.post("/api/v1/auth/login", json={"email": "m@x.test", "password": "wrong password"},
                         headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(6)]
    assert codes[-1] == 429


def test_login_is_throttled_per_account_across_addresses(appliance, web):
    add_user(appliance, "target@x.test")
    codes = []
    for i in range(6):
        c = web.test_client()
        codes.append(c.post("/api/v1/auth/login", json={"email": "target@x.test", "password": "guess guess!"},
                            environ_base={"REMOTE_ADDR": f"192.0.2.{i + 1}"}).status_code)
    assert codes[-1] == 429


def test_successful_logins_do_not_use_up_the_budget(appliance, client):
    add_user(appliance, "m@x.test")
    for _ in range(7):
        assert client.post("/api/v1/auth/login", json={"email": "m@x.test", "password": PASSWORD}).status_code == 200


def test_html_login_form_is_throttled_too(appliance, client):
    page = client.get("/login")
    csrf = page.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    codes = [client.post("/login", data={"csrf_token": csrf, "email": "a@x.test", "password": "nope nope"}).status_code
             for _ in range(6)]
    assert codes == [401] * 5 + [429]


def test_per_user_limit_applies_to_signed_in_callers(appliance, web, monkeypatch):
    import webui.limits as limits
    monkeypatch.setattr(limits, "PER_USER", "3 per minute")
    add_user(appliance, "m@x.test")
    s = login(web.test_client(), "m@x.test")
    codes = [web.test_client().get("/api/v1/me", headers=s.headers(True)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_ordinary_responses_carry_no_retry_after(appliance, client):
    add_user(appliance, "m@x.test")
    r = client.post("/api/v1/auth/login", json={"email": "m@x.test", "password": PASSWORD})
    assert r.status_code == 200 and "Retry-After" not in r.headers
    assert "Retry-After" not in client.get("/healthz").headers


def test_an_api_call_without_any_credentials_is_401_not_a_csrf_error(client):
    for method, path in (("POST", "/api/v1/users"), ("DELETE", "/api/v1/users/1"), ("POST", "/api/v1/campaigns")):
        r = client.open(path, method=method, json={})
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthenticated", (method, path)
