"""Log lines that a request cannot forge: every control character of a message is escaped.

A newline in a customer id, an `exclude` entry or a context key would otherwise start a new line in
the service log that looks like the service wrote it. `install` wraps the process's log-record
factory, so the escaping holds for every logger (ours and BentoML's); tracebacks, which the
formatter adds after the message, keep their lines.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with each control character (and the Unicode line separators) as a visible escape."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def install() -> None:
    """Make every log record's message single-line; idempotent."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "escapes_controls", False):
        return

    def escaped(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call is logging's to report, as it would be
            return record
        if _CONTROL.search(message):
            record.msg, record.args = escape_controls(message), None
        return record

    escaped.escapes_controls = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(escaped)
