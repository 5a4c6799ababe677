"""Where the local mail servers live: their loopback addresses, free ports and temp dirs."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

# Not 127.0.0.1: Dovecot treats a connection as secured when the remote IP equals the local IP,
# so on 127.0.0.1 plaintext LOGIN would work without STARTTLS. Clients connect from 127.0.0.1
# and must use the IP (the certificate has IP SANs 127.0.0.1-3).
HOST = "127.0.0.2"
NEGATIVE_HOST = "127.0.0.3"


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
