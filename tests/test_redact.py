"""The one redactor (ccwatch.redact): every encoding of a secret, the userinfo of any URL,
the secrets a target's configuration holds; and config errors that never show a URL's
password, from ``ccwatch check-config`` and from a reload of a running ``ccwatch run``
(its answer, its status page, its log).

:func:`encodings` and :class:`DaemonProcess` are shared with test_proxy and test_probe.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
import yaml

from ccwatch.errors import ConfigError
from ccwatch.http import HttpClient, transport_failure
from ccwatch.redact import REDACTED, Redactor, secrets_in, strip_userinfo
from ccwatch.sources import parse_config
from tests.harness import Sim, simulator

CCWATCH = (sys.executable, "-m", "ccwatch")

#: Every character class an encoder treats differently: a space (``+``), reserved URL
#: characters, ``~`` (``%7E`` in old encoders), ``!*'()`` (kept by encodeURIComponent),
#: JSON's and HTML's specials, ``<>&`` (escaped by Go's JSON), ``/`` (``\\/``),
#: non-ASCII (``\\u00e9``/``\\u00E9``) and a character beyond the BMP (a surrogate pair).
SECRET = "S3cr3t P@ss~/!*'()<&>\"é+😀"


def _utf8_escapes(char: str, upper: bool = True) -> str:
    return "".join(f"%{b:02X}" if upper else f"%{b:02x}" for b in char.encode())


def _encode_uri_component(text: str) -> str:
    """JavaScript's encodeURIComponent."""
    keep = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()"
    return "".join(c if c in keep else _utf8_escapes(c) for c in text)


def _go_json(text: str) -> str:
    """Go's encoding/json: non-ASCII as it is, ``<``, ``>``, ``&`` as ``\\u003c`` ..."""
    escaped = json.dumps(text, ensure_ascii=False)[1:-1]
    return escaped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def encodings(secret: str) -> dict[str, str]:
    """``secret`` in every encoding a server or a library may echo it in, by name (made
    here independently of ccwatch.redact)."""
    ascii_json = json.dumps(secret)[1:-1]
    forms = {
        "raw": secret,
        "quote": quote(secret, safe=""),
        "quote-default-safe": quote(secret),
        "quote_plus": quote_plus(secret),
        "lowercase-escapes": "".join(
            c if c.isalnum() and c.isascii() else _utf8_escapes(c, upper=False) for c in secret
        ),
        "encodeURIComponent": _encode_uri_component(secret),
        "%7E": quote(secret, safe="").replace("~", "%7E"),
        "json": ascii_json,
        "json-uppercase-hex": ascii_json.replace("\\u00e9", "\\u00E9").replace(
            "\\ude00", "\\uDE00"
        ),
        "json-unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json-escaped-slash": ascii_json.replace("/", "\\/"),
        "go-json": _go_json(secret),
        "html": html.escape(secret),
        "html-&#39;": html.escape(secret).replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
        "html-&apos;": html.escape(secret).replace("&#x27;", "&apos;"),
        "html-decimal": "".join(f"&#{ord(c)};" for c in secret),
        "html-hex": "".join(f"&#x{ord(c):X};" for c in secret),
        "mixed": "".join(c if i % 2 else _utf8_escapes(c) for i, c in enumerate(secret)),
        "base64": base64.b64encode(secret.encode()).decode(),
        "base64url-unpadded": base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
    }
    return forms


def assert_no_leak(text: str, secret: str, where: str) -> None:
    """No encoding of ``secret`` (nor of ``user:secret`` in base64) is in ``text``."""
    for name, form in encodings(secret).items():
        assert form not in text, f"{where} shows the secret ({name}: {form!r}):\n{text}"
    basic = base64.b64encode(f"user:{secret}".encode()).decode()
    assert basic not in text, f"{where} shows the Basic credentials:\n{text}"


# --------------------------------------------------------------------------- the redactor


def test_every_encoding_of_a_secret_is_redacted() -> None:
    redactor = Redactor([SECRET])
    forms = encodings(SECRET)
    assert len(set(forms.values())) == len(forms), "two encodings give the same text"
    for name, form in forms.items():
        assert redactor.text(f"before {form} after") == f"before {REDACTED} after", name
    # inside a longer base64 text: a Basic header's user:password
    for user in ("someone", "a-longer-user"):
        basic = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
        assert redactor.text(basic).count(REDACTED) == 1, basic
    assert redactor.text("nothing secret, not even S3cr3t") == "nothing secret, not even S3cr3t"


