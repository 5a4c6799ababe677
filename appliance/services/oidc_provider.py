"""Talking to the identity provider: discovery, keys, token and userinfo endpoints, over verified TLS 1.2+.

Only the issuer the operator configured is contacted, and only the endpoints its discovery document
publishes (https, or http on loopback when the issuer itself is). Redirects are not followed. Discovery
documents and key sets are cached. The sign-in flow that uses all this is in `oidc`.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import jwt

from ..config_types import is_loopback
from ..logs import event
from .errors import AuthenticationFailed

if TYPE_CHECKING:  # oidc imports this module
    from .oidc import Settings

log = logging.getLogger("mailflow.oidc")

ALGORITHMS = ("RS256", "ES256")
KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}
DISCOVERY_TTL = 3600
JWKS_TTL = 3600
JWKS_REFRESH_MIN = 30      # an unknown `kid` refetches the JWKS at most this often
HTTP_TIMEOUT = 10
MAX_RESPONSE = 1 << 20


class OIDCFailed(AuthenticationFailed):
    """A refused OIDC sign-in. `reason` is a short code for the audit log; the message is for people."""

    code = "oidc_failed"

    def __init__(self, reason: str, message: str, *, email: str | None = None):
        super().__init__(message, code="oidc_failed", details={"reason": reason})
        self.reason = reason
        self.email = email


# -- HTTP to the provider -------------------------------------------------------------------

class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a redirect is an error here: endpoints are used exactly as published


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _check_url(url: str, issuer: str, what: str) -> str:
    """Provider endpoints must be https, or http on loopback when the issuer itself is."""
    parts = urlsplit(url or "")
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname) \
            and urlsplit(issuer).scheme == "http":
        return url
    raise OIDCFailed("provider_misconfigured",
                     f"The identity provider's {what} is not an https:// URL. Ask an admin to check the "
                     "OIDC settings.")


def _request(settings_: Settings, url: str, *, data: dict | None = None,
             headers: dict | None = None) -> tuple[int, bytes]:
    """One request to the provider; returns (status, body), HTTP errors included."""
    host = urlsplit(url).hostname or ""
    handlers: list = [_NoRedirects(), urllib.request.HTTPSHandler(context=_tls_context(settings_.ca_file))]
    if is_loopback(host):
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    body = urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, method="POST" if data is not None else "GET",
                                     headers={"Accept": "application/json", "User-Agent": "MailFlow",
                                              **(headers or {})})
    if body is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, response.read(MAX_RESPONSE + 1)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(MAX_RESPONSE)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            detail = f"its TLS certificate is not trusted ({reason.verify_message})"
        elif isinstance(reason, ssl.SSLError):
            detail = f"TLS failed ({reason.reason or reason})"
        else:
            detail = f"{reason}"
        event(log, "oidc.provider_unreachable", level=logging.WARNING, url=url, error=detail)
        raise OIDCFailed("provider_unreachable",
                         f"The identity provider at {urlsplit(url).netloc} could not be reached: {detail}.") from None


def _json(status: int, body: bytes, what: str) -> dict:
    if len(body) > MAX_RESPONSE:
        raise OIDCFailed("provider_error", f"The identity provider's {what} is too large.")
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise OIDCFailed("provider_error", f"The identity provider's {what} is not valid JSON (HTTP {status}).")
    return value


class _Cache:
    """Discovery documents and key sets, per URL, for a while (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict[tuple, tuple[float, Any]] = {}

    def get(self, key: tuple, ttl: float) -> Any:
        with self._lock:
            item = self._items.get(key)
        return item[1] if item and time.monotonic() - item[0] < ttl else None

    def age(self, key: tuple) -> float:
        with self._lock:
            item = self._items.get(key)
        return time.monotonic() - item[0] if item else float("inf")

    def put(self, key: tuple, value: Any) -> Any:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _Cache()


def clear_cache() -> None:
    _cache.clear()


# -- discovery and keys ---------------------------------------------------------------------

def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def discover(settings_: Settings) -> dict:
    """The provider's discovery document, checked: it names our issuer and the endpoints we need."""
    key = ("discovery", settings_.issuer, str(settings_.ca_file))
    cached = _cache.get(key, DISCOVERY_TTL)
    if cached is not None:
        return cached
    url = discovery_url(settings_.issuer)
    status, body = _request(settings_, url)
    if status != 200:
        raise OIDCFailed("provider_error", f"The identity provider's discovery document answered HTTP {status}.")
    doc = _json(status, body, "discovery document")
    if str(doc.get("issuer", "")).rstrip("/") != settings_.issuer.rstrip("/"):
        raise OIDCFailed("provider_misconfigured",
                         f"The identity provider calls itself {doc.get('issuer')!r}, not {settings_.issuer!r}: "
                         "check oidc_issuer.")
    for name, what in (("authorization_endpoint", "authorization endpoint"), ("token_endpoint", "token endpoint"),
                       ("jwks_uri", "key set URL")):
        _check_url(str(doc.get(name) or ""), settings_.issuer, what)
    if doc.get("userinfo_endpoint"):
        _check_url(str(doc["userinfo_endpoint"]), settings_.issuer, "userinfo endpoint")
    if "code" not in doc.get("response_types_supported", ["code"]):
        raise OIDCFailed("provider_misconfigured", "The identity provider does not offer the authorization code flow.")
    algs = doc.get("id_token_signing_alg_values_supported")
    if algs is not None and not set(algs) & set(ALGORITHMS):
        raise OIDCFailed("provider_misconfigured",
                         f"The identity provider signs ID tokens with {', '.join(map(str, algs))}; "
                         f"MailFlow accepts {' or '.join(ALGORITHMS)}.")
    methods = doc.get("code_challenge_methods_supported")
    if methods is not None and "S256" not in methods:
        raise OIDCFailed("provider_misconfigured", "The identity provider does not support PKCE with S256.")
    event(log, "oidc.discovered", issuer=settings_.issuer)
    return _cache.put(key, doc)


def _jwks(settings_: Settings, doc: dict, *, refresh: bool = False) -> list[dict]:
    key = ("jwks", doc["jwks_uri"], str(settings_.ca_file))
    if not refresh:
        cached = _cache.get(key, JWKS_TTL)
        if cached is not None:
            return cached
    elif _cache.age(key) < JWKS_REFRESH_MIN:
        return _cache.get(key, JWKS_TTL) or []
    status, body = _request(settings_, doc["jwks_uri"])
    if status != 200:
        raise OIDCFailed("provider_error", f"The identity provider's key set answered HTTP {status}.")
    keys = _json(status, body, "key set").get("keys")
    if not isinstance(keys, list):
        raise OIDCFailed("provider_error", "The identity provider's key set has no keys.")
    return _cache.put(key, [k for k in keys if isinstance(k, dict)])


def signing_key(settings_: Settings, doc: dict, header: dict) -> Any:
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise OIDCFailed("bad_algorithm", f"The ID token is signed with {str(alg)[:20]!r}; MailFlow accepts only "
                                          f"{' or '.join(ALGORITHMS)}.")
    kid = header.get("kid")

    def candidates(keys: list[dict]) -> list[dict]:
        usable = [k for k in keys if k.get("kty") == KEY_TYPES[alg] and k.get("use", "sig") == "sig"
                  and k.get("alg", alg) == alg]
        return [k for k in usable if k.get("kid") == kid] if kid is not None else usable

    found = candidates(_jwks(settings_, doc))
    if not found:  # the provider may have rotated its keys since we fetched them
        found = candidates(_jwks(settings_, doc, refresh=True))
    if len(found) != 1:
        raise OIDCFailed("unknown_key", "The ID token is not signed by a key of the identity provider.")
    try:
        return jwt.PyJWK(found[0], algorithm=alg).key
    except jwt.PyJWTError:
        raise OIDCFailed("unknown_key", "The identity provider's signing key is not usable.") from None


# -- token and userinfo endpoints -----------------------------------------------------------

def redeem(settings_: Settings, doc: dict, code: str, code_verifier: str) -> dict:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": settings_.redirect_uri,
            "code_verifier": code_verifier}
    headers = {}
    methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" in methods:
        # RFC 6749 2.3.1: both parts form-encoded before Base64
        pair = f"{quote(settings_.client_id, safe='')}:{quote(settings_.client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    elif "client_secret_post" in methods:
        form.update(client_id=settings_.client_id, client_secret=settings_.client_secret)
    else:
        raise OIDCFailed("provider_misconfigured",
                         "The identity provider accepts neither client_secret_basic nor client_secret_post.")
    status, body = _request(settings_, doc["token_endpoint"], data=form, headers=headers)
    answer = _json(status, body, "token response")
    if status != 200:
        error = str(answer.get("error") or f"HTTP {status}")[:100]
        raise OIDCFailed("token_refused", f"The identity provider refused to complete the sign-in ({error}). "
                                          "Start again.")
    if not isinstance(answer.get("id_token"), str):
        raise OIDCFailed("token_refused", "The identity provider returned no ID token.")
    return answer


def userinfo(settings_: Settings, doc: dict, access_token: str, sub: str) -> dict:
    """Providers that keep ID tokens thin hand out the email at the userinfo endpoint."""
    status, body = _request(settings_, doc["userinfo_endpoint"],
                            headers={"Authorization": f"Bearer {access_token}"})
    if status != 200:
        raise OIDCFailed("provider_error", f"The identity provider's userinfo endpoint answered HTTP {status}.")
    info = _json(status, body, "userinfo response")
    if info.get("sub") != sub:
        raise OIDCFailed("bad_token", "The identity provider's userinfo is about someone else.")
    return info
