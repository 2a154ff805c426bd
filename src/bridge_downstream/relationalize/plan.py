r"""The relationalize plan: which tables, which columns, where each column's
values come from and how child tables link to their parents.

It is computed from a finished type tree only (no engine, no data) and is plain
JSON (``to_json``/``from_json``), so any executor -- Spark, Arrow, or a future
one -- produces the same tables from it.

Roles of a column:

``value``   a leaf of the table's element, at ``path`` (JSON keys from the element;
            ``[]`` = the element itself, for scalar array elements / map values)
``link``    an array or map at ``path``: holds ``<row key>/<column name>`` when the
            container is present (even empty) and null when it is null/missing;
            ``child`` names the table of its elements
``id``      (child tables) the parent's link value: joins exactly one parent row
``index``   (array tables) 0-based position of the element
``key``     (map tables) the map key
``carry``   (child tables) a root-row column copied down (``path`` = its root JSON key)

Row keys (never stored as a column, they only feed ``link``/``id``):
root: the identity columns as text, each escaped (``\`` -> ``\\``,
``|`` -> ``\|``; null -> ``\N``), joined with ``|``; array element
``<id>[<index>]``; map entry ``<id>[<key>]``, the key escaped (``\``, ``[``,
``]`` -> ``\\``, ``\[``, ``\]``).  So two rows with different identities,
or two entries with different keys, never share a key; ordinary values (no
``|``, ``\``, bracket or null) are their text as is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bridge_downstream.common.instants import instant_micros, instant_timestamp_sql
from bridge_downstream.common.jsoncodec import document_key
from bridge_downstream.relationalize.naming import (
    NameAllocator,
    child_table_name,
    join_name,
    root_table_name,
    sanitize,
)
from bridge_downstream.relationalize.types import (
    ARRAY_STEP,
    MAP_STEP,
    SCALAR_KINDS,
    TIMESTAMP,
    Array,
    Map,
    Scalar,
    Struct,
    Type,
    type_from_json,
    type_to_json,
)

PLAN_VERSION = 1

ROLE_VALUE = "value"
ROLE_LINK = "link"
ROLE_ID = "id"
ROLE_INDEX = "index"
ROLE_KEY = "key"
ROLE_CARRY = "carry"
ROLE_RESCUED = "rescued"

# Every table's column of the values of its row that did not fit their
# columns (JSON text of {path: text}, the path from the row's element; null
# when none): no document key is spelled so, as sanitized names never start
# with "_" (naming.py).
RESCUED_COLUMN = "_rescued_data"

# The id rules above, for both executors: literal replacements applied in
# order (the escape character first, so the escapes added after it stay single).
KEY_SEPARATOR = "|"
NULL_COMPONENT = "\\N"
IDENTITY_ESCAPES = (("\\", "\\\\"), ("|", "\\|"))
MAP_KEY_ESCAPES = (("\\", "\\\\"), ("[", "\\["), ("]", "\\]"))

KIND_ROOT = "root"
KIND_ARRAY = "array"
KIND_MAP = "map"


@dataclass
class ColumnPlan:
    name: str
    type: str  # string | bigint | double | boolean | decimal(38,0)
    role: str
    path: list[str] = field(default_factory=list)
    child: str | None = None
    # read as the text of its values and converted on output (text_values.py);
    # a value that does not convert goes to the row's rescued data
    from_text: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ColumnPlan:
        return cls(
            name=d["name"],
            type=d["type"],
            role=d["role"],
            path=list(d.get("path") or []),
            child=d.get("child"),
            from_text=bool(d.get("from_text", False)),
        )


@dataclass
class TablePlan:
    name: str
    kind: str  # root | array | map
    parent: str | None
    parent_column: str | None  # the link column in the parent table
    source_path: list[str]  # path of the array/map within the parent's element
    element_type: Type  # type of one row's element (root: the root row struct; map: the value type)
    columns: list[ColumnPlan]
    depth: int = 0

    def column(self, name: str) -> ColumnPlan:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def athena_columns(self) -> list[tuple[str, str]]:
        """``(name, type)`` with Athena/Hive type names (string, bigint, double, boolean, decimal(38,0))."""
        return [(c.name, c.type) for c in self.columns]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "parent": self.parent,
            "parent_column": self.parent_column,
            "source_path": list(self.source_path),
            "element_type": type_to_json(self.element_type),
            "columns": [c.to_json() for c in self.columns],
            "depth": self.depth,
        }

    @classmethod
    def from_json(cls, d: dict) -> TablePlan:
        return cls(
            name=d["name"],
            kind=d["kind"],
            parent=d.get("parent"),
            parent_column=d.get("parent_column"),
            source_path=list(d.get("source_path") or []),
            element_type=type_from_json(d["element_type"]),
            columns=[ColumnPlan.from_json(c) for c in d["columns"]],
            depth=d.get("depth", 0),
        )


@dataclass
class RelationalizePlan:
    dataset_id: str
    row_type: Struct  # the type of one root row, enrichment columns included
    identity_columns: list[str]  # root JSON keys making the root row key
    carry_columns: list[str]  # root JSON keys copied into every child table (key + partition columns)
    partition_columns: list[str]  # output names of partition columns (present in every table)
    tables: list[TablePlan]  # parents before children
    version: int = PLAN_VERSION
    # keys the rows hold that the dataset's schema does not declare: path -> root rows holding it
    undeclared_keys: dict[str, int] = field(default_factory=dict)
    # columns whose wanted name another column of their table has, case aside (naming rule 3):
    # table -> {column: the JSON path it holds, from the table's element}
    renamed_columns: dict[str, dict[str, str]] = field(default_factory=dict)
    # the JSON Schema's descriptions: table -> {column: description} (descriptions.column_descriptions)
    column_descriptions: dict[str, dict[str, str]] = field(default_factory=dict)
    # root columns the executors compute from another root field, not read from the
    # rows: column JSON key -> the field whose month (:func:`time_month`) it holds
    time_partitions: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> TablePlan:
        return self.tables[0]

    def table(self, name: str) -> TablePlan:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def table_names(self) -> list[str]:
        return [t.name for t in self.tables]

    def children(self, name: str) -> list[TablePlan]:
        return [t for t in self.tables if t.parent == name]

    def athena_columns(self) -> dict[str, list[tuple[str, str]]]:
        """Every table's ``(column, Athena type)`` list, for the Glue catalog."""
        return {t.name: t.athena_columns() for t in self.tables}

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "dataset_id": self.dataset_id,
            "row_type": type_to_json(self.row_type),
            "identity_columns": list(self.identity_columns),
            "carry_columns": list(self.carry_columns),
            "partition_columns": list(self.partition_columns),
            "tables": [t.to_json() for t in self.tables],
            "undeclared_keys": dict(self.undeclared_keys),
            "renamed_columns": {table: dict(columns) for table, columns in self.renamed_columns.items()},
            "column_descriptions": {table: dict(columns) for table, columns in self.column_descriptions.items()},
            # only where there are any: a plan without them compares equal to one written before them
            **({"time_partitions": dict(self.time_partitions)} if self.time_partitions else {}),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=False)

    @classmethod
    def from_json(cls, d: dict) -> RelationalizePlan:
        if d.get("version") != PLAN_VERSION:
            raise ValueError(f"unsupported plan version {d.get('version')!r}")
        row_type = type_from_json(d["row_type"])
        assert isinstance(row_type, Struct)
        return cls(
            dataset_id=d["dataset_id"],
            row_type=row_type,
            identity_columns=list(d["identity_columns"]),
            carry_columns=list(d["carry_columns"]),
            partition_columns=list(d["partition_columns"]),
            tables=[TablePlan.from_json(t) for t in d["tables"]],
            version=d["version"],
            undeclared_keys=dict(d.get("undeclared_keys") or {}),
            renamed_columns={t: dict(c) for t, c in (d.get("renamed_columns") or {}).items()},
            column_descriptions={t: dict(c) for t, c in (d.get("column_descriptions") or {}).items()},
            time_partitions=dict(d.get("time_partitions") or {}),
        )

    @classmethod
    def loads(cls, text: str) -> RelationalizePlan:
        return cls.from_json(json.loads(text))


