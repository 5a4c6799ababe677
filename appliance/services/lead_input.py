"""Validation of lead fields, shared by the API (JSON), the UI (forms) and CSV imports.

Each problem is reported against its field, so a form shows it next to the field and a CSV
import next to the line. Addresses are normalised (trimmed, lower case, IDN domains in their
ASCII form) because the address is what makes a lead unique.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from typing import Any

from .errors import ValidationError
from .users import email_problem

STATUSES = ("new", "contacted", "replied", "interested", "not_interested", "meeting_booked", "won", "lost",
            "unsubscribed", "bounced")
CONSENTS = ("express", "implied_business", "implied_relationship", "unknown")
FIELDS = ("email", "first_name", "last_name", "company", "title", "phone", "website", "timezone", "status",
          "consent", "source")
DEFAULTS = {"first_name": "", "last_name": "", "company": "", "title": "", "phone": "", "website": "",
            "timezone": "", "status": "new", "consent": "unknown", "source": ""}
REQUIRED_CHOICES = {"status": STATUSES, "consent": CONSENTS}
READ_ONLY = frozenset({"id", "created_at", "updated_at"})
# Shown on a lead but changed elsewhere (the inbox sets the label, bounces count themselves):
# accepted and ignored in an update, so a lead fetched, edited and sent back just works.
SET_ELSEWHERE = frozenset({"label", "soft_bounces"})
# Names a custom field may not take: the lead's own fields and the columns of an export.
RESERVED = frozenset(FIELDS) | READ_ONLY | {"tags", "email_domain"}
MAX_TAGS = 20
MAX_CUSTOM_FIELDS = 50
MAX_CUSTOM_VALUE = 2000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_TAG = re.compile(r"^[\w .:/+-]{1,40}$")
# at least three digits; then digits, spaces and + ( ) . / -; an optional extension
_PHONE = re.compile(r"^(?=(?:\D*\d){3})\+?[0-9()./ -]{3,40}(?:\s*(?:x|ext\.?|#)\s*[0-9]{1,6})?$", re.I)
# http(s)://host[:port][/path...] or a bare host name with a dot, no spaces
# (international names allowed: a label is letters, digits and inner hyphens)
_URL = re.compile(r"^(?:https?://)?(?=[^/?#:]{4,253}(?:[/?#:]|$))(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+"
                  r"[^\W\d_][\w-]{0,62}\.?(?::[0-9]{1,5})?(?:[/?#]\S*)?$", re.I)
_KEY_JUNK = re.compile(r"[^a-z0-9]+")


@functools.cache
def _zones() -> dict[str, str]:
    """IANA zone names by their lower-case form (the list is read from disk once)."""
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def _plain(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("Expected text.")
    return str(value)


def normalize_email(value: Any) -> str:
    """name@example.com from user input, or ValueError with the reason."""
    text = _plain(value)
    if "\r" in text or "\n" in text:
        raise ValueError("Line breaks are not allowed in an address.")
    text = text.strip().lower()
    if "<" in text or ">" in text or '"' in text:
        raise ValueError("Enter only the address, like name@example.com, without a display name.")
    if text.startswith("mailto:"):
        text = text[7:]
    if not text.isascii():
        local, at, domain = text.rpartition("@")
        if at and domain and not domain.isascii():
            try:
                text = f"{local}@{domain.encode('idna').decode('ascii')}"
            except UnicodeError:
                raise ValueError("The domain of this address is not valid.") from None
    if problem := email_problem(text):
        raise ValueError(problem)
    return text


# The parsers below take text (clean() turns numbers into text first).

def _text(limit: int):
    def parse(text: str) -> str:
        text = text.strip()
        if len(text) > limit:
            raise ValueError(f"Use at most {limit} characters.")
        if _CONTROL.search(text):
            raise ValueError("Line breaks and control characters are not allowed here.")
        return text
    return parse


_text50 = _text(50)
_text64 = _text(64)
_text500 = _text(500)


def _phone(text: str) -> str:
    text = _text50(text)
    if text and not _PHONE.match(text):
        raise ValueError("Enter a phone number using digits, spaces and + ( ) - . (for example +49 30 1234567).")
    return text


def _website(text: str) -> str:
    text = _text500(text)
    if text and not _URL.match(text):
        raise ValueError("Enter a web address like https://example.com or example.com.")
    return text


def _timezone(text: str) -> str:
    text = _text64(text)
    if not text:
        return text
    name = _zones().get(text.lower())
    if name is None:
        raise ValueError("Enter an IANA time zone like Europe/Berlin or America/New_York.")
    return name


def _choice(options: tuple[str, ...], label: str):
    def parse(text: str) -> str:
        choice = text.strip().lower().replace("-", "_").replace(" ", "_")
        if choice not in options:
            raise ValueError(f"Choose one of: {', '.join(options)} (not the {label} {text.strip()[:40]!r}).")
        return choice
    return parse


def parse_tags(value: Any) -> list[str]:
    """Tags from a list or from text separated by , ; or |: trimmed, lower case, unique, sorted."""
    if isinstance(value, list):
        if len(value) > MAX_TAGS * 5:
            raise ValueError(f"At most {MAX_TAGS} tags.")
        return list(_tags(tuple(_plain(t) for t in value)))
    text = _plain(value)
    if len(text) > MAX_TAGS * 50:
        raise ValueError(f"At most {MAX_TAGS} tags of up to 40 characters.")
    return list(_tags(tuple(re.split(r"[,;|]", text))))


@functools.lru_cache(maxsize=4096)  # imports repeat the same few tag lists row after row
def _tags(items: tuple[str, ...]) -> tuple[str, ...]:
    tags = sorted({t.strip().lower() for t in items if t.strip()})
    for tag in tags:
        if not _TAG.match(tag):
            raise ValueError(f"Tags may use letters, digits, spaces and . : / + - _ up to 40 characters "
                             f"(not {tag[:50]!r}).")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"At most {MAX_TAGS} tags.")
    return tuple(tags)


def custom_key(name: Any) -> str:
    """A custom field's name as templates use it: lower case letters, digits and _, e.g.
    "LinkedIn URL" -> linkedin_url and "2024 Revenue" -> _2024_revenue. '' when nothing is left."""
    key = _KEY_JUNK.sub("_", str(name).strip().lower()).strip("_")[:63]
    return "_" + key if key[:1].isdigit() else key


def custom_value(value: Any) -> str:
    text = _plain(value)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.strip()
    if len(text) > MAX_CUSTOM_VALUE:
        raise ValueError(f"Use at most {MAX_CUSTOM_VALUE} characters.")
    if _CONTROL_MULTILINE.search(text):
        raise ValueError("Control characters are not allowed.")
    return text


def parse_custom(value: Any, *, existing: dict | None = None) -> dict[str, str]:
    """A custom-field object merged into `existing` (a merge patch: null or "" removes a field)."""
    if not isinstance(value, dict):
        raise ValueError("Expected an object of field names and values.")
    merged = dict(existing or {})
    for name, raw in value.items():
        key = custom_key(name)
        if not key:
            raise ValueError(f"{str(name)[:40]!r} is not a usable field name (use letters, digits and _).")
        if key in RESERVED:
            raise ValueError(f"{key} is a lead field, not a custom field.")
        text = "" if raw is None else custom_value(raw)
        if text:
            merged[key] = text
        else:
            merged.pop(key, None)
    if len(merged) > MAX_CUSTOM_FIELDS:
        raise ValueError(f"At most {MAX_CUSTOM_FIELDS} custom fields.")
    return merged


PARSERS = {
    "email": normalize_email, "first_name": _text(200), "last_name": _text(200), "company": _text(200),
    "title": _text(200), "phone": _phone, "website": _website, "timezone": _timezone,
    "status": _choice(STATUSES, "status"), "consent": _choice(CONSENTS, "consent basis"), "source": _text(200),
}


def clean(data: dict, *, existing: dict | None = None) -> tuple[dict, dict[str, str]]:
    """Validate `data`, a new lead (existing None) or a partial update of `existing`.

    Returns (fields, problems). Fields hold only what `data` sets, plus `tags` (list) and
    `custom` (the merged dict) when given; a blank text field clears it on update, and is
    left at its default on create. The caller decides how to report problems."""
    fields: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, raw in data.items():
        parse = PARSERS.get(name)
        try:
            if parse is not None:
                if raw is not None:
                    raw = _plain(raw)
                if raw is None or not raw.strip():
                    if name == "email":
                        raise ValueError("This field is required.")
                    if name in REQUIRED_CHOICES:
                        if existing is None:
                            continue  # the default applies
                        raise ValueError(f"Choose one of: {', '.join(REQUIRED_CHOICES[name])}.")
                    fields[name] = ""
                    continue
                fields[name] = parse(raw)
            elif name == "tags":
                fields["tags"] = [] if raw is None else parse_tags(raw)
            elif name == "custom":
                fields["custom"] = parse_custom({} if raw is None else raw,
                                                existing=(existing or {}).get("custom"))
            elif name not in READ_ONLY | SET_ELSEWHERE:
                problems[name] = "Unknown field; put your own fields in `custom`."
        except ValueError as exc:
            problems[name] = str(exc)
    if existing is None and "email" not in data:
        problems["email"] = "This field is required."
    return fields, problems


def clean_text(data: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """clean() for a new lead whose values are all non-blank text (a CSV row): the fast path."""
    fields: dict[str, str] = {}
    problems: dict[str, str] = {}
    for name, text in data.items():
        try:
            fields[name] = PARSERS[name](text)
        except ValueError as exc:
            problems[name] = str(exc)
    if "email" not in data:
        problems["email"] = "This field is required."
    return fields, problems


def parse_lead(data: dict, *, existing: dict | None = None) -> dict:
    """clean(), raising ValidationError with every problem."""
    if not isinstance(data, dict):
        raise ValidationError({"body": "Expected a JSON object."}, "The request body is not a JSON object.")
    fields, problems = clean(data, existing=existing)
    if problems:
        raise ValidationError(problems)
    return fields


def describe(problems: dict[str, str]) -> str:
    """Problems as one line, for a CSV row's error."""
    return "; ".join(f"{name}: {message}" for name, message in problems.items())
