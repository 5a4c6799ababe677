"""Negative endpoints: servers a careful client must refuse to talk to.

* LegacyTlsDovecot: a real Dovecot that offers only TLS 1.0/1.1.
* NegativeSmtp("nostarttls"): EHLO offers AUTH but no STARTTLS (passwords would go in clear).
* NegativeSmtp("legacy-smtps" | "legacy-starttls"): TLS 1.0/1.1 only.

OpenSSL 3.0 on Debian can still speak TLS 1.1, but only at security level 0 on both ends, so a
client that insists on TLS >= 1.2 fails the handshake, while a deliberately permissive client
(see legacy_client_context) proves the server really offers TLS 1.1.
All of them listen on 127.0.0.3 (the main stack uses 127.0.0.2).
"""

from __future__ import annotations

import shutil
import ssl
import warnings
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult

from .certs import make_certs
from .dovecot import Dovecot, dovecot_conf, write_passwd
from .loopback import NEGATIVE_HOST, free_ports, new_root
from .smtp_server import SMTP_HOSTNAME, LoopThread

LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"

# Dovecot 2.3 has no ssl_max_protocol: the cap comes from OpenSSL's config file.
OPENSSL_LEGACY_CNF = f"""\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = sys_sect
[sys_sect]
MinProtocol = TLSv1
MaxProtocol = TLSv1.1
CipherString = {LEGACY_CIPHERS}
"""


def _legacy_versions(ctx: ssl.SSLContext, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    with warnings.catch_warnings():  # setting TLSv1/TLSv1_1 raises a DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = maximum
    ctx.set_ciphers(LEGACY_CIPHERS)
    return ctx


def legacy_client_context(cafile: Path) -> ssl.SSLContext:
    """A permissive client (TLS 1.0 and up, SECLEVEL 0) that can talk to the legacy servers."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    return _legacy_versions(ctx, ssl.TLSVersion.MAXIMUM_SUPPORTED)


class LegacyTlsDovecot:
    """A separate Dovecot whose IMAPS (`port`) and STARTTLS (`starttls_port`) offer only
    TLS 1.0/1.1."""

    host = NEGATIVE_HOST

    def __init__(self):
        self.root: Path | None = None
        self._dovecot: Dovecot | None = None

    def start(self) -> LegacyTlsDovecot:
        """Call from the main thread (see Dovecot.start)."""
        self.root = new_root()
        try:
            self.cafile = make_certs(self.root / "tls")
            write_passwd(self.root, {})
            cnf = self.root / "openssl-legacy.cnf"
            cnf.write_text(OPENSSL_LEGACY_CNF)
            self.starttls_port, self.port = free_ports(self.host, 2)
            self._dovecot = Dovecot(self.root)
            # Without import_environment the cap is silently ignored (Dovecot wipes the
            # environment of its children) and TLS 1.2 still works.
            conf = dovecot_conf(
                self.root, host=self.host, imap_port=self.starttls_port, imaps_port=self.port,
                tls=f"ssl_min_protocol = TLSv1\nssl_cipher_list = {LEGACY_CIPHERS}",
                import_environment=f"TZ OPENSSL_CONF={cnf}")
            self._dovecot.start(conf, banner=(self.host, self.starttls_port))
        except BaseException:
            self.stop()
            raise
        return self

    def log_errors(self) -> list[str]:
        return self._dovecot.log_errors() if self._dovecot else []

    def stop(self) -> None:
        if self._dovecot is not None:
            self._dovecot.stop()
            self._dovecot = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


class _RefuseMail:
    async def handle_DATA(self, server, session, envelope):
        return "554 5.7.0 negative test endpoint: never accepts mail"


class NegativeSmtp:
    """An SMTP endpoint that a client must refuse before sending credentials.

    `auth_attempts` lists the logins any client tried to authenticate with (always rejected),
    so a test can show that no password was sent.
    """

    MODES = ("nostarttls", "legacy-smtps", "legacy-starttls")
    host = NEGATIVE_HOST

    def __init__(self, mode: str):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, not {mode!r}")
        self.mode = mode
        self.auth_attempts: list[str] = []
        self.root: Path | None = None
        self._loop: LoopThread | None = None

    def start(self) -> NegativeSmtp:
        self.root = new_root()
        try:
            self.cafile = make_certs(self.root / "tls")
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(self.root / "tls" / "cert.pem", self.root / "tls" / "key.pem")
            _legacy_versions(tls, ssl.TLSVersion.TLSv1_1)
            starttls = self.mode == "legacy-starttls"

            def session() -> SMTP:
                # auth_required=False keeps AUTH advertised without TLS, and without aiosmtpd's
                # "Requiring AUTH while not requiring TLS" warning.
                return SMTP(_RefuseMail(), hostname=SMTP_HOSTNAME, decode_data=False,
                            tls_context=tls if starttls else None, require_starttls=starttls,
                            auth_required=False, auth_require_tls=starttls,
                            authenticator=self._record)

            self._loop = LoopThread(f"negative-smtp-{self.mode}")
            self.port = self._loop.listen(
                session, self.host, tls if self.mode == "legacy-smtps" else None)
        except BaseException:
            self.stop()
            raise
        return self

    def _record(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.auth_attempts.append(getattr(auth_data, "login", b"").decode(errors="replace"))
        return AuthResult(success=False, handled=False)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
