"""Opening-hours calendars: when a contact center is open.

A calendar has weekly opening hours, a time zone, optional public holidays and extra
closed dates. The rules:

- Hours are per weekday, as ranges ``HH:MM-HH:MM`` of *local wall-clock time* in the
  calendar's time zone (:mod:`zoneinfo`, default ``UTC``). ``24:00`` may end a range. A
  range whose end is before its start is *overnight*: ``fri: 22:00-06:00`` is open from
  Friday 22:00 to Saturday 06:00 (and ``sun`` wraps to ``mon``). A range ending at
  ``00:00`` is read as ending at ``24:00``. Ranges that overlap, including an overnight
  tail overlapping the next day's ranges, are a config error; adjacent ranges are fine.
- A Unix time ``t`` is converted with ``datetime.fromtimestamp(t, tz)`` to a local date
  ``D`` and minute of day ``M``. The calendar is open at ``t`` iff ``D`` is not a closed
  day and either a range of ``D``'s weekday covers ``M`` (``start <= M < end``, or
  ``M >= start`` for an overnight range), or an overnight range of the previous weekday
  covers it (``M < end``).
- A public holiday (``holidays.country_holidays(country, subdiv=..., categories=...)``;
  the package's default categories, usually ``public``, unless the calendar names others)
  or a ``closed`` date is closed all day, 00:00 to 24:00 local, whatever the ranges say.
  So an overnight range starting the evening before such a day is cut at midnight; an
  overnight range starting *on* such a day does not open that evening, but its part after
  midnight is open when the next day is an ordinary day. :meth:`Calendar.closed_days`
  lists these days.
- DST follows the wall clock: on a spring-forward day the skipped local times never
  occur (``02:00-03:00`` is never open in Europe/Berlin on 2026-03-29, ``08:00-18:00`` is
  open 10 real hours); on a fall-back day repeated local times occur twice
  (``02:00-03:00`` is open 2 real hours, ``00:00-24:00`` 25 real hours).
- Grace: :meth:`Calendar.state` works per minute ``m = floor(t / 60)`` and returns
  ``(open, in_grace)`` where ``open = is_open(m * 60)`` and ``in_grace`` is true when the
  calendar is open but was closed at some minute among the previous
  ``opening_grace / 60``. A calendar that stays open across midnight or an adjacent-range
  join has no grace there.
"""

from __future__ import annotations

import datetime
import math
import re
import time
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from holidays import HolidayBase

__all__ = [
    "DAYS",
    "Calendar",
    "OpeningHours",
    "TimeRange",
    "Week",
    "check_holiday_categories",
    "check_holidays",
    "check_timezone",
    "parse_days",
    "parse_hours",
    "parse_range",
]

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MINUTES_PER_DAY: Final = 1440
MAX_OPENING_GRACE: Final = 3600.0
SHOWN_SUBDIVISIONS: Final = 20  # an unknown-subdivision message lists at most this many

