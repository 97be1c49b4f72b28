"""Shared by the deployment tests: repository paths, dev tools, config checks."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from ccwatch.config import ConfigBase
from ccwatch.sources import parse_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
#: Where the image and every deployment mount ccwatch's config.
CONFIG_PATH = "/etc/ccwatch/ccwatch.yml"
#: The image's fixed non-root user.
UID = 65532
PORT = 9865


def dev_tool(name: str) -> str:
    """A console script of the dev dependencies: beside this Python first, then on PATH.

    ``pip install -e '.[dev]'`` puts them next to the interpreter, which need not be on
    PATH (``.venv/bin/pytest``). A missing tool is a failure, not a skip.
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} not found: install the dev dependencies (pip install -e '.[dev]')"
    return found


def secret_files(node: Any) -> list[str]:
    """Every ``*_file`` value (secrets, TLS files) in a parsed config, at any depth."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.endswith("_file") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(secret_files(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(secret_files(item))
    return found


def _replace_files(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: mapping.get(v, v)
            if isinstance(k, str) and k.endswith("_file") and isinstance(v, str)
            else _replace_files(v, mapping)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_replace_files(item, mapping) for item in node]
    return node


def with_stand_in_files(data: Any, tmp_path: Path) -> Any:
    """``data`` with each ``*_file`` path replaced by a placeholder file under ``tmp_path``.

    A deployment's secret and TLS files exist only inside its containers.
    """
    mapping: dict[str, str] = {}
    for i, path in enumerate(secret_files(data)):
        stand_in = tmp_path / f"file-{i}"
        stand_in.write_text("placeholder\n", encoding="utf-8")
        mapping[path] = str(stand_in)
    return _replace_files(data, mapping)


def parse_with_secrets(data: Any, tmp_path: Path, origin: str) -> ConfigBase:
    """Validate a deployment's config with ccwatch's own parser (see with_stand_in_files)."""
    return parse_config(with_stand_in_files(data, tmp_path), origin=origin)
