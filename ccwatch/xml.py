"""Hardened XML parsing shared by the XML sources.

The parser resolves no entities, touches no network, loads no DTD and refuses huge
trees; a document that declares a DOCTYPE is refused outright. Elements are read by
local name, whatever namespace prefix a server picked.
"""

from __future__ import annotations

import re

from lxml import etree

from ccwatch.errors import ParseFailure
from ccwatch.numbers import parse_decimal, parse_decimal_int

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    recover=False,
)

#: What XML calls white space (its ``S`` production).
_XML_WHITESPACE = " \t\r\n"
_TAG_RE = re.compile(rb"<[A-Za-z_][^<>]*>")
# a cheap test for an unquoted attribute value anywhere: '=' then neither quote nor space
_UNQUOTED_HINT_RE = re.compile(rb"=[^\s\"']")
# name=value with an unquoted value, inside a start tag
_UNQUOTED_ATTR_RE = re.compile(rb"(\s[A-Za-z_][\w.:-]*)\s*=\s*([^\s\"'<>=/`]+)")


def _quote_attributes(body: bytes) -> bytes:
    """Quote unquoted attribute values in start tags (``responseType=0``).

    ECE's documented ``checkEligibility`` answer has one. lxml's recover mode would drop
    the attribute silently, so instead the value is quoted and the document parsed
    strictly again.
    """

    def fix_tag(m: re.Match[bytes]) -> bytes:
        return _UNQUOTED_ATTR_RE.sub(rb'\1="\2"', m.group(0))

    return _TAG_RE.sub(fix_tag, body)


def parse_xml(body: bytes) -> etree._Element:
    """Parse ``body`` strictly and return the root element, or raise :class:`ParseFailure`."""
    if b"<!DOCTYPE" in body:
        raise ParseFailure("XML with a DOCTYPE is refused")
    if _UNQUOTED_HINT_RE.search(body):
        # Quote first rather than fail first: a failed parse costs more than the fix.
        body = _quote_attributes(body)
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ParseFailure(f"malformed XML: {exc}") from None
    if root is None:
        raise ParseFailure("empty XML document")
    return root


def local_name(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def expect_root(root: etree._Element, name: str) -> None:
    if local_name(root) != name:
        raise ParseFailure(f"expected root element <{name}>, got <{local_name(root)}>")


def child_text(root: etree._Element, name: str) -> str:
    """The text of the first child element whose local name is ``name``, without the
    XML whitespace around it (only that: Unicode spaces are part of the text)."""
    for child in root:
        if local_name(child) == name:
            return (child.text or "").strip(_XML_WHITESPACE)
    raise ParseFailure(f"<{local_name(root)}> has no <{name}> element")


def attribute(root: etree._Element, name: str) -> str:
    """An attribute by local name, whatever its namespace."""
    value = root.get(name)
    if value is None:
        for key, val in root.attrib.items():
            if str(key).rpartition("}")[2] == name:
                return str(val)
        raise ParseFailure(f"<{local_name(root)}> has no {name} attribute")
    return str(value)


def parse_bool(value: str, what: str) -> bool:
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ParseFailure(f"{what}: expected true or false, got {value!r}")


def parse_int(value: str, what: str) -> int:
    """A plain ASCII decimal integer of magnitude at most 2**53 (see :mod:`ccwatch.numbers`)."""
    return parse_decimal_int(value, what)


def parse_float(value: str, what: str) -> float:
    """A plain ASCII decimal number, finite and exactly representable
    (see :mod:`ccwatch.numbers`)."""
    return parse_decimal(value, what)
