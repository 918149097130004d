"""The bot's log: a line per message and per letter (ids and outcomes, never text, passwords or tokens), as
text for a person or JSON for a log collector (MAILBOT_LOG_FORMAT), at MAILBOT_LOG_LEVEL."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

# The structured fields a log line may carry (``extra=``), copied into the JSON form.
FIELDS = ("event", "message_id", "letter_id", "case", "verdict", "kind", "letters", "state", "error", "attempt")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: int, fmt: str) -> None:
    """Replace the root handler's format and level; the scheduler's once-a-minute chatter only at DEBUG."""
    root = logging.getLogger()
    handler = root.handlers[0] if root.handlers else logging.StreamHandler()
    if not root.handlers:
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
