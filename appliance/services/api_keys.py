"""API keys: `mf_<8-char prefix>_<secret>`. Only the prefix is stored in plaintext (to find
the row); the whole key is bcrypt-hashed (cost 12) and shown once, at creation.

bcrypt at cost 12 takes ~0.25 s, so a verified key is remembered in memory for a short
while, keyed by a SHA-256 of the full key (never the key itself): a burst of API calls pays
for one bcrypt. The key's row (revoked? owner disabled? owner's role?) is still read on
every call, so revoking a key or disabling its user takes effect at once, cached or not.

`last_used_at` is written at most once a minute per key (decided from the row read anyway),
so a busy integration does not turn every read into a database write.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
import threading
import time
from datetime import datetime, timezone

from ..db import Database, api_keys_repo
from ..db.database import DatabaseError
from ..db.timefmt import from_iso, to_iso, utcnow_iso
from ..logs import event
from . import audit, passwords
from .authz import SCOPES, Principal
from .errors import AuthenticationFailed, NotFound, PermissionDenied, ValidationError

PREFIX_LEN = 8
CACHE_SECONDS = 60
TOUCH_SECONDS = 60  # last_used_at granularity: at most one write per key per minute
_ALPHABET = string.ascii_lowercase + string.digits
_PRUNE_AT = 1024  # entries; expired ones are swept when the cache grows past this

log = logging.getLogger("mailflow.api_keys")


class VerifiedKeyCache:
    """Fingerprint of a verified key -> (expiry, key id). A ttl of 0 turns caching off."""

    def __init__(self, ttl: float = CACHE_SECONDS):
        self.ttl = ttl
        self._entries: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def fingerprint(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def get(self, key: str) -> int | None:
        with self._lock:
            entry = self._entries.get(self.fingerprint(key))
            if entry and entry[0] > time.monotonic():
                return entry[1]
            return None

    def put(self, key: str, key_id: int) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            now = time.monotonic()
            if len(self._entries) >= _PRUNE_AT:
                for fp in [fp for fp, (expiry, _) in self._entries.items() if expiry <= now]:
                    del self._entries[fp]
            self._entries[self.fingerprint(key)] = (now + self.ttl, key_id)

    def drop_key(self, key_id: int) -> None:
        with self._lock:
            for fp in [fp for fp, (_, kid) in self._entries.items() if kid == key_id]:
                del self._entries[fp]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


cache = VerifiedKeyCache()


def _parse(token: str) -> tuple[str, str] | None:
    # maxsplit: the secret is URL-safe base64 and may itself contain "_" (the prefix never does)
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "mf" or len(parts[1]) != PREFIX_LEN or not parts[2]:
        return None
    return parts[1], parts[2]


def public(row) -> dict:
    return {"id": row["id"], "name": row["name"], "prefix": row["prefix"], "scopes": row["scopes"].split(),
            "user_id": row["user_id"], "created_at": row["created_at"], "last_used_at": row["last_used_at"],
            "revoked_at": row["revoked_at"]}


def grantable_scopes(principal: Principal) -> list[str]:
    """The scopes this caller may put on a new key: read for everyone, write from member, admin
    for admins."""
    return [s for s, role in (("read", "viewer"), ("write", "member"), ("admin", "admin"))
            if principal.has_role(role)]


def create(db: Database, principal: Principal, *, name: str, scopes: list[str], cost: int) -> dict:
    """Returns the key's fields plus `key`, the full secret, which is never shown again."""
    principal.require("viewer", "admin" if principal.via == "api_key" else "read")
    name = (name or "").strip()
    problems = {}
    if not name or len(name) > 100:
        problems["name"] = "Give the key a name of 1 to 100 characters."
    scopes = ["read"] if not scopes else scopes
    if not isinstance(scopes, (list, tuple)) or not all(isinstance(s, str) and s in SCOPES for s in scopes):
        problems["scopes"] = f"Choose scopes among: {', '.join(SCOPES)}."
    else:
        scopes = sorted(set(scopes))
    if problems:
        raise ValidationError(problems)
    if "admin" in scopes and not principal.has_role("admin"):
        raise PermissionDenied("Only admins can create keys with the admin scope.", code="scope_not_allowed")
    if "write" in scopes and not principal.has_role("member"):
        raise PermissionDenied("Viewers can create read-only keys only.", code="scope_not_allowed")
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LEN))
    while api_keys_repo.by_prefix(db.connection(), prefix) is not None:  # 36^8 prefixes: all but never
        prefix = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LEN))
    key = f"mf_{prefix}_{secrets.token_urlsafe(32)}"
    secret_hash = passwords.hash_password(key, cost)
    now = utcnow_iso()
    with db.transaction() as conn:
        key_id = api_keys_repo.insert(conn, user_id=principal.user_id, name=name, prefix=prefix,
                                      secret_hash=secret_hash, scopes=" ".join(scopes), now=now)
        audit.record(conn, principal.actor(), "api_key.created", target_type="api_key", target_id=key_id,
                     metadata={"name": name, "prefix": prefix, "scopes": scopes})
        fields = public(api_keys_repo.by_id(conn, key_id))
    return {"id": fields["id"], "name": fields["name"], "prefix": fields["prefix"], "key": key} | fields


