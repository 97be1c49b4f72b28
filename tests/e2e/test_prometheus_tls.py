"""A real Prometheus (Debian's) scrapes ccwatch over HTTPS with basic auth, with the scrape
job the README's "Securing the endpoint" shows: ``up`` is 1 with the right password and
0 with a wrong one.

Needs ``prometheus`` on PATH (Debian: ``apt-get install prometheus``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import trustme
import yaml

from ccwatch.daemon import Daemon, load_web
from ccwatch.sources import load_config
from tests.e2e.test_prometheus_e2e import eventually, free_port, stop, tool
from tests.harness import Sim, ece_config, running

PASSWORD = "prometheus-scrapes-ccwatch"


def scrape_job(target: str, tmp_path: Path, password: str) -> dict[str, Any]:
    """The README's scrape job, pointed at the test's files."""
    password_file = tmp_path / f"password-{abs(hash(password))}"
    password_file.write_text(password)
    return {
        "job_name": "ccwatch",
        "scheme": "https",
        "tls_config": {"ca_file": str(tmp_path / "ca.pem"), "server_name": "localhost"},
        "basic_auth": {"username": "prometheus", "password_file": str(password_file)},
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": [{"targets": [target]}],
    }


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, job: dict[str, Any]) -> AsyncIterator[str]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [job]})
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await stop(process)


async def up(session: aiohttp.ClientSession, prom: str) -> float | None:
    """``up`` of the ccwatch job, once Prometheus has scraped it."""
    with contextlib.suppress(aiohttp.ClientError):
        async with session.get(f"{prom}/api/v1/query", params={"query": 'up{job="ccwatch"}'}) as r:
            result = (await r.json())["data"]["result"]
            if result:
                return float(result[0]["value"][1])
    return None


async def test_prometheus_scrapes_over_https_with_basic_auth(sim: Sim, tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    (tmp_path / "web.yml").write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
                "basic_auth_users": {"prometheus": hashed},
            }
        )
    )
    config = ece_config(sim, endpoints=["capacity"])
    config["web"] = {"listen_address": "127.0.0.1:0", "config_file": "web.yml"}
    path = tmp_path / "ccwatch.yml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    daemon = Daemon(loaded, config_path=path, web_config=load_web(loaded, path, None))
    async with running(daemon) as d, aiohttp.ClientSession() as session:
        target = d.url.removeprefix("http://")
        for password, expected in ((PASSWORD, 1.0), ("not-the-password", 0.0)):
            run = tmp_path / f"run-{int(expected)}"
            run.mkdir()
            (run / "ca.pem").write_bytes((tmp_path / "ca.pem").read_bytes())
            async with prometheus(run, scrape_job(target, run, password)) as prom:

                async def scraped(prom: str = prom, expected: float = expected) -> float | None:
                    value = await up(session, prom)
                    return value if value == expected else None

                assert await eventually(scraped, within=30, what=f"up == {expected}") == expected
