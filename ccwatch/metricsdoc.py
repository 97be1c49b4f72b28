"""The metrics table of docs/metrics.md, generated from the registered metric families.

``python -m ccwatch.metricsdoc`` prints it; ``--write docs/metrics.md`` replaces the table
between the ``<!-- metrics-table -->`` markers. A test keeps docs/metrics.md in step.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ccwatch.collector import core_families
from ccwatch.exposition import Family
from ccwatch.sources import SOURCES, all_subject_labels

BEGIN = "<!-- metrics-table -->"
END = "<!-- /metrics-table -->"
#: The document that holds the table, relative to the repository root.
DOCUMENT = "docs/metrics.md"


def families() -> list[tuple[str, Family]]:
    """(where it comes from, family) for every family ccwatch registers."""
    out = [("ccwatch", family) for family in core_families(all_subject_labels())]
    for source in SOURCES.values():
        out.extend((source.name, family) for family in source.families)
    return out


def table() -> str:
    rows = [
        "| metric | labels | type | source | meaning |",
        "|---|---|---|---|---|",
    ]
    for origin, family in families():
        labels = ", ".join(f"`{label}`" for label in family.labels) or "none"
        meaning = family.help.replace("|", "\\|")
        rows.append(f"| `{family.name}` | {labels} | {family.type} | {origin} | {meaning} |")
    rows.append(
        "| `process_*`, `python_info` | | | ccwatch | the process's CPU, memory, file "
        "descriptors and Python version, from prometheus_client |"
    )
    return "\n".join(rows)


def replace_in(text: str) -> str:
    block = f"{BEGIN}\n{table()}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.replace(BEGIN, block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--write", metavar="FILE", help=f"update the table in FILE (the table's home: {DOCUMENT})"
    )
    args = parser.parse_args()
    if args.write:
        path = Path(args.write)
        path.write_text(replace_in(path.read_text()))
    else:
        print(table())


if __name__ == "__main__":
    main()
