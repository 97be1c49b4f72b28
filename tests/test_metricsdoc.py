"""docs/metrics.md documents every metric family ccwatch registers, in one table."""

from __future__ import annotations

from pathlib import Path

from ccwatch.metricsdoc import BEGIN, DOCUMENT, END, families, replace_in, table

REPO = Path(__file__).parent.parent
METRICS_DOC = REPO / DOCUMENT


def test_metrics_doc_table_is_current() -> None:
    text = METRICS_DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1
    assert text.count(END) == 1
    assert replace_in(text) == text, f"run: python -m ccwatch.metricsdoc --write {DOCUMENT}"


def test_the_readme_links_the_table_instead_of_holding_it() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert BEGIN not in readme
    assert DOCUMENT in readme


def test_every_family_is_documented_with_labels_type_and_meaning() -> None:
    rendered = table()
    names = [family.name for _, family in families()]
    assert len(names) == len(set(names))
    for _, family in families():
        assert f"| `{family.name}` |" in rendered
        assert family.help.strip()
        assert family.name.startswith("ccwatch_")
        assert family.type in ("gauge", "counter")
        assert family.name.endswith("_total") == (family.type == "counter")


def test_vendor_families_say_they_come_from_the_last_poll() -> None:
    for origin, family in families():
        if origin != "ccwatch":
            assert "last" in family.help, family.name
            assert "poll" in family.help, family.name
            assert "target" in family.labels, family.name
