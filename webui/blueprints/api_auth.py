"""/api/v1/auth/* and /api/v1/me: sign-in, sign-out, password; /api/v1/invites and /api/v1/setup:
accepting an invitation and the first-run owner account (public: the link's token is the authority)."""

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


def signed_in(user: dict, status: int = 200):
    """The response of a sign-in: the session as a cookie and as a Bearer token, with the CSRF
    token cookie calls need."""
    token, claims = start_session(user)
    g.session_replaced = True
    response = jsonify({"token": token, "user": users.public(user), "csrf_token": generate_csrf(),
                        "expires_at": claims["exp"]})
    response.status_code = status
    set_session_cookie(response, token, claims)
    return response


@bp.post("/auth/login")
@csrf.exempt  # JSON only (json_body), so no cross-site form can send it; see webui/auth.py
@auth_limits
def login():
    body = json_body()
    user = users.authenticate(appliance().db, text_field(body, "email"), text_field(body, "password"),
                              client_ip())
    return signed_in(user)


@bp.post("/auth/logout")
@require("viewer", scope="read")
def logout():
    users.logout(appliance().db, current())
    response = jsonify({"status": "signed_out"})
    clear_session_cookie(response)
    return response


@bp.post("/auth/password")
@require("viewer", scope="write")
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
@require("viewer", scope="write")
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


@bp.get("/invites/<token>")
@auth_limits
def invite_state(token: str):
    """Who the invitation is for (404 unknown, 410 used or expired)."""
    return jsonify(users.invite_state(appliance().db, token))


@bp.post("/invites/<token>/accept")
@auth_limits
def accept_invite(token: str):
    """The invitation page's form as JSON: set the password (and name) and sign in."""
    body = json_body()
    user = users.accept_invite(appliance().db, token, password=text_field(body, "password"),
                               name=text_field(body, "name", required=False), ip=client_ip(),
                               cost=appliance().config.bcrypt_cost)
    return signed_in(users.user_row(appliance().db, user["id"]))


@bp.post("/setup/<token>")
@auth_limits
def create_owner(token: str):
    """The first-run setup link's form as JSON: create the owner and sign in."""
    body = json_body()
    user = users.create_owner_with_setup_token(
        appliance().db, token, email=text_field(body, "email"), name=text_field(body, "name", required=False),
        password=text_field(body, "password"), ip=client_ip(), cost=appliance().config.bcrypt_cost)
    return signed_in(users.user_row(appliance().db, user["id"]), 201)
