"""The status page in a real browser: headless Chromium over the DevTools protocol.

Reads the rendered DOM: a failing job with its reason, the healthy values, the escaping
(markup from a vendor and from a target name shows as text and never runs), the page's own
script working (row filter), nothing requested from elsewhere, and no error logged by the
browser (a Content-Security-Policy violation would be one).
"""

from __future__ import annotations

from tests.browser import browser
from tests.harness import Scrape, Sim, daemon, ece_config

#: markup that would set ``window.pwned`` if the page let it run
EVIL_TYPE = "text/<script>window.pwned=1</script>"
EVIL_TARGET = 'ece<img src=x onerror="window.pwned=2"><script>window.pwned=3</script>'


def settled(s: Scrape) -> bool:
    values = [x.value for x in s.series("ccwatch_poll_success")]
    return len(values) == 12 and values.count(0) == 1


def rows_js(selector: str, visible_only: bool = False) -> str:
    rows = f"document.querySelectorAll({selector!r})"
    keep = ".filter(row => !row.hidden)" if visible_only else ""
    return (
        f"Array.from({rows}){keep}.map("
        'row => Array.from(row.querySelectorAll("td")).map(td => td.textContent))'
    )


async def test_the_status_page_in_chromium(sim: Sim, chromium: str) -> None:
    await sim.put(
        "ece/entry_points/1000",
        {"agents_available": 2, "slots": 4, "queue_depth": 1, "wait_time": 3.0},
    )
    await sim.fault("/capacity/1001", "content_type", content_type=EVIL_TYPE)
    config = ece_config(sim)
    config["targets"].append(
        {
            **config["targets"][0],
            "name": EVIL_TARGET,
            "entry_points": [1002],
            "endpoints": [
                "capacity",
                "chatAllowed",
            ],
        }
    )
    async with daemon(config) as d, browser(executable=chromium) as chrome:
        await d.wait_for(settled, what="twelve jobs polled, one failing")
        page = await chrome.new_page()
        assert await page.goto(f"{d.url}/") == 200
        await page.idle()

        # a failing job, with its reason and the vendor's markup as text
        failing = await page.evaluate(rows_js("#failing tbody tr"))
        assert len(failing) == 1
        target, endpoint, subject, reason, detail = failing[0][:5]
        assert (target, endpoint, subject, reason) == (
            "ece",
            "capacity",
            "entry_point=1001",
            "parse",
        )
        assert EVIL_TYPE in detail
        # the counts, and the target with markup in its name, shown as text
        assert await page.evaluate('document.querySelector("#jobs-up b").textContent') == "11"
        assert await page.evaluate('document.querySelector("#jobs-down b").textContent') == "1"
        targets = await page.evaluate(rows_js("#targets tbody tr"))
        assert [row[0] for row in targets] == ["ece", EVIL_TARGET]
        # nothing injected ran or became an element: one script (the page's), no image
        assert await page.evaluate("typeof window.pwned") == "undefined"
        assert await page.evaluate("document.scripts.length") == 1
        assert await page.evaluate("document.images.length") == 0
        # the page's own script runs under its CSP: the filter shows and filters
        assert await page.evaluate('document.getElementById("filter").hidden') is False
        assert await page.evaluate('document.getElementById("refresh-label").hidden') is False
        await page.evaluate(
            'const f = document.getElementById("filter"); f.value = "no such row";'
            'f.dispatchEvent(new Event("input")); true'
        )
        assert await page.evaluate(rows_js("#failing tbody tr", visible_only=True)) == []

        # the healthy values, on the target's page
        assert await page.goto(f"{d.url}/?target=ece") == 200
        await page.idle()
        jobs = {(r[0], r[1]): r for r in await page.evaluate(rows_js("#jobs tbody tr"))}
        assert len(jobs) == 10
        assert jobs["capacity", "entry_point=1000"][2:4] == ["up", "4 free chat slots"]
        assert jobs["liveSessionStatus", "entry_point=1000"][3] == (
            "queue depth 1, estimated wait 3s"
        )
        assert jobs["capacity", "entry_point=1001"][2] == "down"

        # the evil target's own page, reached by its (escaped, encoded) link
        await page.goto(f"{d.url}/")
        await page.idle()
        href = await page.evaluate(
            'document.querySelectorAll("#targets tbody tr a")[1].getAttribute("href")'
        )
        assert await page.goto(f"{d.url}/{href.removeprefix('./')}") == 200
        await page.idle()
        heading = await page.evaluate('document.getElementById("target").textContent')
        assert heading == f"Target {EVIL_TARGET}"
        assert await page.evaluate("typeof window.pwned") == "undefined"

        # no browser error (a CSP violation, a failed load, a script error) on any page,
        # and nothing requested from anywhere but ccwatch
        assert page.errors == []
        assert page.requests
        assert all(url.startswith(d.url) for url in page.requests), page.requests
