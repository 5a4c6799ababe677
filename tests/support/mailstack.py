"""A real mail stack on loopback for tests and benchmarks.

One rootless Dovecot (IMAP + LMTP) and one aiosmtpd event loop (submission with STARTTLS,
SMTPS with implicit TLS), all inside a fresh temp dir:

    test / MailFlow --IMAPS / IMAP+STARTTLS--> dovecot   127.0.0.2
                    --IMAP, no TLS at all----> dovecot   127.0.0.3 (negative listener)
                    --submission / SMTPS-----> aiosmtpd  127.0.0.2 --LMTP--> dovecot --> Maildir

SMTP hands every message to Dovecot over LMTP instead of writing Maildir files, so Dovecot does
ownership, indexes, IDLE notifications and the Return-Path / Delivered-To headers.

Servers listen on 127.0.0.2, not 127.0.0.1: Dovecot treats a connection as secured when the
remote IP equals the local IP, so on 127.0.0.1 plaintext LOGIN would work without STARTTLS.
Clients connect from 127.0.0.1 and must use the IP (the certificate has IP SANs 127.0.0.1-3).
"""

from __future__ import annotations

import asyncio
import datetime
import email.parser
import grp
import ipaddress
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import warnings
from email.utils import formatdate, make_msgid
from pathlib import Path

import imapclient
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DOVECOT = "/usr/sbin/dovecot"
HOST = "127.0.0.2"
NEGATIVE_HOST = "127.0.0.3"
SMTP_HOSTNAME = "smtp.example.test"  # explicit: aiosmtpd's default getfqdn() may do DNS

DEFAULT_FOLDERS = {"Sent": "\\Sent", "Spam": "\\Junk", "Drafts": "\\Drafts", "Trash": "\\Trash"}
MODERN_CIPHERS = ("ALL:!kRSA:!SRP:!kDHd:!DSS:!aNULL:!eNULL:!EXPORT:!DES:!3DES:!MD5:!PSK:!RC4"
                  ":!ADH:!LOW@STRENGTH")

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


# --- TLS ----------------------------------------------------------------------------------------

def make_certs(tls_dir: Path) -> Path:
    """Write ca.pem, cert.pem and key.pem (EC P-256) into tls_dir; return the CA path.

    A real CA + leaf with SKI/AKI/KU/EKU, so that strict X.509 verification accepts it.
    """
    tls_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MailStack Test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sans = [x509.DNSName("localhost")] + [
        x509.IPAddress(ipaddress.ip_address(f"127.0.0.{i}")) for i in (1, 2, 3)]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tls_dir / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tls_dir / "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tls_dir / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return tls_dir / "ca.pem"


