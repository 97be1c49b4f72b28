"""The Prometheus text format's small pieces: families, label text and sample values.

No imports from the rest of ccwatch, so any module can use it without import cycles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its name, type, HELP text and label names (for docs and checks)."""

    name: str
    type: Literal["gauge", "counter"]
    help: str
    labels: tuple[str, ...] = ()


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(pairs: Iterable[tuple[str, str]]) -> str:
    """``[("target", "a")]`` -> ``target="a"``, escaped."""
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs)


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(int(value))
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
