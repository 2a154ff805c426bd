"""The nested table of a dataset: one row per root row, its objects kept as
structs, its arrays as lists and its maps as maps, for readers who would
rather not join (docs/publish.md, "Nested tables").

It is planned from the relationalize plan alone, so it holds exactly the
root table's rows, with the root table's types:

- the root table's columns that hold one top-level value (scalars, the
  enrichment and metadata columns, ``_rescued_data``), with the root table's
  names and types;
- each top-level object, array or map as one column, at the place of its
  first column in the root table, named by the column naming rule
  (:func:`~.naming.sanitize`, unique case-insensitively among the table's
  columns);
- inside them, struct fields named by the same rule per struct (a key that
  is already a safe name keeps its spelling), so the catalogs' type strings
  (``struct<a:bigint,b:array<string>>``) need no quoting and no two fields of
  a struct differ only by case; a map is a Parquet map of string keys, which
  Athena, Spark and DuckDB all read as a map. A leaf the root table reads as
  text and converts (``from_text``: timestamps, declared types) is converted
  the same way, its misfits null here and rescued in the ``_rescued_data``
  of the table that holds the leaf's column (the root table's is a column
  here too; a misfit inside an array is in its child table's).

The table is named ``<root table>_nested``; should a child table have that
name already (an array ``nested`` at the top level), it takes the next free
name by the table naming rule (``_nested_2``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bridge_downstream.common.jsoncodec import document_key
from bridge_downstream.relationalize.naming import NameAllocator, sanitize
from bridge_downstream.relationalize.plan import ROLE_LINK, ROLE_VALUE, RelationalizePlan, element_paths
from bridge_downstream.relationalize.types import ARRAY_STEP, MAP_STEP, TIMESTAMP, Array, Map, Scalar, Struct, Type

NESTED_SUFFIX = "_nested"


@dataclass(frozen=True)
class NestedColumn:
    """One column of the nested table. ``key``: the root row's JSON key of an
    object, array or map column; None for a root table column taken as is."""

    name: str
    type: Type  # the output type: struct fields named as published
    key: str | None = None

    @property
    def hive_type(self) -> str:
        return hive_type(self.type)


@dataclass(frozen=True)
class NestedTablePlan:
    name: str
    columns: tuple[NestedColumn, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def athena_columns(self) -> list[tuple[str, str]]:
        """``(name, type)`` with Athena/Hive type names, struct fields in lower case (Glue's rule)."""
        return [(c.name, c.hive_type) for c in self.columns]


def published_type(t: Type, kinds: Mapping[tuple[str, ...], str] | None = None, path: tuple[str, ...] = ()) -> Type:
    """``t`` with every struct's fields named as the nested table publishes
    them. ``kinds``: the kinds of the columns read as text, by type path from
    the root row (``path``: ``t``'s); a leaf at such a path gets its column's kind."""
    kinds = kinds or {}
    if isinstance(t, Struct):
        names = NameAllocator()
        return Struct(
            tuple((names.allocate(sanitize(key)), published_type(v, kinds, (*path, key))) for key, v in t.fields)
        )
    if isinstance(t, Array):
        return Array(published_type(t.element, kinds, (*path, ARRAY_STEP)))
    if isinstance(t, Map):
        return Map(published_type(t.value, kinds, (*path, MAP_STEP)))
    if isinstance(t, Scalar) and path in kinds:
        return Scalar(kinds[path])
    return t


def converted_kind(source: Scalar, published: Scalar) -> str | None:
    """The kind a leaf read as ``source`` is converted to from its text (the
    root table's rule, text_values.py), or None when it is published as read."""
    if source.kind == TIMESTAMP or source.kind != published.kind:
        return published.kind
    return None


def hive_type(t: Type) -> str:
    """The Athena/Glue type string of a published type (field names in lower case)."""
    if isinstance(t, Scalar):
        return t.kind
    if isinstance(t, Struct):
        return "struct<" + ",".join(f"{name.lower()}:{hive_type(v)}" for name, v in t.fields) + ">"
    if isinstance(t, Array):
        return f"array<{hive_type(t.element)}>"
    if isinstance(t, Map):
        return f"map<string,{hive_type(t.value)}>"
    raise TypeError(f"not a finished type: {t!r}")


def nested_table_name(plan: RelationalizePlan) -> str:
    names = NameAllocator(plan.table_names)
    return names.allocate(plan.root.name + NESTED_SUFFIX)


def plan_nested_table(plan: RelationalizePlan) -> NestedTablePlan:
    """The nested table of ``plan``'s dataset (see the module's docstring)."""
    root = plan.root
    containers: dict[str, int] = {}  # top-level key of an object/array/map -> its place
    places: list[str | int] = []  # a root column's name, or the place of a container
    for column in root.columns:
        nested = column.role in (ROLE_VALUE, ROLE_LINK) and (len(column.path) > 1 or column.role == ROLE_LINK)
        if not nested:
            places.append(column.name)
        elif column.path[0] not in containers:
            containers[column.path[0]] = len(places)
            places.append(containers[column.path[0]])
    paths = element_paths(plan)
    kinds = {
        (*paths[table.name], *c.path): c.type
        for table in plan.tables
        for c in table.columns
        if c.role == ROLE_VALUE and c.from_text
    }
    names = NameAllocator([p for p in places if isinstance(p, str)])
    keys = {place: key for key, place in containers.items()}
    columns = []
    for place in places:
        if isinstance(place, str):
            columns.append(NestedColumn(place, Scalar(root.column(place).type)))
            continue
        key = keys[place]
        source = plan.row_type.get(key)
        assert source is not None, key
        name = names.allocate(sanitize(document_key(key)))
        columns.append(NestedColumn(name, published_type(source, kinds, (key,)), key))
    return NestedTablePlan(nested_table_name(plan), tuple(columns))
