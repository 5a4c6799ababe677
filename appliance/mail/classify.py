"""What an inbound message is: a human reply, a bounce, an automatic reply, a spam complaint, an
unsubscribe request, or something else.

`classify(raw)` never raises: inbound mail is hostile and often broken, and garbage, empty input,
broken MIME, unknown charsets, any line endings and huge headers all get an answer ("other" at
worst). It reads at most the first 4 MiB of a message and the first 256 KiB of each part.
The caller matches `message_ids` against the Message-IDs of the messages it sent.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from . import autoreply, bounces
from .mime_view import MAX_INPUT, PART_LIMIT, View, as_bytes, view_from_email, view_from_text

KINDS = ("reply", "bounce", "auto_reply", "complaint", "unsubscribe", "other")
MAX_IDS = 50

_RECEIVING_HEADERS = ("to", "cc", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
_ORIGINAL_ID_HEADER = re.compile(r"^(?:x-)?(?:[\w-]*-)?original-message-id$")
_REPLY_PREFIX = re.compile(r"^(?:\s*(?:re|aw|fwd?|wg|tr|sv|vs|rv|r|antw|odp|ref|res|enc)\s*(?:\[\d{1,3}\])?\s*:)+",
                           re.I)
_QUOTE_HEADER = re.compile(r"^(?:on\b.{0,300}\bwrote:?$|am\b.{0,300}\bschrieb|le\b.{0,300}\ba [ée]crit|el\b.{0,300}"
                           r"\bescribi[óo]|-{3,}\s*(?:original|urspr[üu]ngliche)|from:\s|von:\s|de\s?:\s)", re.I)
_UNSUBSCRIBE = re.compile(
    r"^(?:(?:please|pls|kindly|bitte|merci de|por favor)\s+)?"
    r"(?:unsubscribe(?: me)?|remove me(?: from (?:your|this|the) (?:mailing |email )?list)?|stop|opt[ -]?out"
    r"|opt me out|take me off(?: (?:your|this|the) (?:mailing |email )?list)?|abmelden|austragen|abbestellen"
    r"|(?:me )?d[ée]sinscri(?:re|ption|vez[ -]moi)|(?:me )?d[ée]sabonn(?:er|ement|ez[ -]moi)"
    r"|(?:darme|dar|d[ée]me|darse) de baja|baja)"
    r"(?:\s+(?:please|thanks|thank you|bitte|danke|merci|gracias|por favor))?$", re.I)


@dataclass(frozen=True)
class Classification:
    kind: str  # one of KINDS
    message_ids: tuple[str, ...] = ()  # the Message-IDs this mail refers to, most specific first
    from_address: str | None = None
    subject: str = ""
    recipient: str | None = None  # bounce and complaint: the address our message went to
    status: str | None = None  # bounce: the enhanced status code, e.g. "5.1.1"
    hard: bool | None = None  # bounce: permanent (True) or temporary (False)
    reason: str | None = None  # bounce: the server's answer or the notice's sentence
    delayed: bool = False  # a delayed-delivery warning (kind "other": not a bounce)
    evidence: str = ""  # what decided the kind, for support

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["message_ids"] = list(self.message_ids)
        return data


def classify(raw: bytes, *, unsubscribe_addresses: frozenset[str] = frozenset()) -> Classification:
    """Classify one raw RFC 5322 message. Never raises."""
    return inspect(raw, unsubscribe_addresses=unsubscribe_addresses)[0]


def inspect(raw: bytes, *, unsubscribe_addresses: frozenset[str] = frozenset()) -> tuple[Classification, View]:
    """Classify, and return the reading it was made from (the inbox shows its text). Never raises."""
    try:
        raw = as_bytes(raw)[:MAX_INPUT]
        wanted = frozenset(a.strip().lower() for a in unsubscribe_addresses if isinstance(a, str))
    except Exception:  # noqa: BLE001 (not bytes at all)
        return Classification("other", evidence="not a message"), View()
    for reader in (view_from_email, view_from_text):
        try:
            view = reader(raw)
            return _decide(view, wanted), view
        except Exception:  # noqa: BLE001 (broken input must not stop a mailbox sync)
            continue
    return Classification("other", evidence="unreadable message"), View()


# -- the decision -------------------------------------------------------------------------------

def _decide(view: View, unsubscribe_addresses: frozenset[str]) -> Classification:
    subject = view.first("subject")
    from_address = bounces.mailbox_address(view.first("from"))
    thread_ids = _thread_ids(view.headers)
    base = {"from_address": from_address, "subject": subject}
    ours = {a for name in _RECEIVING_HEADERS for v in view.headers.get(name, ()) for a in bounces.addresses(v)}

    if view.report_type == "feedback-report" or view.feedback_blocks:
        fields = {k: v for block in view.feedback_blocks for k, v in block.items()}
        declared = bounces.first(fields, "feedback-type")
        feedback_type = (declared or "").split("(")[0].strip().lower()
        if feedback_type in ("abuse", "fraud") or (declared is None and view.report_type == "feedback-report"):
            recipient = next(iter(bounces.addresses(" ".join(
                fields.get("original-rcpt-to", []) + fields.get("removal-recipient", [])
                + [v for o in view.originals for v in o.get("to", [])]))), None)
            return Classification("complaint", _report_ids(view, thread_ids), recipient=recipient,
                                  evidence=f"feedback report (ARF): {feedback_type or 'abuse'}", **base)
        return Classification("other", thread_ids, evidence=f"feedback report (ARF): {feedback_type}", **base)

    notice = view.notice
    exclude = ours | ({from_address} if from_address else set())
    found = None
    if bounces.has_recipients(view.dsn_blocks):
        found = bounces.from_report(view.dsn_blocks, notice, exclude)
        if found is None and bounces.reports_delivery(view.dsn_blocks):
            return Classification("other", _report_ids(view, thread_ids),
                                  evidence="delivery-status report: delivered or relayed", **base)
    if found is None and not autoreply.ooo_subject(subject):  # no report, or a truncated one
        return_path = view.first("return-path")
        found = bounces.from_text(subject, bounces.is_daemon(from_address, view.first("from")),
                                  return_path.strip() in ("<>", "") and "return-path" in view.headers,
                                  view.first("x-failed-recipients") or None, notice, exclude)
    if found is not None:
        recipient = found.recipient
        if recipient is None:
            recipient = next((a for o in view.originals for v in o.get("to", [])
                              for a in bounces.addresses(v) if a not in exclude), None)
        ids = _report_ids(view, thread_ids, bounces.inline_message_ids(notice))
        return Classification("other" if found.delayed else "bounce", ids, recipient=recipient,
                              status=found.status, hard=found.hard, reason=found.reason, delayed=found.delayed,
                              evidence=found.evidence, **base)

    if unsubscribe_addresses and ours & unsubscribe_addresses:
        return Classification("unsubscribe", thread_ids, evidence="sent to the unsubscribe address", **base)
    automatic = autoreply.detect(view.headers, subject, view.body)
    if view.report_type == "disposition-notification":
        automatic = "read receipt (disposition notification)"
    if automatic:
        return Classification("auto_reply", thread_ids, evidence=automatic, **base)
    if _unsubscribe_words(subject, view.body):
        return Classification("unsubscribe", thread_ids, evidence="asks to unsubscribe", **base)
    if thread_ids:
        return Classification("reply", thread_ids, evidence="In-Reply-To/References", **base)
    return Classification("other", evidence="not automated, refers to no message", **base)


def _thread_ids(headers: dict[str, list[str]]) -> tuple[str, ...]:
    """In-Reply-To first, then References from the newest to the oldest."""
    ids: dict[str, None] = {}
    for value in headers.get("in-reply-to", [])[:3]:
        ids.update(dict.fromkeys(bounces.message_ids(value)))
    for value in headers.get("references", [])[:3]:
        ids.update(dict.fromkeys(reversed(bounces.message_ids(value))))
    return tuple(ids)[:MAX_IDS]


def _report_ids(view: View, thread_ids: tuple[str, ...], inline: list[str] = ()) -> tuple[str, ...]:
    """For a bounce or complaint: the original's Message-ID (and the one it had before a provider
    rewrote it), then X-Original-Message-ID-style headers of the report, then its own thread."""
    ids: dict[str, None] = {}
    for headers in view.originals:
        for name in sorted(headers, key=lambda n: n != "message-id"):
            if name == "message-id" or _ORIGINAL_ID_HEADER.match(name):
                for value in headers[name]:
                    ids.update(dict.fromkeys(bounces.message_ids(value)))
    ids.update(dict.fromkeys(inline))
    for block in [view.headers, *view.dsn_blocks]:
        for name, values in block.items():
            if _ORIGINAL_ID_HEADER.match(name):
                for value in values:
                    ids.update(dict.fromkeys(bounces.message_ids(value)))
    ids.update(dict.fromkeys(thread_ids))
    return tuple(ids)[:MAX_IDS]


def _unsubscribe_words(subject: str, body: str) -> bool:
    """The subject (reply prefixes aside) or the first line the sender wrote is "unsubscribe",
    "remove me", "stop", "opt out" (or "abmelden", "désinscrire", "darme de baja" ...)."""
    candidates = [_REPLY_PREFIX.sub("", subject)]
    for line in bounces.normal_lines(body[:PART_LIMIT]).split("\n")[:400]:
        line = line.strip()
        if not line or line.startswith(">"):
            continue
        if not _QUOTE_HEADER.match(line):
            candidates.append(line)
        break
    for text in candidates:
        words = " ".join(re.sub(r"[^\w' -]+", " ", text[:200]).split())
        if words and _UNSUBSCRIBE.match(words):
            return True
    return False
