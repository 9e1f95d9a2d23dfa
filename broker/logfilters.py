"""Logging filters that keep patient data out of the logs.

Exception texts are where field values leak: a database error quotes the row
("Key (patient_id)=(...) already exists"), pydicom quotes the value it could not read,
Celery logs a failed task's exception text. :class:`WithholdValues`, on every handler of
``LOGGING``, replaces the text of each exception in a traceback (and of Celery's
``%(exc)s``) by its type, and keeps the frames (file, line, function, source line), which
are enough to find the bug. With ``LOG_LEVEL=DEBUG`` nothing is withheld.
"""

from __future__ import annotations

import logging
import traceback
from types import TracebackType

WITHHELD = "(message withheld: it may hold patient data)"


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None
    return list(reversed(chain))


def _name(exc: BaseException) -> str:
    kind = type(exc)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"{module}{kind.__qualname__}"


def redacted_traceback(exc: BaseException, tb: TracebackType | None = None) -> str:
    blocks = []
    for item in _chain(exc):
        frames = traceback.format_tb(
            item.__traceback__ if item is not exc else tb or exc.__traceback__
        )
        head = "Traceback (most recent call last):\n" if frames else ""
        blocks.append(f"{head}{''.join(frames)}{_name(item)} {WITHHELD}")
    return "\n\nDuring handling of the above exception, another exception occurred:\n\n".join(
        blocks
    )


class WithholdValues(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO or logging.getLogger().level <= logging.DEBUG:
            return True
        if record.exc_info and record.exc_info[1] is not None:
            _, exc, tb = record.exc_info
            record.exc_text = redacted_traceback(exc, tb)
        # Celery's "Task x[id] raised unexpected: %(exc)s" and retry lines.
        args = record.args
        if isinstance(args, dict) and isinstance(args.get("exc"), BaseException | str):
            exc_value = args["exc"]
            kind = _name(exc_value) if isinstance(exc_value, BaseException) else "error"
            record.args = {**args, "exc": f"{kind} {WITHHELD}"}
        return True
