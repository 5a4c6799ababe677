"""First run: a one-time link that lets the first (owner) account be created."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone
from enum import Enum

from ..db import Database
from ..db import settings_repo, setup_tokens_repo
from ..db.timefmt import from_iso, to_iso

SETUP_DONE = "setup.completed_at"


class TokenState(Enum):
    VALID = "valid"
    EXPIRED = "expired"
    USED = "used"
    UNKNOWN = "unknown"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_setup_complete(db: Database) -> bool:
    return settings_repo.get(db.connection(), SETUP_DONE) is not None


def issue_setup_link(db: Database, public_url: str, ttl_seconds: int,
                     now: datetime | None = None) -> str | None:
    """A fresh link while no owner exists (None once setup is done); earlier links stop working."""
    now = now or datetime.now(timezone.utc)
    token = secrets.token_urlsafe(32)
    with db.transaction() as conn:
        if settings_repo.get(conn, SETUP_DONE) is not None:
            return None
        setup_tokens_repo.replace_all(conn, _hash(token), to_iso(now),
                                      to_iso(now + timedelta(seconds=ttl_seconds)))
    return f"{public_url}/setup/{token}"


def check_setup_token(db: Database, token: str, now: datetime | None = None) -> TokenState:
    now = now or datetime.now(timezone.utc)
    row = setup_tokens_repo.find(db.connection(), _hash(token))
    if row is None:
        return TokenState.UNKNOWN
    if row["used_at"] is not None:
        return TokenState.USED
    if from_iso(row["expires_at"]) <= now:
        return TokenState.EXPIRED
    return TokenState.VALID


def purge_expired_setup_tokens(db: Database, now: datetime | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    with db.transaction() as conn:
        return setup_tokens_repo.delete_expired(conn, to_iso(now))
