"""Reading delivery failures: RFC 3464 delivery-status reports and the common plain-text bounces.

Pure text functions. `classify.py` walks the MIME structure and hands over header blocks and
the notification's text; nothing here touches the network or raises on odd input. Every regular
expression is written so that it runs in linear time on hostile text (character classes exclude
the character that starts the next attempt).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

Fields = Mapping[str, Sequence[str]]  # lower-case field name -> values, in order

DAEMON_LOCALS = frozenset({"mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon", "maildaemon",
                           "postmaster", "mdaemon", "mail.daemon", "bounce", "bounces"})
_DAEMON_NAME = re.compile(r"mail delivery (?:sub)?system|mail delivery service|mailer.?daemon|postmaster"
                          r"|mail administrator|microsoft outlook|delivery status notification", re.I)

# "5.1.1", never a piece of an IP address or a version number ("192.0.2.1", "4.94.2.1").
ENHANCED = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# "550 5.1.1", "550-5.1.1", "550: 5.1.1", "#550 5.1.1": an SMTP reply code and the enhanced code.
_REPLY_AND_ENHANCED = re.compile(r"(?<![\w.])([45][0-5]\d)(?:[ -]|: ?)#?([45]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
_REPLY = re.compile(r"(?<![\w.])([45][0-5]\d)(?=[ -]|: )")

_BOUNCE_SUBJECT = re.compile(
    r"^\W{0,5}(?:undeliver(?:able|ed)\b|delivery status notification \(fail|delivery (?:notification: )?"
    r"(?:failure|failed|has failed)|mail delivery (?:failed|failure)|returned mail\b|failure notice"
    r"|message (?:not delivered|delivery failure|could not be delivered)|mail system error"
    r"|non remis|non distribuable|unzustellbar|nicht zustellbar|no se puede entregar|non recapitabile"
    r"|onbestelbaar|n[aã]o entregue|nie mo[zż]na dostarczy[cć]|kan inte levereras|kunne ikke leveres)", re.I)
_DELAY_SUBJECT = re.compile(
    r"\(delay(?:ed)?\)|\bdelayed mail\b|delivery (?:is |has been )?delayed|\bdelay(?:ed)? (?:delivery|notification)"
    r"|still being retried|could not send message for past|\bwarning: (?:message|delayed)|zustellung verz[oö]gert"
    r"|remise diff[eé]r[eé]e|entrega retrasada", re.I)
_BOUNCE_BODY = re.compile(
    r"could ?n[o']?t be delivered|was ?n[o']?t delivered|not be delivered|delivery (?:has )?failed"
    r"|delivery to the following recipients? (?:failed|was unsuccessful)|failed permanently|permanent (?:error|failure)"
    r"|unable to deliver|(?:was ?n[o']?t|not) able to deliver|qmail-send program|this is the mail system at host"
    r"|mail delivery software|following address(?:\(es\)|es)? failed|undeliverable|returned to sender"
    r"|sorry to have to inform you|recipient address rejected|user unknown|unknown user|no such user"
    r"|address not found|mailbox unavailable|delivery has failed to these recipients", re.I)
_PERMANENT_BODY = re.compile(r"failed permanently|permanent (?:error|failure)|given up|gave up|will not (?:try|be )"
                             r"|won't try|not try to redeliver|has been returned", re.I)
_DELAY_BODY = re.compile(r"warning (?:message )?only|will (?:be retried|continue (?:to )?(?:try|retry))|keep trying"
                         r"|still (?:trying|being retried)|has been delayed|delivery (?:is |has been )?delayed"
                         r"|not yet been delivered|do not need to resend|no action is required"
                         r"|delivery attempts will continue", re.I)

_SOFT_REASON = re.compile(r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|full)|exceed(?:s|ed)? (?:\w+ ){0,3}quota"
                          r"|insufficient (?:system )?storage|mailbox size limit|out of storage|full mailbox"
                          r"|disk quota|storage (?:limit|space)", re.I)
_TEMPORARY = re.compile(r"temporar|try (?:again )?later|greylist|deferr|timed? ?out|too many|rate limit"
                        r"|throttl|will be retried", re.I)
_PERMANENT = re.compile(r"user unknown|unknown user|no such|does ?n[o']?t exist|address not found|not found"
                        r"|unroutable|unrouteable|invalid (?:recipient|address|mailbox)|mailbox unavailable"
                        r"|account (?:has been )?(?:disabled|deactivated|closed|suspended)|rejected|blocked"
                        r"|blacklist|denied|policy|permanent|not a valid recipient|no mailbox|given up", re.I)
# x.2.2 mailbox full, x.3.1 mail system full, x.4.7 delivery time expired: the address itself is fine.
_SOFT_DETAILS = frozenset({("2", "2"), ("3", "1"), ("4", "7")})

_ORIGINAL_STARTS = re.compile(
    r"^[ \t]*(?:-{2,}[ \t]*(?:original message|below this line is a copy of the message|this is a copy of the message"
    r"|original message follows|the original message|forwarded message|message headers follow|undelivered message)"
    r"|original message headers:)", re.I | re.M)
_MESSAGE_ID_LINE = re.compile(r"^[ \t]*(?:x-)?(?:original-)?message-id:[ \t]*(<[^<>\s]{1,500}>|[^<>\s]{1,500}@[^<>\s]{1,500})",
                              re.I | re.M)
_ANGLE_ID = re.compile(r"<([^<>]{1,998})>")
_TYPE_PREFIX = re.compile(r"^\s*[\w.-]{1,40}\s*;\s*")
_FIELD = re.compile(r"^([!-9;-~]{1,80})[ \t]*:[ \t]*(.*)$")
_ADDRESS_SPLIT = re.compile(r"[\s<>()\[\]\\,;:\"`|{}?/]+")
_ADDRESS_CHARS = re.compile(r"^[\w.!#$%&'*+=^~-]{1,64}@(?:[\w-]{1,63}\.){1,10}[\w-]{2,63}$")


@dataclass(frozen=True)
class Bounce:
    delayed: bool
    recipient: str | None
    status: str | None
    hard: bool | None
    reason: str | None
    evidence: str


# -- small text helpers (also used by classify.py) ---------------------------------------------

def addresses(text: str) -> list[str]:
    """Every addr-spec in `text`, lower-cased, in order. Linear: split, then test each token."""
    found: dict[str, None] = {}
    for token in _ADDRESS_SPLIT.split(text):
        if "@" in token:
            token = token.strip(".'").lower()
            if _ADDRESS_CHARS.match(token):
                found[token] = None
    return list(found)


def mailbox_address(value: str) -> str | None:
    """The addr-spec of a From-like header: the last <...> address, else the first bare one."""
    value = re.sub(r'"(?:[^"\\]|\\.){0,500}"', " ", value[:4096])
    bracketed = [m.group(1) for m in _ANGLE_ID.finditer(value)]
    for candidate in reversed(bracketed):
        found = addresses(candidate)
        if found:
            return found[0]
    found = addresses(value)
    return found[0] if found else None


def message_ids(value: str) -> list[str]:
    """Message-IDs in a header value, normalised to "<left@right>"."""
    ids = []
    for inner in _ANGLE_ID.findall(value):
        inner = "".join(inner.split())
        if "@" in inner and 3 <= len(inner) <= 500 and f"<{inner}>" not in ids:
            ids.append(f"<{inner}>")
    if not ids:
        bare = value.strip()
        if "@" in bare and len(bare) <= 500 and not any(c.isspace() or c in "<>" for c in bare):
            ids.append(f"<{bare}>")
    return ids


def normal_lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def field_blocks(text: str, limit: int = 50) -> list[dict[str, list[str]]]:
    """RFC 822-style field blocks separated by blank lines (a delivery-status or feedback report)."""
    blocks: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    name = None
    for line in normal_lines(text).split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
                if len(blocks) >= limit:
                    return blocks
            current, name = {}, None
        elif line[:1] in " \t" and name:
            current[name][-1] = (current[name][-1] + " " + line.strip())[:4096]
        else:
            match = _FIELD.match(line)
            if match:
                name = match.group(1).lower()
                current.setdefault(name, []).append(match.group(2).strip()[:4096])
            else:
                name = None
    if current:
        blocks.append(current)
    return blocks


def first(fields: Fields, name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def is_daemon(from_address: str | None, from_header: str) -> bool:
    local = (from_address or "").partition("@")[0]
    return (local in DAEMON_LOCALS or local.startswith("microsoftexchange")
            or bool(_DAEMON_NAME.search(from_header[:500])))


def split_original(text: str) -> tuple[str, str]:
    """The notification's own words, and the copy of the original message some bounces append."""
    match = _ORIGINAL_STARTS.search(text)
    return (text[:match.start()], text[match.start():]) if match and match.start() > 0 else (text, "")


