"""X-MailFlow-Signature: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.

The key is the webhook's secret (the whole `whsec_...` text, UTF-8). During a rotation's grace
period the header carries one `v1=` per valid secret, newest first, so a receiver that still
knows only the old secret keeps verifying. `verify` is what a receiver runs (docs/webhooks.md
shows the same in a few lines): constant-time comparison, and a timestamp no older than five
minutes so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "X-MailFlow-Signature"
TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header(secrets_newest_first: list[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}"] + [f"v1={signature(s, timestamp, body)}" for s in secrets_newest_first])


def parse(value: str) -> tuple[int | None, list[str]]:
    timestamp, found = None, []
    for part in value.split(","):
        name, _, text = part.strip().partition("=")
        if name == "t" and text.isascii() and text.isdigit():
            timestamp = int(text)
        elif name == "v1" and text:
            found.append(text)
    return timestamp, found


def verify(secret: str, header_value: str, body: bytes, *, tolerance: int = TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """True when one v1 signature matches `secret` over the raw body and the timestamp is
    within `tolerance` seconds of now."""
    timestamp, candidates = parse(header_value or "")
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    # compare against every candidate (no early exit), each in constant time
    matches = [hmac.compare_digest(expected, c) for c in candidates]
    return any(matches)
