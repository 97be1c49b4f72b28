"""The source registry: one entry per vendor API, keyed by the config's ``source:`` value.

Adding a vendor means one module under ``ccwatch/sources/`` and one line here.
"""

from __future__ import annotations

from typing import Final

from ccwatch.sources import (
    alvaria_context_cookies,
    context_service,
    ece,
    genesys_services,
    gms_probe,
)
from ccwatch.sources.base import Source

SOURCES: Final[dict[str, Source]] = {
    source.name: source
    for source in (
        ece.SOURCE,
        context_service.SOURCE,
        genesys_services.SOURCE,
        gms_probe.SOURCE,
        alvaria_context_cookies.SOURCE,
    )
}


def all_subject_labels() -> tuple[str, ...]:
    """Every source's subject labels, in registry order: the poll-health label set."""
    labels: list[str] = []
    for source in SOURCES.values():
        labels.extend(label for label in source.subject_labels if label not in labels)
    return tuple(labels)
