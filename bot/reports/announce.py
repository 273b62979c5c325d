"""«Du sa – vi gjorde»: a coordinator's short update to the young people who said yes to
hearing back (`veivis announce FILE`).

The text must pass the same plain-language rules as the flows. It goes to each person who
said yes and has not written STOPP, on their own channel, through the outbox (so the send
rate and retries apply), and never in quiet hours: then it waits for the morning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.engine.language import Finding, check_message
from bot.engine.model import FlowSet, Pos
from bot.store.protocol import Database
from bot.timing.planner import DEFAULT_RULES, Rules, next_allowed


@dataclass(frozen=True)
class Announced:
    recipients: int
    due: datetime  # when it goes out (later than now in quiet hours)


def check(text: str, path: str, flows: FlowSet) -> list[Finding]:
    if not text.strip():
        return [Finding(Pos(path, 1), "error", "the file is empty")]
    return check_message(text.strip(), path, flows.wordlist)


async def announce(store: Database, text: str, now: datetime,
                   rules: Rules = DEFAULT_RULES) -> Announced:
    due = next_allowed(now, rules)  # now, or the end of quiet hours
    people = await store.hear_back_recipients()
    await store.queue_messages([(uid, channel, address, text.strip())
                                for uid, channel, address in people], now, due=due)
    return Announced(len(people), due)
