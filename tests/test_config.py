"""Configuration: one invalid file per rule, each with its expected message."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccwatch.config import format_duration, parse_duration
from ccwatch.errors import ConfigError
from ccwatch.sources import load_config, parse_config
from ccwatch.sources.ece import ENDPOINTS, EceTarget

TESTDATA = Path(__file__).parent / "testdata" / "config"
INVALID = sorted((TESTDATA / "invalid").glob("*.yml"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: ...'"
    return first.removeprefix("# expect: ")


def test_there_is_an_invalid_file_per_rule() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_config_names_key_path_and_problem(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected_message(path) in str(info.value)


def test_contract_example_is_valid(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed at load time\n")
    text = (TESTDATA / "valid" / "ece_example.yml").read_text().replace("CA_FILE", str(ca))
    path = tmp_path / "ccwatch.yml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.web.listen_address == "0.0.0.0:9865"
    (target,) = cfg.targets
    assert isinstance(target, EceTarget)
    assert target.name == "ece-east"
    assert target.entry_points == [1000, 1001]
    assert list(target.endpoints) == list(ENDPOINTS)
    assert cfg.interval_of(target) == 10.0
    assert cfg.timeout_of(target) == 5.0
    assert target.tls_config is not None
    assert target.tls_config.ca_file == str(ca)
    assert cfg.max_response_size_of(target) == 1024 * 1024


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(
        "bogus: 1\ndefaults: {interval: 1x}\n"
        "targets:\n  - {name: a, source: ece, url: 'ftp://x', entry_points: [1]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = info.value.errors
    assert any(line.startswith("bogus: ") for line in lines)
    assert any(line.startswith("defaults.interval: ") for line in lines)
    assert any(line.startswith("targets[0].url: ") for line in lines)


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCWATCH_DEFAULTS__INTERVAL", "1m")
    monkeypatch.setenv("CCWATCH_WEB__LISTEN_ADDRESS", "127.0.0.1:19865")
    cfg = parse_config(
        {
            "defaults": {"interval": "15s", "timeout": "3s"},
            "targets": [{"name": "a", "source": "ece", "url": "http://x", "entry_points": [1]}],
        }
    )
    assert cfg.defaults.interval == 60.0
    assert cfg.defaults.timeout == 3.0  # the file's value where the environment is silent
    assert cfg.web.listen_address == "127.0.0.1:19865"


def test_bad_environment_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCWATCH_DEFAULTS__TIMEOUT", "soon")
    with pytest.raises(ConfigError, match=r"defaults\.timeout: invalid duration 'soon'"):
        parse_config(
            {"targets": [{"name": "a", "source": "ece", "url": "http://x", "entry_points": [1]}]}
        )


def test_secret_read_from_file_is_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cr3t-value\n")
    cfg = parse_config(
        {
            "targets": [
                {
                    "name": "a",
                    "source": "ece",
                    "url": "http://x",
                    "entry_points": [1],
                    "basic_auth": {"username": "u", "password_file": str(secret)},
                }
            ]
        }
    )
    auth = cfg.targets[0].basic_auth
    assert auth is not None
    assert auth.password is not None
    assert auth.password.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t" not in repr(cfg)
    assert "s3cr3t" not in str(cfg.model_dump())


def test_timeout_defaults_to_at_most_the_interval() -> None:
    cfg = parse_config(
        {
            "defaults": {"timeout": "5s"},
            "targets": [
                {
                    "name": "a",
                    "source": "ece",
                    "url": "http://x",
                    "entry_points": [1],
                    "interval": "2s",
                }
            ],
        }
    )
    assert cfg.timeout_of(cfg.targets[0]) == 2.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        ("2w", 1209600.0),
    ],
)
def test_durations_as_in_prometheus(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "15", "1.5s", "s", "1m1h", "-1s", "15 s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_the_config_module_imports_no_source() -> None:
    """ccwatch.config is a leaf: the registry hands it the target models."""
    import subprocess
    import sys

    code = (
        "import sys, ccwatch.config\n"
        "print(sorted(m for m in sys.modules if m.startswith('ccwatch')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "ccwatch.config" in out
    assert "ccwatch.sources" not in out
    assert "ccwatch.http" not in out


def test_the_registry_hands_its_union_to_the_loader() -> None:
    from ccwatch import config
    from ccwatch.sources import CONFIG_MODEL, SOURCES

    assert config.source_names(CONFIG_MODEL) == set(SOURCES)
    only_ece = config.config_model([EceTarget])
    assert config.source_names(only_ece) == {"ece"}
    data = {"targets": [{"name": "a", "source": "gms_probe", "url": "http://x"}]}
    with pytest.raises(ConfigError, match="unknown source 'gms_probe'; known sources: ece"):
        config.parse_config(data, only_ece)


def test_reserved_labels_cover_every_label_ccwatch_writes() -> None:
    from ccwatch.collector import core_families
    from ccwatch.config import RESERVED_LABELS
    from ccwatch.sources import SOURCES, all_subject_labels

    families = [*core_families(all_subject_labels())]
    for source in SOURCES.values():
        families.extend(source.families)
    written = {label for family in families if "target" in family.labels for label in family.labels}
    assert written <= RESERVED_LABELS, written - RESERVED_LABELS
    # the issue's list, and what Prometheus adds
    assert {"job", "instance", "name", "status", "collection"} <= RESERVED_LABELS


def test_thresholds_default_per_source_and_override_per_target() -> None:
    cfg = parse_config(
        {
            "defaults": {"thresholds": {"ece_queue_depth": 12, "stale_intervals": 4}},
            "targets": [
                {
                    "name": "sales",
                    "source": "ece",
                    "url": "http://127.0.0.1:1/system",
                    "entry_points": [1],
                    "thresholds": {"ece_queue_depth": 8, "ece_wait_time": "2m"},
                },
                {
                    "name": "support",
                    "source": "ece",
                    "url": "http://127.0.0.1:1/system",
                    "entry_points": [2],
                    "thresholds": {"ece_availability_objective": "99.5%"},
                },
                {
                    "name": "gms",
                    "source": "genesys_services",
                    "url": "http://127.0.0.1:1",
                    "customer_ids": ["A"],
                },
            ],
        }
    )
    sales, support, gms = cfg.targets
    assert dict(cfg.thresholds_of(sales)) == {
        "ece_queue_depth": 8,
        "ece_wait_time_seconds": 120,
        "ece_availability_objective": 0.99,
        "ece_staffed_availability_objective": 0.98,
        "poll_failing_ratio": 0.2,
        "stale_intervals": 4,
    }
    assert dict(cfg.thresholds_of(support))["ece_queue_depth"] == 12
    assert dict(cfg.thresholds_of(support))["ece_availability_objective"] == pytest.approx(0.995)
    assert dict(cfg.thresholds_of(gms)) == {
        "genesys_oldest_active_service_age_seconds": 86400,
        "poll_failing_ratio": 0.2,
        "stale_intervals": 4,
    }


def test_calendars_and_labels_of_the_issue_example_are_valid() -> None:
    cfg = parse_config(
        {
            "calendars": {
                "emea-business": {
                    "timezone": "Europe/Berlin",
                    "hours": {"mon-fri": ["08:00-18:00"], "sat": ["09:00-13:00"]},
                    "holidays": {
                        "country": "DE",
                        "subdivision": "BY",
                        "categories": ["public", "catholic"],
                    },
                    "closed": ["2026-12-24", "2026-12-31"],
                },
                "always": {"hours": {"mon-sun": ["00:00-24:00"]}},
                "night": {"hours": {"mon-fri": "22:00-06:00"}, "opening_grace": "0m"},
            },
            "targets": [
                {
                    "name": "ece-munich",
                    "source": "ece",
                    "url": "http://127.0.0.1:1/system",
                    "entry_points": [1000, 1001],
                    "calendar": "emea-business",
                    "entry_point_calendars": {1001: "always"},
                    "labels": {"team": "sales", "site": "munich"},
                    "thresholds": {"ece_queue_depth": 8, "ece_wait_time": "2m"},
                }
            ],
        }
    )
    (target,) = cfg.targets
    assert target.calendar_of({"entry_point": "1000"}) == "emea-business"
    assert target.calendar_of({"entry_point": "1001"}) == "always"
    assert target.labels == {"team": "sales", "site": "munich"}
    assert cfg.calendars["emea-business"].opening_grace == 300
    assert cfg.calendars["night"].opening_grace == 0
    # every calendar builds: the Munich one is closed on a Bavarian holiday (Epiphany)
    import datetime

    munich = cfg.calendars["emea-business"].build("emea-business")
    epiphany = datetime.datetime(2026, 1, 6, 10, 0, tzinfo=datetime.UTC).timestamp()
    assert not munich.is_open(epiphany)
    assert munich.is_open(epiphany - 86400 * 7)  # the Tuesday before, 11:00 in Berlin
    assumption = datetime.datetime(2026, 8, 15, 8, 0, tzinfo=datetime.UTC).timestamp()
    assert not munich.is_open(assumption)  # a Saturday, 10:00 in Berlin: catholic category
    assert munich.is_open(assumption - 86400 * 7)  # the Saturday before


@pytest.mark.parametrize(
    ("categories", "open_on_assumption_day"), [(None, True), (["public", "catholic"], False)]
)
def test_holiday_categories_reach_the_calendar(
    categories: list[str] | None, open_on_assumption_day: bool
) -> None:
    """Bavaria's Assumption Day is in the holidays package's catholic category: Munich is
    closed on it only with ``categories: [public, catholic]``."""
    import datetime

    holidays: dict[str, object] = {"country": "DE", "subdivision": "BY"}
    if categories is not None:
        holidays["categories"] = categories
    cfg = parse_config(
        {
            "calendars": {
                "munich-chat": {
                    "timezone": "Europe/Berlin",
                    "hours": {"mon-fri": ["08:00-18:00"], "sat": ["09:00-13:00"]},
                    "holidays": holidays,
                }
            },
            "targets": [
                {"name": "a", "source": "ece", "url": "http://x", "entry_points": [1]},
            ],
        }
    )
    munich = cfg.calendars["munich-chat"].build("munich-chat")
    assert munich.holiday_categories == (None if categories is None else tuple(categories))
    berlin = datetime.timezone(datetime.timedelta(hours=2))  # CEST in August
    assumption = datetime.datetime(2028, 8, 15, 10, 0, tzinfo=berlin).timestamp()  # a Tuesday
    assert munich.is_open(assumption) is open_on_assumption_day
    assert munich.is_open(assumption - 86400)  # Monday 14 August
    whit_monday = datetime.datetime(2028, 6, 5, 10, 0, tzinfo=berlin).timestamp()
    assert not munich.is_open(whit_monday)  # a public holiday, with or without categories


def test_a_label_name_with_a_trailing_newline_is_refused() -> None:
    target = {"name": "a", "source": "ece", "url": "http://127.0.0.1:1/system"}
    with pytest.raises(ConfigError, match=r"targets\[0\]\.labels: 'team\\n' is not a Prometheus"):
        parse_config({"targets": [{**target, "entry_points": [1], "labels": {"team\n": "x"}}]})


def test_the_objective_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCWATCH_DEFAULTS__THRESHOLDS__ECE_AVAILABILITY_OBJECTIVE", "0.995")
    target = {"name": "a", "source": "ece", "url": "http://127.0.0.1:1/system"}
    cfg = parse_config({"targets": [{**target, "entry_points": [1]}]})
    assert cfg.defaults.thresholds.ece_availability_objective == pytest.approx(0.995)
    monkeypatch.setenv("CCWATCH_DEFAULTS__THRESHOLDS__ECE_AVAILABILITY_OBJECTIVE", "99.9%")
    cfg = parse_config({"targets": [{**target, "entry_points": [1]}]})
    assert cfg.defaults.thresholds.ece_availability_objective == pytest.approx(0.999)


def test_intervals_below_a_source_floor_are_warned_about_not_refused() -> None:
    target = {"name": "a", "source": "ece", "url": "http://127.0.0.1:1/system"}
    cfg = parse_config(
        {
            "defaults": {"interval": "2s"},
            "targets": [
                {**target, "entry_points": [1, 2], "interval": "1s"},
                {**target, "name": "b", "entry_points": [3]},
                {**target, "name": "c", "entry_points": [4], "interval": "5s"},
            ],
        }
    )
    assert cfg.warnings() == [
        "targets[0].interval: 1s for ece target 'a' is below the floor of 5s: "
        "600 requests a minute to ECE (2 entry points x 5 endpoints)",
        "defaults.interval: 2s for ece target 'b' is below the floor of 5s: "
        "150 requests a minute to ECE (1 entry points x 5 endpoints)",
    ]
