"""Who is calling: the session cookie or a Bearer token (session JWT or API key), CSRF, and
the decorators routes use to demand a role or an API-key scope.

Rules (tested by walking every route):
- Bearer-authenticated calls carry no ambient authority, so they need no CSRF token.
- Every other state-changing request needs a CSRF token (form field or X-CSRFToken
  header), except the few views marked `csrf.exempt` (public one-click unsubscribe, the
  JSON login endpoint, which demands application/json and so cannot be sent by a
  cross-site form).
"""

from __future__ import annotations

import functools
import math
import time

from flask import Flask, g, redirect, request, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from limits import parse_many
from werkzeug.exceptions import TooManyRequests

from appliance.services import api_keys, sessions
from appliance.services.authz import Principal
from appliance.services.errors import AuthenticationFailed

from .context import appliance
from .limits import AUTH, limiter

COOKIE = "mf_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
csrf = CSRFProtect()

class PerRequestSecureSessions(SecureCookieSessionInterface):
    """Flask's session cookie (it holds the CSRF secret) gets Secure whenever the request came
    over HTTPS, decided per request, so `make run` on plain loopback HTTP still works."""

    def get_cookie_secure(self, app):
        return request.is_secure


def init_app(app: Flask) -> None:
    app.session_interface = PerRequestSecureSessions()
    app.config.update(
        SESSION_COOKIE_NAME="mf_csrf",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in authenticate() below, after Bearer detection
        WTF_CSRF_TIME_LIMIT=None,      # valid as long as the session that holds its secret
        WTF_CSRF_HEADERS=["X-CSRFToken", "X-CSRF-Token"],
    )
    csrf.init_app(app)
    app.before_request(authenticate)
    app.after_request(refresh_session_cookie)


def client_ip() -> str | None:
    return request.remote_addr


def authenticate() -> None:
    g.principal = None
    g.session_cookie_bad = False
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        g.principal = bearer_principal(header[7:].strip())
        return
    token = request.cookies.get(COOKIE)
    if token:
        try:
            g.principal = sessions.authenticate(appliance().db, appliance().keys.sessions, token, client_ip())
        except AuthenticationFailed:
            g.session_cookie_bad = True
    if request.method not in SAFE_METHODS:
        if request.path.startswith("/api/") and not token:
            # No cookie, no Bearer: the call carries no ambient authority for a forged request
            # to abuse, so it goes on to its route, which answers 401 (not a CSRF error).
            return
        csrf.protect(apply_exemptions=True)


API_KEY_FAILURES = parse_many(AUTH)  # failed API-key authentications per IP: 5/minute, 20/hour


def bearer_principal(token: str) -> Principal:
    if token.startswith("mf_"):
        return api_key_principal(token)
    return sessions.authenticate(appliance().db, appliance().keys.sessions, token, client_ip())


def api_key_principal(token: str) -> Principal:
    """An API key, with failed attempts limited per IP (in the limiter's storage).

    Only failures count (unknown prefix, wrong secret, revoked key, disabled user), so a busy
    integration never limits itself. Once an IP has spent its failure budget, keys from it are
    refused with 429 *before* any bcrypt check until the window passes: verifying them would
    keep the guessing oracle open, so even a valid key that is not in the verified-key cache
    gets 429. A key verified within the cache's lifetime is still served (it was proven
    already and costs no bcrypt, so it tells a guesser nothing), which keeps a working
    integration behind the same address running through a short burst of someone's failures.
    """
    db, ip = appliance().db, client_ip()
    ident = ip or "unknown"
    if limiter.enabled:
        spent = [item for item in API_KEY_FAILURES if not limiter.limiter.test(item, "apikey-fail", ident)]
        if spent:
            principal = api_keys.cached_principal(db, token, ip)
            if principal is not None:
                return principal
            reset = max(limiter.limiter.get_window_stats(item, "apikey-fail", ident).reset_time for item in spent)
            raise TooManyRequests("Too many failed API-key attempts from this address. Try again later.",
                                  retry_after=max(1, math.ceil(reset - time.time())))
    try:
        return api_keys.authenticate(db, token, ip)
    except AuthenticationFailed:
        if limiter.enabled:
            for item in API_KEY_FAILURES:
                limiter.limiter.hit(item, "apikey-fail", ident)
        raise


def set_session_cookie(response, token: str, claims: dict) -> None:
    response.set_cookie(COOKIE, token, max_age=claims["exp"] - claims["iat"], httponly=True,
                        secure=request.is_secure, samesite="Lax", path="/")


def clear_session_cookie(response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, secure=request.is_secure, samesite="Lax")


def refresh_session_cookie(response):
    """Sliding idle expiry: a cookie session in use gets a fresh token every few minutes,
    never past the absolute limit counted from sign-in."""
    principal: Principal | None = g.get("principal")
    if g.get("session_cookie_bad") and principal is None:
        clear_session_cookie(response)
    elif (principal is not None and principal.session is not None and request.cookies.get(COOKIE)
          and not g.get("session_replaced") and sessions.needs_refresh(principal.session)):
        config = appliance().config
        user = {"id": principal.user_id, "token_version": principal.session["ver"]}
        token, claims = sessions.issue(appliance().keys.sessions, user,
                                       idle_minutes=config.session_idle_minutes,
                                       max_hours=config.session_max_hours,
                                       auth_time=principal.session["auth_time"])
        if claims["exp"] > principal.session["exp"]:
            set_session_cookie(response, token, claims)
    return response


def current() -> Principal | None:
    return g.get("principal")


def require(role: str = "viewer", scope: str | None = None):
    """Demand a signed-in caller with at least `role`; API keys also need `scope`
    (default: read for safe methods, write otherwise)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            principal = current()
            if principal is None:
                if request.path.startswith("/api/"):
                    raise AuthenticationFailed("Sign in or send an API key.", code="unauthenticated")
                return redirect(url_for("ui_auth.login", next=request.full_path.rstrip("?")))
            needed = scope or ("read" if request.method in SAFE_METHODS else "write")
            principal.require(role, needed)
            return view(*args, **kwargs)

        wrapper.required_role = role  # read by the route-walking tests
        return wrapper

    return decorate
