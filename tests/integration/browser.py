"""Open a local HTML file in a real headless Chromium and report what a user would see: console errors, the requests
the page made, its images, its text and screenshots.

Only the standard library and pillow: the Chrome DevTools Protocol spoken over `--remote-debugging-pipe` (JSON
messages, each ended by a NUL byte; Chromium reads them from its fd 3 and writes its own to its fd 4). Chromium is kept
off the network: every host name resolves to nothing and every connection goes to a proxy on a closed local port, so a
request the page makes fails at once, yet is still seen by the Network domain.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageStat

HEIGHT = 800  # the window's height before the page is measured
MAX_HEIGHT = 16000  # the full-page screenshot's cap, in CSS pixels
SETTLE = 0.5  # seconds given to the page after its load event

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-pipe",
    "--hide-scrollbars",
    "--mute-audio",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--no-pings",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,InterestFeedContentSuggestions,"
    "CertificateTransparencyComponentUpdater,AutofillServerCommunication,DnsOverHttps",
    # Nothing leaves the machine: no name resolves, and every connection goes to a proxy on the discard port, which is
    # closed, so requests fail at once (while the Network domain still sees them).
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
]

# Puts the pipe ends it is given at fds 3 and 4, then becomes Chromium. (A preexec_fn doing the same could clobber
# subprocess's own error pipe, should that sit at fd 3 or 4.)
_LAUNCHER = (
    "import fcntl, os, sys\n"
    "a, b = int(sys.argv[1]), int(sys.argv[2])\n"
    "r, w = fcntl.fcntl(a, fcntl.F_DUPFD, 10), fcntl.fcntl(b, fcntl.F_DUPFD, 10)\n"
    "os.close(a)\n"
    "os.close(b)\n"
    "os.dup2(r, 3)\n"
    "os.dup2(w, 4)\n"
    "os.close(r)\n"
    "os.close(w)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)

_IMAGES_JS = """(() => Array.from(document.images, img => {
    const r = img.getBoundingClientRect();
    return {
        alt: img.getAttribute("alt"),
        src_prefix: (img.currentSrc || img.src || "").slice(0, 40),
        complete: img.complete,
        naturalWidth: img.naturalWidth,
        naturalHeight: img.naturalHeight,
        box: {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height},
    };
}))()"""

_FRAMES_JS = "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(true))))"


@dataclass
class Loaded:
    """What a user would see of a page, and what the page did."""

    console_errors: list[str]  # console.error/warn/assert, uncaught exceptions, the browser's own error log entries
    requests: list[str]  # every URL requested other than the page itself and data:/blob: URLs, in order, once each
    images: list[dict]  # per <img>: alt (None when absent), src_prefix, complete, naturalWidth, naturalHeight
    text: str  # document.body.innerText
    screenshot: bytes  # PNG of the whole page (at most MAX_HEIGHT CSS pixels high)
    image_shots: list[bytes]  # a PNG of each <img>'s box on the page, in the order of `images`
    load_fired: bool = True  # False when the load event had not come within the time given to it


class BrowserError(RuntimeError):
    """Chromium did not start, went away, or refused a command; the message ends with the tail of its stderr."""


class BrowserTimeout(BrowserError, TimeoutError):
    """Chromium did not answer in time."""


def chromium() -> str | None:
    """The browser's path (chromium or chromium-browser on PATH), None when there is none."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def blank(png: bytes, tolerance: float = 2.0) -> bool:
    """True when the image is (nearly) one colour: a single colour, or every channel's standard deviation under
    `tolerance` grey levels (so a thin line on a white figure still counts as something)."""
    img = Image.open(io.BytesIO(png))
    img.load()
    if img.width == 0 or img.height == 0:
        return True
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    img = img.convert("RGB")
    if img.getcolors(maxcolors=1) is not None:
        return True
    return max(ImageStat.Stat(img).stddev) < tolerance


