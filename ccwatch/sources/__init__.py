"""The source registry: one entry per vendor API, keyed by the config's ``source:`` value.

Adding a vendor means one module under ``ccwatch/sources/`` and one line here.

The config model, whose ``targets`` is the union of the sources' target models, is built
here and handed to :mod:`ccwatch.config`, which imports no source. :func:`load_config`
and :func:`parse_config` are the config loader's entry points with that model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from ccwatch import config
from ccwatch.sources import (
    alvaria_context_cookies,
    context_service,
    ece,
    genesys_services,
    gms_probe,
)
from ccwatch.sources.base import Source

SOURCES: Final[Mapping[str, Source]] = MappingProxyType(
    {
        source.name: source
        for source in (
            ece.SOURCE,
            context_service.SOURCE,
            genesys_services.SOURCE,
            gms_probe.SOURCE,
            alvaria_context_cookies.SOURCE,
        )
    }
)


#: The top-level config model of every registered source.
CONFIG_MODEL: Final = config.config_model([source.config_model for source in SOURCES.values()])


def load_config(path: str | os.PathLike[str]) -> config.ConfigBase:
    """Read, parse and validate a config file (see :func:`ccwatch.config.load_config`)."""
    return config.load_config(path, CONFIG_MODEL)


def parse_config(data: Any, *, origin: str = "config") -> config.ConfigBase:
    """Validate loaded YAML data (see :func:`ccwatch.config.parse_config`)."""
    return config.parse_config(data, CONFIG_MODEL, origin=origin)


def all_subject_labels() -> tuple[str, ...]:
    """Every source's subject labels, in registry order: the poll-health label set."""
    labels: list[str] = []
    for source in SOURCES.values():
        labels.extend(label for label in source.subject_labels if label not in labels)
    return tuple(labels)
