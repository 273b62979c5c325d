"""Settings for every command: environment variables, optionally a TOML file under them.

Every setting has one name: the environment variable (`TWILIO_AUTH_TOKEN`); in the TOML file
the same name in lower case (`twilio_auth_token = "..."`). The environment wins over the file.
A secret can also come from a file: `TWILIO_AUTH_TOKEN_FILE=/run/credentials/...` (Docker
secrets, systemd credentials); such a file must not be readable by everyone.

`load_settings()` is the one loader. `veivis` loads the settings once at start and makes them
the active ones (`activate`), so every command (`run`, `chat`, `user`, `meeting`, `report`,
`backup` ...) uses the same database, flows and configuration file. To add a setting: one
`Setting(...)` line below (and a typed property if code reads it often).
`deploy/veivis.env.example` documents each one; `problems()` says in plain words what is
missing or wrong, so `veivis check-config` and `veivis run` never show a traceback.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from apscheduler.triggers.cron import CronTrigger

from bot.engine.i18n import default_messages_dir, load_all
from bot.engine.loader import os_problem
from bot.engine.model import FlowSet
from bot.phone import PhoneError, normalise_phone
from bot.service.pipeline import Limits
from bot.store import Store
from bot.store.pg import PgStore, is_url
from bot.store.seal import Sealer, SealError, key_file_for


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("VEIVIS_DB", "veivis.db", "the SQLite database file, or a postgresql:// address "
            "(several instances on one database)"),
    Setting("VEIVIS_CONFIG", "", "offices, veiledere and reminder times (veivis.yaml)"),
    Setting("VEIVIS_FLOWS", "", "folder with the flow files (default: flows/ in the current "
            "folder, else the flows installed with Veivis)"),
    Setting("VEIVIS_MESSAGES", "", "folder with the translations (default: messages/ beside "
            "the flows folder)"),
    Setting("VEIVIS_SEAL_KEY_FILE", "", "the key that seals anonymous answers (default: "
            "beside the database, veivis.db.seal-key; made 0600 on first start)"),
    Setting("VEIVIS_LOG_LEVEL", "INFO", "how much `veivis run` logs: DEBUG, INFO, WARNING "
            "or ERROR (never message texts or whole phone numbers)"),
    Setting("VEIVIS_LOG_FORMAT", "text", "text (one line each) or json (one JSON object per "
            "line, for a log collector)"),
    Setting("METRICS_TOKEN", "", "turns on GET /metrics (Prometheus); the scraper sends "
            "Authorization: Bearer <token>; empty: no /metrics", secret=True),
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
    Setting("TWILIO_EXTRA_FIELDS", "", "webhook fields to accept beyond those Twilio "
            "documents (comma between); a request with any other field is refused, and the "
            "log names the field"),
    Setting("LIMIT_PER_MINUTE", "30", "messages one person may get in a minute; after that "
            "their messages get no answer (crisis answers always go out); 0: no limit"),
    Setting("LIMIT_PER_DAY", "150", "messages one person may get in 24 hours, the same way; "
            "0: no limit"),
    Setting("LIMIT_NEW_PER_HOUR", "60", "numbers never seen before that get an answer in an "
            "hour; the rest get one when they write again later (crisis answers always); 0: "
            "no limit"),
    Setting("SMS_DAILY_BUDGET", "3000", "SMS a day (Oslo time) after which messages by SMS "
            "get no answer until midnight, except crisis answers; the log says so once, and "
            "/readyz shows it; 0: no budget"),
    Setting("TELEGRAM_DAILY_BUDGET", "30000", "the same for Telegram messages; 0: no budget"),
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
_ENV_PREFIXES = ("VEIVIS_", "TWILIO_", "TELEGRAM_")
# read by the test suite and its tools, not by Veivis: never warned about
_TOOL_ENV = ("VEIVIS_CHAOS_CODE", "VEIVIS_CHAOS_SEED", "VEIVIS_GUIDE_CLONE",
             "VEIVIS_GUIDE_SKIP", "VEIVIS_REQUIRE_BROWSER", "VEIVIS_ARTIFACTS",
             "VEIVIS_CHROMIUM", "VEIVIS_SKIP_POSTGRES", "VEIVIS_REQUIRE_POSTGRES",
             "VEIVIS_TEST_POSTGRES", "VEIVIS_INSTANCES_PHONES")
_KNOWN_ENV = [*_BY_NAME, *(s.name + "_FILE" for s in SETTINGS if s.secret), "VEIVIS_SETTINGS"]

_SID = re.compile(r"AC[0-9a-f]{32}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_ALPHA_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, str] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()  # VEIVIS_/TWILIO_/TELEGRAM_ variables that are no setting

    def warnings(self) -> list[str]:
        """One Norwegian line for each environment variable that looks like a setting but is
        none (a typo would otherwise fall back to the default without a word)."""
        out = []
        for name in self.unknown:
            close = difflib.get_close_matches(name, _KNOWN_ENV, n=1)
            hint = f" (mente du {close[0]}?)" if close else ""
            out.append(f"miljøvariabelen {name} er ukjent og blir ikke brukt{hint}")
        return out

    def get(self, name: str) -> str:
        return self.values.get(name, _BY_NAME[name].default).strip()

    # -- typed views ---------------------------------------------------------------------
    @property
    def db(self) -> str:
        return self.get("VEIVIS_DB")

    @property
    def flows_dir(self) -> Path:
        """VEIVIS_FLOWS, else ./flows, else the flows installed with the package."""
        return Path(self.get("VEIVIS_FLOWS") or installed_flows_dir())

    @property
    def messages_dir(self) -> Path:
        return Path(self.get("VEIVIS_MESSAGES") or default_messages_dir(self.flows_dir))

    @property
    def config_path(self) -> Path | None:
        """VEIVIS_CONFIG, else ./veivis.yaml if there is one; None: defaults."""
        name = self.get("VEIVIS_CONFIG")
        if name:
            return Path(name)
        here = Path("veivis.yaml")
        return here if here.exists() else None

    @property
    def seal_key_file(self) -> Path | None:
        name = self.get("VEIVIS_SEAL_KEY_FILE")
        if name:
            return Path(name)
        db = self.db
        if db == ":memory:" or db.startswith("file::memory:"):
            return None
        return Path(db + ".seal-key")

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

    @property
    def limits(self) -> Limits:
        return Limits(int(self.get("LIMIT_PER_MINUTE")), int(self.get("LIMIT_PER_DAY")),
                      int(self.get("LIMIT_NEW_PER_HOUR")),
                      {"sms": int(self.get("SMS_DAILY_BUDGET")),
                       "telegram": int(self.get("TELEGRAM_DAILY_BUDGET"))})

    def problems(self) -> list[str]:
        """What is missing or wrong, one plain sentence each; empty when ready to run."""
        out: list[str] = []
        for name in ("TELEGRAM_RATE", "SMS_RATE", "SEND_TIMEOUT", "VEIVIS_SHUTDOWN_SECONDS",
                     "SMS_CHECK_SECONDS"):
            try:
                v = float(self.get(name))
            except ValueError:
                v = math.nan
            if not math.isfinite(v):
                out.append(f"{name} må være et tall, ikke «{self.get(name)}»")
            elif v <= 0:
                out.append(f"{name} må være større enn 0")
        port = self.get("VEIVIS_PORT")
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            out.append(f"VEIVIS_PORT må være et helt tall fra 1 til 65535, ikke «{port}»")
        tries = self.get("OUTBOX_MAX_TRIES")
        if not (tries.isascii() and tries.isdigit() and int(tries) >= 1):
            out.append(f"OUTBOX_MAX_TRIES må være et helt tall, minst 1, ikke «{tries}»")
        if not _host_ok(self.host):
            out.append(f"VEIVIS_HOST må være en IP-adresse eller et vertsnavn, som 127.0.0.1 "
                       f"eller 0.0.0.0, ikke «{self.host}»")
        for name in ("TELEGRAM_API_URL", "TWILIO_API_URL"):
            parts = urlsplit(self.get(name))
            if parts.scheme not in ("https", "http") or not parts.netloc:
                out.append(f"{name} må være en nettadresse som begynner med https://, ikke "
                           f"«{self.get(name)}»")
        out += self.file_problems()
        if self.get("VEIVIS_LOG_LEVEL").upper() not in LOG_LEVELS:
            out.append(f"VEIVIS_LOG_LEVEL må være en av {', '.join(LOG_LEVELS)}, ikke "
                       f"«{self.get('VEIVIS_LOG_LEVEL')}»")
        if self.get("VEIVIS_LOG_FORMAT").lower() not in ("text", "json"):
            out.append(f"VEIVIS_LOG_FORMAT må være text eller json, ikke "
                       f"«{self.get('VEIVIS_LOG_FORMAT')}»")
        token = self.get("METRICS_TOKEN")
        if token and len(token) < 16:
            out.append("METRICS_TOKEN må ha minst 16 tegn (en lang, tilfeldig tekst)")
        for name in ("LIMIT_PER_MINUTE", "LIMIT_PER_DAY", "LIMIT_NEW_PER_HOUR", "SMS_DAILY_BUDGET",
                     "TELEGRAM_DAILY_BUDGET"):
            if not self.get(name).isdigit():
                out.append(f"{name} må være et helt tall (0: ingen grense), ikke "
                           f"«{self.get(name)}»")
        try:
            offset = float(self.get("VEIVIS_CLOCK_OFFSET"))
        except ValueError:
            offset = math.nan
        if not math.isfinite(offset):
            out.append(f"VEIVIS_CLOCK_OFFSET må være et antall sekunder, ikke "
                       f"«{self.get('VEIVIS_CLOCK_OFFSET')}»")
        if not self.telegram and not self.sms:
            out.append("ingen kanal er satt opp: sett TELEGRAM_BOT_TOKEN, eller "
                       "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN og TWILIO_FROM (eller begge)")
        url = self.public_url
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.netloc:
                out.append(f"VEIVIS_PUBLIC_URL må være en nettadresse som "
                           f"https://veivis.example.no, ikke «{url}»")
            elif parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost"):
                out.append("VEIVIS_PUBLIC_URL må begynne med https:// (Telegram og Twilio "
                           "kaller bare https-adresser)")
        if self.telegram:
            mode = self.get("TELEGRAM_MODE").lower()
            if mode not in ("polling", "webhook"):
                out.append(f"TELEGRAM_MODE må være polling eller webhook, ikke «{mode}»")
            if not re.fullmatch(r"\d+:[A-Za-z0-9_-]{20,}", self.get("TELEGRAM_BOT_TOKEN")):
                out.append("TELEGRAM_BOT_TOKEN ser ikke ut som en nøkkel fra @BotFather "
                           "(sifre, kolon, så bokstaver)")
            if mode == "webhook":
                if not url:
                    out.append("TELEGRAM_MODE=webhook trenger VEIVIS_PUBLIC_URL")
                if not _SECRET.fullmatch(self.get("TELEGRAM_WEBHOOK_SECRET")):
                    out.append("TELEGRAM_MODE=webhook trenger TELEGRAM_WEBHOOK_SECRET: 1 til "
                               "256 av tegnene A-Z, a-z, 0-9, _ og -")
        if self.sms:
            if not _SID.fullmatch(self.get("TWILIO_ACCOUNT_SID")):
                out.append("TWILIO_ACCOUNT_SID må være AC fulgt av 32 heksadesimale sifre "
                           "(se Twilio-konsollen)")
            if not self.get("TWILIO_AUTH_TOKEN"):
                out.append("TWILIO_AUTH_TOKEN mangler (se Twilio-konsollen)")
            sender = self.get("TWILIO_FROM")
            if not sender:
                out.append("TWILIO_FROM mangler: et +47-nummer eller et avsendernavn som Veivis")
            elif sender.startswith("+") or sender.isdigit():
                try:
                    normalise_phone(sender)
                except PhoneError as e:
                    out.append(f"TWILIO_FROM: {e}")
            elif not _ALPHA_SENDER.fullmatch(sender):
                out.append("TWILIO_FROM: et avsendernavn har 1 til 11 bokstaver, sifre eller "
                           "mellomrom, og minst én bokstav")
            if not url:
                out.append("SMS trenger VEIVIS_PUBLIC_URL: Twilio signerer hver webhook med "
                           "adressen den kalte, og sender leveringsrapporter dit")
        out += self.digest_problems()
        return out

    def file_problems(self) -> list[str]:
        """The database and the seal key: can they be opened or made where they are named."""
        out = []
        db = self.db
        if is_url(db):
            if not self.get("VEIVIS_SEAL_KEY_FILE"):
                out.append(_PG_KEY)
        elif not (db == ":memory:" or db.startswith("file:")):
            problem = database_problem(Path(db))
            if problem:
                out.append(problem)
        key = self.seal_key_file
        if is_url(db) and not self.get("VEIVIS_SEAL_KEY_FILE"):
            key = None
        if key is not None and not key.exists() and not key.parent.is_dir():
            out.append(f"seglnøkkelen {key} kan ikke lages: mappen {key.parent} finnes ikke")
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
            out.append("DIGEST_TELEGRAM_CHAT trenger TELEGRAM_BOT_TOKEN")
        if self.get("DIGEST_SMS") and not self.sms:
            out.append("DIGEST_SMS trenger Twilio (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, "
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
            shown = ("(satt)" if v else "(tom)") if s.secret else (v or "(tom)")
            lines.append(f"{s.name} = {shown}")
        return lines


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _host_ok(host: str) -> bool:
    """An IP address, or a host name whose labels are letters, digits and hyphens (and not
    all digits: «999.1.1.1» is no address)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return (0 < len(host) <= 253 and all(_LABEL.fullmatch(x) for x in labels)
            and not labels[-1].isdigit())


