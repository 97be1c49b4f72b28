"""The files a configuration names: secret files read safely, paths relative to the config
file, duplicate keys, environment overrides, and reloads that cannot wedge.

Secret files (``password_file``, ``client_secret_file``, ...) are regular files of bounded
size: a FIFO would block the reader for ever (``check-config`` hung, a reload held its lock
and SIGTERM no longer ended the process), ``/dev/zero`` would be read until memory runs
out. Both are config errors naming the key, and the process stays responsive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ccwatch.config import MAX_SECRET_FILE_BYTES
from ccwatch.errors import ConfigError
from ccwatch.sources import load_config
from tests.harness import reloadable_daemon, simulator, write_config

CCWATCH = [sys.executable, "-m", "ccwatch"]


def context_service(password_file: str, url: str = "http://127.0.0.1:1") -> dict[str, Any]:
    return {
        "targets": [
            {
                "name": "cs",
                "source": "context_service",
                "url": url,
                "basic_auth": {"username": "administrator", "password_file": password_file},
            }
        ]
    }


def check_config(
    path: Path, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CCWATCH, "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**os.environ, **env},
    )


def password_of(path: Path) -> str:
    """The basic-auth password of the config's only target, as loaded."""
    [target] = load_config(path).targets
    auth = getattr(target, "basic_auth", None)
    assert auth is not None
    assert auth.password is not None
    secret: str = auth.password.get_secret_value()
    return secret


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "password.fifo"
    os.mkfifo(path)
    return path


def test_a_fifo_as_secret_file_is_a_config_error_not_a_hang(tmp_path: Path, fifo: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    write_config(path, context_service(str(fifo)))
    result = check_config(path)  # a regression hangs here until the timeout
    assert result.returncode == 1, result.stdout + result.stderr
    assert "targets[0].basic_auth" in result.stdout + result.stderr
    assert "is not a regular file" in result.stdout + result.stderr


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_as_secret_files_are_refused_unread(tmp_path: Path, device: str) -> None:
    path = tmp_path / "ccwatch.yml"
    write_config(path, context_service(device))
    with pytest.raises(ConfigError, match=r"targets\[0\]\.basic_auth: .*is not a regular file"):
        load_config(path)


def test_a_secret_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET_FILE_BYTES + 1))
    path = tmp_path / "ccwatch.yml"
    write_config(path, context_service(str(big)))
    with pytest.raises(ConfigError, match=r"targets\[0\]\.basic_auth: .*larger than"):
        load_config(path)


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("s3cret\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    path = tmp_path / "ccwatch.yml"
    write_config(path, context_service(str(tmp_path / "link")))
    assert password_of(path) == "s3cret"


def test_a_fifo_as_config_file_is_a_config_error(fifo: Path) -> None:
    result = check_config(fifo)
    assert result.returncode == 1
    assert "is not a regular file" in result.stdout + result.stderr


def test_secret_file_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    """As Prometheus: ``password_file: password`` is the file beside the config file,
    wherever ccwatch is started from."""
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "password").write_text("beside-the-config\n")
    path = conf / "ccwatch.yml"
    write_config(path, context_service("password"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = check_config(path, cwd=elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    cwd = Path.cwd()
    try:
        os.chdir(elsewhere)
        assert password_of(path) == "beside-the-config"
    finally:
        os.chdir(cwd)


def test_duplicate_keys_are_errors_with_their_paths(tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    path.write_text(
        "web:\n"
        "  listen_address: 127.0.0.1:9865\n"
        "  listen_address: 0.0.0.0:9865\n"
        "targets:\n"
        "  - name: a\n"
        "    source: ece\n"
        "    url: http://127.0.0.1:1/system\n"
        "    entry_points: [1]\n"
        "    url: http://127.0.0.1:2/system\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any("web.listen_address: duplicate key at line 3" in e for e in info.value.errors)
    assert any("targets[0].url: duplicate key at line 9" in e for e in info.value.errors)


def test_a_malformed_environment_override_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    write_config(path, context_service("/nonexistent"))
    result = check_config(path, CCWATCH_TARGETS='[{"name": "x", "password": "hunter2"')
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    assert "CCWATCH_TARGETS" in out
    assert "hunter2" not in out


async def test_a_reload_with_a_fifo_fails_fast_and_the_next_one_works(tmp_path: Path) -> None:
    """A FIFO as secret file used to block the reload for ever, holding the reload lock:
    later reloads hung even after the file was fixed, and
    ccwatch_config_last_reload_successful stayed 1."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "password").write_text("ccwatch-demo\n")
    async with simulator() as sim:
        path = tmp_path / "ccwatch.yml"
        async with reloadable_daemon(path, context_service("password", sim.url)) as d:
            write_config(path, context_service(str(tmp_path / "fifo"), sim.url))
            async with d.session.post(f"{d.url}/-/reload") as resp:
                text = await resp.text()
            assert resp.status != 200
            assert "is not a regular file" in text
            scrape = await d.scrape()
            assert scrape.value("ccwatch_config_last_reload_successful") == 0.0
            write_config(path, context_service("password", sim.url))
            async with d.session.post(f"{d.url}/-/reload") as resp:
                assert resp.status == 200, await resp.text()
            scrape = await d.scrape()
            assert scrape.value("ccwatch_config_last_reload_successful") == 1.0


async def test_a_reload_past_its_deadline_fails_and_frees_the_lock(tmp_path: Path) -> None:
    async with simulator() as sim:
        (tmp_path / "password").write_text("ccwatch-demo\n")
        path = tmp_path / "ccwatch.yml"
        async with reloadable_daemon(path, context_service("password", sim.url)) as d:
            d.daemon.reload_deadline = 0.0  # nothing can be read in no time
            error = await d.daemon.reload()
            assert error is not None
            assert "took longer than 0s" in error
            d.daemon.reload_deadline = 30.0
            assert await d.daemon.reload() is None