class _Browser:
    """One headless Chromium, spoken to over the DevTools pipe. A context manager: on exit, the browser and its
    children are gone and its profile is removed."""

    def __init__(self, exe: str, width: int, deadline: float):
        self.exe = exe
        self.width = width
        self.deadline = deadline
        self.events: list[dict] = []
        self._replies: dict[int, dict] = {}
        self._next_id = 0
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._eof = False
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="edgeorch-browser-"))
        self._log_path = self._tmp / "stderr.log"
        self._rfd = self._wfd = -1

    def __enter__(self) -> _Browser:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        to_child_r, self._wfd = os.pipe()
        self._rfd, from_child_w = os.pipe()
        profile = self._tmp / "profile"
        profile.mkdir()
        argv = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _LAUNCHER,
            str(to_child_r),
            str(from_child_w),
            self.exe,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={self.width},{HEIGHT}",
            "about:blank",
        ]
        try:
            with open(self._log_path, "wb") as log:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(to_child_r, from_child_w),
                    start_new_session=True,
                    cwd=self._tmp,
                )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._reader = threading.Thread(target=self._read, name="chromium-devtools", daemon=True)
        self._reader.start()

    # --- the pipe --------------------------------------------------------------------------------------------------

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                chunk = os.read(self._rfd, 1 << 20)
                if not chunk:
                    break
                buf += chunk
                *messages, buf = buf.split(b"\0")
                for raw in messages:
                    if raw:
                        self._dispatch(json.loads(raw))
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _dispatch(self, msg: dict) -> None:
        if msg.get("method") == "Page.javascriptDialogOpening":
            # An alert() or confirm() would block the page (and every later command) until answered.
            self.post("Page.handleJavaScriptDialog", {"accept": True}, msg.get("sessionId"))
        with self._cond:
            if "id" in msg:
                self._replies[msg["id"]] = msg
            else:
                self.events.append(msg)
            self._cond.notify_all()

    def post(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        """Send a command without waiting for its answer; its id."""
        with self._write_lock:
            self._next_id += 1
            msg: dict = {"id": self._next_id, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            data = json.dumps(msg).encode() + b"\0"
            try:
                while data:
                    data = data[os.write(self._wfd, data) :]
            except OSError as e:
                raise BrowserError(f"cannot send {method} to Chromium ({e}){self.tail()}") from e
            return msg["id"]

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and wait (until the deadline) for its result."""
        ident = self.post(method, params, session)
        with self._cond:
            while ident not in self._replies:
                left = self.deadline - time.monotonic()
                if self._eof:
                    status = self._proc.poll() if self._proc else None
                    gone = f"Chromium went away (exit status {status}) before answering {method}"
                    raise BrowserError(gone + self.tail())
                if left <= 0:
                    raise BrowserTimeout(f"Chromium did not answer {method} in time{self.tail()}")
                self._cond.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise BrowserError(f"{method} failed: {reply['error']}{self.tail()}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, since: int, until: float) -> dict | None:
        """The first event `method` of `session` from index `since` on, waiting for it until `until`; None if none."""
        with self._cond:
            while True:
                for event in self.events[since:]:
                    if event.get("method") == method and event.get("sessionId") == session:
                        return event
                since = len(self.events)
                left = until - time.monotonic()
                if left <= 0 or self._eof:
                    return None
                self._cond.wait(left)

    def tail(self, chars: int = 3000) -> str:
        try:
            text = self._log_path.read_bytes()[-chars:].decode(errors="replace")
        except OSError:
            return ""
        return f"\n--- chromium stderr (tail) ---\n{text}" if text.strip() else ""

    # --- the end ---------------------------------------------------------------------------------------------------

    def close(self) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None and not self._eof:
                try:
                    self.post("Browser.close")
                except BrowserError:
                    pass
                try:
                    proc.wait(3)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the renderers and helpers too, whether or not it closed
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self._wfd >= 0:
            os.close(self._wfd)
            self._wfd = -1
        if self._reader is not None:
            self._reader.join(5)
        if self._rfd >= 0 and (self._reader is None or not self._reader.is_alive()):
            os.close(self._rfd)  # (left open rather than pulled from under a reader still blocked on it)
            self._rfd = -1
        shutil.rmtree(self._tmp, ignore_errors=True)


def _describe(obj: dict) -> str:
    """A console argument (a Runtime.RemoteObject) as text."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    return obj.get("description") or obj.get("unserializableValue") or obj.get("type", "")


def _console_errors(events: list[dict], session: str) -> list[str]:
    errors = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            errors.append(f"console.{params['type']}: " + " ".join(_describe(a) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = (details.get("exception") or {}).get("description") or ""
            errors.append(f"exception: {details.get('text', '')} {description}".strip())
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            errors.append(f"log ({entry.get('source', '')}): {entry.get('text', '')}{where}")
        elif method == "Page.javascriptDialogOpening":
            errors.append(f"dialog ({params.get('type', '')}): {params.get('message', '')}")
    return errors


def _requests(events: list[dict], session: str, page_url: str) -> list[str]:
    urls: dict[str, None] = {}
    ids: dict[str, str] = {}
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            ids[params.get("requestId", "")] = url
        elif method == "Network.loadingFailed":
            url = ids.get(params.get("requestId", ""), "")
        else:
            continue
        if url and url.split("#")[0] != page_url and not url.startswith(("data:", "blob:", "about:")):
            urls[url] = None
    return list(urls)


def _png(result: dict) -> bytes:
    return base64.b64decode(result["data"])


def load(path: Path, *, width: int = 1280, timeout: float = 60) -> Loaded:
    """Open `path` in a fresh headless Chromium `width` CSS pixels wide and report what a user would see. The load
    event is waited for at most half of `timeout` (a page still waiting on something is reported as it stands, with
    load_fired False); everything, browser start to screenshots, must be over within `timeout` seconds."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(path)
    exe = chromium()
    if exe is None:
        raise BrowserError("no chromium or chromium-browser on PATH")
    page_url = path.as_uri()
    start = time.monotonic()
    with _Browser(exe, width, start + timeout) as b:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            b.send(f"{domain}.enable", session=session)
        metrics = {"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
        b.send("Emulation.setDeviceMetricsOverride", metrics, session)

        since = len(b.events)
        nav = b.send("Page.navigate", {"url": page_url}, session)
        if nav.get("errorText"):
            raise BrowserError(f"cannot open {page_url}: {nav['errorText']}{b.tail()}")
        load_fired = b.wait_event("Page.loadEventFired", session, since, start + timeout / 2) is not None
        time.sleep(SETTLE)

        layout = b.send("Page.getLayoutMetrics", session=session)
        size = layout.get("cssContentSize") or layout.get("contentSize") or {}
        height = min(max(math.ceil(size.get("height", HEIGHT)), 1), MAX_HEIGHT)
        b.send("Emulation.setDeviceMetricsOverride", {**metrics, "height": height}, session)
        b.send("Runtime.evaluate", {"expression": _FRAMES_JS, "awaitPromise": True}, session)

        found = b.send("Runtime.evaluate", {"expression": _IMAGES_JS, "returnByValue": True}, session)
        images = found.get("result", {}).get("value") or []
        body = b.send(
            "Runtime.evaluate",
            {"expression": "document.body ? document.body.innerText : ''", "returnByValue": True},
            session,
        )
        text = body.get("result", {}).get("value") or ""

        shot = {"format": "png", "captureBeyondViewport": True}
        screenshot = _png(b.send("Page.captureScreenshot", shot, session))
        image_shots = []
        for image in images:
            box = image.pop("box")
            x, y = round(box["x"]), round(box["y"])  # the box's edges to whole pixels, as they are painted
            clip = {
                "x": x,
                "y": y,
                "width": max(round(box["x"] + box["width"]) - x, 1),
                "height": max(round(box["y"] + box["height"]) - y, 1),
                "scale": 1,
            }
            image_shots.append(_png(b.send("Page.captureScreenshot", {**shot, "clip": clip}, session)))

        with b._cond:
            events = list(b.events)
    return Loaded(
        console_errors=_console_errors(events, session),
        requests=_requests(events, session, page_url),
        images=images,
        text=text,
        screenshot=screenshot,
        image_shots=image_shots,
        load_fired=load_fired,
    )
