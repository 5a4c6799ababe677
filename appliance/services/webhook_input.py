"""What people may configure on a webhook: the URL, the events, a description, a grace period.

URLs are checked when saved for everything the text alone can tell (scheme, no credentials,
length, a host that is a name or a canonically written IP address, IP literals the SSRF guard
would refuse). The guard itself runs again on the addresses actually connected to at delivery
time (appliance/net/http_client.py): a name that resolves to a blocked address is refused there.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from ..net.address_policy import AddressPolicy, BlockedAddress

EVENT_TYPES = ("email.sent", "email.bounced", "reply.received", "auto_reply.received", "lead.unsubscribed",
               "lead.status_changed", "campaign.launched", "campaign.paused", "campaign.completed",
               "mailbox.error")
EVENT_DESCRIPTIONS = {
    "email.sent": "a sequence step was sent",
    "email.bounced": "a sent email bounced",
    "reply.received": "a lead replied",
    "auto_reply.received": "an out-of-office or other automatic reply came in",
    "lead.unsubscribed": "a lead unsubscribed",
    "lead.status_changed": "a lead's status changed",
    "campaign.launched": "a campaign was launched",
    "campaign.paused": "a campaign was paused",
    "campaign.completed": "every lead of a campaign finished its sequence",
    "mailbox.error": "a mailbox failed its check and went to error, or was paused",
}
TEST_EVENT = "webhook.test"
ALL_EVENTS = "*"
MAX_URL = 2048
MAX_DESCRIPTION = 200
MAX_GRACE_HOURS = 7 * 24
DEFAULT_GRACE_HOURS = 24
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DOTTED_QUAD = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
_NUMERIC_LABEL = re.compile(r"^(\d+|0x[0-9a-f]*)$")


def _host(raw_host: str, policy: AddressPolicy) -> str:
    """The host as stored (IDNA for names), or ValueError with a sentence."""
    if raw_host.startswith("["):
        literal = raw_host[1:-1]
        if "%" in literal:
            raise ValueError("An IPv6 address with a zone (%…) cannot be used.")
        try:
            ip = ipaddress.IPv6Address(literal)
        except ValueError:
            raise ValueError("The IPv6 address in brackets is not valid.") from None
        _check(str(ip), policy)
        return f"[{ip.compressed}]"
    host = raw_host.lower().rstrip(".")
    if not host:
        raise ValueError("Enter a host name.")
    if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        # Host names never end in a number: this is an IPv4 address, and only the plain
        # four-decimal spelling is accepted (2130706433, 0x7f000001, 0177.0.0.1 and 127.1
        # are all 127.0.0.1 to a resolver).
        if not _DOTTED_QUAD.match(host):
            raise ValueError("Write an IPv4 address as four decimal numbers, like 192.0.2.10 "
                             "(decimal, hex, octal or shortened forms are refused).")
        _check(host, policy)
        return host
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("The host name is not valid.") from None
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in ascii_host.split(".")):
        raise ValueError("The host name is not valid.")
    if ascii_host == "localhost" or ascii_host.endswith(".localhost"):
        _check("127.0.0.1", policy)
    return ascii_host


def _check(address: str, policy: AddressPolicy) -> None:
    try:
        policy.check(address)
    except BlockedAddress as exc:
        raise ValueError(str(exc)) from None


def _split_netloc(netloc: str) -> tuple[str, int | None]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise ValueError("The IPv6 address needs a closing bracket.")
        host, rest = netloc[:end + 1], netloc[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError("The host is not valid.")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text = netloc.partition(":")
        if ":" in port_text:
            raise ValueError("Put an IPv6 address in brackets, like http://[2001:db8::1]/.")
        port_text = port_text if sep else None
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError("The port must be a number from 1 to 65535.")
    return host, int(port_text)


def parse_url(value: object, policy: AddressPolicy) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("Enter the URL that receives the events, like https://crm.example.com/hooks/mailflow.")
    text = value.strip()
    if len(text) > MAX_URL:
        raise ValueError(f"Use at most {MAX_URL} characters.")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError("A URL cannot contain spaces or control characters.")
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("Use an https:// (or, on a private network, http://) URL.")
    if "@" in parts.netloc:
        raise ValueError("Do not put a user name or password in the URL; receivers check the signature instead.")
    if parts.fragment:
        raise ValueError("A URL with a #fragment cannot be used.")
    if not (parts.path + parts.query).isascii():
        raise ValueError("Percent-encode non-ASCII characters in the path and query.")
    raw_host, port = _split_netloc(parts.netloc)
    host = _host(raw_host, policy)
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path or '/'}{'?' + parts.query if parts.query else ''}"


def parse_events(value: object) -> list[str]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("Expected a list of event types, like [\"reply.received\", \"email.bounced\"].")
    chosen = sorted({v.strip() for v in value if v.strip()})
    if not chosen:
        raise ValueError("Choose at least one event (or \"*\" for all).")
    unknown = [v for v in chosen if v not in EVENT_TYPES and v != ALL_EVENTS]
    if unknown:
        raise ValueError(f"Unknown event type {unknown[0][:60]!r}; choose among: {', '.join(EVENT_TYPES)}, or *.")
    return [ALL_EVENTS] if ALL_EVENTS in chosen else chosen


def parse_description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("Expected text.")
    text = " ".join(value.split())
    if len(text) > MAX_DESCRIPTION:
        raise ValueError(f"Use at most {MAX_DESCRIPTION} characters.")
    return text


def parse_enabled(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("Expected true or false.")


def parse_grace_hours(value: object) -> int:
    if value is None or value == "":
        return DEFAULT_GRACE_HOURS
    if isinstance(value, bool):
        raise ValueError("Expected a whole number of hours.")
    try:
        hours = int(value)
    except (TypeError, ValueError):
        raise ValueError("Expected a whole number of hours.") from None
    if not 0 <= hours <= MAX_GRACE_HOURS:
        raise ValueError(f"Choose from 0 to {MAX_GRACE_HOURS} hours.")
    return hours
