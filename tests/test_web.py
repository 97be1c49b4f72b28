"""The exporter's HTTP server over real sockets: /metrics (text, OpenMetrics, gzip),
/-/healthy, /-/ready, /-/reload, /logs and the links of the status page (whose content
is tested in test_status.py).

The daemon polls the ECE simulator, the simplest vendor; what readiness and reloads do
to the daemon is in test_daemon.py and test_reload.py.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDictProxy
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from ccwatch import __version__, web
from tests.harness import (
    Running,
    Scrape,
    Sim,
    daemon,
    ece_config,
    events,
    reload,
    reloadable_daemon,
    simulator,
    write_config,
)

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}
#: aiohttp's client asks for gzip unless told otherwise
IDENTITY = {"Accept-Encoding": "identity"}


async def request(
    d: Running, method: str, path: str, **kwargs: Any
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    """Status, headers and undecoded body of one request to the daemon."""
    async with d.session.request(method, f"{d.url}{path}", **kwargs) as resp:
        return resp.status, resp.headers, await resp.read()


def all_succeeded(s: Scrape) -> bool:
    values = [x.value for x in s.series("ccwatch_poll_success")]
    return len(values) == 10 and all(v == 1.0 for v in values)


def success_is(value: float, **job: str) -> Callable[[Scrape], bool]:
    return lambda s: s.value("ccwatch_poll_success", **job) == value


def jobs(s: Scrape) -> float | None:
    return s.value("ccwatch_jobs", source="ece")


def type_lines(text: str) -> dict[str, str]:
    """Family name -> type, from the ``# TYPE`` lines."""
    return dict(
        line.removeprefix("# TYPE ").split(" ", 1)
        for line in text.splitlines()
        if line.startswith("# TYPE ")
    )


def series(text: str, *, openmetrics: bool) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every sample's name and labels."""
    if openmetrics:
        families = list(parse_openmetrics(text))  # type: ignore[no-untyped-call]
    else:
        families = list(Scrape(text).families.values())
    return {(x.name, tuple(sorted(x.labels.items()))) for f in families for x in f.samples}


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator() as running:
        yield running


# --------------------------------------------------------------------------- /metrics


