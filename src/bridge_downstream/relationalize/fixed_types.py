"""Column types that stay: a published column keeps its type for good, and a
value that does not fit its column is rescued, not nulled and not allowed to
change the column (docs/publish.md, "The table contract").

:func:`fixed_row_type` takes the row type a publish would plan from (the
schema's, extended by the rows, or inferred), the types a profile declares and
the row type of the version it replaces, and says which columns are read as
text: those whose type the rows do not all fit (:mod:`.text_values`).

Every scalar is kept this way, in the root table and in the child tables
alike: a leaf inside an array or map is named by its path through the type
tree, whose steps are the JSON keys of objects, :data:`~.types.ARRAY_STEP`
into an array's element and :data:`~.types.MAP_STEP` into a map's value
(read against the type, so a JSON key spelled ``[]`` is no ambiguity). A leaf
read as text is a string wherever it is, so a misfit inside an array never
nulls the array in either reader; the table that holds the leaf's column
rescues the misfit in its own ``_rescued_data``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from bridge_downstream.relationalize.text_values import covers
from bridge_downstream.relationalize.types import (
    ARRAY_STEP,
    MAP_STEP,
    STRING,
    STRING_T,
    Array,
    Map,
    Scalar,
    Struct,
    Type,
)


@dataclass
class FixedRowType:
    row_type: Type  # the type to read with: text columns hold strings
    text_columns: dict[tuple[str, ...], str] = field(default_factory=dict)  # type path -> the column's type


def fixed_row_type(
    row_type: Type,
    data_type: Type | None,
    *,
    declared: Mapping[str, str] | None = None,
    previous: Type | None = None,
    ignored_keys: Iterable[str] = (),
) -> FixedRowType:
    """``row_type`` with the root columns' types fixed:

    1. ``declared`` (a profile's column types, by top-level JSON key, matched
       case-insensitively where the rows spell the key otherwise) replace the
       planned types of those keys; a declared key no row holds is added;
    2. the types of ``previous`` (the row type of the version this publish
       replaces) are kept where both have a scalar, and its fields the rows no
       longer hold are kept (a column does not disappear);
    3. a scalar whose type does not hold every value ``data_type`` (the
       rows' own, inferred type) says is there, is read as text
       (:class:`FixedRowType` ``text_columns``, by type path).

    ``ignored_keys``: top-level keys the pipeline writes (enrichment), typed by the profile."""
    if not isinstance(row_type, Struct):
        return FixedRowType(row_type)
    ignored = frozenset(ignored_keys)
    fixed: Type = row_type
    if declared:
        at_key = _declared_at_keys(row_type, declared)
        fixed = Struct(tuple((name, Scalar(at_key[name]) if name in at_key else t) for name, t in row_type.fields))
        placed = {declared_name for declared_name in declared if _row_key(row_type, declared_name) is not None}
        fixed = Struct(fixed.fields + tuple((n, Scalar(k)) for n, k in declared.items() if n not in placed))
    if isinstance(previous, Struct):
        fixed = _keep_previous(fixed, previous)
    assert isinstance(fixed, Struct)
    text: dict[tuple[str, ...], str] = {}
    for path, kind in _scalars(fixed, ()):
        if path[0] in ignored or kind == STRING:
            continue
        data = type_at_path(data_type, path)
        if data is None or (isinstance(data, Scalar) and covers(kind, data.kind)):
            continue
        text[path] = kind
    read = _with_text_leaves(fixed, text, ())
    assert isinstance(read, Struct)  # a struct stays a struct
    return FixedRowType(read, text)


def _row_key(row_type: Struct, declared_name: str) -> str | None:
    """The row's key a declared name types: the same spelling, else the one key
    that differs only by case (a table definition's ``DatapointKey`` for the
    data's ``DataPointKey``), so a declaration never adds a case-only twin."""
    if row_type.get(declared_name) is not None:
        return declared_name
    matches = [name for name, _ in row_type.fields if name.lower() == declared_name.lower()]
    return matches[0] if len(matches) == 1 else None


def _declared_at_keys(row_type: Struct, declared: Mapping[str, str]) -> dict[str, str]:
    at_key: dict[str, str] = {}
    for declared_name, kind in declared.items():
        key = _row_key(row_type, declared_name)
        if key is not None:
            at_key.setdefault(key, kind)
    return at_key


def _keep_previous(current: Type, previous: Type) -> Type:
    if isinstance(current, Struct) and isinstance(previous, Struct):
        kept = tuple(
            (name, sub if current.get(name) is None else _keep_previous(current.get(name), sub))  # type: ignore[arg-type]
            for name, sub in previous.fields
        )
        return Struct(kept + tuple((name, t) for name, t in current.fields if previous.get(name) is None))
    if isinstance(current, Array) and isinstance(previous, Array):
        return Array(_keep_previous(current.element, previous.element))
    if isinstance(current, Map) and isinstance(previous, Map):
        return Map(_keep_previous(current.value, previous.value))
    if isinstance(current, Scalar) and isinstance(previous, Scalar):
        return previous
    return current  # a change of shape (an object where text was): the rows' shape, nothing lost


def _scalars(t: Type, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """(type path, kind) of every scalar of ``t``, objects, arrays and maps walked."""
    if isinstance(t, Struct):
        for name, sub in t.fields:
            yield from _scalars(sub, (*prefix, name))
    elif isinstance(t, Array):
        yield from _scalars(t.element, (*prefix, ARRAY_STEP))
    elif isinstance(t, Map):
        yield from _scalars(t.value, (*prefix, MAP_STEP))
    elif isinstance(t, Scalar):
        yield prefix, t.kind


def type_at_path(t: Type | None, path: tuple[str, ...]) -> Type | None:
    """The type at a type path (see the module's docstring), None where ``t`` has none."""
    for step in path:
        if isinstance(t, Struct):
            t = t.get(step)
        elif isinstance(t, Array) and step == ARRAY_STEP:
            t = t.element
        elif isinstance(t, Map) and step == MAP_STEP:
            t = t.value
        else:
            return None
    return t


def _with_text_leaves(t: Type, text: Mapping[tuple[str, ...], str], prefix: tuple[str, ...]) -> Type:
    if not text:
        return t
    if prefix in text:
        return STRING_T
    if isinstance(t, Struct):
        return Struct(tuple((name, _with_text_leaves(sub, text, (*prefix, name))) for name, sub in t.fields))
    if isinstance(t, Array):
        return Array(_with_text_leaves(t.element, text, (*prefix, ARRAY_STEP)))
    if isinstance(t, Map):
        return Map(_with_text_leaves(t.value, text, (*prefix, MAP_STEP)))
    return t
