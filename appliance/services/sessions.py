"""Session tokens: HS256 JWTs signed with the sessions sub-key.

Claims: sub (user id), ver (the user's token version), jti, iat, exp, auth_time, typ.
The algorithm is pinned: `none` and every other algorithm are refused. A token is good only
while the user is active, its `ver` equals the user's current token version (a password
change, "sign out everywhere", disabling or a role change moves it on) and its jti has not
been revoked by a logout. Tokens are short (idle timeout) and refreshed while in use, up
to an absolute limit counted from the sign-in.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

import jwt

from ..db import Database, users_repo
from ..db.timefmt import to_iso
from .authz import Principal
from .errors import AuthenticationFailed

ALGORITHM = "HS256"
TOKEN_TYPE = "session"
REFRESH_AFTER = timedelta(minutes=5)


def issue(key: bytes, user, *, idle_minutes: int, max_hours: int, auth_time: int | None = None,
          now: datetime | None = None) -> tuple[str, dict]:
    now = now or datetime.now(timezone.utc)
    iat = int(now.timestamp())
    auth_time = auth_time or iat
    exp = min(iat + idle_minutes * 60, auth_time + max_hours * 3600)
    claims = {"sub": str(user["id"]), "ver": user["token_version"], "jti": secrets.token_urlsafe(16),
              "iat": iat, "exp": exp, "auth_time": auth_time, "typ": TOKEN_TYPE}
    return jwt.encode(claims, key, algorithm=ALGORITHM), claims


def decode(key: bytes, token: str) -> dict:
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM],
                            options={"require": ["sub", "ver", "jti", "iat", "exp", "auth_time"]})
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("Your session has expired. Sign in again.", code="session_expired") from None
    except jwt.InvalidTokenError:
        raise AuthenticationFailed("Invalid session token.", code="invalid_token") from None
    if claims.get("typ") != TOKEN_TYPE:
        raise AuthenticationFailed("Invalid session token.", code="invalid_token")
    return claims


def authenticate(db: Database, key: bytes, token: str, ip: str | None = None) -> Principal:
    claims = decode(key, token)
    conn = db.connection()
    try:
        user = users_repo.by_id(conn, int(claims["sub"]))
    except ValueError:
        user = None
    if (user is None or user["status"] != "active" or user["token_version"] != claims["ver"]
            or users_repo.token_revoked(conn, claims["jti"])):
        raise AuthenticationFailed("Your session has ended. Sign in again.", code="session_ended")
    return Principal(user_id=user["id"], email=user["email"], role=user["role"], via="session", ip=ip,
                     session=claims)


def needs_refresh(claims: dict, now: datetime | None = None) -> bool:
    now = now or datetime.now(timezone.utc)
    return now.timestamp() - claims["iat"] >= REFRESH_AFTER.total_seconds()


def revoke(db: Database, claims: dict) -> None:
    """Logout: deny-list this token's jti until it would have expired anyway."""
    expires = to_iso(datetime.fromtimestamp(claims["exp"], timezone.utc))
    with db.transaction() as conn:
        users_repo.revoke_token(conn, claims["jti"], expires)


def purge_revoked(db: Database) -> int:
    with db.transaction() as conn:
        return users_repo.purge_revoked(conn, to_iso(datetime.now(timezone.utc)))