# ---------------------------------------------------------------------------
# time partitions

# The partition of a row whose time field spells no instant: an integer like
# every month, so no reader meets a null partition value.
NO_TIME_MONTH = 0


def time_month(value: object) -> int:
    """``yyyymm`` of the date ``value`` spells, as written (a local time stays
    in its own month), where it spells an instant (:mod:`~bridge_downstream.common.instants`);
    :data:`NO_TIME_MONTH` otherwise."""
    if instant_micros(value) is None:
        return NO_TIME_MONTH
    assert isinstance(value, str)  # instant_micros reads text only
    return int(value[0:4]) * 100 + int(value[5:7])


def time_month_sql(text: str) -> str:
    """Spark SQL of :func:`time_month` of the string expression ``text``."""
    return (
        f"CASE WHEN {instant_timestamp_sql(text)} IS NOT NULL "
        f"THEN CAST(substr({text}, 1, 4) AS bigint) * 100 + CAST(substr({text}, 6, 2) AS bigint) "
        f"ELSE {NO_TIME_MONTH} END"
    )


def with_time_partitions(plan: RelationalizePlan, sources: Mapping[str, str]) -> RelationalizePlan:
    """``plan`` whose root columns named in ``sources`` (planned as bigint
    extra and partition columns) hold the month of the field each names."""
    fields = dict(plan.row_type.fields)
    for column in sources:
        if column not in plan.partition_columns or fields.get(column) != Scalar("bigint"):
            raise ValueError(f"time partition {column!r} must be planned as a bigint partition column")
    plan.time_partitions = dict(sources)
    return plan