class DatabaseFileError(Exception):
    """The database file cannot be used where it is named: one plain Norwegian line."""


_PG_KEY = ("VEIVIS_SEAL_KEY_FILE må peke på seglnøkkelen når databasen er PostgreSQL (alle "
           "instansene trenger den samme nøkkelen)")
_SQLITE_HEADER = b"SQLite format 3\x00"


def database_problem(path: Path) -> str | None:
    """Why the database file cannot be opened or made here, in Norwegian, or None."""
    if path.is_dir():
        return f"databasen {path} er en mappe; gi navnet på databasefilen, som {path}/veivis.db"
    if not path.exists():
        parent = path.parent
        if not parent.is_dir():
            return f"databasen {path} kan ikke lages: mappen {parent} finnes ikke"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"databasen {path} kan ikke lages: ingen skrivetilgang til mappen {parent}"
        return None
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError as e:
        return f"databasen {path} kan ikke leses ({os_problem(e)})"
    if head and head != _SQLITE_HEADER:
        return f"databasen {path} er ikke en SQLite-database (feil fil i VEIVIS_DB eller --db?)"
    return None


class SettingsError(ValueError):
    pass


SYSTEM_SETTINGS = Path("/etc/veivis/veivis.toml")
_SECRET_FILES = {s.name + "_FILE": s.name for s in SETTINGS if s.secret}


