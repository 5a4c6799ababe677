"""Streamed CSV reading shared by every import (leads, mailboxes, suppressions).

- Streamed: a 64 KiB head is read to detect the encoding, then one record at a time, so a
  large file never sits in memory whole.
- Encoding, detected with a fallback: UTF-8 (with or without BOM) or UTF-16 with BOM; a file
  that is not UTF-8 is read as Windows-1252 (a superset of Latin-1), and so are stray
  non-UTF-8 bytes further into a UTF-8 file. `CsvFile.encoding_used` reports which, and
  `encoding_note` says what that means for the person importing.
- Delimiter, sniffed from the header line: comma, semicolon, tab or pipe, whichever it uses
  most outside quotes (followed by a space each time, as in `a, b`: such spaces are skipped).
- Line numbers: each record comes with the physical line it starts on (a quoted value may
  span lines; blank lines before the header count too), for error lists people can follow.
- Helpers: `normal_header` (the loose form header names are matched in) and
  `unescape_formula` (undoes our exports' spreadsheet-formula escaping, so an exported file
  imports unchanged).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import IO, Iterator, Mapping

from .services.errors import ServiceError

HEAD_BYTES = 64 * 1024
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
ENCODING_NOTES = {
    "cp1252": "The file is not UTF-8; it was read as Windows-1252 (Latin-1). Check accented names.",
    "utf-16": "The file is UTF-16 (as Excel saves \u201cUnicode text\u201d); it was converted.",
}
# What our exports prefix with a quote (audit.csv_safe) so a spreadsheet shows it as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A line made of nothing but these holds no header (an empty spreadsheet row saved as ",,,").
_EMPTY_LINE = " \t\r\n\f\v" + "".join(DELIMITERS)
_HEADER_SEPARATORS = re.compile(r"[\s\-./]+")


class ImportRefused(ServiceError):
    """The file cannot be imported at all (as opposed to single bad rows, which are listed)."""

    status = 422
    code = "import_refused"


# -- decoding -------------------------------------------------------------------------------

_decoding = threading.local()


def _cp1252_fallback(exc: UnicodeError):
    """Bytes that are not UTF-8 inside a file that began as UTF-8: read them as Windows-1252."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _decoding.fallbacks = getattr(_decoding, "fallbacks", 0) + 1
    return exc.object[exc.start:exc.end].decode("cp1252", "replace"), exc.end


codecs.register_error("mailflow-cp1252-fallback", _cp1252_fallback)


class _Joined(io.RawIOBase):
    """The head already read (to detect the encoding) followed by the rest of the stream."""

    def __init__(self, head: bytes, rest: IO[bytes]):
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _read_head(stream: IO[bytes]) -> bytes:
    parts, size = [], 0
    while size < HEAD_BYTES:
        data = stream.read(HEAD_BYTES - size)
        if not data:
            break
        parts.append(data)
        size += len(data)
    return b"".join(parts)


def _encoding(head: bytes) -> tuple[str, str, str]:
    """(codec, name to report, error handler)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "utf-8", "mailflow-cp1252-fallback"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "utf-16", "replace"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEAD_BYTES)
    except UnicodeDecodeError:
        return "cp1252", "cp1252", "replace"
    return "utf-8", "utf-8", "mailflow-cp1252-fallback"


def _dialect(line: str) -> tuple[str, bool]:
    """The candidate delimiter used most often outside quotes in the header line (comma if
    none), and whether a space follows each use of it (`a, b`: spaces after it are skipped)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    spaced = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
            spaced[ch] += line[i + 1:i + 2] == " "
    best = max(counts, key=counts.__getitem__)
    return (best, spaced[best] == counts[best]) if counts[best] else (",", False)


# -- reading --------------------------------------------------------------------------------

@dataclass
class CsvFile:
    """A CSV stream with its header read: `rows()` yields (line, values) for each record, the
    line being where the record starts. A record the csv module cannot read at all ends the
    file: it is yielded once as (line, message)."""

    header: list[str]
    encoding: str
    delimiter: str
    _reader: object = field(repr=False)
    _offset: int = field(repr=False)

    def rows(self) -> Iterator[tuple[int, list[str] | str]]:
        reader = self._reader
        line = self._offset + reader.line_num + 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, f"the file could not be read from here on ({exc})"
                return
            start, line = line, self._offset + reader.line_num + 1
            yield start, values

    @property
    def header_line(self) -> int:
        """The physical line the header starts on (for a file whose first line may be data)."""
        return self._offset + 1

    @property
    def encoding_used(self) -> str:
        """The encoding to report: a UTF-8 file with stray Windows-1252 bytes counts as cp1252."""
        return "cp1252" if self.encoding == "utf-8" and getattr(_decoding, "fallbacks", 0) else self.encoding

    @property
    def encoding_note(self) -> str | None:
        return ENCODING_NOTES.get(self.encoding_used)

    @property
    def delimiter_name(self) -> str:
        return DELIMITERS[self.delimiter]


def open_csv(stream: IO[bytes]) -> CsvFile:
    """Detect the encoding and delimiter and read the header line (blank lines before it, and
    lines of nothing but delimiters, are skipped). Raises ImportRefused for an empty file."""
    head = _read_head(stream)
    codec, name, errors = _encoding(head)
    _decoding.fallbacks = 0
    text = io.TextIOWrapper(io.BufferedReader(_Joined(head, stream), HEAD_BYTES), encoding=codec,
                            errors=errors, newline="")
    lines = iter(text)
    blank = 0
    for first in lines:
        if first.strip(_EMPTY_LINE):
            break
        blank += 1
    else:
        raise ImportRefused("The file is empty.", code="empty_file")
    delimiter, spaced = _dialect(first)
    reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter, quotechar='"', doublequote=True,
                        skipinitialspace=spaced, strict=False)
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except csv.Error as exc:
        raise ImportRefused(f"The header line could not be read ({exc}).") from None
    return CsvFile(header, name, delimiter, reader, blank)


# -- cells ----------------------------------------------------------------------------------

def normal_header(header: str, aliases: Mapping[str, str] | None = None) -> str:
    """A header name as imports match it: lower case, runs of spaces, hyphens, dots and slashes
    turned into one "_" (`E-Mail Address` -> `e_mail_address`), then looked up in `aliases`
    (normalised names people use -> the import's own column name)."""
    name = _HEADER_SEPARATORS.sub("_", header.strip().lower()).strip("_")
    return aliases.get(name, name) if aliases else name


def unescape_formula(cell: str) -> str:
    """Undo our exports' formula escaping (a quote before = + - @ or a control character)."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in FORMULA_START else cell
