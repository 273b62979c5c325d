"""Telegram end to end: python-telegram-bot against a fake Bot API server on loopback, by
long polling and by webhook."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.app.demo import seed_demo
from bot.channels import telegram as T
from bot.engine.runtime import Reply
from bot.store import Store
from bot.timing.planner import OSLO

from .conftest import NOW, answers, said
from .fakes import FakeTelegram, post_update
from .livekit import SECRET, Live, Mirror, eventually, telegram_live

CHAT = 777001


WEBHOOK = {"TELEGRAM_MODE": "webhook", "TELEGRAM_WEBHOOK_SECRET": SECRET}


def oslo(d: int, h: int, mi: int = 0) -> datetime:
    return datetime(2026, 11, d, h, mi, tzinfo=OSLO)


class Chat:
    """A person in Telegram, on a polling or a webhook installation."""

    def __init__(self, live: Live, fake: FakeTelegram, chat_id: int = CHAT,
                 webhook: bool = False) -> None:
        self.live, self.fake, self.chat_id, self.webhook = live, fake, chat_id, webhook

    async def deliver(self, update: dict[str, Any]) -> None:
        if self.webhook:
            assert await post_update(self.live.url, update, SECRET) == 200
        else:
            self.fake.queue(update)
            # handled and committed: the bot polls on past it only after that
            await eventually(lambda: self.fake.confirmed >= update["update_id"])
        await self.live.settled()

    async def say(self, text: str | None, **kw: Any) -> list[str]:
        before = len(self.fake.texts_to(self.chat_id))
        await self.deliver(self.fake.update(self.chat_id, text, **kw))
        return self.fake.texts_to(self.chat_id)[before:]

    async def at(self, when: datetime) -> list[str]:
        before = len(self.fake.texts_to(self.chat_id))
        self.live.clock.jump(when)
        await self.live.tick()
        await self.live.settled()
        return self.fake.texts_to(self.chat_id)[before:]


async def seed(store: Store) -> None:
    await seed_demo(store, NOW, channel="sms")


def texts(replies: list[Reply]) -> list[str]:
    return [r.text for r in replies]


async def linked_chat(live: Live, fake: FakeTelegram, webhook: bool = False) -> Chat:
    """The veileder runs `veivis invite`; the young person opens the link and goes through
    the welcome (language, consent)."""
    link = await T.invite(live.store, 1, fake.username, live.clock())
    assert link.startswith("https://t.me/veivis_test_bot?start=")
    code = link.split("=", 1)[1]
    chat = Chat(live, fake, webhook=webhook)
    m = Mirror(live.svc.flows)
    welcome = texts(m.start("welcome"))
    # the link is used first, then the welcome is started: wait for it to arrive
    await chat.deliver(fake.update(CHAT, f"/start {code}"))
    await eventually(lambda: len(fake.texts_to(CHAT)) >= len(welcome))
    assert fake.texts_to(CHAT) == welcome
    for _, t in answers(live.svc.flows.flows["welcome"]):
        assert await chat.say(t) == texts(m.say(t))
    return chat


async def journey(chat: Chat) -> None:
    """Preparation, reminder and survey, compared with the engine's answers on the same
    flows (the coordinators' wording is never quoted)."""
    flows = chat.live.svc.flows
    m = Mirror(flows)
    opening = m.start("first_meeting_prep")
    assert await chat.at(NOW + timedelta(minutes=1)) == texts(opening)
    # the choices are buttons, not numbers in the text
    buttons = chat.fake.sent[-1].extra["reply_markup"]["keyboard"]
    assert [b[0]["text"] for b in buttons] == list(opening[-1].choices)
    for _, t in answers(flows.flows["first_meeting_prep"]):
        assert await chat.say(t) == texts(m.say(t))
    m = Mirror(flows)
    reminder = m.start("meeting_reminder")
    assert await chat.at(oslo(23, 18, 5)) == texts(reminder)
    tap = reminder[-1].choices[0]  # a tap on the first button
    assert await chat.say(tap) == texts(m.say(tap))
    m = Mirror(flows)
    assert await chat.at(oslo(24, 13, 5)) == texts(m.start("first_meeting_survey"))
    for _, t in answers(flows.flows["first_meeting_survey"], "Bra møte, takk."):
        assert await chat.say(t) == texts(m.say(t))


async def exactly_once(live: Live, fake: FakeTelegram) -> None:
    rows = await live.store.fetchall("SELECT status, provider_id, text FROM outbox "
                                     "WHERE channel = 'telegram'")
    assert {r[0] for r in rows} == {"sent"}
    assert len(fake.sent) == len(rows)
    # each message arrived as many times as it was queued: once per row
    assert Counter(s.text for s in fake.sent) == Counter(r[2] for r in rows)


async def test_polling_a_linked_user_from_preparation_to_survey(tmp_path: Path) -> None:
    async with telegram_live(tmp_path, seed) as (live, fake):
        assert fake.webhook == {}  # polling: any webhook is removed first
        chat = await linked_chat(live, fake)
        await journey(chat)
        await exactly_once(live, fake)


async def test_webhook_mode_with_30_percent_failures_delivers_everything_once(
        tmp_path: Path) -> None:
    async with telegram_live(tmp_path, seed, **WEBHOOK) as (live, fake):
        assert fake.webhook["url"] == "https://veivis.example.no/telegram"
        assert fake.webhook["secret_token"] == SECRET
        fake.fail.rate = 0.3
        fake.hang_seconds = 1.0
        chat = await linked_chat(live, fake, webhook=True)
        await journey(chat)
        await exactly_once(live, fake)
        retried = await live.store.fetchall("SELECT COUNT(*) FROM outbox WHERE tries > 1")
        assert retried[0][0] > 0


async def test_webhook_without_the_secret_is_refused(tmp_path: Path) -> None:
    async with telegram_live(tmp_path, seed, **WEBHOOK) as (live, fake):
        update = fake.update(CHAT, "hei")
        assert await post_update(live.url, update, None) == 403
        assert await post_update(live.url, update, SECRET + "x") == 403
        assert await post_update(live.url, update, "") == 403
        assert await live.store.fetchall("SELECT * FROM inbound") == []
        assert fake.sent == []


async def test_a_replayed_update_is_processed_once(tmp_path: Path) -> None:
    async with telegram_live(tmp_path, seed, **WEBHOOK) as (live, fake):
        chat = await linked_chat(live, fake, webhook=True)
        update = fake.update(CHAT, "HJELP")
        before = len(fake.sent)
        await chat.deliver(update)
        await chat.deliver(update)
        assert len(fake.sent) == before + 1


async def test_stop_then_start(tmp_path: Path) -> None:
    async with telegram_live(tmp_path, seed) as (live, fake):
        chat = await linked_chat(live, fake)
        assert await chat.say("STOPP") == [said(live.svc.flows, "system.stopped")]
        await chat.at(NOW + timedelta(minutes=1))
        assert await chat.at(oslo(23, 18, 5)) == []
        assert await chat.say("START") == [said(live.svc.flows, "system.started")]


async def test_an_unknown_chat_gets_an_explanation_and_nothing_else(tmp_path: Path) -> None:
    async with telegram_live(tmp_path, seed) as (live, fake):
        stranger = Chat(live, fake, chat_id=555)
        got = await stranger.say("hei, hvem er du?")
        assert got == [said(live.svc.flows, "system.unknown_chat")]
        # one answer per chat, however often it writes (each answer costs; issue 16)
        for text in ("/start", "hallo?", "hei", "/start"):
            assert await stranger.say(text) == []
        assert len(fake.texts_to(555)) == 1
        users = await live.store.fetchall("SELECT COUNT(*) FROM users")
        assert users == [(1,)]  # no user was made for the stranger
        texts = await live.store.fetchall("SELECT text FROM inbound")
        assert all(t[0] is None for t in texts)  # what they wrote is not kept


async def test_a_crisis_from_an_unknown_chat_gets_the_numbers_every_time(
        tmp_path: Path) -> None:
    """Found by the attacker: an unlinked chat writing «jeg vil ikke leve mer» got only «I
    don't know this chat», and a second crisis message nothing at all. A crisis message gets
    the crisis numbers in every state, also from a chat Veivis does not know, every time:
    the one-answer-per-chat limit never holds back a crisis answer."""
    async with telegram_live(tmp_path, seed) as (live, fake):
        flows = live.svc.flows
        assert flows.crisis is not None
        numbers = flows.crisis.required_numbers
        stranger = Chat(live, fake, chat_id=556)
        assert await stranger.say("hei") == [said(flows, "system.unknown_chat")]
        for text in ("jeg vil ikke leve mer", "orker ikke mer, vil bare forsvinne"):
            got = await stranger.say(text)
            assert got and all(n in " ".join(got) for n in numbers), got
        other = Chat(live, fake, chat_id=557)  # a crisis as the very first message
        got = await other.say("jeg har lyst til å dø")
        assert all(n in " ".join(got) for n in numbers), got
        assert said(flows, "system.unknown_chat") in got
        assert await other.say("hallo?") == []  # ordinary talk: still one answer per chat
        users = await live.store.fetchall("SELECT COUNT(*) FROM users")
        assert users == [(1,)]
        texts = await live.store.fetchall("SELECT text FROM inbound")
        assert all(t[0] is None for t in texts)


async def test_an_invite_works_once_and_expires(tmp_path: Path) -> None:
    async with telegram_live(tmp_path, seed) as (live, fake):
        link = await T.invite(live.store, 1, fake.username, live.clock())
        code = link.split("=", 1)[1]
        assert len(code) >= 32
        rows = await live.store.fetchall("SELECT code_hash FROM invites")
        assert code not in str(rows)  # only a hash is stored
        other = Chat(live, fake, chat_id=999)
        guessed = await other.say("/start " + code[:-1] + ("A" if code[-1] != "A" else "B"))
        invalid = said(live.svc.flows, "system.link_invalid")
        assert guessed == [invalid]
        await Chat(live, fake).say(f"/start {code}")
        # a bad /start gets one answer per chat: guessing on gets nothing (issue 16)
        assert await other.say(f"/start {code}") == []
        assert await other.say("/start " + "B" * 32) == []
        expired = await T.invite(live.store, 1, fake.username, live.clock(), days=1)
        live.clock.jump(live.clock() + timedelta(days=2))
        got = await Chat(live, fake, chat_id=998).say("/start " + expired.split("=", 1)[1])
        assert got == [invalid]
        linked = await live.store.fetchall("SELECT telegram_chat_id FROM users")
        assert linked == [(str(CHAT),)]


async def test_a_user_who_blocks_the_bot_is_stopped(tmp_path: Path) -> None:
    async with telegram_live(tmp_path, seed) as (live, fake):
        chat = await linked_chat(live, fake)
        fake.fail.for_address[str(CHAT)] = "403"  # sends are refused: blocked
        await chat.at(NOW + timedelta(minutes=1))
        assert await live.store.fetchall("SELECT stopped FROM users") == [(1,)]
        failed = await live.store.fetchall("SELECT COUNT(*) FROM outbox WHERE "
                                           "status = 'failed'")
        assert failed[0][0] >= 1
        # the update Telegram sends when someone blocks the bot does the same
        async with live.store.transaction() as c:
            await c.execute("UPDATE users SET stopped = 0")
        await chat.deliver(fake.blocked(CHAT))
        assert await live.store.fetchall("SELECT stopped FROM users") == [(1,)]


async def test_a_photo_gets_a_plain_answer(tmp_path: Path) -> None:
    async with telegram_live(tmp_path, seed) as (live, fake):
        chat = await linked_chat(live, fake)
        assert await chat.say(None, photo=True) == [said(live.svc.flows, "system.media")]


def test_long_texts_are_split_at_sentence_boundaries() -> None:
    text = " ".join(f"Dette er setning nummer {i}." for i in range(400))
    parts = T.split_text(text, 4096)
    assert len(parts) > 1
    assert all(len(p) <= 4096 for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == text
    assert T.split_text("Kort.", 4096) == ["Kort."]
    word = "a" * 5000
    assert [len(p) for p in T.split_text(word, 4096)] == [4096, 904]


async def test_a_webhook_answers_only_after_its_message_is_committed(tmp_path: Path) -> None:
    """A webhook returns only after its message is committed: no waiting needed."""
    async with telegram_live(tmp_path, seed, **WEBHOOK) as (live, fake):
        await linked_chat(live, fake, webhook=True)
        update = fake.update(CHAT, "HJELP")
        assert await post_update(live.url, update, SECRET) == 200
        help_text = said(live.svc.flows, "system.help", kontor="NAV Gjøvik")
        rows = await live.store.fetchall("SELECT COUNT(*) FROM outbox WHERE address = ? "
                                         "AND text = ?", (str(CHAT), help_text))
        assert rows == [(1,)]
        await eventually(lambda: help_text in fake.texts_to(CHAT))
