"""The aiosmtpd side of the stack: an event-loop thread for the listeners, the relay handler that
authenticates, checks the envelope and delivers through Dovecot LMTP, and its bounces."""

from __future__ import annotations

import asyncio
import email.parser
import logging
import re
import secrets
import ssl
import threading
import warnings
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from .lmtp import LmtpError, lmtp_send
from .loopback import HOST

if TYPE_CHECKING:
    from .mailstack import MailStack

SMTP_HOSTNAME = "smtp.example.test"  # explicit: aiosmtpd's default getfqdn() may do DNS


# aiosmtpd 1.4.6 does not count an implicit-TLS connection as TLS, so the SMTPS listener must
# use auth_require_tls=False. The library then warns and logs about that on every connection,
# and logs a deprecation on every successful AUTH because it sets Session.login_data itself.
# Silence exactly those lines.
def _ignore_aiosmtpd_tls_warning() -> None:
    # Called before every SMTPS session rather than once: pytest swaps in a fresh copy of the
    # filter list around every test. filterwarnings() puts it first, so even -W error keeps it.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS",
                            category=UserWarning)


class _QuietAiosmtpd(logging.Filter):
    NOISE = ("auth_required == True but auth_require_tls == False",
             "Session.login_data is deprecated")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


logging.getLogger("mail.log").addFilter(_QuietAiosmtpd())


class LoopThread:
    """An asyncio event loop on its own daemon thread, serving aiosmtpd listeners.

    loop.create_server(port=0) gives the real port without the free-port race and readiness
    probe of aiosmtpd's Controller, and one loop serves all listeners.
    """

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def listen(self, factory, host: str, tls: ssl.SSLContext | None = None) -> int:
        server = self.run(self.loop.create_server(factory, host, 0, ssl=tls))
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.run(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        sessions = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        await self.loop.shutdown_default_executor()


class Relay:
    """aiosmtpd handler and authenticator: checks logins and the envelope against the stack,
    and delivers through Dovecot LMTP.

    Nothing leaves the machine: mail to unknown or non-local recipients is bounced to a local
    sender (or refused at RCPT with unknown_recipient="reject"), otherwise dropped.
    """

    def __init__(self, stack: MailStack):
        self.stack = stack

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        """aiosmtpd authenticator: LOGIN or PLAIN against the stack's users."""
        if mechanism not in ("LOGIN", "PLAIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode().lower()
        ok = self.stack.users.get(login) == auth_data.password.decode()
        # auth_data becomes session.auth_data, which handle_MAIL compares with MAIL FROM.
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.stack.enforce_sender and address.lower() != session.auth_data:
            return f"553 5.7.1 <{address}>: sender address not owned by user {session.auth_data}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.stack.unknown_recipient == "reject" and not self.stack.is_local(address):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        stack, sender = self.stack, envelope.mail_from
        received = (f"Received: from {session.host_name} ([{session.peer[0]}])\r\n"
                    f"\tby {SMTP_HOSTNAME} with ESMTPSA id {secrets.token_hex(8)};\r\n"
                    f"\t{formatdate(localtime=True)}\r\n").encode()
        data = received + envelope.content
        local = [r for r in envelope.rcpt_tos if stack.is_local(r)]
        unknown = [r for r in envelope.rcpt_tos if not stack.is_local(r)]
        jobs = []  # (mail_from, rcpts, data) for LMTP
        if local:
            jobs.append((sender, local, data))
        if stack.save_sent_copy and stack.is_local(sender):
            jobs.append((sender, [stack.sent_copy_address(sender)], data))
        if unknown and stack.is_local(sender):
            jobs.append(("", [sender], build_dsn(sender, unknown, envelope.content)))
        def deliver_all() -> None:
            # One executor call for all deliveries: aiosmtpd cancels this coroutine when the
            # client vanishes mid-transaction, and a provider that files sent mail (Gmail) does
            # so together with accepting the message, never only one of the two.
            for job in jobs:
                lmtp_send(stack.lmtp_socket, *job)

        try:
            await asyncio.get_running_loop().run_in_executor(None, deliver_all)
        except LmtpError as e:
            return f"451 4.3.0 Local delivery failed: {e}"
        return "250 2.0.0 OK: queued"


def listen_submission_and_smtps(loop: LoopThread, stack: MailStack,
                                tls: ssl.SSLContext) -> tuple[int, int]:
    """Serve stack's relay on HOST: submission with STARTTLS, and SMTPS with implicit TLS.
    Return (submission_port, smtps_port)."""
    relay = Relay(stack)

    def factory(implicit_tls: bool):
        def session() -> SMTP:
            if implicit_tls:
                _ignore_aiosmtpd_tls_warning()
            return SMTP(
                relay, hostname=SMTP_HOSTNAME, decode_data=False, enable_SMTPUTF8=True,
                tls_context=None if implicit_tls else tls, require_starttls=not implicit_tls,
                auth_required=True, auth_require_tls=not implicit_tls,
                authenticator=relay.authenticate)
        return session

    return loop.listen(factory(False), HOST), loop.listen(factory(True), HOST, tls)


def build_dsn(sender: str, failed: list[str], original: bytes) -> bytes:
    """An RFC 3464 bounce for failed recipients, as Gmail sends one.

    Raw bytes: Python's email generator cannot serialise a message/delivery-status part built
    from a string. Return-Path: <> comes from delivering it with the null sender.
    """
    headers = re.split(rb"\r?\n\r?\n", original, maxsplit=1)[0]
    msgid = email.parser.BytesHeaderParser().parsebytes(headers + b"\r\n\r\n")["Message-ID"]
    boundary = f"dsn-{secrets.token_hex(8)}"
    reply = (f"In-Reply-To: {msgid}\r\nReferences: {msgid}\r\n" if msgid else "")
    per_rcpt = "".join(
        f"\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: "
        f"User unknown\r\n" for rcpt in failed)
    text = (
        f"From: Mail Delivery Subsystem <mailer-daemon@{SMTP_HOSTNAME}>\r\n"
        f"To: {sender}\r\n"
        f"Subject: Delivery Status Notification (Failure)\r\n"
        f"Date: {formatdate(localtime=True)}\r\n"
        f"Message-ID: {make_msgid(domain=SMTP_HOSTNAME)}\r\n"
        f"{reply}"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n"
        f"\r\n"
        f"Your message could not be delivered to: {', '.join(failed)}\r\n"
        f"The address was not found (550 5.1.1 User unknown).\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n"
        f"\r\n"
        f"Reporting-MTA: dns; {SMTP_HOSTNAME}\r\n"
        f"Arrival-Date: {formatdate(localtime=True)}\r\n"
        f"{per_rcpt}"
        f"--{boundary}\r\n"
        f"Content-Type: text/rfc822-headers\r\n"
        f"\r\n"
    )
    return text.encode() + headers + f"\r\n--{boundary}--\r\n".encode()
