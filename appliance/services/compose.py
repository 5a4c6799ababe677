"""Composing one email of a campaign for one lead: template values, the chosen variant,
spintax seeded per lead and step (so preview and send agree), the thread of follow-ups,
and the CAN-SPAM/CASL footer with the sender identity and the unsubscribe link."""

from __future__ import annotations

import html as html_lib
import json
import random
import re
from dataclasses import dataclass

from .. import templating
from . import sender_identity

LEAD_FIELDS = ("email", "first_name", "last_name", "company", "title", "phone", "website", "timezone")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None
    variant: str


def lead_values(lead) -> dict[str, str]:
    values = {name: lead[name] or "" for name in LEAD_FIELDS}
    custom = lead["custom"]
    for key, value in (json.loads(custom) if isinstance(custom, str) else custom or {}).items():
        values.setdefault(key, "" if value is None else str(value))
    return values


def sender_values(mailbox, identity: dict) -> dict[str, str]:
    return {"sender_name": mailbox["display_name"] if mailbox else "",
            "sender_email": mailbox["email"] if mailbox else "",
            "signature": mailbox["signature"] if mailbox else "",
            "sender_company": identity.get("company", ""), "sender_address": identity.get("postal_address", ""),
            "sender_website": identity.get("website", "")}


def rng_for(lead_id: int, campaign_id: int, position: int) -> random.Random:
    return random.Random(f"{campaign_id}:{lead_id}:{position}")


def pick_variant(variants: list[dict], rng: random.Random) -> dict:
    weights = [v["weight"] for v in variants]
    return rng.choices(variants, weights=weights)[0] if sum(weights) else variants[0]


def footer(identity: dict, unsubscribe_url: str) -> str:
    """The sender identity (CAN-SPAM/CASL) and the unsubscribe link, under every message."""
    return f"{sender_identity.footer_text(identity)}\nUnsubscribe: {unsubscribe_url}".lstrip()


def _subject(variant: dict, values: dict, rng: random.Random) -> str:
    return templating.render(templating.parsed(variant["subject"]), values, rng) if variant["subject"] else ""


def render_step(*, campaign, steps: list[dict], position: int, lead, mailbox, identity: dict,
                unsubscribe_url: str, variant: dict | None = None, thread_subject: str | None = None) -> Rendered:
    """Raises templating.MissingValue when the lead lacks a value the template needs.
    The same lead, campaign and step always give the same variant and spintax choices.
    `thread_subject` is the subject the first message really went out with, when it has."""
    values = {**lead_values(lead), **sender_values(mailbox, identity), "unsubscribe_url": unsubscribe_url}
    rng = rng_for(lead["id"], campaign["id"], position)
    chosen = variant or pick_variant(steps[position]["variants"], rng)
    subject = _subject(chosen, values, rng)
    if not subject and position > 0:
        # a follow-up without a subject replies in the thread: "Re: " + what step 1 said to this lead
        if thread_subject is None:
            first_rng = rng_for(lead["id"], campaign["id"], 0)
            thread_subject = _subject(pick_variant(steps[0]["variants"], first_rng), values, first_rng)
        subject = thread_subject if thread_subject.lower().startswith("re:") else "Re: " + thread_subject
    is_html = bool(campaign["html"])
    body = templating.render(templating.parsed(chosen["body"]), values, rng, escape_html=is_html)
    text = html_to_text(body) if is_html else body
    if campaign["unsubscribe_footer"]:
        lines = footer(identity, unsubscribe_url)
        text = f"{text.rstrip()}\n\n--\n{lines}\n"
        if is_html:
            body += "<hr><p>" + "<br>".join(html_lib.escape(line) for line in lines.splitlines()) + "</p>"
    return Rendered(subject=subject, text=text, html=body if is_html else None, variant=chosen["label"])


def html_to_text(markup: str) -> str:
    """The plain-text part of an HTML email (every message carries one)."""
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>", "\n", markup)
    return html_lib.unescape(re.sub(r"<[^>]+>", "", text)).strip()
