"""The OpenAPI 3.1 document of MailFlow's HTTP API, assembled once at import time.

One module per area holds that area's `PATHS` (path items, operations described with
common.operation()) and `SCHEMAS` (component schemas). To describe a new route, add its operation
to its area's module (or a new module listed in AREAS); tests/test_openapi.py fails for a route
without a description and for a description without a route.

Every operation carries `x-mailflow-scope` (the API-key scope it needs: read, write, admin, or none
for public routes) and `x-mailflow-role` (the least role of the user); tests/test_api_scopes.py
checks both against the running app.
"""

from __future__ import annotations

from copy import deepcopy

from . import auth, campaigns, leads, mailboxes, messages, suppressions, system, users
from . import replies, webhooks
from .common import SECURITY_SCHEMES, components_responses, error_schema, finish

AREAS = (auth, users, system, mailboxes, leads, suppressions, campaigns, messages, replies, webhooks)
VERSION = "1"
DESCRIPTION = """\
JSON in and out under `/api/v1`. Authenticate with `Authorization: Bearer <token>` (an API key
`mf_<prefix>_<secret>`, or the session token of POST /api/v1/auth/login), or with the session cookie
plus an `X-CSRFToken` header on state-changing calls. Errors are
`{"error": {"code", "message", "details"}}`. Lists take `?limit=` (1 to 500, default 50) and `?cursor=`
and answer `{"items": [...], "next_cursor": ... | null}`. Each operation's `x-mailflow-scope` is the
API-key scope it needs and `x-mailflow-role` the least role of the user behind the call."""


def build() -> dict:
    paths: dict[str, dict] = {}
    schemas: dict[str, dict] = {"Error": error_schema()}
    for area in AREAS:
        for name, schema in area.SCHEMAS.items():
            if name in schemas:
                raise ValueError(f"schema {name} is described twice ({area.__name__})")
            schemas[name] = schema
        for path, item in area.PATHS.items():
            target = paths.setdefault(path, {})
            for method, op in item.items():
                if method in target:
                    raise ValueError(f"{method.upper()} {path} is described twice ({area.__name__})")
                target[method] = finish(path, method, op)
    tags = sorted({tag for item in paths.values() for op in item.values() for tag in op["tags"]})
    return {
        "openapi": "3.1.0",
        "info": {"title": "MailFlow API", "version": VERSION, "description": DESCRIPTION,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "servers": [{"url": "/", "description": "This appliance"}],
        "tags": [{"name": tag} for tag in tags],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas, "responses": components_responses(),
                       "securitySchemes": SECURITY_SCHEMES},
    }


SPEC = build()


def document() -> dict:
    """A copy of the document (callers may not change the shared one)."""
    return deepcopy(SPEC)
