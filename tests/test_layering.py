"""DESIGN.md's import direction: appliance never imports flask or webui (one composition root
excepted); webui never reaches into the database layer directly (it goes through services)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPOSITION_ROOT = REPO / "appliance" / "server.py"
SQL = re.compile(r"\s*(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|PRAGMA|CREATE (TABLE|INDEX|TRIGGER))\b")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def test_appliance_never_imports_flask_or_webui():
    offenders = {}
    for path in (REPO / "appliance").rglob("*.py"):
        if path == COMPOSITION_ROOT:
            continue
        bad = {n for n in imported_modules(path) if top(n) in {"flask", "webui", "flask_talisman",
                                                                 "flask_wtf", "flask_limiter", "werkzeug"}}
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert offenders == {}


def test_composition_root_is_the_one_that_builds_the_web_app():
    assert "webui" in imported_modules(COMPOSITION_ROOT)


def test_webui_reaches_storage_only_through_services():
    offenders = {}
    for path in (REPO / "webui").rglob("*.py"):
        bad = {n for n in imported_modules(path)
               if n.startswith(("appliance.db", "sqlcipher3", "sqlite3"))}
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert offenders == {}


def test_sql_lives_only_in_the_db_layer():
    """No SQL statements outside appliance/db (services call repositories)."""
    offenders = []
    for path in (REPO / "appliance").rglob("*.py"):
        if "db" in path.relative_to(REPO / "appliance").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if SQL.match(node.value):
                    offenders.append(f"{path.relative_to(REPO)}: {node.value[:40]!r}")
    assert offenders == []
