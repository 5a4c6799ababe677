"""Validation of mailbox fields, shared by the API (JSON), the UI (forms) and CSV imports.

Values arrive as strings (forms, CSV) or typed JSON; each problem is reported against its
field so forms show it next to the field and CSV imports next to the line.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from typing import Any

from ..mail.imap import validate_folder_name
from ..mail.providers import CUSTOM, PRESETS, PROVIDER_KEYS
from ..mail.smtp import SECURITIES
from ..mail.tls import check_ca_pem, normalize_fingerprint
from .errors import ValidationError
from .users import email_problem, normalize_email

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_TAG = re.compile(r"^[\w .:/+-]{1,40}$")
_BOOL_TRUE = {"1", "true", "yes", "on", "y"}
_BOOL_FALSE = {"0", "false", "no", "off", "n", ""}
DEFAULTS = {"daily_limit": 30, "min_gap_seconds": 300, "max_gap_seconds": 900, "sending_enabled": True}


def _host(value: Any) -> str:
    text = str(value).strip().lower()
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if not _HOSTNAME.match(text):
        raise ValueError("Enter a host name like smtp.example.com or an IP address.")
    return text


def _int(low: int, high: int):
    def parse(value: Any) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError("Enter a whole number.") from None
        if not low <= number <= high:
            raise ValueError(f"Enter a number from {low} to {high}.")
        return number
    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _BOOL_TRUE:
        return True
    if text in _BOOL_FALSE:
        return False
    raise ValueError("Enter yes or no.")


def _security(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in SECURITIES:
        raise ValueError("Choose ssl (implicit TLS) or starttls.")
    return text


def _email(value: Any) -> str:
    text = normalize_email(str(value))
    if problem := email_problem(text):
        raise ValueError(problem)
    return text


def _text(limit: int):
    def parse(value: Any) -> str:
        text = str(value).strip()
        if len(text) > limit:
            raise ValueError(f"Use at most {limit} characters.")
        if "\r" in text or "\n" in text:
            raise ValueError("Line breaks are not allowed here.")
        return text
    return parse


def _signature(value: Any) -> str:
    text = str(value).replace("\r\n", "\n")
    if len(text) > 5000:
        raise ValueError("Use at most 5000 characters.")
    return text


def _tags(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).replace(";", ",").split(",")
    tags = sorted({str(t).strip().lower() for t in items if str(t).strip()})
    bad = [t for t in tags if not _TAG.match(t)]
    if bad:
        raise ValueError(f"Tags may use letters, digits, spaces and . : / + - _ (not {bad[0]!r}).")
    if len(tags) > 20:
        raise ValueError("At most 20 tags.")
    return tags


def _provider(value: Any) -> str:
    text = str(value).strip().lower() or CUSTOM
    if text not in PROVIDER_KEYS:
        raise ValueError(f"Choose one of: {', '.join(PROVIDER_KEYS)}.")
    return text


def _date(value: Any) -> str:
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise ValueError("Enter a date like 2026-12-01.") from None


PARSERS = {
    "email": _email, "display_name": _text(200), "provider": _provider,
    "smtp_host": _host, "smtp_port": _int(1, 65535), "smtp_security": _security,
    "imap_host": _host, "imap_port": _int(1, 65535), "imap_security": _security,
    "username": _text(320), "reply_to": _email, "signature": _signature, "tags": _tags,
    "daily_limit": _int(1, 10000), "min_gap_seconds": _int(0, 86400), "max_gap_seconds": _int(0, 86400),
    "ramp_start": _int(1, 10000), "ramp_step": _int(1, 1000), "ramp_started_on": _date,
    "sending_enabled": _bool, "save_sent_copy": _bool,
    "sent_folder": validate_folder_name, "junk_folder": validate_folder_name,
}
NULLABLE = {"reply_to", "ramp_start", "ramp_step", "ramp_started_on", "sent_folder", "junk_folder",
            "tls_ca_pem", "tls_pin_sha256"}
REQUIRED_ON_CREATE = ("email", "smtp_host", "smtp_port", "smtp_security", "imap_host", "imap_port",
                      "imap_security", "username", "password")


def parse_mailbox(data: dict, *, existing: dict | None = None) -> tuple[dict, str | None]:
    """Validate `data` (a create, or a partial update of `existing`).
    Returns (fields to store, new password or None to keep the current one)."""
    fields: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, parse in PARSERS.items():
        if name not in data:
            continue
        raw = data[name]
        if (raw is None or (isinstance(raw, str) and not raw.strip())) and name != "tags":
            if name in NULLABLE:
                fields[name] = None
            elif name in ("signature", "display_name"):
                fields[name] = ""
            continue  # a blank required field is reported below if there is no value at all
        try:
            fields[name] = parse(raw)
        except ValueError as exc:
            problems[name] = str(exc)
    _parse_tls(data, fields, problems)

    password = data.get("password")
    if password is not None and not isinstance(password, str):
        problems["password"] = "Expected text."
        password = None
    password = password if password else None  # blank keeps the stored one (forms re-submit it empty)
    if password is not None and len(password) > 1024:
        problems["password"] = "Use at most 1024 characters."

    if existing is None:
        _fill_from_preset(fields)
        fields.setdefault("username", fields.get("email"))
        for name, value in DEFAULTS.items():
            fields.setdefault(name, value)
        if fields.get("ramp_start") and not fields.get("ramp_started_on"):
            fields["ramp_started_on"] = date.today().isoformat()
        for name in REQUIRED_ON_CREATE:
            if name not in problems and not (password if name == "password" else fields.get(name)):
                problems[name] = "This field is required."
    merged = {**(existing or {}), **fields}
    low, high = merged.get("min_gap_seconds"), merged.get("max_gap_seconds")
    if "max_gap_seconds" not in problems and low is not None and high is not None and high < low:
        problems["max_gap_seconds"] = "Must be at least the minimum gap."
    if (merged.get("ramp_start") is None) != (merged.get("ramp_step") is None):
        problems.setdefault("ramp_step", "Set both the ramp start and the daily step, or neither.")
    if problems:
        raise ValidationError(problems)
    return fields, password


def _parse_tls(data: dict, fields: dict, problems: dict) -> None:
    ca, pin = data.get("tls_ca_pem"), data.get("tls_pin_sha256")
    if ca and pin:
        problems["tls_pin_sha256"] = "Choose a CA bundle or a pinned certificate, not both."
        return
    if "tls_ca_pem" in data:
        try:
            fields["tls_ca_pem"] = check_ca_pem(ca) if ca else None
        except ValueError as exc:
            problems["tls_ca_pem"] = f"This is {exc}."
    if "tls_pin_sha256" in data:
        try:
            fields["tls_pin_sha256"] = normalize_fingerprint(pin) if pin else None
        except ValueError as exc:
            problems["tls_pin_sha256"] = str(exc).capitalize() + "."


def _fill_from_preset(fields: dict) -> None:
    preset = PRESETS.get(fields.get("provider", CUSTOM))
    if preset is None:  # most IMAP hosts do not file submitted mail into Sent themselves
        fields.setdefault("save_sent_copy", True)
        return
    for name in ("smtp_host", "smtp_port", "smtp_security", "imap_host", "imap_port", "imap_security"):
        fields.setdefault(name, getattr(preset, name))
    fields.setdefault("save_sent_copy", not preset.saves_sent)
