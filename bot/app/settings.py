"""Settings for `veivis run`: environment variables, optionally a TOML file under them.

Every setting has one name: the environment variable (`TWILIO_AUTH_TOKEN`); in the TOML file
the same name in lower case (`twilio_auth_token = "..."`). The environment wins over the file.
`deploy/veivis.env.example` documents each one; `problems()` says in plain words what is
missing or wrong, so `veivis check-config` and `veivis run` never show a traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from apscheduler.triggers.cron import CronTrigger

from bot.engine.i18n import default_messages_dir, load_all
from bot.engine.model import FlowSet
from bot.phone import PhoneError, normalise_phone


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("VEIVIS_DB", "veivis.db", "the SQLite database file"),
    Setting("VEIVIS_CONFIG", "", "offices, veiledere and reminder times (veivis.yaml)"),
    Setting("VEIVIS_FLOWS", "", "folder with the flow files (default: flows/)"),
    Setting("VEIVIS_HOST", "127.0.0.1", "address the web server listens on"),
    Setting("VEIVIS_PORT", "8080", "port the web server listens on"),
    Setting("VEIVIS_PUBLIC_URL", "", "the https address Twilio and Telegram call, as they see "
            "it (behind a proxy: the proxy's address); needed for SMS and Telegram webhooks"),
    Setting("VEIVIS_SHUTDOWN_SECONDS", "20", "how long SIGTERM waits for sends in flight"),
    Setting("VEIVIS_CLOCK_OFFSET", "0", "for drills and tests only: seconds added to the "
            "system clock (a crash drill at a chosen hour); 0 in production"),
    Setting("TELEGRAM_BOT_TOKEN", "", "token from @BotFather; empty: no Telegram", secret=True),
    Setting("TELEGRAM_MODE", "polling", "polling (no public address needed) or webhook"),
    Setting("TELEGRAM_WEBHOOK_SECRET", "", "secret Telegram sends with each webhook "
            "(1-256 of A-Z a-z 0-9 _ -); needed in webhook mode", secret=True),
    Setting("TELEGRAM_API_URL", "https://api.telegram.org", "Bot API server (tests: a fake)"),
    Setting("TELEGRAM_RATE", "25", "messages per second to Telegram"),
    Setting("TWILIO_ACCOUNT_SID", "", "Twilio account (AC...); empty: no SMS"),
    Setting("TWILIO_AUTH_TOKEN", "", "Twilio auth token: signs webhooks, authenticates sends",
            secret=True),
    Setting("TWILIO_FROM", "", "sender: a +47 number, or an alphanumeric sender ID such as "
            "Veivis (then users cannot reply)"),
    Setting("TWILIO_API_URL", "https://api.twilio.com", "Twilio REST API (tests: a fake)"),
    Setting("SMS_RATE", "1", "SMS per second (Twilio's limit for your sender)"),
    Setting("OUTBOX_MAX_TRIES", "6", "tries before a message is marked failed"),
    Setting("SEND_TIMEOUT", "15", "seconds to wait for a provider to answer one send"),
    Setting("SMS_CHECK_SECONDS", "15", "after an SMS send in doubt (no answer in time, a "
            "crash mid-request), seconds to wait before asking Twilio whether it has the "
            "message; it is sent again only if Twilio has none"),
    Setting("DIGEST_SCHEDULE", "day_of_week=mon hour=12 minute=0",
            "when Veivis looks for a finished report period (APScheduler cron fields, Oslo "
            "time; default Mondays 12.00); each fixed 14-day period is reported once, the "
            "first time this runs after it is over"),
    Setting("DIGEST_FOLDER", "", "folder the report (HTML) is saved in; empty: none"),
    Setting("DIGEST_TELEGRAM_CHAT", "", "chat id of the resource group's Telegram group: "
            "gets the summary and the HTML file; empty: none"),
    Setting("DIGEST_SMS", "", "coordinators' phones (comma between) told by SMS that the "
            "report is ready; empty: none"),
)
_BY_NAME = {s.name: s for s in SETTINGS}

_SID = re.compile(r"AC[0-9a-f]{32}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_ALPHA_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.values.get(name, _BY_NAME[name].default).strip()

    # -- typed views ---------------------------------------------------------------------
    @property
    def db(self) -> str:
        return self.get("VEIVIS_DB")

    @property
    def host(self) -> str:
        return self.get("VEIVIS_HOST")

    @property
    def port(self) -> int:
        return int(self.get("VEIVIS_PORT"))

    @property
    def public_url(self) -> str:
        return self.get("VEIVIS_PUBLIC_URL").rstrip("/")

    @property
    def telegram(self) -> bool:
        return bool(self.get("TELEGRAM_BOT_TOKEN"))

    @property
    def sms(self) -> bool:
        return bool(self.get("TWILIO_ACCOUNT_SID") or self.get("TWILIO_AUTH_TOKEN")
                    or self.get("TWILIO_FROM"))

    @property
    def telegram_webhook(self) -> bool:
        return self.get("TELEGRAM_MODE").lower() == "webhook"

    def number(self, name: str) -> float:
        return float(self.get(name))

    def problems(self) -> list[str]:
        """What is missing or wrong, one plain sentence each; empty when ready to run."""
        out: list[str] = []
        for name in ("VEIVIS_PORT", "TELEGRAM_RATE", "SMS_RATE", "OUTBOX_MAX_TRIES",
                     "SEND_TIMEOUT", "VEIVIS_SHUTDOWN_SECONDS", "SMS_CHECK_SECONDS"):
            try:
                v = float(self.get(name))
            except ValueError:
                out.append(f"{name} must be a number, not '{self.get(name)}'")
                continue
            if v <= 0:
                out.append(f"{name} must be more than 0")
        try:
            float(self.get("VEIVIS_CLOCK_OFFSET"))
        except ValueError:
            out.append(f"VEIVIS_CLOCK_OFFSET must be a number of seconds, not "
                       f"'{self.get('VEIVIS_CLOCK_OFFSET')}'")
        if not self.telegram and not self.sms:
            out.append("no channel is configured: set TELEGRAM_BOT_TOKEN, or TWILIO_ACCOUNT_SID, "
                       "TWILIO_AUTH_TOKEN and TWILIO_FROM (or both)")
        url = self.public_url
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.netloc:
                out.append(f"VEIVIS_PUBLIC_URL must be a web address like "
                           f"https://veivis.example.no, not '{url}'")
            elif parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost"):
                out.append("VEIVIS_PUBLIC_URL must start with https:// (Telegram and Twilio "
                           "call only https addresses)")
        if self.telegram:
            mode = self.get("TELEGRAM_MODE").lower()
            if mode not in ("polling", "webhook"):
                out.append(f"TELEGRAM_MODE must be polling or webhook, not '{mode}'")
            if not re.fullmatch(r"\d+:[A-Za-z0-9_-]{20,}", self.get("TELEGRAM_BOT_TOKEN")):
                out.append("TELEGRAM_BOT_TOKEN does not look like a token from @BotFather "
                           "(digits, a colon, then letters)")
            if mode == "webhook":
                if not url:
                    out.append("TELEGRAM_MODE=webhook needs VEIVIS_PUBLIC_URL")
                if not _SECRET.fullmatch(self.get("TELEGRAM_WEBHOOK_SECRET")):
                    out.append("TELEGRAM_MODE=webhook needs TELEGRAM_WEBHOOK_SECRET: 1 to 256 "
                               "of the characters A-Z, a-z, 0-9, _ and -")
        if self.sms:
            if not _SID.fullmatch(self.get("TWILIO_ACCOUNT_SID")):
                out.append("TWILIO_ACCOUNT_SID must be AC followed by 32 hex digits "
                           "(see the Twilio console)")
            if not self.get("TWILIO_AUTH_TOKEN"):
                out.append("TWILIO_AUTH_TOKEN is missing (see the Twilio console)")
            sender = self.get("TWILIO_FROM")
            if not sender:
                out.append("TWILIO_FROM is missing: a +47 number or a sender ID like Veivis")
            elif sender.startswith("+") or sender.isdigit():
                try:
                    normalise_phone(sender)
                except PhoneError as e:
                    out.append(f"TWILIO_FROM: {e}")
            elif not _ALPHA_SENDER.fullmatch(sender):
                out.append("TWILIO_FROM: a sender ID has 1 to 11 letters, digits or spaces, "
                           "with at least one letter")
            if not url:
                out.append("SMS needs VEIVIS_PUBLIC_URL: Twilio signs each webhook with the "
                           "address it called, and sends delivery reports there")
        out += self.digest_problems()
        return out

    def digest_problems(self) -> list[str]:
        out = []
        try:
            digest_trigger(self.get("DIGEST_SCHEDULE"))
        except ValueError as e:
            out.append(f"DIGEST_SCHEDULE: {e}")
        for phone in self.digest_phones_raw():
            try:
                normalise_phone(phone)
            except PhoneError as e:
                out.append(f"DIGEST_SMS: {e}")
        if self.get("DIGEST_TELEGRAM_CHAT") and not self.telegram:
            out.append("DIGEST_TELEGRAM_CHAT needs TELEGRAM_BOT_TOKEN")
        if self.get("DIGEST_SMS") and not self.sms:
            out.append("DIGEST_SMS needs Twilio (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, "
                       "TWILIO_FROM)")
        return out

    def digest_phones_raw(self) -> list[str]:
        return [p.strip() for p in self.get("DIGEST_SMS").split(",") if p.strip()]

    @property
    def digest_on(self) -> bool:
        return bool(self.get("DIGEST_SCHEDULE") and (
            self.get("DIGEST_FOLDER") or self.get("DIGEST_TELEGRAM_CHAT")
            or self.get("DIGEST_SMS")))

    def describe(self) -> list[str]:
        """Every setting and its value, secrets hidden."""
        lines = []
        for s in SETTINGS:
            v = self.get(s.name)
            shown = ("(set)" if v else "(empty)") if s.secret else (v or "(empty)")
            lines.append(f"{s.name} = {shown}")
        return lines


class SettingsError(ValueError):
    pass


def load_settings(toml_path: str | Path | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """The TOML file (if any; VEIVIS_SETTINGS names it), then the environment over it."""
    env = os.environ if env is None else env
    values: dict[str, str] = {}
    path = toml_path or env.get("VEIVIS_SETTINGS")
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise SettingsError(f"{p}: no such file") from e
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"{p}: {e}") from e
        for key, v in data.items():
            name = key.upper()
            if name not in _BY_NAME:
                raise SettingsError(f"{p}: unknown setting '{key}'")
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise SettingsError(f"{p}: {key} must be text or a number")
            values[name] = str(v)
    for s in SETTINGS:
        if s.name in env:
            values[s.name] = env[s.name]
    return Settings(values)


def digest_trigger(spec: str) -> CronTrigger:
    """«day_of_week=mon week=*/2 hour=12 minute=0» as an APScheduler cron trigger in Oslo
    time; a plain error for anything it cannot read."""
    fields: dict[str, str] = {}
    for part in spec.split():
        key, sep, value = part.partition("=")
        if not sep or key not in _CRON_FIELDS:
            raise ValueError(f"'{part}' is not a cron field; use {', '.join(_CRON_FIELDS)} "
                             "like day_of_week=mon hour=12")
        fields[key] = value
    try:
        return CronTrigger(timezone="Europe/Oslo", **fields)
    except (ValueError, TypeError) as e:
        raise ValueError(str(e)) from None


_CRON_FIELDS = ("year", "month", "week", "day", "day_of_week", "hour", "minute")


def default_flows_dir() -> Path:
    """VEIVIS_FLOWS, else ./flows, else the flows shipped beside the package."""
    env = os.environ.get("VEIVIS_FLOWS")
    if env:
        return Path(env)
    here = Path("flows")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "flows"


def messages_dir(flows_dir: Path) -> Path:
    """VEIVIS_MESSAGES, else the messages folder beside the flows folder."""
    env = os.environ.get("VEIVIS_MESSAGES")
    return Path(env) if env else default_messages_dir(flows_dir)


class FlowsError(Exception):
    """The flows cannot be run: one `path:line: message` per problem."""

    def __init__(self, flows_dir: Path, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.flows_dir = flows_dir
        self.lines = lines


def load_flows(flows_dir: Path | None = None) -> FlowSet:
    """The one way every command loads the flows it runs on (with their translations);
    raises FlowsError when they have errors."""
    flows_dir = flows_dir or default_flows_dir()
    report = load_all([flows_dir], messages_dir(flows_dir))
    if report.errors or report.flowset is None:
        raise FlowsError(flows_dir, [str(d) for d in report.errors]
                         or [f"{flows_dir}: fant ingen fil med systemtekster (system.yaml)"])
    return report.flowset
