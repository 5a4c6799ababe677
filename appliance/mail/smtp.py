"""SMTP submission client: implicit TLS (465) or STARTTLS (587), TLS 1.2+, verified, and
AUTH only ever inside TLS.

Python's smtplib would happily log in over a plain connection when the server offers no
STARTTLS; here that is refused before any credential is sent.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable
from dataclasses import dataclass

from .tls import TlsPolicy, TransportError, classify

SECURITIES = ("ssl", "starttls")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    security: str  # "ssl" (implicit TLS) | "starttls"
    tls: TlsPolicy = TlsPolicy()
    timeout: float = 20.0


# A plain address (dot-atom local part and domain): the common case, sent as <address>, which
# is what smtplib.quoteaddr makes of it after a full RFC 5322 parse (several µs per address,
# twice per message); anything else still goes through that parse.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                            r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


# smtplib would quietly turn "a@b.test\r\nRCPT TO:<c@d.test>" into <a@b.test>; such an address
# is refused instead, before anything is written.
_LINE_BREAK = re.compile(r"[\r\n\0]")


def smtp_path(address: str) -> str:
    """The <path> of MAIL FROM or RCPT TO for an address, exactly as smtplib writes it;
    SmtpRejected (501, permanent) for an address with a line break."""
    if _LINE_BREAK.search(address):
        raise SmtpRejected(501, f"refused before sending: the address {address!r} contains a line break")
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


class SmtpRejected(Exception):
    """The server refused a message: `permanent` for 5xx, temporary for 4xx."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.permanent = 500 <= code < 600


class SmtpAmbiguous(Exception):
    """The message may or may not have been accepted (the connection broke during DATA)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SmtpSession:
    """One authenticated SMTP conversation; reuse it for consecutive messages."""

    def __init__(self, endpoint: Endpoint, username: str, password: str, helo_name: str = "localhost"):
        self.endpoint = endpoint
        self._username = username
        self._password = password
        self._helo = helo_name
        self._smtp: smtplib.SMTP | None = None

    def open(self) -> "SmtpSession":
        ep = self.endpoint
        try:
            context = ep.tls.context()
            if ep.security == "ssl":
                smtp = smtplib.SMTP_SSL(ep.host, ep.port, local_hostname=self._helo, timeout=ep.timeout,
                                        context=context)
            elif ep.security == "starttls":
                smtp = smtplib.SMTP(ep.host, ep.port, local_hostname=self._helo, timeout=ep.timeout)
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    smtp.close()
                    raise TransportError("starttls_not_offered",
                                         f"{ep.host}:{ep.port} does not offer STARTTLS; MailFlow never "
                                         "sends a password over an unencrypted connection.")
                smtp.starttls(context=context)
            else:
                raise TransportError("bad_security", f"unknown SMTP security {ep.security!r}")
            self._smtp = smtp
            ep.tls.check_pin(smtp.sock)
            smtp.ehlo()
            if not smtp.has_extn("auth"):
                raise TransportError("auth_not_offered", f"{ep.host} does not offer SMTP AUTH.")
            smtp.login(self._username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raise TransportError("auth_failed", "The SMTP server rejected the username or App Password "
                                                f"({exc.smtp_code}).") from None
        except TransportError:
            self.close()
            raise
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise classify(exc, ep.host, ep.port) from None
        return self

    def send(self, mail_from: str, rcpt_to: list[str], message: bytes,
             while_waiting: Callable[[], None] | None = None) -> None:
        """Send one message. A failure before DATA is safe to retry (SmtpRejected or
        TransportError); a failure after the message body went out raises SmtpAmbiguous, because
        the server may have accepted it: such a message must be checked, never resent blindly.

        `while_waiting` runs once, after MAIL FROM is on its way and before its reply is read:
        a moment the caller would otherwise spend blocked on the server (it must not raise)."""
        if self._smtp is None:
            raise RuntimeError("open() first")
        smtp_ = self._smtp
        ep = self.endpoint
        reverse, forwards = smtp_path(mail_from), [smtp_path(r) for r in rcpt_to]  # checked before anything goes
        try:
            # smtplib's mail() and rcpt() (no options), with the wait between command and reply
            # given to the caller
            smtp_.putcmd("mail", f"FROM:{reverse}")
            if while_waiting is not None:
                while_waiting()
            code, text = smtp_.getreply()
            if code != 250:
                smtp_.rset()
                raise SmtpRejected(code, text.decode(errors="replace"))
            for forward in forwards:
                smtp_.putcmd("rcpt", f"TO:{forward}")
                code, text = smtp_.getreply()
                if code not in (250, 251):
                    smtp_.rset()
                    raise SmtpRejected(code, text.decode(errors="replace"))
        except SmtpRejected:
            raise
        except (OSError, smtplib.SMTPException) as exc:
            raise classify(exc, ep.host, ep.port) from None
        try:
            code, text = smtp_.data(message)
        except smtplib.SMTPDataError as exc:  # the server answered DATA or the body with an error
            raise SmtpRejected(exc.smtp_code, exc.smtp_error.decode(errors="replace")) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SmtpAmbiguous(f"the connection to {ep.host} failed while the message was being "
                                f"transferred ({type(exc).__name__}); it may have been delivered") from None
        if code != 250:
            raise SmtpRejected(code, text.decode(errors="replace"))

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    def __enter__(self) -> "SmtpSession":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def check(endpoint: Endpoint, username: str, password: str, helo_name: str = "localhost") -> None:
    """Connect, negotiate TLS and authenticate; raise TransportError saying what failed."""
    with SmtpSession(endpoint, username, password, helo_name):
        pass
