"""The scrape-time store: exposition formats, escaping, removal."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from ccwatch.collector import (
    ELLIPSIS,
    MAX_DETAIL_CHARS,
    MAX_LABEL_CHARS,
    CappedReading,
    JobRenderer,
    MetricStore,
    SampleError,
    SampleRenderer,
    cap,
    cap_fields,
    check_samples,
    core_families,
)
from ccwatch.exposition import Family, format_value, label_text
from ccwatch.scheduler import Job


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


# --------------------------------------------------------------------------- rendering


def rendering_store() -> MetricStore:
    s = MetricStore()
    for family in core_families(("entry_point", "customer_id")):
        s.register(family)
    s.register(Family("v_state", "gauge", "A state set.", ("target", "entry_point", "state")))
    s.register(Family("v_plain", "gauge", "A value.", ("target", "entry_point")))
    return s


def job(**subject: str) -> Job:
    async def poll() -> Any:
        raise AssertionError("not polled")

    return Job(
        id=7,
        source="test",
        target="t",
        endpoint="e",
        subject=subject,
        subject_labels=(("entry_point",), ("entry_point", "customer_id")),
        interval=15.0,
        timeout=5.0,
        poll=poll,
    )


def test_bind_leaves_empty_subject_labels_out_of_the_poll_series() -> None:
    render = JobRenderer(rendering_store())
    j = job(entry_point="1000")
    shared: dict[str, str] = {}
    render.bind(j, shared)
    assert j.poll_labels == 'target="t",endpoint="e",entry_point="1000"'  # no customer_id=""
    assert j.vendor_labels == 'target="t",entry_point="1000"'
    assert j.filled == 2
    other = job(entry_point="1000")
    render.bind(other, shared)
    assert other.vendor_labels is j.vendor_labels  # one string per subject


def test_samples_as_data_are_rendered_with_the_jobs_labels() -> None:
    s = rendering_store()
    render = JobRenderer(s)
    j = job(entry_point="1000")
    render.bind(j)
    samples = [("v_state", ('a"b',), 1.0), ("v_state", ("c",), 0.0), ("v_plain", (), 2.5)]
    render.success(j, samples, 0.125, 1000.0)
    families = {f.name: f for f in text_string_to_metric_families(s.render().decode())}
    assert [(x.labels, x.value) for x in families["v_state"].samples] == [
        ({"target": "t", "entry_point": "1000", "state": 'a"b'}, 1.0),
        ({"target": "t", "entry_point": "1000", "state": "c"}, 0.0),
    ]
    assert families["v_plain"].samples[0].value == 2.5
    assert families["ccwatch_poll_success"].samples[0].labels == {
        "target": "t",
        "endpoint": "e",
        "entry_point": "1000",
    }
    render.failure(j, 0.5)  # the vendor series go
    assert "v_state" not in s.render().decode()


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (("v_nope", (), 1.0), "no such metric family"),
        (("v_state", (), 1.0), "values"),
        (("v_plain", ("x",), 1.0), "values"),
    ],
)
def test_samples_that_do_not_fit_their_family_are_refused(
    sample: tuple[str, tuple[str, ...], float], message: str
) -> None:
    s = rendering_store()
    families = {f.name: f for f in s.families()}
    with pytest.raises(SampleError, match=message):
        check_samples(families, [sample], ("target", "entry_point"))
    render = JobRenderer(s)
    j = job(entry_point="1")
    render.bind(j)
    with pytest.raises((SampleError, KeyError)):  # at poll time: reason internal
        render.success(j, [sample], 0.1, 1.0)


def test_check_samples_wants_the_filled_in_labels_first() -> None:
    families = {f.name: f for f in rendering_store().families()}
    with pytest.raises(SampleError, match="do not start"):
        check_samples(families, [("v_plain", (), 1.0)], ("target", "customer_id"))


def test_the_label_text_cache_is_bounded() -> None:
    s = rendering_store()
    renderer = SampleRenderer(s)
    for i in range(SampleRenderer.MAX_CACHED + 10):
        renderer.labels_after("v_state", 2, (str(i),))
    assert len(renderer._extra) <= SampleRenderer.MAX_CACHED


# --------------------------------------------------------------------------- vendor strings


def test_cap_cuts_a_long_string_and_marks_the_cut() -> None:
    assert cap("abc", 3) == "abc"
    assert cap("abcd", 3) == "ab" + ELLIPSIS
    assert cap("", 3) == ""
    long = "x" * 10_000
    assert cap(long) == "x" * (MAX_LABEL_CHARS - 1) + ELLIPSIS
    assert len(cap(long, MAX_DETAIL_CHARS)) == MAX_DETAIL_CHARS
    short = {"a": "x", "n": 3}
    assert cap_fields(short, 3) is short  # nothing cut: the very mapping
    assert cap_fields({"a": "xxxx", "n": 3, "b": "y"}, 3) == {
        "a": "xx" + ELLIPSIS,
        "n": 3,
        "b": "y",
    }


def test_a_long_label_value_is_capped_not_cached_and_reported() -> None:
    s = rendering_store()
    render = JobRenderer(s)
    j = job(entry_point="1000")
    render.bind(j)
    huge = "s" * 600_000
    assert render.success(j, [("v_state", (huge,), 1.0), ("v_plain", (), 2.0)], 0.1, 1.0)
    text = s.render().decode()
    assert len(text) < 20_000
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [sample] = families["v_state"].samples
    assert sample.labels["state"] == "s" * (MAX_LABEL_CHARS - 1) + ELLIPSIS
    # the label text cache keeps no key that holds the whole string
    assert not [key for key in render.samples._extra if huge in key[2]]
    # the next poll with short values says nothing was capped
    assert not render.success(j, [("v_state", ("ok",), 1.0)], 0.1, 2.0)
    limit = "s" * MAX_LABEL_CHARS
    assert not render.success(j, [("v_state", (limit,), 1.0)], 0.1, 3.0)  # at the cap: kept
    assert f'state="{limit}"' in s.render().decode()


def test_the_sample_renderer_caps_label_values_of_any_sample() -> None:
    s = rendering_store()
    renderer = SampleRenderer(s)
    lines = renderer.lines([("v_state", ("z" * 5000,), 1.0)], 'target="t",entry_point="1"', 2)
    value = "z" * (MAX_LABEL_CHARS - 1) + ELLIPSIS
    assert lines["v_state"] == f'v_state{{target="t",entry_point="1",state="{value}"}} 1\n'
    assert renderer.capped


class _Reading:
    def __init__(self, state: str, with_describe: bool = True) -> None:
        self.state = state
        self.with_describe = with_describe

    def samples(self) -> list[tuple[str, tuple[str, ...], float]]:
        return [("v_state", (self.state,), 1.0), ("v_plain", (), 2.0)]

    def watched(self) -> dict[str, str]:
        return {"state": self.state, "other": "short"}

    def __getattr__(self, name: str) -> Any:
        if name == "describe" and self.__dict__["with_describe"]:
            return lambda: f"state {self.state}"
        raise AttributeError(name)


def test_a_capped_reading_shows_what_was_exported() -> None:
    huge = "h" * 600_000
    reading = CappedReading(_Reading(huge))
    label = "h" * (MAX_LABEL_CHARS - 1) + ELLIPSIS
    assert list(reading.samples()) == [("v_state", (label,), 1.0), ("v_plain", (), 2.0)]
    assert reading.watched() == {"state": label, "other": "short"}
    describe = reading.describe
    assert describe() == ("state " + huge)[: MAX_DETAIL_CHARS - 1] + ELLIPSIS
    assert reading.state is huge  # any other attribute is the reading's own
    bare = CappedReading(_Reading(huge, with_describe=False))
    assert getattr(bare, "describe", None) is None  # no describe() of its own either
