"""The one redactor: keeps secrets out of everything ccwatch shows or logs.

A :class:`Redactor` knows a set of secrets, found in a configuration by
:func:`secrets_in` (every ``SecretStr``: basic-auth passwords, OAuth2 client secrets, API
keys; and the password of every URL with userinfo: ``url``, ``proxy_url``,
``token_url``), plus any learnt at run time (a token answer's tokens). :meth:`Redactor.text`
replaces each by ``[redacted]`` in every encoding it may be seen in, and removes the
userinfo (``user:password@``) of any URL in the text, known or not. Its users:

- the HTTP layer (:func:`ccwatch.http.transport_failure`): a library's exception text
  (aiohttp's names the proxy URL, userinfo included) is redacted with the target's
  secrets when the poll failure is made, before anything stores it;
- the scheduler, which redacts a failure's detail with its target's redactor before it
  stores it (status page, ``/api/v1/targets``, ``/metrics`` are made from that) and logs
  it (process logs, ``/logs``);
- :class:`ccwatch.errors.ConfigError`, whose lines lose any URL's userinfo
  (``check-config``, the ``/-/reload`` answer, the status page's banner, the
  ``config_reload_failed`` log);
- ``ccwatch probe``, for every line of its report.

The encodings a secret is found in, in any mix within one occurrence: as written;
percent-encoded, each character or not, with upper or lower case hex (``quote``,
``quote_plus``'s ``+`` for a space, ``encodeURIComponent``, ``%7E`` for ``~``); JSON
escapes (``\\u00e9`` and ``\\u00E9``, surrogate pairs, ``\\"``, ``\\/``, Go's ``\\u0026``,
``\\u003c``); HTML character references (``&#39;``, ``&#x27;``, ``&apos;``, ``&eacute;``,
any named or numeric one); and base64 (standard and URL-safe alphabets, with or without
padding, also inside a longer base64 text such as a Basic ``user:password``).

This module depends on nothing else of ccwatch, so that every other module may use it.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import html
import html.entities
import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, SecretBytes, SecretStr

__all__ = [
    "PUBLIC",
    "REDACTED",
    "Redactor",
    "redact_url",
    "secrets_in",
    "strip_userinfo",
]

REDACTED: Final = "[redacted]"
#: Headers whose value is a credential: the scheme is kept, the rest redacted.
CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization"})
#: A piece of base64 shorter than this is not searched for (too likely by chance).
MIN_BASE64_PIECE: Final = 8
#: Nesting levels a secrets walk goes down at most.
MAX_DEPTH: Final = 16

# --------------------------------------------------------------------------- URLs

#: The userinfo of a URL in a text: after ``scheme://``, up to the last ``@`` before the
#: authority ends (``/``, ``?``, ``#``, white space, ``"``, ``<``, ``>``, ``\\``).
_USERINFO: Final = re.compile(r'(?<![A-Za-z0-9+.\-])([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#"<>\\]*@')


def strip_userinfo(text: str) -> str:
    """``text`` with the userinfo of every ``scheme://user:password@host`` in it removed."""
    return _USERINFO.sub(r"\1", text) if "@" in text else text


