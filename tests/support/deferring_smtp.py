"""An SMTP submission server (STARTTLS, AUTH) that answers every recipient with a temporary
failure, as greylisting or a full mailbox does: for the sending engine's retry path."""

from __future__ import annotations

import shutil
import ssl

from aiosmtpd.smtp import SMTP, AuthResult

from .certs import make_certs
from .loopback import HOST, new_root
from .smtp_server import SMTP_HOSTNAME, LoopThread


class _Defer:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return "451 4.7.1 Greylisted, please try again later"


class DeferringSmtp:
    host = HOST

    def __init__(self, login: str, password: str):
        self.users = {login: password}
        self.root = None
        self._loop: LoopThread | None = None

    def start(self) -> "DeferringSmtp":
        self.root = new_root()
        self.cafile = make_certs(self.root / "tls")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(self.root / "tls" / "cert.pem", self.root / "tls" / "key.pem")

        def accept(server, session, envelope, mechanism, auth_data) -> AuthResult:
            ok = self.users.get(auth_data.login.decode()) == auth_data.password.decode()
            return AuthResult(success=ok, handled=False)

        def session() -> SMTP:
            return SMTP(_Defer(), hostname=SMTP_HOSTNAME, decode_data=False, tls_context=tls,
                        require_starttls=True, auth_required=True, auth_require_tls=True, authenticator=accept)

        self._loop = LoopThread("deferring-smtp")
        self.port = self._loop.listen(session, self.host, None)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
