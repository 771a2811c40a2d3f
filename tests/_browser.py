"""Open a local HTML file in headless Chromium through the DevTools protocol (over a pipe, no port).

``render(path)`` loads the page, collects console errors, uncaught exceptions, failed loads and every
network request that is not ``file:``/``data:``, reads the size of every ``<img>`` and its position and
every link's target, and takes a full-page PNG screenshot. Used by tests/test_report.py.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--enable-logging=stderr", "--v=0",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # URLs other than file: and data:
    images: list[dict[str, Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # every <a href>, resolved against the page
    hover: list[str] = field(default_factory=list)  # the text of #hover-tip after each mouse move asked for
    text: str = ""
    screenshot: bytes = b""
    width: int = 0
    height: int = 0


class _Pipe:
    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int) -> None:
        self.proc, self.w, self.r = proc, write_fd, read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        want = self.next_id
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == want:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited (code {self.proc.poll()})")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)


def render(html_path: str | os.PathLike[str], *, width: int = 1280, timeout: float = 60.0,
           hover: list[tuple[int, float, float]] = ()) -> PageResult:
    """Load the page and report on it; ``hover`` moves the mouse to (image index, x fraction, y fraction)
    of the page's images, one after the other, and records the hover readout's text after each move."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found")
    url = Path(html_path).resolve().as_uri()
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="tm-chromium-") as profile:

        def fds() -> None:  # the DevTools pipe: the browser reads fd 3 and writes fd 4
            r, w = os.dup(to_child_r), os.dup(from_child_w)  # fresh numbers: neither can be 3 or 4 by then
            os.dup2(r, 3)
            os.dup2(w, 4)

        proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                                 f"--window-size={width},900", "about:blank"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                # dup2 leaves 3 and 4 inheritable; every other fd of ours is close-on-exec.
                                # (pass_fds=(3, 4) would fail with EBADF where the parent has no fd 3 or 4.)
                                preexec_fn=fds, close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        pipe = _Pipe(proc, to_child_w, from_child_r)
        try:
            return _drive(pipe, url, width, timeout, list(hover))
        finally:
            try:
                pipe.send("Browser.close", timeout=5)
            except Exception:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
            os.close(to_child_w)
            os.close(from_child_r)


def _drive(pipe: _Pipe, url: str, width: int, timeout: float, hover: list[tuple[int, float, float]]) -> PageResult:
    # the first answer waits for the browser to start: on two loaded cores that took over 30 s once
    target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=max(timeout, 120.0))["targetId"]
    session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.send(f"{domain}.enable", session=session)
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    pipe.events.clear()
    pipe.send("Page.navigate", {"url": url}, session=session)
    pipe.wait_event("Page.loadEventFired", timeout=timeout)
    # Let late console messages and image decodes arrive.
    pipe.send("Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 300))", "awaitPromise": True},
              session=session)
    res = PageResult()
    js = """JSON.stringify({
      images: Array.from(document.images).map(i => {const r = i.getBoundingClientRect();
        return {alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
                x: r.left + window.scrollX, y: r.top + window.scrollY, cw: r.width, ch: r.height};}),
      links: Array.from(document.links).map(a => a.href),
      text: document.body.innerText,
      height: Math.ceil(document.documentElement.scrollHeight)})"""
    info = json.loads(pipe.send("Runtime.evaluate", {"expression": js, "returnByValue": True},
                                session=session)["result"]["value"])
    res.images, res.links, res.text = info["images"], info["links"], info["text"]
    res.width, res.height = width, min(int(info["height"]), 16000)
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": res.height, "deviceScaleFactor": 1, "mobile": False}, session=session)
    for index, fx, fy in hover:
        img = res.images[index]
        pipe.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": img["x"] + fx * img["cw"],
                                               "y": img["y"] + fy * img["ch"]}, session=session)
        tip = pipe.send("Runtime.evaluate", {"expression": "(t => t && t.style.display !== 'none' ? t.innerText : '')"
                                                           "(document.getElementById('hover-tip'))",
                                             "returnByValue": True}, session=session)["result"].get("value")
        res.hover.append(tip or "")  # "" when no readout is shown
    shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session,
                     timeout=timeout)
    res.screenshot = base64.b64decode(shot["data"])
    for e in pipe.events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            res.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            res.console_errors.append(p.get("exceptionDetails", {}).get("text", "exception"))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            res.console_errors.append(p["entry"].get("text", ""))
        elif method == "Network.loadingFailed":
            res.console_errors.append(f"failed to load: {p.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            u = p.get("request", {}).get("url", "")
            if not u.startswith(("file:", "data:")):
                res.requests.append(u)
    return res
