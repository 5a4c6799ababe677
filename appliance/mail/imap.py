"""IMAP client: implicit TLS (993) or STARTTLS (143), TLS 1.2+, verified; LOGIN only inside TLS.

Folder names reach the server only after validate_folder_name(): a name with CR/LF could
otherwise smuggle a second IMAP command into the connection.

What the mailbox sync needs is here too: STATUS and EXAMINE (read-only, so nothing is ever
marked read or expunged), `UID SEARCH`, and IDLE in a form a single selector thread can watch
for thousands of sessions. Reading the messages themselves (chunked `UID FETCH` with BODY.PEEK)
is in imap_fetch.
"""

from __future__ import annotations

import functools
import re
import socket
import ssl
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError, ProtocolError

from .smtp import Endpoint
from .tls import TlsPolicy, TransportError, classify

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


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int | None  # None when the server does not say (RFC 3501 allows it)


class ImapCommandError(Exception):
    """The server refused one command (NO/BAD), e.g. for a folder that does not exist.
    The session itself is still usable."""


@functools.lru_cache(maxsize=32)
def _tls_context(policy: TlsPolicy) -> ssl.SSLContext:
    # One context per trust policy, shared by every connection: a context holds the parsed CA
    # store (hundreds of KB for the system store), and thousands of open sessions must not
    # each carry their own copy.
    return policy.context()


class ImapSession:
    def __init__(self, endpoint: Endpoint, username: str, password: str):
        self.endpoint = endpoint
        self._username = username
        self._password = password
        self.client: imapclient.IMAPClient | None = None
        self.selected: str | None = None
        self.idling = False

    def open(self) -> "ImapSession":
        ep = self.endpoint
        try:
            context = _tls_context(ep.tls)
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
        with self.talking("LIST"):
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

    # -- reading a folder without changing it ---------------------------------------------------

    @contextmanager
    def talking(self, what: str):
        """A dropped or garbled connection becomes TransportError (reconnect); a NO or BAD
        answer to one command becomes ImapCommandError (the session goes on)."""
        if self.client is None:
            raise TransportError("connection_lost", "The IMAP session is closed.")
        try:
            yield
        except (IMAPClientAbortError, ProtocolError, OSError) as exc:
            code = "timeout" if isinstance(exc, TimeoutError) else "connection_lost"
            raise TransportError(code, f"The connection to {self.endpoint.host} broke during {what} "
                                       f"({type(exc).__name__}).") from None
        except IMAPClientError as exc:
            raise ImapCommandError(f"{what}: {str(exc)[:200]}") from None

    def capabilities(self) -> frozenset[bytes]:
        with self.talking("CAPABILITY"):
            return frozenset(c.upper() for c in self.client.capabilities())

    def status(self, folder: str) -> FolderState:
        """STATUS (UIDNEXT UIDVALIDITY): one cheap round trip that tells whether anything is new."""
        folder = validate_folder_name(folder)
        with self.talking("STATUS"):
            got = self.client.folder_status(folder, [b"UIDNEXT", b"UIDVALIDITY"])
        return FolderState(int(got[b"UIDVALIDITY"]), int(got[b"UIDNEXT"]) if b"UIDNEXT" in got else None)

    def examine(self, folder: str) -> FolderState:
        """EXAMINE: select read-only, so no later command can set \\Seen or expunge."""
        folder = validate_folder_name(folder)
        self.selected = None
        with self.talking("EXAMINE"):
            got = self.client.select_folder(folder, readonly=True)
            self._imap().untagged_responses.clear()  # from here on, EXISTS means new mail
        self.selected = folder
        return FolderState(int(got[b"UIDVALIDITY"]), int(got[b"UIDNEXT"]) if b"UIDNEXT" in got else None)

    def new_mail_signalled(self) -> bool:
        """Whether the server announced new mail (EXISTS) in the selected folder since the last
        EXAMINE or call; such announcements arrive with the answers to other commands."""
        untagged = self._imap().untagged_responses
        return bool(untagged.pop("EXISTS", None)) | bool(untagged.pop("RECENT", None))

    def search_from(self, first_uid: int, since: date | None = None) -> list[int]:
        """UIDs >= first_uid in the selected folder (optionally only mail that arrived since a
        day), ascending. `UID SEARCH UID n:*` also answers the highest UID when it is below n
        (RFC 3501: `*` is the largest UID in use), so the answer is filtered."""
        criteria = ["UID", f"{max(1, first_uid)}:*"]
        if since is not None:
            criteria += ["SINCE", since]
        with self.talking("UID SEARCH"):
            found = self.client.search(criteria)
        return sorted(uid for uid in found if uid >= first_uid)

    # -- IDLE (RFC 2177) ----------------------------------------------------------------------

    def idle_start(self) -> None:
        with self.talking("IDLE"):
            self.client.idle()
        self.idling = True

    def idle_done(self) -> bool:
        """End IDLE; returns whether new mail was announced meanwhile."""
        with self.talking("DONE"):
            _, responses = self.client.idle_done()
        self.idling = False
        return any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses) | self.new_mail_signalled()

    def has_buffered_input(self) -> bool:
        """Whether an answer already sits in our buffers, where select() cannot see it: imaplib's
        reader may have read past the IDLE continuation, and TLS may hold decrypted bytes
        (SSLSocket.pending()). Checked before a socket is handed to a selector."""
        sock = self.client.socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        try:
            sock.setblocking(False)
            return bool(self._imap().file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
            return False
        except (OSError, ValueError):
            return True  # broken: let the reader find out
        finally:
            with suppress(OSError):
                sock.settimeout(self.endpoint.timeout)

    def interrupt(self) -> None:
        """Unblock a read in progress in another thread (at shutdown): the socket is shut
        down below TLS, the reader sees the connection end and fails cleanly."""
        client = self.client
        if client is not None:
            try:
                socket.socket.shutdown(client.socket(), socket.SHUT_RDWR)
            except OSError:
                pass

    def fileno(self) -> int:
        return self.client.socket().fileno()

    def noop(self) -> None:
        with self.talking("NOOP"):
            self.client.noop()

    def _imap(self):
        return self.client._imap  # imapclient keeps imaplib's connection here; we read its buffers

    # -- closing --------------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the connection at once, without LOGOUT (shutdown, or a session mid-IDLE).
        Safe to call from another thread to unblock a read in progress."""
        client, self.client = self.client, None
        self.idling = False
        if client is not None:
            try:
                client.shutdown()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                if self.idling:
                    client.idle_done()
                client.logout()
            except (OSError, IMAPClientError, ValueError):
                try:
                    client.shutdown()
                except OSError:
                    pass
        self.idling = False

    def __enter__(self) -> "ImapSession":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def check(endpoint: Endpoint, username: str, password: str) -> Folders:
    """Connect, negotiate TLS, log in and discover the folders; raise TransportError on failure."""
    with ImapSession(endpoint, username, password) as session:
        return session.folders()
