"""SMS end to end: twilio's client and RequestValidator against a fake Twilio on loopback."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp

from bot.app.demo import DEMO_USER_PHONE, DEMO_VEILEDER_PHONE, seed_demo
from bot.store import Store
from bot.timing.planner import OSLO

from .conftest import NOW, answers, said, said_yes
from .fakes import FakeTwilio
from .livekit import PUBLIC, SID, Live, Mirror, as_sms, sms_live

U = DEMO_USER_PHONE
KARI = DEMO_VEILEDER_PHONE

def oslo(d: int, h: int, mi: int = 0) -> datetime:
    return datetime(2026, 11, d, h, mi, tzinfo=OSLO)


async def seed(store: Store) -> None:
    await seed_demo(store, NOW, channel="sms")  # first meeting Tuesday 24.11 10.00
    await said_yes(store)  # the welcome before it: tests/test_young_user.py


async def say(live: Live, fake: FakeTwilio, text: str) -> list[str]:
    """The user texts; returns what they get back once everything is sent."""
    before = len(fake.texts_to(U))
    status, _ = await fake.sms(live.url, PUBLIC, U, text)
    assert status == 200
    await live.settled()
    return fake.texts_to(U)[before:]


async def at(live: Live, fake: FakeTwilio, when: datetime) -> list[str]:
    before = len(fake.texts_to(U))
    live.clock.jump(when)
    await live.tick()
    await live.settled()
    return fake.texts_to(U)[before:]


async def exactly_once(live: Live, fake: FakeTwilio) -> None:
    """Every outbox row was accepted by Twilio once, and Twilio got nothing else."""
    rows = await live.store.fetchall("SELECT status, provider_id FROM outbox WHERE "
                                     "channel = 'sms'")
    assert {r[0] for r in rows} == {"sent"}
    sids = Counter(s.extra["sid"] for s in fake.sent)
    assert sorted(sids) == sorted(r[1] for r in rows)
    assert set(sids.values()) == {1}


async def journey(live: Live, fake: FakeTwilio) -> None:
    """The demo user's first meeting, from the preparation to the survey, over SMS. What
    arrives is compared with the engine's own answers on the same flows (a Mirror), so the
    test holds whatever the coordinators write in them."""
    flows = live.svc.flows
    m = Mirror(flows)
    assert await at(live, fake, NOW) == as_sms(m.start("first_meeting_prep"))
    for _, t in answers(flows.flows["first_meeting_prep"]):
        assert await say(live, fake, t) == as_sms(m.say(t))
    # the answers reach Kari's work phone as one SMS, at once: it is Monday 12.00
    assert fake.texts_to(KARI) == [m.summary()]
    reminder = Mirror(flows)
    assert await at(live, fake, oslo(23, 18, 5)) == as_sms(reminder.start("meeting_reminder"))
    for _, t in answers(flows.flows["meeting_reminder"]):
        assert await say(live, fake, t) == as_sms(reminder.say(t))
    assert len(fake.texts_to(KARI)) == 1  # 18.05: the reply waits for Kari's working hours
    got = await at(live, fake, oslo(24, 13, 5))
    assert fake.texts_to(KARI)[1] == reminder.summary()  # in her working hours
    m = Mirror(flows)
    assert got == as_sms(m.start("first_meeting_survey"))
    survey = answers(flows.flows["first_meeting_survey"], "Bra møte, takk.")
    for _, t in survey:
        assert await say(live, fake, t) == as_sms(m.say(t))
    # the answers wait sealed in the pool until 4 more people have answered
    saved = sum(1 for st, _ in survey if st.save)
    assert await live.store.fetchall("SELECT COUNT(*) FROM anonymous_pool") == [(saved,)]
    assert await live.store.fetchall("SELECT COUNT(*) FROM anonymous_answers") == [(0,)]


async def test_a_first_meeting_by_sms_from_preparation_to_survey(tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed) as (live, fake):
        await journey(live, fake)
        await exactly_once(live, fake)
        # every send asked Twilio for delivery reports at the public address, naming its row
        rows = await live.store.fetchall("SELECT id, provider_id FROM outbox")
        assert {s.extra["StatusCallback"] for s in fake.sent} == {
            f"{PUBLIC}/twilio/status?row={r[0]}" for r in rows}
        assert {s.extra["From"] for s in fake.sent} == {"+4759440000"}


async def test_every_message_arrives_exactly_once_when_twilio_fails_30_percent(
        tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed) as (live, fake):
        fake.fail.rate = 0.3  # 500s and timeouts
        fake.hang_seconds = 1.0  # the client gives up after 0.5 s
        await journey(live, fake)
        await exactly_once(live, fake)
        retried = await live.store.fetchall("SELECT COUNT(*) FROM outbox WHERE tries > 1")
        assert retried[0][0] > 0  # the failures really happened


async def test_stop_then_start(tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed) as (live, fake):
        flows = live.svc.flows
        assert await say(live, fake, "STOPP") == [said(flows, "system.stopped")]
        assert await at(live, fake, oslo(23, 18, 5)) == []  # no reminder while stopped
        assert await say(live, fake, "START") == [said(flows, "system.started")]


async def test_forged_and_unsigned_webhooks_are_refused_and_change_nothing(
        tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed) as (live, fake):
        params = {"MessageSid": "SMforged", "From": U, "Body": "SLETT", "To": "+47"}
        forged = FakeTwilio(SID, "another-token").sign(PUBLIC + "/twilio/sms", params)
        assert await fake.webhook(live.url, PUBLIC, "/twilio/sms", params,
                                  signature=forged) == 403
        assert await fake.webhook(live.url, PUBLIC, "/twilio/sms", params,
                                  signature=None) == 403
        # signed for another address (a replay against another installation)
        assert await fake.webhook(live.url, "https://evil.example", "/twilio/sms",
                                  params) == 403
        # a valid signature, but a field changed on the way
        sig = fake.sign(PUBLIC + "/twilio/sms", params)
        assert await fake.webhook(live.url, PUBLIC, "/twilio/sms",
                                  {**params, "Body": "START"}, signature=sig) == 403
        assert await live.store.fetchall("SELECT * FROM inbound") == []
        assert await fake.status(live.url, "https://evil.example", "SMx", "failed",
                                 "21610") == 403
        users = await live.store.fetchall("SELECT stopped FROM users WHERE phone = ?", (U,))
        assert users == [(0,)]


async def test_a_replayed_webhook_is_processed_once(tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed) as (live, fake):
        status, sid = await fake.sms(live.url, PUBLIC, U, "HJELP")
        assert status == 200
        again, _ = await fake.sms(live.url, PUBLIC, U, "HJELP", sid=sid)
        assert again == 200  # Twilio gets a 200, so it stops retrying
        await live.settled()
        assert len(fake.texts_to(U)) == 1


async def test_the_webhook_answers_with_empty_twiml(tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed) as (live, fake):
        params = {"MessageSid": "SM" + "1" * 32, "From": U, "Body": "hei", "To": "+4759440000",
                  "AccountSid": SID}
        headers = {"X-Twilio-Signature": fake.sign(PUBLIC + "/twilio/sms", params)}
        async with aiohttp.ClientSession() as s, s.post(live.url + "/twilio/sms",
                                                        data=params, headers=headers) as r:
            assert r.status == 200
            assert r.content_type == "text/xml"
            assert (await r.text()).endswith("<Response></Response>")


async def test_delivery_reports_update_the_outbox_and_carrier_stop_stops_the_user(
        tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed) as (live, fake):
        await say(live, fake, "HJELP")
        sid = fake.sent[-1].extra["sid"]
        assert await fake.status(live.url, PUBLIC, sid, "delivered") == 204
        assert await fake.status(live.url, PUBLIC, sid, "sent") == 204  # late, older
        rows = await live.store.fetchall("SELECT delivery FROM outbox WHERE provider_id = ?",
                                         (sid,))
        assert rows == [("delivered",)]
        # later the person replies STOP to the carrier: Twilio refuses with 21610
        fake.fail.for_address[U] = "21610"
        status, _ = await fake.sms(live.url, PUBLIC, U, "HJELP")
        assert status == 200
        await live.settled()
        users = await live.store.fetchall("SELECT stopped FROM users WHERE phone = ?", (U,))
        assert users == [(1,)]
        failed = await live.store.fetchall("SELECT error_code FROM outbox WHERE "
                                           "status = 'failed'")
        assert failed == [("21610",)]
        # no reminder goes to them any more
        fake.fail.for_address.clear()
        assert await at(live, fake, oslo(23, 18, 5)) == []


async def test_a_picture_without_text_gets_a_plain_answer(tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed) as (live, fake):
        status, _ = await fake.sms(live.url, PUBLIC, U, "", NumMedia="1",
                                   MediaUrl0="https://example.com/x.jpg")
        assert status == 200
        await live.settled()
        assert fake.texts_to(U) == [said(live.svc.flows, "system.media")]


async def test_permanent_errors_are_not_retried_and_show_as_failed(tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed) as (live, _):
        # Twilio rejects a malformed request with 400 (no Body): one try, then failed
        async with live.store.transaction() as c:
            await c.execute("INSERT INTO outbox (channel, address, text, created_at, due_at)"
                            " VALUES ('sms', ?, '', ?, ?)", (U, NOW.isoformat(),
                                                             NOW.isoformat()))
        live.svc.wake_senders()
        await live.settled()
        rows = await live.store.fetchall("SELECT status, tries FROM outbox")
        assert rows == [("failed", 1)]


async def test_a_captured_webhook_reshaped_under_its_signature_is_refused(
        tmp_path: Path) -> None:
    """Finding 3: Twilio's signature joins names and values with no separator, so a field's
    value can swallow the next field: `MessageSid=SM…MessagingServiceSidMG…` with that field
    dropped signs the same. The old server took it as a new message and the veileder got the
    forward twice. Now a message id must be Twilio's, and a field Twilio never sends (or an
    account that is not ours) is refused, all with 403, and nothing is forwarded again."""
    async with sms_live(tmp_path, seed) as (live, fake):
        await say(live, fake, "VEILEDER")
        sid = "SM" + "226f" * 8
        params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": SID, "From": U,
                  "To": "+4759440000", "Body": "Kan vi flytte møtet?", "NumMedia": "0",
                  "MessagingServiceSid": "MG" + "ab" * 16}
        sig = fake.sign(PUBLIC + "/twilio/sms", params)
        assert await fake.webhook(live.url, PUBLIC, "/twilio/sms", params,
                                  signature=sig) == 200
        await live.settled()
        assert len(fake.texts_to(KARI)) == 1
        swallowed = {k: v for k, v in params.items() if k != "MessagingServiceSid"}
        swallowed["MessageSid"] = sid + "MessagingServiceSid" + params["MessagingServiceSid"]
        assert fake.sign(PUBLIC + "/twilio/sms", swallowed) == sig  # the scheme allows it
        assert await fake.webhook(live.url, PUBLIC, "/twilio/sms", swallowed,
                                  signature=sig) == 403
        # the same trick on the other ids, and requests Twilio never sends, signed
        reshaped = [
            {**swallowed, "MessageSid": sid, "SmsSid": swallowed["MessageSid"]},
            {**params, "MessageSid": "SM" + sid[2:].upper(), "SmsSid": "SM" + sid[2:].upper()},
            {**params, "MessageSid": "SM" + "1" * 32},  # ids that disagree
            {**params, "SmsMessageSid": "SM" + "2" * 32},
            {**params, "AccountSid": "AC" + "9" * 32},  # another account's message
            {k: v for k, v in params.items() if k != "AccountSid"},
            {**params, "Veileder": "K1"},  # a field Twilio never sends
            {**params, "MediaUrl100": "https://example.com/x.jpg"},
            {"MessageSid": "SMshort", "AccountSid": SID, "From": U, "Body": "hei"},
        ]
        for form in reshaped:
            assert await fake.webhook(live.url, PUBLIC, "/twilio/sms", form) == 403, form
        # a status callback reshaped the same way
        status = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": SID,
                  "ErrorCode": "30003"}
        bad_status = {"MessageSid": sid + "MessageStatusdelivered", "AccountSid": SID,
                      "ErrorCode": "30003"}
        assert await fake.webhook(live.url, PUBLIC, "/twilio/status", bad_status) == 403
        assert await fake.webhook(live.url, PUBLIC, "/twilio/status",
                                  {**status, "Body": "x"}) == 403
        await live.settled()
        assert len(fake.texts_to(KARI)) == 1  # forwarded once
        assert await live.store.fetchall(
            "SELECT count(*) FROM inbound WHERE provider_id LIKE 'SM%'") == [(2,)]


async def test_a_number_that_swallowed_the_next_field_is_refused(tmp_path: Path) -> None:
    """Found by the attacker: `From=+4795555555FromCity…` with FromCity dropped signs the same
    as the real request. Arriving first, it made a user of the mangled number, the welcome
    went there, and the real message was then dropped as a duplicate: the young person got
    nothing. Now every field with a fixed form (numbers, counts, countries, service id) must
    have it, and a field named twice is a broken form (400)."""
    async with sms_live(tmp_path, seed) as (live, fake):
        sid = "SM" + "ef56" * 8
        real = {"AccountSid": SID, "Body": "hei", "From": "+4795555555", "FromCity": "GJOVIK",
                "MessageSid": sid, "NumMedia": "0", "SmsSid": sid, "To": "+4759440000"}
        sig = fake.sign(PUBLIC + "/twilio/sms", real)
        users = await live.store.fetchall("SELECT phone FROM users")
        shapes = []
        full = {**real, "ToCountry": "NO", "NumSegments": "1", "FromCountry": "NO",
                "FromState": "Innlandet"}
        for name, following in (("From", "FromCity"), ("To", "ToCountry"),
                                ("NumMedia", "NumSegments"), ("FromCountry", "FromState")):
            form = {k: v for k, v in full.items() if k in real or k in (name, following)}
            swallowed = {k: v for k, v in form.items() if k != following}
            swallowed[name] = form[name] + following + form[following]
            assert fake.sign(PUBLIC + "/twilio/sms", swallowed) == fake.sign(
                PUBLIC + "/twilio/sms", form)
            shapes.append(swallowed)
        shapes[0] = {k: v for k, v in real.items() if k != "FromCity"}
        shapes[0]["From"] = real["From"] + "FromCityGJOVIK"
        assert fake.sign(PUBLIC + "/twilio/sms", shapes[0]) == sig
        for form in shapes:
            assert await fake.webhook(live.url, PUBLIC, "/twilio/sms", form,
                                      signature=fake.sign(PUBLIC + "/twilio/sms", form)) == 403
        await live.settled()
        assert await live.store.fetchall("SELECT phone FROM users") == users
        assert fake.sent == []
        # a field named twice: a second id hiding behind the signature of the first
        async with aiohttp.ClientSession() as s, s.post(
                live.url + "/twilio/sms", data=[("MessageSid", "SM" + "cd34" * 8),
                                                *real.items()],
                headers={"X-Twilio-Signature": sig}) as r:
            assert r.status == 400
        # the real message still gets its answer
        assert await fake.webhook(live.url, PUBLIC, "/twilio/sms", real, signature=sig) == 200
        await live.settled()
        assert fake.texts_to("+4795555555")


async def test_an_identical_replay_after_the_log_is_purged_is_still_dropped(
        tmp_path: Path) -> None:
    """Finding 3, second half: the message log is purged after 90 days, and with it the
    provider ids; a replay of a captured webhook then worked again. The ids are kept as
    keyed hashes for 400 days (longer than any retry or replay), nothing else."""
    async with sms_live(tmp_path, seed) as (live, fake):
        status, sid = await fake.sms(live.url, PUBLIC, U, "HJELP")
        assert status == 200
        await live.settled()
        sent = len(fake.texts_to(U))
        async with live.store.transaction() as c:  # she is still in touch: a meeting ahead
            await c.execute("UPDATE meetings SET starts_at = ?",
                            ((live.clock() + timedelta(days=200)).isoformat(),))
        await live.store.purge(live.clock() + timedelta(days=91))
        assert await live.store.fetchall("SELECT count(*) FROM users WHERE phone = ?",
                                         (U,)) == [(1,)]
        assert await live.store.fetchall("SELECT count(*) FROM inbound") == [(0,)]
        keys = await live.store.fetchall("SELECT key FROM seen_keys")
        assert keys and all(sid.encode() not in bytes(k[0]) for k in keys)
        again, _ = await fake.sms(live.url, PUBLIC, U, "HJELP", sid=sid)
        assert again == 200
        await live.settled()
        assert len(fake.texts_to(U)) == sent
        await live.store.purge(live.clock() + timedelta(days=401))  # then it may go
        assert await live.store.fetchall("SELECT count(*) FROM seen_keys") == [(0,)]