# ---------------------------------------------------------------------------
# building


def with_extra_columns(row_type: Type, extra_columns: dict[str, str]) -> Struct:
    """The root row type with the enrichment columns appended (an enrichment
    column replaces a document field of the same JSON key: ingest overwrites it)."""
    if isinstance(row_type, Array):  # a top-level array document: each element is a row
        row_type = row_type.element
    if not isinstance(row_type, Struct):
        raise TypeError(f"a root row must be an object, got {row_type!r}")
    for name, kind in extra_columns.items():
        if kind not in SCALAR_KINDS:
            raise ValueError(f"extra column {name!r}: type must be one of {SCALAR_KINDS}, got {kind!r}")
    fields = [(n, t) for n, t in row_type.fields if n not in extra_columns]
    fields += [(n, Scalar(kind)) for n, kind in extra_columns.items()]
    return Struct(tuple(fields))


# Before a metadata column whose name a document column has (docs/publish.md, "The table contract").
METADATA_PREFIX = "bridge_"


def build_plan(
    dataset_id: str,
    row_type: Type,
    *,
    extra_columns: dict[str, str] | None = None,
    identity_columns: list[str] | tuple[str, ...] = (),
    carry_columns: list[str] | tuple[str, ...] = (),
    partition_columns: list[str] | tuple[str, ...] = (),
    metadata_columns: list[str] | tuple[str, ...] = (),
    text_columns: Mapping[tuple[str, ...], str] | None = None,
) -> RelationalizePlan:
    """The plan for one dataset.

    ``row_type``: the finished type of one root row (from :func:`schema_types.root_row_type`
    or :func:`inference.infer_type`); a top-level Array is unwrapped to its element.
    ``extra_columns``: enrichment fields added by ingest, JSON key -> scalar type.
    ``identity_columns``: root JSON keys that identify a root row (its key
    joins their escaped text with ``|``: see the module's docstring).
    ``carry_columns``: root JSON keys copied into every child table (keys);
    ``partition_columns`` are carried too (after them, without duplicates).
    ``metadata_columns``: extra columns that hold the source's metadata (Bridge's
    S3 object metadata): one whose name a document column also has, in any case,
    is published as ``bridge_<name>`` (:data:`METADATA_PREFIX`), so the
    document's column keeps its name and its value.
    ``text_columns``: the type paths of scalars (:mod:`.fixed_types`: JSON
    keys, and steps into arrays and maps) whose values are read as text
    (``row_type`` holds a string there) and published as the kind given, the
    values that do not convert rescued in their table's
    :data:`RESCUED_COLUMN` (:mod:`.text_values`).
    """
    text_columns = dict(text_columns or {})
    extra_columns = dict(extra_columns or {})
    root_type = with_extra_columns(row_type, extra_columns)
    top = dict(root_type.fields)
    carried = list(dict.fromkeys(list(carry_columns) + list(partition_columns)))
    # the checked columns keep their narrowed type: their kind is read below
    scalar_top: dict[str, Scalar] = {}
    for name in list(identity_columns) + carried:
        t = top.get(name)
        if not isinstance(t, Scalar):
            raise ValueError(  # noqa: TRY004 - a wrong argument, not a wrong type
                f"identity/carried/partition column {name!r} must be a top-level scalar field, got {t!r}"
            )
        scalar_top[name] = t
    if not identity_columns:
        raise ValueError("identity_columns must not be empty: ids are built from them")
    for name in identity_columns:
        if scalar_top[name].kind == "double":  # engines render doubles as text differently
            raise ValueError(f"identity column {name!r} must be string, bigint or boolean, not double")

    tables: list[TablePlan] = []
    table_names = NameAllocator()

    # root -------------------------------------------------------------
    doc_type = Struct(tuple((n, t) for n, t in root_type.fields if n not in extra_columns))
    doc_leaves = [(document_path(parts), path, leaf) for parts, path, leaf in _leaves(doc_type, [])]
    doc_names = {join_name(*parts).lower() for parts, _, _ in doc_leaves}
    extra_output = {
        n: sanitize(METADATA_PREFIX + n if n in metadata_columns and sanitize(n).lower() in doc_names else n)
        for n in extra_columns
    }
    root_names = NameAllocator(list(extra_output.values()))
    if len({v.lower() for v in extra_output.values()}) != len(extra_output):
        raise ValueError(f"extra column names clash after sanitizing: {sorted(extra_output.values())}")
    root_name = table_names.allocate(root_table_name(dataset_id))
    root_columns: list[ColumnPlan] = []
    renamed: dict[str, dict[str, str]] = {}
    for parts, path, leaf in doc_leaves:
        name = _allocate(root_names, join_name(*parts), path, renamed.setdefault(root_name, {}))
        column = _leaf_column(name, path, leaf)
        if tuple(path) in text_columns:
            column.type, column.from_text = text_columns[tuple(path)], True
        root_columns.append(column)
    for n, kind in extra_columns.items():
        root_columns.append(_leaf_column(extra_output[n], [n], Scalar(kind)))
    root_columns.append(ColumnPlan(name=RESCUED_COLUMN, type="string", role=ROLE_RESCUED))
    root_output = {c.path[0]: c.name for c in root_columns if c.role == ROLE_VALUE and len(c.path) == 1}
    carried_out = [(root_output[n], scalar_top[n].kind, n) for n in carried]
    partition_out = [root_output[n] for n in partition_columns]

    root = TablePlan(root_name, KIND_ROOT, None, None, [], root_type, root_columns, 0)
    _add_table(root, tables, table_names, carried_out, renamed, text_columns, ())

    return RelationalizePlan(
        dataset_id=dataset_id,
        row_type=root_type,
        identity_columns=list(identity_columns),
        carry_columns=carried,
        partition_columns=partition_out,
        tables=tables,
        renamed_columns={table: columns for table, columns in renamed.items() if columns},
    )


