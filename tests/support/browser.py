"""Browser fixtures: Debian's Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

import pytest

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which a
# closed (or air-gapped) network refuses; --no-sandbox because tests may run as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic"]


@dataclass
class PageProbe:
    """A page plus everything it complained about: console errors, CSP violations, failed loads."""

    page: object
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.console_errors + self.page_errors + self.failed_requests


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright gives each launch a fresh temporary profile of its own.
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    probe = PageProbe(pg)
    pg.on("console", lambda msg: probe.console_errors.append(msg.text) if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: probe.page_errors.append(str(exc)))
    pg.on("requestfailed", lambda req: probe.failed_requests.append(f"{req.url}: {req.failure}"))
    yield probe
    context.close()
