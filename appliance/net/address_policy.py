"""Which IP addresses an outbound request may reach (the SSRF guard's rules).

Every address is put in one category; only `public` is reachable by default. `private`
(RFC 1918, IPv6 unique-local) is reachable when an admin allows private networks, and
`loopback` only with its own explicit switch. Everything else (link-local with the cloud
metadata address 169.254.169.254, carrier-grade NAT 100.64/10, multicast, unspecified,
reserved and documentation ranges) is never reachable. IPv6 forms that carry an IPv4 address
(IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96 and 64:ff9b:1::/48,
6to4 2002::/16) are judged by the IPv4 address inside them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.ip_network
PRIVATE = (_V4("10.0.0.0/8"), _V4("172.16.0.0/12"), _V4("192.168.0.0/16"),
           _V4("fc00::/7"), _V4("fec0::/10"))  # fec0::/10: the deprecated site-local range
CGNAT = _V4("100.64.0.0/10")
NAT64 = (_V4("64:ff9b::/96"), _V4("64:ff9b:1::/48"))
SIX_TO_FOUR = _V4("2002::/16")
TEREDO = _V4("2001::/32")

DESCRIPTIONS = {
    "loopback": "a loopback address",
    "private": "a private network address",
    "link_local": "a link-local address (this includes cloud metadata services)",
    "shared": "a carrier-grade NAT address (100.64.0.0/10)",
    "multicast": "a multicast address",
    "unspecified": "an unspecified address",
    "reserved": "a reserved or non-public address",
}


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    value = int(ip)
    if value >> 32 == 0 and value > 1:          # IPv4-compatible ::a.b.c.d (not :: or ::1)
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if any(ip in net for net in NAT64):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in SIX_TO_FOUR:
        return ip.sixtofour
    return None


def category(ip: IPAddress) -> str:
    """loopback | private | link_local | shared | multicast | unspecified | reserved | public."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "link_local"
        inner = embedded_ipv4(ip)
        if inner is not None:
            return category(inner)
        if ip in TEREDO:
            return "reserved"
    if ip.is_unspecified or (ip.version == 4 and ip in _V4("0.0.0.0/8")):
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if ip.version == 4 and ip in CGNAT:
        return "shared"
    if any(ip.version == net.version and ip in net for net in PRIVATE):
        return "private"
    if not ip.is_global or ip.is_reserved:
        return "reserved"
    return "public"


class BlockedAddress(Exception):
    def __init__(self, ip: str, kind: str, hint: str = ""):
        super().__init__(f"{ip} is {DESCRIPTIONS.get(kind, kind)}; webhooks may not reach it.{hint}")
        self.ip = ip
        self.kind = kind


@dataclass(frozen=True)
class AddressPolicy:
    allow_private: bool = False
    allow_loopback: bool = False

    def check(self, address: str) -> IPAddress:
        """The parsed address, or BlockedAddress saying why it may not be reached."""
        ip = ipaddress.ip_address(address)
        kind = category(ip)
        if kind == "public" or (kind == "private" and self.allow_private) or \
                (kind == "loopback" and self.allow_loopback):
            return ip
        hint = {"private": " An admin can allow private networks under Settings → Webhooks.",
                "loopback": " Loopback is allowed only by the webhook_allow_loopback option."}.get(kind, "")
        raise BlockedAddress(str(ip), kind, hint)
