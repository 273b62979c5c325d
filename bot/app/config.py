"""The configuration file: offices, veiledere and reminder rules (YAML, keys in Norwegian).

    kontorer:
      - navn: NAV Gjøvik
        adresse: ...
        åpningstider: ...
        reservetelefon: 61 00 00 00
    veiledere:
      - navn: Kari Nordmann
        jobbtelefon: 400 12 345
        kontor: NAV Gjøvik
    påminnelser:
      kvelden_før: "18.00"
      timer_før: 2
      stille_fra: "21.00"
      stille_til: "08.00"

Read with line numbers (ruamel round-trip), so every mistake reads `path:line: message`, and
written back the same way by `veivis veileder add`, so comments and order survive. Phone
numbers are normalised to E.164 (+47).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from bot.app.settings import active
from bot.atomic import write_atomic
from bot.engine.loader import FileChecker, line_of_item, line_of_value, read_yaml
from bot.phone import PhoneError, normalise_phone, pretty_phone
from bot.store.protocol import Database
from bot.timing.hours import valid_hours
from bot.timing.planner import DEFAULT_RULES, Rules

TOP_KEYS = {"kontorer", "veiledere", "påminnelser", "stengt"}
OFFICE_KEYS = {"navn", "adresse", "åpningstider", "reservetelefon"}
VEILEDER_KEYS = {"navn", "jobbtelefon", "kontor", "arbeidstid", "borte_til", "vikar"}
RULE_KEYS = {"kvelden_før": "evening_before", "timer_før": "hours_before",
             "stille_fra": "quiet_from", "stille_til": "quiet_until",
             "møtelengde_timer": "meeting_length", "undersøkelse_timer_etter": "survey_delay"}


@dataclass(frozen=True)
class Office:
    name: str
    address: str | None = None
    opening_hours: str | None = None
    backup_phone: str | None = None


@dataclass(frozen=True)
class VeilederConf:
    name: str
    phone: str
    office: str
    working_hours: str | None = None  # "08.00-15.30"
    away_until: date | None = None
    backup_phone: str | None = None  # who covers while away


@dataclass
class Config:
    path: str
    offices: list[Office] = field(default_factory=list)
    veiledere: list[VeilederConf] = field(default_factory=list)
    rules: Rules = DEFAULT_RULES


def configured(path: str | Path | None = None) -> tuple[Config | None, list[str]]:
    """The configuration in use: the given file, VEIVIS_CONFIG, or ./veivis.yaml; none is
    fine (defaults), a broken one is an error."""
    p = Path(path) if path else default_config_path()
    if p is None:
        return None, []
    return load_config(p)


def default_config_path() -> Path | None:
    """The active settings' VEIVIS_CONFIG, else ./veivis.yaml if there is one."""
    return active().config_path


def _clock(v: Any) -> time | None:
    s = str(v).strip().replace(":", ".")
    try:
        h, _, m = s.partition(".")
        return time(int(h), int(m or 0))
    except ValueError:
        return None


