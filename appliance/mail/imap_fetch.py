"""Reading messages for the mailbox sync, over an open ImapSession with a folder examined.

Chunked `UID FETCH` with BODY.PEEK (never sets \\Seen): sizes are asked first, so a chunk stays
near its byte budget, and an oversized message comes as its header and the start of its first
part, rebuilt into a message a MIME parser reads.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass
from typing import Iterator

from .imap import ImapSession

MAX_MESSAGE_BYTES = 1024 * 1024       # larger messages come as header + the start of the first part
TRUNCATED_PART_BYTES = 64 * 1024
CHUNK_MESSAGES = 50                   # one UID FETCH carries at most this many messages ...
CHUNK_BYTES = 4 * 1024 * 1024         # ... or about this many bytes
_SIZES_BATCH = 500


@dataclass(frozen=True)
class FetchedMessage:
    uid: int
    raw: bytes
    size: int
    truncated: bool


@dataclass(frozen=True)
class FetchedChunk:
    through_uid: int  # every UID up to here that the search found is in `messages` or was expunged
    messages: list[FetchedMessage]


def fetch_messages(session: ImapSession, uids: list[int], *, max_bytes: int = MAX_MESSAGE_BYTES,
                   chunk_messages: int = CHUNK_MESSAGES, chunk_bytes: int = CHUNK_BYTES) -> Iterator[FetchedChunk]:
    """The messages, ascending by UID, in chunks (sizes are asked first, so a chunk stays
    near chunk_bytes). BODY.PEEK never sets \\Seen. Messages over max_bytes come as their
    header plus the first TRUNCATED_PART_BYTES of their first part (truncated=True)."""
    uids = sorted(uids)
    for start in range(0, len(uids), _SIZES_BATCH):
        window = uids[start:start + _SIZES_BATCH]
        with session.talking("UID FETCH RFC822.SIZE"):
            found = session.client.fetch(window, ["RFC822.SIZE"])
        sizes = {uid: int(data.get(b"RFC822.SIZE", 0)) for uid, data in found.items()}
        chunk: list[int] = []
        total = 0
        for uid in window:
            size = sizes.get(uid, 0)
            size = size if size <= max_bytes else TRUNCATED_PART_BYTES  # what will really come
            if chunk and (len(chunk) >= chunk_messages or total + size > chunk_bytes):
                yield _fetch_chunk(session, chunk, sizes, max_bytes)
                chunk, total = [], 0
            chunk.append(uid)
            total += size
        if chunk:
            yield _fetch_chunk(session, chunk, sizes, max_bytes)


def _fetch_chunk(session: ImapSession, uids: list[int], sizes: dict[int, int], max_bytes: int) -> FetchedChunk:
    present = [uid for uid in uids if uid in sizes]  # the others were expunged meanwhile
    whole = [uid for uid in present if sizes[uid] <= max_bytes]
    cut = [uid for uid in present if sizes[uid] > max_bytes]
    messages: list[FetchedMessage] = []
    if whole:
        with session.talking("UID FETCH BODY.PEEK[]"):
            got = session.client.fetch(whole, ["BODY.PEEK[]"])
        messages += [FetchedMessage(uid, got[uid][b"BODY[]"] or b"", sizes[uid], False)
                     for uid in whole if uid in got and b"BODY[]" in got[uid]]
    if cut:
        parts = ["BODY.PEEK[HEADER]", "BODY.PEEK[1.MIME]", f"BODY.PEEK[1]<0.{TRUNCATED_PART_BYTES}>"]
        with session.talking("UID FETCH BODY.PEEK[HEADER]"):
            got = session.client.fetch(cut, parts)
        messages += [FetchedMessage(uid, _shortened(got[uid]), sizes[uid], True) for uid in cut if uid in got]
    messages.sort(key=lambda m: m.uid)
    return FetchedChunk(uids[-1], messages)


_HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def _shortened(parts: dict) -> bytes:
    """An oversized message rebuilt from its header and the start of its first part, as a
    message a MIME parser reads (multipart: the first part inside its boundary, closed)."""
    header = parts.get(b"BODY[HEADER]") or b"\r\n"
    first = next((v for k, v in parts.items() if k.startswith(b"BODY[1]")), None) or b""
    boundary = _HEADER_PARSER.parsebytes(header[:256 * 1024]).get_boundary() \
        if b"multipart/" in header.lower() else None
    if not boundary:
        return header + first
    mark = boundary.encode("ascii", "replace")
    part_header = parts.get(b"BODY[1.MIME]") or b"\r\n"
    return header + b"--" + mark + b"\r\n" + part_header + first + b"\r\n--" + mark + b"--\r\n"