async def test_openmetrics_ends_with_eof_and_names_counters_without_total(sim: Sim) -> None:
    async with daemon(ece_config(sim)) as d:
        await d.wait_for(all_succeeded)
        await sim.fault("/entrypoint/capacity/1001", "status", status=500)
        await d.wait_for(lambda s: s.value("ccwatch_poll_errors_total", entry_point="1001") == 1)
        status, headers, body = await request(
            d, "GET", "/metrics", headers={**OPENMETRICS, **IDENTITY}
        )
        assert status == 200
        assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert "Content-Encoding" not in headers
        text = body.decode()
        assert text.endswith("# EOF\n")
        assert text.count("# EOF") == 1
        types = type_lines(text)
        counters = {name for name, kind in types.items() if kind == "counter"}
        assert {"ccwatch_poll_errors", "ccwatch_polls_delayed"} <= counters
        assert not [name for name in counters if name.endswith("_total")]
        # the samples keep their _total
        assert re.search(r"^ccwatch_poll_errors_total\{", text, re.MULTILINE)
        families = {f.name: f for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
        assert families["ccwatch_poll_errors"].type == "counter"
        assert families["ccwatch_ece_available_slots"].type == "gauge"
        errors = [x for x in families["ccwatch_poll_errors"].samples if x.name.endswith("_total")]
        assert [x.labels["entry_point"] for x in errors] == ["1001"]
        # the text format, from the same daemon: _total in the TYPE line, no # EOF
        status, headers, body = await request(d, "GET", "/metrics", headers=IDENTITY)
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = body.decode()
        assert type_lines(text)["ccwatch_poll_errors_total"] == "counter"
        assert "ccwatch_poll_errors" not in type_lines(text)
        assert "# EOF" not in text


@pytest.mark.parametrize("step", [None, 0.0], ids=["steps", "a-step-per-chunk"])
@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
async def test_gzip_answer_decompresses_to_the_plain_families(
    sim: Sim, openmetrics: bool, step: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    accept = OPENMETRICS if openmetrics else {}
    if step is not None:  # every chunk compressed, written and followed by a pause
        monkeypatch.setattr(web, "SCRAPE_STEP_SECONDS", step)
    async with daemon(ece_config(sim)) as d:
        await d.wait_for(all_succeeded)
        status, headers, body = await request(d, "GET", "/metrics", headers={**accept, **IDENTITY})
        assert status == 200
        assert "Content-Encoding" not in headers
        plain = body.decode()
        status, headers, body = await request(
            d,
            "GET",
            "/metrics",
            headers={**accept, "Accept-Encoding": "gzip"},
            auto_decompress=False,
        )
        assert status == 200
        assert headers["Content-Encoding"] == "gzip"
        unzipped = gzip.decompress(body).decode()
    assert type_lines(unzipped) == type_lines(plain)
    assert "ccwatch_ece_available_slots" in type_lines(unzipped)
    assert unzipped.endswith("# EOF\n") is openmetrics
    assert series(unzipped, openmetrics=openmetrics) == series(plain, openmetrics=openmetrics)
    assert len(series(plain, openmetrics=openmetrics)) > 10


def test_gzip_answers_use_isal_and_are_plain_gzip() -> None:
    """igzip where its wheel is installed (it is a dependency): a standard gzip stream."""
    from ccwatch.web import DEFLATE, gzip_compressor

    assert DEFLATE.__name__ == "isal.isal_zlib"
    body = b"".join(f'm{{target="t",n="{i}"}} {i}\n'.encode() for i in range(10_000))
    compressor = gzip_compressor()
    stream = compressor.compress(body[:70_000]) + compressor.compress(body[70_000:])
    stream += compressor.flush()
    assert stream[:2] == b"\x1f\x8b"
    assert gzip.decompress(stream) == body
    assert len(stream) < len(body) / 5


# --------------------------------------------------------------------- /-/healthy, /-/ready, /


async def test_healthy_is_200_text_while_not_ready(sim: Sim) -> None:
    # an hour's interval: the first polls are spread over a minute, so not all come soon
    async with daemon(ece_config(sim, interval="1h", timeout="1s")) as d:
        status, headers, body = await request(d, "GET", "/-/healthy")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain")
        assert body == b"ccwatch is Healthy.\n"
        status, headers, body = await request(d, "GET", "/-/ready")
        assert status == 503
        assert headers["Content-Type"].startswith("text/plain")
        assert re.fullmatch(rb"ccwatch is not ready: \d+ of 10 jobs not polled yet\n", body)


async def test_the_status_page_links_to_metrics_logs_and_the_api(sim: Sim) -> None:
    async with daemon(ece_config(sim)) as d:
        status, headers, body = await request(d, "GET", "/")
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        text = body.decode()
        assert __version__ in text
        links = re.findall(r'href="([^"]+)"', text)
        assert {"metrics", "logs", "api/v1/targets"} <= set(links)
        # the links are relative to / and lead somewhere (readiness may still be 503)
        for link in set(links) - {"-/ready"}:
            assert (await d.get(f"/{link}"))[0] == 200, link


# --------------------------------------------------------------------------- /-/reload


async def test_reload_answers_post_and_put_not_get(sim: Sim, tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    async with reloadable_daemon(path, ece_config(sim, endpoints=["capacity"])) as d:
        assert jobs(await d.scrape()) == 2.0
        write_config(path, ece_config(sim, endpoints=["capacity"], entry_points=[1000, 1001, 1002]))
        status, headers, _ = await request(d, "GET", "/-/reload")
        assert status == 405
        assert {m.strip() for m in headers["Allow"].split(",")} == {"POST", "PUT"}
        assert jobs(await d.scrape()) == 2.0  # a GET changes nothing
        status, _, body = await request(d, "PUT", "/-/reload")
        assert status == 200
        assert body == b"configuration reloaded\n"
        assert jobs(await d.scrape()) == 3.0
        write_config(path, ece_config(sim, endpoints=["capacity"]))
        assert await reload(d) == "configuration reloaded\n"  # POST
        assert jobs(await d.scrape()) == 2.0


async def test_a_failed_reload_answers_500_with_the_error(sim: Sim, tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    async with reloadable_daemon(path, ece_config(sim)) as d:
        path.write_text("targets: []\n")
        status, _, body = await request(d, "POST", "/-/reload")
        assert status == 500
        text = body.decode()
        assert text.startswith("failed to reload config: ")
        assert "targets" in text
    # started from a config dict, not a file: nothing to reread
    async with daemon(ece_config(sim)) as d:
        status, _, body = await request(d, "PUT", "/-/reload")
        assert status == 500
        assert body.decode().startswith("failed to reload config: no configuration file")


# --------------------------------------------------------------------------- /logs


async def test_recent_transitions_at_logs_filtered_by_target(sim: Sim) -> None:
    config = ece_config(sim, endpoints=["chatAllowed"])
    other = {**config["targets"][0], "name": "other", "entry_points": [1002]}
    config["targets"].append(other)
    async with daemon(config) as d:
        await d.wait_for(lambda s: len(s.series("ccwatch_ece_chat_allowed")) == 3)
        for target, entry_point in (("ece", "1001"), ("other", "1002")):
            job = {"target": target, "entry_point": entry_point}
            await sim.fault(f"/entrypoint/chatAllowed/{entry_point}", "status", status=500)
            await d.wait_for(success_is(0.0, **job), what=f"{target} failing")
            await sim.clear_faults()
            await d.wait_for(success_is(1.0, **job), what=f"{target} recovered")
        status, headers, _ = await request(d, "GET", "/logs")
        assert status == 200
        assert headers["Content-Type"].startswith("application/x-ndjson")
        everything = await events(d)
        names = [(e["event"], e["target"], e["entry_point"]) for e in everything]
        assert names == [
            ("poll_failing", "ece", "1001"),
            ("poll_recovered", "ece", "1001"),
            ("poll_failing", "other", "1002"),
            ("poll_recovered", "other", "1002"),
        ]
        assert everything[0]["reason"] == "http_status"
        stamps = [e["timestamp"] for e in everything]
        assert stamps == sorted(stamps)  # newest last
        # ?target= keeps one target's
        assert await events(d, "ece") == everything[:2]
        assert await events(d, "other") == everything[2:]
        assert await d.get("/logs?target=nobody") == (200, "")
