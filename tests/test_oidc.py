"""Sign-in with OpenID Connect, end to end: the Flask app against a real OIDC provider on loopback.

The browser's part is played by hand: the app's redirect is opened at the provider
(`provider.authorize`), and the provider's redirect back is handed to the app's test client.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from appliance import cli
from appliance.config import load_config
from appliance.errors import ConfigError
from appliance.keys import generate_key_file
from appliance.services import oidc, oidc_provider

from .support.access import add_user
from .support.oidc_provider import MISBEHAVIOURS, OIDCProvider

CLIENT_ID = "mailflow-test-client"
CLIENT_SECRET = "cs-very-secret-Zq8vL2xN4pR7tY1w"
PUBLIC_URL = "https://mailflow.example.test"
CALLBACK = PUBLIC_URL + "/login/oidc/callback"


@pytest.fixture(scope="module")
def provider():
    with OIDCProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as idp:
        yield idp


@pytest.fixture(autouse=True)
def fresh_provider(provider):
    provider.reset()
    provider.redirect_uris = {CALLBACK}
    oidc_provider.clear_cache()
    yield
    oidc_provider.clear_cache()


def oidc_config(root: Path, issuer: str, secret: str = CLIENT_SECRET, **flags):
    """A real configuration load: the client secret comes from a file, as it must."""
    key_file = root / "keys" / "master.key"
    if not key_file.exists():
        generate_key_file(key_file)
    secret_file = root / "oidc_client_secret"
    secret_file.write_text(secret + "\n")
    base = {"data_dir": str(root / "data"), "key_file": str(key_file), "log_format": "text",
            "public_url": PUBLIC_URL, "oidc_issuer": issuer, "oidc_client_id": CLIENT_ID}
    base.update(flags)
    return load_config(os.devnull, env={"MAILFLOW_OIDC_CLIENT_SECRET_FILE": str(secret_file)}, flags=base)


@pytest.fixture
def config(root, provider):  # overrides conftest's: the `appliance` and `web` fixtures build on it
    return oidc_config(root, provider.issuer)


def audit_rows(appliance, action: str | None = None) -> list[dict]:
    rows = appliance.db.connection().execute("SELECT * FROM audit_log ORDER BY id").fetchall()
    found = [dict(r) | {"metadata": json.loads(r["metadata"])} for r in rows]
    return [r for r in found if action is None or r["action"] == action]


def start(client, path: str = "/login/oidc") -> str:
    response = client.get(path)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def back_to_app(client, location: str):
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return client.get(f"{parts.path}?{parts.query}")


def sign_in(client, provider, path: str = "/login/oidc"):
    """The whole dance; returns the app's answer to the provider's redirect back."""
    return back_to_app(client, provider.authorize(start(client, path)))


def session_cookie(client):
    return client.get_cookie("mf_session")


def signed_in_email(client) -> str | None:
    response = client.get("/api/v1/me")
    return response.get_json()["email"] if response.status_code == 200 else None


def page_text(response) -> str:
    return response.get_data(as_text=True).replace("&#39;", "'").replace("&#34;", '"').replace("&quot;", '"')


# -- the happy path ---------------------------------------------------------------------------

def test_existing_user_signs_in_with_a_session(appliance, client, provider):
    user_id = add_user(appliance, "alice@example.com", role="member")
    response = sign_in(client, provider)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert session_cookie(client) is not None
    assert signed_in_email(client) == "alice@example.com"

    token = provider.token_requests[-1]
    assert token["error"] is None and token["auth_method"] == "client_secret_basic"
    assert token["form"]["redirect_uri"] == CALLBACK and token["form"]["code_verifier"]
    logins = audit_rows(appliance, "auth.login")
    assert logins[-1]["metadata"] == {"method": "oidc"} and logins[-1]["target_id"] == str(user_id)
    assert logins[-1]["ip"] == "127.0.0.1"
    assert audit_rows(appliance, "auth.oidc_failed") == []


def test_authorization_url_asks_exactly_openid_email_profile_with_pkce(client, provider):
    location = start(client)
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == provider.issuer + "/authorize"
    query = parse_qs(parts.query, strict_parsing=True)
    assert all(len(v) == 1 for v in query.values())
    params = {k: v[0] for k, v in query.items()}
    assert params["scope"] == "openid email profile"
    assert sorted(params["scope"].split(" ")) == ["email", "openid", "profile"]
    assert "gmail" not in location.lower() and "googleapis" not in location.lower()
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID and params["redirect_uri"] == CALLBACK
    assert params["code_challenge_method"] == "S256" and re.fullmatch(r"[A-Za-z0-9_-]{43}", params["code_challenge"])
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32 and params["state"] != params["nonce"]
    assert set(params) == {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                           "code_challenge", "code_challenge_method"}
    assert CLIENT_SECRET not in location
    # a second start gets fresh values
    again = {k: v[0] for k, v in parse_qs(urlsplit(start(client)).query).items()}
    assert again["state"] != params["state"] and again["nonce"] != params["nonce"]
    assert again["code_challenge"] != params["code_challenge"]
    # and that is what reached the provider
    provider.authorize(location)
    assert provider.last_authorization["scope"] == "openid email profile"


def test_client_secret_post_when_the_provider_offers_only_that(appliance, client, provider):
    provider.auth_methods = ["client_secret_post"]
    add_user(appliance, "alice@example.com")
    assert sign_in(client, provider).status_code == 302
    assert provider.token_requests[-1]["auth_method"] == "client_secret_post"
    assert signed_in_email(client) == "alice@example.com"


def test_es256_id_tokens_are_accepted(appliance, client, provider):
    provider.alg = "ES256"
    add_user(appliance, "alice@example.com")
    assert sign_in(client, provider).status_code == 302
    assert signed_in_email(client) == "alice@example.com"


def test_email_from_userinfo_when_the_id_token_is_thin(appliance, client, provider):
    provider.misbehave = {"thin_id_token"}
    add_user(appliance, "alice@example.com")
    assert sign_in(client, provider).status_code == 302
    assert "/userinfo" in provider.hits and signed_in_email(client) == "alice@example.com"


def test_next_is_kept_and_only_same_site(appliance, client, provider):
    add_user(appliance, "alice@example.com")
    assert sign_in(client, provider, "/login/oidc?next=/profile").headers["Location"] == "/profile"
    assert sign_in(client, provider, "/login/oidc?next=//evil.example/x").headers["Location"] == "/"


def test_email_is_matched_case_insensitively(appliance, client, provider):
    add_user(appliance, "alice@example.com")
    provider.email = "Alice@Example.COM"
    assert sign_in(client, provider).status_code == 302
    assert signed_in_email(client) == "alice@example.com"


def test_discovery_and_keys_are_cached(appliance, client, provider):
    add_user(appliance, "alice@example.com")
    for _ in range(3):
        assert sign_in(client, provider).status_code == 302
    assert provider.hits.count("/.well-known/openid-configuration") == 1
    assert provider.hits.count("/jwks") == 1


def test_rotated_provider_keys_are_fetched_again(appliance, client, provider, monkeypatch):
    add_user(appliance, "alice@example.com")
    assert sign_in(client, provider).status_code == 302
    provider.rotate_keys()
    monkeypatch.setattr(oidc_provider, "JWKS_REFRESH_MIN", 0)
    client.delete_cookie("mf_session")
    assert sign_in(client, provider).status_code == 302
    assert provider.hits.count("/jwks") == 2 and signed_in_email(client) == "alice@example.com"


# -- who gets in ------------------------------------------------------------------------------

def assert_refused(appliance, client, response, reason: str, message: str, status: int = 401):
    text = page_text(response)
    assert response.status_code == status, text
    assert message in text, text
    assert 'role="alert"' in text  # shown on the sign-in page
    assert session_cookie(client) is None and signed_in_email(client) is None
    failures = audit_rows(appliance, "auth.oidc_failed")
    assert failures and failures[-1]["metadata"]["reason"] == reason
    assert failures[-1]["ip"] == "127.0.0.1"
    return failures[-1]


def test_unknown_user_is_refused(appliance, client, provider):
    row = assert_refused(appliance, client, sign_in(client, provider), "unknown_user",
                         "There is no MailFlow account for alice@example.com")
    assert row["actor_label"] == "alice@example.com"
    assert appliance.db.connection().execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_allowed_domain_gets_a_viewer_account(appliance, client, web, provider):
    appliance.config = appliance.config.with_overrides(oidc_allowed_domains=("example.com",))
    provider.email, provider.name = "carol@example.com", "Carol Jones"
    assert sign_in(client, provider).status_code == 302
    me = client.get("/api/v1/me").get_json()
    assert me["email"] == "carol@example.com" and me["role"] == "viewer" and me["name"] == "Carol Jones"
    row = appliance.db.connection().execute("SELECT password_hash, status FROM users WHERE email = ?",
                                            ("carol@example.com",)).fetchone()
    assert row["password_hash"] is None and row["status"] == "active"
    created = audit_rows(appliance, "user.created")[-1]
    assert created["metadata"]["via"] == "oidc" and created["metadata"]["role"] == "viewer"

    # a sub-domain is not the allowed domain
    other = web.test_client()
    provider.email = "dave@eu.example.com"
    assert_refused(appliance, other, sign_in(other, provider), "unknown_user", "no MailFlow account")


def test_disabled_and_invited_users_are_refused(appliance, client, provider):
    add_user(appliance, "alice@example.com", status="disabled")
    assert_refused(appliance, client, sign_in(client, provider), "user_disabled", "This account is disabled")
    add_user(appliance, "bob@example.com", status="invited")
    provider.email = "bob@example.com"
    assert_refused(appliance, client, sign_in(client, provider), "user_invited", "open the invitation link first")


def test_disabled_user_is_refused_even_from_an_allowed_domain(appliance, client, provider):
    appliance.config = appliance.config.with_overrides(oidc_allowed_domains=("example.com",))
    add_user(appliance, "alice@example.com", status="disabled")
    assert_refused(appliance, client, sign_in(client, provider), "user_disabled", "This account is disabled")


# -- state: bound to the browser that started, used once -------------------------------------

def test_missing_or_forged_state_is_refused(appliance, client, web, provider):
    add_user(appliance, "alice@example.com")
    response = client.get("/login/oidc/callback?code=whatever")
    assert_refused(appliance, client, response, "state_mismatch", "not started here")

    back = provider.authorize(start(client))
    query = parse_qs(urlsplit(back).query)
    forged = client.get(f"/login/oidc/callback?code={query['code'][0]}&state=forged-{query['state'][0]}")
    assert_refused(appliance, client, forged, "state_mismatch", "not started here")

    # someone else's browser cannot finish this sign-in (login CSRF): no pending state there
    other = web.test_client()
    response = back_to_app(other, provider.authorize(start(client)))
    assert_refused(appliance, other, response, "state_mismatch", "not started here")
    assert provider.token_requests == []  # nothing was redeemed for any of them

    # a state works once: replaying the provider's redirect after a sign-in is refused
    back = provider.authorize(start(client))
    assert back_to_app(client, back).status_code == 302
    client.delete_cookie("mf_session")
    assert_refused(appliance, client, back_to_app(client, back), "state_mismatch", "not started here")
    assert len(provider.token_requests) == 1  # only the good one reached /token


def test_several_tabs_may_start_a_sign_in(appliance, client, provider):
    add_user(appliance, "alice@example.com")
    first, second = start(client), start(client)
    assert back_to_app(client, provider.authorize(first)).status_code == 302
    client.delete_cookie("mf_session")
    assert back_to_app(client, provider.authorize(second)).status_code == 302


def test_a_sign_in_that_took_too_long_is_refused(appliance, client, provider, monkeypatch):
    add_user(appliance, "alice@example.com")
    back = provider.authorize(start(client))
    monkeypatch.setattr(oidc, "PENDING_TTL", -1)
    assert_refused(appliance, client, back_to_app(client, back), "state_expired", "took too long")


def test_a_tampered_code_is_refused_by_the_provider(appliance, client, provider):
    add_user(appliance, "alice@example.com")
    back = provider.authorize(start(client))
    response = back_to_app(client, back.replace("code=", "code=x"))
    assert_refused(appliance, client, response, "token_refused", "invalid_grant")


def test_a_wrong_client_secret_is_refused(root, provider):
    from appliance.runtime import open_appliance
    from webui import create_app
    from webui.limits import limiter

    app = open_appliance(oidc_config(root, provider.issuer, secret="not-the-secret"), create=True, env={})
    try:
        add_user(app, "alice@example.com")
        web = create_app(app)
        limiter.reset()
        client = web.test_client()
        assert_refused(app, client, sign_in(client, provider), "token_refused", "invalid_client")
    finally:
        app.close()


# -- a misbehaving provider -------------------------------------------------------------------

REFUSALS = {
    "wrong_nonce": ("nonce_mismatch", "nonce mismatch"),
    "no_nonce": ("nonce_mismatch", "nonce mismatch"),
    "wrong_audience": ("wrong_audience", "issued for another application"),
    "wrong_issuer": ("wrong_issuer", "issued by another provider"),
    "expired": ("token_expired", "The ID token has expired"),
    "email_unverified": ("email_unverified", "has not verified alice@example.com"),
    "alg_none": ("bad_algorithm", "signed with 'none'; MailFlow accepts only RS256 or ES256"),
    "hs256_public_key": ("bad_algorithm", "signed with 'HS256'; MailFlow accepts only RS256 or ES256"),
    "foreign_key": ("bad_signature", "signature is not valid"),
    "deny": ("provider_denied", "did not sign you in (access_denied)"),
}


def test_every_misbehaviour_is_covered():
    assert set(REFUSALS) | {"discovery_wrong_issuer", "thin_id_token"} == set(MISBEHAVIOURS)


@pytest.mark.parametrize("misbehaviour", sorted(REFUSALS))
def test_misbehaving_provider_is_refused(appliance, client, provider, misbehaviour):
    add_user(appliance, "alice@example.com", role="owner")
    provider.misbehave = {misbehaviour}
    reason, message = REFUSALS[misbehaviour]
    row = assert_refused(appliance, client, sign_in(client, provider), reason, message)
    assert row["metadata"]["issuer"] == provider.issuer
    assert audit_rows(appliance, "auth.login") == []


def test_provider_naming_another_issuer_is_refused_before_the_redirect(appliance, client, provider):
    provider.misbehave = {"discovery_wrong_issuer"}
    response = client.get("/login/oidc")
    assert_refused(appliance, client, response, "provider_misconfigured", "check oidc_issuer", status=502)
    assert provider.authorization_requests == []


def test_unreachable_provider_is_a_clear_message(appliance, client):
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    appliance.config = appliance.config.with_overrides(oidc_issuer=f"http://127.0.0.1:{port}")
    response = client.get("/login/oidc")
    assert_refused(appliance, client, response, "provider_unreachable", "could not be reached", status=502)


# -- TLS to the provider ----------------------------------------------------------------------

def test_https_provider_with_a_private_ca(root, tmp_path):
    from appliance.runtime import open_appliance
    from webui import create_app
    from webui.limits import limiter

    with OIDCProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, tls_dir=tmp_path / "tls") as idp:
        assert idp.issuer.startswith("https://127.0.0.1:")
        # without the CA: the certificate is not trusted, nothing is sent
        app = open_appliance(oidc_config(root, idp.issuer), create=True, env={})
        try:
            add_user(app, "alice@example.com")
            client = create_app(app).test_client()
            limiter.reset()
            assert_refused(app, client, client.get("/login/oidc"), "provider_unreachable",
                           "certificate is not trusted", status=502)
            assert idp.hits == []
            # with oidc_ca_file: verified, and the sign-in works
            oidc_provider.clear_cache()
            app.config = oidc_config(root, idp.issuer, oidc_ca_file=str(idp.ca_file))
            assert sign_in(client, idp).status_code == 302
            assert signed_in_email(client) == "alice@example.com"
        finally:
            app.close()


def test_tls_context_demands_verification_and_tls12():
    context = oidc_provider._tls_context(None)
    import ssl
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


# -- off by default ---------------------------------------------------------------------------

def test_oidc_off_means_404_and_no_button(appliance, client):
    appliance.config = appliance.config.with_overrides(oidc_issuer=None, oidc_client_id=None,
                                                       oidc_client_secret=None)
    assert client.get("/login/oidc").status_code == 404
    assert client.get("/login/oidc/callback?code=a&state=b").status_code == 404
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with" not in page and "/login/oidc" not in page


def test_the_default_configuration_has_oidc_off():
    config = load_config(os.devnull, env={})
    assert config.oidc_issuer is None and oidc.settings(config) is None


def test_button_on_the_login_page_when_configured(appliance, client):
    page = client.get("/login?next=/profile").get_data(as_text=True)
    assert "Sign in with SSO" in page and 'href="/login/oidc?next=/profile"' in page
    appliance.config = appliance.config.with_overrides(oidc_button_label="Acme Okta")
    assert "Sign in with Acme Okta" in client.get("/login").get_data(as_text=True)


# -- in a real browser, against the real server ----------------------------------------------

@pytest.mark.browser
def test_browser_signs_in_through_the_provider(tmp_path, provider, page):
    """`mailflow serve` with OIDC on, Chromium clicking the button: provider and back, under the CSP."""
    from .support.live_server import LiveServer

    secret_file = tmp_path / "oidc_client_secret"
    secret_file.write_text(CLIENT_SECRET)
    server = LiveServer(tmp_path, MAILFLOW_OIDC_ISSUER=provider.issuer, MAILFLOW_OIDC_CLIENT_ID=CLIENT_ID,
                        MAILFLOW_OIDC_CLIENT_SECRET_FILE=str(secret_file),
                        MAILFLOW_OIDC_ALLOWED_DOMAINS="example.com", MAILFLOW_OIDC_BUTTON_LABEL="Test IdP")
    server.start()
    try:
        provider.redirect_uris = {server.url + "/login/oidc/callback"}
        p = page.page
        p.goto(server.url + "/login")
        p.click("a:has-text('Sign in with Test IdP')")
        p.wait_for_url(server.url + "/")
        assert p.locator(".topbar-user").inner_text().startswith("alice@example.com")
        assert provider.last_authorization["scope"] == "openid email profile"
        assert page.problems == []
        assert CLIENT_SECRET not in server.output()
    finally:
        server.stop()


# -- the client secret stays secret -----------------------------------------------------------

def test_client_secret_is_never_logged_shown_or_stored(appliance, client, provider, caplog):
    caplog.set_level(logging.DEBUG)
    add_user(appliance, "alice@example.com")
    seen = []
    r = client.get("/login")
    seen.append(r.get_data(as_text=True) + str(r.headers))
    r = client.get("/login/oidc")
    seen.append(r.get_data(as_text=True) + str(r.headers))
    r = back_to_app(client, provider.authorize(r.headers["Location"]))
    seen.append(r.get_data(as_text=True) + str(r.headers))
    provider.misbehave = {"wrong_nonce"}
    r = sign_in(client, provider)
    seen.append(r.get_data(as_text=True) + str(r.headers))
    assert provider.token_requests[0]["error"] is None  # the secret was used, and right
    assert all(CLIENT_SECRET not in text for text in seen)
    assert CLIENT_SECRET not in caplog.text
    assert CLIENT_SECRET not in json.dumps(audit_rows(appliance))
    assert CLIENT_SECRET not in repr(oidc.settings(appliance.config))


def test_config_show_masks_the_client_secret(tmp_path, monkeypatch, provider):
    secret_file = tmp_path / "secret"
    secret_file.write_text(CLIENT_SECRET)
    env = {"MAILFLOW_OIDC_CLIENT_SECRET_FILE": str(secret_file), "MAILFLOW_OIDC_ISSUER": provider.issuer,
           "MAILFLOW_OIDC_CLIENT_ID": CLIENT_ID}
    monkeypatch.setattr(cli, "load_config", lambda f, flags: load_config(os.devnull, env=env, flags=flags))
    result = CliRunner().invoke(cli.main, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert CLIENT_SECRET not in result.output
    assert re.search(r"^oidc_client_secret\s+= \*+\s+\(env:MAILFLOW_OIDC_CLIENT_SECRET_FILE\)", result.output, re.M)
    assert re.search(r"^oidc_issuer\s+= http://127\.0\.0\.1:\d+", result.output, re.M)


# -- configuration ----------------------------------------------------------------------------

def load(env: dict) -> object:
    return load_config(os.devnull, env=env)


@pytest.fixture
def secret_env(tmp_path):
    path = tmp_path / "secret"
    path.write_text("s3cret")
    return {"MAILFLOW_OIDC_CLIENT_SECRET_FILE": str(path), "MAILFLOW_OIDC_CLIENT_ID": "id"}


def test_google_preset_fills_the_issuer(secret_env):
    config = load({**secret_env, "MAILFLOW_OIDC_PRESET": "google"})
    assert config.oidc_issuer == "https://accounts.google.com"
    assert config.sources["oidc_issuer"] == "preset:google"
    settings = oidc.settings(config)
    assert settings.label == "Google" and settings.redirect_uri == "http://127.0.0.1:8025/login/oidc/callback"
    assert settings.preset == "google"
    # Google's issuer named by hand gets Google's rules too
    config = load({**secret_env, "MAILFLOW_OIDC_ISSUER": "https://accounts.google.com",
                   "MAILFLOW_PUBLIC_URL": "https://mailflow.example.com"})
    assert oidc.settings(config).preset == "google"
    assert oidc.settings(config).redirect_uri == "https://mailflow.example.com/login/oidc/callback"


@pytest.mark.parametrize("env, problem", [
    ({"MAILFLOW_OIDC_ISSUER": "http://idp.example.com"}, "oidc_issuer (env:MAILFLOW_OIDC_ISSUER): must use https://"),
    ({"MAILFLOW_OIDC_ISSUER": "idp.example.com"}, "expected an https:// URL"),
    ({"MAILFLOW_OIDC_ISSUER": "https://idp.example.com/?x=1"}, "must not contain a query"),
    ({"MAILFLOW_OIDC_ISSUER": "https://idp.example.com", "MAILFLOW_OIDC_CLIENT_ID": ""},
     "oidc_client_id: required when OIDC sign-in is on"),
    ({"MAILFLOW_OIDC_PRESET": "google", "MAILFLOW_OIDC_ISSUER": "https://idp.example.com"},
     "the google preset uses https://accounts.google.com"),
    ({"MAILFLOW_OIDC_PRESET": "okta"}, "expected one of: generic, google"),
    ({"MAILFLOW_OIDC_ISSUER": "https://idp.example.com", "MAILFLOW_OIDC_ALLOWED_DOMAINS": "gmail.com"},
     "gmail.com is a public mail provider"),
    ({"MAILFLOW_OIDC_ISSUER": "https://idp.example.com", "MAILFLOW_OIDC_ALLOWED_DOMAINS": "*.example.com"},
     "expected domain names like example.com"),
    ({"MAILFLOW_OIDC_ISSUER": "https://idp.example.com", "MAILFLOW_PUBLIC_URL": "http://mailflow.example.com"},
     "public_url: must be https:// when OIDC sign-in is on"),
    ({"MAILFLOW_OIDC_ISSUER": "https://idp.example.com", "MAILFLOW_OIDC_CA_FILE": "/nonexistent/ca.pem"},
     "oidc_ca_file (env:MAILFLOW_OIDC_CA_FILE): cannot read /nonexistent/ca.pem"),
    ({"MAILFLOW_OIDC_ISSUER": "https://idp.example.com", "MAILFLOW_OIDC_BUTTON_LABEL": "x" * 41},
     "expected 1 to 40 printable characters"),
])
def test_bad_oidc_settings_get_one_clear_line(secret_env, env, problem):
    with pytest.raises(ConfigError) as err:
        load({**secret_env, **env})
    assert len(err.value.problems) == 1 and "\n" not in err.value.problems[0]
    assert problem in err.value.problems[0]


def test_client_secret_only_from_a_file(tmp_path):
    with pytest.raises(ConfigError, match="is secret: set MAILFLOW_OIDC_CLIENT_SECRET_FILE"):
        load({"MAILFLOW_OIDC_CLIENT_SECRET": "x", "MAILFLOW_OIDC_ISSUER": "https://idp.example.com"})
    with pytest.raises(ConfigError, match="oidc_client_secret: required when OIDC sign-in is on"):
        load({"MAILFLOW_OIDC_ISSUER": "https://idp.example.com", "MAILFLOW_OIDC_CLIENT_ID": "id"})
    (tmp_path / "mailflow.oidc_client_secret").write_text("from-credential")
    config = load({"CREDENTIALS_DIRECTORY": str(tmp_path), "MAILFLOW_OIDC_ISSUER": "https://idp.example.com",
                   "MAILFLOW_OIDC_CLIENT_ID": "id"})
    assert config.oidc_client_secret == "from-credential"


def test_an_empty_issuer_means_off():
    config = load({"MAILFLOW_OIDC_ISSUER": "", "MAILFLOW_OIDC_BUTTON_LABEL": ""})
    assert config.oidc_issuer is None and oidc.settings(config) is None


def test_oidc_settings_without_an_issuer_are_a_mistake(secret_env):
    with pytest.raises(ConfigError, match="set, but OIDC sign-in is off"):
        load(secret_env)


def test_allowed_domains_are_normalised(secret_env):
    config = load({**secret_env, "MAILFLOW_OIDC_ISSUER": "https://idp.example.com",
                   "MAILFLOW_OIDC_ALLOWED_DOMAINS": "@Example.com, sales.example.org example.com"})
    assert config.oidc_allowed_domains == ("example.com", "sales.example.org")


def test_loopback_http_issuer_is_allowed_for_tests_and_development(secret_env):
    for issuer in ("http://127.0.0.1:9999", "http://localhost:9999/realms/x", "http://[::1]:9999"):
        assert load({**secret_env, "MAILFLOW_OIDC_ISSUER": issuer}).oidc_issuer == issuer


# -- Google vouches only for its own addresses and Workspace domains --------------------------

def google_settings() -> oidc.Settings:
    return oidc.Settings(issuer="https://accounts.google.com", client_id="id", client_secret="s",
                         redirect_uri=CALLBACK, preset="google", allowed_domains=(), label="Google")


@pytest.mark.parametrize("claims, ok", [
    ({"email": "ann@gmail.com", "email_verified": True}, True),
    ({"email": "ann@acme.example", "email_verified": True, "hd": "acme.example"}, True),
    ({"email": "ann@acme.example", "email_verified": True}, False),
    ({"email": "ann@acme.example", "email_verified": True, "hd": "other.example"}, False),
    ({"email": "ann@gmail.com", "email_verified": False}, False),
])
def test_google_preset_requires_google_to_be_authoritative(claims, ok):
    identity = {"sub": "1", **claims}
    if ok:
        assert oidc._identity(google_settings(), {}, {}, identity)["email"] == claims["email"]
    else:
        with pytest.raises(oidc.OIDCFailed) as err:
            oidc._identity(google_settings(), {}, {}, identity)
        assert err.value.reason == "email_unverified"
