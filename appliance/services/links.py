"""Signed links in emails: one-click unsubscribe tokens naming a lead and a campaign.

The token is `<lead>.<campaign>.<HMAC-SHA256 over both, with the tokens sub-key>`, base64url:
it needs no database row, cannot be forged or altered, and using it twice is harmless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from functools import lru_cache

TAG_BYTES = 16


@lru_cache(maxsize=4)
def _keyed(key: bytes) -> hmac.HMAC:
    """The HMAC state after the key (a copy per token is half the work of a fresh HMAC)."""
    return hmac.new(key, b"unsubscribe:", hashlib.sha256)


def _mac(key: bytes, payload: bytes) -> bytes:
    mac = _keyed(key).copy()
    mac.update(payload)
    return mac.digest()[:TAG_BYTES]


def unsubscribe_token(key: bytes, lead_id: int, campaign_id: int) -> str:
    payload = struct.pack(">QQ", lead_id, campaign_id)
    return base64.urlsafe_b64encode(payload + _mac(key, payload)).decode().rstrip("=")


def read_unsubscribe_token(key: bytes, token: str) -> tuple[int, int] | None:
    """(lead_id, campaign_id) for a genuine token, None for anything else."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) != 16 + TAG_BYTES:
        return None
    payload, tag = raw[:16], raw[16:]
    if not hmac.compare_digest(tag, _mac(key, payload)):
        return None
    return struct.unpack(">QQ", payload)


def unsubscribe_url(base_url: str, key: bytes, lead_id: int, campaign_id: int) -> str:
    return f"{base_url.rstrip('/')}/u/{unsubscribe_token(key, lead_id, campaign_id)}"


def unsubscribe_address(mailbox_email: str) -> str:
    """The List-Unsubscribe mailto: address of a mailbox (plus-addressing delivers it to the
    mailbox's own INBOX)."""
    local, _, domain = mailbox_email.partition("@")
    return f"{local}+unsubscribe@{domain}".lower()
