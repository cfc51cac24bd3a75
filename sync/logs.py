"""Logging set-up: text for people, JSON lines for machines; secrets scrubbed as a last guard.

Code never logs secrets on purpose; the scrubber is the belt to those braces: it replaces any
known secret value that slips into a record (a URL in an exception text, say) with ***.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO
from urllib.parse import quote

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class SecretScrubber(logging.Filter):
    """Replaces every occurrence of the given secret values in a record: its message and
    arguments, its exception's traceback and its `extra` fields, as is or percent-encoded."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms = {f for s in secrets if len(s) >= 4 for f in (s, quote(s, safe=""), quote(s))}
        self._secrets = sorted(forms, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.scrub(_TRACEBACKS.formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _RESERVED and not key.startswith("_"):
                text = value if isinstance(value, str) else repr(value)
                if self.scrub(text) != text:
                    setattr(record, key, self.scrub(text))
        return True


_TRACEBACKS = logging.Formatter()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            doc["error"] = repr(record.exc_info[1])
        elif record.exc_text:
            doc["error"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False, default=str)


def json_configured() -> bool:
    """Whether configure_logging set up JSON lines (then error messages go out as JSON too)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def configure_logging(
    fmt: str = "text", *, level: int = logging.INFO, secrets: Iterable[str] = ()
) -> None:
    """Send taskbox-sync's logs to stderr in the given format, scrubbing the given secrets."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S")
        )
    handler.addFilter(SecretScrubber(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("sync").setLevel(level)
    logging.getLogger("bench").setLevel(level)


@contextlib.contextmanager
def log_stream(stream: TextIO) -> Iterator[None]:
    """Send the log lines to `stream` for a while (a live display's proxy of stderr, which prints
    them above the display), then back where they went."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    before = [h.setStream(stream) for h in handlers]
    try:
        yield
    finally:
        for handler, old in zip(handlers, before, strict=True):
            if old is not None:
                handler.setStream(old)
