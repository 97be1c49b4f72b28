"""A small headless-Chromium driver for tests, over the Chrome DevTools Protocol.

Only aiohttp's websocket client is needed: :func:`browser` starts Chromium with a fresh
profile in a temporary directory, reads the DevTools port from the profile's
``DevToolsActivePort`` file and connects to the browser's websocket. Pages are targets
attached with ``flatten: true``, so every command goes over that one socket with the
page's ``sessionId``.

::

    async with browser() as b:
        page = await b.new_page()
        assert await page.goto(url) == 200
        assert await page.evaluate("document.title") == "ccwatch"
        await page.idle()  # late requests (the favicon) land after the load event
        assert page.errors == []
        await page.screenshot(tmp_path / "status.png", width=1280, height=800)

:attr:`Page.errors` collects what the browser reported as an error since the page was
opened: uncaught exceptions, ``console.error``/``console.assert``, error log entries
(Content-Security-Policy violations, resources answered with an error status) and
failed loads. :attr:`Page.requests` lists every URL the page asked for.

Every wait has a deadline; the browser process and its profile are removed on the way
out even when the test fails.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

#: seconds any single wait (launch, command, load event) may take
TIMEOUT = 30.0

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    # pages under test are on 127.0.0.1; never go through an http_proxy from the environment
    "--no-proxy-server",
    "--remote-debugging-port=0",
)

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")

Params = dict[str, Any]


class BrowserError(RuntimeError):
    """Chromium did not start, a command failed or a wait ran out of time."""


class EvaluationError(BrowserError):
    """The evaluated JavaScript threw."""


def chromium_path() -> str | None:
    """``$CCWATCH_CHROMIUM`` if set, else the first of chromium, chromium-browser,
    google-chrome on PATH; None when there is none."""
    configured = os.environ.get("CCWATCH_CHROMIUM")
    if configured:
        return shutil.which(configured)
    for name in EXECUTABLES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _Connection:
    """One DevTools websocket: numbered commands, their answers, and events routed to the
    page whose session sent them."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Params]] = {}
        self._sessions: dict[str, Callable[[str, Params], None]] = {}
        self._closed: BaseException | None = None
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")

    def subscribe(self, session_id: str, handler: Callable[[str, Params], None]) -> None:
        self._sessions[session_id] = handler

    async def send(
        self,
        method: str,
        params: Params | None = None,
        *,
        session_id: str | None = None,
        within: float = TIMEOUT,
    ) -> Params:
        """The result of one command; :class:`BrowserError` on an error answer or no answer
        ``within`` seconds."""
        if self._closed is not None:
            raise BrowserError(f"{method}: the DevTools connection is closed") from self._closed
        message: Params = {"id": next(self._ids), "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[Params] = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        try:
            await self._ws.send_str(json.dumps(message))
            async with asyncio.timeout(within):
                return await future
        except TimeoutError:
            raise BrowserError(f"{method}: no answer within {within} s") from None
        except (OSError, aiohttp.ClientError) as exc:
            raise BrowserError(f"{method}: {exc!r}") from exc
        finally:
            self._pending.pop(message["id"], None)

    async def _read(self) -> None:
        reason: BaseException = BrowserError("the browser closed the DevTools connection")
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                self._dispatch(json.loads(msg.data))
        except Exception as exc:
            reason = exc
        finally:
            self._closed = reason
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrowserError(str(reason)))

    def _dispatch(self, message: Params) -> None:
        if "id" in message:
            future = self._pending.get(message["id"])
            if future is None or future.done():
                return
            if "error" in message:
                error = message["error"]
                future.set_exception(BrowserError(f"{error.get('message')} ({error.get('code')})"))
            else:
                future.set_result(message.get("result", {}))
            return
        handler = self._sessions.get(message.get("sessionId", ""))
        if handler is not None:
            handler(message["method"], message.get("params", {}))

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _remote_value(obj: Params) -> str:
    """A console argument (a Runtime.RemoteObject) as text."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    return str(obj.get("unserializableValue") or obj.get("description") or obj.get("type"))


class Page:
    """One tab, attached to :class:`Browser`'s connection with its own ``sessionId``."""

    def __init__(self, connection: _Connection, target_id: str, session_id: str) -> None:
        self.target_id = target_id
        self.session_id = session_id
        #: what the browser reported as an error on this page, oldest first
        self.errors: list[str] = []
        #: every URL the page requested (documents, scripts, images, fetches...), in order
        self.requests: list[str] = []
        self._connection = connection
        self._urls: dict[str, str] = {}  # requestId -> URL
        self._in_flight: set[str] = set()  # requestIds without an end yet
        self._last_network = time.monotonic()
        self._documents: dict[str, int] = {}  # loaderId -> HTTP status of the main document
        self._main_frame: str | None = None
        self._waiters: list[tuple[str, asyncio.Future[Params]]] = []
        connection.subscribe(session_id, self._on_event)

    async def send(self, method: str, params: Params | None = None) -> Params:
        """Any DevTools command on this page (https://chromedevtools.github.io/devtools-protocol/)."""
        return await self._connection.send(method, params, session_id=self.session_id)

    async def goto(self, url: str, *, within: float = TIMEOUT) -> int | None:
        """Navigate and wait up to ``within`` seconds for the load event; the HTTP status
        of the document when the browser reported one (None for about:, data: and
        same-document navigations)."""
        loaded = self._wait_for("Page.loadEventFired")
        try:
            result = await self.send("Page.navigate", {"url": url})
            if result.get("errorText"):
                raise BrowserError(f"navigating to {url}: {result['errorText']}")
            self._main_frame = result.get("frameId", self._main_frame)
            loader = result.get("loaderId")
            if loader is None:  # same-document navigation: no new load event
                return None
            try:
                async with asyncio.timeout(within):
                    await loaded
            except TimeoutError:
                raise BrowserError(f"{url}: no load event within {within} s") from None
            return self._documents.get(loader)
        finally:
            if loaded.done() and not loaded.cancelled():
                loaded.exception()  # retrieved: a crash is reported through errors too
            loaded.cancel()
            self._waiters = [w for w in self._waiters if w[1] is not loaded]

    async def idle(self, *, quiet: float = 0.25, within: float = TIMEOUT) -> None:
        """Wait until no request is in flight and none started or ended for ``quiet``
        seconds. Chromium asks for /favicon.ico after the load event, for example, so its
        request (and a 404 in :attr:`errors`) shows up only after :meth:`goto` returned.
        A page that keeps a request open (EventSource, long poll) never goes idle."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self._in_flight and time.monotonic() - self._last_network >= quiet:
                return
            await asyncio.sleep(0.05)
        pending = sorted(self._urls.get(r, r) for r in self._in_flight)
        raise BrowserError(f"the network did not go quiet within {within} s: {pending}")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises are awaited), as JSON-like data;
        :class:`EvaluationError` if it throws."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        details = result.get("exceptionDetails")
        if details is not None:
            raise EvaluationError(f"{expression!r}: {self._exception_text(details)}")
        remote: Params = result.get("result", {})
        if "unserializableValue" in remote:  # NaN, Infinity, -0, bigints
            return remote["unserializableValue"]
        return remote.get("value")

    async def screenshot(
        self,
        path: str | os.PathLike[str],
        *,
        width: int = 1280,
        height: int = 800,
        full_page: bool = False,
    ) -> Path:
        """Write a PNG of the viewport (``width`` x ``height`` CSS pixels), or of the
        whole page that wide with ``full_page``; returns the path."""
        await self._set_viewport(width, height)
        params: Params = {"format": "png", "fromSurface": True}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            content = metrics.get("cssContentSize") or metrics["contentSize"]
            full_height = max(height, int(content["height"] + 0.999))
            await self._set_viewport(width, full_height)
            params["captureBeyondViewport"] = True
        try:
            data = (await self.send("Page.captureScreenshot", params))["data"]
        finally:
            if full_page:
                await self._set_viewport(width, height)
        out = Path(path)
        await asyncio.to_thread(out.write_bytes, base64.b64decode(data))
        return out

    async def _set_viewport(self, width: int, height: int) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    async def _enable(self) -> None:
        for domain in ("Inspector", "Page", "Runtime", "Log", "Network"):
            await self.send(f"{domain}.enable")
        tree = await self.send("Page.getFrameTree")
        self._main_frame = tree["frameTree"]["frame"]["id"]

    def _wait_for(self, method: str) -> asyncio.Future[Params]:
        future: asyncio.Future[Params] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, future))
        return future

    @staticmethod
    def _exception_text(details: Params) -> str:
        exception = details.get("exception") or {}
        text = str(exception.get("description") or details.get("text") or "exception")
        where = details.get("url") or ""
        if where:
            where = f" ({where}:{details.get('lineNumber', 0) + 1})"
        return text.splitlines()[0] + where

    def _on_event(self, method: str, params: Params) -> None:
        try:
            self._record(method, params)
        except Exception as exc:  # an event shaped unlike the protocol says: tell the test
            self.errors.append(f"driver: cannot read {method}: {exc!r}")

    def _record(self, method: str, params: Params) -> None:
        for waited, future in self._waiters:
            if waited == method and not future.done():
                future.set_result(params)
        if method == "Inspector.targetCrashed":
            self.errors.append("crash: the page's renderer crashed")
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(BrowserError("the page's renderer crashed"))
        elif method == "Runtime.exceptionThrown":
            self.errors.append(f"exception: {self._exception_text(params['exceptionDetails'])}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(_remote_value(arg) for arg in params.get("args", []))
            self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            url = entry.get("url")
            suffix = f" ({url})" if url and url not in entry.get("text", "") else ""
            self.errors.append(f"log[{entry.get('source')}]: {entry.get('text')}{suffix}")
        elif method.startswith("Network."):
            self._last_network = time.monotonic()
            self._network(method, params)

    def _network(self, method: str, params: Params) -> None:
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            self._urls[params["requestId"]] = url
            self._in_flight.add(params["requestId"])
            self.requests.append(url)
        elif method == "Network.responseReceived":
            if params.get("type") == "Document" and params.get("frameId") == self._main_frame:
                self._documents[params["loaderId"]] = params["response"]["status"]
        elif method == "Network.loadingFinished":
            self._in_flight.discard(params["requestId"])
        elif method == "Network.loadingFailed":
            self._in_flight.discard(params["requestId"])
            url = self._urls.get(params["requestId"], "?")
            cors = params.get("corsErrorStatus") or {}
            reason = params.get("blockedReason") or cors.get("corsError") or ""
            if params.get("canceled") and not reason:
                return  # navigated away or the page stopped it: not a failure
            detail = f" [{reason}]" if reason else ""
            self.errors.append(f"network: {params.get('errorText')}{detail} {url}")


class Browser:
    """A running headless Chromium; open tabs with :meth:`new_page`."""

    def __init__(self, connection: _Connection, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pages: list[Page] = []
        self._connection = connection

    async def new_page(self) -> Page:
        """A fresh about:blank tab with Page, Runtime, Log and Network events on."""
        target = await self._connection.send("Target.createTarget", {"url": "about:blank"})
        target_id = target["targetId"]
        attached = await self._connection.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )
        page = Page(self._connection, target_id, attached["sessionId"])
        await page._enable()
        self.pages.append(page)
        return page

    async def version(self) -> str:
        """The browser's product string, e.g. ``Chrome/124.0.6367.78``."""
        return str((await self._connection.send("Browser.getVersion"))["product"])


def _log_tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


async def _devtools_url(
    profile: Path, process: asyncio.subprocess.Process, log: Path, within: float
) -> str:
    """The browser websocket URL, from the ``DevToolsActivePort`` file Chromium writes
    once it listens (first line the port, second the browser target's path)."""
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise BrowserError(
                f"chromium exited with {process.returncode} before listening:\n{_log_tail(log)}"
            )
        with contextlib.suppress(OSError):
            lines = active.read_text(encoding="utf-8").split()
            if len(lines) >= 2 and lines[0].isdigit():
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.05)
    raise BrowserError(f"chromium did not listen within {within} s:\n{_log_tail(log)}")


async def _stop(process: asyncio.subprocess.Process, grace: float) -> None:
    """Give the browser ``grace`` seconds to exit, then terminate and kill its process group."""
    for sig, wait in ((None, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await process.wait()
            break
    # renderers and zygotes normally go with the browser; make sure of it
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@asynccontextmanager
async def browser(
    *, executable: str | None = None, within: float = TIMEOUT, extra_flags: tuple[str, ...] = ()
) -> AsyncIterator[Browser]:
    """A headless Chromium with a throwaway profile, closed and removed on exit.

    ``executable`` defaults to :func:`chromium_path`; :class:`BrowserError` when there is
    none or it does not come up ``within`` seconds.
    """
    path = executable or chromium_path()
    if path is None:
        raise BrowserError(
            "no Chromium: install it (Debian: apt-get install chromium) or set CCWATCH_CHROMIUM"
        )
    workdir = Path(tempfile.mkdtemp(prefix="ccwatch-chromium-"))
    profile = workdir / "profile"
    log = workdir / "chromium.log"
    process: asyncio.subprocess.Process | None = None
    grace = 0.0  # how long to wait for the browser to exit by itself
    try:
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                path,
                *FLAGS,
                *extra_flags,
                f"--user-data-dir={profile}",
                "about:blank",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its own process group, so cleanup gets every child
            )
        url = await _devtools_url(profile, process, log, within)
        async with aiohttp.ClientSession() as session:
            try:
                async with asyncio.timeout(within):
                    ws = await session.ws_connect(url, max_msg_size=0)
            except TimeoutError:
                raise BrowserError(f"no DevTools connection to {url} within {within} s") from None
            connection = _Connection(ws)
            try:
                yield Browser(connection, process)
            finally:
                grace = 5.0
                with contextlib.suppress(BrowserError):
                    await connection.send("Browser.close", within=5.0)
                await connection.close()
    finally:
        if process is not None:
            await _stop(process, grace)
        shutil.rmtree(workdir, ignore_errors=True)
