"""Pages in a real browser (Debian Chromium via Playwright) with the strict CSP switched on."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_setup_page_loads_without_console_errors(live_server, page):
    response = page.page.goto(live_server.setup_link)
    assert response.status == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert page.page.locator("#setup").get_attribute("data-state") == "valid"
    assert page.page.locator("h1").inner_text() == "Set up MailFlow"
    # the stylesheet really applied (a blocked or missing CSS file would leave the default)
    assert page.page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
    assert page.problems == []


def test_the_browser_enforces_the_csp_against_inline_script(shared_live_server, page):
    page.page.goto(shared_live_server.url + "/")
    page.page.evaluate("""() => {
        const s = document.createElement('script');
        s.textContent = 'window.injected = true';
        document.body.appendChild(s);
    }""")
    assert page.page.evaluate("window.injected === undefined")
    assert any("Content Security Policy" in e for e in page.console_errors)


def test_an_unknown_setup_link_says_so(shared_live_server, page):
    response = page.page.goto(shared_live_server.url + "/setup/forged-token")
    assert response.status == 404
    assert "not valid" in page.page.locator("#setup").inner_text()


PASSWORD = "a long and memorable passphrase"


def test_first_run_in_the_browser(live_server, page):
    """Setup link → owner account → dashboard → sign out → sign in → profile, all under the CSP."""
    p = page.page
    p.goto(live_server.setup_link)
    p.fill("#f-email", "owner@example.com")
    p.fill("#f-name", "Olga Owner")
    p.fill("#f-password", PASSWORD)
    p.fill("#f-password_confirm", "a different passphrase!")
    p.click("#setup-form button[type=submit]")
    assert p.locator("#e-password_confirm").inner_text() == "The two passwords differ."
    assert p.input_value("#f-email") == "owner@example.com"  # what the user typed is kept
    p.fill("#f-password", PASSWORD)
    p.fill("#f-password_confirm", PASSWORD)
    p.click("#setup-form button[type=submit]")
    p.wait_for_url(live_server.url + "/")
    assert p.locator("h1").inner_text() == "Dashboard"
    assert p.locator(".sidenav a", has_text="Users").count() == 1

    p.click("button:has-text('Sign out')")
    p.wait_for_url("**/login")
    p.fill("#f-email", "owner@example.com")
    p.fill("#f-password", "wrong passphrase here")
    p.click("#login-form button[type=submit]")
    assert "Wrong email or password" in p.locator(".alert.error").inner_text()
    p.fill("#f-password", PASSWORD)
    p.click("#login-form button[type=submit]")
    p.wait_for_url(live_server.url + "/")
    p.click(".sidenav a:has-text('Profile')")
    assert "owner@example.com" in p.locator(".facts").inner_text()
    cookies = {c["name"]: c for c in p.context.cookies()}
    assert cookies["mf_session"]["httpOnly"] is True
    # the two rejected form posts answer 400 and 401 on purpose; Chromium logs those statuses
    expected = {"Failed to load resource: the server responded with a status of 400 (BAD REQUEST)",
                "Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED)"}
    assert [e for e in page.problems if e not in expected] == []


@pytest.fixture
def admin_page(live_server, page):
    """A page signed in as the owner of a fresh live server (created with `mailflow create-admin`)."""
    import subprocess
    import sys
    subprocess.run([sys.executable, "-m", "appliance.cli", "create-admin", "boss@example.com"],
                   env=live_server.env, input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    page.page.goto(live_server.url + "/login")
    page.page.fill("#f-email", "boss@example.com")
    page.page.fill("#f-password", PASSWORD)
    page.page.click("#login-form button[type=submit]")
    page.page.wait_for_url(live_server.url + "/")
    return page


def test_mailbox_form_presets_fill_the_servers(live_server, admin_page):
    p = admin_page.page
    p.click(".sidenav a:has-text('Mailboxes')")
    p.click("a:has-text('Connect mailbox')")
    from playwright.sync_api import expect
    expect(p.locator("#f-smtp_host")).to_have_value("smtp.gmail.com")  # the default preset, by presets.js
    p.select_option("#f-provider", "fastmail")
    expect(p.locator("#f-smtp_host")).to_have_value("smtp.fastmail.com")
    expect(p.locator("#f-imap_port")).to_have_value("993")
    expect(p.locator("input[name=save_sent_copy]")).to_be_checked()  # Fastmail files no sent mail itself
    expect(p.locator("#preset-help")).to_contain_text("App Password")
    assert admin_page.problems == []


def test_campaign_preview_switches_the_lead_without_a_reload(live_server, admin_page):
    import requests
    from playwright.sync_api import expect

    api = live_server.url + "/api/v1"
    token = requests.post(api + "/auth/login", json={"email": "boss@example.com", "password": PASSWORD},
                          timeout=10).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    lead_ids = []
    for lead in ({"email": "ann@lead.test", "first_name": "Ann"}, {"email": "bo@lead.test", "first_name": "<b>Bo</b>"}):
        r = requests.post(api + "/leads", json=lead, headers=auth, timeout=10)
        assert r.status_code == 201, r.text
        lead_ids.append(r.json()["id"])
    campaign = requests.post(api + "/campaigns", headers=auth, timeout=10, json={
        "name": "Browser campaign", "steps": [{"delay_minutes": 0, "variants": [
            {"subject": "Hi {{first_name}}", "body": "Hello {{first_name}}!"}]}]}).json()
    requests.post(f"{api}/campaigns/{campaign['id']}/leads", json={"lead_ids": lead_ids}, headers=auth, timeout=10)

    p = admin_page.page
    p.click(".sidenav a:has-text('Campaigns')")
    p.click("a:has-text('Browser campaign')")
    preview = p.locator("#campaign-preview")
    expect(preview).to_contain_text("Hello Ann!")
    p.evaluate("window.sameDocument = true")
    p.select_option("#preview-lead", str(lead_ids[1]))
    expect(preview).to_contain_text("Hello <b>Bo</b>!")  # lead data is text, never markup
    assert preview.locator("b").count() == 0
    assert p.evaluate("window.sameDocument") is True and f"lead_id={lead_ids[1]}" in p.url
    # Save re-renders the preview of the chosen lead with the new text
    p.fill("#f-steps-0-variants-0-body", "Changed for {{first_name}}.")
    p.click("#save-top")
    expect(p.locator(".alert.ok")).to_contain_text("Saved.")
    expect(preview).to_contain_text("Changed for <b>Bo</b>.")
    assert admin_page.problems == []
