"""Rate limits (flask-limiter, in-process storage): per IP on everything, per user for
signed-in callers, and much tighter on sign-in, setup, password changes and bad API keys.

The client IP is the one TrustedProxyMiddleware settled on: X-Forwarded-For counts only
from configured proxies, so a spoofed header cannot reset a limit.
"""

from __future__ import annotations

import time

from flask import Flask, g, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import parse_many
from werkzeug.exceptions import HTTPException

from .errors import error_response

PER_IP = "600 per minute"
PER_USER = "300 per minute"
AUTH = "5 per minute;20 per hour"


def ip_key() -> str:
    return "ip:" + (request.remote_addr or "unknown")


def account_key() -> str:
    """Sign-in attempts count against the account named in the body, whoever sends them."""
    body = request.get_json(silent=True) if request.is_json else request.form
    email = (body or {}).get("email") if hasattr(body, "get") else None
    return "account:" + (str(email).strip().lower() if email else ip_key())


def user_key() -> str:
    principal = g.get("principal")
    return f"user:{principal.user_id}" if principal is not None else ip_key()


# headers_enabled stays off: it would put Retry-After on every 200 response; 429s get theirs below.
limiter = Limiter(ip_key, application_limits=[PER_IP], headers_enabled=False, storage_uri="memory://",
                  strategy="fixed-window")

# Applied to auth endpoints: per IP and per account. Only failures count (deduct_when), so a
# team signing in from one office address is not locked out by its own successful logins.
_failed = lambda response: response.status_code in (400, 401, 403, 404, 410)  # noqa: E731
auth_limits_ip = limiter.limit(AUTH, key_func=ip_key, deduct_when=_failed, scope="auth-ip")
auth_limits_account = limiter.limit(AUTH, key_func=account_key, deduct_when=_failed, scope="auth-account")


def auth_limits(view):
    return auth_limits_ip(auth_limits_account(view))


class TooManyRequests(HTTPException):
    code = 429
    description = "Too many requests. Slow down and try again later."

    def __init__(self, retry_after: int):
        super().__init__()
        self.retry_after = max(1, retry_after)


def hit_or_raise(limit: str, namespace: str, key: str) -> None:
    """Count one request against `limit` for `key`; raise 429 (with Retry-After) when spent.
    Uses the limiter's own storage, so every limit lives in one place."""
    if not limiter.enabled:
        return
    for item in parse_many(limit):
        if not limiter.limiter.hit(item, namespace, key):
            reset = limiter.limiter.get_window_stats(item, namespace, key).reset_time
            raise TooManyRequests(int(reset - time.time()) + 1)


def init_app(app: Flask) -> None:
    limiter.init_app(app)

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(exc: RateLimitExceeded):
        current = limiter.current_limit
        retry_after = max(1, int(current.reset_at - time.time()) + 1) if current is not None else 60
        body, status = error_response(429, "too_many_requests", TooManyRequests.description)
        return body, status, {"Retry-After": str(retry_after)}

    @app.before_request
    def per_user_limit():
        # registered after webui.auth's before_request, so the caller is known here
        principal = g.get("principal")
        if principal is not None:
            hit_or_raise(PER_USER, "user", str(principal.user_id))
