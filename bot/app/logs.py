"""Logging for every command: plain lines, or one JSON object per line (VEIVIS_LOG_FORMAT=json).

`veivis run` logs at VEIVIS_LOG_LEVEL (INFO by default: start, stop, migrations, reloads,
retries); the other commands log warnings only, or INFO with -v. Our own log lines never hold
message texts or whole phone numbers (bot.phone.mask_address). Libraries that would log them
at INFO are held at WARNING: the Twilio client logs each request's body and numbers, httpx
logs every URL (the Telegram URL holds the bot token), aiosqlite every statement's parameters.
Whatever a library still logs, every line has the configured secrets replaced by «[skjult]».
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from bot.app.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# loggers that log request bodies, numbers, URLs with tokens or SQL parameters below WARNING
QUIET = ("twilio", "httpx", "httpcore", "aiosqlite", "telegram", "apscheduler", "hpack",
         "asyncio", "urllib3")


class JsonLines(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message; `exc` names the error
    type (and carries the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


HIDDEN = "[skjult]"


class Redacting(logging.Formatter):
    """Hides the configured secrets (bot token, auth token, webhook and metrics secrets) in
    every formatted line, tracebacks included: libraries log what they received (a proxy
    that echoes a Telegram URL puts the bot token in an error body) and we cannot vet every
    line they write."""

    def __init__(self, inner: logging.Formatter, secrets: list[str]) -> None:
        super().__init__()
        self._inner = inner
        # the longest first, so a token's secret half never leaves its first half behind
        self._secrets = sorted({x for x in secrets if len(x) >= 8}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = self._inner.format(record)
        for secret in self._secrets:
            line = line.replace(secret, HIDDEN)
        return line


def secrets_of(settings: Settings) -> list[str]:
    """Each secret value, as it is and as it looks in a URL or a JSON string; a Telegram
    token's part after the colon too (the digits before it are the bot's public id)."""
    from urllib.parse import quote

    from bot.app.settings import SETTINGS
    out: list[str] = []
    for s in SETTINGS:
        value = settings.get(s.name) if s.secret else ""
        if not value:
            continue
        parts = [value]
        if s.name == "TELEGRAM_BOT_TOKEN" and ":" in value:
            parts.append(value.split(":", 1)[1])
        for p in parts:
            out += [p, quote(p, safe=""), json.dumps(p)[1:-1]]
    return out


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is logged (not when it was set up)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def setup_logging(settings: Settings, *, verbose: bool = False, service: bool = False,
                  stream: TextIO | None = None) -> None:
    """Configure the root logger once for this process (replacing earlier handlers)."""
    if service:
        name = settings.get("VEIVIS_LOG_LEVEL").upper()
        level = logging.DEBUG if verbose else getattr(logging, name, logging.INFO)
    else:
        level = logging.INFO if verbose else logging.WARNING
    handler: logging.Handler = logging.StreamHandler(stream) if stream else _Stderr()
    json_lines = settings.get("VEIVIS_LOG_FORMAT").lower() == "json"
    inner = JsonLines() if json_lines else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(Redacting(inner, secrets_of(settings)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
