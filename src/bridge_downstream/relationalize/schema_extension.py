"""A schema's type tree extended by what the rows hold: no key of a document is
left without a column.

The schema types the columns it declares, in its order. The rows add the rest,
typed by inference and placed after the declared fields:

- a key the schema does not declare (where it allows additional properties);
- the keys of an object the schema leaves open (``{"type": "object"}`` without
  ``properties``): the data's keys become columns (``scores`` ->
  ``scores_finalTheta``, ...), where they used to be one column of JSON text.

A declared field keeps its schema type whatever the rows hold (a value that
does not fit is the executors' concern). A schema map stays a map. What the
schema leaves unconstrained (``{}``, ``true``) stays JSON text.

Each undeclared key is counted, once per root row holding it, under its path
(``consideredSteps[].identifier``), so that a schema owner sees the drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from bridge_downstream.relationalize.inference import (
    TypeAccumulator,
    lines_beyond_int64,
    parse_line,
    widen_integers,
)
from bridge_downstream.relationalize.types import (
    BIGINT,
    BOOLEAN,
    DECIMAL,
    DOUBLE,
    STRING,
    TIMESTAMP,
    Array,
    EmptyObject,
    Map,
    Scalar,
    Struct,
    Type,
    Unconstrained,
    finalize,
)

ARRAY_STEP = "[]"


@dataclass
class ExtendedRowType:
    row_type: Type  # finalized
    undeclared_keys: dict[str, int] = field(default_factory=dict)  # path -> root rows holding it
    data_type: Type | None = None  # what inference alone makes of the rows


def extend_with_rows(schema_row: Type, rows: Iterable, ignored_keys: Iterable[str] = ()) -> ExtendedRowType:
    """``schema_row``: the *unfinalized* root row type of a schema
    (:func:`~bridge_downstream.relationalize.schema_types.root_row_type` with
    ``finalized=False``); ``rows``: the dataset's root rows (dicts).
    ``ignored_keys``: top-level keys the pipeline adds (enrichment): neither
    counted nor typed here.

    Only the rows that hold something the schema does not say (an undeclared
    key, or a value of another kind than its declared one) are typed by
    inference: ``data_type`` is theirs (a conforming row adds nothing to what
    the schema says), and most rows conform, so most are only walked."""
    ignored = frozenset(ignored_keys)
    conforms = _checker(schema_row, ignored)
    accumulator = TypeAccumulator()
    counts: dict[str, int] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        undeclared: set[str] = set()
        if not conforms(row, "", undeclared) or undeclared:
            accumulator.add(row)
        for path in undeclared:
            counts[path] = counts.get(path, 0) + 1
    data_row = accumulator.result()
    extended = extend(schema_row, data_row, ignored) if counts else schema_row
    return ExtendedRowType(finalize(extended), dict(sorted(counts.items())), data_row)


def extend_with_ndjson(schema_row: Type, ndjson: Iterable[bytes | str], ignored_keys: Iterable[str] = ()):
    """:func:`extend_with_rows` over NDJSON blocks (whole lines), read once;
    the columns holding integers beyond 64 bits are widened
    (:func:`~.inference.widen_integers`, given only the lines that may hold one)."""
    wide: list[str] = []
    extended = extend_with_rows(schema_row, _lines(ndjson, wide), ignored_keys)
    extended.row_type = widen_integers(extended.row_type, wide)
    return extended


def _lines(ndjson: Iterable[bytes | str], wide: list[str]) -> Iterator:
    for block in ndjson:
        text = block.decode("utf-8", errors="replace") if isinstance(block, bytes) else block
        wide.extend(lines_beyond_int64(text))
        for line in text.splitlines():
            if line.strip():
                yield parse_line(line)


Checker = Callable[[object, str, set], bool]


def _checker(t: Type, ignored: frozenset[str] = frozenset()) -> Checker:
    """A function telling whether a value has the kinds ``t`` says (null
    always does), adding the undeclared keys it meets to a set: built once
    per schema, as a row walk is the publish's cost per row."""
    if isinstance(t, Unconstrained):
        return lambda value, path, undeclared: True
    if isinstance(t, Scalar):
        kind_check = _KIND_CHECKS[t.kind]
        return lambda value, path, undeclared: value is None or kind_check(value)
    if isinstance(t, Struct):
        fields = {name: _checker(sub) for name, sub in t.fields}

        def struct(value, path, undeclared):
            if value is None:
                return True
            if type(value) is not dict:
                return False
            fits = True
            for key, item in value.items():
                check = fields.get(key)
                if check is None:
                    if key not in ignored:
                        undeclared.add(_join(path, key))
                elif item is not None and not check(item, _join(path, key), undeclared):
                    fits = False
            return fits

        return struct
    if isinstance(t, (Array, Map)):
        item_check = _checker(t.element if isinstance(t, Array) else t.value)
        container, step = (list, ARRAY_STEP) if isinstance(t, Array) else (dict, "")

        def items(value, path, undeclared):
            if value is None:
                return True
            if type(value) is not container:
                return False
            fits = True  # every item walked, not stopping at a misfit: each may hold undeclared keys
            for item in value if container is list else value.values():
                fits = item_check(item, path + step, undeclared) and fits
            return fits

        return items
    if isinstance(t, EmptyObject):

        def open_object(value, path, undeclared):
            if value is None:
                return True
            if type(value) is not dict:
                return False
            undeclared.update(_join(path, key) for key in value)
            return True

        return open_object
    return lambda value, path, undeclared: value is None  # Null: only null fits


def _is_integer(value) -> bool:
    return type(value) is int


def _is_number(value) -> bool:
    return type(value) is int or type(value) is float


_KIND_CHECKS = {
    STRING: lambda value: True,  # a string column takes any value, as its JSON text
    BIGINT: _is_integer,  # one beyond 64 bits conforms: the column is widened (widen_integers)
    DECIMAL: _is_number,
    DOUBLE: _is_number,
    BOOLEAN: lambda value: type(value) is bool,
    TIMESTAMP: lambda value: type(value) is str,
}


def extend(schema_type: Type, data_type: Type | None, ignored: frozenset[str] = frozenset()) -> Type:
    """``schema_type`` (unfinalized) with the fields ``data_type`` (inferred) adds."""
    if data_type is None:
        return schema_type
    if isinstance(schema_type, EmptyObject) and isinstance(data_type, (Struct, Map)):
        return data_type  # an open object: its keys, as the rows hold them
    if isinstance(schema_type, Struct) and isinstance(data_type, Struct):
        declared = [(name, extend(sub, data_type.get(name))) for name, sub in schema_type.fields]
        added = [(name, t) for name, t in data_type.fields if schema_type.get(name) is None and name not in ignored]
        return Struct(tuple(declared + added))
    if isinstance(schema_type, Array) and isinstance(data_type, Array):
        return Array(extend(schema_type.element, data_type.element))
    return schema_type


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
