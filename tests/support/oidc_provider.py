"""A small, real OpenID Connect provider for tests, on a loopback address.

It speaks HTTP (or HTTPS with its own CA) and implements what MailFlow uses: discovery, JWKS,
/authorize (auto-approves `email`, redirects back with code + state), /token (checks the client's
credentials, the single-use code, redirect_uri and the PKCE S256 verifier; returns an RS256 or
ES256 ID token carrying the nonce) and /userinfo. It records every request for assertions, and
can misbehave on purpose (see MISBEHAVIOURS) to prove that MailFlow refuses what it should.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import secrets
import ssl
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

MISBEHAVIOURS = {
    "wrong_nonce": "the ID token carries another nonce",
    "no_nonce": "the ID token carries no nonce",
    "wrong_audience": "the ID token is for another client",
    "wrong_issuer": "the ID token names another issuer",
    "expired": "the ID token expired half an hour ago",
    "email_unverified": "email_verified is false",
    "alg_none": "the ID token is unsigned (alg none)",
    "hs256_public_key": "the ID token is HS256, keyed with the provider's public key (key confusion)",
    "foreign_key": "the ID token is signed by a key that is not in the JWKS (same kid)",
    "thin_id_token": "the email is only at /userinfo, not in the ID token",
    "deny": "the user declines at the provider (error=access_denied)",
    "discovery_wrong_issuer": "the discovery document names another issuer",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft_token(header: dict, claims: dict, sign=None) -> str:
    """A JWT assembled by hand: pyjwt rightly refuses to make the malformed ones we need."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode())) if sign else ''}"


