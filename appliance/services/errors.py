"""Errors services raise; the web layer maps each to an HTTP status and the API error format."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class ValidationError(ServiceError):
    """Bad input. `fields` maps a field name to its message, shown next to the field."""

    status = 400
    code = "validation_failed"

    def __init__(self, fields: dict[str, str], message: str = "Some fields need attention."):
        super().__init__(message, details={"fields": fields})
        self.fields = fields


class AuthenticationFailed(ServiceError):
    status = 401
    code = "unauthenticated"


class PermissionDenied(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class Unprocessable(ServiceError):
    """Well-formed, but not something that can be done (an empty reply, a failed launch check)."""
    status = 422
    code = "unprocessable"


class Gone(ServiceError):
    status = 410
    code = "gone"
