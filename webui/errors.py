"""Errors: JSON in the API's format on API paths, a plain page elsewhere; never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from appliance.logs import event
from appliance.services.errors import AuthenticationFailed, ServiceError

log = logging.getLogger("mailflow.web")


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def error_response(status: int, code: str, message: str, details: dict | None = None):
    if wants_json():
        body = {"error": {"code": code, "message": message, "details": details or {}}}
        return jsonify(body), status
    return render_template("error.html", status=status, message=message), status


def init_app(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        if isinstance(exc, AuthenticationFailed) and not wants_json():
            return redirect(url_for("ui_auth.login"))
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return error_response(400, "csrf_failed", f"CSRF check failed: {exc.description} "
                              "Reload the page and try again (API clients: send X-CSRFToken).")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        body, status = error_response(exc.code or 500, code, exc.description or exc.name)
        headers = {}
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
        if exc.code == 429 and getattr(exc, "retry_after", None):
            headers["Retry-After"] = str(exc.retry_after)
        return body, status, headers

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        event(log, "request.failed", level=logging.ERROR, exc_info=exc, path=request.path,
              method=request.method)
        return error_response(500, "internal_error", InternalServerError.description)
