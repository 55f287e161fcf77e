"""Headless Chromium driven over the DevTools protocol on a pipe, with the standard library
only: open a page, run JavaScript in it, collect its console messages, exceptions and
network requests, move the mouse, and take screenshots."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find() -> str | None:
    """The path of a Chromium on this machine, or None."""
    return next((p for p in map(shutil.which, NAMES) if p), None)


class BrowserError(Exception):
    """The browser did not start or stopped answering."""


class Browser:
    """One headless browser with one page (a tab); close() ends it."""

    def __init__(self, executable: str, width: int = 1200, height: int = 2400,
                 timeout: float = 60.0):
        self.timeout, self.events, self._next_id, self._buffer = timeout, [], 0, b""
        self._profile = tempfile.TemporaryDirectory(prefix="charrnn-chromium-")
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()

        def pipes_as_3_and_4():  # --remote-debugging-pipe reads fd 3 and writes fd 4
            # via copies above 10, so that neither pipe end is overwritten by the other's dup2
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [executable, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--mute-audio",
             "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=pipes_as_3_and_4, close_fds=False,
            start_new_session=True)  # its own process group, which close() ends whole
        os.close(to_browser)
        os.close(from_browser)
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target,
                                     flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable", session=True)
            self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                      height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ protocol

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._replies], [], [], max(0.0, left))
            if not ready:
                raise BrowserError("the browser did not answer in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise BrowserError("the browser closed its pipe: "
                                   + self.proc.stderr.read(2000).decode(errors="replace"))
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: bool = False, **params) -> dict:
        """Send one command and wait for its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        """The next event named ``method`` (one already received counts)."""
        deadline = time.monotonic() + self.timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read_message(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    # ------------------------------------------------------------------ the page

    def open(self, url: str) -> None:
        """Load ``url`` afresh and wait for its load event (its scripts have run). By way of
        about:blank, so that a URL differing from the last only by its #fragment loads
        again rather than just scrolling."""
        for step in ("about:blank", url):
            self.events.clear()
            self.call("Page.navigate", session=True, url=step)
            self.wait_for("Page.loadEventFired")

    def js(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def mouse_to(self, x: float, y: float) -> None:
        self.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)

    def screenshot(self, path, clip: dict | None = None) -> None:
        """A PNG of the viewport, or of ``clip`` ({x, y, width, height} in page pixels)."""
        params = {"format": "png", "captureBeyondViewport": clip is not None}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        data = self.call("Page.captureScreenshot", session=True, **params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and log entries of level error or
        warning (a Content-Security-Policy violation is one), since the page was opened."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in (
                    "error", "warning", "assert"):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] in (
                    "error", "warning"):
                out.append(f"log: {p['entry'].get('text')}")
        return out

    def requests(self) -> list[str]:
        """The URLs the page asked the network layer for since it was opened."""
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        for fd in (self._commands, self._replies):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # the browser's helpers (renderer, crash handler) can outlive it and still be writing
        # to the profile: end the group, then remove the profile once they have let it go
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.stderr.close()
        for _ in range(50):
            try:
                return self._profile.cleanup()
            except OSError:
                time.sleep(0.1)
        self._profile.cleanup()  # still held after 5 s: the error says by what
