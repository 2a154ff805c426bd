"""JSON documents in, JSON lines out: the one codec of the ingest stage.

Parsing is strict RFC 8259 JSON (orjson): ``NaN`` and ``Infinity``, numbers
too large for a double and unpaired UTF-16 surrogate escapes are refused.
Python's ``json`` takes them, but they are not JSON, and the rows' readers
(the publish engines, Athena) need not read them, or not the same way: the
file fails ingest with its reason instead of a publish failing later.
Integers outside the 64-bit range, which no table column holds as integers,
are read as doubles. Lines are compact UTF-8 JSON with a newline. orjson does both several times faster than ``json``, which
for small uploads is a large share of ingest's CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import codecs
import functools

import orjson

JSONDecodeError = orjson.JSONDecodeError  # a ValueError


def parse(data: bytes):
    """The JSON value in ``data`` (UTF-8, with or without a byte-order mark).
    Raises :class:`JSONDecodeError` (a ValueError) with orjson's reason."""
    return orjson.loads(data.removeprefix(codecs.BOM_UTF8))


# ``line(value)``: the value as one compact JSON line, ending in a newline. A
# partial, not a function: ingest encodes every row with it, and a Python
# call's own cost is a third of orjson's for a small row.
line = functools.partial(orjson.dumps, option=orjson.OPT_APPEND_NEWLINE)


class Rows:
    """JSON lines of rows made of a document's elements: each element's own
    fields, then the ``shared`` fields (the record's), then ``sourceindex``
    -- the line of ``{**element, **shared, "sourceindex": index}``; an
    element that is not an object is ``{"value": element}``.

    An element none of whose names is a shared one (almost every element)
    is encoded alone and the shared fields' encoding, made once, is spliced
    in before its closing brace: a motion file's samples cost a third less
    than a merged dict each, and the bytes are the same."""

    __slots__ = ("_names", "_shared", "_tail")

    def __init__(self, shared: dict):
        self._shared = shared
        self._names = shared.keys() | {"sourceindex"}
        fields = orjson.dumps(shared)[1:-1]
        self._tail = (b"," + fields if fields else b"") + b',"sourceindex":'

    def line(self, element, index: int) -> bytes:
        if type(element) is dict and element and self._names.isdisjoint(element):
            return b"%b%b%d}\n" % (orjson.dumps(element)[:-1], self._tail, index)
        return line(
            {**(element if isinstance(element, dict) else {"value": element}), **self._shared, "sourceindex": index}
        )

    def block(self, elements: list, start: int = 0) -> bytes:
        """The lines of ``elements``, indexed from ``start``, as one block."""
        dumps, names, tail, merged = orjson.dumps, self._names, self._tail, self.line
        pieces: list[bytes] = []
        for index, element in enumerate(elements, start):
            if type(element) is dict and element and names.isdisjoint(element):
                pieces += (dumps(element)[:-1], tail, b"%d}\n" % index)
            else:
                pieces.append(merged(element, index))
        return b"".join(pieces)
