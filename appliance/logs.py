"""Structured logs: an event name plus fields, one line each on stderr.

Never a secret, password or message body: fields whose names look secret are
masked here, as a safety net behind callers that should not pass them at all.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

_SECRET_FIELD = re.compile(r"pass(word)?|secret|token|key|authorization|cookie|body", re.I)
MASK = "[redacted]"


def event(logger: logging.Logger, name: str, *, level: int = logging.INFO,
          exc_info: BaseException | None = None, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, name, exc_info=exc_info, extra={"mf_fields": fields})


def redact(fields: dict) -> dict:
    return {k: (MASK if _SECRET_FIELD.search(k) else v) for k, v in fields.items()}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                  .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **redact(getattr(record, "mf_fields", {})),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = redact(getattr(record, "mf_fields", {}))
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{record.levelname.lower():7} {record.getMessage()} {tail}".rstrip()


def configure(level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # waitress logs every queue warning at WARNING; keep them, but not its chatty INFO lines
    logging.getLogger("waitress").setLevel(logging.WARNING)
