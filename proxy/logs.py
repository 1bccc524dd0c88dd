"""Log set-up: one line per event, plain text or JSON, and a sampled logger for the hot path.

Theory of operation
-------------------
Callers log *events* (topology changes, health transitions, reloads, refused logins) at
INFO/WARNING, never data: nothing here or in the callers formats statement text, statement
parameters or credentials. Per-statement lines exist only at DEBUG, through `SampledLog`,
which costs one `isEnabledFor` check when DEBUG is off and otherwise lets through at most
`per_second` lines (a token bucket), then says how many it dropped.

Every record is exactly one line, so that a log shipper never splits an event: the text format
escapes line breaks and other control characters in the message (a user name or a server
error text can contain them, and must not forge a second log line) and in tracebacks; the JSON
format is one object per line, with any `extra={...}` fields of the record as keys.

`setup_logging()` may be called again (a reload can change `log_level` and `log_format`): it
replaces the handler it installed instead of adding one.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Final

TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_CONTROL: Final = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def one_line(text: str) -> str:
    """`text` with line breaks and control characters escaped."""
    return text.translate(_CONTROL)


class TextFormatter(logging.Formatter):
    """The classic text line, guaranteed to be one line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return one_line(super().formatException(ei))

    def format(self, record: logging.LogRecord) -> str:
        # The base class joins message and traceback with a newline: keep it on the line.
        return super().format(record).replace("\n", " | ")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _ProxyHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `setup_logging` installed, so a second call replaces it."""


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at `level` ("debug", "info", ...) as "text" or "json"."""
    handler = _ProxyHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _ProxyHandler)] + [handler]
    root.setLevel(level.upper())


class SampledLog:
    """DEBUG lines for the hot path, at most `per_second` of them (see the module docstring).

    Usage (session.py): ``_statement_log = SampledLog(logger)`` at module level, then
    ``_statement_log.debug("session %d: %s on %s (%s) %.1f ms", id, route, pod, rule, ms)``.
    Pass facts (ids, route, pod, rule, timing), never the statement text or its parameters.
    """

    def __init__(
        self,
        logger: logging.Logger,
        per_second: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._rate = per_second
        self._clock = clock
        self._tokens = per_second
        self._last = clock()
        self._dropped = 0

    def debug(self, msg: str, *args: object) -> None:
        if not self._logger.isEnabledFor(logging.DEBUG):
            return
        if not self._take():
            self._dropped += 1
            return
        if self._dropped:
            msg = f"{msg} ({self._dropped} similar lines dropped)"
            self._dropped = 0
        self._logger.debug(msg, *args)

    def _take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