def load_settings(toml_path: str | Path | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """The TOML file (if any: `toml_path`, else VEIVIS_SETTINGS, else /etc/veivis/veivis.toml
    if there is one), then the environment over it; a
    secret named by NAME_FILE is read from that file. Raises SettingsError (one plain line)
    for a file that cannot be read, an unknown name, or a secret file others can read."""
    real_env = env is None
    env = os.environ if env is None else env
    values: dict[str, str] = {}
    files: dict[str, str] = {}  # secret name -> the file it comes from
    path = toml_path or env.get("VEIVIS_SETTINGS")
    if not path and real_env and SYSTEM_SETTINGS.is_file():
        path = SYSTEM_SETTINGS  # the same file for the service and the operator's commands
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise SettingsError(f"{p}: finnes ikke") from e
        except (OSError, UnicodeDecodeError) as e:
            raise SettingsError(f"{p}: kan ikke leses ({type(e).__name__})") from e
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"{p}: {e}") from e
        seen: dict[str, str] = {}  # the setting -> the key that named it
        for key, v in data.items():
            name = key.upper()
            if name not in _BY_NAME and name not in _SECRET_FILES:
                raise SettingsError(f"{p}: ukjent innstilling «{key}»")
            if name in seen:
                raise SettingsError(f"{p}: {key.lower()} står to ganger (som «{seen[name]}» "
                                    f"og «{key}»); behold én av dem")
            seen[name] = key
            base = _SECRET_FILES.get(name, name)
            if base in seen and base + "_FILE" in seen:
                raise SettingsError(f"{p}: både {base} og {base}_FILE er satt; behold én av "
                                    "dem")
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise SettingsError(f"{p}: {key} må være tekst eller et tall")
            if name in _SECRET_FILES:
                files[_SECRET_FILES[name]] = str(v)
                values.pop(_SECRET_FILES[name], None)
            else:
                values[name] = str(v)
                files.pop(name, None)
    for s in SETTINGS:  # the environment wins over the file, a value and a _FILE alike
        in_env, file_in_env = s.name in env, s.secret and s.name + "_FILE" in env
        if in_env and file_in_env:
            raise SettingsError(f"både {s.name} og {s.name}_FILE er satt; behold én av dem")
        if in_env:
            values[s.name] = env[s.name]
            files.pop(s.name, None)
        elif file_in_env:
            files[s.name] = env[s.name + "_FILE"]
            values.pop(s.name, None)
    for name, file in files.items():
        if not file.strip():
            raise SettingsError(f"{name}_FILE er satt, men tom; gi navnet på filen, eller "
                                "fjern den")
        values[name] = read_secret_file(name, Path(file))
    unknown = tuple(sorted(k for k in env if k.startswith(_ENV_PREFIXES)
                           and k not in _KNOWN_ENV and k not in _TOOL_ENV)) if real_env else ()
    return Settings(values, unknown)


