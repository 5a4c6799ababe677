"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of this API (webui/openapi/).

Public, like the API reference in docs/api.md: it describes routes and holds no secret, and
clients fetch it before they have credentials."""

from __future__ import annotations

import json

from flask import Blueprint, Response

from ..openapi import SPEC

bp = Blueprint("api_openapi", __name__, url_prefix="/api/v1")
BODY = json.dumps(SPEC, ensure_ascii=False, separators=(",", ":"))  # serialised once


@bp.get("/openapi.json")
def openapi():
    return Response(BODY, mimetype="application/json")
