"""The scrape-time store: exposition formats, escaping, removal."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from ccwatch.collector import MetricStore
from ccwatch.exposition import Family, format_value, label_text


def store() -> MetricStore:
    s = MetricStore()
    s.register(Family("x_total", "counter", 'Things, "quoted"\nand a newline.', ("a",)))
    s.register(Family("y", "gauge", "A gauge.", ("a",)))
    s.register(Family("empty", "gauge", "Never set.", ()))
    return s


def test_text_format_round_trips_and_escapes() -> None:
    s = store()
    odd = label_text([("a", 'q"b\\c')])
    newline = label_text([("a", "line\nbreak")])
    s.set("x_total", 1, ("x_total{" + odd + "} 3\n").encode())
    s.set("y", 1, ("y{" + newline + "} " + format_value(0.25) + "\n").encode())
    text = s.render().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["x"].type == "counter"
    assert families["x"].samples[0].labels == {"a": 'q"b\\c'}
    assert families["y"].samples[0].labels == {"a": "line\nbreak"}
    assert families["y"].samples[0].value == 0.25
    assert "empty" not in families  # a family without samples is left out
    assert "process_cpu_seconds_total" in text


def test_openmetrics_names_counters_without_total_and_ends_with_eof() -> None:
    s = store()
    s.set("x_total", 1, b'x_total{a="1"} 3\n')
    text = s.render(openmetrics=True).decode()
    assert "# TYPE x counter" in text
    assert text.endswith("# EOF\n")
    assert text.count("# EOF") == 1
    families = {f.name: f for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
    assert families["x"].samples[0].value == 3


def test_delete_and_forget_remove_series() -> None:
    s = store()
    s.set("y", 1, b'y{a="1"} 1\n')
    s.set("y", 2, b'y{a="2"} 2\n')
    s.set("x_total", 2, b'x_total{a="2"} 2\n')
    s.delete("y", 1)
    text = s.render().decode()
    assert 'y{a="1"}' not in text
    assert 'y{a="2"}' in text
    s.forget(2)
    text = s.render().decode()
    assert "y{" not in text
    assert "x_total{" not in text


def test_format_value() -> None:
    assert format_value(3) == "3"
    assert format_value(3.0) == "3"
    assert format_value(0.5) == "0.5"
    assert format_value(float("nan")) == "NaN"
    assert format_value(float("inf")) == "+Inf"
    assert format_value(float("-inf")) == "-Inf"
    assert format_value(1795370529.076141) == "1795370529.076141"


def test_large_families_come_in_bounded_chunks_with_one_header() -> None:
    from ccwatch.collector import CHUNK_SERIES

    s = store()
    count = CHUNK_SERIES * 2 + 7
    for key in range(count):
        s.set("y", key, f'y{{a="{key}"}} {key}\n'.encode())
    chunks = list(s.chunks())
    family_chunks = [c for c in chunks if b"y{" in c]
    assert len(family_chunks) == 3
    assert all(c.count(b"\n") <= CHUNK_SERIES + 2 for c in family_chunks)
    text = b"".join(chunks).decode()
    assert text.count("# TYPE y gauge") == 1
    samples = next(f for f in text_string_to_metric_families(text) if f.name == "y").samples
    assert sorted(int(x.value) for x in samples) == list(range(count))
