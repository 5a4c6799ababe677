"""TLS for SMTP and IMAP clients: 1.2 or newer, certificates verified, always.

Trust comes from the system store by default. For on-prem servers with a private CA a
mailbox can carry its own CA bundle (PEM), or, chosen explicitly, a pinned SHA-256
fingerprint of the server certificate. There is no "ignore certificate" mode.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class TransportError(Exception):
    """A connection problem, with a stable code and a sentence for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TlsPolicy:
    ca_pem: str | None = None           # trust only this bundle (private CA)
    pinned_sha256: str | None = None    # or trust exactly this certificate

    def context(self, hostname_check: bool = True) -> ssl.SSLContext:
        if self.pinned_sha256:
            # The pin replaces chain validation: the handshake completes, then
            # check_pin() compares the certificate before a single credential is sent.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_pem:
            ctx = ssl.create_default_context(cadata=self.ca_pem)
        else:
            ctx = ssl.create_default_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def check_pin(self, sock: ssl.SSLSocket) -> None:
        if not self.pinned_sha256:
            return
        der = sock.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).hexdigest() != self.pinned_sha256:
            raise TransportError("certificate_untrusted",
                                 "The server's certificate does not match the pinned fingerprint.")


def normalize_fingerprint(text: str) -> str:
    value = text.strip().lower().replace(":", "").removeprefix("sha256/")
    if not _FINGERPRINT.match(value):
        raise ValueError("expected a SHA-256 fingerprint: 64 hex digits, colons allowed")
    return value


def check_ca_pem(text: str) -> str:
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError, TypeError):  # TypeError: text that is not ASCII
        raise ValueError("not a PEM certificate bundle") from None
    return text


def classify(exc: BaseException, host: str, port: int) -> TransportError:
    """Turn a low-level failure into one clear, stable error."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransportError("certificate_untrusted",
                              f"The certificate of {host} is not trusted: {exc.verify_message}.")
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        return TransportError("tls_failed", f"TLS handshake with {host}:{port} failed ({reason}); "
                                            "the server may not support TLS 1.2 or newer.")
    if isinstance(exc, TimeoutError):
        return TransportError("timeout", f"{host}:{port} did not answer in time.")
    if isinstance(exc, OSError):
        detail = exc.strerror or exc.__class__.__name__
        return TransportError("host_unreachable", f"Cannot connect to {host}:{port} ({detail}).")
    return TransportError("protocol_error", f"Unexpected answer from {host}:{port}: {exc}")