def server_context(tls_dir: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
    return ctx


def client_context(cafile: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def new_root() -> Path:
    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700, and Dovecot running as nobody needs
    # +x on every parent directory (it fails with "stat(.../dovecot.conf) failed").
    return Path(tempfile.mkdtemp(prefix="mailstack-", dir="/tmp"))


def free_ports(host: str, count: int) -> list[int]:
    """Distinct, currently free TCP ports for Dovecot, which needs fixed numbers in its config."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:  # all bound at once, so the kernel cannot hand out one port twice
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --- Dovecot ------------------------------------------------------------------------------------

def _identity() -> tuple[int, int, str, str]:
    """(uid, gid, user, group) that Dovecot runs as: nobody when we are root, since Dovecot
    refuses mail uid 0 even with first_valid_uid = 0; otherwise the current user."""
    pw = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return pw.pw_uid, pw.pw_gid, pw.pw_name, grp.getgrgid(pw.pw_gid).gr_name


def dovecot_conf(root: Path, *, imap_port: int, imaps_port: int, host: str = HOST,
                 nostarttls_port: int | None = None, folders: dict[str, str] = DEFAULT_FOLDERS,
                 tls: str | None = None, import_environment: str = "TZ") -> str:
    """Dovecot config for an instance in root listening on host (plain IMAP with STARTTLS on
    imap_port, implicit TLS on imaps_port). `tls` replaces the TLS policy lines."""
    uid, gid, user, group = _identity()
    tls = tls or f"ssl_min_protocol = TLSv1.2\nssl_cipher_list = {MODERN_CIPHERS}"
    mailboxes = "".join(
        f'  mailbox "{name}" {{\n    auto = subscribe\n'
        + (f"    special_use = {flag}\n" if flag else "") + "  }\n"
        for name, flag in folders.items())
    nostarttls = "" if nostarttls_port is None else f"""
  inet_listener imap_nostarttls {{
    address = {NEGATIVE_HOST}
    port = {nostarttls_port}
  }}"""
    local_nostarttls = "" if nostarttls_port is None else f"""
local {NEGATIVE_HOST} {{
  ssl = no
  disable_plaintext_auth = no
}}"""
    return f"""\
instance_name = {root.name}
# Short: unix socket paths are limited to 107 bytes.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
# Dovecot wipes its children's environment; OPENSSL_CONF must come through here.
import_environment = {import_environment}
protocols = imap lmtp
listen = {host}
shutdown_clients = yes

default_login_user = {user}
default_internal_user = {user}
default_internal_group = {group}
# The default 500 would reject e.g. nobody's or www-data's uid.
first_valid_uid = {uid}
first_valid_gid = 1
# Defaults cap concurrent IMAP sessions at 100.
default_process_limit = 1100
default_client_limit = 4400

ssl = yes
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
{tls}
ssl_prefer_server_ciphers = yes
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_username_format = %Lu
auth_failure_delay = 0

mail_location = maildir:~/Maildir
mail_fsync = never
mailbox_list_index = yes
recipient_delimiter = +
lmtp_save_to_detail_mailbox = yes

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {root}/passwd
  default_fields = uid={uid} gid={gid} home={root}/mail/%Ld/%Ln
}}
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
service imap-login {{
  chroot =
  service_count = 0
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}{nostarttls}
}}
service imap {{
  process_limit = 1100
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}{local_nostarttls}
"""


def write_passwd(root: Path, users: dict[str, str]) -> None:
    """Atomically (re)write Dovecot's passwd-file from the users dict."""
    lines = []
    for user, password in users.items():
        if re.search(r"[:\s]", user + password):
            raise ValueError(f"passwd-file cannot hold user/password {user!r} (':' or space)")
        lines.append(f"{user}:{{PLAIN}}{password}::::::\n")
    path, tmp = root / "passwd", root / "passwd.tmp"
    old = path.stat().st_mtime if path.exists() else 0
    tmp.write_text("".join(lines))
    uid, gid, _, _ = _identity()
    os.chown(tmp, uid, gid)
    # Dovecot reloads the file only when its mtime (whole seconds) or size changes.
    now = time.time()
    os.utime(tmp, (now, max(now, old + 1)))
    os.replace(tmp, path)


class Dovecot:
    """One `dovecot -F` process for the instance in root, running rootless."""

    def __init__(self, root: Path):
        self.root = root
        self.proc: subprocess.Popen | None = None

    def start(self, conf: str, banner: tuple[str, int]) -> None:
        """Start with conf and wait until the plain IMAP listener at banner (host, port) greets.

        Call from the main thread: --pdeathsig fires when the *thread* that started it exits.
        """
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        (self.root / "dovecot.conf").write_text(conf)
        uid, gid, _, _ = _identity()
        cmd = ["setpriv", "--pdeathsig", "TERM", "--", DOVECOT, "-F", "-c",
               str(self.root / "dovecot.conf")]
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{uid}:{gid}", str(self.root)], check=True)
            cmd[1:1] = [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        # Own session so stop() can kill the whole process group: SIGTERM to the master alone
        # takes over a second. pdeathsig stops Dovecot if this Python process dies.
        with open(self.root / "dovecot.stderr", "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)
        self._unlink_auth_penalty()
        self._wait_for_banner(banner)

    def _unlink_auth_penalty(self) -> None:
        # After one failed login anvil delays every later login from that IP by 2-15 s, and
        # Dovecot 2.3 cannot turn that off. The auth process (started on demand) silently skips
        # the penalty when this socket is missing, so remove it before any client connects.
        sock = self.root / "run" / "anvil-auth-penalty"
        self._poll(sock.exists, "create run/anvil-auth-penalty")
        sock.unlink()

    def _wait_for_banner(self, address: tuple[str, int]) -> None:
        def greets() -> bool:
            try:
                with socket.create_connection(address, timeout=2) as s:
                    return s.recv(64).startswith(b"* OK")
            except OSError:
                return False
        self._poll(greets, "greet on the IMAP port")

    def _poll(self, ready, what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not {what}:\n{self._diagnostics()}")
            time.sleep(0.005)

    def _diagnostics(self) -> str:
        texts = [(self.root / name).read_text(errors="replace")
                 for name in ("dovecot.stderr", "dovecot.log") if (self.root / name).exists()]
        return "\n".join(texts)[-4000:]

    def log_errors(self) -> list[str]:
        """Lines of dovecot.log that report an error, fatal error or panic."""
        log = self.root / "dovecot.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return [line for line in text.splitlines()
                if "Error:" in line or "Fatal:" in line or "Panic:" in line]

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        # Always reap: PID 1 here does not reap zombies, and a leftover master.pid would make
        # the next start fail with "Dovecot is already running".
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


# --- LMTP ---------------------------------------------------------------------------------------

class LmtpError(Exception):
    pass


def lmtp_send(socket_path: Path, mail_from: str, rcpts: list[str], data: bytes) -> None:
    """Deliver one message over LMTP; raise LmtpError unless every recipient got it.

    smtplib.LMTP.sendmail() reads only one reply after DATA, so with several recipients the
    next command fails. RFC 2033 sends one reply per accepted recipient; read them all here.
    """
    data = re.sub(rb"\r?\n", b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    # local_hostname: smtplib's default calls getfqdn(), which may do DNS.
    with smtplib.LMTP(str(socket_path), local_hostname="localhost", timeout=10) as lmtp:
        lmtp.ehlo()
        code, msg = lmtp.mail(mail_from, ["BODY=8BITMIME"])
        if code != 250:
            raise LmtpError(f"MAIL FROM:<{mail_from}>: {code} {msg.decode(errors='replace')}")
        for rcpt in rcpts:
            code, msg = lmtp.rcpt(rcpt)
            if code != 250:
                raise LmtpError(f"RCPT TO:<{rcpt}>: {code} {msg.decode(errors='replace')}")
        lmtp.putcmd("data")
        code, msg = lmtp.getreply()
        if code != 354:
            raise LmtpError(f"DATA: {code} {msg.decode(errors='replace')}")
        lmtp.send(re.sub(rb"(?m)^\.", b"..", data) + b".\r\n")
        failed = []
        for rcpt in rcpts:
            code, msg = lmtp.getreply()
            if code != 250:
                failed.append(f"<{rcpt}>: {code} {msg.decode(errors='replace')}")
        if failed:
            raise LmtpError("; ".join(failed))


# --- SMTP ---------------------------------------------------------------------------------------

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


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain


class _Relay:
    """aiosmtpd handler: checks the envelope and delivers through Dovecot LMTP.

    Nothing leaves the machine: mail to unknown or non-local recipients is bounced to a local
    sender (or refused at RCPT with unknown_recipient="reject"), otherwise dropped.
    """

    def __init__(self, stack: MailStack):
        self.stack = stack

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


# --- The stack ----------------------------------------------------------------------------------

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
        relay = _Relay(self)

        def factory(implicit_tls: bool):
            def session() -> SMTP:
                if implicit_tls:
                    _ignore_aiosmtpd_tls_warning()
                return SMTP(
                    relay, hostname=SMTP_HOSTNAME, decode_data=False, enable_SMTPUTF8=True,
                    tls_context=None if implicit_tls else tls, require_starttls=not implicit_tls,
                    auth_required=True, auth_require_tls=not implicit_tls,
                    authenticator=self._authenticate)
            return session

        self._smtp = LoopThread("mailstack-smtp")
        self.submission_port = self._smtp.listen(factory(False), HOST)
        self.smtps_port = self._smtp.listen(factory(True), HOST, tls)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if mechanism not in ("LOGIN", "PLAIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode().lower()
        ok = self.users.get(login) == auth_data.password.decode()
        # auth_data becomes session.auth_data, which handle_MAIL compares with MAIL FROM.
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

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
