"""The console channel: a person chats with the bot in a terminal, or pipes lines in."""

from __future__ import annotations

import json
import textwrap
from typing import TextIO

from ..service.clock import Clock
from ..store import Store
from .base import plain_text

CHANNEL = "console"


class ConsoleSender:
    """Drains the console outbox to a text stream, as plain text or one JSON object a line."""

    def __init__(self, store: Store, out: TextIO, clock: Clock, *, as_json: bool = False,
                 prefix: str = "veivis> ", width: int | None = None) -> None:
        self.store = store
        self.out = out
        self.clock = clock
        self.as_json = as_json
        self.prefix = prefix
        self.width = width  # wrap at word boundaries for a person at a terminal

    def _wrap(self, body: str) -> str:
        if not self.width:
            return body
        room = max(20, self.width - len(self.prefix))
        return "\n".join(textwrap.fill(line, room) if line else line
                         for line in body.splitlines())

    async def drain(self) -> int:
        sent = 0
        while True:
            now = self.clock()
            rows = await self.store.due_outbox(CHANNEL, now)
            if not rows:
                return sent
            for r in rows:
                if self.as_json:
                    obj: dict[str, object] = {"to": r.address, "text": r.text}
                    if r.choices:
                        obj["choices"] = list(r.choices)
                    self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
                else:
                    body = plain_text(r.text, r.choices, r.numbered)
                    if not r.numbered and r.choices:
                        body += "\n  [" + " / ".join(r.choices) + "]"
                    indent = "\n" + " " * len(self.prefix)
                    self.out.write(self.prefix + self._wrap(body).replace("\n", indent) + "\n")
            self.out.flush()
            await self.store.mark_sent([r.id for r in rows], now)
            sent += len(rows)
