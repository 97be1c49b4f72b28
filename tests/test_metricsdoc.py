"""The README documents every metric family ccwatch registers, in one table."""

from __future__ import annotations

from pathlib import Path

from ccwatch.metricsdoc import BEGIN, END, families, replace_in, table

README = Path(__file__).parent.parent / "README.md"


def test_readme_table_is_current() -> None:
    text = README.read_text()
    assert BEGIN in text
    assert END in text
    assert replace_in(text) == text, "run: python -m ccwatch.metricsdoc --write README.md"


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
