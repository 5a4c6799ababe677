"""Sign-in with OpenID Connect: authorization code flow with PKCE, state and nonce.

The flow, and where each check happens:

1. `begin()` fetches the provider's discovery document (cached), makes a random `state`,
   `nonce` and PKCE verifier, and builds the authorization URL. It asks for exactly
   `openid email profile`: enough to learn who signs in, nothing more (never a Google API
   scope; mailboxes are reached over IMAP with App Passwords). The web layer keeps the
   returned `Pending` in the signed session cookie and redirects the browser.
2. The provider sends the browser back with `code` and `state`. The web layer finds the
   `Pending` by `state` (unknown or missing state: refused), then calls `complete()`.
3. `complete()` redeems the code at the token endpoint (client secret by HTTP Basic or in the
   form, as the provider supports, plus the PKCE verifier), verifies the ID token against the
   provider's JWKS with pyjwt (RS256 or ES256 only, the key from the JWKS; iss, aud, azp, exp,
   iat, nonce), requires a verified email and maps it to a user: an existing active user, or a
   new `viewer` when the email's domain is in `oidc_allowed_domains`. Everyone else is refused.

Success is audited by `users.record_login(..., method="oidc")`, every refusal as
`auth.oidc_failed` with the reason. Tokens, codes and the client secret are never logged or
audited. Only the provider the operator configured is ever contacted, over TLS 1.2+ with
certificate verification (plain http only for a loopback issuer, for tests and development);
`oidc_provider` does that talking.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, urlencode, urlsplit

import jwt

from ..config import GOOGLE_ISSUER, Config, oidc_issuer
from ..db import Database, users_repo
from ..db.timefmt import utcnow_iso
from ..logs import event
from . import audit, users
from .audit import Actor
from .oidc_provider import OIDCFailed, discover, redeem, signing_key, userinfo

log = logging.getLogger("mailflow.oidc")

SCOPE = "openid email profile"  # exactly this; see the module docstring and docs/oidc.md
CALLBACK_PATH = "/login/oidc/callback"
AUTO_ROLE = "viewer"

PENDING_TTL = 600          # seconds from the redirect to the provider until the callback
MAX_PENDING = 3            # sign-ins started in other tabs that stay valid
CLOCK_SKEW = 60            # leeway for exp / iat between us and the provider
MAX_TOKEN_AGE = PENDING_TTL + CLOCK_SKEW
GOOGLE_MAIL = ("gmail.com", "googlemail.com")


# -- settings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    preset: str
    allowed_domains: tuple[str, ...]
    label: str
    ca_file: Path | None = None

    def __repr__(self) -> str:  # never the secret, not even in a traceback
        return f"Settings(issuer={self.issuer!r}, client_id={self.client_id!r}, preset={self.preset!r})"


def settings(config: Config) -> Settings | None:
    """The OIDC settings, or None when OIDC sign-in is off."""
    issuer = oidc_issuer(config.values)
    if issuer is None or not config.oidc_client_id or not config.oidc_client_secret:
        return None
    base = config.public_url or "http://{}:{}".format(*config.listen)
    # Google's rules (see _identity) follow the issuer, whichever preset named it
    preset = "google" if issuer.rstrip("/") == GOOGLE_ISSUER else config.oidc_preset
    label = config.oidc_button_label or ("Google" if preset == "google" else "SSO")
    return Settings(issuer=issuer, client_id=config.oidc_client_id, client_secret=config.oidc_client_secret,
                    redirect_uri=base.rstrip("/") + CALLBACK_PATH, preset=preset,
                    allowed_domains=tuple(config.oidc_allowed_domains or ()), label=label,
                    ca_file=config.oidc_ca_file)


# -- step 1: the redirect to the provider ---------------------------------------------------

@dataclass(frozen=True)
class Pending:
    """What the browser's session keeps between the redirect and the callback."""

    state: str
    nonce: str
    code_verifier: str
    created: int
    next: str = "/"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "Pending":
        return cls(state=str(data["state"]), nonce=str(data["nonce"]), code_verifier=str(data["code_verifier"]),
                   created=int(data["created"]), next=str(data.get("next") or "/"))

    def expired(self, now: float | None = None) -> bool:
        return (now or time.time()) - self.created > PENDING_TTL


