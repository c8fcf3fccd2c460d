"""Log redaction: webhook/interaction tokens and the bot token never reach a log line, at any level.

discord.py logs every HTTP route at DEBUG, and a webhook or interaction-callback URL carries the
interaction's token (anyone holding it can post as the bot for 15 minutes). ``TokenRedactor`` rewrites
a record's message (and its formatted traceback) before any handler writes it; ``install`` puts it on
every record through the record factory, so handlers added later (or by a library) are covered too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
_PATTERNS = (
    # /webhooks/<application id>/<token>[/messages/...] (interaction follow-ups and edits)
    re.compile(r"(/webhooks/\d+/)[A-Za-z0-9._\-]+"),
    # /interactions/<id>/<token>/callback
    re.compile(r"(/interactions/\d+/)[A-Za-z0-9._\-]+"),
    # "token": "..." in a logged payload
    re.compile(r"""(["']token["']\s*:\s*["'])[^"']+"""),
)
_FORMATTER = logging.Formatter()


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class TokenRedactor(logging.Filter):
    """Rewrites a record in place so no token survives; never drops a record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_textunes_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's problem; keep its raw text
            message = str(record.msg)
        record.msg, record.args = redact(message, self.secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        record._textunes_redacted = True
        return True


_installed: TokenRedactor | None = None


def install(secrets: Iterable[str] = ()) -> TokenRedactor:
    """Redact every record made from now on (all loggers, all levels) and those the root's current
    handlers see; calling it again adds secrets (e.g. the bot token once it is known)."""
    global _installed
    if _installed is None:
        redactor = _installed = TokenRedactor(secrets)
        make_record = logging.getLogRecordFactory()

        def redacting_factory(*args, **kwargs) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            redactor.filter(record)
            return record

        logging.setLogRecordFactory(redacting_factory)
    else:
        _installed.secrets = tuple(dict.fromkeys((*_installed.secrets, *(s for s in secrets if s))))
    for handler in logging.getLogger().handlers:
        if _installed not in handler.filters:
            handler.addFilter(_installed)
    return _installed
