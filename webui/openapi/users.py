"""People (admins manage them) and API keys."""

from __future__ import annotations

from appliance.services.authz import ROLES, SCOPES

from .common import (EMAIL, ID, LIST_PARAMS, NO_CONTENT, TIME, TIME_OR_NULL, array, enum, json_body, obj, ok,
                     operation, page_of, path_id, ref, string)

ASSIGNABLE = [r for r in ROLES if r != "owner"]
USER_ID = path_id("user_id", "user")
KEY_ID = path_id("key_id", "API key")

SCHEMAS = {
    "InvitedUser": {"allOf": [ref("User"), obj({"invite_url": string(format="uri", description=(
        "The one-time link to hand to the person (no email is sent)."))}, ["invite_url"])]},
    "ApiKey": obj({
        "id": ID, "name": string(), "prefix": string(), "scopes": array(enum(SCOPES)), "user_id": ID,
        "user_email": string(description="Whose key (in lists)."),
        "created_at": TIME, "last_used_at": TIME_OR_NULL, "revoked_at": TIME_OR_NULL,
    }, ["id", "name", "prefix", "scopes", "user_id", "created_at", "last_used_at", "revoked_at"]),
    "NewApiKey": {"allOf": [ref("ApiKey"), obj({"key": string(pattern="^mf_[a-z0-9]{8}_", description=(
        "The whole key: shown in this response only, never again."))}, ["key"])]},
}

PATHS = {
    "/api/v1/users": {
        "get": operation("list_users", "List users", tag="users", scope="admin", role="admin",
                         parameters=LIST_PARAMS, responses={200: ok(page_of(ref("User")))}),
        "post": operation(
            "invite_user", "Invite a person", tag="users", scope="admin", role="admin",
            description="Creates the user as `invited` and returns a one-time `invite_url`. Admins invite "
                        "members and viewers; the owner also admins.",
            body=json_body(obj({"email": EMAIL, "role": enum(ASSIGNABLE, default="member"), "name": string(200)},
                               ["email"])),
            responses={201: ok(ref("InvitedUser"), "Invited.")}, errors=(409,)),
    },
    "/api/v1/users/{user_id}": {
        "patch": operation(
            "update_user", "Change a user's role, status or name", tag="users", scope="admin", role="admin",
            description="A role or status change ends the user's sessions at once. Nobody changes "
                        "the owner, nor their own role or status.",
            parameters=[USER_ID],
            body=json_body(obj({"role": enum(ASSIGNABLE), "status": enum(("active", "disabled")),
                                "name": string(200)})),
            responses={200: ok(ref("User"))}),
        "delete": operation("delete_user", "Delete a user", tag="users", scope="admin", role="admin",
                            parameters=[USER_ID], responses={204: NO_CONTENT}),
    },
    "/api/v1/api-keys": {
        "get": operation("list_api_keys", "List API keys", tag="api-keys", scope="read", role="viewer",
                         description="Admins see everyone's keys, others their own.",
                         parameters=LIST_PARAMS, responses={200: ok(page_of(ref("ApiKey")))}),
        "post": operation(
            "create_api_key", "Create an API key", tag="api-keys", scope="admin", role="viewer",
            description="Anyone signed in may create keys with the scopes their role allows (read: "
                        "everyone, write: members, admin: admins). Through an API key this needs its "
                        "`admin` scope, so a key cannot mint a stronger one.",
            body=json_body(obj({"name": string(100, minLength=1),
                                "scopes": array(enum(SCOPES), default=["read"])}, ["name"])),
            responses={201: ok(ref("NewApiKey"), "Created; `key` is shown this once.")}),
    },
    "/api/v1/api-keys/{key_id}": {
        "delete": operation("revoke_api_key", "Revoke an API key", tag="api-keys", scope="write", role="viewer",
                            description="Your own keys; admins (with an admin-scoped key) anyone's.",
                            parameters=[KEY_ID], responses={204: NO_CONTENT}),
    },
}