def make_ca_and_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for `host` signed by it: (ca.pem, cert.pem, key.pem)."""
    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MailFlow test IdP CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class OIDCProvider:
    """Start with `.start()` (or as a context manager); `issuer` is its URL."""

    def __init__(self, *, client_id: str = "mailflow-test", client_secret: str | None = None,
                 tls_dir: Path | None = None, alg: str = "RS256"):
        self.client_id = client_id
        self.client_secret = client_secret or "cs-" + secrets.token_urlsafe(24)
        self.tls_dir = tls_dir
        self.ca_file: Path | None = None
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        self.foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.default_alg = alg
        self.rsa_kid = "rsa-1"
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- behaviour and records, per test ------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.email = "alice@example.com"
            self.email_verified = True
            self.name = "Alice Example"
            self.extra_claims: dict = {}
            self.alg = self.default_alg
            self.misbehave: set[str] = set()
            self.auth_methods = ["client_secret_basic", "client_secret_post"]
            self.redirect_uris: set[str] = set()  # empty: any redirect_uri is accepted
            self.authorization_requests: list[dict] = []
            self.token_requests: list[dict] = []
            self.hits: list[str] = []
            self._codes: dict[str, dict] = {}
            self._access_tokens: dict[str, dict] = {}

    @property
    def last_authorization(self) -> dict:
        assert self.authorization_requests, "no authorization request reached the provider"
        return self.authorization_requests[-1]

    # -- server lifecycle -------------------------------------------------------------------

    def start(self) -> "OIDCProvider":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.provider = self  # type: ignore[attr-defined]
        if self.tls_dir is not None:
            self.ca_file, cert, key = make_ca_and_cert(self.tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(cert, key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="oidc-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self) -> "OIDCProvider":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def issuer(self) -> str:
        return f"{'https' if self.tls_dir is not None else 'http'}://127.0.0.1:{self.port}"

    # -- what the browser does --------------------------------------------------------------

    def authorize(self, url: str) -> str:
        """Play the browser at the provider: open the authorization URL and return where the
        provider redirects back to (it approves `email` without asking)."""
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1", f"tests contact loopback only, not {parts.hostname}"
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=str(self.ca_file))
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=10)
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request("GET", f"{parts.path}?{parts.query}")
            response = conn.getresponse()
            body = response.read()
            assert response.status == 302, f"provider answered {response.status}: {body[:200]!r}"
            return response.getheader("Location")
        finally:
            conn.close()

    # -- tokens -----------------------------------------------------------------------------

    def jwks(self) -> dict:
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa_key.public_key(), as_dict=True)
        rsa_jwk.update(kid=self.rsa_kid, alg="RS256", use="sig")
        ec_jwk = ECAlgorithm.to_jwk(self.ec_key.public_key(), as_dict=True)
        ec_jwk.update(kid="ec-1", alg="ES256", use="sig")
        return {"keys": [rsa_jwk, ec_jwk]}

    def public_pem(self) -> bytes:
        return self.rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)

    def user_claims(self) -> dict:
        claims = {"sub": "sub-" + hashlib.sha256(self.email.encode()).hexdigest()[:16], "email": self.email,
                  "email_verified": self.email_verified and "email_unverified" not in self.misbehave,
                  "name": self.name}
        claims.update(self.extra_claims)
        return claims

    def id_token(self, nonce: str | None) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300, "auth_time": now,
                  **self.user_claims()}
        if nonce is not None:
            claims["nonce"] = nonce
        bad = self.misbehave
        if "wrong_nonce" in bad:
            claims["nonce"] = "not-" + (nonce or "")
        if "no_nonce" in bad:
            claims.pop("nonce", None)
        if "wrong_audience" in bad:
            claims["aud"] = "some-other-client"
        if "wrong_issuer" in bad:
            claims["iss"] = "https://idp.example.net"
        if "expired" in bad:
            claims.update(iat=now - 3600, exp=now - 1800)
        if "thin_id_token" in bad:
            for name in ("email", "email_verified", "name"):
                claims.pop(name, None)
        if "alg_none" in bad:
            return craft_token({"alg": "none", "typ": "JWT", "kid": self.rsa_kid}, claims)
        if "hs256_public_key" in bad:
            key = self.public_pem()
            return craft_token({"alg": "HS256", "typ": "JWT", "kid": self.rsa_kid}, claims,
                               lambda data: hmac.new(key, data, hashlib.sha256).digest())
        if "foreign_key" in bad:
            return jwt.encode(claims, self.foreign_key, algorithm="RS256", headers={"kid": self.rsa_kid})
        if self.alg == "ES256":
            return jwt.encode(claims, self.ec_key, algorithm="ES256", headers={"kid": "ec-1"})
        return jwt.encode(claims, self.rsa_key, algorithm="RS256", headers={"kid": self.rsa_kid})

    def rotate_keys(self) -> None:
        """A new RSA signing key under a new kid; the old one leaves the JWKS."""
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_kid = f"rsa-{int(self.rsa_kid.split('-')[1]) + 1}"

    # -- endpoints --------------------------------------------------------------------------

    def discovery(self) -> dict:
        issuer = "https://idp.example.net" if "discovery_wrong_issuer" in self.misbehave else self.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "userinfo_endpoint": self.issuer + "/userinfo",
            "jwks_uri": self.issuer + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": list(self.auth_methods),
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified", "name"],
        }

    def handle_authorize(self, params: dict) -> tuple[int, dict, bytes]:
        with self._lock:
            self.authorization_requests.append(dict(params))
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") != self.client_id:
            return 400, {}, b"unknown client_id"
        if not redirect_uri or (self.redirect_uris and redirect_uri not in self.redirect_uris):
            return 400, {}, b"redirect_uri is not registered"
        back = {"state": params["state"]} if "state" in params else {}
        if params.get("response_type") != "code":
            back["error"] = "unsupported_response_type"
        elif "deny" in self.misbehave:
            back["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = {"redirect_uri": redirect_uri, "nonce": params.get("nonce"),
                                     "challenge": params.get("code_challenge"),
                                     "method": params.get("code_challenge_method"), "at": time.time()}
            back["code"] = code
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return 302, {"Location": redirect_uri + separator + urlencode(back)}, b""

    def handle_token(self, form: dict, authorization: str) -> tuple[int, dict]:
        record = {"form": {k: v for k, v in form.items()}, "auth_method": None, "error": None}
        with self._lock:
            self.token_requests.append(record)

        def fail(status: int, error: str):
            record["error"] = error
            return status, {"error": error}

        if authorization.lower().startswith("basic "):
            record["auth_method"] = "client_secret_basic"
            try:
                client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                return fail(401, "invalid_client")
            client_id, secret = unquote(client_id), unquote(secret)
        elif "client_secret" in form:
            record["auth_method"] = "client_secret_post"
            client_id, secret = form.get("client_id", ""), form["client_secret"]
        else:
            return fail(401, "invalid_client")
        if record["auth_method"] not in self.auth_methods:
            return fail(401, "invalid_client")
        if client_id != self.client_id or not hmac.compare_digest(secret, self.client_secret):
            return fail(401, "invalid_client")
        if form.get("grant_type") != "authorization_code":
            return fail(400, "unsupported_grant_type")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # single use
        if grant is None or time.time() - grant["at"] > 60:
            return fail(400, "invalid_grant")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return fail(400, "invalid_grant")
        verifier = form.get("code_verifier", "")
        if grant["method"] != "S256" or not verifier or \
                b64url(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            return fail(400, "invalid_grant")
        access_token = secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens[access_token] = self.user_claims()
        return 200, {"access_token": access_token, "token_type": "Bearer", "expires_in": 300,
                     "id_token": self.id_token(grant["nonce"])}

    def handle_userinfo(self, authorization: str) -> tuple[int, dict]:
        token = authorization[7:] if authorization.lower().startswith("bearer ") else ""
        with self._lock:
            claims = self._access_tokens.get(token)
        return (200, claims) if claims else (401, {"error": "invalid_token"})


class _Handler(BaseHTTPRequestHandler):
    server_version = "TestIdP/1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    @property
    def provider(self) -> OIDCProvider:
        return self.server.provider  # type: ignore[attr-defined]

    def _send(self, status: int, body: bytes, headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: dict) -> None:
        self._send(status, json.dumps(value).encode())

    def do_GET(self):
        parts = urlsplit(self.path)
        self.provider.hits.append(parts.path)
        if parts.path == "/.well-known/openid-configuration":
            self._json(200, self.provider.discovery())
        elif parts.path == "/jwks":
            self._json(200, self.provider.jwks())
        elif parts.path == "/authorize":
            status, headers, body = self.provider.handle_authorize(dict(parse_qsl(parts.query)))
            self._send(status, body, headers, content_type="text/plain")
        elif parts.path == "/userinfo":
            self._json(*self.provider.handle_userinfo(self.headers.get("Authorization", "")))
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self):
        parts = urlsplit(self.path)
        self.provider.hits.append(parts.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        if parts.path == "/token":
            self._json(*self.provider.handle_token(form, self.headers.get("Authorization", "")))
        else:
            self._json(404, {"error": "not_found"})
