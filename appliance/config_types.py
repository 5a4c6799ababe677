"""Value parsers of the option table: raw value (str from env/flag, native from TOML) -> typed value;
ValueError with a sentence for people.

`is_loopback` is here because a parser needs it; config's cross-option checks and the OIDC
provider client use it too.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit


def parse_path(raw: Any) -> Path:
    if not isinstance(raw, (str, Path)) or not str(raw).strip():
        raise ValueError("expected a path")
    return Path(str(raw)).expanduser()


def parse_optional_path(raw: Any) -> Path | None:
    return None if raw in (None, "") else parse_path(raw)


def parse_listen(raw: Any) -> tuple[str, int]:
    if isinstance(raw, (list, tuple)) and len(raw) == 2:
        host, port = str(raw[0]), raw[1]
    else:
        text = str(raw).strip()
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8025")
        host = host.strip("[]")
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ValueError("port must be a number") from None
    if not 0 <= port <= 65535:
        raise ValueError("port must be between 0 and 65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"host {host!r} must be an IP address or localhost") from None
    return host, port


def parse_url(raw: Any) -> str:
    text = str(raw).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError("must not contain a query or fragment")
    return text


def parse_networks(raw: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    items = raw if isinstance(raw, (list, tuple)) else [p for p in str(raw).replace(",", " ").split()]
    try:
        return tuple(ipaddress.ip_network(str(item).strip(), strict=False) for item in items)
    except ValueError as exc:
        raise ValueError(f"expected IP addresses or CIDR ranges ({exc})") from None


def parse_choice(*choices: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        value = str(raw).strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of: {', '.join(choices)}")
        return value
    parse.choices = choices  # type: ignore[attr-defined]
    return parse


def parse_int_range(low: int, high: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ValueError("expected a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return value
    return parse


def parse_text(raw: Any) -> str:
    return str(raw).strip()


def parse_date(raw: Any) -> date:
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw).strip())
    except ValueError:
        raise ValueError("expected a date like 2027-06-30") from None


def parse_oidc_issuer(raw: Any) -> str | None:
    """An OpenID Provider's issuer: https, or http only on a loopback host (tests, development).
    Kept exactly as written (trailing slash included): ID tokens must name it exactly. Empty: off."""
    text = str(raw).strip()
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an https:// URL, e.g. https://accounts.google.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not contain a query, fragment or user name")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("must use https:// (plain http:// is allowed only for a loopback host)")
    return text


_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
# Anyone can open an account at these, so "everyone from this domain" would mean everyone.
PUBLIC_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
    "ymail.com", "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.net",
    "gmx.de", "web.de", "mail.com", "yandex.com", "yandex.ru", "zoho.com", "fastmail.com",
})


def parse_domains(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).replace(",", " ").split()
    domains = []
    for item in items:
        domain = str(item).strip().lower().removeprefix("@")
        if not _DOMAIN.match(domain):
            raise ValueError(f"expected domain names like example.com, got {str(item)!r}")
        if domain in PUBLIC_MAIL_DOMAINS:
            raise ValueError(f"{domain} is a public mail provider: anyone could sign up there and get in; "
                             "invite those users instead")
        if domain not in domains:
            domains.append(domain)
    return tuple(domains)


def parse_label(raw: Any) -> str | None:
    text = str(raw).strip()
    if not text:
        return None
    if len(text) > 40 or not text.isprintable():
        raise ValueError("expected 1 to 40 printable characters")
    return text


def parse_readable_file(raw: Any) -> Path | None:
    if raw in (None, ""):
        return None
    path = parse_path(raw)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return path


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
