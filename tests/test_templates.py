"""The strict CSP holds without exceptions only if no template carries inline script or style."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = sorted((Path(__file__).resolve().parents[1] / "webui" / "templates").rglob("*.html"))
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.I)
EVENT_HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
JS_URL = re.compile(r"(href|src|action)\s*=\s*[\"']?\s*javascript:", re.I)


def test_there_are_templates():
    assert len(TEMPLATES) >= 3


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_no_inline_script_style_or_handlers(template):
    text = template.read_text()
    assert not INLINE_SCRIPT.search(text), "inline <script>: move it to static/"
    assert not INLINE_STYLE.search(text), "inline style: use a class in static/app.css"
    assert not EVENT_HANDLER.search(text), "on*= handler: bind it from a static module"
    assert not JS_URL.search(text), "javascript: URL"


def test_the_checks_catch_what_they_should():
    assert INLINE_SCRIPT.search("<script>alert(1)</script>")
    assert not INLINE_SCRIPT.search('<script src="/static/app.js"></script>')
    assert INLINE_STYLE.search('<p style="color:red">') and INLINE_STYLE.search("<style>")
    assert EVENT_HANDLER.search('<a onclick="x()">') and not EVENT_HANDLER.search('<a data-once="1">')
