"""Bad bytes from anyone on the internet: every route answers 4xx, changes nothing and logs
no error or traceback. The routes are read from the running app, so a new route is attacked
too without anyone remembering to add it here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Store

from .fakes import FakeTelegram, FakeTwilio
from .livekit import AUTH, SECRET, SID, TOKEN, Live, RunningClock, settings, start_live

FORM = "application/x-www-form-urlencoded"

# (content type, body): what a careless or hostile client sends
BODIES: list[tuple[str, bytes]] = [
    (FORM, b"MessageSid=SM1&From=%2B4791234567&Body=\xff\xfe\xfd"),  # raw invalid UTF-8
    (FORM, b"MessageSid=SM1&From=%2B4791234567&Body=%FF%FE%C3%28"),  # escaped invalid UTF-8
    (FORM, b"\xc3\x28=\xa0\xa1"),
    (FORM, b"MessageSid=SM1&&&===&From"),
    (FORM + "; charset=klingon-1", b"Body=hei"),
    (FORM + "; charset=utf-16", b"\xff\xfeB\x00o\x00"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data\r\n\r\n\xff"),
    ("multipart/form-data", b"garbage"),
    ("application/json", b"{\"update_id\": 1, \"message\": \xff}"),
    ("application/json", b"{not json"),
    ("application/json", b"[]"),
    ("application/json", b"\"update_id\""),
    ("application/json", b"{\"update_id\": \"x\"}"),
    ("application/json", b"{\"update_id\": 1, \"message\": \"hei\"}"),
    ("application/json", b"{\"update_id\": 1, \"message\": {\"chat\": 5, \"date\": []}}"),
    ("application/json", b"{\"update_id\": 1, \"my_chat_member\": {\"chat\": {}}}"),
    ("application/json", b"{\"update_id\": 1e999}"),
    ("application/json", b"[" * 100_000),
    ("text/plain", b"\x00\x01\x02"),
    ("", b""),
]


@pytest.fixture
async def both(tmp_path: Path) -> AsyncIterator[Live]:
    """The bot with SMS and Telegram (webhook mode) against fake providers."""
    async with FakeTwilio(SID, AUTH) as tw, FakeTelegram(TOKEN) as tg:
        s = settings(tmp_path, TWILIO_ACCOUNT_SID=SID, TWILIO_AUTH_TOKEN=AUTH,
                     TWILIO_FROM="+4759440000", TWILIO_API_URL=tw.url, TELEGRAM_BOT_TOKEN=TOKEN,
                     TELEGRAM_API_URL=tg.url, TELEGRAM_MODE="webhook",
                     TELEGRAM_WEBHOOK_SECRET=SECRET)
        live = await start_live(s, RunningClock())
        try:
            yield live
        finally:
            await live.close()


async def raw(port: int, request: bytes) -> int:
    """Send bytes as they are (no client library cleans them up); the status code, or 0 if
    the server closed the connection without an answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(line.split()[1]) if line.startswith(b"HTTP/1.") else 0


def request(method: str, path: bytes, ctype: str, body: bytes,
            extra: dict[str, bytes] | None = None) -> bytes:
    head = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1",
            b"Connection: close", b"Content-Length: " + str(len(body)).encode()]
    if ctype:
        head.append(b"Content-Type: " + ctype.encode())
    for k, v in (extra or {}).items():
        head.append(k.encode() + b": " + v)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def nothing_written(store: Store) -> None:
    for table in ("inbound", "outbox", "users"):
        rows = await store.fetchall(f"SELECT COUNT(*) FROM {table}")
        assert rows[0][0] == 0, table


def no_errors(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]
    assert "Traceback" not in caplog.text


async def test_every_route_answers_bad_bytes_with_4xx_and_no_traceback(
        both: Live, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = both.running.runner.app
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    assert {("POST", "/twilio/sms"), ("POST", "/twilio/status"), ("POST", "/telegram"),
            ("GET", "/healthz"), ("GET", "/readyz")} <= routes
    tried = 0
    for method, path in sorted(routes):
        # no secret, a secret of bad bytes, and the right one (past Telegram's check)
        for secret in (None, b"\xff\xfe", SECRET.encode()):
            extra = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
            extra["X-Twilio-Signature"] = b"\xff\xfebad"
            for ctype, body in BODIES:
                for p in (path.encode(), path.encode() + b"?row=%FF%FE&x=\xff"):
                    status = await raw(both.running.port, request(method, p, ctype, body,
                                                                  extra))
                    tried += 1
                    if method == "GET":
                        assert status in (200, 503, 400), (path, ctype, body[:40])
                    else:
                        assert 400 <= status < 500, (status, path, ctype, body[:40])
    assert tried > 300
    await nothing_written(both.store)
    no_errors(caplog)


async def test_twilio_routes_check_the_bytes_before_the_signature(
        both: Live, caplog: pytest.LogCaptureFixture) -> None:
    """Invalid UTF-8 is refused as a bad request, not decoded with guesses and then signed."""
    for path in (b"/twilio/sms", b"/twilio/status"):
        for body in (b"Body=\xff", b"Body=%FF"):
            status = await raw(both.running.port, request("POST", path, FORM, body))
            assert status == 400
    await nothing_written(both.store)
    no_errors(caplog)


async def test_a_body_too_large_is_refused(both: Live,
                                          caplog: pytest.LogCaptureFixture) -> None:
    big = b"Body=" + b"a" * (300 * 1024)
    secret = {"X-Telegram-Bot-Api-Secret-Token": SECRET.encode()}
    for path, ctype in ((b"/twilio/sms", FORM), (b"/telegram", "application/json")):
        assert await raw(both.running.port, request("POST", path, ctype, big, secret)) == 413
    no_errors(caplog)


async def test_a_broken_chunked_body_is_refused(both: Live,
                                                caplog: pytest.LogCaptureFixture) -> None:
    head = (b"Host: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
            b"X-Telegram-Bot-Api-Secret-Token: " + SECRET.encode() + b"\r\n")
    for path, ctype in ((b"/twilio/sms", FORM), (b"/telegram", "application/json")):
        for chunks in (b"zz\r\nBody=hei\r\n0\r\n\r\n", b"5\r\nBody=hei-too-long\r\n0\r\n\r\n"):
            req = (b"POST " + path + b" HTTP/1.1\r\n" + head + b"Content-Type: "
                   + ctype.encode() + b"\r\n\r\n" + chunks)
            status = await raw(both.running.port, req)
            assert status in (0, 400), status  # or the connection is closed
    await nothing_written(both.store)
    no_errors(caplog)