def load_config(path: str | Path) -> tuple[Config | None, list[str]]:
    diags: list[Any] = []
    chk = FileChecker(str(path), diags)
    if not Path(path).exists():
        return None, [f"{path}:1: feil: filen finnes ikke"]
    doc = read_yaml(str(path), chk)
    if chk.failed():
        return None, [str(d) for d in diags]
    conf = Config(str(path))
    if doc is None:
        return conf, []
    if not isinstance(doc, CommentedMap):
        return None, [f"{path}:1: feil: filen må ha kontorer:, veiledere: og påminnelser:"]
    chk.unknown_keys(doc, TOP_KEYS, 1, "oppsettet")
    offices: dict[str, int] = {}
    for line, node in _items(doc, "kontorer", chk, OFFICE_KEYS, "et kontor"):
        name = chk.get_str(node, "navn", line, required=True, what="kontor: ")
        if name is None:
            continue
        if name in offices:
            chk.error(line, f"kontoret '{name}' står to ganger (første gang på linje "
                            f"{offices[name]})")
            continue
        offices[name] = line
        backup = _phone(chk, node, "reservetelefon", line)
        conf.offices.append(Office(name, _text(node, "adresse"), _text(node, "åpningstider"),
                                   backup))
    phones: dict[str, int] = {}
    for line, node in _items(doc, "veiledere", chk, VEILEDER_KEYS, "en veileder"):
        name = chk.get_str(node, "navn", line, required=True, what="veileder: ")
        phone = _phone(chk, node, "jobbtelefon", line, required=True)
        office = chk.get_str(node, "kontor", line, required=True, what="veileder: ")
        if office is not None and office not in offices:
            chk.error(line_of_value(node, "kontor", line),
                      f"veileder {name}: kontoret '{office}' står ikke under kontorer:")
        if phone is not None and phone in phones:
            chk.error(line_of_value(node, "jobbtelefon", line),
                      f"jobbtelefonen {pretty_phone(phone)} står to ganger (første gang på "
                      f"linje {phones[phone]})")
            continue
        hours = _text(node, "arbeidstid")
        if hours is not None and not valid_hours(hours):
            chk.error(line_of_value(node, "arbeidstid", line),
                      f"veileder {name}: 'arbeidstid' må skrives som \"08.00-15.30\"")
        away = _date(chk, node, "borte_til", line)
        backup = _phone(chk, node, "vikar", line)
        if name and phone and office:
            phones[phone] = line
            conf.veiledere.append(VeilederConf(name, phone, office, hours, away, backup))
    if "påminnelser" in doc:
        conf.rules = _rules(doc["påminnelser"], chk, line_of_value(doc, "påminnelser", 1))
    if doc.get("stengt") is not None:
        conf.rules = replace(conf.rules, closed_days=_closed_days(doc, chk))
    diags.sort(key=lambda d: d.line)
    return (None if chk.failed() else conf), [str(d) for d in diags]


def _items(doc: CommentedMap, key: str, chk: FileChecker, keys: set[str],
           what: str) -> list[tuple[int, CommentedMap]]:
    """The entries of a list under `key` with their lines; mistakes in their shape reported."""
    if key not in doc or doc[key] is None:
        return []
    seq = doc[key]
    if not isinstance(seq, CommentedSeq):
        chk.error(line_of_value(doc, key, 1),
                  f"'{key}' må være en liste (linjer som starter med '- ')")
        return []
    out = []
    for i, node in enumerate(seq):
        line = line_of_item(seq, i, 1)
        if not isinstance(node, CommentedMap):
            chk.error(line, f"{what} skal ha nøklene {', '.join(sorted(keys))}")
            continue
        chk.unknown_keys(node, keys, line, what)
        out.append((line, node))
    return out


def _text(node: CommentedMap, key: str) -> str | None:
    v = node.get(key)
    return str(v).strip() if v not in (None, "") else None


def _date(chk: FileChecker, node: CommentedMap, key: str, line: int) -> date | None:
    v = node.get(key)
    if v in (None, ""):
        return None
    if isinstance(v, date):
        return v
    try:
        d, m, y = (int(x) for x in str(v).strip().split("."))
        return date(y, m, d)
    except ValueError:
        chk.error(line_of_value(node, key, line), f"'{key}' må være en dato som 24.12.2026")
        return None


def _closed_days(doc: CommentedMap, chk: FileChecker) -> frozenset[date]:
    """`stengt:`, the days the offices are closed beyond public holidays (24.12.2026, ...)."""
    seq, line = doc["stengt"], line_of_value(doc, "stengt", 1)
    if not isinstance(seq, CommentedSeq):
        chk.error(line, "'stengt' må være en liste med datoer (linjer som '- 24.12.2026')")
        return frozenset()
    days = set()
    for i, v in enumerate(seq):
        d = _date(chk, CommentedMap([("stengt", v)]), "stengt", line_of_item(seq, i, line))
        if d is not None:
            days.add(d)
    return frozenset(days)


def _phone(chk: FileChecker, node: CommentedMap, key: str, line: int,
           required: bool = False) -> str | None:
    if node.get(key) in (None, ""):
        if required:
            chk.error(line, f"mangler '{key}'")
        return None
    try:
        return normalise_phone(str(node[key]))
    except PhoneError as e:
        chk.error(line_of_value(node, key, line), str(e))
        return None