def redact_url(url: str) -> str:
    """``url`` without its userinfo (``user:password@``), for logs, pages and traces."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "[invalid URL]"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


# --------------------------------------------------------------------------- encodings


def _hex(value: int, width: int) -> str:
    """A pattern for ``value`` in hex, ``width`` digits, either case."""
    digits = f"{value:0{width}x}"
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)


def _hex_any(value: int) -> str:
    """A pattern for ``value`` in hex, leading zeros allowed, either case."""
    return "0*" + _hex(value, 1 if value == 0 else len(f"{value:x}"))


#: JSON's two-character escapes.
_JSON_SHORT: Final = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f"}
_JSON_SHORT.update({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _json_units(code: int) -> list[int]:
    """The UTF-16 code units of a code point (a surrogate pair beyond the BMP)."""
    if code < 0x10000:
        return [code]
    code -= 0x10000
    return [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]


def _char_pattern(char: str) -> str:
    """Every way one character of a secret may be written, as one regex group."""
    code = ord(char)
    ways = [re.escape(char)]
    ways.append("".join(f"%{_hex(byte, 2)}" for byte in char.encode("utf-8", "surrogatepass")))
    if char == " ":
        ways.append(r"\+")
    ways.append("".join(rf"\\u{_hex(unit, 4)}" for unit in _json_units(code)))
    if char in _JSON_SHORT:
        ways.append(re.escape(_JSON_SHORT[char]))
    ways.append(f"&#0*{code};")
    ways.append(f"&#[xX]{_hex_any(code)};")
    names = {html.entities.codepoint2name[code]} if code in html.entities.codepoint2name else set()
    if char == "'":
        names.add("apos")
    ways += [f"&{name};" for name in sorted(names)]
    return "(?:" + "|".join(ways) + ")"


def _secret_pattern(secret: str) -> str:
    """A regex for ``secret`` in any mix of the text encodings (see the module's docstring)."""
    return "".join(_char_pattern(char) for char in secret)


def _base64_pieces(data: bytes, altchars: bytes | None) -> set[str]:
    """What any base64 text containing ``data`` contains, whatever the alignment.

    In base64, ``data`` starting at a byte offset ``k`` (mod 3) of the encoded stream
    always yields the same characters for the bits that are all its own: those are
    searched for, one piece per alignment.
    """
    pieces = set()
    for k in range(3):
        encoded = base64.b64encode(bytes(k) + data, altchars).decode()
        piece = encoded[(8 * k + 5) // 6 : (8 * (k + len(data))) // 6]
        if len(piece) >= MIN_BASE64_PIECE:
            pieces.add(piece)
    return pieces


def _base64_forms(secret: str) -> set[str]:
    data = secret.encode("utf-8", "surrogatepass")
    forms: set[str] = set()
    for altchars in (None, b"-_"):
        whole = base64.b64encode(data, altchars).decode()
        forms |= {whole, whole.rstrip("=")}
        forms |= _base64_pieces(data, altchars)
    forms.discard("")
    return forms


# --------------------------------------------------------------------------- the redactor


@functools.lru_cache(maxsize=256)
def _pattern_of(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """The pattern of a set of secrets (a few ms to build: targets that share their
    credentials share it)."""
    # the longest first: a secret that contains another is replaced whole
    ordered = sorted(secrets, key=lambda secret: (-len(secret), secret))
    patterns = [_secret_pattern(secret) for secret in ordered]
    pieces: set[str] = set()
    # what an occurrence can start with: the lookahead lets the regex engine skip to
    # those characters (4 times faster on a large body)
    firsts = {"%", "\\", "&", "+"}
    for secret in ordered:
        pieces |= _base64_forms(secret)
        firsts.add(secret[0])
    firsts |= {piece[0] for piece in pieces}
    patterns += map(re.escape, sorted(pieces, key=lambda form: (-len(form), form)))
    if not patterns:
        return None
    first = "".join(map(re.escape, sorted(firsts)))
    return re.compile(f"(?=[{first}])(?:{'|'.join(patterns)})")


class Redactor:
    """Replaces every known secret in a text by ``[redacted]``, in every encoding (see the
    module's docstring), and removes the userinfo of any URL.

    Secrets can be added at any time (a token learnt from a token response); the
    pattern is rebuilt at the next use.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._stale = False
        self.add(secrets)

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if secret and secret not in self._secrets:
                self._secrets.add(secret)
                self._stale = True

    def _compiled(self) -> re.Pattern[str] | None:
        if self._stale:
            self._pattern = _pattern_of(tuple(sorted(self._secrets)))
            self._stale = False
        return self._pattern

    def text(self, value: str) -> str:
        """``value`` with every known secret replaced and every URL's userinfo removed."""
        pattern = self._compiled()
        if pattern is not None:
            value = pattern.sub(REDACTED, value)
        return strip_userinfo(value)

    def header(self, name: str, value: str) -> str:
        """A header's value as it may be shown."""
        lowered = name.lower()
        if lowered in CREDENTIAL_HEADERS:
            scheme, sep, _ = value.strip().partition(" ")
            if sep and scheme.replace("-", "").isalnum():
                return f"{scheme} {REDACTED}"
            return REDACTED
        if lowered == "cookie":
            return "; ".join(self._cookie(part) for part in value.split(";") if part.strip())
        if lowered == "set-cookie":
            first, *attributes = value.split(";")
            return "; ".join([self._cookie(first), *(self.text(a.strip()) for a in attributes)])
        return self.text(value)

    def _cookie(self, pair: str) -> str:
        name, sep, _ = pair.strip().partition("=")
        return f"{self.text(name)}={REDACTED}" if sep else REDACTED


#: Knows no secret: removes the userinfo of URLs only (where no configuration is known).
PUBLIC: Final = Redactor()

# --------------------------------------------------------------------------- finding secrets


def _url_passwords(text: str) -> list[str]:
    """The password of ``text`` if it is a URL with userinfo, as written and decoded."""
    if "@" not in text or "://" not in text:
        return []
    try:
        password = urlsplit(text.strip()).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def _attributes(value: object) -> list[object]:
    out = list(vars(value).values()) if hasattr(value, "__dict__") else []
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                out.append(getattr(value, slot))
    return out


def secrets_in(value: object) -> list[str]:
    """Every secret found in ``value``, walked recursively: ``SecretStr`` and
    ``SecretBytes`` values and the passwords of URLs with userinfo, in pydantic models,
    dataclasses, mappings, sequences and ccwatch's own objects (a target's state)."""
    found: list[str] = []
    seen: set[int] = set()

    def walk(item: object, depth: int) -> None:
        if depth > MAX_DEPTH or item is None or isinstance(item, bool | int | float | bytes):
            return
        if isinstance(item, SecretStr):
            found.append(item.get_secret_value())
            return
        if isinstance(item, SecretBytes):
            found.append(item.get_secret_value().decode("utf-8", "replace"))
            return
        if isinstance(item, str):
            found.extend(_url_passwords(item))
            return
        if id(item) in seen:
            return
        seen.add(id(item))
        children: Iterable[object]
        if isinstance(item, BaseModel):
            children = [getattr(item, name) for name in type(item).model_fields]
        elif isinstance(item, Mapping):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            children = item
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            children = [getattr(item, field.name) for field in dataclasses.fields(item)]
        elif type(item).__module__.startswith("ccwatch.") and not isinstance(item, type):
            children = _attributes(item)
        else:
            return
        for child in children:
            walk(child, depth + 1)

    walk(value, 0)
    return [secret for secret in found if secret]