def _add_table(
    table: TablePlan,
    tables: list[TablePlan],
    table_names: NameAllocator,
    carried_out: list[tuple[str, str, str]],
    renamed: dict[str, dict[str, str]],
    text_columns: Mapping[tuple[str, ...], str],
    element_path: tuple[str, ...],
) -> None:
    """Append ``table`` and, depth first in column order, the tables of its link columns;
    ``renamed`` gets the columns of each table that naming rule 3 renames.
    ``element_path``: the type path of ``table``'s element (``text_columns``' keys)."""
    tables.append(table)
    element_lookup = table.element_type
    for column in table.columns:
        if column.role != ROLE_LINK:
            continue
        container = _type_at(element_lookup, column.path)
        child_name = table_names.allocate(child_table_name(table.name, column.name))
        column.child = child_name
        names = NameAllocator()
        if isinstance(container, Array):
            kind, element, step = KIND_ARRAY, container.element, ARRAY_STEP
            head = [
                ColumnPlan(names.take("id"), "string", ROLE_ID),
                ColumnPlan(names.take("index"), "bigint", ROLE_INDEX),
            ]
            prefix, scalar_name = [], f"{column.name}_val"
        elif isinstance(container, Map):
            kind, element, step = KIND_MAP, container.value, MAP_STEP
            head = [
                ColumnPlan(names.take("id"), "string", ROLE_ID),
                ColumnPlan(names.take("key"), "string", ROLE_KEY),
            ]
            prefix, scalar_name = ["value"], "value"
        else:  # pragma: no cover - links only exist for containers
            raise TypeError(container)
        tail = [ColumnPlan(names.take(out), kind_, ROLE_CARRY, [key]) for out, kind_, key in carried_out]
        body: list[ColumnPlan] = []
        child_renamed = renamed.setdefault(child_name, {})
        child_path = (*element_path, *column.path, step)
        if isinstance(element, Struct):
            for parts, path, leaf in _leaves(element, prefix):
                body.append(_leaf_column(_allocate(names, join_name(*parts), path, child_renamed), path, leaf))
        else:
            body.append(_leaf_column(_allocate(names, sanitize(scalar_name), [], child_renamed), [], element))
        for leaf_column in body:
            if (*child_path, *leaf_column.path) in text_columns:
                leaf_column.type, leaf_column.from_text = text_columns[(*child_path, *leaf_column.path)], True
        tail.append(ColumnPlan(name=RESCUED_COLUMN, type="string", role=ROLE_RESCUED))
        child = TablePlan(
            name=child_name,
            kind=kind,
            parent=table.name,
            parent_column=column.name,
            source_path=list(column.path),
            element_type=element,
            columns=head + body + tail,
            depth=table.depth + 1,
        )
        _add_table(child, tables, table_names, carried_out, renamed, text_columns, child_path)


