"""Ids typed into page URLs and forms: anything that is not an ASCII whole number naming a
possible row is the caller's mistake (400, or simply ignored), never a server error. "²" passes
str.isdigit() and fails int(); 2**64 overflows the database driver."""

from __future__ import annotations

import pytest

from appliance.services.ids import MAX_ID, id_from_text

from .support.access import add_user, login

ODD = ["%C2%B2", "%D9%A3", "18446744073709551616", "-1", "0", "1e3", "%20"]


@pytest.fixture
def admin(appliance, web):
    add_user(appliance, "pages-admin@x.test", role="admin")
    return login(web.test_client(), "pages-admin@x.test")


@pytest.mark.parametrize("value", ODD)
@pytest.mark.parametrize("path", ["/sending?campaign_id=", "/sending?mailbox_id=", "/sending/sent?campaign_id=",
                                  "/sending/problems?campaign_id=", "/suppressions?cursor=",
                                  "/settings/audit-log?cursor="])
def test_odd_ids_in_page_urls_never_cause_a_server_error(admin, path, value):
    r = admin.client.get(path + value)
    assert r.status_code in (200, 400), (path, value, r.status_code)


def test_id_from_text():
    assert id_from_text("42") == 42 and id_from_text(str(MAX_ID)) == MAX_ID
    for bad in ["²", "٣", str(MAX_ID + 1), "0", "-1", "", " 1", None, 7]:
        assert id_from_text(bad) is None
