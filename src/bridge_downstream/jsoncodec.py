"""JSON documents in, JSON lines out: the one codec of the ingest stage.

Parsing is strict RFC 8259 JSON (orjson): ``NaN`` and ``Infinity``, numbers
too large for a double and unpaired UTF-16 surrogate escapes are refused, so
a file that Python's ``json`` would accept but Spark, Arrow and Athena could
not read (or would read differently) fails ingest with its reason instead of
failing a publish later. Integers outside the 64-bit range are read as
doubles, as Spark and Arrow would read them. Lines are compact UTF-8 JSON
with a newline. orjson does both several times faster than ``json``, which
for small uploads is a large share of ingest's CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import codecs

import orjson

JSONDecodeError = orjson.JSONDecodeError  # a ValueError


def parse(data: bytes):
    """The JSON value in ``data`` (UTF-8, with or without a byte-order mark).
    Raises :class:`JSONDecodeError` (a ValueError) with orjson's reason."""
    return orjson.loads(data.removeprefix(codecs.BOM_UTF8))


def line(value) -> bytes:
    """``value`` as one compact JSON line, ending in a newline."""
    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