def _rules(node: Any, chk: FileChecker, line: int) -> Rules:
    rules = DEFAULT_RULES
    if not isinstance(node, CommentedMap):
        chk.error(line, "'påminnelser' må ha nøkler med verdier (navn: verdi)")
        return rules
    chk.unknown_keys(node, set(RULE_KEYS), line, "påminnelser")
    for key, attr in RULE_KEYS.items():
        if key not in node:
            continue
        v, vl = node[key], line_of_value(node, key, line)
        if attr in ("evening_before", "quiet_from", "quiet_until"):
            t = _clock(v)
            if t is None:
                chk.error(vl, f"'{key}' må være et klokkeslett som \"18.00\"")
                continue
            change: dict[str, Any] = {attr: t}
            rules = replace(rules, **change)
        else:
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 48:
                chk.error(vl, f"'{key}' må være et antall timer (0 til 48)")
                continue
            change = {attr: timedelta(hours=float(v))}
            rules = replace(rules, **change)
    return rules


async def apply_config(store: Database, conf: Config) -> tuple[int, int]:
    """Bring offices and veiledere in the database up to the file (by name / work phone)."""
    await store.upsert_offices([(o.name, o.address, o.opening_hours, o.backup_phone)
                                for o in conf.offices])
    rows: list[Desk] = [(v.name, v.phone, v.office, v.working_hours,
             v.away_until.isoformat() if v.away_until else None, v.backup_phone)
            for v in conf.veiledere]
    await store.upsert_veiledere(rows + backup_desks(conf))
    return len(conf.offices), len(conf.veiledere)


Desk = tuple[str, str, str, str | None, str | None, str | None]


def backup_desks(conf: Config) -> list[Desk]:
    """Backup phones (an office's `reservetelefon`, a veileder's `vikar`) that are not
    someone's work phone become desks of their own, «Veileder på NAV Gjøvik»: messages routed
    there open threads under that desk, so answers from the backup phone reach the young
    person (codes scoped to it, as for any veileder) and no other number can relay."""
    known = {v.phone for v in conf.veiledere}
    out: dict[str, Desk] = {}
    backups = [(o.backup_phone, o.name) for o in conf.offices]
    backups += [(v.backup_phone, v.office) for v in conf.veiledere]
    for phone, office in backups:
        if phone and phone not in known and phone not in out:
            out[phone] = (f"Veileder på {office}", phone, office, None, None, None)
    return list(out.values())


def _round_trip() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.preserve_quotes = True
    return yaml


def _write(yaml: YAML, doc: Any, p: Path) -> None:
    """Atomically (temporary file, fsync, rename): a crash leaves the old file or the new
    one, never a truncated one. A file that exists keeps its permissions (never readable by
    everyone); a new one is 0600."""
    buf = io.StringIO()
    yaml.dump(doc, buf)
    write_atomic(p, buf.getvalue().encode("utf-8"))


def set_away_in_file(path: str | Path, phone: str, until: date | None) -> bool:
    """Write (or with None, remove) `borte_til` for the veileder with this work phone,
    keeping the file's comments and order. False if the file does not list them."""
    yaml, p = _round_trip(), Path(path)
    doc = yaml.load(p.read_text(encoding="utf-8")) if p.exists() else None
    if not isinstance(doc, CommentedMap) or not isinstance(doc.get("veiledere"), CommentedSeq):
        return False
    for node in doc["veiledere"]:
        try:
            mine = normalise_phone(str(node.get("jobbtelefon", ""))) == phone
        except (PhoneError, AttributeError):
            mine = False
        if mine:
            if until is None:
                node.pop("borte_til", None)
            else:
                node["borte_til"] = until.strftime("%d.%m.%Y")
            _write(yaml, doc, p)
            return True
    return False


def add_veileder_to_file(path: str | Path, name: str, phone: str, office: str) -> None:
    """Append a veileder (and the office if new), keeping the file's comments and order."""
    yaml, p = _round_trip(), Path(path)
    doc = yaml.load(p.read_text(encoding="utf-8")) if p.exists() else None
    if doc is None:
        doc = CommentedMap()
    for key in ("kontorer", "veiledere"):
        if doc.get(key) is None:
            doc[key] = CommentedSeq()
    if office not in [str(o.get("navn")) for o in doc["kontorer"]]:
        doc["kontorer"].append(CommentedMap([("navn", office)]))
    doc["veiledere"].append(CommentedMap([("navn", name), ("jobbtelefon", pretty_phone(phone)),
                                          ("kontor", office)]))
    _write(yaml, doc, p)
