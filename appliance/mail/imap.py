"""IMAP client: implicit TLS (993) or STARTTLS (143), TLS 1.2+, verified; LOGIN only inside TLS.

Folder names reach the server only after validate_folder_name(): a name with CR/LF could
otherwise smuggle a second IMAP command into the connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from .smtp import Endpoint
from .tls import TransportError, classify

SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "[Gmail]/Sent Mail", "INBOX.Sent",
              "INBOX/Sent", "Gesendet", "Gesendete Elemente", "Envoyés", "Enviados", "Posta inviata")
JUNK_NAMES = ("Spam", "Junk", "Junk Email", "Junk E-mail", "[Gmail]/Spam", "Bulk Mail", "INBOX.Spam",
              "INBOX.Junk", "INBOX/Spam", "Junk-E-Mail", "Courrier indésirable", "Correo no deseado")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_folder_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 255 or _CONTROL.search(name):
        raise ValueError("a folder name must be 1-255 characters without control characters (CR, LF, NUL)")
    return name


@dataclass(frozen=True)
class Folders:
    inbox: str
    sent: str | None
    junk: str | None
    all: tuple[str, ...]


class ImapSession:
    def __init__(self, endpoint: Endpoint, username: str, password: str):
        self.endpoint = endpoint
        self._username = username
        self._password = password
        self.client: imapclient.IMAPClient | None = None

    def open(self) -> "ImapSession":
        ep = self.endpoint
        try:
            context = ep.tls.context()
            if ep.security == "ssl":
                client = imapclient.IMAPClient(ep.host, ep.port, ssl=True, ssl_context=context,
                                               timeout=ep.timeout)
            elif ep.security == "starttls":
                client = imapclient.IMAPClient(ep.host, ep.port, ssl=False, timeout=ep.timeout)
                if b"STARTTLS" not in client.capabilities():
                    client.shutdown()
                    raise TransportError("starttls_not_offered",
                                         f"{ep.host}:{ep.port} does not offer STARTTLS; MailFlow never "
                                         "sends a password over an unencrypted connection.")
                client.starttls(context)
            else:
                raise TransportError("bad_security", f"unknown IMAP security {ep.security!r}")
            self.client = client
            ep.tls.check_pin(client.socket())
            client.login(self._username, self._password)
        except LoginError:
            self.close()
            raise TransportError("auth_failed", "The IMAP server rejected the username or App Password.") from None
        except TransportError:
            self.close()
            raise
        except (OSError, IMAPClientError) as exc:
            self.close()
            raise classify(exc, ep.host, ep.port) from None
        return self

    def folders(self) -> Folders:
        listing = self.client.list_folders()
        names = tuple(name for _, _, name in listing)
        by_flag: dict[bytes, str] = {}
        for flags, _, name in listing:
            for flag in flags:
                by_flag.setdefault(flag.lower() if isinstance(flag, bytes) else flag.encode().lower(), name)

        def pick(flag: bytes, fallbacks: tuple[str, ...]) -> str | None:
            if flag in by_flag:
                return by_flag[flag]
            lowered = {n.lower(): n for n in names}
            return next((lowered[f.lower()] for f in fallbacks if f.lower() in lowered), None)

        return Folders(inbox="INBOX", sent=pick(b"\\sent", SENT_NAMES), junk=pick(b"\\junk", JUNK_NAMES),
                       all=names)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.logout()
            except (OSError, IMAPClientError):
                try:
                    client.shutdown()
                except OSError:
                    pass

    def __enter__(self) -> "ImapSession":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def check(endpoint: Endpoint, username: str, password: str) -> Folders:
    """Connect, negotiate TLS, log in and discover the folders; raise TransportError on failure."""
    with ImapSession(endpoint, username, password) as session:
        return session.folders()