def read_secret_file(name: str, path: Path) -> str:
    """A secret from a file (Docker secrets, systemd credentials): the whole file, without
    the line break at the end. Refused if everyone may read it (chmod 600 or 400 fixes it),
    or if it is not a plain file (a pipe or a device would make every command wait). Read
    through one opened file, so what is checked is what is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError as e:
        raise SettingsError(f"{name}_FILE: {path}: finnes ikke") from e
    except IsADirectoryError as e:
        raise SettingsError(f"{name}_FILE: {path} er ikke en vanlig fil (en mappe)") from e
    except OSError as e:
        raise SettingsError(f"{name}_FILE: {path} kan ikke leses ({type(e).__name__})") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = "en mappe" if stat.S_ISDIR(st.st_mode) else "en rør- eller enhetsfil"
            raise SettingsError(f"{name}_FILE: {path} er ikke en vanlig fil ({what})")
        if st.st_mode & stat.S_IROTH:
            raise SettingsError(f"{name}_FILE: {path} kan leses av alle på maskinen; "
                                f"kjør: chmod 600 {path}")
        if st.st_size > _SECRET_MAX:
            raise SettingsError(f"{name}_FILE: {path} er for stor til å være en nøkkel")
        with os.fdopen(fd, "rb") as f:
            fd = -1
            text = f.read(_SECRET_MAX + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{name}_FILE: {path} kan ikke leses ({type(e).__name__})") from e
    finally:
        if fd >= 0:
            os.close(fd)
    value = text.rstrip("\r\n")
    if not value.strip():
        raise SettingsError(f"{name}_FILE: {path} er tom")
    return value


_SECRET_MAX = 64 * 1024


# The settings every command of this process uses: `veivis` loads them once at start.
_active: Settings | None = None


def activate(settings: Settings | None) -> None:
    """Make these the settings of this process (None: read the environment again)."""
    global _active
    _active = settings


def active() -> Settings:
    """The settings `veivis` loaded at start; without that (a library caller, a test), the
    environment and VEIVIS_SETTINGS as they are now."""
    return _active if _active is not None else load_settings()


def digest_trigger(spec: str) -> CronTrigger:
    """«day_of_week=mon week=*/2 hour=12 minute=0» as an APScheduler cron trigger in Oslo
    time; a plain error for anything it cannot read."""
    fields: dict[str, str] = {}
    for part in spec.split():
        key, sep, value = part.partition("=")
        if not sep or key not in _CRON_FIELDS:
            raise ValueError(f"«{part}» er ikke et cron-felt; bruk {', '.join(_CRON_FIELDS)}, "
                             "som day_of_week=mon hour=12")
        fields[key] = value
    try:
        return CronTrigger(timezone="Europe/Oslo", **fields)
    except (ValueError, TypeError):
        pass
    for key, value in fields.items():  # APScheduler says it in English: name the field here
        try:
            CronTrigger(timezone="Europe/Oslo", **{key: value})
        except (ValueError, TypeError):
            raise ValueError(f"«{key}={value}»: {key} må være {_CRON_RANGES[key]}"
                             f"{_CRON_HINT}") from None
    raise ValueError(f"«{spec}»: feltene passer ikke sammen (finnes den dagen?)")


_CRON_FIELDS = ("year", "month", "week", "day", "day_of_week", "hour", "minute")
_CRON_RANGES = {"year": "et årstall", "month": "1-12", "week": "1-53", "day": "1-31",
                "day_of_week": "mon, tue, wed, thu, fri, sat, sun eller 0-6",
                "hour": "0-23", "minute": "0-59"}
_CRON_HINT = " (også */2, 1-5 og lister med komma)"


def installed_flows_dir() -> Path:
    """./flows if there is one, else the flows installed with the package (bot/data/flows in
    a wheel; the checkout's flows/ in an editable install)."""
    here = Path("flows")
    if here.is_dir():
        return here
    return shipped_data_dir() / "flows"


def shipped_data_dir() -> Path:
    """The folder holding the shipped flows/ and messages/: bot/data in an installed wheel,
    the repository root in a checkout."""
    package = Path(__file__).resolve().parents[1]
    data = package / "data"
    return data if (data / "flows").is_dir() else package.parent


def default_flows_dir() -> Path:
    """The flows folder of the active settings (VEIVIS_FLOWS, else ./flows, else the
    installed ones)."""
    return active().flows_dir


def messages_dir(flows_dir: Path) -> Path:
    """VEIVIS_MESSAGES, else the messages folder beside the flows folder."""
    name = active().get("VEIVIS_MESSAGES")
    return Path(name) if name else default_messages_dir(flows_dir)


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


async def open_store(db: str | Path | None = None, settings: Settings | None = None) -> Store:
    """Open (and migrate) the database the settings name (or `db`), with the seal key the
    settings name (VEIVIS_SEAL_KEY_FILE, else beside that database)."""
    s = settings or active()
    path = str(db or s.db)
    if not (path == ":memory:" or path.startswith("file:") or is_url(path)):
        problem = database_problem(Path(path))
        if problem:
            raise DatabaseFileError(problem)
    named = s.get("VEIVIS_SEAL_KEY_FILE")
    if is_url(path):  # several instances on one PostgreSQL database: one key for them all
        if not named:
            raise SealError(_PG_KEY)
        return await PgStore.open(path, Sealer.from_file(Path(named)))
    key = Path(named) if named else key_file_for(path)
    return await Store.open(path, Sealer.from_file(key) if key else Sealer.ephemeral())
