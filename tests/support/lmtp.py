"""Delivery into Dovecot over its LMTP unix socket."""

from __future__ import annotations

import re
import smtplib
from pathlib import Path


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
