"""Responding from the inbox against the real local mail stack: the reply reaches the lead's
mailbox in the same thread (In-Reply-To, References, Subject, From, signature), a copy lands in
Sent when the mailbox is set to save one, the lead's answer to it joins the conversation,
suppressed addresses are refused, and an SMTP failure loses nothing."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from email.utils import make_msgid

import pytest

from appliance.services import mailboxes, suppressions

from .support.access import add_user, login
from .support.campaign_setup import admin_principal, connect_mailbox
from .support.inbox_setup import at, campaign_with_leads, eml, ingest, record_sent_step
from .test_sending import inbox as delivered

pytestmark = pytest.mark.mailstack
ALICE, BOB = "alice@example.test", "bob@example.test"


def member_of(appliance, web):
    add_user(appliance, "member@x.test", role="member")
    return login(web.test_client(), "member@x.test")


def conversation(appliance, mailstack, **mailbox):
    """Alice's mailbox wrote two steps to a fresh address of Bob's; Bob answered the second."""
    tag = f"t{time.monotonic_ns()}"
    lead_email = f"bob+{tag}@example.test"
    box = connect_mailbox(appliance, mailstack, ALICE, **mailbox)
    campaign_id, (lead,) = campaign_with_leads(appliance, [box["id"]], [lead_email])
    steps = [record_sent_step(appliance, campaign_id, lead, box["id"], 0, at(0), subject=f"Hello {tag}"),
             record_sent_step(appliance, campaign_id, lead, box["id"], 1, at(1), subject=f"Hello {tag}")]
    theirs = make_msgid(domain="example.test")
    inbound_id = ingest(appliance, box["id"], eml(sender=lead_email, sender_name="Bob Baker", to=ALICE,
                                                  subject=f"RE: Re: Hello {tag}", when=at(2), in_reply_to=steps[1],
                                                  message_id=theirs, text="Sounds good.\nCall me on Tuesday."))
    return {"tag": tag, "lead_email": lead_email, "lead": lead, "box": box, "steps": steps, "theirs": theirs,
            "inbound_id": inbound_id, "campaign_id": campaign_id}


def in_folder(mailstack, user: str, folder: str, message_id: str) -> list[int]:
    client = mailstack.imap(user)
    try:
        client.select_folder(folder, readonly=True)
        return client.search(["HEADER", "Message-ID", message_id])
    finally:
        client.logout()


def audit_rows(appliance, action: str) -> list[dict]:
    return [dict(r) for r in appliance.db.connection().execute(
        "SELECT actor_label, target_id, metadata FROM audit_log WHERE action = ? ORDER BY id", (action,))]


def test_the_reply_arrives_in_the_same_thread_with_a_sent_copy(appliance, web, mailstack):
    c = conversation(appliance, mailstack, display_name="Alice Sales", signature="Alice Martin\nAcme GmbH",
                     save_sent_copy=True)
    member = member_of(appliance, web)
    r = member.client.post(f"/api/v1/replies/{c['inbound_id']}/respond",
                           json={"body": "Great, Tuesday 10:00 then?\r\nBest"}, headers=member.headers())
    assert r.status_code == 201, r.get_json()
    reply = r.get_json()
    assert reply["direction"] == "out" and reply["kind"] == "sent" and reply["sent_copy"] == "saved"
    assert reply["in_reply_to"] == c["theirs"] and reply["sent_by"] == "member@x.test"
    assert reply["lead_id"] == c["lead"] and reply["campaign_id"] == c["campaign_id"]

    got = delivered(mailstack, BOB, ["HEADER", "Message-ID", reply["header_message_id"]])
    assert len(got) == 1
    mail = got[0]
    assert mail["In-Reply-To"] == c["theirs"]
    assert mail["References"].split() == [*c["steps"], c["theirs"]]
    assert mail["Subject"] == f"Re: Hello {c['tag']}"  # their "RE: Re:" is not stacked on
    assert mail["From"] == "Alice Sales <alice@example.test>" and mail["To"] == c["lead_email"]
    assert re.fullmatch(r"<[^@>]+@example\.test>", mail["Message-ID"])
    assert mail["Message-ID"] not in c["steps"] and "List-Unsubscribe" not in mail
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("Great, Tuesday 10:00 then?\nBest\n\n-- \nAlice Martin\nAcme GmbH\n\nOn ")
    assert "Bob Baker wrote:\n> Sounds good.\n> Call me on Tuesday." in text
    # the copy in Alice's Sent folder
    assert len(in_folder(mailstack, ALICE, "Sent", reply["header_message_id"])) == 1

    # the conversation now ends with our reply; the message answered is read
    message = member.client.get(f"/api/v1/replies/{c['inbound_id']}").get_json()
    assert [t["type"] for t in message["thread"]] == ["step", "step", "in", "out"]
    assert message["thread"][-1]["body_text"] == text.rstrip("\n")
    assert message["unread"] is False
    # audited: the reply, and the credential read it needed (one, for SMTP and the Sent copy)
    sent = audit_rows(appliance, "reply.sent")
    assert len(sent) == 1 and sent[0]["target_id"] == str(reply["id"]) and sent[0]["actor_label"] == "member@x.test"
    reads = [r for r in audit_rows(appliance, "credential.read") if '"purpose":"respond"' in r["metadata"]]
    assert len(reads) == 1

    # Bob answers our reply: it joins the same conversation, matched by our Message-ID
    answer = ingest(appliance, c["box"]["id"], eml(
        sender=c["lead_email"], to=ALICE, when=datetime.now(timezone.utc), subject=f"Re: Hello {c['tag']}",
        in_reply_to=reply["header_message_id"], text="Tuesday it is."))
    again = member.client.get(f"/api/v1/replies/{answer}").get_json()
    assert again["lead_id"] == c["lead"] and again["campaign_id"] == c["campaign_id"]
    assert [t["type"] for t in again["thread"]][-2:] == ["out", "in"]


def test_without_a_sent_copy_setting_nothing_is_appended(appliance, web, mailstack):
    c = conversation(appliance, mailstack, save_sent_copy=False)
    member = member_of(appliance, web)
    page = member.client.get(f"/inbox/{c['inbound_id']}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = member.client.post(f"/inbox/{c['inbound_id']}/respond", data={"csrf_token": token, "body": "Thanks!"})
    assert r.status_code == 302
    shown = member.client.get(r.headers["Location"]).get_data(as_text=True)
    assert f"Reply sent to {c['lead_email']}." in shown and 'data-type="out"' in shown
    out = appliance.db.connection().execute("SELECT header_message_id FROM inbox_messages WHERE direction = 'out'"
                                            ).fetchone()[0]
    assert len(delivered(mailstack, BOB, ["HEADER", "Message-ID", out])) == 1
    assert in_folder(mailstack, ALICE, "Sent", out) == []


def test_a_suppressed_address_is_refused_and_nothing_is_sent(appliance, web, mailstack):
    c = conversation(appliance, mailstack)
    suppressions.add(appliance.db, admin_principal(appliance), {"value": c["lead_email"], "reason": "manual"})
    member = member_of(appliance, web)
    r = member.client.post(f"/api/v1/replies/{c['inbound_id']}/respond", json={"body": "One more thing"},
                           headers=member.headers())
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "suppressed"
    conn = appliance.db.connection()
    assert conn.execute("SELECT count(*) FROM inbox_messages WHERE direction = 'out'").fetchone()[0] == 0
    assert [r for r in audit_rows(appliance, "credential.read") if '"purpose":"respond"' in r["metadata"]] == []


def test_an_smtp_failure_says_why_and_keeps_the_text(appliance, web, mailstack):
    c = conversation(appliance, mailstack)
    mailboxes.update(appliance.db, appliance.keys, admin_principal(appliance), c["box"]["id"],
                     {"password": "not-the-app-password"})
    member = member_of(appliance, web)
    text = "A long answer I do not want to type again.\nWith two lines."
    r = member.client.post(f"/api/v1/replies/{c['inbound_id']}/respond", json={"body": text},
                           headers=member.headers())
    assert r.status_code == 502
    error = r.get_json()["error"]
    assert error["code"] == "smtp_failed" and error["details"]["transport_code"] == "auth_failed"
    assert error["details"]["body"] == text
    page = member.client.get(f"/inbox/{c['inbound_id']}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = member.client.post(f"/inbox/{c['inbound_id']}/respond", data={"csrf_token": token, "body": text})
    shown = r.get_data(as_text=True)
    assert r.status_code == 502 and 'id="respond-error"' in shown
    assert f'name="body" rows="8" required>{text}</textarea>' in shown
    assert appliance.db.connection().execute(
        "SELECT count(*) FROM inbox_messages WHERE direction = 'out'").fetchone()[0] == 0


def test_a_hostile_stored_subject_cannot_add_headers(appliance, web, mailstack):
    c = conversation(appliance, mailstack)
    with appliance.db.transaction() as conn:  # as if a parser had let a line break through
        conn.execute("UPDATE inbox_messages SET subject = ? WHERE id = ?",
                     (f"Hello {c['tag']}\r\nBcc: carol@other.test\r\nX-Injected: yes", c["inbound_id"]))
    member = member_of(appliance, web)
    r = member.client.post(f"/api/v1/replies/{c['inbound_id']}/respond", json={"body": "Hi\r\nBcc: x@y.test"},
                           headers=member.headers())
    assert r.status_code == 201, r.get_json()
    mail = delivered(mailstack, BOB, ["HEADER", "Message-ID", r.get_json()["header_message_id"]])[0]
    assert mail["Subject"] == f"Re: Hello {c['tag']} Bcc: carol@other.test X-Injected: yes"
    assert "Bcc" not in mail and "X-Injected" not in mail
    assert mail.get_body(("plain",)).get_content().startswith("Hi\r\nBcc: x@y.test")  # the body is only body