def code_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def begin(settings_: Settings, next_path: str = "/") -> tuple[str, Pending]:
    """The authorization URL to send the browser to, and what to remember until it comes back."""
    doc = discover(settings_)
    pending = Pending(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                      code_verifier=secrets.token_urlsafe(64), created=int(time.time()), next=next_path)
    params = {
        "response_type": "code",
        "client_id": settings_.client_id,
        "redirect_uri": settings_.redirect_uri,
        "scope": SCOPE,
        "state": pending.state,
        "nonce": pending.nonce,
        "code_challenge": code_challenge(pending.code_verifier),
        "code_challenge_method": "S256",
    }
    endpoint = doc["authorization_endpoint"]
    return endpoint + ("&" if urlsplit(endpoint).query else "?") + urlencode(params, quote_via=quote), pending


def find_pending(stored: Any, state: str | None) -> Pending:
    """The pending sign-in the callback's `state` names; anything else is refused."""
    if not state or not isinstance(stored, dict):
        raise OIDCFailed("state_mismatch", "This sign-in was not started here or was already used. "
                                           "Start again with the sign-in button.")
    for key, value in stored.items():
        if hmac.compare_digest(str(key).encode(), state.encode()):
            try:
                pending = Pending.from_dict(value)
            except (KeyError, TypeError, ValueError):
                break
            if pending.expired():
                raise OIDCFailed("state_expired", "The sign-in took too long. Start again.")
            return pending
    raise OIDCFailed("state_mismatch", "This sign-in was not started here or was already used. "
                                       "Start again with the sign-in button.")


def remember(stored: Any, pending: Pending) -> dict:
    """Add a pending sign-in to what the session holds, dropping expired and the oldest extra ones."""
    items = {}
    if isinstance(stored, dict):
        for key, value in stored.items():
            try:
                if not Pending.from_dict(value).expired():
                    items[key] = value
            except (KeyError, TypeError, ValueError):
                continue
    items[pending.state] = pending.to_dict()
    return dict(sorted(items.items(), key=lambda kv: kv[1]["created"])[-MAX_PENDING:])


# -- step 3: code -> ID token -> user ------------------------------------------------------

def verify_id_token(settings_: Settings, doc: dict, id_token: str, nonce: str) -> dict:
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise OIDCFailed("bad_token", "The identity provider returned a malformed ID token.") from None
    key = signing_key(settings_, doc, header)
    try:
        claims = jwt.decode(id_token, key, algorithms=[header["alg"]], audience=settings_.client_id,
                            issuer=doc["issuer"], leeway=CLOCK_SKEW,
                            options={"require": ["iss", "aud", "sub", "exp", "iat"]})
    except jwt.ExpiredSignatureError:
        raise OIDCFailed("token_expired", "The ID token has expired; check the clocks of this host and the "
                                          "identity provider, then start again.") from None
    except jwt.InvalidAudienceError:
        raise OIDCFailed("wrong_audience", "The ID token was issued for another application.") from None
    except jwt.InvalidIssuerError:
        raise OIDCFailed("wrong_issuer", "The ID token was issued by another provider.") from None
    except jwt.ImmatureSignatureError:
        raise OIDCFailed("token_not_yet_valid", "The ID token is dated in the future; check the clocks of this "
                                                "host and the identity provider.") from None
    except jwt.InvalidSignatureError:
        raise OIDCFailed("bad_signature", "The ID token's signature is not valid.") from None
    except jwt.PyJWTError as exc:
        raise OIDCFailed("bad_token", f"The ID token is not valid ({exc}).") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != settings_.client_id:
        raise OIDCFailed("wrong_audience", "The ID token was issued for another application.")
    if not isinstance(claims["iat"], (int, float)) or time.time() - claims["iat"] > MAX_TOKEN_AGE:
        raise OIDCFailed("token_expired", "The ID token is too old. Start again.")
    if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"].encode(), nonce.encode()):
        raise OIDCFailed("nonce_mismatch", "The ID token does not belong to this sign-in (nonce mismatch). "
                                           "Start again.")
    return claims


