"""Shared pieces of the JSON API: body parsing, pagination, list responses."""

from __future__ import annotations

from flask import jsonify, request
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from appliance.services.errors import ServiceError, ValidationError
from appliance.services.ids import MAX_ID

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: a whole number that fits an id; a larger one is 404 instead of
    an overflow in the database. (Werkzeug's own `max` would turn it into a 405 on routes whose
    path also has a rule for other methods.)"""

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        if number > MAX_ID:
            raise NotFound()
        return number


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"


def json_body() -> dict:
    """The request's JSON object. Demanding application/json is also what makes the JSON
    endpoints unreachable from a cross-site HTML form."""
    if not request.is_json:
        raise UnsupportedMediaType("Send a JSON body with Content-Type: application/json.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError({"body": "Expected a JSON object."}, "The request body is not a JSON object.")
    return body


def text_field(body: dict, name: str, *, required: bool = True, default: str = "") -> str:
    value = body.get(name, None)
    if value is None:
        if required:
            raise ValidationError({name: "This field is required."})
        return default
    if not isinstance(value, str):
        raise ValidationError({name: "Expected a string."})
    return value


def page_args() -> tuple[int, int]:
    """(limit, cursor): ?limit= (default 50, max 500) and ?cursor= (an opaque id)."""
    try:
        limit = int(request.args.get("limit", DEFAULT_LIMIT))
        cursor = int(request.args.get("cursor") or 0)
    except ValueError:
        raise ValidationError({"limit": "limit and cursor must be whole numbers."}) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError({"limit": f"limit must be between 1 and {MAX_LIMIT}."})
    if not 0 <= cursor <= MAX_ID:
        raise ValidationError({"cursor": "Invalid cursor."})
    return limit, cursor


def page(items: list[dict], limit: int, cursor_of=lambda item: item["id"]):
    next_cursor = str(cursor_of(items[-1])) if len(items) == limit else None
    return jsonify({"items": items, "next_cursor": next_cursor})
