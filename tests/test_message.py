"""Outbound MIME: clean headers, List-Unsubscribe (RFC 2369/8058), threads, no header injection."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime, timezone
from email.mime.text import MIMEText
from unittest import mock

import pytest
from hypothesis import given, settings, strategies as st

from appliance.mail import message
from appliance.mail.message import HeaderInjection, Outbound, build, new_message_id
from appliance.services import links


def outbound(**over) -> Outbound:
    base = dict(from_email="ada@acme.example", from_name="Ada Sales", to_email="bob@lead.example",
                subject="Quick question", text="Hi Bob,\n\nA line.\n", message_id=new_message_id("acme.example"),
                date=datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc),
                unsubscribe_mailto="unsubscribe@acme.example",
                unsubscribe_url="https://mail.acme.example/u/" + "x" * 60)
    base.update(over)
    return Outbound(**base)


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_headers_and_parts():
    msg = outbound(html="<p>Hi Bob</p>", reply_to="replies@acme.example")
    parsed = parse(build(msg))
    assert parsed["From"] == "Ada Sales <ada@acme.example>" and parsed["Reply-To"] == "replies@acme.example"
    assert parsed["Message-ID"] == msg.message_id and msg.message_id.endswith("@acme.example>")
    assert parsed["Date"] == "Thu, 26 Nov 2026 09:30:00 +0000"
    assert parsed["List-Unsubscribe"] == f"<mailto:unsubscribe@acme.example>, <{msg.unsubscribe_url}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [p.get_content_type() for p in parsed.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    assert all(len(line) <= 998 for line in build(msg).split(b"\r\n"))


def test_follow_up_threads():
    first = new_message_id("acme.example")
    parsed = parse(build(outbound(subject="Re: Quick question", in_reply_to=first, references=[first])))
    assert parsed["In-Reply-To"] == first and parsed["References"] == first


@pytest.mark.parametrize("field", ["subject", "from_name", "to_email", "reply_to", "in_reply_to"])
def test_line_breaks_never_reach_a_header(field):
    with pytest.raises(HeaderInjection):
        build(outbound(**{field: "x\r\nBcc: victim@example.com"}))


@given(st.text(max_size=80))
def test_any_subject_either_builds_cleanly_or_is_refused(subject):
    try:
        raw = build(outbound(subject=subject))
    except HeaderInjection:
        assert len((subject + "x").splitlines()) > 1 or "\0" in subject
        return
    headers = raw.split(b"\r\n\r\n")[0].decode()
    names = [line.split(":")[0] for line in headers.split("\r\n") if not line.startswith((" ", "\t"))]
    assert names[:7] == ["From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"]
    assert sorted(names[7:]) == ["Content-Transfer-Encoding", "Content-Type", "MIME-Version"]  # nothing smuggled in


def test_unsubscribe_tokens_are_signed():
    key = b"k" * 32
    token = links.unsubscribe_token(key, 42, 7)
    assert links.read_unsubscribe_token(key, token) == (42, 7)
    assert links.read_unsubscribe_token(b"o" * 32, token) is None
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert links.read_unsubscribe_token(key, forged) is None
    assert links.read_unsubscribe_token(key, "not-a-token") is None


def test_names_and_subjects_outside_ascii_are_encoded_words():
    raw = build(outbound(from_name="Zoë Müller", subject="Grüße aus Köln", text="Schöne Grüße\n"))
    head = raw.split(b"\r\n\r\n")[0]
    assert head.isascii() and b"=?utf-8?" in head
    parsed = parse(raw)
    assert parsed["From"] == "Zoë Müller <ada@acme.example>" and parsed["Subject"] == "Grüße aus Köln"
    assert parsed.get_body().get_content().rstrip() == "Schöne Grüße"
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"


_BOUNDARY = re.compile(rb"={15}\d+==")
_ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(text=_ANY_TEXT, subject=_ANY_TEXT, name=st.text(max_size=40), html=st.none() | _ANY_TEXT,
       url_length=st.integers(1, 1100))
def test_the_fast_paths_write_exactly_what_the_email_package_writes(text, subject, name, html, url_length):
    msg = outbound(text=text, subject=subject, from_name=name, html=html,
                   unsubscribe_url="https://mail.acme.example/u/" + "x" * url_length)
    try:
        fast = build(msg)
    except HeaderInjection:
        return
    with mock.patch.object(message, "_one_line", lambda name, value: False):  # compat32 folds everything
        slow = build(msg)
    assert _BOUNDARY.sub(b"B", fast) == _BOUNDARY.sub(b"B", slow)


@settings(max_examples=200, deadline=None)
@given(text=_ANY_TEXT, subtype=st.sampled_from(["plain", "html"]))
def test_a_text_part_is_the_one_mimetext_makes(text, subtype):
    ours = message._text_part(message._QP_UTF8.body_encode(text), subtype)
    stock = MIMEText(text, subtype, message._QP_UTF8)
    assert ours.as_bytes(policy=message.POLICY) == stock.as_bytes(policy=message.POLICY)
