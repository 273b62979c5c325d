"""Transcript tests for flows: what the user types and what the bot must answer.

A transcript file (flows/tests/*.yaml):

    name: Svarer ja på alt
    flow: first_meeting_survey   # optional: start this flow first, as a scheduled start does
    conversation:
      - bot: Vil du svare på 8 korte spørsmål?
      - user: ja
      - bot: Spurte veilederen
        choices: [Ja, Nei]       # optional: the buttons/options must be exactly these

Each `bot:` must appear in the bot's next message (same words, any line breaks). After every
`user:` the bot's messages must match the `bot:` lines that follow, no more and no fewer.
The conversation runs through the real pipeline on a fresh in-memory database with the demo
data, at a fixed time (Monday 23 November 2026 12.00), so dates in texts are predictable.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.engine.loader import Diagnostic, FileChecker, flow_files, line_of_item, read_yaml
from bot.engine.model import FlowSet
from bot.engine.runtime import Reply
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.store import Store

FIXED_NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # 12.00 in Oslo, a Monday
TURN_KEYS = {"bot", "user", "choices"}


@dataclass(frozen=True)
class Turn:
    line: int
    user: str | None = None
    bot: str | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Transcript:
    path: str
    name: str
    flow: str | None
    turns: tuple[Turn, ...]


def _squash(s: str) -> str:
    return " ".join(s.split())


def parse_transcript(path: str, diags: list[Diagnostic]) -> Transcript | None:
    chk = FileChecker(path, diags)
    doc = read_yaml(path, chk)
    if chk.failed():
        return None
    if not isinstance(doc, CommentedMap):
        chk.error(1, "en samtaletest må ha 'conversation' (og gjerne 'name' og 'flow')")
        return None
    chk.unknown_keys(doc, {"name", "flow", "conversation"}, 1, "en samtaletest")
    name = chk.get_str(doc, "name", 1) or Path(path).stem
    flow = chk.get_str(doc, "flow", 1)
    conv = doc.get("conversation")
    if not isinstance(conv, CommentedSeq) or not conv:
        chk.error(1, "'conversation' må være en liste med linjer som '- user: ...' og "
                     "'- bot: ...'")
        return None
    turns = []
    for i, node in enumerate(conv):
        line = line_of_item(conv, i, 1)
        if not isinstance(node, CommentedMap):
            chk.error(line, "hver linje må være '- user: ...' eller '- bot: ...'")
            continue
        chk.unknown_keys(node, TURN_KEYS, line, "en samtalelinje")
        if ("user" in node) == ("bot" in node):
            chk.error(line, "skriv enten 'user:' eller 'bot:' på hver linje")
            continue
        if "user" in node:
            u = node["user"]
            turns.append(Turn(line, user="" if u is None else str(u)))
        else:
            b = chk.get_str(node, "bot", line, what="bot-linje: ")
            choices = None
            if "choices" in node:
                c = node["choices"]
                if not isinstance(c, CommentedSeq):
                    chk.error(line, "'choices' må være en liste")
                    continue
                choices = tuple(str(x) for x in c)
            if b is not None:
                turns.append(Turn(line, bot=b, choices=choices))
    if chk.failed():
        return None
    return Transcript(path, name, flow, tuple(turns))


def _also_said(path: str, line: int, reply: Reply) -> str:
    return (f"{path}:{line}: boten sa også «{_squash(reply.text)}», som ikke står i testen; "
            "legg til en '- bot:'-linje for den")


async def run_transcript(t: Transcript, flows: FlowSet) -> list[str]:
    """Run one transcript; the failures as 'path:line: message' (empty when it passes)."""
    failures: list[str] = []
    if t.flow is not None and flows.get(t.flow) is None:
        return [f"{t.path}:1: flyten '{t.flow}' finnes ikke"]
    store = await Store.open(":memory:")
    try:
        await seed_demo(store, FIXED_NOW)
        pipeline = Pipeline(store, flows, clock=lambda: FIXED_NOW)
        ids = itertools.count(1)
        async with pipeline:
            pending: list[Reply] = []
            if t.flow is not None:
                h = await pipeline.submit(FlowRequest("console", DEMO_USER_PHONE, t.flow,
                                                      preview=True))
                pending = list(h.replies)
            last_user_line = 1
            for turn in t.turns:
                if turn.user is not None:
                    if pending:
                        failures.append(_also_said(t.path, last_user_line, pending[0]))
                        return failures
                    h = await pipeline.submit(Inbound("console", DEMO_USER_PHONE, turn.user,
                                                      f"transcript-{next(ids)}"))
                    pending = list(h.replies)
                    last_user_line = turn.line
                    continue
                assert turn.bot is not None
                if not pending:
                    failures.append(f"{t.path}:{turn.line}: boten skulle si «{_squash(turn.bot)}», "
                                    "men sa ikke mer")
                    return failures
                got = pending.pop(0)
                if _squash(turn.bot) not in _squash(got.text):
                    failures.append(f"{t.path}:{turn.line}: boten skulle si «{_squash(turn.bot)}», "
                                    f"men sa «{_squash(got.text)}»")
                    return failures
                if turn.choices is not None and tuple(got.choices) != turn.choices:
                    failures.append(f"{t.path}:{turn.line}: valgene skulle være "
                                    f"{list(turn.choices)}, men var {list(got.choices)}")
                    return failures
            if pending:
                failures.append(_also_said(t.path, last_user_line, pending[0]))
    finally:
        await store.close()
    return failures


async def run_all(paths: Sequence[str | Path], flows: FlowSet) -> tuple[int, list[str]]:
    """Run every transcript under paths. Returns (number run, failure lines)."""
    diags: list[Diagnostic] = []
    transcripts: list[Any] = [parse_transcript(p, diags) for p in flow_files(paths)]
    failures = [str(d) for d in diags if d.severity == "error"]
    ran = 0
    for tr in transcripts:
        if tr is None:
            continue
        ran += 1
        failures.extend(await run_transcript(tr, flows))
    return ran, failures

