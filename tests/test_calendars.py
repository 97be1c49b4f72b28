"""Opening-hours calendars: parsing, open/closed, DST, holidays, grace and the minute cache."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping, Sequence

import pytest

from ccwatch.calendars import (
    DAYS,
    Calendar,
    OpeningHours,
    TimeRange,
    check_holiday_categories,
    check_holidays,
    check_timezone,
    parse_days,
    parse_hours,
    parse_range,
)

BERLIN = "Europe/Berlin"
# 2026-01-05 is a Monday; 2026-01-06 (Tue) is Epiphany, a holiday in Bavaria only


def ts(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    tz: str = BERLIN,
) -> float:
    """Unix time of a local wall-clock time (fold=0 for ambiguous times)."""
    zone = check_timezone(tz)
    return datetime.datetime(year, month, day, hour, minute, second, tzinfo=zone).timestamp()


def calendar(
    hours: Mapping[str, str | Sequence[str]],
    *,
    timezone: str = BERLIN,
    holidays: tuple[str, str | None] | None = None,
    holiday_categories: Sequence[str] | None = None,
    closed: Sequence[datetime.date] = (),
    opening_grace: float = 300.0,
) -> Calendar:
    """A calendar named ``test`` with the given hours."""
    return Calendar(
        "test",
        week=parse_hours(hours),
        timezone=timezone,
        holidays=holidays,
        holiday_categories=holiday_categories,
        closed=closed,
        opening_grace=opening_grace,
    )


def open_minutes(cal: Calendar, day: datetime.date, tz: str = BERLIN) -> int:
    """Open real minutes over the local day, stepping over its UTC span."""
    start = int(ts(day.year, day.month, day.day, tz=tz))
    nxt = day + datetime.timedelta(days=1)
    end = int(ts(nxt.year, nxt.month, nxt.day, tz=tz))
    return sum(cal.is_open(t) for t in range(start, end, 60))


# --- parse_days ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "days"),
    [
        ("mon", (0,)),
        ("sun", (6,)),
        ("mon-fri", (0, 1, 2, 3, 4)),
        ("sat-sun", (5, 6)),
        ("fri-mon", (0, 4, 5, 6)),
        ("sun-mon", (0, 6)),
        ("mon,wed,fri", (0, 2, 4)),
        ("mon-wed,fri", (0, 1, 2, 4)),
        ("sat,mon-tue", (0, 1, 5)),
        ("mon-sun", (0, 1, 2, 3, 4, 5, 6)),
        ("  mon-fri\n", (0, 1, 2, 3, 4)),
    ],
)
def test_parse_days(spec: str, days: tuple[int, ...]) -> None:
    assert parse_days(spec) == days


def test_days_index_is_weekday() -> None:
    assert DAYS[datetime.date(2026, 1, 5).weekday()] == "mon"
    assert len(DAYS) == 7


def test_parse_days_unknown_day_message() -> None:
    with pytest.raises(ValueError, match=r"^unknown day 'fry' in 'mon-fry': days are ") as e:
        parse_days("mon-fry")
    assert "mon, tue, wed, thu, fri, sat, sun" in str(e.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty day spec"),
        ("   ", "empty day spec"),
        ("Mon", "unknown day 'Mon'"),
        ("monday", "unknown day 'monday'"),
        ("mon, tue", "unknown day ' tue'"),
        ("mon - fri", "unknown day 'mon '"),
        ("mon-", "unknown day ''"),
        ("mon,,fri", "bad day item ''"),
        ("mon,", "bad day item ''"),
        ("mon-wed-fri", "bad day item 'mon-wed-fri'"),
        ("mon-mon", "bad day range 'mon-mon'"),
        ("mon,mon", "day 'mon' listed twice"),
        ("mon-fri,wed", "day 'wed' listed twice"),
        ("fri-tue,mon", "day 'mon' listed twice"),
    ],
)
def test_parse_days_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_days(spec)


# --- parse_range --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end", "shown"),
    [
        ("08:00-18:00", 480, 1080, "08:00-18:00"),
        ("00:00-24:00", 0, 1440, "00:00-24:00"),
        ("22:00-24:00", 1320, 1440, "22:00-24:00"),
        ("22:00-06:00", 1320, 360, "22:00-06:00"),
        ("23:59-00:01", 1439, 1, "23:59-00:01"),
        ("22:00-00:00", 1320, 1440, "22:00-24:00"),  # ends at midnight
        (" 09:30-13:15 ", 570, 795, "09:30-13:15"),
    ],
)
def test_parse_range(text: str, start: int, end: int, shown: str) -> None:
    r = parse_range(text)
    assert r == TimeRange(start, end)
    assert str(r) == shown
    assert r.overnight == (end < start)


@pytest.mark.parametrize(
    "text",
    ["08:00-24:30", "25:00-26:00", "08:00-25:00", "08:60-09:00", "24:00-06:00", "08:00-09:99"],
)
def test_parse_range_bad_time(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^bad time range '{text}': hours are 00-23"):
        parse_range(text)


@pytest.mark.parametrize(
    "text",
    ["8-18", "", "8:00-18:00", "08:00 - 18:00", "08:00", "08.00-18.00", "٠٨:00-18:00", "a-b"],
)
def test_parse_range_malformed(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected HH:MM-HH:MM, such as 08:00-18:00$") as e:
        parse_range(text)
    assert repr(text) in str(e.value)


@pytest.mark.parametrize("text", ["08:00-08:00", "00:00-00:00", "23:59-23:59"])
def test_parse_range_empty(text: str) -> None:
    with pytest.raises(ValueError, match="for a whole day write 00:00-24:00"):
        parse_range(text)


@pytest.mark.parametrize(("start", "end"), [(-1, 60), (1440, 60), (0, 0), (0, 1441), (60, 60)])
def test_time_range_checked(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="range"):
        TimeRange(start, end)


# --- parse_hours --------------------------------------------------------------------------


def test_parse_hours_merges_and_sorts() -> None:
    week = parse_hours(
        {"mon-fri": "13:00-18:00", "mon": ["08:00-12:00"], "wed": [], "sat": "22:00-02:00"}
    )
    assert len(week) == 7
    assert [str(r) for r in week[0]] == ["08:00-12:00", "13:00-18:00"]
    assert [str(r) for r in week[2]] == ["13:00-18:00"]
    assert [str(r) for r in week[5]] == ["22:00-02:00"]
    assert week[6] == ()
    assert parse_hours({"mon": ["13:00-14:00", "08:00-12:00"]})[0] == (
        TimeRange(480, 720),
        TimeRange(780, 840),
    )


@pytest.mark.parametrize(
    "hours",
    [
        {"mon": ["08:00-12:00", "12:00-18:00"]},
        {"mon": "22:00-24:00", "tue": "00:00-06:00"},
        {"mon": ["18:00-22:00", "22:00-06:00"], "tue": "06:00-08:00"},
        {"sun": "22:00-06:00", "mon": "06:00-08:00"},
        {"mon-sun": "20:00-08:00"},
        {"mon-sun": "00:00-24:00"},
    ],
)
def test_parse_hours_adjacent_ok(hours: Mapping[str, str | Sequence[str]]) -> None:
    parse_hours(hours)


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        (
            {"mon-fri": ["08:00-18:00", "17:00-19:00"]},
            "mon-fri: 17:00-19:00 overlaps 08:00-18:00 on mon",
        ),
        (
            {"mon-fri": "08:00-18:00", "wed": "17:00-19:00"},
            "wed: 17:00-19:00 overlaps 08:00-18:00 on wed (from mon-fri)",
        ),
        ({"mon": ["08:00-18:00", "08:00-18:00"]}, "mon: 08:00-18:00 overlaps 08:00-18:00 on mon"),
        ({"mon": ["22:00-06:00", "23:00-23:30"]}, "mon: 23:00-23:30 overlaps 22:00-06:00 on mon"),
        (
            {"mon": "22:00-06:00", "tue": "05:00-09:00"},
            "tue: 05:00-09:00 on tue overlaps 22:00-06:00 on mon (from mon)",
        ),
        (
            {"fri": "20:00-08:00", "sat": "07:00-10:00"},
            "sat: 07:00-10:00 on sat overlaps 20:00-08:00 on fri (from fri)",
        ),
        (
            {"mon": "05:00-09:00", "sun": "22:00-06:00"},
            "sun: 22:00-06:00 on sun overlaps 05:00-09:00 on mon (from mon)",
        ),
        (
            {"mon-sun": "00:00-24:00", "sun": "23:00-01:00"},
            "sun: 23:00-01:00 overlaps 00:00-24:00 on sun (from mon-sun)",
        ),
    ],
)
def test_parse_hours_overlap(hours: Mapping[str, str | Sequence[str]], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_hours(hours)


def test_parse_hours_empty() -> None:
    with pytest.raises(ValueError, match=r"^no opening hours: "):
        parse_hours({})


@pytest.mark.parametrize(
    ("hours", "prefix"),
    [
        ({"mon-fry": "08:00-18:00"}, "mon-fry: unknown day 'fry' in 'mon-fry'"),
        ({"mon": "08:00-18:00", "weekend": "10:00-12:00"}, "weekend: unknown day 'weekend'"),
        ({"sat": ["09:00-13:00", "8-18"]}, "sat: bad time range '8-18'"),
        ({"sun": "10:00-10:00"}, "sun: empty range '10:00-10:00'"),
        ({"mon,mon": "10:00-11:00"}, "mon,mon: day 'mon' listed twice"),
    ],
)
def test_parse_hours_error_starts_with_key(
    hours: Mapping[str, str | Sequence[str]], prefix: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(prefix)}"):
        parse_hours(hours)


# --- check_timezone / check_holidays ------------------------------------------------------


def test_check_timezone_ok() -> None:
    assert check_timezone(BERLIN).key == BERLIN
    assert check_timezone("UTC").key == "UTC"


@pytest.mark.parametrize(
    "name", ["Europe/Berln", "", "../etc/passwd", "/etc/passwd", "Europe", "Europe//Berlin"]
)
def test_check_timezone_unknown(name: str) -> None:
    message = f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_timezone(name)


def test_check_holidays_ok() -> None:
    check_holidays("DE", "BY")
    check_holidays("DE", None)


@pytest.mark.parametrize("country", ["XX", "de", "DEU", ""])
def test_check_holidays_unknown_country(country: str) -> None:
    message = (
        f"unknown country {country!r}: use an ISO 3166-1 alpha-2 code that the holidays "
        "package supports, such as DE"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_holidays(country, None)


def test_check_holidays_unknown_subdivision() -> None:
    prefix = "unknown subdivision 'XX' of DE: known subdivisions are BB, BE, BW, BY, "
    with pytest.raises(ValueError, match=f"^{re.escape(prefix)}") as e:
        check_holidays("DE", "XX")
    assert "in all" not in str(e.value)


def test_check_holidays_long_subdivision_list_truncated() -> None:
    with pytest.raises(
        ValueError, match=r"^unknown subdivision 'XX' of US: .*, \.\.\. \(\d+ in all\)$"
    ):
        check_holidays("US", "XX")


def test_check_holiday_categories_ok() -> None:
    check_holiday_categories("DE", ["public", "catholic"])
    check_holiday_categories("DE", ["catholic"])
    check_holiday_categories("US", ["government"])


@pytest.mark.parametrize(
    ("country", "categories", "message"),
    [
        (
            "DE",
            ["public", "catolic"],
            "unknown holiday category 'catolic' of DE: "
            "DE supports catholic, public, school (default public)",
        ),
        # the package's names are lower case
        (
            "DE",
            ["PUBLIC"],
            "unknown holiday category 'PUBLIC' of DE: "
            "DE supports catholic, public, school (default public)",
        ),
        # a category of another country
        ("FR", ["catholic"], "unknown holiday category 'catholic' of FR: FR supports public, "),
        ("DE", [], "no categories: name at least one or leave categories out; DE supports "),
    ],
)
def test_check_holiday_categories_unknown(
    country: str, categories: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        check_holiday_categories(country, categories)


# --- Calendar.is_open ---------------------------------------------------------------------

BUSINESS = {"mon-fri": ["08:00-18:00"], "sat": "09:00-13:00"}


def test_weekday_and_weekend() -> None:
    cal = calendar(BUSINESS)
    assert not cal.is_open(ts(2026, 1, 5, 7, 59, 59))
    assert cal.is_open(ts(2026, 1, 5, 8, 0))
    assert cal.is_open(ts(2026, 1, 5, 17, 59, 59))
    assert not cal.is_open(ts(2026, 1, 5, 18, 0))
    assert cal.is_open(ts(2026, 1, 9, 12, 0))  # fri
    assert cal.is_open(ts(2026, 1, 10, 12, 59))  # sat
    assert not cal.is_open(ts(2026, 1, 10, 13, 0))
    assert not cal.is_open(ts(2026, 1, 11, 12, 0))  # sun
    assert not cal.is_open(ts(2026, 1, 11, 12, 0) + 0.5)


def test_utc_default() -> None:
    cal = Calendar("utc", week=parse_hours({"mon-fri": "08:00-18:00"}))
    assert cal.timezone == "UTC"
    assert cal.opening_grace == 300.0
    assert cal.name == "utc"
    assert not cal.is_open(ts(2026, 1, 5, 7, 59, tz="UTC"))
    assert cal.is_open(ts(2026, 1, 5, 8, 0, tz="UTC"))
    # 07:30 UTC is 08:30 in Berlin
    assert calendar({"mon-fri": "08:00-18:00"}).is_open(ts(2026, 1, 5, 7, 30, tz="UTC"))


def test_dst_spring_forward() -> None:
    day = datetime.date(2026, 3, 29)  # sun: 02:00 jumps to 03:00
    assert open_minutes(calendar({"sun": "02:00-03:00"}), day) == 0
    assert open_minutes(calendar({"sun": "08:00-18:00"}), day) == 600
    assert open_minutes(calendar({"mon-sun": "00:00-24:00"}), day) == 23 * 60
    assert open_minutes(calendar({"sun": "01:00-04:00"}), day) == 120


def test_dst_fall_back() -> None:
    day = datetime.date(2026, 10, 25)  # sun: 03:00 goes back to 02:00
    assert open_minutes(calendar({"sun": "02:00-03:00"}), day) == 120
    assert open_minutes(calendar({"sun": "08:00-18:00"}), day) == 600
    assert open_minutes(calendar({"mon-sun": "00:00-24:00"}), day) == 25 * 60
    first = ts(2026, 10, 25, 2, 30)  # fold=0, CEST
    cal = calendar({"sun": "02:00-03:00"})
    assert cal.is_open(first)
    assert cal.is_open(first + 3600)  # 02:30 again, CET
    assert not cal.is_open(first + 2 * 3600)


def test_overnight() -> None:
    cal = calendar({"mon-fri": "22:00-06:00"})
    assert not cal.is_open(ts(2026, 1, 5, 0, 30))  # mon morning: no sun range
    assert not cal.is_open(ts(2026, 1, 5, 21, 59))
    assert cal.is_open(ts(2026, 1, 5, 22, 0))
    assert cal.is_open(ts(2026, 1, 6, 0, 0))
    assert cal.is_open(ts(2026, 1, 6, 5, 59))
    assert not cal.is_open(ts(2026, 1, 6, 6, 0))
    # friday night into saturday morning
    assert cal.is_open(ts(2026, 1, 9, 23, 0))
    assert cal.is_open(ts(2026, 1, 10, 5, 59))
    assert not cal.is_open(ts(2026, 1, 10, 6, 0))
    assert not cal.is_open(ts(2026, 1, 10, 22, 0))  # sat evening
    assert not cal.is_open(ts(2026, 1, 11, 2, 0))  # sun morning


def test_overnight_sunday_wraps_to_monday() -> None:
    cal = calendar({"sun": "22:00-06:00"})
    assert not cal.is_open(ts(2026, 1, 11, 21, 59))
    assert cal.is_open(ts(2026, 1, 11, 23, 0))
    assert cal.is_open(ts(2026, 1, 12, 5, 59))
    assert not cal.is_open(ts(2026, 1, 12, 6, 0))
    assert not cal.is_open(ts(2026, 1, 12, 23, 0))


def test_bavarian_holiday() -> None:
    by = calendar(BUSINESS, holidays=("DE", "BY"))
    de = calendar(BUSINESS, holidays=("DE", None))
    epiphany = ts(2026, 1, 6, 10, 0)
    assert not by.is_open(epiphany)
    assert de.is_open(epiphany)
    assert by.is_open(ts(2026, 1, 5, 10, 0))
    assert by.is_open(ts(2026, 1, 7, 10, 0))
    assert not by.is_open(ts(2026, 6, 4, 10, 0))  # Corpus Christi
    assert not de.is_open(ts(2026, 1, 1, 10, 0))  # New Year's Day, all of DE
    assert not de.is_open(ts(2026, 12, 25, 10, 0))


def test_holiday_categories_assumption_day_in_munich() -> None:
    """The holidays package files Bavaria's Assumption Day (15 August) under ``catholic``:
    with the default categories Munich is open that day, with ``public, catholic`` not."""
    assumption = ts(2028, 8, 15, 10, 0)  # a Tuesday
    assert DAYS[datetime.date(2028, 8, 15).weekday()] == "tue"
    default = calendar(BUSINESS, holidays=("DE", "BY"))
    catholic = calendar(BUSINESS, holidays=("DE", "BY"), holiday_categories=["public", "catholic"])
    assert default.holiday_categories is None
    assert catholic.holiday_categories == ("public", "catholic")
    assert default.is_open(assumption)
    assert not catholic.is_open(assumption)
    # the public holidays stay: Epiphany 2028 is a Thursday
    assert not catholic.is_open(ts(2028, 1, 6, 10, 0))
    assert catholic.is_open(ts(2028, 8, 14, 10, 0))
    assert catholic.is_open(ts(2028, 8, 16, 10, 0))
    # catholic alone: Assumption Day, but not the public holidays
    only = calendar(BUSINESS, holidays=("DE", "BY"), holiday_categories=["catholic"])
    assert not only.is_open(assumption)
    assert only.is_open(ts(2028, 1, 6, 10, 0))


def test_closed_days_lists_holidays_and_closed_dates() -> None:
    cal = calendar(
        BUSINESS,
        holidays=("DE", "BY"),
        holiday_categories=["public", "catholic"],
        closed=[datetime.date(2027, 12, 24), datetime.date(2027, 8, 15), datetime.date(2026, 1, 2)],
    )
    days = cal.closed_days([2027])
    assert list(days) == sorted(days)
    assert days[datetime.date(2027, 1, 6)] == "Epiphany"
    assert days[datetime.date(2027, 8, 15)] == "Assumption Day; closed"
    assert days[datetime.date(2027, 12, 24)] == "closed"
    assert datetime.date(2026, 1, 2) not in days  # another year
    assert len(days) == 14  # 13 Bavarian holidays with Assumption Day, and 24 December
    # every listed day is closed at 10:00, every other day of the year's weekdays open
    day = datetime.date(2027, 1, 1)
    while day.year == 2027:
        at = ts(day.year, day.month, day.day, 10, 0)
        assert cal.is_open(at) == (day not in days and day.weekday() < 6), day
        day += datetime.timedelta(days=1)
    assert calendar(BUSINESS).closed_days([2027, 2028]) == {}
    assert list(cal.closed_days([2028, 2027])) == sorted(cal.closed_days([2027, 2028]))


def test_closed_dates() -> None:
    cal = calendar(BUSINESS, closed=[datetime.date(2026, 12, 24), datetime.date(2026, 12, 31)])
    assert cal.is_open(ts(2026, 12, 23, 10, 0))
    assert not cal.is_open(ts(2026, 12, 24, 10, 0))
    assert not cal.is_open(ts(2026, 12, 31, 10, 0))
    assert not calendar({"mon-sun": "00:00-24:00"}, closed=[datetime.date(2026, 12, 24)]).is_open(
        ts(2026, 12, 24, 0, 0)
    )


def test_closed_day_cuts_overnight_range() -> None:
    cal = calendar({"mon-fri": "22:00-06:00"}, closed=[datetime.date(2026, 1, 7)])  # wed
    assert cal.is_open(ts(2026, 1, 6, 23, 59))  # tue night, the eve of the closed day
    assert not cal.is_open(ts(2026, 1, 7, 0, 0))  # cut at midnight
    assert not cal.is_open(ts(2026, 1, 7, 3, 0))
    assert not cal.is_open(ts(2026, 1, 7, 22, 0))  # a range starting on the closed day
    assert not cal.is_open(ts(2026, 1, 7, 23, 59))
    assert cal.is_open(ts(2026, 1, 8, 0, 0))  # ... but its tail on thu is open
    assert cal.is_open(ts(2026, 1, 8, 5, 59))
    assert not cal.is_open(ts(2026, 1, 8, 6, 0))
    assert cal.state(ts(2026, 1, 8, 0, 0)) == (True, True)  # opens at midnight: grace


def test_holiday_cuts_overnight_range() -> None:
    cal = calendar({"mon-fri": "22:00-06:00"}, holidays=("DE", "BY"))  # tue 2026-01-06
    assert cal.is_open(ts(2026, 1, 5, 23, 59))
    assert not cal.is_open(ts(2026, 1, 6, 0, 0))
    assert not cal.is_open(ts(2026, 1, 6, 22, 30))
    assert cal.is_open(ts(2026, 1, 7, 1, 0))


# --- grace --------------------------------------------------------------------------------


def test_grace_after_opening() -> None:
    cal = calendar(BUSINESS)
    assert cal.state(ts(2026, 1, 5, 7, 59)) == (False, False)
    assert cal.state(ts(2026, 1, 5, 7, 59, 59)) == (False, False)
    assert cal.state(ts(2026, 1, 5, 8, 0)) == (True, True)
    assert cal.state(ts(2026, 1, 5, 8, 4, 59)) == (True, True)
    assert cal.state(ts(2026, 1, 5, 8, 5)) == (True, False)
    assert cal.state(ts(2026, 1, 5, 18, 0)) == (False, False)


def test_grace_length_follows_setting() -> None:
    cal = calendar(BUSINESS, opening_grace=3600)
    assert cal.state(ts(2026, 1, 5, 8, 59, 59)) == (True, True)
    assert cal.state(ts(2026, 1, 5, 9, 0)) == (True, False)


@pytest.mark.parametrize(
    ("hours", "at"),
    [
        ({"mon": ["08:00-12:00", "12:00-18:00"]}, ts(2026, 1, 5, 12, 0)),
        ({"mon": ["08:00-12:00", "12:00-18:00"]}, ts(2026, 1, 5, 12, 4)),
        ({"mon": "22:00-24:00", "tue": "00:00-06:00"}, ts(2026, 1, 6, 0, 0)),
        ({"mon": ["20:00-22:00", "22:00-06:00"]}, ts(2026, 1, 5, 22, 0)),
        ({"mon": "22:00-06:00"}, ts(2026, 1, 6, 0, 0)),
        ({"sun": "22:00-06:00", "mon": "06:00-08:00"}, ts(2026, 1, 12, 6, 0)),
    ],
)
def test_no_grace_at_joins(hours: Mapping[str, str | Sequence[str]], at: float) -> None:
    assert calendar(hours).state(at) == (True, False)


def test_zero_grace() -> None:
    cal = calendar(BUSINESS, opening_grace=0)
    assert cal.opening_grace == 0.0
    assert cal.state(ts(2026, 1, 5, 8, 0)) == (True, False)
    assert cal.state(ts(2026, 1, 5, 7, 59)) == (False, False)


def test_always_open_never_in_grace() -> None:
    cal = calendar({"mon-sun": ["00:00-24:00"]}, opening_grace=3600)
    for at in [
        ts(2026, 1, 5),  # mon midnight
        ts(2026, 1, 11, 23, 59),
        ts(2026, 1, 12),  # sun -> mon
        ts(2026, 3, 29, 3, 0),  # just after spring forward
        ts(2026, 10, 25, 2, 30) + 3600,  # repeated hour
        ts(2026, 10, 25, 3, 0),
    ]:
        assert cal.state(at) == (True, False)


@pytest.mark.parametrize("grace", [30.0, 90.0, -60.0, 3660.0, math.nan, math.inf])
def test_bad_grace(grace: float) -> None:
    with pytest.raises(ValueError, match="opening_grace must be a whole number of minutes"):
        calendar(BUSINESS, opening_grace=grace)


def test_calendar_checks_arguments() -> None:
    week = parse_hours(BUSINESS)
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Berln'"):
        Calendar("x", week=week, timezone="Europe/Berln")
    with pytest.raises(ValueError, match="unknown country 'XX'"):
        Calendar("x", week=week, holidays=("XX", None))
    with pytest.raises(ValueError, match="unknown subdivision 'XX' of DE"):
        Calendar("x", week=week, holidays=("DE", "XX"))
    with pytest.raises(ValueError, match="unknown holiday category 'catolic' of DE"):
        Calendar("x", week=week, holidays=("DE", "BY"), holiday_categories=["catolic"])
    with pytest.raises(ValueError, match="calendar x: holiday categories without a country"):
        Calendar("x", week=week, holiday_categories=["public"])
    with pytest.raises(ValueError, match="7 days"):
        Calendar("x", week=week[:6])


# --- OpeningHours -------------------------------------------------------------------------


def test_opening_hours_caches_per_minute() -> None:
    hours = OpeningHours(
        {"business": calendar(BUSINESS), "always": calendar({"mon-sun": "00:00-24:00"})}
    )
    assert hours.minute is None
    t = ts(2026, 1, 5, 8, 0, 10)
    first = hours.states(t)
    assert first == {"business": (True, True), "always": (True, False)}
    assert hours.minute == math.floor(t / 60)
    assert hours.states(t + 49) is first  # 08:00:59, same minute
    later = hours.states(t + 50)  # 08:01:00
    assert later is not first
    assert later == first
    assert hours.minute == math.floor(t / 60) + 1
    assert hours.states(ts(2026, 1, 5, 8, 5)) == {
        "business": (True, False),
        "always": (True, False),
    }
    assert set(hours.calendars) == {"business", "always"}


def test_opening_hours_uses_clock() -> None:
    now = [ts(2026, 1, 5, 7, 59, 30)]
    hours = OpeningHours({"business": calendar(BUSINESS)}, clock=lambda: now[0])
    before = hours.states()
    assert before == {"business": (False, False)}
    assert hours.states() is before
    now[0] += 30  # 08:00:00
    assert hours.states() == {"business": (True, True)}
    assert hours.minute == math.floor(now[0] / 60)
    assert hours.states(ts(2026, 1, 5, 12, 0)) == {"business": (True, False)}  # t overrides
