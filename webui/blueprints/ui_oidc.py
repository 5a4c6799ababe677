"""Sign-in with OpenID Connect (optional; off unless oidc_issuer or the google preset is set).

GET /login/oidc           remember state, nonce and PKCE verifier in the signed session cookie,
                          then redirect to the provider
GET /login/oidc/callback  the provider's redirect back: check state, let the service redeem the
                          code and verify the ID token, then start a session like a password sign-in

The rules live in appliance.services.oidc; refusals come back to the sign-in page with a message.
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, session

from appliance.services import oidc

from ..auth import client_ip
from ..context import appliance
from ..limits import auth_limits
from .ui_auth import safe_next, signed_in_redirect

bp = Blueprint("ui_oidc", __name__)
SESSION_KEY = "oidc_pending"
PROVIDER_TROUBLE = {"provider_unreachable", "provider_error", "provider_misconfigured"}


def _settings() -> oidc.Settings:
    settings = oidc.settings(appliance().config)
    if settings is None:
        abort(404)
    return settings


def _refused(exc: oidc.OIDCFailed):
    status = 502 if exc.reason in PROVIDER_TROUBLE else 401
    return render_template("login.html", form={"email": exc.email or ""}, error=exc.message), status


@bp.app_context_processor
def oidc_button() -> dict:
    """The sign-in page shows "Sign in with <label>" only when OIDC sign-in is configured."""
    settings = oidc.settings(appliance().config)
    return {"oidc_label": settings.label if settings else None}


@bp.get("/login/oidc")
@auth_limits
def start():
    settings = _settings()
    try:
        url, pending = oidc.begin(settings, safe_next(request.args.get("next")))
    except oidc.OIDCFailed as exc:
        oidc.record_failure(appliance().db, settings, exc, client_ip())
        return _refused(exc)
    session[SESSION_KEY] = oidc.remember(session.get(SESSION_KEY), pending)
    return redirect(url, code=302)


@bp.get("/login/oidc/callback")
@auth_limits
def callback():
    settings = _settings()
    stored, state = session.get(SESSION_KEY), request.args.get("state")
    remaining = oidc.forget(stored, state)  # each state works once, whatever happens next
    if remaining:
        session[SESSION_KEY] = remaining
    else:
        session.pop(SESSION_KEY, None)
    try:
        user, pending = oidc.finish(appliance().db, settings, stored, state=state, code=request.args.get("code"),
                                    error=request.args.get("error"), ip=client_ip())
    except oidc.OIDCFailed as exc:
        return _refused(exc)
    return signed_in_redirect(user, safe_next(pending.next))
