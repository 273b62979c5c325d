"""Anonymous rows are read back in no order that follows the answers (the attacks on the
files, backups, WAL and logs are in test_relink.py)."""

from __future__ import annotations

from bot.engine.model import FlowSet, Kind
from bot.service.pipeline import FlowRequest, Inbound, Pipeline

from .conftest import ManualClock, answers, open_backend, said_yes

FEEDBACK = "Kurset ligger for langt unna og bussen går sjelden"
COMMENT = "Hun var grei men kom sent"


async def test_row_order_does_not_follow_the_order_of_answers(
        backend: str, flows: FlowSet, clock: ManualClock) -> None:
    """Rows are stored and read back in random id order, not in the order users answered."""
    store = await open_backend(backend)
    feedback = flows.flows["feedback"]
    async with Pipeline(store, flows, clock) as p:
        for n in range(40):
            phone = f"+4790000{n:03d}"
            await said_yes(store, phone, "sms")
            await p.submit(FlowRequest("sms", phone, "feedback"))
            for i, (_, t) in enumerate(answers(feedback, f"melding nummer {n:02d}")):
                await p.submit(Inbound("sms", phone, t, f"{n}-{i}"))
    asked = next(st.save for st, _ in answers(feedback) if st.kind is Kind.TEXT)
    rows = await store.fetchall("SELECT value FROM anonymous_answers WHERE question = ?",
                                (asked,))
    order = [int(v.split()[-1]) for (v,) in rows]
    assert sorted(order) == list(range(40))
    assert order != list(range(40))  # 1 chance in 40! that random ids keep the order
    await store.close()


def test_keyed_hashes_are_the_ones_databases_already_hold() -> None:
    """The seal's keyed hash (kept for dedupe and the seal key check) is HMAC-SHA256 of the
    derived key, cut to 16 bytes, as it always was: a database made before still matches."""
    import hashlib
    import hmac

    from bot.store.seal import Sealer

    key = bytes(range(32))
    mac_key = hashlib.sha256(b"veivis-mac" + key).digest()
    sealer = Sealer(key)
    for parts in (("seen", "sms", "SM123"), ("seal key check",), ("a", "ø", "")):
        want = hmac.new(mac_key, "\x1f".join(parts).encode(), hashlib.sha256).digest()[:16]
        assert sealer.mac(*parts) == want
        assert sealer.mac(*parts) == want  # and again (the keyed state is copied, not used up)
