"""A real mail stack on loopback for tests and benchmarks.

One rootless Dovecot (IMAP + LMTP) and one aiosmtpd event loop (submission with STARTTLS,
SMTPS with implicit TLS), all inside a fresh temp dir:

    test / MailFlow --IMAPS / IMAP+STARTTLS--> dovecot   127.0.0.2
                    --IMAP, no TLS at all----> dovecot   127.0.0.3 (negative listener)
                    --submission / SMTPS-----> aiosmtpd  127.0.0.2 --LMTP--> dovecot --> Maildir

SMTP hands every message to Dovecot over LMTP instead of writing Maildir files, so Dovecot does
ownership, indexes, IDLE notifications and the Return-Path / Delivered-To headers.

Servers listen on 127.0.0.2, not 127.0.0.1 (see loopback.HOST). The parts live next door:
certs (CA and contexts), loopback (addresses, ports, temp dirs), dovecot (config and process),
lmtp (delivery), smtp_server (aiosmtpd relay) and negative (endpoints a client must refuse).
"""

from __future__ import annotations

import re
import shutil
import ssl
import time
from pathlib import Path

import imapclient

from .certs import client_context, make_certs, server_context
from .dovecot import DEFAULT_FOLDERS, Dovecot, dovecot_conf, write_passwd
from .lmtp import lmtp_send
from .loopback import HOST, NEGATIVE_HOST, free_ports, new_root
from .smtp_server import LoopThread, listen_submission_and_smtps


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain


class MailStack:
    """Dovecot IMAP/LMTP + aiosmtpd submission/SMTPS on loopback, in a fresh temp dir.

    `users` ({email: app_password}) is the single source for Dovecot's passwd-file and the SMTP
    authenticator. Create users before start() when you can: add_users() on a running stack
    takes up to a second until IMAP sees them.
    """

    host = HOST
    nostarttls_host = NEGATIVE_HOST

    def __init__(self, users: dict[str, str], save_sent_copy: bool = False,
                 unknown_recipient: str = "bounce", enforce_sender: bool = True,
                 folders: dict[str, str] | None = None):
        if unknown_recipient not in ("bounce", "reject"):
            raise ValueError(f"unknown_recipient must be 'bounce' or 'reject', "
                             f"not {unknown_recipient!r}")
        self.users = {u.lower(): p for u, p in users.items()}
        self.save_sent_copy = save_sent_copy
        self.unknown_recipient = unknown_recipient
        self.enforce_sender = enforce_sender
        self.folders = dict(DEFAULT_FOLDERS if folders is None else folders)
        sent = [name for name, flag in self.folders.items() if flag == "\\Sent"]
        if save_sent_copy and not sent:
            raise ValueError("save_sent_copy needs a folder with the \\Sent special use")
        self.sent_folder = sent[0] if sent else None
        self.root: Path | None = None
        self.cafile: Path | None = None
        self._dovecot: Dovecot | None = None
        self._smtp: LoopThread | None = None

    def start(self) -> MailStack:
        """Start Dovecot, then SMTP. Call from the main thread (see Dovecot.start)."""
        self.root = new_root()
        try:
            self.cafile = make_certs(self.root / "tls")
            write_passwd(self.root, self.users)
            self.imap_port, self.imaps_port = free_ports(HOST, 2)
            [self.imap_nostarttls_port] = free_ports(NEGATIVE_HOST, 1)
            self._dovecot = Dovecot(self.root)
            self._dovecot.start(dovecot_conf(
                self.root, imap_port=self.imap_port, imaps_port=self.imaps_port,
                nostarttls_port=self.imap_nostarttls_port, folders=self.folders),
                banner=(HOST, self.imap_port))
            self._start_smtp()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_smtp(self) -> None:
        tls = server_context(self.root / "tls")
        self._smtp = LoopThread("mailstack-smtp")
        self.submission_port, self.smtps_port = listen_submission_and_smtps(self._smtp, self, tls)

    def stop(self) -> None:
        """Stop SMTP and Dovecot and remove the temp dir. Safe to call more than once."""
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None
        if self._dovecot is not None:
            self._dovecot.stop()
            self._dovecot = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> MailStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def lmtp_socket(self) -> Path:
        return self.root / "run" / "lmtp"

    def is_local(self, address: str) -> bool:
        local, domain = _split(address.lower())
        return f"{local.split('+')[0]}@{domain}" in self.users

    def sent_copy_address(self, sender: str) -> str:
        """sender+<Sent folder>@domain: lmtp_save_to_detail_mailbox files it into that folder."""
        local, domain = _split(sender)
        detail = f"{local}+{self.sent_folder}"
        if not re.fullmatch(r"[\w.+/=-]+", detail):  # e.g. "[Gmail]/Sent Mail"
            detail = '"' + detail.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{detail}@{domain}"

    def add_users(self, users: dict[str, str]) -> None:
        """Add users; on a running stack IMAP login works once this returns."""
        self.users.update({u.lower(): p for u, p in users.items()})
        if self._dovecot is not None:
            write_passwd(self.root, self.users)
            # Dovecot stats the passwd-file at most once per second.
            time.sleep(1.02 - time.time() % 1)

    def deliver(self, rcpt: str, raw_bytes: bytes, mail_from: str = "sender@external.test") -> None:
        """Inject inbound internet mail for rcpt over LMTP (adds Return-Path, Delivered-To)."""
        lmtp_send(self.lmtp_socket, mail_from, [rcpt], raw_bytes)

    def client_context(self) -> ssl.SSLContext:
        """A client SSLContext that trusts this stack's CA, TLS 1.2 or newer."""
        return client_context(self.cafile)

    def imap(self, user: str) -> imapclient.IMAPClient:
        """A logged-in IMAPClient for user over implicit TLS. Log out when done."""
        client = imapclient.IMAPClient(self.host, self.imaps_port, ssl=True,
                                       ssl_context=self.client_context(), timeout=10)
        client.login(user, self.users[user.lower()])
        return client

    def log_errors(self) -> list[str]:
        """Error/Fatal/Panic lines in dovecot.log; read them before stop()."""
        return self._dovecot.log_errors() if self._dovecot else []