_DAY_INDEX: Final = {day: i for i, day in enumerate(DAYS)}
_DAY_LIST: Final = ", ".join(DAYS)
_RANGE_RE: Final = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")
_WEEK_MINUTES: Final = 7 * MINUTES_PER_DAY


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Local opening time: minutes after midnight; ``end < start`` means overnight."""

    start: int  # 0..1439
    end: int  # 1..1440

    def __post_init__(self) -> None:
        """Reject out-of-range or empty ranges."""
        if not 0 <= self.start < MINUTES_PER_DAY or not 0 < self.end <= MINUTES_PER_DAY:
            raise ValueError(f"bad time range: start {self.start}, end {self.end} minutes")
        if self.start == self.end:
            raise ValueError(f"empty range {self}; for a whole day write 00:00-24:00")

    @property
    def overnight(self) -> bool:
        """Whether the range ends on the next day."""
        return self.end < self.start

    def __str__(self) -> str:
        """The config form, such as ``08:00-18:00``."""
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


Week = tuple[tuple[TimeRange, ...], ...]  # 7 entries, index = weekday, each sorted by start


def parse_days(spec: str) -> tuple[int, ...]:
    """Parse a day spec (``mon``, ``mon-fri``, ``fri-mon``, ``mon-wed,fri``) to sorted weekdays.

    A range wraps past ``sun``; a day may be named only once.
    """
    text = spec.strip()
    if not text:
        raise ValueError(f"empty day spec: use days such as mon-fri or sat; days are {_DAY_LIST}")
    seen: set[int] = set()
    for item in text.split(","):
        parts = item.split("-")
        if not item or len(parts) > 2:
            raise ValueError(
                f"bad day item {item!r} in {text!r}: use a day or a range such as mon-fri, "
                "separated by commas"
            )
        indexes: list[int] = []
        for part in parts:
            if part not in _DAY_INDEX:
                raise ValueError(f"unknown day {part!r} in {text!r}: days are {_DAY_LIST}")
            indexes.append(_DAY_INDEX[part])
        if len(indexes) == 2:
            first, last = indexes
            if first == last:
                raise ValueError(
                    f"bad day range {item!r} in {text!r}: write {parts[0]} for one day "
                    "or mon-sun for the whole week"
                )
            indexes = [(first + i) % 7 for i in range((last - first) % 7 + 1)]
        for day in indexes:
            if day in seen:
                raise ValueError(f"day {DAYS[day]!r} listed twice in {text!r}")
            seen.add(day)
    return tuple(sorted(seen))


def parse_range(text: str) -> TimeRange:
    """Parse ``HH:MM-HH:MM``: HH 00-23, MM 00-59, ``24:00`` only as the end."""
    s = text.strip()
    match = _RANGE_RE.fullmatch(s)
    if match is None:
        raise ValueError(f"bad time range {text!r}: expected HH:MM-HH:MM, such as 08:00-18:00")
    sh, sm, eh, em = (int(g) for g in match.groups())
    if sh > 23 or sm > 59 or eh > 24 or em > 59 or (eh == 24 and em != 0):
        raise ValueError(
            f"bad time range {text!r}: hours are 00-23 and minutes 00-59 "
            "(24:00 is allowed only as the end)"
        )
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        raise ValueError(f"empty range {text!r}; for a whole day write 00:00-24:00")
    return TimeRange(start, end or MINUTES_PER_DAY)


def _segments(day: int, r: TimeRange) -> list[tuple[int, int]]:
    """Half-open minute-of-week intervals of ``r`` starting on ``day``, wrapped at sun-mon."""
    start = day * MINUTES_PER_DAY + r.start
    end = day * MINUTES_PER_DAY + r.end + (MINUTES_PER_DAY if r.overnight else 0)
    if end <= _WEEK_MINUTES:
        return [(start, end)]
    return [(start, _WEEK_MINUTES), (0, end - _WEEK_MINUTES)]


def parse_hours(hours: Mapping[str, str | Sequence[str]]) -> Week:
    """Parse ``{day spec: range or [ranges]}`` to a :data:`Week`, rejecting overlaps."""
    if not hours:
        raise ValueError(
            'no opening hours: give at least one day spec, such as mon-fri: ["08:00-18:00"]'
        )
    # (key, day, range, segments) of every range accepted so far
    placed: list[tuple[str, int, TimeRange, list[tuple[int, int]]]] = []
    for key, value in hours.items():
        try:
            days = parse_days(key)
            texts = [value] if isinstance(value, str) else list(value)
            ranges = []
            for text in texts:
                if not isinstance(text, str):
                    raise ValueError(f"bad time range {text!r}: expected a string HH:MM-HH:MM")
                ranges.append(parse_range(text))
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
        for day in days:
            for r in ranges:
                segs = _segments(day, r)
                clashes = [
                    (other_day != day, other_key, other_day, other)
                    for other_key, other_day, other, other_segs in placed
                    if any(a < d and c < b for a, b in segs for c, d in other_segs)
                ]
                if clashes:  # report a same-day clash first
                    _, other_key, other_day, other = min(clashes, key=lambda c: c[0])
                    if day == other_day:
                        msg = f"{key}: {r} overlaps {other} on {DAYS[day]}"
                    else:
                        msg = f"{key}: {r} on {DAYS[day]} overlaps {other} on {DAYS[other_day]}"
                    if other_key != key:
                        msg += f" (from {other_key})"
                    raise ValueError(msg)
                placed.append((key, day, r, segs))
    return tuple(
        tuple(sorted((r for _, d, r, _ in placed if d == day), key=lambda r: r.start))
        for day in range(7)
    )


def check_timezone(name: str) -> zoneinfo.ZoneInfo:
    """Return the IANA time zone ``name``, or raise ValueError."""
    try:
        if not name:
            raise ValueError(name)
        return zoneinfo.ZoneInfo(name)
    except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
        ) from None


def check_holidays(country: str, subdivision: str | None) -> None:
    """Raise ValueError unless the holidays package supports ``country`` and ``subdivision``."""
    import holidays  # slow (~50 ms): imported only when needed

    supported = holidays.list_supported_countries(include_aliases=False)
    if country not in supported:
        raise ValueError(
            f"unknown country {country!r}: use an ISO 3166-1 alpha-2 code that the holidays "
            "package supports, such as DE"
        )
    if subdivision is None:
        return
    known = supported[country]
    if subdivision in known:
        return
    if not known:
        raise ValueError(f"unknown subdivision {subdivision!r} of {country}: it has none")
    shown = ", ".join(known[:SHOWN_SUBDIVISIONS])
    if len(known) > SHOWN_SUBDIVISIONS:
        shown += f", ... ({len(known)} in all)"
    raise ValueError(
        f"unknown subdivision {subdivision!r} of {country}: known subdivisions are {shown}"
    )


def check_holiday_categories(country: str, categories: Sequence[str]) -> None:
    """Raise ValueError unless the holidays package has every one of ``categories`` for
    ``country`` (a country :func:`check_holidays` accepts)."""
    import holidays  # slow (~50 ms): imported only when needed

    entity = holidays.country_holidays(country)
    supported = entity.supported_categories
    known = f"{country} supports {', '.join(sorted(supported))} (default {entity.default_category})"
    if not categories:
        raise ValueError(f"no categories: name at least one or leave categories out; {known}")
    for category in categories:
        if category not in supported:
            raise ValueError(f"unknown holiday category {category!r} of {country}: {known}")


class Calendar:
    """One opening-hours calendar; see the module docstring for the rules."""

    def __init__(
        self,
        name: str,
        *,
        week: Week,
        timezone: str = "UTC",
        holidays: tuple[str, str | None] | None = None,
        holiday_categories: Sequence[str] | None = None,
        closed: Iterable[datetime.date] = (),
        opening_grace: float = 300.0,
    ) -> None:
        """Validate and build; raises ValueError for a bad week, zone, holidays or grace.

        ``holidays`` is ``(country, subdivision)``; ``holiday_categories`` the holidays
        package's categories of that country (``("public", "catholic")``), or None for the
        package's default."""
        if len(week) != 7:
            raise ValueError(f"calendar {name}: week must have 7 days, got {len(week)}")
        if not (
            math.isfinite(opening_grace)
            and 0 <= opening_grace <= MAX_OPENING_GRACE
            and opening_grace % 60 == 0
        ):
            raise ValueError(
                f"opening_grace must be a whole number of minutes from 0 to 60, "
                f"got {opening_grace} seconds"
            )
        self.name = name
        self.week = week
        self.timezone = timezone
        self.holidays = holidays
        self.holiday_categories = None if holiday_categories is None else tuple(holiday_categories)
        self.closed = frozenset(closed)
        self.opening_grace = float(opening_grace)
        self._tz = check_timezone(timezone)
        self._grace_minutes = int(opening_grace) // 60
        self._holiday_set: HolidayBase | None = None
        if holidays is None and holiday_categories is not None:
            raise ValueError(f"calendar {name}: holiday categories without a country")
        if holidays is not None:
            import holidays as holidays_pkg  # slow: imported only when needed

            check_holidays(*holidays)
            if self.holiday_categories is None:
                self._holiday_set = holidays_pkg.country_holidays(holidays[0], subdiv=holidays[1])
            else:
                check_holiday_categories(holidays[0], self.holiday_categories)
                self._holiday_set = holidays_pkg.country_holidays(
                    holidays[0], subdiv=holidays[1], categories=self.holiday_categories
                )
        # open minutes of each weekday, ignoring closed days: own ranges up to midnight plus
        # the previous weekday's overnight tails
        masks = [bytearray(MINUTES_PER_DAY) for _ in range(7)]
        for day, ranges in enumerate(week):
            for r in ranges:
                if r.overnight:
                    masks[day][r.start :] = b"\x01" * (MINUTES_PER_DAY - r.start)
                    masks[(day + 1) % 7][: r.end] = b"\x01" * r.end
                else:
                    masks[day][r.start : r.end] = b"\x01" * (r.end - r.start)
        self._masks = tuple(bytes(m) for m in masks)
        self._last_date: tuple[datetime.date, bool] | None = None

    def __repr__(self) -> str:
        """Name and time zone."""
        return f"Calendar({self.name!r}, timezone={self.timezone!r})"

    def _is_closed_day(self, date: datetime.date) -> bool:
        last = self._last_date
        if last is not None and last[0] == date:
            return last[1]
        closed = date in self.closed or (
            self._holiday_set is not None and date in self._holiday_set
        )
        self._last_date = (date, closed)
        return closed

    def closed_days(self, years: Iterable[int]) -> dict[datetime.date, str]:
        """The days of ``years`` that are closed all day, in date order: each public holiday
        (its name, from the holidays package) and each ``closed`` date (``closed``)."""
        days: dict[datetime.date, str] = {}
        for year in sorted(set(years)):
            day = datetime.date(year, 1, 1)
            while day.year == year:
                names = []
                if self._holiday_set is not None and day in self._holiday_set:
                    names.append(str(self._holiday_set.get(day)))
                if day in self.closed:
                    names.append("closed")
                if names:
                    days[day] = "; ".join(names)
                day += datetime.timedelta(days=1)
        return days

    def is_open(self, t: float) -> bool:
        """Whether the calendar is open at Unix time ``t``."""
        local = datetime.datetime.fromtimestamp(t, self._tz)
        if not self._masks[local.weekday()][local.hour * 60 + local.minute]:
            return False
        return not self._is_closed_day(local.date())

    def state(self, t: float) -> tuple[bool, bool]:
        """``(open, in_grace)`` for the minute holding Unix time ``t``."""
        m = math.floor(t / 60)
        if not self.is_open(m * 60):
            return False, False
        in_grace = any(not self.is_open((m - k) * 60) for k in range(1, self._grace_minutes + 1))
        return True, in_grace


class OpeningHours:
    """The daemon's calendars; each calendar's state computed once a minute."""

    def __init__(
        self, calendars: Mapping[str, Calendar], clock: Callable[[], float] = time.time
    ) -> None:
        """Hold ``calendars``; ``clock`` gives the time when :meth:`states` gets none."""
        self.calendars: Mapping[str, Calendar] = MappingProxyType(dict(calendars))
        self._clock = clock
        self._minute: int | None = None
        self._states: Mapping[str, tuple[bool, bool]] = MappingProxyType({})

    @property
    def minute(self) -> int | None:
        """The minute (Unix time // 60) the cache holds; None before the first call."""
        return self._minute

    def states(self, t: float | None = None) -> Mapping[str, tuple[bool, bool]]:
        """Every calendar's ``(open, in_grace)``, recomputed only when the minute changes."""
        if t is None:
            t = self._clock()
        minute = math.floor(t / 60)
        if minute != self._minute:
            start = minute * 60
            self._states = MappingProxyType(
                {name: cal.state(start) for name, cal in self.calendars.items()}
            )
            self._minute = minute
        return self._states
