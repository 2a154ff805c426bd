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