def inline_message_ids(text: str) -> list[str]:
    ids: list[str] = []
    for match in _MESSAGE_ID_LINE.finditer(text):
        ids.extend(i for i in message_ids(match.group(1)) if i not in ids)
    return ids


# -- status, hard or soft, reason --------------------------------------------------------------

def status_in(text: str) -> str | None:
    """The enhanced status code a text reports: one next to an SMTP reply code first."""
    match = _REPLY_AND_ENHANCED.search(text)
    if match:
        return match.group(2)
    match = ENHANCED.search(text)
    if match and match.group(1) in "45":
        return match.group(0)
    match = _REPLY.search(text)
    return f"{match.group(1)[0]}.0.0" if match else None


def is_hard(status: str | None, reason: str | None, text: str = "") -> bool:
    """5.x.x is permanent (unknown user or host, rejected, policy), except a full mailbox or an
    expired delivery; 4.x.x is temporary. Without a code, the words decide, and soft wins a tie."""
    reason = reason or ""
    if status:
        parts = status.split(".")
        if parts[0] == "4" or tuple(parts[1:3]) in _SOFT_DETAILS or _SOFT_REASON.search(reason):
            return False
        if parts[0] == "5":
            return True
    words = f"{reason}\n{text[:8192]}"
    if _SOFT_REASON.search(words) or _TEMPORARY.search(words):
        return False
    return bool(_PERMANENT.search(words))


