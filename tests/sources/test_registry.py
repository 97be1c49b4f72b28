"""The source registry: names, subject labels and the config entry points it builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccwatch.errors import ConfigError
from ccwatch.sources import (
    SOURCES,
    all_subject_labels,
    alvaria_context_cookies,
    context_service,
    ece,
    genesys_services,
    gms_probe,
    load_config,
    parse_config,
)


def test_every_source_is_registered_under_its_name() -> None:
    assert list(SOURCES) == [
        "ece",
        "context_service",
        "genesys_services",
        "gms_probe",
        "alvaria_context_cookies",
    ]
    modules = (ece, context_service, genesys_services, gms_probe, alvaria_context_cookies)
    for module in modules:
        assert SOURCES[module.NAME] is module.SOURCE
        assert module.SOURCE.name == module.NAME


def test_the_poll_health_labels_are_every_sources_subject_labels_once() -> None:
    assert all_subject_labels() == ("entry_point", "customer_id", "contact_key", "gms_service")


def test_parse_config_knows_every_source() -> None:
    cfg = parse_config(
        {
            "targets": [
                {"name": "e", "source": "ece", "url": "http://ece", "entry_points": [1]},
                {"name": "g", "source": "gms_probe", "url": "http://gms", "gms_service": "s"},
            ]
        }
    )
    assert [type(t) for t in cfg.targets] == [ece.EceTarget, gms_probe.GmsProbeTarget]


def test_parse_config_names_its_origin() -> None:
    with pytest.raises(ConfigError, match=r"^\(top level\): config must be a YAML mapping$"):
        parse_config([])
    with pytest.raises(ConfigError, match=r"^\(top level\): reload must be a YAML mapping$"):
        parse_config([], origin="reload")


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    path.write_text(
        "targets:\n"
        "  - name: cs\n"
        "    source: context_service\n"
        "    url: https://socialminer.example.com\n"
        "    basic_auth: {username: admin, password: pw}\n"
    )
    cfg = load_config(path)
    assert [(t.name, t.source) for t in cfg.targets] == [("cs", "context_service")]
    assert isinstance(cfg.targets[0], context_service.ContextServiceTarget)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match=f"{path} must be a YAML mapping"):
        load_config(str(path))
