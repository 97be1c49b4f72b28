"""The number rule: plain ASCII decimal, finite and exactly representable, else ``parse``."""

from __future__ import annotations

import math

import pytest

from ccwatch.errors import ParseFailure
from ccwatch.numbers import (
    MAX_EXACT,
    SHOWN_CHARS,
    check_json_int,
    check_json_number,
    parse_decimal,
    parse_decimal_int,
    shown,
)

HUGE = "9" * 400

# texts that are no plain ASCII decimal, though Python's int() or float() reads most
NOT_DECIMAL = [
    "",
    " ",
    "-",
    "1_000",
    "+4",
    "٤",  # ARABIC-INDIC DIGIT FOUR
    "٤.5",
    "²",  # SUPERSCRIPT TWO
    "\uff14",  # FULLWIDTH DIGIT FOUR
    "1e3",
    "1E3",
    "nan",
    " nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "0x10",
    "1,000",
    "1 000",
    "--1",
    "- 1",
    "4\x00",
    "\u00a04",  # a Unicode space is not stripped
    "4\u2003",
]


def fails(parse: object, text: object, match: str | None = None) -> ParseFailure:
    assert callable(parse)
    with pytest.raises(ParseFailure, match=match) as info:
        parse(text, "count")
    assert info.value.reason == "parse"
    assert str(info.value).startswith("count: expected ")
    return info.value


# --------------------------------------------------------------------------- integers


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("4", 4),
        ("-4", -4),
        ("-0", 0),
        ("007", 7),
        ("  12\n", 12),
        ("\t\r\n 3 \x0b\x0c", 3),
        (str(MAX_EXACT), MAX_EXACT),
        (str(-MAX_EXACT), -MAX_EXACT),
        ("0" * 500 + "5", 5),  # leading zeros are no magnitude
    ],
)
def test_decimal_int_reads_plain_ascii_integers(text: str, value: int) -> None:
    assert parse_decimal_int(text, "count") == value
    assert type(parse_decimal_int(text, "count")) is int


@pytest.mark.parametrize("text", [*NOT_DECIMAL, "1.0", "1.", ".5", "4.5"])
def test_decimal_int_refuses_everything_else(text: str) -> None:
    fails(parse_decimal_int, text, "plain decimal integer")


@pytest.mark.parametrize(
    "text", [str(MAX_EXACT + 1), str(-MAX_EXACT - 1), "10000000000000000", HUGE, "-" + HUGE]
)
def test_decimal_int_refuses_what_a_float_cannot_hold_exactly(text: str) -> None:
    fails(parse_decimal_int, text, r"magnitude at most 2\*\*53")


def test_a_huge_value_is_cut_in_the_message() -> None:
    error = fails(parse_decimal_int, HUGE)
    assert "9" * SHOWN_CHARS in str(error)
    assert "9" * (SHOWN_CHARS + 1) not in str(error)
    assert "(400 characters)" in str(error)
    assert len(str(error)) < 200
    # a 10 MB answer costs no more than that (and no int() of it)
    error = fails(parse_decimal_int, "1" * 10_000_000)
    assert len(str(error)) < 200
    error = fails(parse_decimal, "1" * 10_000_000)
    assert len(str(error)) < 200


# --------------------------------------------------------------------------- decimals


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0.0),
        ("3.0", 3.0),
        ("42.5", 42.5),
        ("-1.25", -1.25),
        ("0.1", 0.1),
        (" 12.5\n", 12.5),
        ("007.50", 7.5),
        ("123456789012345", 123456789012345.0),  # 15 significant digits
        ("0.123456789012345", 0.123456789012345),
        ("1.50000000000000000000", 1.5),  # trailing zeros are not significant
        ("0.000000000000000000001", 1e-21),
        (str(MAX_EXACT), float(MAX_EXACT)),
        (str(MAX_EXACT) + ".0", float(MAX_EXACT)),
        ("1234567890123456", 1234567890123456.0),  # 16 digits, but exactly a float
        ("1.00000000000000022204460492503130808472633361816406250", 1 + 2**-52),  # exact
    ],
)
def test_decimal_reads_plain_ascii_decimals(text: str, value: float) -> None:
    result = parse_decimal(text, "waitTime")
    assert result == value
    assert type(result) is float


def test_negative_zero_is_zero() -> None:
    assert math.copysign(1.0, parse_decimal("-0.0", "waitTime")) == 1.0


@pytest.mark.parametrize("text", [*NOT_DECIMAL, "1.", ".5", "1.2.3", "1e-3", "0.1e1"])
def test_decimal_refuses_everything_else(text: str) -> None:
    fails(parse_decimal, text, "plain decimal number")


@pytest.mark.parametrize(
    "text",
    [
        "0.1234567890123456",  # 16 significant digits
        "1.000000000000001",  # 16 significant digits
        "12345678.12345678",
        "9007199254740993",  # 2**53 + 1: rounds to 2**53
        "0.5000000000000000000001",
    ],
)
def test_decimal_refuses_more_digits_than_round_trip(text: str) -> None:
    fails(parse_decimal, text, "significant digits")


@pytest.mark.parametrize(
    "text",
    [
        HUGE,
        HUGE + ".5",
        "9007199254740994",  # 2**53 + 2: a float, but beyond 2**53
        "10000000000000000",
        "-" + HUGE,
        "1" + "0" * 400,  # as float(): 1e400 -> inf
    ],
)
def test_decimal_refuses_magnitudes_beyond_2_53(text: str) -> None:
    fails(parse_decimal, text, r"magnitude at most 2\*\*53")


@pytest.mark.parametrize("text", ["0." + "0" * 400 + "1", "0." + "0" * 310 + "1"])
def test_decimal_refuses_what_underflows(text: str) -> None:
    fails(parse_decimal, text, "magnitude of at least")


def test_decimal_zero_with_many_zeros_is_zero() -> None:
    assert parse_decimal("0." + "0" * 400, "waitTime") == 0.0


# --------------------------------------------------------------------------- JSON numbers


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0.0), (5, 5.0), (-5, -5.0), (3.5, 3.5), (MAX_EXACT, float(MAX_EXACT)), (-0.0, 0.0)],
)
def test_json_numbers_in_range(value: float, expected: float) -> None:
    result = check_json_number(value, "expires_in")
    assert result == expected
    assert type(result) is float
    assert math.copysign(1.0, result) == math.copysign(1.0, expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "a number"),
        (False, "a number"),
        (None, "a number"),
        ("5", "a number"),
        ([5], "a number"),
        (math.inf, "finite"),
        (-math.inf, "finite"),
        (math.nan, "finite"),
        (MAX_EXACT + 1, r"2\*\*53"),
        (2**64 - 1, r"2\*\*53"),  # orjson reads integers up to here as int
        (1e20, r"2\*\*53"),  # ... and larger ones as float
        (10**400, r"2\*\*53"),
    ],
)
def test_json_numbers_out_of_rule(value: object, message: str) -> None:
    fails(check_json_number, value, message)


def test_json_ints() -> None:
    assert check_json_int(7, "totalItems") == 7
    assert check_json_int(-MAX_EXACT, "totalItems") == -MAX_EXACT
    for value in (True, 7.0, "7", None, MAX_EXACT + 1, 10**5000):
        fails(check_json_int, value)


def test_shown_is_short() -> None:
    assert shown("4") == "'4'"
    assert shown(5) == "5"
    assert shown(True) == "True"
    assert shown([1, 2]) == "list"
    assert shown(10**5000) == "an integer of 16610 bits"
    assert shown("x" * 100) == repr("x" * SHOWN_CHARS) + "... (100 characters)"
