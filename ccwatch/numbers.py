"""Strict number parsing for vendor input.

The rule: numbers are plain ASCII decimal, and must be finite and exactly representable,
or the poll fails as ``parse`` (:class:`~ccwatch.errors.ParseFailure`).

- Text (an XML element or attribute, a quoted JSON value) is read by
  :func:`parse_decimal_int` (``-?[0-9]+``) or :func:`parse_decimal`
  (``-?[0-9]+(\\.[0-9]+)?``), after stripping ASCII whitespace only. Python's ``int()``
  and ``float()`` are far more liberal (``1_000``, ``+4``, ``٤``, ``²``, ``1e3``, ``nan``,
  ``inf``, 400 digits): none of that is a number here.
- A number must be exactly representable as a float, since every metric value becomes
  one: an integer's magnitude is at most ``2**53``; a decimal either has at most 15
  significant digits (so that it round-trips through a float) or is exactly a float,
  and its magnitude is at most ``2**53`` too.
- JSON numbers, already decoded, are checked by :func:`check_json_number`: an ``int``
  (never a ``bool``) or a finite ``float``, of magnitude at most ``2**53``.

Error messages never quote more than :data:`SHOWN_CHARS` characters of the value, so a
400-digit (or 10 MB) answer cannot bloat a log line.
"""

from __future__ import annotations

import math
import re
import sys
from decimal import Decimal
from typing import Final

from ccwatch.errors import ParseFailure

__all__ = [
    "MAX_EXACT",
    "MAX_SIGNIFICANT_DIGITS",
    "SHOWN_CHARS",
    "check_json_int",
    "check_json_number",
    "parse_decimal",
    "parse_decimal_int",
    "shown",
]

#: The largest magnitude below which every integer is exactly a float (inclusive).
MAX_EXACT: Final = 2**53
#: A decimal with at most this many significant digits round-trips through a float.
MAX_SIGNIFICANT_DIGITS: Final = 15
#: How much of an offending value an error message shows.
SHOWN_CHARS: Final = 40

#: Python's ASCII whitespace (``bytes.isspace``): ``str.strip()`` would also strip
#: Unicode spaces such as U+00A0 or U+2003.
_ASCII_WHITESPACE: Final = " \t\n\r\x0b\x0c"
_INT_RE: Final = re.compile(r"-?([0-9]+)", re.ASCII)
_DECIMAL_RE: Final = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?", re.ASCII)
#: Digits of an integer part that can still be at most MAX_EXACT (2**53 has 16).
_MAX_INT_DIGITS: Final = len(str(MAX_EXACT))
#: More significant digits than any float of magnitude >= 1 has (1 + 2**-52 has 53).
_MAX_SIGNIFICANT_GUARD: Final = 60


def shown(value: object) -> str:
    """``value`` for an error message: a string's ``repr``, a number, or a type name; cut
    to :data:`SHOWN_CHARS` characters (then followed by its length)."""
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARS:
            return repr(value)
        return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"  # str() of a huge int is slow
    if value is None or isinstance(value, bool | int | float):
        text = repr(value)
        if len(text) <= SHOWN_CHARS:
            return text
        return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"
    return type(value).__name__


def _fail(what: str, expected: str, value: object) -> ParseFailure:
    return ParseFailure(f"{what}: expected {expected}, got {shown(value)}")


def parse_decimal_int(text: str, what: str) -> int:
    """A plain ASCII decimal integer, ``-?[0-9]+``, of magnitude at most ``2**53``."""
    match = _INT_RE.fullmatch(text.strip(_ASCII_WHITESPACE))
    if match is None:
        raise _fail(what, "a plain decimal integer", text)
    digits = match.group(1).lstrip("0")
    # never int() a huge string: 2**53 has 16 digits
    if len(digits) > _MAX_INT_DIGITS or int(digits or "0") > MAX_EXACT:
        raise _fail(what, f"an integer of magnitude at most 2**53 ({MAX_EXACT})", text)
    return int(match.group(0))


def parse_decimal(text: str, what: str) -> float:
    """A plain ASCII decimal number, ``-?[0-9]+(\\.[0-9]+)?``: no exponent, no sign other
    than ``-``, no ``_``, no ``nan`` or ``inf``; exactly representable (see the module)."""
    stripped = text.strip(_ASCII_WHITESPACE)
    match = _DECIMAL_RE.fullmatch(stripped)
    if match is None:
        raise _fail(what, "a finite, plain decimal number", text)
    whole = match.group(1).lstrip("0")
    fraction = (match.group(2) or "").rstrip("0")
    if len(whole) > _MAX_INT_DIGITS:
        raise _fail(what, f"a number of magnitude at most 2**53 ({MAX_EXACT})", text)
    significant = (whole + fraction).strip("0")
    if len(significant) > _MAX_SIGNIFICANT_GUARD:  # never hand Decimal a huge string
        raise _fail(what, f"at most {MAX_SIGNIFICANT_DIGITS} significant digits", text)
    value = float(stripped)
    if abs(value) > MAX_EXACT:
        raise _fail(what, f"a number of magnitude at most 2**53 ({MAX_EXACT})", text)
    if significant and abs(value) < sys.float_info.min:  # underflows to 0 or a subnormal
        raise _fail(what, f"0 or a magnitude of at least {sys.float_info.min!r}", text)
    if len(significant) > MAX_SIGNIFICANT_DIGITS and Decimal(value) != Decimal(stripped):
        raise _fail(
            what,
            f"at most {MAX_SIGNIFICANT_DIGITS} significant digits or a value exactly "
            "representable as a float",
            text,
        )
    return value + 0.0  # -0.0 -> 0.0


def check_json_number(value: object, what: str) -> float:
    """A decoded JSON number: an ``int`` (not a ``bool``) or a finite ``float``, of
    magnitude at most ``2**53``. Returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(what, "a number", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(what, "a finite number", value)
    if abs(value) > MAX_EXACT:
        raise _fail(what, f"a number of magnitude at most 2**53 ({MAX_EXACT})", value)
    return float(value) + 0.0


def check_json_int(value: object, what: str) -> int:
    """A decoded JSON integer (an ``int``, not a ``bool``) of magnitude at most ``2**53``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(what, "an integer", value)
    if abs(value) > MAX_EXACT:
        raise _fail(what, f"an integer of magnitude at most 2**53 ({MAX_EXACT})", value)
    return value
