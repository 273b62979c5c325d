"""Anonymous means anonymous: after a user answers the survey and sends feedback, nothing in
any table, the database file, the WAL or the logs links the anonymous rows to them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.engine.model import FlowSet
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.store import Store
from bot.store.anonymous import scrub

from .conftest import ManualClock

FEEDBACK = "Kurset ligger for langt unna og bussen går sjelden"
COMMENT = "Hun var grei men kom sent"


async def test_nothing_links_anonymous_rows_to_the_person(
        tmp_path: Path, flows: FlowSet, clock: ManualClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "a.db"
    store = await Store.open(db)
    await seed_demo(store, clock.now)
    u = DEMO_USER_PHONE
    async with Pipeline(store, flows, clock) as p:
        for i, t in enumerate(["hei", "1", "ja"]):  # welcome: consent, so texts are logged
            await p.submit(Inbound("console", u, t, f"w{i}"))
        await p.submit(FlowRequest("console", u, "first_meeting_survey"))
        for i, t in enumerate(["ja", "ja", "nei", "ja", "ja", "ja", "ja", "4", COMMENT]):
            await p.submit(Inbound("console", u, t, f"s{i}"))
        await p.submit(FlowRequest("console", u, "feedback"))
        await p.submit(Inbound("console", u, "2", "f1"))
        await p.submit(Inbound("console", u, FEEDBACK + " ring meg 912 34 567", "f2"))
    uid, name = (await store.fetchall("SELECT id, first_name FROM users"))[0]
    anon = await store.fetchall("SELECT * FROM anonymous_answers")
    assert len(anon) == 9  # 8 survey answers and the message (its topic is its step)
    # 1. the anonymous rows hold no identifier and no exact time
    cols = [r[1] for r in await store.fetchall("PRAGMA table_info(anonymous_answers)")]
    assert cols == ["id", "flow", "question", "value", "week", "office"]
    for row in anon:
        for cell in row[1:]:
            assert cell is None or not any(x in str(cell) for x in
                                           (u, u[3:], "912 34 567", name, "Hansen"))
    assert {r[4] for r in anon} == {"2026-W48"}
    texts = {r[3] for r in anon}
    assert scrub(FEEDBACK + " ring meg 912 34 567") == FEEDBACK + " ring meg [nummer fjernet]"
    assert FEEDBACK + " ring meg [nummer fjernet]" in texts and COMMENT in texts
    # 2. no other table holds an anonymous text
    tables = [r[0] for r in await store.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'anonymous_answers' "
        "AND name NOT LIKE 'sqlite_%'")]
    for t in tables:
        dump = str(await store.fetchall(f"SELECT * FROM {t}"))
        assert FEEDBACK not in dump and COMMENT not in dump, t
    # 3. the files: each anonymous text is in the database once (its row), nowhere in freed
    #    pages, and the WAL keeps no record of which rows changed together
    await store.close()
    raw = db.read_bytes()
    assert raw.count(FEEDBACK.encode()) == 1 and raw.count(COMMENT.encode()) == 1
    wal = Path(str(db) + "-wal")
    assert not wal.exists() or FEEDBACK.encode() not in wal.read_bytes()
    assert not wal.exists() or str(uid).encode() + b"|" not in wal.read_bytes()
    # 4. the logs never print them, nor the whole phone number
    assert FEEDBACK not in caplog.text and COMMENT not in caplog.text
    assert u not in caplog.text and "91234567" not in caplog.text


async def test_row_order_does_not_follow_the_order_of_answers(
        tmp_path: Path, flows: FlowSet, clock: ManualClock) -> None:
    """Rows are stored and read back in random id order, not in the order users answered."""
    store = await Store.open(tmp_path / "o.db")
    async with Pipeline(store, flows, clock) as p:
        for n in range(40):
            phone = f"+4790000{n:03d}"
            await p.submit(FlowRequest("sms", phone, "feedback"))
            await p.submit(Inbound("sms", phone, "4", f"{n}a"))
            await p.submit(Inbound("sms", phone, f"melding nummer {n:02d}", f"{n}b"))
    rows = await store.fetchall("SELECT value FROM anonymous_answers "
                                "WHERE question = 'melding_annet'")
    order = [int(v.split()[-1]) for (v,) in rows]
    assert sorted(order) == list(range(40))
    assert order != list(range(40))  # 1 chance in 40! that random ids keep the order
    await store.close()
