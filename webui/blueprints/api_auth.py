"""/api/v1/auth/* and /api/v1/me: sign-in, sign-out, password."""

from __future__ import annotations

from flask import Blueprint, g, jsonify
from flask_wtf.csrf import generate_csrf

from appliance.services import sessions, users

from ..api_common import json_body, text_field
from ..auth import client_ip, csrf, current, require, set_session_cookie, clear_session_cookie
from ..context import appliance
from ..limits import auth_limits

bp = Blueprint("api_auth", __name__, url_prefix="/api/v1")


def start_session(user: dict):
    """Issue a session token for `user`; returns the (token, claims) pair."""
    config = appliance().config
    return sessions.issue(appliance().keys.sessions, user, idle_minutes=config.session_idle_minutes,
                          max_hours=config.session_max_hours)


@bp.post("/auth/login")
@csrf.exempt  # JSON only (json_body), so no cross-site form can send it; see webui/auth.py
@auth_limits
def login():
    body = json_body()
    user = users.authenticate(appliance().db, text_field(body, "email"), text_field(body, "password"),
                              client_ip())
    token, claims = start_session(user)
    g.session_replaced = True
    response = jsonify({"token": token, "user": users.public(user), "csrf_token": generate_csrf(),
                        "expires_at": claims["exp"]})
    set_session_cookie(response, token, claims)
    return response


@bp.post("/auth/logout")
@require("viewer", scope="read")
def logout():
    users.logout(appliance().db, current())
    response = jsonify({"status": "signed_out"})
    clear_session_cookie(response)
    return response


@bp.post("/auth/password")
@require("viewer", scope="read")
@auth_limits
def change_password():
    body = json_body()
    users.change_password(appliance().db, current(), current_password=text_field(body, "current_password"),
                          new_password=text_field(body, "new_password"), cost=appliance().config.bcrypt_cost)
    # the caller's own session continues with a fresh token; every other token is dead
    user = users.user_row(appliance().db, current().user_id)
    token, claims = start_session(user)
    g.session_replaced = True
    response = jsonify({"status": "password_changed", "token": token})
    set_session_cookie(response, token, claims)
    return response


@bp.post("/auth/sign-out-everywhere")
@require("viewer", scope="read")
def sign_out_everywhere():
    users.sign_out_everywhere(appliance().db, current())
    response = jsonify({"status": "signed_out_everywhere"})
    clear_session_cookie(response)
    return response


@bp.get("/me")
@require("viewer")
def me():
    principal = current()
    body = users.get(appliance().db, principal.user_id)
    body["auth"] = {"via": principal.via, "scopes": sorted(principal.scopes)}
    return jsonify(body)
