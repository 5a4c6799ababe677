"""AES-256-GCM for secrets at rest: fresh nonces, bound to their row and column."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, strategies as st

from appliance.crypto import SecretBox, SecretDecryptError, location


@pytest.fixture
def box():
    return SecretBox(os.urandom(32))


def test_round_trip_and_fresh_nonce(box):
    where = location("mailboxes", 7, "password")
    a, b = box.seal("app-password", where), box.seal("app-password", where)
    assert a != b and a[1:13] != b[1:13]  # a new 96-bit nonce every time
    assert b"app-password" not in a
    assert box.open(a, where) == box.open(b, where) == "app-password"


def test_a_ciphertext_moved_to_another_row_or_column_fails(box):
    sealed = box.seal("secret", location("mailboxes", 7, "password"))
    for elsewhere in (location("mailboxes", 8, "password"), location("mailboxes", 7, "smtp_password"),
                      location("webhooks", 7, "password")):
        with pytest.raises(SecretDecryptError, match="moved from another row"):
            box.open(sealed, elsewhere)


def test_tampering_and_the_wrong_key_fail(box):
    where = location("mailboxes", 1, "password")
    sealed = bytearray(box.seal("secret", where))
    sealed[-1] ^= 1
    with pytest.raises(SecretDecryptError):
        box.open(bytes(sealed), where)
    with pytest.raises(SecretDecryptError):
        SecretBox(os.urandom(32)).open(box.seal("secret", where), where)
    with pytest.raises(SecretDecryptError):
        box.open(b"\x02" + bytes(40), where)


@given(st.text(max_size=300))
def test_any_text_round_trips(text):
    box = SecretBox(b"k" * 32)
    where = location("t", 1, "c")
    assert box.open(box.seal(text, where), where) == text
