"""docs/security.md, "Securing the endpoint": where it is, and its examples work.

The README links it; the Prometheus scrape job passes ``promtool check config``, the web
config example has exporter-toolkit's keys only, and the files, names and commands it shows
are the ones in deploy/compose and deploy/kubernetes-overlays.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import DEPLOY, REPO, check_web_config
from .helpers import with_stand_in_files as stand_ins
from .test_rules import promtool

README = REPO / "README.md"
SECURITY = REPO / "docs" / "security.md"
HEADING = "# Securing the endpoint"
TOOLKIT_DOCS = (
    "https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md"
)


@pytest.fixture(scope="module")
def section() -> str:
    """The whole of docs/security.md: the page is the section."""
    text = SECURITY.read_text(encoding="utf-8")
    assert text.startswith(f"{HEADING}\n"), "docs/security.md starts with its title"
    return text


def test_the_readme_links_it() -> None:
    assert "(docs/security.md)" in README.read_text(encoding="utf-8")


def yaml_blocks(section: str) -> list[Any]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]


def test_links_the_format(section: str) -> None:
    assert TOOLKIT_DOCS in section


def test_web_config_example(section: str) -> None:
    [example] = [b for b in yaml_blocks(section) if "tls_server_config" in b]
    check_web_config(example)
    assert example["http_server_config"]["headers"]
    assert example["basic_auth_users"]


def test_prometheus_example_passes_promtool(section: str, tmp_path: Path) -> None:
    [example] = [b for b in yaml_blocks(section) if "scrape_configs" in b]
    [job] = example["scrape_configs"]
    assert job["scheme"] == "https"
    assert job["tls_config"]["ca_file"]
    assert set(job["basic_auth"]) == {"username", "password_file"}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(stand_ins(example, tmp_path)), encoding="utf-8")
    result = promtool("check", "config", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_named_files_exist(section: str) -> None:
    for name in re.findall(r"deploy/[\w./-]+", section):
        if "/certs/" in name or name.endswith("/certs"):
            continue  # made by make-certs.sh
        assert (REPO / name.rstrip(".")).exists(), name


def test_compose_demo_password_and_certificate_paths(section: str) -> None:
    password = (DEPLOY / "compose" / "secrets" / "ccwatch_scrape_password").read_text().strip()
    assert f"prometheus:{password}" in section
    cacerts = re.findall(r"--cacert (\S+)", section)
    assert cacerts
    for path in cacerts:
        # where make-certs.sh puts the CA certificate (test_compose_secure checks it does)
        assert path == "deploy/compose/certs/ca/ca.crt", path


def test_kubernetes_secret_commands_match_the_examples(section: str) -> None:
    examples: dict[str, set[str]] = {}
    for path in (DEPLOY / "kubernetes-overlays").glob("*/*.secret.example.yaml"):
        secret = yaml.safe_load(path.read_text(encoding="utf-8"))
        examples.setdefault(secret["metadata"]["name"], set()).update(secret["stringData"])
    commands = re.findall(r"kubectl create secret generic ([\w-]+)((?:\\\n|[^\n])*)", section)
    assert {name for name, _ in commands} == set(examples) - {"ccwatch-scrape-client-tls"}
    for name, rest in commands:
        keys = set(re.findall(r"--from-(?:file|literal)=([\w.-]+)=", rest))
        assert keys == examples[name], name
