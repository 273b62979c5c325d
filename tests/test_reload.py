"""A coordinator's edit reaches the running bot by a reload (SIGHUP), never half-way: checked
first, swapped in one step, the old flows kept when the new ones have errors."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from bot.app import server
from bot.app.demo import DEMO_USER_PHONE
from bot.service.pipeline import FlowRequest, Inbound
from bot.store import Store

from .conftest import NOW, ROOT, own_flows, said
from .fakes import FakeTwilio
from .livekit import AUTH, PUBLIC, SID, sms_live
from .ownflows import SURVEY

U = DEMO_USER_PHONE


async def seed_user(store: Store) -> None:
    await store.add_user(phone=U, channel="sms", first_name="Sara", last_name=None,
                         veileder_id=None, now=NOW)
    async with store.transaction() as c:
        await c.execute("UPDATE users SET consent = 1")


async def healthz(url: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as s, s.get(url + "/healthz") as r:
        return dict(await r.json())


async def answer(live: server.Service, text: str, n: list[int]) -> list[str]:
    n[0] += 1
    h = await live.pipeline.submit(Inbound("sms", U, text, f"r{n[0]}"))
    return [r.text for r in h.replies]


async def test_reload_swaps_good_flows_and_keeps_the_old_ones_when_broken(
        tmp_path: Path) -> None:
    flows = own_flows(tmp_path / "flows", {"survey.yaml": SURVEY})
    survey = flows / "survey.yaml"
    async with sms_live(tmp_path, seed_user, VEIVIS_FLOWS=str(flows)) as (live, _):
        svc, n = live.svc, [0]
        first = (await healthz(live.url))["flows"]
        assert len(first) == 12
        h = await svc.pipeline.submit(FlowRequest("sms", U, "survey"))
        assert [r.text for r in h.replies] == ["Vil du svare på 3 spørsmål?"]
        assert await answer(svc, "ja", n) == ["1 av 3. Var det bra?"]

        # a broken edit: refused, the running flows stay, the user goes on undisturbed
        survey.write_text(SURVEY.replace("type: scale", "type: skala"), encoding="utf-8")
        assert await server.reload_flows(svc) is False
        assert (await healthz(live.url))["flows"] == first
        assert await answer(svc, "ja", n) == ["2 av 3. Hvor bra?"]

        # a good edit: a question reworded and one added; the user at question 2 goes on at
        # the same step, in the new wording and numbering
        survey.write_text(SURVEY.replace("Var det bra?", "Var møtet bra?").replace(
            "  - id: c\n", "  - id: ny\n    ask: \"{nr} av {antall}. Fikk du hjelp?\"\n"
            "    type: yesno\n    save: hjelp\n  - id: c\n"), encoding="utf-8")
        assert await server.reload_flows(svc) is True
        second = (await healthz(live.url))["flows"]
        assert second != first
        assert await answer(svc, "kanskje", n) == [said(svc.flows, "system.reask_scale",
                                                         min="1", max="5")]
        assert await answer(svc, "4", n) == ["3 av 4. Fikk du hjelp?"]

        # the step the user is at is removed: a plain note, out of the flow, nothing lost
        survey.write_text(SURVEY.replace("Var det bra?", "Var møtet bra?"), encoding="utf-8")
        assert await server.reload_flows(svc) is True
        got = await answer(svc, "ja", n)
        assert len(got) == 1 and svc.flows.texts["flow_changed"].split()[0] in got[0]


async def test_reload_of_a_folder_that_is_gone_keeps_the_flows(tmp_path: Path) -> None:
    flows = own_flows(tmp_path / "flows", {"survey.yaml": SURVEY})
    async with sms_live(tmp_path, seed_user, VEIVIS_FLOWS=str(flows)) as (live, _):
        before = live.svc.flows
        for f in flows.iterdir():
            f.unlink()
        assert await server.reload_flows(live.svc) is False
        assert live.svc.flows is before and live.svc.pipeline.flows is before


async def _stderr_until(proc: asyncio.subprocess.Process, needle: str,
                        timeout: float = 30) -> list[str]:
    """Lines of the process's log until one holds `needle`."""
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(needle in line for line in lines):
        left = deadline - time.monotonic()
        assert left > 0, "\n".join(lines)
        line = await asyncio.wait_for(proc.stderr.readline(), left)
        assert line, "\n".join(lines)
        lines.append(line.decode())
    return lines


async def test_sighup_to_veivis_run_reloads_the_flows(tmp_path: Path) -> None:
    """As an operator does it: `systemctl reload veivis` sends SIGHUP to `veivis run`."""
    flows = own_flows(tmp_path / "flows", {"survey.yaml": SURVEY})
    async with FakeTwilio(SID, AUTH) as fake:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TWILIO_", "TELEGRAM_", "VEIVIS_"))}
        env.update({"VEIVIS_DB": str(tmp_path / "v.db"), "VEIVIS_PORT": str(port),
                    "VEIVIS_PUBLIC_URL": PUBLIC, "TWILIO_ACCOUNT_SID": SID,
                    "TWILIO_AUTH_TOKEN": AUTH, "TWILIO_FROM": "+4759440000",
                    "TWILIO_API_URL": fake.url, "VEIVIS_FLOWS": str(flows)})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=str(ROOT),
            stderr=asyncio.subprocess.PIPE)
        try:
            started = await _stderr_until(proc, "veivis is running")
            url = f"http://127.0.0.1:{port}"
            first = (await healthz(url))["flows"]
            assert f"flytene: versjon {first}" in started[-1]
            (flows / "survey.yaml").write_text("id: survey\ntitle: [\n", encoding="utf-8")
            proc.send_signal(signal.SIGHUP)
            log = await _stderr_until(proc, "ble ikke lastet på nytt")
            assert any("survey.yaml:2: feil:" in line for line in log)
            assert f"versjon {first} er fortsatt i bruk" in log[-1]
            assert (await healthz(url))["flows"] == first
            (flows / "survey.yaml").write_text(SURVEY.replace("Takk.", "Tusen takk."),
                                               encoding="utf-8")
            proc.send_signal(signal.SIGHUP)
            log = await _stderr_until(proc, "er lastet på nytt")
            second = (await healthz(url))["flows"]
            assert second != first and f"versjon {second} er i bruk (var {first})" in log[-1]
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        assert proc.returncode == 0
