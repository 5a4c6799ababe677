"""Reading an inbound message for classification and display: the headers decoded, the text
and HTML parts the sender wrote, delivery-status and feedback-report blocks, and the headers of
attached originals. Everything is capped and nothing raises on hostile or broken input; the
callers (classify, the unified inbox) decide what the parts mean.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import html
import re
from dataclasses import dataclass, field
from typing import Any

from . import bounces

MAX_INPUT = 4 * 1024 * 1024
PART_LIMIT = 256 * 1024
HEADER_LIMIT = 16 * 1024
MAX_PARTS = 200
MAX_DEPTH = 12

_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,80})\?([bBqQ])\?([^?\s]*)\?=")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
_TAG = re.compile(r"<[^<>]{0,2000}>")
_HIDDEN = re.compile(r"<(script|style|head)(?![\w-])")
_BREAK = re.compile(r"<(?:br|/p|/div|/tr|/li|/h\d|p|div)\b[^<>]{0,2000}>", re.I)


class _ParsePolicy(email.policy.EmailPolicy):
    """policy.default, except that header values the parser itself fetches (Content-Type and
    its boundary) stay plain, capped strings: the structured header parser takes minutes on a
    hostile megabyte-long Content-Type, and classification reads raw headers anyway."""

    def header_fetch_parse(self, name, value):
        return value if hasattr(value, "name") else re.sub(r"[\r\n]", "", value[:HEADER_LIMIT])


_POLICY = _ParsePolicy()


@dataclass
class View:
    """The parts of a message that classification and display look at, decoded and capped."""
    headers: dict[str, list[str]] = field(default_factory=dict)
    report_type: str = ""
    dsn_blocks: list[dict[str, list[str]]] = field(default_factory=list)
    feedback_blocks: list[dict[str, list[str]]] = field(default_factory=list)
    originals: list[dict[str, list[str]]] = field(default_factory=list)  # headers of attached originals
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)

    def first(self, name: str) -> str:
        return bounces.first(self.headers, name) or ""

    @property
    def notice(self) -> str:
        return "\n".join(self.plain or [html_to_text(h) for h in self.html])[:PART_LIMIT]

    @property
    def body(self) -> str:
        return self.plain[0] if self.plain else (html_to_text(self.html[0]) if self.html else "")


def as_bytes(raw: Any) -> bytes:
    if raw is None:
        return b""
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return bytes(raw)


def view_from_email(raw: bytes) -> View:
    message = email.message_from_bytes(raw, policy=_POLICY)
    view = View(headers=_headers(message.raw_items()))
    view.report_type = _content_type(view.first("content-type"))[1].get("report-type", "").lower()
    stack: list[tuple[Any, int]] = [(message, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        headers = view.headers if part is message else _headers(part.raw_items())
        ctype, params = _content_type(bounces.first(headers, "content-type") or "")
        payload = _raw_payload(part)
        if ctype in ("message/delivery-status", "message/global-delivery-status", "message/feedback-report"):
            target = view.feedback_blocks if ctype.endswith("feedback-report") else view.dsn_blocks
            target.extend(_report_blocks(payload, headers, params))
        elif ctype in ("text/rfc822-headers", "text/global-headers") or (
                ctype.startswith("message/") and not isinstance(payload, list)):
            blocks = bounces.field_blocks(_text(payload, headers, params), limit=1)
            view.originals.extend(blocks[:1])
        elif isinstance(payload, list):
            if ctype.startswith("message/"):  # an attached original (message/rfc822): headers only
                view.originals.extend(_headers(m.raw_items()) for m in payload[:1] if hasattr(m, "raw_items"))
            elif depth < MAX_DEPTH:
                stack.extend((p, depth + 1) for p in reversed(payload) if hasattr(p, "raw_items"))
        elif _readable(ctype, headers):
            (view.html if ctype == "text/html" else view.plain).append(_text(payload, headers, params))
    return view


def _readable(ctype: str, headers: dict[str, list[str]]) -> bool:
    """Text the sender wrote: text/plain or text/html, not attached. A multipart whose boundary
    never appears counts too, so that a mangled bounce can still say what it is."""
    text = ctype in ("text/plain", "text/html", "") or ctype.startswith("multipart/")
    return text and "attachment" not in (bounces.first(headers, "content-disposition") or "").lower()


def view_from_text(raw: bytes) -> View:
    """The fallback when the email package fails: a header block and a body, no MIME."""
    text = bounces.normal_lines(raw[:MAX_INPUT].decode("utf-8", "replace"))
    head, _, body = text.partition("\n\n")
    blocks = bounces.field_blocks(head, limit=1)
    headers = {name: [_decode_header(v) for v in values] for name, values in (blocks[0] if blocks else {}).items()}
    return View(headers=headers, plain=[body[:PART_LIMIT]])


def _report_blocks(payload: Any, headers: dict[str, list[str]], params: dict[str, str]) -> list[dict]:
    if isinstance(payload, list):  # the email package splits delivery-status blocks into messages
        blocks = []
        for sub in payload[:50]:
            if hasattr(sub, "raw_items"):
                blocks.append(_headers(sub.raw_items()))
                rest = _raw_payload(sub)
                if isinstance(rest, str) and rest.strip():
                    blocks.extend(bounces.field_blocks(rest[:PART_LIMIT]))
        return blocks
    return bounces.field_blocks(_text(payload, headers, params))


def _raw_payload(part: Any) -> Any:
    """The payload as parsed: a list of parts, or the undecoded body text. (get_payload() would
    already have turned every non-ASCII byte of an 8bit body into U+FFFD.)"""
    payload = getattr(part, "_payload", None)
    return payload if isinstance(payload, (str, list)) else part.get_payload()


def _headers(items: Any) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for count, (name, value) in enumerate(items):
        if count >= 1000:
            break
        name = str(name).strip().lower()[:100]
        headers.setdefault(name, []).append(_decode_header(str(value)))
    return headers


def _decode_header(value: str) -> str:
    """Unfolded, RFC 2047 encoded words decoded, raw UTF-8 (or Windows-1252) bytes read."""
    value = value[:HEADER_LIMIT]
    if any("\udc80" <= c <= "\udcff" for c in value):
        value = _decode_bytes(value.encode("utf-8", "surrogateescape"), None)
    value = re.sub(r"\r\n|\r|\n", "", value)
    if "=?" in value:
        value = _decode_words(value)
    return " ".join(_CONTROL.sub(" ", value).split())


def _decode_words(value: str) -> str:
    pieces: list[Any] = []  # str, or [charset, bytes] runs of adjacent encoded words
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        gap = value[position:match.start()]
        charset, encoding, text = match.group(1).split("*")[0].lower(), match.group(2).upper(), match.group(3)
        try:
            if encoding == "B":
                data = base64.b64decode(text + "=" * (-len(text) % 4))
            else:
                data = binascii.a2b_qp(text.encode("ascii", "replace"), header=True)
        except (ValueError, binascii.Error):
            pieces.append(match.group(0))
            position = match.end()
            continue
        if not (gap.strip() == "" and pieces and isinstance(pieces[-1], list)):
            pieces.append(gap)
        if pieces and isinstance(pieces[-1], list) and pieces[-1][0] == charset:
            pieces[-1][1] += data
        else:
            pieces.append([charset, data])
        position = match.end()
    pieces.append(value[position:])
    return "".join(p if isinstance(p, str) else _decode_bytes(p[1], p[0]) for p in pieces)


_ALIASES = {"unicode-1-1-utf-7": "utf-7", "ks_c_5601-1987": "cp949", "iso-8859-8-i": "iso-8859-8",
            "x-sjis": "shift_jis", "windows-874": "cp874", "gb2312": "gb18030", "gbk": "gb18030"}


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Text in its declared charset, else UTF-8, else Windows-1252; never an exception."""
    if charset:
        charset = charset.strip().strip('"').lower()
        charset = _ALIASES.get(charset, charset)
        try:
            return data.decode(charset)
        except (LookupError, UnicodeError, ValueError, TypeError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeError:
        return data.decode("cp1252", "replace")


def _content_type(value: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = value[:4096].partition(";")
    params = {}
    for match in re.finditer(r"([\w.*-]{1,80})\s*=\s*(\"(?:[^\"\\]|\\.){0,1000}\"|[^;\s]{0,1000})", rest):
        params.setdefault(match.group(1).lower(), match.group(2).strip('"'))
    kind = "".join(kind.split()).lower()
    return (kind if kind.count("/") == 1 else ""), params


def _text(payload: Any, headers: dict[str, list[str]], params: dict[str, str]) -> str:
    """A leaf part's text: at most PART_LIMIT bytes decoded, in its charset, LF line endings."""
    if not isinstance(payload, str):
        return ""
    encoding = (bounces.first(headers, "content-transfer-encoding") or "").strip().lower()
    if encoding == "base64":  # the alphabet only, cut or padded to whole groups: never an error
        chunk = re.sub(r"[^A-Za-z0-9+/]", "", payload[:PART_LIMIT * 2])[:PART_LIMIT * 4 // 3]
        chunk = chunk[:len(chunk) - 1] if len(chunk) % 4 == 1 else chunk + "=" * (-len(chunk) % 4)
        data = binascii.a2b_base64(chunk)
    elif encoding == "quoted-printable":  # a2b_qp knows soft line breaks only before LF
        data = binascii.a2b_qp(bounces.normal_lines(payload[:PART_LIMIT * 3]).encode("utf-8", "surrogateescape"))
    else:
        data = payload[:PART_LIMIT].encode("utf-8", "surrogateescape")
    text = _decode_bytes(data[:PART_LIMIT], params.get("charset"))
    return _CONTROL.sub("", bounces.normal_lines(text).replace("\t", " "))


def html_to_text(markup: str) -> str:
    """Readable text of an HTML part: scripts, styles and tags gone, entities decoded."""
    markup = markup[:PART_LIMIT]
    lower, kept, position = markup.lower(), [], 0
    for opening in _HIDDEN.finditer(lower):  # linear: every scan starts where the last one ended
        if opening.start() < position:
            continue
        kept.append(markup[position:opening.start()])
        close = lower.find(f"</{opening.group(1)}", opening.end())
        end = lower.find(">", close) if close >= 0 else -1
        position = len(markup) if end < 0 else end + 1
    kept.append(markup[position:])
    return html.unescape(_TAG.sub("", _BREAK.sub("\n", "".join(kept))))
