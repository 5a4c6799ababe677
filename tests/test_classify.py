"""Inbound mail classification (`appliance.mail.classify`) and `mailflow inspect-message`.

Every sample in tests/samples/inbound/ has its expected reading below; hypothesis feeds garbage,
every line ending and mutated samples and checks that classification always answers.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.mail.classify import KINDS, Classification, classify

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "samples" / "inbound"
UNSUBSCRIBE = frozenset({"alice+unsubscribe@example.test"})


def mid(token: str, domain: str = "example.test") -> str:
    return f"<{token}@{domain}>"


EXPECTED: dict[str, dict] = {
    # RFC 3464 delivery-status reports
    "bounce-rfc3464-hard-5.1.1.eml": dict(
        kind="bounce", recipient="nobody@example.com", status="5.1.1", hard=True,
        message_ids=[mid("171023484412.3612.9284716230958473021.4f1c2a9b7e3d")]),
    "bounce-rfc3464-soft-4.2.2-mailbox-full.eml": dict(
        kind="bounce", recipient="carol.white@example.net", status="4.2.2", hard=False,
        message_ids=[mid("171023590634.3612.5510287345126604713.b71e2d04c9aa")]),
    "bounce-postfix.eml": dict(
        kind="bounce", recipient="henry@example.net", status="5.1.1", hard=True,
        message_ids=[mid("171023684701.3612.8801736452981170264.2e6b0a9d7c41")]),
    "bounce-office365-ndr.eml": dict(
        kind="bounce", recipient="frank.green@example.org", status="5.1.10", hard=True,
        message_ids=[mid("171041073255.3612.6617202983344105187.e93b4a6c12f0")]),
    "bounce-unknown-host-truncated-crlf.eml": dict(
        kind="bounce", recipient="olga@nonexistent.example.com", status="5.4.4", hard=True,
        message_ids=[mid("171023819207.3612.3364019283746501928.5e4d3c2b1a09")]),
    "delayed-postfix-4.4.1.eml": dict(
        kind="other", delayed=True, recipient="dan@example.org", status="4.4.1", hard=None,
        message_ids=[mid("171023593811.3612.7741920385561029310.0d5f8e6a1c37")]),
    "dsn-success.eml": dict(
        kind="other", delayed=False, recipient=None, hard=None,
        message_ids=[mid("171023640107.3612.3018472659102837465.6b2d9f0e4a71")]),
    # plain-text bounces
    "bounce-gmail-failure.eml": dict(
        kind="bounce", recipient="erin.black@example.com", status="5.1.1", hard=True,
        message_ids=[mid("171032287817.3612.3390417265510932876.c4a9e1f07b52", "gmail.example.com")]),
    "bounce-exchange-legacy-text.eml": dict(
        kind="bounce", recipient="grace.miller@example.net", status="5.1.1", hard=True,
        message_ids=[mid("171051244012.3612.2290183746519920374.5ac3d1f9e8b7")]),
    "bounce-postfix-plain.eml": dict(
        kind="bounce", recipient="ivan.petrov@example.org", status="5.7.1", hard=True,
        message_ids=[mid("171023874209.3612.4418263095511907632.f0c2a7e9b3d8")]),
    "bounce-exim.eml": dict(
        kind="bounce", recipient="judy@example.com", status="5.1.1", hard=True,
        message_ids=[mid("171032777104.3612.1093847561029384756.a8d7c6b5e4f3")]),
    "bounce-qmail.eml": dict(
        kind="bounce", recipient="kim.lee@example.org", status="5.1.1", hard=True,
        message_ids=[mid("171032011042.3612.6620183947562019384.73b9e2f1d0c6")]),
    "bounce-yahoo.eml": dict(
        kind="bounce", recipient="leo.martin@example.com", status="5.1.1", hard=True,
        message_ids=[mid("171043269711.3612.8867103425561839201.4c8e2b7a9f10", "yahoo.example.com")]),
    "delayed-gmail-text.eml": dict(
        kind="other", delayed=True, recipient="mia@example.net", hard=None,
        message_ids=[mid("171032144203.3612.5519027364810293746.91d3c7b2e5a8", "gmail.example.com")]),
    # automatic replies
    "ooo-en-exchange.eml": dict(
        kind="auto_reply", message_ids=[mid("171023706880.3612.2217738456190283746.8e1a6f3b2c90")]),
    "ooo-de.eml": dict(kind="auto_reply", message_ids=[mid("171023724513.3612.7710293846501927364.1d4f7a9c3e20")]),
    "ooo-fr.eml": dict(kind="auto_reply", message_ids=[mid("171023731402.3612.6549120387465102938.c0e8b3a1f7d2")]),
    "ooo-es.eml": dict(kind="auto_reply", message_ids=[mid("171023739377.3612.1192837465019283746.5f0a1c9e8d4b")]),
    "ooo-it.eml": dict(kind="auto_reply", message_ids=[mid("171023745190.3612.9931028374650192837.e7c4b0a2d9f1")]),
    "ooo-nl.eml": dict(kind="auto_reply", message_ids=[]),
    "ooo-pl.eml": dict(kind="auto_reply", message_ids=[mid("171023759821.3612.4410928374650192834.2a9c8f1e0b7d")]),
    "ooo-da.eml": dict(kind="auto_reply", message_ids=[mid("171023767055.3612.8829103746501928374.9d2e0b6a4c1f")]),
    "ooo-custom-subject-exchange.eml": dict(
        kind="auto_reply", message_ids=[mid("171023774110.3612.1029384756102938475.4b7e2c9f0a3d")]),
    "autoreply-rfc3834-helpdesk.eml": dict(
        kind="auto_reply", message_ids=[mid("171023781940.3612.5567102938475610293.a3d9f2e7c0b1")]),
    "newsletter-precedence-bulk.eml": dict(kind="auto_reply", message_ids=[]),
    # complaints
    "complaint-arf-abuse.eml": dict(
        kind="complaint", recipient="xavier@example.net",
        message_ids=[mid("171092592110.3612.7720193846501928374.f1a2b3c4d5e6")]),
    # people
    "reply-human-gmail.eml": dict(
        kind="reply", from_address="bob.jones@example.com", recipient=None, hard=None,
        message_ids=[mid("171092610358.3612.6654102938475610293.9f8e7d6c5b4a"),
                     mid("171023484412.3612.1029384756019283746.0a1b2c3d4e5f")]),
    "reply-outlook-html.eml": dict(
        kind="reply", message_ids=[mid("171102913045.3612.2210938475610293847.7c6b5a4f3e2d")]),
    "reply-unsubscribe.eml": dict(
        kind="unsubscribe", from_address="carl.berg@example.net",
        message_ids=[mid("171102881204.3612.4401928374650192834.8b7a6c5d4e3f")]),
    "reply-abmelden-de.eml": dict(
        kind="unsubscribe", message_ids=[mid("171102896511.3612.7730192837465019283.1f2e3d4c5b6a")]),
    "unsubscribe-mailto.eml": dict(kind="unsubscribe", from_address="eva.lind@example.org", message_ids=[]),
    "unsubscribe-mailto-apple.eml": dict(kind="unsubscribe", from_address="felix.berg@example.com", message_ids=[]),
    # broken
    "broken-mime.eml": dict(kind="other", message_ids=[], from_address="promo@deals.example.net"),
    "empty.eml": dict(kind="other", message_ids=[], from_address=None, subject=""),
}

AUTO_REPLIES = sorted(name for name, e in EXPECTED.items() if e["kind"] == "auto_reply")
DELAYED = sorted(name for name, e in EXPECTED.items() if e.get("delayed"))


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def check(result: Classification, expected: dict) -> None:
    actual = result.to_dict()
    assert {k: actual[k] for k in expected} == expected, actual


def test_every_sample_has_an_expectation():
    assert sorted(p.name for p in SAMPLES.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample(name):
    result = classify(sample(name), unsubscribe_addresses=UNSUBSCRIBE)
    check(result, EXPECTED[name])
    json.dumps(result.to_dict())
    if result.kind == "bounce":
        assert result.reason and result.status and result.recipient
    if result.kind != "bounce" and not result.delayed:
        assert result.hard is None


@pytest.mark.parametrize("ending", ["\r\n", "\r"], ids=["crlf", "cr-only"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_line_endings_do_not_change_the_reading(name, ending):
    raw = sample(name).replace(b"\r\n", b"\n").replace(b"\n", ending.encode())
    result = classify(raw, unsubscribe_addresses=UNSUBSCRIBE)
    check(result, EXPECTED[name])


def test_the_unsubscribe_address_is_what_makes_a_blank_mail_an_unsubscribe():
    raw = sample("unsubscribe-mailto-apple.eml")
    assert classify(raw).kind == "other"
    assert classify(raw, unsubscribe_addresses=frozenset({"Alice+Unsubscribe@Example.test"})).kind == "unsubscribe"
    assert classify(raw, unsubscribe_addresses=frozenset({"bob+unsubscribe@example.test"})).kind == "other"
    # the Gmail one says "Unsubscribe" too: an unsubscribe either way
    assert classify(sample("unsubscribe-mailto.eml")).kind == "unsubscribe"


def test_bounce_reasons_are_the_servers_answer():
    reasons = {name: classify(sample(name)).reason for name in (
        "bounce-postfix.eml", "bounce-gmail-failure.eml", "bounce-exchange-legacy-text.eml", "bounce-exim.eml")}
    assert reasons["bounce-postfix.eml"] == ("550 5.1.1 <henry@example.net>: Recipient address rejected: "
                                             "User unknown in virtual mailbox table")
    assert reasons["bounce-gmail-failure.eml"].startswith(
        "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking")
    assert reasons["bounce-exchange-legacy-text.eml"] == "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"
    assert "Recipient address rejected" in reasons["bounce-exim.eml"]


def test_encoded_subjects_are_decoded():
    assert classify(sample("ooo-fr.eml")).subject == "Réponse automatique : Petite question au sujet d'ACME"
    assert classify(sample("ooo-es.eml")).subject == "Respuesta automática: Quick question about ACME"
    assert classify(sample("ooo-pl.eml")).subject == "Automatyczna odpowiedź: Quick question about ACME"


# -- rules on small hand-made messages ------------------------------------------------------------

def message(*headers: str, body: str = "Hello") -> bytes:
    base = {"from": "From: Pat Lee <pat@example.com>", "to": "To: alice@example.test",
            "subject": "Subject: Re: Quick question about ACME", "in-reply-to": "In-Reply-To: <step1@example.test>"}
    for header in headers:
        base[header.split(":")[0].lower()] = header
    return ("\n".join(h for h in base.values() if not h.endswith(":")) + "\n\n" + body).encode()


@pytest.mark.parametrize("subject", [
    "Out of Office: Quick question", "Automatic reply: Quick question", "[Auto-Reply] Quick question",
    "AW: Quick question (Abwesenheitsnotiz)", "Automatische Antwort: Kurze Frage", "Absence du bureau",
    "Fuera de la oficina: pregunta", "Automatisch antwoord: vraag", "Resposta automática: pergunta",
    "Ausente: pergunta", "Autosvar: fråga", "Quick question - Out of Office", "RE: Abwesenheitsnotiz: Frage",
])
def test_out_of_office_subjects(subject):
    assert classify(message(f"Subject: {subject}")).kind == "auto_reply"


@pytest.mark.parametrize("subject", [
    "Re: Out of office tools for ACME", "Re: We are absent from the trade show", "Re: Quick question",
    "Re: Stop by our booth",
])
def test_person_replies_that_merely_mention_the_words(subject):
    assert classify(message(f"Subject: {subject}")).kind == "reply"


@pytest.mark.parametrize("header", [
    "Auto-Submitted: auto-replied", "Auto-Submitted: auto-generated (vacation)", "X-Autoreply: yes",
    "X-Autorespond: Quick question", "Precedence: auto_reply", "Precedence: junk", "Precedence: bulk",
])
def test_automatic_reply_headers(header):
    assert classify(message(header)).kind == "auto_reply"


@pytest.mark.parametrize("header", ["Auto-Submitted: no", "Precedence: list", "X-Auto-Response-Suppress: All"])
def test_headers_that_do_not_make_an_automatic_reply(header):
    assert classify(message(header, body="Thursday works, talk then.")).kind == "reply"


@pytest.mark.parametrize("first_line", [
    "Unsubscribe", "unsubscribe me", "Please remove me.", "STOP", "Opt-out", "opt out please",
    "Remove me from your list", "Bitte abmelden", "Désinscrire", "me désabonner", "Darme de baja", "Baja",
])
def test_unsubscribe_words(first_line):
    body = f"\n{first_line}\n\nOn Tue, 12 Mar 2024 at 09:14, Alice <alice@example.test> wrote:\n> Hi"
    assert classify(message(body=body)).kind == "unsubscribe"
    assert classify(message(f"Subject: {first_line}", body="")).kind == "unsubscribe"


@pytest.mark.parametrize("body", [
    "Stop by our booth next week!", "> unsubscribe\n\nThanks, interested.",
    "On Tue, Alice wrote:\n> Unsubscribe: https://mailflow.example.test/u/x", "Don't unsubscribe me, I like it",
])
def test_replies_that_are_not_unsubscribes(body):
    assert classify(message(body=body)).kind == "reply"


def test_mail_without_thread_headers_is_other_and_from_is_lower_case():
    result = classify(message("In-Reply-To:", "From: \"Lee, Pat (Sales)\" <Pat.Lee@Example.COM>",
                              "Subject: Hello"))
    assert (result.kind, result.from_address, result.message_ids) == ("other", "pat.lee@example.com", ())


def test_references_without_in_reply_to_make_a_reply_newest_first():
    result = classify(message("In-Reply-To:", "References: <a@example.test>\n <b@example.test> <c@example.test>"))
    assert result.kind == "reply"
    assert result.message_ids == ("<c@example.test>", "<b@example.test>", "<a@example.test>")


def test_bare_message_ids_are_normalised():
    assert classify(message("In-Reply-To: step1@example.test")).message_ids == ("<step1@example.test>",)


@pytest.mark.parametrize("status, reason, hard", [
    ("5.1.1", "550 5.1.1 user unknown", True),
    ("5.7.1", "554 5.7.1 rejected by policy", True),
    ("5.1.2", "550 5.1.2 host unknown", True),
    ("5.2.2", "552 5.2.2 mailbox full", False),
    ("5.0.0", "552 over quota", False),
    ("4.4.7", "delivery time expired", False),
    ("4.7.1", "try again later", False),
])
def test_hard_and_soft_bounces(status, reason, hard):
    report = (f"Final-Recipient: rfc822; pat@example.com\nAction: failed\nStatus: {status}\n"
              f"Diagnostic-Code: smtp; {reason}\n")
    raw = message("From: MAILER-DAEMON@mx.example.com", "Subject: Undelivered Mail Returned to Sender",
                  "Content-Type: multipart/report; report-type=delivery-status; boundary=b", "In-Reply-To:",
                  body=f"--b\nContent-Type: text/plain\n\nfailed\n--b\nContent-Type: message/delivery-status\n\n"
                       f"Reporting-MTA: dns; mx.example.com\n\n{report}\n--b--\n")
    result = classify(raw)
    assert (result.kind, result.status, result.hard, result.recipient) == ("bounce", status, hard, "pat@example.com")


def test_x_original_message_id_of_a_bounce_is_kept():
    raw = message("From: Mail Delivery System <MAILER-DAEMON@mx.example.com>", "Subject: Undeliverable: hi",
                  "X-Original-Message-ID: <ours-1@example.test>", "In-Reply-To:",
                  body="Your message to pat@example.com couldn't be delivered.\n550 5.1.1 User unknown\n")
    result = classify(raw)
    assert (result.kind, result.recipient, result.message_ids) == ("bounce", "pat@example.com",
                                                                   ("<ours-1@example.test>",))


def test_a_person_forwarding_a_bounce_is_not_a_bounce():
    body = "FYI, see below\n\n---------- Forwarded message ---------\nUndelivered Mail Returned to Sender\n" \
           "550 5.1.1 <x@example.net>: Recipient address rejected: User unknown"
    assert classify(message("Subject: Fwd: Undelivered Mail Returned to Sender", body=body)).kind == "reply"


def test_a_read_receipt_is_not_a_reply():
    raw = message("Subject: Read: Quick question about ACME",
                  "Content-Type: multipart/report; report-type=disposition-notification; boundary=r",
                  body="--r\nContent-Type: text/plain\n\nYour message was read.\n--r\n"
                       "Content-Type: message/disposition-notification\n\n"
                       "Final-Recipient: rfc822; pat@example.com\n"
                       "Disposition: manual-action/MDN-sent-manually; displayed\n--r--\n")
    assert classify(raw).kind == "auto_reply"


def test_feedback_reports_that_are_not_complaints():
    raw = sample("complaint-arf-abuse.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    assert classify(raw).kind == "other"


# -- the command line -----------------------------------------------------------------------------

def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLOW_")}
    env["MAILFLOW_CONFIG"] = "/nonexistent/mailflow.toml"  # proves no configuration is read
    env["MAILFLOW_KEY_FILE"] = "/nonexistent/master.key"
    return subprocess.run([sys.executable, "-m", "appliance.cli", "inspect-message", *args], env=env,
                          input=stdin, capture_output=True, timeout=60)


def test_cli_prints_a_bounce_as_json():
    result = run_cli(str(SAMPLES / "bounce-postfix.eml"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert result.stdout.decode().startswith('{\n  "delayed": false,')  # indent 2, sorted keys
    assert data["kind"] == "bounce" and data["recipient"] == "henry@example.net"
    assert data["status"] == "5.1.1" and data["hard"] is True and "Recipient address rejected" in data["reason"]
    assert data["message_ids"] == [mid("171023684701.3612.8801736452981170264.2e6b0a9d7c41")]


def test_cli_takes_unsubscribe_addresses_and_standard_input():
    raw = sample("unsubscribe-mailto-apple.eml")
    result = run_cli("--unsubscribe-address", "alice+unsubscribe@example.test", "-", stdin=raw)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "unsubscribe"
    assert json.loads(run_cli(str(SAMPLES / "unsubscribe-mailto-apple.eml")).stdout)["kind"] == "other"


def test_cli_answers_for_garbage_and_fails_in_one_line_for_unreadable_paths(tmp_path):
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(bytes(range(256)) * 10)
    result = run_cli(str(garbage))
    assert result.returncode == 0 and json.loads(result.stdout)["kind"] in KINDS
    for path in (tmp_path / "missing.eml", tmp_path):
        result = run_cli(str(path))
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 1 and result.stdout == b""
        assert len(lines) == 1 and lines[0].startswith("mailflow: cannot read ")


# -- it never raises ------------------------------------------------------------------------------

def assert_answers(raw, **kwargs) -> Classification:
    result = classify(raw, **kwargs)
    assert isinstance(result, Classification) and result.kind in KINDS
    json.dumps(result.to_dict())
    return result


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes(raw):
    assert_answers(raw)


HEADER_NAMES = ["From", "To", "Subject", "In-Reply-To", "References", "Content-Type", "Auto-Submitted",
                "Content-Transfer-Encoding", "Return-Path", "X-Failed-Recipients", "Precedence", "Delivered-To"]
VALUES = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["multipart/report; report-type=delivery-status; boundary=b", "<>", "auto-replied",
                     "multipart/mixed; boundary=\"b\"", "message/delivery-status", "base64", "quoted-printable",
                     "MAILER-DAEMON@example.com", "=?utf-8?B?w6k=?=", "=?bogus?Q?=FF?=", "<a@example.test>",
                     "text/plain; charset=x-nothing", "Undelivered Mail Returned to Sender", "bulk"]))
LINES = st.one_of(st.builds(lambda n, v: f"{n}: {v}", st.sampled_from(HEADER_NAMES), VALUES),
                  st.sampled_from(["", "--b", "--b--", "Action: failed", "Status: 5.1.1", " folded",
                                   "Final-Recipient: rfc822; x@example.com", "Content-Type: message/rfc822",
                                   "550 5.1.1 <x@example.com>: User unknown", "> quoted", "unsubscribe"]),
                  st.text(max_size=60))


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=40), st.sampled_from(["\n", "\r\n", "\r"]), st.sampled_from(["utf-8", "latin-1"]))
def test_random_text_with_any_line_endings(lines, ending, encoding):
    assert_answers(ending.join(lines).encode(encoding, "replace"), unsubscribe_addresses=UNSUBSCRIBE)


def header_groups(raw: bytes) -> tuple[list[bytes], bytes]:
    """The header section as folded groups (a line with its continuation lines), and the rest."""
    text = raw.replace(b"\r\n", b"\n")
    head, sep, body = text.partition(b"\n\n")
    groups: list[bytes] = []
    for line in head.split(b"\n"):
        if groups and line[:1] in (b" ", b"\t"):
            groups[-1] += b"\n" + line
        else:
            groups.append(line)
    return groups, sep + body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(EXPECTED)), st.integers(0, 2**32 - 1), st.sampled_from(["truncate", "shuffle", "flip"]))
def test_mutated_samples(name, seed, how):
    rng = random.Random(seed)
    raw = bytearray(sample(name))
    if how == "truncate" and raw:
        raw = raw[:rng.randrange(len(raw))]
    elif how == "shuffle":
        lines = bytes(raw).split(b"\n")
        rng.shuffle(lines)
        raw = bytearray(b"\n".join(lines))
    elif raw:
        for _ in range(rng.randint(1, 50)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    assert_answers(bytes(raw), unsubscribe_addresses=UNSUBSCRIBE)


def benign(raw: bytes, rng: random.Random) -> bytes:
    """The same message as another system might store it: header order, header-name case, line
    endings and unrelated extra headers changed."""
    groups, rest = header_groups(raw)
    rng.shuffle(groups)
    for index, group in enumerate(groups):
        name, colon, value = group.partition(b":")
        if colon and rng.random() < 0.3:
            groups[index] = rng.choice([name.lower(), name.upper()]) + colon + value
    groups += [b"X-Spam-Score: 0.%d" % rng.randrange(10), b"X-Mailer-Note: relayed"][:rng.randint(0, 2)]
    result = b"\n".join(groups) + rest
    return result.replace(b"\n", rng.choice([b"\n", b"\r\n", b"\r"]))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(AUTO_REPLIES), st.integers(0, 2**32 - 1))
def test_an_auto_reply_is_never_a_reply_nor_a_bounce(name, seed):
    raw = sample(name)
    if raw.strip():
        raw = benign(raw, random.Random(seed))
    assert assert_answers(raw).kind not in ("reply", "bounce")


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(DELAYED), st.integers(0, 2**32 - 1), st.booleans())
def test_a_delayed_warning_is_never_a_bounce(name, seed, cut_body):
    raw = benign(sample(name), random.Random(seed))
    if cut_body:
        raw = raw[:random.Random(seed).randrange(len(raw) // 2, len(raw))]
    result = assert_answers(raw)
    assert result.kind != "bounce" and result.delayed


@pytest.mark.parametrize("raw", [
    b"Subject: " + b"a" * 3_000_000 + b"\n\nbody",
    b"Content-Type: multipart/mixed; " + b'a="b"; ' * 200_000 + b"\n\nx",
    b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(3000)),
    b'Content-Type: multipart/mixed; boundary="b"\n\n' + b"--b\nContent-Type: text/plain\n\nhi\n" * 60_000,
    b"From: MAILER-DAEMON@example.com\nSubject: failure notice\n\n" + b"a@" * 2_000_000,
    b"Content-Type: text/html\n\n" + b"<script" * 500_000,
    b"In-Reply-To: " + b"<" * 1_000_000 + b"\nReferences: " + b"<a@b" * 300_000 + b"\n\n",
], ids=["huge-subject", "huge-content-type", "deep-nesting", "many-parts", "address-flood", "script-flood",
        "angle-flood"])
def test_huge_and_hostile_inputs_finish_quickly(raw):
    started = time.monotonic()
    assert_answers(raw)
    assert time.monotonic() - started < 15