def _identity(settings_: Settings, doc: dict, tokens: dict, claims: dict) -> dict:
    identity = dict(claims)
    if "email" not in claims and doc.get("userinfo_endpoint") and isinstance(tokens.get("access_token"), str):
        info = userinfo(settings_, doc, tokens["access_token"], claims["sub"])
        for name in ("email", "email_verified", "name", "hd"):
            if name in info and name not in identity:
                identity[name] = info[name]
    email = users.normalize_email(str(identity.get("email") or ""))
    if not email or users.email_problem(email):
        raise OIDCFailed("no_email", "The identity provider did not share a usable email address. "
                                     "Make sure the client may read the email scope.")
    verified = identity.get("email_verified")
    if verified is not True and verified != "true":
        raise OIDCFailed("email_unverified", f"The identity provider has not verified {email}; verify it there "
                                             "first, or sign in with your password.", email=email)
    if settings_.preset == "google":
        domain = email.rpartition("@")[2]
        if domain not in GOOGLE_MAIL and str(identity.get("hd") or "").lower() != domain:
            # Google vouches only for its own addresses and Google Workspace domains
            raise OIDCFailed("email_unverified", f"Google does not manage {email} (no Google Workspace account); "
                                                 "sign in with your password.", email=email)
    identity["email"] = email
    return identity


def map_user(db: Database, settings_: Settings, identity: dict, ip: str | None) -> int:
    """An existing active user by email, or a new viewer from an allowed domain; else refused."""
    email = identity["email"]
    with db.transaction() as conn:
        user = users_repo.by_email(conn, email)
        if user is not None:
            if user["status"] == "active":
                return user["id"]
            if user["status"] == "invited":
                raise OIDCFailed("user_invited", "Your invitation has not been accepted yet: open the invitation "
                                                 "link first.", email=email)
            raise OIDCFailed(f"user_{user['status']}", "This account is disabled. Ask an admin.", email=email)
        domain = email.rpartition("@")[2]
        if domain not in settings_.allowed_domains:
            raise OIDCFailed("unknown_user", f"There is no MailFlow account for {email}. Ask an admin to invite you.",
                             email=email)
        name = "".join(ch for ch in str(identity.get("name") or "") if ch.isprintable()).strip()[:200]
        user_id = users_repo.insert(conn, email=email, name=name, role=AUTO_ROLE, status="active",
                                    password_hash=None, now=utcnow_iso())
        audit.record(conn, Actor("user", user_id, email, ip), "user.created", target_type="user",
                     target_id=user_id, metadata={"email": email, "role": AUTO_ROLE, "via": "oidc",
                                                  "issuer": settings_.issuer, "allowed_domain": domain})
        return user_id


def complete(db: Database, settings_: Settings, pending: Pending, code: str, ip: str | None) -> dict:
    """Redeem the code, verify the ID token, find or create the user and record the sign-in.
    Returns the user row (for the session); raises OIDCFailed (already audited) otherwise."""
    try:
        if not code or len(code) > 4096:
            raise OIDCFailed("no_code", "The identity provider sent no sign-in code. Start again.")
        doc = discover(settings_)
        tokens = redeem(settings_, doc, code, pending.code_verifier)
        claims = verify_id_token(settings_, doc, tokens["id_token"], pending.nonce)
        identity = _identity(settings_, doc, tokens, claims)
        user_id = map_user(db, settings_, identity, ip)
    except OIDCFailed as exc:
        record_failure(db, settings_, exc, ip)
        raise
    return users.record_login(db, user_id, ip, method="oidc")


def finish(db: Database, settings_: Settings, stored: Any, *, state: str | None, code: str | None,
           error: str | None, ip: str | None) -> tuple[dict, Pending]:
    """The provider's redirect back: `stored` is what the session kept since `begin()`. Returns the
    signed-in user row and the pending sign-in (for its `next`); every refusal is audited."""
    try:
        pending = find_pending(stored, state)
        if error:
            raise OIDCFailed("provider_denied", f"The identity provider did not sign you in ({error[:100]}).")
    except OIDCFailed as exc:
        record_failure(db, settings_, exc, ip)
        raise
    return complete(db, settings_, pending, code or "", ip), pending


def forget(stored: Any, state: str | None) -> dict:
    """What the session keeps after a callback: every pending sign-in but this one (one use each)."""
    if not isinstance(stored, dict):
        return {}
    return {k: v for k, v in stored.items() if not (state and hmac.compare_digest(str(k).encode(), state.encode()))}


def record_failure(db: Database, settings_: Settings | None, exc: OIDCFailed, ip: str | None) -> None:
    label = (exc.email or "anonymous")[:254]
    metadata = {"reason": exc.reason, "message": exc.message}
    if settings_ is not None:
        metadata["issuer"] = settings_.issuer
    audit.record_now(db, Actor.anonymous(ip, label), "auth.oidc_failed", metadata=metadata)
    event(log, "oidc.sign_in_refused", level=logging.WARNING, reason=exc.reason, ip=ip)
