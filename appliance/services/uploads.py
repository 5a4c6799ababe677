"""Uploaded files, kept in `<data_dir>/tmp`: every file a page receives is written there while
the request is parsed (the web layer's request class asks for `new_upload()`), and deleted
when the request ends unless its page keeps it for a later step (the lead import's column
mapping needs the file twice: preview, then import) by binding it to the uploader with
`claim_upload()`; only that person can then open or discard it, by its random token.

An upload is the customer's file in plaintext (the database is encrypted, this file is not).
It lives in <data_dir>/tmp (0700, the file 0600; never /tmp: the unit has PrivateTmp, and the
data directory is where the operator protects data at rest), is deleted as soon as the request
or the import it belongs to is over, and in any case within the hour: purge_stale_uploads()
runs every PURGE_INTERVAL as a maintenance job (and on every visit to the lead import page) and
deletes files older than UPLOAD_MAX_AGE, leftovers of a crash included.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path
from typing import IO

from .authz import Principal
from .errors import NotFound

UPLOAD_PREFIX = "upload-"
PURGE_INTERVAL = 5 * 60
UPLOAD_MAX_AGE = 60 * 60 - PURGE_INTERVAL
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def upload_dir(data_dir: Path | str) -> Path:
    path = Path(data_dir) / "tmp"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _new_path(data_dir: Path | str, token: str) -> Path:
    return upload_dir(data_dir) / f"{UPLOAD_PREFIX}new-{token}"


def _owned(data_dir: Path | str, principal: Principal, token: str) -> Path:
    if not _TOKEN.match(token or ""):
        raise NotFound("No such upload.")
    return upload_dir(data_dir) / f"{UPLOAD_PREFIX}u{principal.user_id}-{token}"


def new_upload(data_dir: Path | str) -> tuple[str, IO[bytes]]:
    """A fresh, private file for an upload: (token, file open for writing and reading)."""
    token = secrets.token_urlsafe(18)
    fd = os.open(_new_path(data_dir, token), os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    return token, os.fdopen(fd, "w+b")


def claim_upload(data_dir: Path | str, principal: Principal, token: str) -> None:
    """Keep a new upload past its request, bound to the person who sent it."""
    principal.require("member", "write")
    if not _TOKEN.match(token or ""):
        raise NotFound("No such upload.")
    os.replace(_new_path(data_dir, token), _owned(data_dir, principal, token))


def discard_new_upload(data_dir: Path | str, token: str) -> None:
    """Delete a new upload that was not claimed (nothing happens if it was)."""
    if _TOKEN.match(token or ""):
        _new_path(data_dir, token).unlink(missing_ok=True)


def discard_upload(data_dir: Path | str, principal: Principal, token: str) -> None:
    _owned(data_dir, principal, token).unlink(missing_ok=True)


def upload_path(data_dir: Path | str, principal: Principal, token: str) -> Path:
    path = _owned(data_dir, principal, token)
    if not path.exists():
        raise NotFound("This upload has expired or was already imported. Upload the file again.",
                       code="upload_gone")
    return path


def purge_stale_uploads(data_dir: Path | str, max_age: float = UPLOAD_MAX_AGE, now: float | None = None) -> int:
    """Delete files in <data_dir>/tmp older than max_age seconds (abandoned imports, a crash
    mid-request or mid-import; the directory holds nothing but uploads)."""
    directory = Path(data_dir) / "tmp"
    if not directory.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - max_age
    removed = 0
    for path in directory.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed
