"""The headless-Chromium driver in tests/browser.py, against pages served on 127.0.0.1.

Without Chromium these tests skip on a developer's machine and fail in CI, which installs
Debian's ``chromium`` (.ci/run).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.browser import Browser, EvaluationError, Page, browser
from tests.harness import local_app

CLEAN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clean</title></head>
<body><h1>ccwatch</h1><p id="out">before</p>
<script>document.getElementById("out").textContent = "after";</script>
</body></html>
"""

THROWS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>throws</title></head>
<body><script>throw new Error("boom from the page");</script></body></html>
"""

STRICT_CSP = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>csp</title></head>
<body><p id="out">before</p>
<script>document.getElementById("out").textContent = "ran";</script>
</body></html>
"""

IMAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>image</title></head>
<body><img src="{src}" alt="x"></body></html>
"""

#: an icon the server does not have: Chromium asks for it after the load event
BAD_ICON = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bad icon</title>
<link rel="icon" href="/nowhere.ico"></head><body>icon</body></html>
"""

TALL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tall</title></head>
<body style="margin:0"><div style="height:3000px">tall</div></body></html>
"""


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (just released by the kernel), so a
    load from it is refused. Chromium blocks port 1 and other "unsafe" ports outright
    (net::ERR_UNSAFE_PORT), which would fail too but without trying to connect."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def html(text: str, **headers: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", headers=headers)


@pytest.fixture
def unreachable() -> str:
    """An image on another origin that does not answer."""
    return f"http://127.0.0.1:{closed_port()}/x.png"


@pytest.fixture
async def site(unreachable: str) -> AsyncIterator[str]:
    """The test pages on 127.0.0.1, on a free port."""

    async def clean(_: web.Request) -> web.Response:
        return html(CLEAN)

    async def throws(_: web.Request) -> web.Response:
        return html(THROWS)

    async def csp(_: web.Request) -> web.Response:
        return html(STRICT_CSP, **{"Content-Security-Policy": "default-src 'none'"})

    async def image(_: web.Request) -> web.Response:
        return html(IMAGE.format(src=unreachable))

    async def tall(_: web.Request) -> web.Response:
        return html(TALL)

    async def bad_icon(_: web.Request) -> web.Response:
        return html(BAD_ICON)

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404, text="no such page")

    async def no_icon(_: web.Request) -> web.Response:
        return web.Response(status=204)  # as the daemon answers /favicon.ico

    app = web.Application()
    app.router.add_get("/clean", clean)
    app.router.add_get("/throws", throws)
    app.router.add_get("/csp", csp)
    app.router.add_get("/image", image)
    app.router.add_get("/tall", tall)
    app.router.add_get("/bad-icon", bad_icon)
    app.router.add_get("/missing", missing)
    app.router.add_get("/favicon.ico", no_icon)
    async with local_app(app) as url:
        yield url


@pytest.fixture
async def chrome(chromium: str) -> AsyncIterator[Browser]:
    async with browser(executable=chromium) as b:
        yield b


@pytest.fixture
async def page(chrome: Browser) -> Page:
    return await chrome.new_page()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16]
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_clean_page_runs_its_script_without_errors(page: Page, site: str) -> None:
    assert await page.goto(f"{site}/clean") == 200
    assert await page.evaluate('document.getElementById("out").textContent') == "after"
    assert await page.evaluate("document.title") == "clean"
    await page.idle()
    assert page.errors == []
    assert page.requests[0] == f"{site}/clean"
    assert set(page.requests) <= {f"{site}/clean", f"{site}/favicon.ico"}


async def test_late_requests_are_caught_by_idle(page: Page, site: str) -> None:
    """The icon is fetched after the load event: goto may return before it fails."""
    assert await page.goto(f"{site}/bad-icon") == 200
    await page.idle()
    assert f"{site}/nowhere.ico" in page.requests
    assert any("404" in e and f"{site}/nowhere.ico" in e for e in page.errors), page.errors


async def test_evaluate_awaits_promises_and_returns_json_values(page: Page) -> None:
    assert await page.evaluate("new Promise(r => setTimeout(() => r({a: [1, 'x']}), 10))") == {
        "a": [1, "x"]
    }
    assert await page.evaluate("undefined") is None


async def test_evaluate_raises_what_the_expression_throws(page: Page) -> None:
    with pytest.raises(EvaluationError, match="nope"):
        await page.evaluate('(() => { throw new Error("nope") })()')
    with pytest.raises(EvaluationError, match="rejected"):
        await page.evaluate('Promise.reject(new Error("rejected"))')


async def test_uncaught_exception_is_an_error(page: Page, site: str) -> None:
    assert await page.goto(f"{site}/throws") == 200
    assert any("boom from the page" in e for e in page.errors), page.errors


async def test_console_error_is_an_error(page: Page, site: str) -> None:
    await page.goto(f"{site}/clean")
    await page.evaluate('console.error("said", 42); console.assert(false, "asserted")')
    await page.evaluate("console.log('not an error'); console.warn('nor this')")
    assert page.errors == ["console.error: said 42", "console.assert: asserted"]


async def test_content_security_policy_violation_is_an_error(page: Page, site: str) -> None:
    assert await page.goto(f"{site}/csp") == 200
    assert await page.evaluate('document.getElementById("out").textContent') == "before"
    assert any("Content Security Policy" in e for e in page.errors), page.errors


async def test_failed_image_is_requested_and_an_error(
    page: Page, site: str, unreachable: str
) -> None:
    assert await page.goto(f"{site}/image") == 200
    assert page.requests[0] == f"{site}/image"
    assert unreachable in page.requests
    assert set(page.requests) <= {f"{site}/image", unreachable, f"{site}/favicon.ico"}
    assert any(e.startswith("network: net::ERR_CONNECTION_REFUSED") for e in page.errors), (
        page.errors
    )
    assert any(unreachable in e for e in page.errors), page.errors


async def test_goto_returns_the_document_status(page: Page, site: str) -> None:
    assert await page.goto(f"{site}/missing") == 404
    assert await page.goto("about:blank") is None


async def test_screenshot_is_a_png_of_the_viewport(page: Page, site: str, tmp_path: Path) -> None:
    await page.goto(f"{site}/clean")
    shot = await page.screenshot(tmp_path / "clean.png", width=640, height=480)
    assert png_size(shot.read_bytes()) == (640, 480)


async def test_full_page_screenshot_covers_the_whole_page(
    page: Page, site: str, tmp_path: Path
) -> None:
    await page.goto(f"{site}/tall")
    shot = await page.screenshot(tmp_path / "tall.png", width=400, height=300, full_page=True)
    assert png_size(shot.read_bytes()) == (400, 3000)
    assert await page.evaluate("[innerWidth, innerHeight]") == [400, 300]


async def test_pages_are_separate(chrome: Browser, site: str) -> None:
    first, second = await chrome.new_page(), await chrome.new_page()
    await first.goto(f"{site}/throws")
    await second.goto(f"{site}/clean")
    await second.idle()
    assert first.errors
    assert second.errors == []
    assert f"{site}/throws" not in second.requests