def list_keys(db: Database, principal: Principal, *, after_id: int = 0, limit: int = 50) -> list[dict]:
    """Admins see every key; others their own. An admin's API key sees everyone's keys only
    with the admin scope (as for revoking them)."""
    owner = None if principal.has_role("admin") and "admin" in principal.scopes else principal.user_id
    return [public(r) | {"user_email": r["email"]}
            for r in api_keys_repo.list_for_user(db.connection(), owner, after_id=after_id, limit=limit)]


def revoke(db: Database, principal: Principal, key_id: int) -> None:
    with db.transaction() as conn:
        row = api_keys_repo.by_id(conn, key_id)
        if row is None or (row["user_id"] != principal.user_id and not principal.has_role("admin")):
            raise NotFound("No such API key.")
        if principal.via == "api_key" and "admin" not in principal.scopes and row["user_id"] != principal.user_id:
            raise PermissionDenied("This API key lacks the 'admin' scope.", code="scope_required")
        if api_keys_repo.revoke(conn, key_id, utcnow_iso()):
            audit.record(conn, principal.actor(), "api_key.revoked", target_type="api_key", target_id=key_id,
                         metadata={"name": row["name"], "prefix": row["prefix"]})
    cache.drop_key(key_id)


def _principal(row, ip: str | None) -> Principal:
    return Principal(user_id=row["user_id"], email=row["email"], role=row["role"], via="api_key", ip=ip,
                     api_key_id=row["id"], api_key_prefix=row["prefix"], scopes=frozenset(row["scopes"].split()))


def _usable(db: Database, row, ip: str | None) -> Principal:
    """Checked on every call, cached or not: revocation and a disabled owner take effect at once."""
    if row["revoked_at"] is not None:
        cache.drop_key(row["id"])
        raise AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
    if row["user_status"] != "active":
        cache.drop_key(row["id"])
        raise AuthenticationFailed("The user of this API key is disabled.", code="account_disabled")
    _touch(db, row)
    return _principal(row, ip)


def _touch(db: Database, row) -> None:
    """Record the use, at most once per TOUCH_SECONDS per key; best effort (a busy database
    must not fail the API call it would only annotate)."""
    now = datetime.now(timezone.utc)
    last = row["last_used_at"]
    if last is not None and (now - from_iso(last)).total_seconds() < TOUCH_SECONDS:
        return
    try:
        with db.transaction() as conn:
            api_keys_repo.touch(conn, row["id"], to_iso(now))
    except DatabaseError as exc:
        event(log, "api_key.touch_failed", level=logging.WARNING, key_id=row["id"], error=str(exc))


def authenticate(db: Database, token: str, ip: str | None) -> Principal:
    parsed = _parse(token)
    row = api_keys_repo.by_prefix(db.connection(), parsed[0]) if parsed else None
    if row is None:
        passwords.dummy_check(token)  # unknown prefix: same cost as a wrong secret (no timing oracle)
        raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")
    if cache.get(token) != row["id"]:
        if not passwords.verify_password(token, row["secret_hash"]):
            raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        cache.put(token, row["id"])
    return _usable(db, row, ip)


def cached_principal(db: Database, token: str, ip: str | None) -> Principal | None:
    """The caller when `token` was verified within the cache's lifetime, else None, without
    any bcrypt work (used while an address is over its failure budget)."""
    parsed = _parse(token)
    key_id = cache.get(token) if parsed else None
    if key_id is None:
        return None
    row = api_keys_repo.by_prefix(db.connection(), parsed[0])
    if row is None or row["id"] != key_id:
        return None
    return _usable(db, row, ip)
