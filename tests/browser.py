"""A real headless Chromium, driven over the DevTools protocol (a WebSocket on 127.0.0.1) with
aiohttp: open a page, collect console errors and uncaught exceptions, read values, screenshot.

No extra package: the protocol is plain JSON. Chromium runs with networking that reaches
nothing outside (the page under test is a local file that loads nothing anyway).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    env = os.environ.get("VEIVIS_CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageResult:
    errors: list[str] = field(default_factory=list)  # console errors and exceptions
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    values: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""


async def render(binary: str, url: str, *, width: int = 390, height: int = 844,
                 evaluate: dict[str, str] | None = None, timeout: float = 60) -> PageResult:
    """Open `url` in a phone-sized viewport; run the `evaluate` expressions after load; take a
    full-page screenshot."""
    profile = tempfile.mkdtemp(prefix="veivis-chromium-")
    proc = await asyncio.create_subprocess_exec(
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        return await asyncio.wait_for(_drive(proc, url, width, height, evaluate or {}), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _devtools_port(proc: asyncio.subprocess.Process) -> int:
    assert proc.stderr is not None
    while True:
        line = await proc.stderr.readline()
        if not line:
            raise RuntimeError("chromium exited before DevTools was listening")
        m = re.search(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        if m:
            return int(m.group(1))


async def _drive(proc: asyncio.subprocess.Process, url: str, width: int, height: int,
                 evaluate: dict[str, str]) -> PageResult:
    port = await _devtools_port(proc)
    out = PageResult()
    ids = itertools.count(1)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            pages = [t for t in await r.json() if t.get("type") == "page"]
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
            loaded = asyncio.get_running_loop().create_future()

            async def reader() -> None:
                async for msg in ws:
                    data = json.loads(msg.data)
                    if "id" in data and data["id"] in pending:
                        pending.pop(data["id"]).set_result(data)
                        continue
                    method, params = data.get("method"), data.get("params", {})
                    if method == "Runtime.exceptionThrown":
                        out.errors.append(json.dumps(params["exceptionDetails"])[:500])
                    elif method == "Runtime.consoleAPICalled" and params["type"] in (
                            "error", "assert"):
                        out.errors.append(json.dumps(params["args"])[:500])
                    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                        out.errors.append(params["entry"].get("text", "")[:500])
                    elif method == "Network.requestWillBeSent":
                        out.requests.append(params["request"]["url"])
                    elif method == "Page.loadEventFired" and not loaded.done():
                        loaded.set_result(True)

            async def call(method: str, **params: Any) -> dict[str, Any]:
                i = next(ids)
                fut = asyncio.get_running_loop().create_future()
                pending[i] = fut
                await ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
                res = await fut
                if "error" in res:
                    raise RuntimeError(f"{method}: {res['error']}")
                return dict(res.get("result", {}))

            task = asyncio.create_task(reader())
            try:
                for domain in ("Runtime", "Log", "Page", "Network"):
                    await call(f"{domain}.enable")
                await call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                           deviceScaleFactor=1, mobile=True)
                await call("Page.navigate", url=url)
                await loaded
                for name, expr in evaluate.items():
                    res = await call("Runtime.evaluate", expression=expr, returnByValue=True)
                    out.values[name] = res["result"].get("value")
                shot = await call("Page.captureScreenshot", format="png",
                                  captureBeyondViewport=True)
                out.screenshot = base64.b64decode(shot["data"])
            finally:
                task.cancel()
    return out


# What sticks out, measured as a person sees it: the right edge of every element and every piece
# of text (a long word can overflow the box that holds it), and how far any text in a chart
# goes past the chart (an SVG clips it). `document.documentElement.scrollWidth -
# window.innerWidth` is no test: a phone browser zooms out to fit a page that is too wide, and
# then innerWidth grows with it.
LAYOUT = """(() => {
  const out = {right: 0, left: 0, widest: '', clipped: 0, clippedText: ''};
  const note = (r, what) => {
    if (!r.width) return;
    if (r.right > out.right) { out.right = r.right; out.widest = what; }
    out.left = Math.min(out.left, r.left);
  };
  for (const e of document.querySelectorAll('body *'))
    note(e.getBoundingClientRect(), '<' + e.tagName.toLowerCase() + '>');
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const range = document.createRange();
    range.selectNodeContents(walk.currentNode);
    note(range.getBoundingClientRect(), JSON.stringify(walk.currentNode.textContent.slice(0, 60)));
  }
  for (const t of document.querySelectorAll('svg text')) {
    const box = t.closest('svg').getBoundingClientRect(), r = t.getBoundingClientRect();
    const over = Math.max(r.right - box.right, box.left - r.left);
    if (over > out.clipped) { out.clipped = over; out.clippedText = t.textContent; }
  }
  return out;
})()"""


def artifact_dir() -> Path:
    """Where tests leave files for people to look at (CI keeps them)."""
    p = Path(os.environ.get("VEIVIS_ARTIFACTS", Path(__file__).resolve().parent.parent /
                            "test-artifacts"))
    p.mkdir(parents=True, exist_ok=True)
    return p
