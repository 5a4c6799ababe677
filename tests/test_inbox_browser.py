"""The inbox in a real browser (Debian Chromium via Playwright) against a real `mailflow serve`,
with hostile inbound mail (tests/samples/hostile/*.eml) stored through the real ingest path:
no dialog fires, no request leaves for any host but MailFlow, nothing active survives in the
DOM the browser built, and remote images load only after "Show images", in a sandboxed frame
that sends no referrer."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from appliance.runtime import open_appliance

from .support.appliance import make_config
from .support.inbox_setup import at, campaign_with_leads, eml, ingest, offline_mailbox, record_sent_step

pytestmark = pytest.mark.browser
SAMPLES = sorted((Path(__file__).parent / "samples" / "hostile").glob("*.eml"))
PASSWORD = "a long and memorable passphrase"
SALES = "sales@acme.test"
# What the browser may find inside a shown message: nothing that runs, loads or submits.
ACTIVE_CONTENT = """() => {
  const forbidden = ['script', 'style', 'iframe', 'frame', 'object', 'embed', 'applet', 'form', 'input', 'button',
    'textarea', 'select', 'svg', 'math', 'link', 'meta', 'base', 'video', 'audio', 'source', 'picture', 'template',
    'noscript', 'marquee', 'details'];
  const found = [];
  for (const body of document.querySelectorAll('.mail-body')) {
    for (const el of body.querySelectorAll('*')) {
      const tag = el.tagName.toLowerCase();
      if (forbidden.includes(tag)) found.push(tag);
      for (const a of el.attributes) {
        const name = a.name.toLowerCase(), value = a.value.trim().toLowerCase();
        if (name.startsWith('on') || ['style', 'srcset', 'background', 'poster', 'ping', 'formaction', 'srcdoc',
                                      'xlink:href', 'src', 'action', 'data'].includes(name))
          found.push(tag + '@' + name);
        if (name === 'href' && !/^(https?:|mailto:)/.test(value)) found.push(tag + '@href=' + value);
      }
      if (tag === 'a' && el.hasAttribute('href') &&
          !(el.relList.contains('noopener') && el.relList.contains('noreferrer') && el.target === '_blank'))
        found.push('a without rel/target: ' + el.outerHTML);
    }
  }
  const foreignScripts = [...document.scripts].filter(s => !s.src.startsWith(location.origin)).length;
  if (foreignScripts) found.push(foreignScripts + ' foreign or inline scripts');
  return found;
}"""


class ImageServer:
    """A local stand-in for a sender's image host: counts requests and keeps their Referer."""

    PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                          "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")

    def __init__(self):
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                hits.append((self.path, self.headers.get("Referer")))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(ImageServer.PIXEL)))
                self.end_headers()
                self.wfile.write(ImageServer.PIXEL)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def images():
    server = ImageServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hostile_inbox(images):
    """A live server whose inbox holds every hostile sample and one message with a real image."""
    import shutil
    import tempfile

    from .support.live_server import LiveServer
    root = Path(tempfile.mkdtemp(prefix="mailflow-inbox-"))
    server = LiveServer(root).start()
    try:
        subprocess.run([sys.executable, "-m", "appliance.cli", "create-admin", "boss@example.com"], env=server.env,
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
        app = open_appliance(make_config(root), create=False, env={})
        try:
            box = offline_mailbox(app, SALES)
            campaign_id, (lead,) = campaign_with_leads(app, [box], ["mallory@attacker.example"])
            record_sent_step(app, campaign_id, lead, box, 0, at(0))
            ids = {sample.stem: ingest(app, box, sample.read_bytes()) for sample in SAMPLES}
            ids["with-image"] = ingest(app, box, eml(
                sender="mallory@attacker.example", to=SALES, subject="Our new logo", when=at(1), text="See the logo.",
                html=f'<p>See the logo:</p><img src="{images.url}/logo.png" alt="the logo" onerror="alert(1)">'
                     f'<script>alert("frame")</script><a href="https://ok.example/">our site</a>'))
        finally:
            app.close()
        yield server, ids
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def signed_in(server, page):
    p = page.page
    p.goto(server.url + "/login")
    p.fill("#f-email", "boss@example.com")
    p.fill("#f-password", PASSWORD)
    p.click("#login-form button[type=submit]")
    p.wait_for_url(server.url + "/")
    return p


def watch(server, page) -> dict:
    """Dialogs (dismissed) and every request for anything but MailFlow itself."""
    seen = {"dialogs": [], "foreign": []}

    def on_dialog(dialog):
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.page.on("dialog", on_dialog)
    page.page.on("request", lambda req: None if req.url.startswith(server.url) or req.url == "about:blank"
                 else seen["foreign"].append(req.url))
    return seen


def quiet(page) -> bool:
    """No console error (a CSP violation would be one), no script error, no failed load (Chromium
    may abandon the favicon of a page it is still rendering: that one is noise)."""
    failed = [f for f in page.failed_requests if "/static/favicon.svg" not in f]
    assert page.console_errors == [] and page.page_errors == [] and failed == [], page.problems
    return True


def test_the_inbox_list_of_hostile_mail_is_inert(hostile_inbox, page):
    server, ids = hostile_inbox
    p = signed_in(server, page)
    seen = watch(server, page)
    p.click("#nav-inbox")
    p.wait_for_load_state("networkidle")
    assert p.locator("#inbox-table tbody tr").count() == len(ids)
    assert p.locator("#nav-unread").inner_text() == str(len(ids))
    # the hostile subject and sender name are shown as the text they are
    assert p.locator("#inbox-table", has_text="<img src=x onerror=alert('subject')>").count() == 1
    assert p.locator("#inbox-table", has_text="<script>alert('from')</script>").count() == 1
    assert seen == {"dialogs": [], "foreign": []} and quiet(page)


@pytest.mark.parametrize("sample", [s.stem for s in SAMPLES])
def test_a_hostile_message_renders_inert(hostile_inbox, page, sample):
    server, ids = hostile_inbox
    p = signed_in(server, page)
    seen = watch(server, page)
    p.goto(f"{server.url}/inbox/{ids[sample]}")
    p.wait_for_load_state("networkidle")
    body = p.locator(".thread-item.current .mail-body")
    assert body.count() == 1 and "sample" in body.inner_text()  # the harmless text is there
    # give handlers every chance: the mouse over the body, events on every element, focus moving
    body.hover()
    body.evaluate("""root => { for (const el of root.querySelectorAll('*'))
        for (const type of ['mouseover', 'mouseenter', 'focus', 'load', 'error', 'toggle', 'animationstart'])
            el.dispatchEvent(new Event(type)); }""")
    for _ in range(5):
        p.keyboard.press("Tab")
    p.wait_for_timeout(300)
    assert p.evaluate(ACTIVE_CONTENT) == []
    assert seen == {"dialogs": [], "foreign": []}, seen
    assert quiet(page)


def test_the_subject_is_text_in_the_thread(hostile_inbox, page):
    server, ids = hostile_inbox
    p = signed_in(server, page)
    seen = watch(server, page)
    p.goto(f"{server.url}/inbox/{ids['plain-text']}")
    assert p.locator("#thread-subject").inner_text() == "<img src=x onerror=alert('subject')>"
    assert "<script>alert('text')</script>" in p.locator(".thread-item.current .mail-body").inner_text()
    assert p.locator(".thread-item.current .mail-body a").get_attribute("href") == "https://ok.example/path?x=1&y="
    assert seen == {"dialogs": [], "foreign": []}


def test_remote_images_load_only_when_asked_in_a_sandboxed_frame(hostile_inbox, page, images):
    server, ids = hostile_inbox
    p = signed_in(server, page)
    seen = watch(server, page)
    before = len(images.hits)
    p.goto(f"{server.url}/inbox/{ids['with-image']}")
    p.wait_for_load_state("networkidle")
    notice = p.locator(".thread-item.current .images-blocked")
    assert "1 remote image not loaded (from 127.0.0.1)" in notice.inner_text()
    assert p.locator(".thread-item.current .mail-body img").get_attribute("alt") == "the logo"
    assert len(images.hits) == before and seen["foreign"] == []

    notice.locator("a.show-images").click()
    p.wait_for_url("**images=1")
    frame_element = p.locator("#mail-frame")
    assert frame_element.get_attribute("sandbox") == "allow-popups allow-popups-to-escape-sandbox"
    assert frame_element.get_attribute("referrerpolicy") == "no-referrer"
    deadline = time.monotonic() + 5
    while len(images.hits) == before and time.monotonic() < deadline:
        p.wait_for_timeout(50)
    assert images.hits[before:] == [("/logo.png", None)]  # loaded once, and told the host nothing about us
    frame = p.frame_locator("#mail-frame")
    assert frame.locator("img").evaluate("img => img.naturalWidth") == 1
    assert frame.locator("script").count() == 0
    assert frame.locator("a").get_attribute("rel") == "noopener noreferrer nofollow"
    assert seen["dialogs"] == [] and [u for u in seen["foreign"] if not u.startswith(images.url)] == []
    # the frame's document carries its own narrow policy
    r = p.context.request.get(f"{server.url}/inbox/{ids['with-image']}/frame")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "img-src http: https:" in csp and "sandbox" in csp
    assert "script-src" not in csp and r.headers["x-frame-options"] == "SAMEORIGIN"
