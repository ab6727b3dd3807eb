"""Open a page in real headless Chromium and inspect it over the DevTools protocol.

Chromium runs with `--remote-debugging-pipe`: protocol messages are NUL-terminated JSON on file
descriptors 3 (to the browser) and 4 (from it), so no port, no websocket library and no race
on startup. Used by the report tests to check that the HTML loads without console errors and
that every plot is laid out with a nonzero size.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable on PATH, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    """What the page did while loading, and what it shows."""

    errors: list[str] = field(default_factory=list)
    """Console errors, uncaught exceptions and failed loads (log entries of level error)."""
    plots: list[dict[str, Any]] = field(default_factory=list)
    """Per `figure[data-plot] img`: name, laid-out width/height, natural size, loaded."""
    title: str = ""


class _Pipe:
    """A minimal DevTools client over Chromium's debugging pipe."""

    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int) -> None:
        self.proc, self.wfd, self.rfd = proc, to_browser, from_browser
        self.next_id, self.buffer, self.events = 0, b"", []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()})")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Send a command and return its result; events that arrive meanwhile are kept."""
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for an event (or take it if it already arrived)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))


_PLOTS_JS = """JSON.stringify([...document.querySelectorAll('figure[data-plot]')].map(f => {
  const img = f.querySelector('img'); const r = img ? img.getBoundingClientRect() : null;
  return {name: f.dataset.plot, width: r ? r.width : 0, height: r ? r.height : 0,
          natural_width: img ? img.naturalWidth : 0, natural_height: img ? img.naturalHeight : 0,
          complete: img ? img.complete : false};
}))"""


def _errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, exceptions and error log entries among DevTools events."""
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a)) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            out.append("exception: " + str(p.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
    return out


def inspect_page(path: Path, screenshot: Path | None = None, width: int = 1280) -> PageReport:
    """Load `path` in headless Chromium; report errors and plot sizes; save a full-page PNG."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no chromium on PATH")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    # the browser's ends, moved to fds >= 5 so that placing them on 3 and 4 clobbers neither
    child_r, child_w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5) for fd in (to_r, from_w))
    for fd in (to_r, from_w):
        os.close(fd)
    profile = tempfile.mkdtemp(prefix="skindeep-chromium-")
    args = [
        exe,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--remote-debugging-pipe",
        f"--user-data-dir={profile}",
        "about:blank",
    ]

    def child_fds() -> None:  # the browser reads fd 3 and writes fd 4 (dup2 clears CLOEXEC)
        os.dup2(child_r, 3)
        os.dup2(child_w, 4)

    proc = subprocess.Popen(
        args,
        preexec_fn=child_fds,
        close_fds=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(child_r)
    os.close(child_w)
    cdp = _Pipe(proc, to_w, from_r)
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        cdp.events.clear()
        cdp.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        cdp.wait_event("Page.loadEventFired", timeout=60)
        value = cdp.send(
            "Runtime.evaluate", {"expression": _PLOTS_JS, "returnByValue": True}, session=session
        )["result"]["value"]
        title = cdp.send(
            "Runtime.evaluate",
            {"expression": "document.title", "returnByValue": True},
            session=session,
        )["result"]["value"]
        report = PageReport(plots=json.loads(value), title=title)
        if screenshot is not None:
            size = cdp.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            shot = cdp.send(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1},
                },
                session=session,
                timeout=60,
            )
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        report.errors = _errors(cdp.events)
        with contextlib.suppress(RuntimeError, TimeoutError):
            cdp.send("Browser.close", timeout=10)
        return report
    finally:
        os.close(to_w)
        os.close(from_r)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
