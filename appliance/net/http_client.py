"""One guarded HTTP POST to a URL someone configured (a webhook endpoint).

The SSRF guard is applied to the addresses actually connected to, not to the URL text: the
host name is resolved once, every address it resolves to is checked (AddressPolicy), and the
socket is connected to a checked address itself. No second lookup happens, so DNS rebinding
between the check and the connection cannot swap in another address. For https the TLS
handshake sends the host name (SNI) and the certificate is verified against that name.
Redirects are never followed; a whole request is bounded by one deadline; at most
MAX_RESPONSE_BYTES of the answer are read.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from .address_policy import AddressPolicy, BlockedAddress

MAX_RESPONSE_BYTES = 64 * 1024
EXCERPT_CHARS = 300
Resolver = Callable[[str, int], list[str]]


class OutboundError(Exception):
    """The request did not get an HTTP answer: a stable code and a sentence for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: list[str] = []
    for info in infos:
        address = info[4][0]
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True)
class OutboundPolicy:
    addresses: AddressPolicy = field(default_factory=AddressPolicy)
    timeout: float = 10.0
    ca_file: str | None = None          # extra CA certificates (an on-prem CRM's private CA)
    resolver: Resolver = system_resolver
    user_agent: str = "MailFlow-Webhooks/1.0"


@dataclass(frozen=True)
class Response:
    status: int
    excerpt: str   # the start of the body, printable characters only
    address: str   # the IP address connected to


def target(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundError("bad_url", "Only http:// and https:// URLs with a host can be reached.")
    if parts.username is not None or parts.password is not None:
        raise OutboundError("bad_url", "A URL with a user name or password is not allowed.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundError("bad_url", "The port of the URL is not valid.") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def checked_addresses(host: str, port: int, policy: OutboundPolicy) -> list[str]:
    """Resolve once and check every address; any blocked address refuses the whole host
    (a name that also points inside the network is not trusted with the other addresses)."""
    try:
        addresses = policy.resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise OutboundError("dns_failed", f"The host name {host} could not be resolved ({exc}).") from None
    if not addresses:
        raise OutboundError("dns_failed", f"The host name {host} has no address.")
    for address in addresses:
        try:
            policy.addresses.check(address)
        except BlockedAddress as exc:
            raise OutboundError("blocked_address", str(exc)) from None
        except ValueError:
            raise OutboundError("dns_failed", f"The resolver returned {address!r}, not an IP address.") from None
    return addresses


def _connect(addresses: list[str], port: int, timeout: float) -> socket.socket:
    last: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            last = exc
    if isinstance(last, (socket.timeout, TimeoutError)):
        raise OutboundError("timeout", f"Connecting to port {port} timed out.")
    raise OutboundError("connect_failed", f"Could not connect to port {port} ({last}).")


def _tls(sock: socket.socket, host: str, policy: OutboundPolicy) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    if policy.ca_file:
        context.load_verify_locations(cafile=policy.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise OutboundError("certificate_untrusted",
                            f"The certificate of {host} is not trusted: {exc.verify_message}.") from None
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        raise OutboundError("tls_failed", f"TLS with {host} failed ({exc}).") from None


def _excerpt(data: bytes) -> str:
    text = data[:EXCERPT_CHARS * 4].decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else " " for ch in text)[:EXCERPT_CHARS]


def post(url: str, body: bytes, headers: dict[str, str], policy: OutboundPolicy) -> Response:
    """POST `body` to `url` under the guard; returns the status (any, 3xx included: nothing
    is followed) or raises OutboundError."""
    scheme, host, port, path = target(url)
    addresses = checked_addresses(host, port, policy)
    deadline = time.monotonic() + policy.timeout
    sock = _connect(addresses, port, policy.timeout)
    address = sock.getpeername()[0]
    if scheme == "https":
        sock = _tls(sock, host, policy)
    # One deadline for the whole exchange: a server trickling bytes cannot hold a worker longer.
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (sock,))
    watchdog.start()
    conn = http.client.HTTPConnection(host, port, timeout=policy.timeout)
    conn.sock = sock  # the socket connected to the checked address: http.client never resolves
    try:
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        default_port = 443 if scheme == "https" else 80
        name = f"[{host}]" if ":" in host else host
        fixed = {"Host": name if port == default_port else f"{name}:{port}", "User-Agent": policy.user_agent,
                 "Content-Length": str(len(body))}
        for name, value in {**fixed, **headers}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read(MAX_RESPONSE_BYTES)
        return Response(response.status, _excerpt(data), address)
    except (socket.timeout, TimeoutError):
        raise OutboundError("timeout", f"No answer within {policy.timeout:g} seconds.") from None
    except (http.client.HTTPException, OSError) as exc:
        if time.monotonic() >= deadline:
            raise OutboundError("timeout", f"No complete answer within {policy.timeout:g} seconds.") from None
        raise OutboundError("protocol_error", f"The connection failed ({exc.__class__.__name__}: {exc}).") from None
    finally:
        watchdog.cancel()
        conn.close()


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
