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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bridge_downstream.relationalize.inference import TypeAccumulator, parse_line
from bridge_downstream.relationalize.types import (
    Array,
    EmptyObject,
    Map,
    Struct,
    Type,
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
    counted nor typed here."""
    ignored = frozenset(ignored_keys)
    accumulator = TypeAccumulator()
    counts: dict[str, int] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        accumulator.add(row)
        for path in set(_undeclared(schema_row, row, "", ignored)):
            counts[path] = counts.get(path, 0) + 1
    data_row = accumulator.result()
    extended = extend(schema_row, data_row, ignored) if counts else schema_row
    return ExtendedRowType(finalize(extended), dict(sorted(counts.items())), data_row)


def extend_with_ndjson(schema_row: Type, ndjson: Iterable[bytes | str], ignored_keys: Iterable[str] = ()):
    """:func:`extend_with_rows` over NDJSON blocks (whole lines)."""
    return extend_with_rows(schema_row, _lines(ndjson), ignored_keys)


def _lines(ndjson: Iterable[bytes | str]) -> Iterator:
    for block in ndjson:
        text = block.decode("utf-8", errors="replace") if isinstance(block, bytes) else block
        for line in text.splitlines():
            if line.strip():
                yield parse_line(line)


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


def _undeclared(schema_type: Type, value, path: str, ignored: frozenset[str] = frozenset()) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(schema_type, Struct):
            for key, item in value.items():
                sub = schema_type.get(key)
                if sub is None:
                    if key not in ignored:
                        yield _join(path, key)
                else:
                    yield from _undeclared(sub, item, _join(path, key))
        elif isinstance(schema_type, EmptyObject):
            for key in value:
                yield _join(path, key)
    elif isinstance(value, list) and isinstance(schema_type, Array):
        for item in value:
            yield from _undeclared(schema_type.element, item, path + ARRAY_STEP)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
