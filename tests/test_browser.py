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
