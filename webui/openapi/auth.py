"""Sign-in, sessions, the caller, invitations and the first-run setup link."""

from __future__ import annotations

from appliance.services.authz import ROLES, SCOPES
from appliance.services.passwords import MAX_LENGTH, MIN_LENGTH

from .common import EMAIL, ID, TIME, TIME_OR_NULL, array, enum, json_body, obj, ok, operation, ref, string

TAG = "auth"
PASSWORD = string(MAX_LENGTH, minLength=MIN_LENGTH, description=f"{MIN_LENGTH} to {MAX_LENGTH} characters.")
TOKEN_PATH = {"name": "token", "in": "path", "required": True, "description": "The token of the link.",
              "schema": string(200)}
SESSION_STARTED = ("Signed in: the session cookie is set, and the body holds the same session as a Bearer "
                   "`token` plus the `csrf_token` cookie calls send as X-CSRFToken.")

SCHEMAS = {
    "User": obj({
        "id": ID, "email": string(), "name": string(),
        "role": enum(ROLES), "status": enum(("active", "invited", "disabled")),
        "has_password": {"type": "boolean"}, "created_at": TIME, "last_login_at": TIME_OR_NULL,
    }, ["id", "email", "name", "role", "status", "has_password", "created_at", "last_login_at"]),
    "Me": {"allOf": [ref("User"), obj({"auth": obj({
        "via": enum(("session", "api_key")), "scopes": array(enum(SCOPES))}, ["via", "scopes"])}, ["auth"])]},
    "Session": obj({
        "token": string(description="A session JWT, usable as a Bearer token."),
        "user": ref("User"), "csrf_token": string(), "expires_at": {"type": "integer", "description": "Unix time."},
    }, ["token", "user", "csrf_token", "expires_at"]),
    "Status": obj({"status": string()}, ["status"]),
}

PATHS = {
    "/api/v1/auth/login": {"post": operation(
        "login", "Sign in with email and password", tag=TAG, scope="none", role=None,
        description="Failed attempts are limited per address and per account (429 with Retry-After).",
        body=json_body(obj({"email": string(), "password": string()}, ["email", "password"])),
        responses={200: ok(ref("Session"), SESSION_STARTED)}, errors=(401,))},
    "/api/v1/auth/logout": {"post": operation(
        "logout", "End this session token", tag=TAG, scope="read", role="viewer",
        description="Ends the session the call was made with (cookie or Bearer JWT). With an API key it "
                    "changes nothing, so a read key may call it.",
        responses={200: ok(ref("Status"))})},
    "/api/v1/auth/password": {"post": operation(
        "change_password", "Change the caller's password", tag=TAG, scope="write", role="viewer",
        description="Every earlier session of the user stops working; the response carries a fresh token "
                    "(and cookie) for the caller.",
        body=json_body(obj({"current_password": string(), "new_password": PASSWORD},
                           ["current_password", "new_password"])),
        responses={200: ok(obj({"status": string(), "token": string()}, ["status", "token"]))})},
    "/api/v1/auth/sign-out-everywhere": {"post": operation(
        "sign_out_everywhere", "End every session of the caller", tag=TAG, scope="write", role="viewer",
        responses={200: ok(ref("Status"))})},
    "/api/v1/me": {"get": operation(
        "me", "The caller, and how it authenticated", tag=TAG, scope="read", role="viewer",
        responses={200: ok(ref("Me"))})},
    "/api/v1/invites/{token}": {"get": operation(
        "invite_state", "Who an invitation link is for", tag=TAG, scope="none", role=None,
        parameters=[TOKEN_PATH], responses={200: ok(ref("User"))}, errors=(410,))},
    "/api/v1/invites/{token}/accept": {"post": operation(
        "accept_invite", "Accept an invitation: set a password and sign in", tag=TAG, scope="none", role=None,
        parameters=[TOKEN_PATH],
        body=json_body(obj({"password": PASSWORD, "name": string(200)}, ["password"])),
        responses={200: ok(ref("Session"), SESSION_STARTED)}, errors=(410,))},
    "/api/v1/setup/{token}": {"post": operation(
        "create_owner", "First run: create the owner with the one-time setup link", tag=TAG, scope="none",
        role=None, description="The link `mailflow serve` prints while no owner exists; it works once.",
        parameters=[TOKEN_PATH],
        body=json_body(obj({"email": EMAIL, "name": string(200), "password": PASSWORD}, ["email", "password"])),
        responses={201: ok(ref("Session"), SESSION_STARTED)}, errors=(410,))},
}
