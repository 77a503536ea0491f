"""Drive a system Chromium headless over the DevTools protocol pipe (standard library only).

Used by the run page's browser test and by `docs/make_run_page_figure.py`: open a `file://` page,
evaluate JavaScript, click, take screenshots, and collect every console error, uncaught exception
and failed load. Chromium reads protocol messages on fd 3 and writes on fd 4 (`--remote-debugging-pipe`,
what Playwright and Puppeteer use), each a JSON object ended by a NUL byte; no websocket client and
no browser download are needed, only the distribution's `chromium` package.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("install a Chromium: `apt-get update && apt-get install -y chromium` (Debian/Ubuntu; .ci/run does this), "
                "or set CHROMIUM=/path/to/chrome")
# Software WebGL (SwiftShader) where there is no GPU, as the shared client checks run it.
FLAGS = ("--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
         "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--use-angle=swiftshader", "--use-gl=angle",
         "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist")


class BrowserError(RuntimeError):
    """Chromium is missing, exited, timed out, or a command failed."""


def find_chromium() -> str | None:
    """`$CHROMIUM`, or the first Chromium/Chrome on PATH; None when there is none."""
    given = os.environ.get("CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLog:
    """What a page said while it ran: console errors, uncaught exceptions, failed loads (Log domain)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _high_fd(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)  # above 3 and 4, not inherited as is


class Chromium:
    """One headless Chromium with one page. Use as a context manager; every wait is bounded by `timeout`."""

    def __init__(self, executable: str | None = None, *, width: int = 1280, height: int = 900,
                 timeout: float = 120.0) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError(f"no Chromium found: {INSTALL_HINT}")
        self.timeout = timeout
        self.log = PageLog()
        self._profile = tempfile.mkdtemp(prefix="graphflow-chromium-")
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._start(exe)
        self.session = self._open_page(width, height)

    def _start(self, exe: str) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        ends = (_high_fd(to_child_r), _high_fd(from_child_w))
        for fd in (to_child_r, from_child_w):
            os.close(fd)

        def child_fds() -> None:  # the protocol's fixed descriptors: 3 = commands in, 4 = replies out
            os.dup2(ends[0], 3)
            os.dup2(ends[1], 4)

        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=child_fds, close_fds=False)
        for fd in ends:
            os.close(fd)
        self._out = os.fdopen(to_child_w, "wb", buffering=0)
        self._in = os.fdopen(from_child_r, "rb", buffering=0)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self._in.read(1 << 16)
            if not chunk:
                self._events.put(None)
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            with self._lock:
                waiter = self._replies.pop(message["id"], None)
            if waiter is not None:
                waiter.put(message)
            return
        self._note(message)
        self._events.put(message)

    def _note(self, event: dict[str, Any]) -> None:
        """Console errors, exceptions and failed loads of the page, into `self.log`."""
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            if params.get("type") in ("error", "assert"):
                self.log.errors.append(f"console.{params['type']}: {text}")
            elif params.get("type") == "warning":
                self.log.warnings.append(text)
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            self.log.errors.append(f"exception: {exc.get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.log.errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one protocol command and wait for its reply (raises BrowserError on error or timeout)."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            waiter: queue.Queue = queue.Queue()
            self._replies[ident] = waiter
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        try:
            self._out.write(json.dumps(message).encode() + b"\0")
        except BrokenPipeError as exc:
            raise BrowserError(f"Chromium exited (code {self.proc.poll()})") from exc
        try:
            reply = waiter.get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise BrowserError(f"no reply to {method} within {timeout or self.timeout:.0f} s") from None
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def _open_page(self, width: int, height: int) -> str:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(domain, session=session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        return session

    def page(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any]:
        return self.call(method, params, session=self.session, timeout=timeout)

    def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        while not self._events.empty():
            self._events.get_nowait()
        self.page("Page.navigate", {"url": url})
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                event = self._events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event is None:
                raise BrowserError("Chromium exited while loading the page")
            if event.get("method") == "Page.loadEventFired":
                return
        raise BrowserError(f"{url} did not load within {self.timeout:.0f} s")

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """The JSON value of a JavaScript expression (promises awaited)."""
        result = self.page("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True,
                                                "timeout": int(1000 * (timeout or self.timeout))},
                           timeout=(timeout or self.timeout) + 5)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"JavaScript error: {details.get('exception', {}).get('description') or details['text']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None, poll: float = 0.25) -> Any:
        """Poll a JavaScript expression until it is truthy; its value (BrowserError on timeout)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(poll)
        raise BrowserError(f"still false after {timeout or self.timeout:.0f} s: {expression}")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the first element matching `selector`."""
        box = self.evaluate(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e) return null; e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        if box is None:
            raise BrowserError(f"nothing matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    def screenshot(self, clip: tuple[float, float, float, float] | None = None, full_page: bool = False) -> bytes:
        """PNG bytes of the viewport, of `clip` (x, y, width, height in CSS px of the viewport, as
        getBoundingClientRect gives them), or of the whole page."""
        params: dict[str, Any] = {"format": "png"}
        metrics = self.page("Page.getLayoutMetrics")
        if full_page:
            size = metrics["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        elif clip is not None:  # the protocol's clip is in page coordinates: add the scroll offset
            view = metrics["cssVisualViewport"]
            params["clip"] = {"x": clip[0] + view["pageX"], "y": clip[1] + view["pageY"], "width": clip[2],
                              "height": clip[3], "scale": 1}
        return base64.b64decode(self.page("Page.captureScreenshot", params)["data"])

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except BrowserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
