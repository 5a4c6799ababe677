"""Building outbound messages: RFC 5322-clean MIME, never a CR or LF inside a header value.

A text part always; an HTML alternative when the campaign uses HTML. List-Unsubscribe carries
a mailto: and an https: URL, with List-Unsubscribe-Post for RFC 8058 one-click.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

# CR and LF, NUL, and every other character Python counts as a line boundary (\x85, \u2028 ...):
# the email package refuses those too, and some mail software breaks lines at them.
_FORBIDDEN = re.compile("[\r\n\0\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Headers stay on one line up to RFC 5322's hard limit of 998 characters: the email package
# would otherwise fold an unbreakable List-Unsubscribe URL onto a continuation line of its own,
# which some receivers read with a leading space.
POLICY = SMTP.clone(max_line_length=998)


class HeaderInjection(ValueError):
    """A header value contained CR, LF or NUL."""


def has_line_break(value: str) -> bool:
    return _FORBIDDEN.search(value) is not None


def clean(value: str, what: str) -> str:
    if has_line_break(value):
        raise HeaderInjection(f"{what} must not contain line breaks")
    return value


def new_message_id(domain: str) -> str:
    """<random@sender-domain>: generated and stored before the SMTP transaction."""
    return make_msgid(idstring=secrets.token_hex(6), domain=clean(domain, "domain"))


@dataclass
class Outbound:
    from_email: str
    from_name: str
    to_email: str
    subject: str
    text: str
    message_id: str
    date: object  # datetime
    html: str | None = None
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    unsubscribe_mailto: str | None = None
    unsubscribe_url: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def build(msg: Outbound) -> bytes:
    m = EmailMessage(policy=POLICY)
    m["From"] = Address(display_name=clean(msg.from_name, "sender name"), addr_spec=clean(msg.from_email, "From"))
    m["To"] = clean(msg.to_email, "To")
    m["Subject"] = clean(msg.subject, "Subject")
    m["Date"] = format_datetime(msg.date)
    m["Message-ID"] = clean(msg.message_id, "Message-ID")
    if msg.reply_to:
        m["Reply-To"] = clean(msg.reply_to, "Reply-To")
    if msg.in_reply_to:
        m["In-Reply-To"] = clean(msg.in_reply_to, "In-Reply-To")
        m["References"] = " ".join(clean(r, "References") for r in (msg.references or [msg.in_reply_to]))
    targets = []
    if msg.unsubscribe_mailto:
        targets.append(f"<mailto:{clean(msg.unsubscribe_mailto, 'unsubscribe address')}>")
    if msg.unsubscribe_url:
        targets.append(f"<{clean(msg.unsubscribe_url, 'unsubscribe URL')}>")
    if targets:
        m["List-Unsubscribe"] = ", ".join(targets)
    if msg.unsubscribe_url:
        m["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in msg.extra_headers.items():
        m[clean(name, "header name")] = clean(value, name)
    m.set_content(msg.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if msg.html is not None:
        m.add_alternative(msg.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return m.as_bytes()
