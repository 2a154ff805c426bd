"""Column types that stay: a published column keeps its type for good, and a
value that does not fit its column is rescued, not nulled and not allowed to
change the column (docs/publish.md, "The table contract").

:func:`fixed_row_type` takes the row type a publish would plan from (the
schema's, extended by the rows, or inferred), the types a profile declares and
the row type of the version it replaces, and says which columns are read as
text: those whose type the rows do not all fit (:mod:`.text_values`).

Only the columns of the root table are kept and rescued this way: along the
objects of a root row, not inside arrays or maps. A column of a child table
follows the data: where the rows hold a value its type does not (a schema's
``integer`` holding ``"n/a"`` inside an array), the type widens as inference
widens it (:func:`~.types.merge`: a wider number, else string), because a
value that does not fit an array's element type would null the whole array
in Spark's reader. Rescuing inside arrays is not built yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from bridge_downstream.relationalize.text_values import covers
from bridge_downstream.relationalize.types import STRING, STRING_T, Array, Map, Scalar, Struct, Type, merge


@dataclass
class FixedRowType:
    row_type: Type  # the type to read with: text columns hold strings
    text_columns: dict[tuple[str, ...], str] = field(default_factory=dict)  # path -> the column's type


def fixed_row_type(
    row_type: Type,
    data_type: Type | None,
    *,
    declared: Mapping[str, str] | None = None,
    previous: Type | None = None,
    ignored_keys: Iterable[str] = (),
) -> FixedRowType:
    """``row_type`` with the root columns' types fixed:

    1. ``declared`` (a profile's column types, by top-level JSON key) replace
       the planned types of those keys;
    2. the types of ``previous`` (the row type of the version this publish
       replaces) are kept where both have a scalar, and its fields the rows no
       longer hold are kept (a column does not disappear);
    3. a root scalar column whose type does not hold every value ``data_type``
       (the rows' own, inferred type) says is there, is read as text
       (:class:`FixedRowType` ``text_columns``).

    ``ignored_keys``: top-level keys the pipeline writes (enrichment), typed by the profile."""
    if not isinstance(row_type, Struct):
        return FixedRowType(row_type)
    ignored = frozenset(ignored_keys)
    fixed: Type = row_type
    if declared:
        fixed = Struct(tuple((name, Scalar(declared[name]) if name in declared else t) for name, t in row_type.fields))
        fixed = Struct(fixed.fields + tuple((n, Scalar(k)) for n, k in declared.items() if row_type.get(n) is None))
    if isinstance(previous, Struct):
        fixed = _keep_previous(fixed, previous)
    assert isinstance(fixed, Struct)
    text: dict[tuple[str, ...], str] = {}
    for path, kind in _root_scalars(fixed, ()):
        if path[0] in ignored or kind == STRING:
            continue
        data = _at(data_type, path)
        if data is None or (isinstance(data, Scalar) and covers(kind, data.kind)):
            continue
        text[path] = kind
    widened = _widened_in_containers(fixed, data_type)
    assert isinstance(widened, Struct)  # a struct stays a struct
    return FixedRowType(_with_text_leaves(widened, text), text)


def _widened_in_containers(t: Type, data: Type | None, inside: bool = False) -> Type:
    """``t`` with each scalar inside an array or map widened to hold the value
    ``data`` types there (root scalars are read as text instead)."""
    if data is None:
        return t
    if isinstance(t, Struct):
        if not isinstance(data, Struct):
            return t
        fields = tuple((name, _widened_in_containers(sub, data.get(name), inside)) for name, sub in t.fields)
        return t if fields == t.fields else Struct(fields)
    if isinstance(t, Array):
        return Array(_widened_in_containers(t.element, data.element, True)) if isinstance(data, Array) else t
    if isinstance(t, Map):
        return Map(_widened_in_containers(t.value, data.value, True)) if isinstance(data, Map) else t
    if inside and isinstance(t, Scalar):
        if isinstance(data, Scalar):
            return t if covers(t.kind, data.kind) else merge(t, data)
        return STRING_T  # an object or array where a scalar was typed: its JSON text
    return t


def _keep_previous(current: Type, previous: Type) -> Type:
    if isinstance(current, Struct) and isinstance(previous, Struct):
        kept = tuple(
            (name, sub if current.get(name) is None else _keep_previous(current.get(name), sub))  # type: ignore[arg-type]
            for name, sub in previous.fields
        )
        return Struct(kept + tuple((name, t) for name, t in current.fields if previous.get(name) is None))
    if isinstance(current, Scalar) and isinstance(previous, Scalar):
        return previous
    return current  # a change of shape (an object where text was): the rows' shape, nothing lost


def _root_scalars(t: Struct, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    for name, sub in t.fields:
        if isinstance(sub, Struct):
            yield from _root_scalars(sub, (*prefix, name))
        elif isinstance(sub, Scalar):
            yield (*prefix, name), sub.kind


def _at(t: Type | None, path: tuple[str, ...]) -> Type | None:
    for name in path:
        if not isinstance(t, Struct):
            return None
        t = t.get(name)
    return t


def _with_text_leaves(t: Struct, text: Mapping[tuple[str, ...], str], prefix: tuple[str, ...] = ()) -> Struct:
    if not text:
        return t
    fields = []
    for name, sub in t.fields:
        path = (*prefix, name)
        if path in text:
            sub = STRING_T
        elif isinstance(sub, Struct):
            sub = _with_text_leaves(sub, text, path)
        fields.append((name, sub))
    return Struct(tuple(fields))