def test_the_userinfo_of_any_url_is_removed() -> None:
    aiohttp_text = (
        "ClientHttpProxyError: 407, message='Proxy Authentication Required', "
        "url='http://user:S3cr3t-P%40ss@127.0.0.1:3128'"
    )
    expected = (
        "ClientHttpProxyError: 407, message='Proxy Authentication Required', "
        "url='http://127.0.0.1:3128'"
    )
    assert strip_userinfo(aiohttp_text) == expected
    assert Redactor().text(aiohttp_text) == expected  # a redactor that knows no secret
    assert strip_userinfo("see https://a:b@x.example/p and ftp://c@y.example") == (
        "see https://x.example/p and ftp://y.example"
    )
    # a raw @ in the password: everything up to the last @ of the authority
    assert strip_userinfo("http://u:p@ss@host:80/x@y") == "http://host:80/x@y"
    # not URLs with userinfo: left as they are
    for text in ("mail me@example.com", '{"url":"http://host/","mail":"a@b.example"}'):
        assert strip_userinfo(text) == text


def test_a_targets_client_knows_every_secret_of_its_configuration() -> None:
    config = parse_config(
        {
            "targets": [
                {
                    "name": "alvaria",
                    "source": "alvaria_context_cookies",
                    "url": "https://api-user:url%2Fpw@api.example.com",
                    "proxy_url": "http://proxy-user:proxy%40pw@proxy.example.com:3128",
                    "org_id": "org",
                    "oauth2": {
                        "token_url": "https://tok-user:token-url-pw@login.example.com/token",
                        "client_id": "id",
                        "client_secret": "oauth-secret",
                    },
                    "api_key": "the-api-key",
                },
                {
                    "name": "cs",
                    "source": "context_service",
                    "url": "https://cs.example.com",
                    "basic_auth": {"username": "admin", "password": "basic-pw"},
                },
            ]
        }
    )
    secrets = ["url/pw", "url%2Fpw", "proxy@pw", "proxy%40pw", "token-url-pw"]
    secrets += ["oauth-secret", "the-api-key"]
    assert set(secrets) <= set(secrets_in(config.targets[0]))
    http = HttpClient()
    alvaria = http.for_target(config.targets[0], max_response_size=1000).redactor
    cs = http.for_target(config.targets[1], max_response_size=1000).redactor
    for secret in secrets:
        assert alvaria.text(f"<{quote(secret, safe='')}>") == f"<{REDACTED}>", secret
    basic = base64.b64encode(b"admin:basic-pw").decode()
    assert cs.text(f"Basic {basic}, basic-pw") == f"Basic {REDACTED}, {REDACTED}"
    # a library's text is redacted when the failure is made
    error = transport_failure(OSError("refused by http://x:y@h, the-api-key"), alvaria)
    assert error.detail == f"OSError: refused by http://h, {REDACTED}"


def test_config_error_lines_never_show_a_urls_userinfo() -> None:
    error = ConfigError(["targets[0].url: invalid URL 'ftp://me:pw@host'", "other: fine"])
    assert error.errors == ["targets[0].url: invalid URL 'ftp://host'", "other: fine"]
    assert "pw" not in str(error)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DaemonProcess:
    """A ``ccwatch run`` process; ``log`` is its stderr once it has stopped."""

    url: str
    session: aiohttp.ClientSession
    process: asyncio.subprocess.Process
    log: str = ""
    _stderr: list[bytes] = field(default_factory=list)

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.url + path) as resp:
            return resp.status, await resp.text()

    async def post(self, path: str) -> tuple[int, str]:
        async with self.session.post(self.url + path) as resp:
            return resp.status, await resp.text()

    async def wait_for_api(self, condition: Any, what: str, within: float = 20) -> Any:
        """``/api/v1/targets``'s data once ``condition(data)`` holds."""
        deadline = time.monotonic() + within
        while True:
            status, text = await self.get("/api/v1/targets")
            assert status == 200, text
            data = json.loads(text)["data"]
            if condition(data):
                return data
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {text}"
            await asyncio.sleep(0.1)