def tidy_reason(text: str) -> str | None:
    """One line: folded whitespace, the repeated "550-5.1.1" continuation prefixes removed."""
    text = " ".join(text.split())
    match = _REPLY_AND_ENHANCED.match(text) or _REPLY.match(text)
    if match:
        code = match.group(1)
        head, rest = text[:match.end()], text[match.end():]
        rest = re.sub(rf"\s{code}[ -](?:[45]\.\d{{1,3}}\.\d{{1,3}}\s)?", " ", rest)
        text = head.replace(f"{code}-", f"{code} ", 1) + rest
    text = text.strip().rstrip("#").strip()  # Exchange: "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##"
    return text[:500] or None


def _logical_lines(text: str) -> list[str]:
    """Lines with their indented continuations joined (Postfix and Exim indent wrapped replies)."""
    lines: list[str] = []
    for line in text.split("\n")[:5000]:
        if lines and line[:1] in " \t" and lines[-1] and line.strip():
            lines[-1] = f"{lines[-1]} {line.strip()}"[:2000]
        else:
            lines.append(line.strip())
    return lines


def reason_in(text: str) -> str | None:
    """The server's answer ("550 5.1.1 <x@y>: Recipient address rejected ...") or, without a
    code, the notification's first sentence that says what went wrong."""
    lines = _logical_lines(text)
    for pattern in (_REPLY_AND_ENHANCED, ENHANCED, _REPLY):
        for index, line in enumerate(lines):
            match = pattern.search(line)
            if match and (pattern is not ENHANCED or match.group(1) in "45"):
                reply = line[match.start():]
                code = reply[:3]
                if code.isdigit() and reply[3:4] == "-":  # "550-5.1.1 ..." / "550 5.1.1 ...": one reply
                    for follow in lines[index + 1:index + 8]:
                        if follow[:3] != code:
                            break
                        reply = f"{reply} {follow}"
                        if follow[3:4] != "-":
                            break
                return tidy_reason(reply)
    for line in lines:
        if any(p.search(line) for p in (_BOUNCE_BODY, _SOFT_REASON, _PERMANENT, _TEMPORARY)):
            return tidy_reason(line)
    return None


def recipient_in(text: str, exclude: Iterable[str]) -> str | None:
    """The failed recipient in a notification's text: its first address that is neither ours
    (the bounce's To, Delivered-To ...) nor a mail system's own."""
    excluded = set(exclude)
    for address in addresses(text[:65536]):
        if address not in excluded and address.partition("@")[0] not in DAEMON_LOCALS:
            return address
    return None


# -- RFC 3464 reports and plain-text bounces ----------------------------------------------------

