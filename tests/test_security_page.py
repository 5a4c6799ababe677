"""docs/security.md maps each promise of the security page to tests; keep it honest."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "security.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def test_every_test_named_on_the_security_page_exists():
    refs = REFERENCE.findall(PAGE.read_text())
    assert len(refs) >= 40
    missing = []
    for path, name in refs:
        file = REPO / path
        if not file.exists():
            missing.append(path)
            continue
        if name:
            names = {n.name for n in ast.walk(ast.parse(file.read_text())) if isinstance(n, ast.FunctionDef)}
            if name not in names:
                missing.append(f"{path}::{name}")
    assert missing == []


def test_no_google_api_is_referenced():
    """Mailboxes are reached over IMAP/SMTP only: no Gmail API endpoint or restricted scope."""
    forbidden = re.compile(r"gmail\.googleapis\.com|googleapis\.com/auth/gmail|gmail\.(readonly|modify|send|"
                           r"compose|insert|labels|metadata)\b|googleapiclient")
    hits = []
    for folder in ("appliance", "webui"):
        for file in (REPO / folder).rglob("*"):
            if file.suffix in {".py", ".html", ".js", ".toml", ".sql"} and forbidden.search(file.read_text()):
                hits.append(str(file.relative_to(REPO)))
    assert hits == []


def test_the_readme_links_the_security_page():
    assert "docs/security.md" in (REPO / "README.md").read_text()
