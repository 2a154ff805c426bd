"""Rows -> neutral type tree, by one pure-Python pass (no engine involved), so
the Spark and Arrow executors read the same data with the same schema.

Per value: null -> Null; true/false -> boolean; an integer -> bigint (outside
the signed 64-bit range -> decimal(38,0); beyond 38 digits -> string, so no
digit is lost: :func:`types.integer_type`); a float -> double; a
string -> string; ``{}`` -> EmptyObject; an object -> struct; an array -> array
of the merged element types.  Values of one field across rows are unified with
:func:`types.merge` (bigint+double -> double, other conflicts -> string holding
the JSON text).

The result does not depend on row order: struct fields are sorted by name
(case-sensitive code-point order) and objects are recognised as *maps* by their
key set only:
- an object field seen with more than ``max_struct_fields`` distinct keys, or
- whose keys all look like data rather than names (start with a digit, a sign
  or are UUIDs -- dates, numbers, identifiers)
becomes a map (child table with ``key``/``value`` columns).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from os import PathLike

from bridge_downstream.relationalize.types import (
    BIGINT,
    BOOLEAN_T,
    DECIMAL,
    DOUBLE_T,
    STRING_T,
    Array,
    EmptyObject,
    Map,
    Null,
    Scalar,
    Struct,
    Type,
    finalize,
    integer_type,
    merge,
    merge_all,
)

MAX_STRUCT_FIELDS = 300
_DATA_KEY = re.compile(r"^(?:[-+]?\d.*|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")


def value_type(value) -> Type:
    """The (unfinalized) type of one JSON value."""
    if value is None:
        return Null()
    if value is True or value is False:
        return BOOLEAN_T
    if isinstance(value, int):
        return integer_type(value)
    if isinstance(value, float):
        return DOUBLE_T
    if isinstance(value, str):
        return STRING_T
    if isinstance(value, dict):
        if not value:
            return EmptyObject()
        return Struct(tuple((k, value_type(v)) for k, v in value.items()))
    if isinstance(value, list):
        element: Type = Null()
        for item in value:
            element = merge(element, value_type(item))
        return Array(element)
    return STRING_T


class TypeAccumulator:
    """Incremental inference: ``add(row)`` for each root row, then ``result()``."""

    def __init__(self, max_struct_fields: int = MAX_STRUCT_FIELDS):
        self.max_struct_fields = max_struct_fields
        self._type: Type = Null()
        self._seen: set = set()

    def add(self, row) -> None:
        # both executors read a line that is not an object as a row of nulls: it has no columns
        t = value_type(row) if type(row) is dict else EmptyObject()
        # rows of one dataset mostly share a shape; skip re-merging identical shapes
        if t in self._seen:
            return
        if len(self._seen) < 10_000:
            self._seen.add(t)
        self._type = merge(self._type, t)

    def add_all(self, rows: Iterable) -> TypeAccumulator:
        for row in rows:
            self.add(row)
        return self

    @property
    def partial(self) -> Type:
        """The unfinished merged type: partials of disjoint row sets combine with
        :func:`types.merge` in any order (then :func:`finish`)."""
        return self._type

    def result(self) -> Type:
        return finish(self._type, self.max_struct_fields)


def finish(partial: Type, max_struct_fields: int = MAX_STRUCT_FIELDS) -> Type:
    """Order-independent, finalized form of a merged partial type. Rows without
    a field (no rows, only ``{}``) give a root row without document columns,
    so an empty dataset still has its tables."""
    if not isinstance(partial, Struct):
        return Struct(())
    return finalize(_normalize(partial, max_struct_fields, root=True))


_DECODER = json.JSONDecoder()


def parse_line(line: str):
    """``json.loads`` of one NDJSON line, the way Spark's JSON parser reads it:
    text after the first JSON value is ignored; a line that is not JSON gives
    ``{}`` (Spark yields a row of nulls)."""
    try:
        return json.loads(line)
    except ValueError:
        try:
            return _DECODER.raw_decode(line.lstrip())[0]
        except ValueError:
            return {}


def infer_type(rows: Iterable, max_struct_fields: int = MAX_STRUCT_FIELDS) -> Type:
    """The finalized type of the given root rows (dicts)."""
    return TypeAccumulator(max_struct_fields).add_all(rows).result()


def with_absent_fields(row_type: Type, names: Iterable[str]) -> Type:
    """An inferred root type with each of ``names`` that no row held added as a
    string column: the type of a field only ever null (sorted in, as inferred
    fields are)."""
    if not isinstance(row_type, Struct):
        return row_type
    absent = [(name, STRING_T) for name in dict.fromkeys(names) if row_type.get(name) is None]
    if not absent:
        return row_type
    return Struct(tuple(sorted(row_type.fields + tuple(absent), key=lambda f: f[0])))


# Digits of an integer beyond the signed 64-bit range: 20 or more, or 19 from a 9
# (2**63 = 9223372036854775808); every other line is left unparsed.
_BEYOND_INT64 = re.compile(rb"9[0-9]{18}|[0-9]{20}")


def widen_integers(row_type: Type, ndjson: Iterable[bytes | str]) -> Type:
    """``row_type`` (from a JSON Schema: no data looked at) with each bigint
    column that holds an integer beyond the signed 64-bit range in some row
    widened as inference would type it (:func:`types.integer_type`:
    decimal(38,0), or string beyond 38 digits), so that such a value is not
    read as null. ``ndjson``: the dataset's NDJSON in whole lines (a part
    file's bytes, or single lines). Only lines with digits that could spell
    such an integer are parsed; the result does not depend on the order of
    the rows."""
    for block in ndjson:
        data = block.encode("utf-8") if isinstance(block, str) else block
        position = 0
        while (found := _BEYOND_INT64.search(data, position)) is not None:
            start = data.rfind(b"\n", 0, found.start()) + 1
            end = data.find(b"\n", found.end())
            end = len(data) if end < 0 else end
            row_type = _widen(row_type, parse_line(data[start:end].decode("utf-8", errors="replace")))
            position = end
    return row_type


def lines_beyond_int64(text: str) -> Iterator[str]:
    """The lines of ``text`` (NDJSON) with digits that could spell an integer
    beyond the signed 64-bit range: the only ones :func:`widen_integers` needs."""
    data = text.encode("utf-8")
    position = 0
    while (found := _BEYOND_INT64.search(data, position)) is not None:
        start = data.rfind(b"\n", 0, found.start()) + 1
        end = data.find(b"\n", found.end())
        end = len(data) if end < 0 else end
        yield data[start:end].decode("utf-8", errors="replace")
        position = end


def _widen(t: Type, value) -> Type:
    if isinstance(t, Scalar):
        if t.kind in (BIGINT, DECIMAL) and type(value) is int:
            return merge(t, integer_type(value))
        return t
    if isinstance(t, Struct) and type(value) is dict:
        fields = tuple((name, _widen(sub, value[name]) if name in value else sub) for name, sub in t.fields)
        return t if fields == t.fields else Struct(fields)
    if isinstance(t, Array) and type(value) is list:
        element = t.element
        for item in value:
            element = _widen(element, item)
        return Array(element)
    if isinstance(t, Map) and type(value) is dict:
        map_value = t.value
        for item in value.values():
            map_value = _widen(map_value, item)
        return Map(map_value)
    return t


def iter_ndjson(paths: Iterable[str | PathLike]) -> Iterable:
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield parse_line(line)


def infer_type_from_ndjson(paths: Iterable[str | PathLike], max_struct_fields: int = MAX_STRUCT_FIELDS) -> Type:
    return infer_type(iter_ndjson(paths), max_struct_fields)


def _looks_like_map(struct: Struct, max_struct_fields: int) -> bool:
    if len(struct.fields) > max_struct_fields:
        return True
    return all(_DATA_KEY.match(name) for name, _ in struct.fields)


def _normalize(t: Type, max_struct_fields: int, root: bool = False) -> Type:
    """Order-independent form: sorted struct fields, map detection (never for the root row)."""
    if isinstance(t, Struct):
        if not root and _looks_like_map(t, max_struct_fields):
            return Map(_normalize(merge_all(v for _, v in t.fields), max_struct_fields))
        return Struct(tuple(sorted(((n, _normalize(v, max_struct_fields)) for n, v in t.fields), key=lambda f: f[0])))
    if isinstance(t, Array):
        return Array(_normalize(t.element, max_struct_fields))
    if isinstance(t, Map):
        return Map(_normalize(t.value, max_struct_fields))
    return t