@asynccontextmanager
async def daemon_process(
    config: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[DaemonProcess]:
    """``ccwatch run --config.file config`` on a free port, its JSON log captured; stopped
    with SIGTERM on exit."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *CCWATCH,
        "run",
        "--config.file",
        str(config),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--log.format",
        "json",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert process.stderr is not None
    reading = asyncio.create_task(process.stderr.read())
    try:
        async with aiohttp.ClientSession(trust_env=False) as session:
            running = DaemonProcess(f"http://127.0.0.1:{port}", session, process)
            deadline = time.monotonic() + 20
            while True:
                assert process.returncode is None, "ccwatch run exited early"
                try:
                    if (await running.get("/-/healthy"))[0] == 200:
                        break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "ccwatch run never answered"
                await asyncio.sleep(0.1)
            yield running
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
            running.log = (await reading).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        reading.cancel()


def log_events(text: str) -> list[dict[str, Any]]:
    """A JSON log, one object per line."""
    return [json.loads(line) for line in text.splitlines()]


URL_PASSWORD = "S3cr3t-P@ss"
WRITTEN = quote(URL_PASSWORD, safe="")  # as written in a URL: S3cr3t-P%40ss


def invalid_targets(key: str, sim_url: str = "http://127.0.0.1:9") -> list[dict[str, Any]]:
    """One target whose ``key`` (url, proxy_url or oauth2.token_url) is a URL with userinfo
    that is invalid (an ``ftp://`` one)."""
    bad = f"ftp://user:{WRITTEN}@files.example.com:2121"
    target: dict[str, Any] = {
        "name": "alvaria",
        "source": "alvaria_context_cookies",
        "url": sim_url,
        "org_id": "org",
        "oauth2": {"token_url": f"{sim_url}/token", "client_id": "id", "client_secret": "cs"},
        "api_key": "key",
    }
    if key == "oauth2.token_url":
        target["oauth2"]["token_url"] = bad
    else:
        target[key] = bad
    return [target]


KEYS = ["url", "proxy_url", "oauth2.token_url"]


@pytest.mark.parametrize("key", KEYS)
async def test_check_config_never_shows_a_url_password(tmp_path: Path, key: str) -> None:
    path = tmp_path / "ccwatch.yml"
    path.write_text(yaml.safe_dump({"targets": invalid_targets(key)}))
    process = await asyncio.create_subprocess_exec(
        *CCWATCH,
        "check-config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    text = out.decode() + err.decode()
    assert f"targets[0].{key}: invalid URL 'ftp://files.example.com:2121'" in text, text
    assert_no_leak(text, URL_PASSWORD, "check-config")


@pytest.mark.parametrize("key", KEYS)
async def test_a_failed_reload_never_shows_a_url_password(tmp_path: Path, key: str) -> None:
    async with simulator() as sim:
        path = tmp_path / "ccwatch.yml"
        path.write_text(yaml.safe_dump(_valid(sim)))
        async with daemon_process(path) as d:
            path.write_text(yaml.safe_dump({"targets": invalid_targets(key, sim.url)}))
            status, answer = await d.post("/-/reload")
            assert status == 500, answer
            assert f"targets[0].{key}: invalid URL 'ftp://files.example.com:2121'" in answer
            status, page = await d.get("/")
            assert status == 200
            assert "files.example.com:2121" in page  # the banner shows the error
            shown = {"the /-/reload answer": answer, "the status page": page}
        failed = [e for e in log_events(d.log) if e["event"] == "config_reload_failed"]
        assert len(failed) == 1, d.log
        assert any("files.example.com:2121" in line for line in failed[0]["errors"])
        shown["the process log"] = d.log
        for where, text in shown.items():
            assert_no_leak(text, URL_PASSWORD, where)


def _valid(sim: Sim) -> dict[str, Any]:
    return {
        "defaults": {"interval": "1s", "timeout": "500ms"},
        "targets": [
            {"name": "ece", "source": "ece", "url": f"{sim.url}/system", "entry_points": [1000]}
        ],
    }
