"""API keys: `mf_<8-char prefix>_<secret>`. Only the prefix is stored in plaintext (to find
the row); the whole key is bcrypt-hashed (cost 12) and shown once, at creation.

bcrypt at cost 12 takes ~0.25 s, so a verified key is remembered in memory for a short
while, keyed by a SHA-256 of the full key (never the key itself): a burst of API calls pays
for one bcrypt. Revoking a key, or any change of its user, drops it at once.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import threading
import time

from ..db import Database, api_keys_repo
from ..db.timefmt import utcnow_iso
from . import audit, passwords
from .authz import SCOPES, Principal
from .errors import AuthenticationFailed, NotFound, PermissionDenied, ValidationError

PREFIX_LEN = 8
CACHE_SECONDS = 60
_ALPHABET = string.ascii_lowercase + string.digits


class VerifiedKeyCache:
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
        with self._lock:
            self._entries[self.fingerprint(key)] = (time.monotonic() + self.ttl, key_id)

    def drop_key(self, key_id: int) -> None:
        with self._lock:
            for fp in [fp for fp, (_, kid) in self._entries.items() if kid == key_id]:
                del self._entries[fp]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


cache = VerifiedKeyCache()


def _parse(token: str) -> tuple[str, str] | None:
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != "mf" or len(parts[1]) != PREFIX_LEN or not parts[2]:
        return None
    return parts[1], parts[2]


def public(row) -> dict:
    return {"id": row["id"], "name": row["name"], "prefix": row["prefix"], "scopes": row["scopes"].split(),
            "user_id": row["user_id"], "created_at": row["created_at"], "last_used_at": row["last_used_at"],
            "revoked_at": row["revoked_at"]}


def create(db: Database, principal: Principal, *, name: str, scopes: list[str], cost: int) -> dict:
    """Returns the key's fields plus `key`, the full secret, which is never shown again."""
    principal.require("viewer", "admin" if principal.via == "api_key" else "read")
    name = (name or "").strip()
    problems = {}
    if not name or len(name) > 100:
        problems["name"] = "Give the key a name of 1 to 100 characters."
    scopes = sorted(set(scopes or ["read"]))
    if not scopes or any(s not in SCOPES for s in scopes):
        problems["scopes"] = f"Choose scopes among: {', '.join(SCOPES)}."
    if problems:
        raise ValidationError(problems)
    if "admin" in scopes and not principal.has_role("admin"):
        raise PermissionDenied("Only admins can create keys with the admin scope.", code="scope_not_allowed")
    if "write" in scopes and not principal.has_role("member"):
        raise PermissionDenied("Viewers can create read-only keys only.", code="scope_not_allowed")
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LEN))
    key = f"mf_{prefix}_{secrets.token_urlsafe(32)}"
    secret_hash = passwords.hash_password(key, cost)
    now = utcnow_iso()
    with db.transaction() as conn:
        key_id = api_keys_repo.insert(conn, user_id=principal.user_id, name=name, prefix=prefix,
                                      secret_hash=secret_hash, scopes=" ".join(scopes), now=now)
        audit.record(conn, principal.actor(), "api_key.created", target_type="api_key", target_id=key_id,
                     metadata={"name": name, "prefix": prefix, "scopes": scopes})
        body = public(api_keys_repo.by_id(conn, key_id))
    body["key"] = key
    return body


def list_keys(db: Database, principal: Principal, *, after_id: int = 0, limit: int = 50) -> list[dict]:
    """Admins see every key; others their own."""
    owner = None if principal.has_role("admin") else principal.user_id
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
    # checked on every call, cached or not: revocation and a disabled owner take effect at once
    if row["revoked_at"] is not None or row["user_status"] != "active":
        cache.drop_key(row["id"])
        raise AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
    return Principal(user_id=row["user_id"], email=row["email"], role=row["role"], via="api_key", ip=ip,
                     api_key_id=row["id"], api_key_prefix=row["prefix"], scopes=frozenset(row["scopes"].split()))
