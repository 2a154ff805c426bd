"""JSON documents in, JSON lines out: the one codec of the ingest stage.

Parsing is strict RFC 8259 JSON (orjson): ``NaN`` and ``Infinity``, numbers
too large for a double and unpaired UTF-16 surrogate escapes are refused.
Python's ``json`` takes them, but they are not JSON, and the rows' readers
(the publish engines, Athena) need not read them, or not the same way: the
file fails ingest with its reason instead of a publish failing later.
Lines are compact UTF-8 JSON with a newline. orjson does both several times
faster than ``json``, which for small uploads is a large share of ingest's
CPU (docs/benchmarks.md).

Integers are kept exact whatever their size: orjson reads an integer beyond
the 64-bit range as a double (a value lost), so a document with a literal of
19 digits or more is read again by Python's ``json``, which keeps it whole,
and a row holding such an integer is written by ``json`` too. Publish widens
the column to ``decimal(38,0)`` (docs/relationalize.md).
"""

from __future__ import annotations

import codecs
import functools
import json
import re

import orjson

JSONDecodeError = orjson.JSONDecodeError  # a ValueError

# An integer literal that may not fit 64 bits (or a digit run inside a string:
# then the second read finds nothing to correct, and costs only its time).
_LONG_INTEGER = re.compile(rb"\d{19}")


def parse(data: bytes):
    """The JSON value in ``data`` (UTF-8, with or without a byte-order mark).
    Raises :class:`JSONDecodeError` (a ValueError) with orjson's reason."""
    data = data.removeprefix(codecs.BOM_UTF8)
    value = orjson.loads(data)  # strict: what it refuses is refused
    if _LONG_INTEGER.search(data) is None:
        return value
    return json.loads(data)  # exact integers; orjson has vouched for the rest


# A document's own key that a row's shared field also names (``year``,
# ``recordid``, a Bridge metadata field) is written under this prefix, so the
# row holds both values; publish reads such a key as the document's
# (:func:`document_key`; docs/publish.md, "Names"). A document key that starts
# with it is prefixed once more, so the rule reverses exactly.
DOCUMENT_KEY_ESCAPE = "\x00"
_ESCAPED_IN_LINE = b'"\\u0000'  # how orjson spells a string that starts with it


def document_key(json_key: str) -> str:
    """The document's key that a row's JSON key holds (the escape removed)."""
    return json_key[1:] if json_key.startswith(DOCUMENT_KEY_ESCAPE) else json_key


# ``line(value)``: the value as one compact JSON line, ending in a newline. A
# partial, not a function: ingest encodes every row with it, and a Python
# call's own cost is a third of orjson's for a small row.
line = functools.partial(orjson.dumps, option=orjson.OPT_APPEND_NEWLINE)


def _beyond_64_bits(error: Exception) -> bool:
    return "64-bit" in str(error)


def _holds_wide_integer(value) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as error:
        return _beyond_64_bits(error)
    return False


def exact_dumps(value) -> bytes:
    """``orjson.dumps``, or where a value holds an integer beyond 64 bits,
    Python's ``json`` with the same compact form."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as error:
        if not _beyond_64_bits(error):
            raise
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class Rows:
    """JSON lines of rows made of a document's elements: each element's own
    fields, then the ``shared`` fields (the record's), then ``sourceindex``
    -- the line of ``{**element, **shared, "sourceindex": index}``, where an
    element's key that a shared field also names is escaped
    (:data:`DOCUMENT_KEY_ESCAPE`), so no value of the element is overwritten;
    an element that is not an object is ``{"value": element}``.

    An element none of whose names is a shared one (almost every element)
    is encoded alone and the shared fields' encoding, made once, is spliced
    in before its closing brace: a motion file's samples cost a third less
    than a merged dict each, and the bytes are the same."""

    __slots__ = ("_names", "_shared", "_tail", "wide_integer_rows")

    def __init__(self, shared: dict):
        self.wide_integer_rows = 0  # rows written holding an integer beyond 64 bits (the run report counts them)
        self._shared = shared
        self._names = shared.keys() | {"sourceindex"}
        fields = orjson.dumps(shared)[1:-1]
        self._tail = (b"," + fields if fields else b"") + b',"sourceindex":'

    def line(self, element, index: int) -> bytes:
        try:
            return self._line(element, index, orjson.dumps)
        except orjson.JSONEncodeError as error:
            if not _beyond_64_bits(error):
                raise
            self.wide_integer_rows += 1
            return self._line(element, index, exact_dumps)

    def _line(self, element, index: int, dumps) -> bytes:
        if type(element) is dict and element and self._names.isdisjoint(element):
            encoded = dumps(element)
            if _ESCAPED_IN_LINE not in encoded:
                return b"%b%b%d}\n" % (encoded[:-1], self._tail, index)
        merged = {
            **(self._escaped(element) if isinstance(element, dict) else {"value": element}),
            **self._shared,
            "sourceindex": index,
        }
        return dumps(merged) + b"\n"

    def _escaped(self, element: dict) -> dict:
        names = self._names
        if names.isdisjoint(element) and not any(key.startswith(DOCUMENT_KEY_ESCAPE) for key in element):
            return element
        return {
            (DOCUMENT_KEY_ESCAPE + key if key in names or key.startswith(DOCUMENT_KEY_ESCAPE) else key): value
            for key, value in element.items()
        }

    def block(self, elements: list, start: int = 0) -> bytes:
        """The lines of ``elements``, indexed from ``start``, as one block."""
        try:
            return self._block(elements, start, orjson.dumps)
        except orjson.JSONEncodeError as error:
            if not _beyond_64_bits(error):
                raise
            self.wide_integer_rows += sum(1 for element in elements if _holds_wide_integer(element))
            return self._block(elements, start, exact_dumps)

    def _block(self, elements: list, start: int, dumps) -> bytes:
        names, tail, merged = self._names, self._tail, self._line
        pieces: list[bytes] = []
        for index, element in enumerate(elements, start):
            if type(element) is dict and element and names.isdisjoint(element):
                encoded = dumps(element)
                if _ESCAPED_IN_LINE not in encoded:
                    pieces += (encoded[:-1], tail, b"%d}\n" % index)
                    continue
            pieces.append(merged(element, index, dumps))
        return b"".join(pieces)