def rescued_path(column: ColumnPlan) -> str:
    """The key of a misfit of ``column`` in its row's rescued data: the JSON
    path from the row's element, or the column's name where the element is the value."""
    return shown_path(column.path) or column.name


def element_paths(plan: RelationalizePlan) -> dict[str, tuple[str, ...]]:
    """Each table's element as a type path from the root row (:mod:`.fixed_types`)."""
    paths: dict[str, tuple[str, ...]] = {}
    for table in plan.tables:  # parents come before their children
        if table.parent is None:
            paths[table.name] = ()
        else:
            step = ARRAY_STEP if table.kind == KIND_ARRAY else MAP_STEP
            paths[table.name] = (*paths[table.parent], *table.source_path, step)
    return paths


def _allocate(names: NameAllocator, wanted: str, path: list[str], renamed: dict[str, str]) -> str:
    """A document column's name; a renamed one is recorded with the JSON path it
    holds (the element itself, a scalar array element or map value: its wanted name)."""
    name = names.allocate(wanted)
    if name != wanted:
        renamed[name] = shown_path(path) if path else wanted
    return name


def document_path(path: list[str]) -> list[str]:
    """A root row's JSON path as the document spells it: a top-level key
    ingest escaped, because a field it adds has the same name, unescaped."""
    return [document_key(path[0]), *path[1:]] if path else path


def shown_path(path: list[str]) -> str:
    """A JSON path as the reports show it: keys joined with ``.``, as the document spells them."""
    return ".".join(document_path(path))


def _leaf_column(name: str, path: list[str], leaf: Type) -> ColumnPlan:
    if isinstance(leaf, (Array, Map)):
        return ColumnPlan(name=name, type="string", role=ROLE_LINK, path=path)
    assert isinstance(leaf, Scalar), leaf
    return ColumnPlan(name=name, type=leaf.kind, role=ROLE_VALUE, path=path, from_text=leaf.kind == TIMESTAMP)


def _leaves(struct: Struct, prefix: list[str]) -> Iterator[tuple[list[str], list[str], Type]]:
    """(name parts, JSON path, leaf type) of a struct, flattening nested structs."""
    for key, t in struct.fields:
        if isinstance(t, Struct):
            for parts, path, leaf in _leaves(t, []):
                yield prefix + [key] + parts, [key] + path, leaf
        else:
            yield prefix + [key], [key], t


def _type_at(t: Type, path: list[str]) -> Type | None:
    """None when the last key of ``path`` is not a field of its struct."""
    node: Type | None = t
    for key in path:
        assert isinstance(node, Struct), (node, path)
        node = node.get(key)
    return node


def type_at(t: Type, path: list[str]) -> Type | None:
    return _type_at(t, path)


def plan_summary(plan: RelationalizePlan) -> list[dict[str, Any]]:
    """Human-readable summary: one entry per table."""
    return [
        {
            "table": t.name,
            "parent": t.parent,
            "kind": t.kind,
            "columns": [f"{c.name}:{c.type}" for c in t.columns],
        }
        for t in plan.tables
    ]