def _recipient_field(value: str | None) -> str | None:
    if not value:
        return None
    found = addresses(_TYPE_PREFIX.sub("", value, count=1))
    return found[0] if found else None


def _per_recipient(block: Fields) -> bool:
    return "final-recipient" in block or "original-recipient" in block or "action" in block


def has_recipients(blocks: Sequence[Fields]) -> bool:
    """Whether a delivery-status report got as far as a per-recipient block (truncated ones don't)."""
    return any(_per_recipient(b) for b in blocks)


def reports_delivery(blocks: Sequence[Fields]) -> bool:
    """Whether a report says a recipient got the message (delivered, relayed, expanded)."""
    return any((first(b, "action") or "").split("(")[0].strip().lower() in ("delivered", "relayed", "expanded")
               or (first(b, "status") or "").strip().startswith("2.") for b in blocks)


def from_report(blocks: Sequence[Fields], notice: str, exclude: Iterable[str]) -> Bounce | None:
    """A message/delivery-status report: the first failed recipient makes a bounce; delayed ones
    a warning; delivered, relayed or expanded ones nothing (None)."""
    chosen, delayed = None, None
    for block in filter(_per_recipient, blocks):
        action = (first(block, "action") or "").split("(")[0].strip().lower()
        if not action:  # a report without Action: its Status says what happened
            status = ENHANCED.search(first(block, "status") or "")
            status = status.group(1) if status else (status_in(first(block, "diagnostic-code") or "") or "2")[0]
            action = {"5": "failed", "4": "delayed" if _DELAY_BODY.search(notice[:65536]) else "failed"}.get(status, "")
        if action == "failed":
            chosen = block
            break
        if action == "delayed" and delayed is None:
            delayed = block
    block = chosen or delayed
    if block is None:
        return None
    diagnostic = first(block, "diagnostic-code")
    status = ENHANCED.search(first(block, "status") or "")
    status = status.group(0) if status else None
    detailed = status_in(diagnostic or "")
    if detailed and (not status or (status.endswith(".0.0") and detailed[0] == status[0])):
        status = detailed
    text, _ = split_original(notice)
    recipient = (_recipient_field(first(block, "original-recipient"))
                 or _recipient_field(first(block, "final-recipient"))
                 or _recipient_field(first(block, "x-actual-recipient"))
                 or recipient_in(text, exclude))
    reason = tidy_reason(_TYPE_PREFIX.sub("", diagnostic, count=1)) if diagnostic else reason_in(text)
    if chosen is None:
        return Bounce(True, recipient, status, None, reason, "delivery-status report: Action delayed")
    return Bounce(False, recipient, status, is_hard(status, reason, text), reason,
                  "delivery-status report: Action failed")


def from_text(subject: str, sender_is_daemon: bool, null_sender: bool, failed_header: str | None,
              notice: str, exclude: Iterable[str]) -> Bounce | None:
    """A bounce without a delivery-status part (Exim, qmail, Yahoo, older Gmail and Exchange ...):
    a mail system's sender, plus a bounce subject or bounce wording."""
    text, _ = split_original(notice)
    head = text[:65536]
    bounce_subject = bool(_BOUNCE_SUBJECT.search(subject))
    delay_subject = not bounce_subject and bool(_DELAY_SUBJECT.search(subject))
    bounce_body = bool(_BOUNCE_BODY.search(head))
    delay_body = bool(_DELAY_BODY.search(head)) and not _PERMANENT_BODY.search(head)
    automated = sender_is_daemon or bool(failed_header) or (null_sender and bounce_subject)
    if not automated and not (bounce_subject and bounce_body):
        return None
    if delay_subject or (delay_body and not bounce_subject):
        delayed = True
    elif bounce_subject or bounce_body or failed_header:
        delayed = False
    else:
        return None
    recipient = None
    if failed_header:
        recipient = next(iter(addresses(failed_header)), None)
    recipient = recipient or recipient_in(head, exclude)
    status = status_in(head)
    reason = reason_in(head)
    if delayed:
        return Bounce(True, recipient, status, None, reason, "delivery delayed notice")
    evidence = "bounce subject" if bounce_subject else "bounce wording"
    return Bounce(False, recipient, status, is_hard(status, reason, head), reason,
                  f"{evidence} from a mail system" if automated else evidence)
