"""Dovecot (IMAP + LMTP) running rootless from a temp dir: its config, its passwd-file and the
`dovecot -F` process."""

from __future__ import annotations

import grp
import os
import pwd
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from .loopback import HOST, NEGATIVE_HOST

DOVECOT = "/usr/sbin/dovecot"

DEFAULT_FOLDERS = {"Sent": "\\Sent", "Spam": "\\Junk", "Drafts": "\\Drafts", "Trash": "\\Trash"}
MODERN_CIPHERS = ("ALL:!kRSA:!SRP:!kDHd:!DSS:!aNULL:!eNULL:!EXPORT:!DES:!3DES:!MD5:!PSK:!RC4"
                  ":!ADH:!LOW@STRENGTH")


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
