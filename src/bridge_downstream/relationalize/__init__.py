"""Relationalize: nested JSON rows -> flat, linked tables (our replacement for
Glue's ``DynamicFrame.relationalize``).

Pipeline: type tree (from a JSON Schema, or inferred from the rows) ->
:func:`build_plan` (pure, JSON-serializable) -> an executor
(:func:`relationalize_spark` or :func:`relationalize_arrow`), which produce the
same tables.  Rules: docs/relationalize.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Required, TypedDict, Unpack

from bridge_downstream.common.jsoncodec import DOCUMENT_KEY_ESCAPE, document_key
from bridge_downstream.relationalize.descriptions import column_descriptions
from bridge_downstream.relationalize.fixed_types import fixed_row_type
from bridge_downstream.relationalize.inference import (
    infer_type,
    infer_type_from_ndjson,
    widen_integers,
    with_absent_fields,
)
from bridge_downstream.relationalize.plan import (
    ColumnPlan,
    RelationalizePlan,
    TablePlan,
    build_plan,
)
from bridge_downstream.relationalize.schema_extension import extend_with_ndjson
from bridge_downstream.relationalize.schema_types import Resolver, root_row_type, schema_to_type
from bridge_downstream.relationalize.types import Array, Struct, Type, finalize, merge, type_from_json, type_to_json

__all__ = [
    "ColumnPlan",
    "ColumnTypes",
    "PlanColumns",
    "RelationalizePlan",
    "TablePlan",
    "Type",
    "build_plan",
    "column_descriptions",
    "infer_type",
    "infer_type_from_ndjson",
    "merge",
    "plan_from_ndjson",
    "plan_from_rows",
    "plan_from_schema",
    "relationalize_arrow",
    "relationalize_spark",
    "root_row_type",
    "schema_to_type",
    "type_from_json",
    "type_to_json",
    "widen_integers",
]


class PlanColumns(TypedDict, total=False):
    """The columns a plan adds to or takes from the rows, whatever its type tree
    comes from (the keyword arguments of :func:`build_plan`)."""

    extra_columns: Required[dict[str, str]]
    identity_columns: Required[list[str]]
    carry_columns: list[str] | tuple[str, ...]
    partition_columns: list[str] | tuple[str, ...]
    metadata_columns: list[str] | tuple[str, ...]


def plan_from_schema(
    dataset_id: str,
    schema: dict,
    resolve: Resolver | None = None,
    *,
    base_uri: str | None = None,
    strict: bool = False,
    ndjson: Iterable[bytes | str] | None = None,
    types: ColumnTypes | None = None,
    **columns: Unpack[PlanColumns],
) -> RelationalizePlan:
    """Plan for a dataset with a JSON Schema (no inference pass).

    ``ndjson``: the dataset's NDJSON (whole lines). Its keys extend the schema's
    (:mod:`.schema_extension`): a key the schema does not declare, or the keys
    of an object it leaves open, get columns after the declared ones, and the
    plan's ``undeclared_keys`` counts the rows holding each. An ``integer``
    column that holds an integer beyond the signed 64-bit range there is
    widened to decimal(38,0) instead of reading it as null (:func:`widen_integers`).

    ``types``: the types declared and kept from an earlier version
    (:func:`.fixed_types.fixed_row_type`); given the NDJSON, the columns the rows
    do not all fit are read as text and their misfits rescued.

    Raises TypeError when the schema does not describe an object (or an array of
    objects) with properties -- e.g. a definitions-only schema: infer instead."""
    added = columns["extra_columns"]
    if ndjson is None:
        declared = root_row_type(schema, resolve, base_uri, strict=strict)
        return build_plan(dataset_id, _escaped_added_keys(declared, added), **columns)
    partial = _escaped_added_keys(root_row_type(schema, resolve, base_uri, strict=strict, finalized=False), added)
    if not isinstance(partial, Struct):  # not an object: build_plan says why
        return build_plan(dataset_id, finalize(partial), **columns)
    extended = extend_with_ndjson(partial, ndjson, ignored_keys=added)  # one pass, streamed
    plan = _fixed_plan(dataset_id, extended.row_type, extended.data_type, types, columns)
    plan.undeclared_keys = {document_key(path): rows for path, rows in extended.undeclared_keys.items()}
    return plan


def _escaped_added_keys(declared: Type, added: Mapping[str, str]) -> Type:
    """The schema's root type with each property that a field ingest adds also
    names under the escaped key ingest writes the document's value under
    (:data:`~bridge_downstream.common.jsoncodec.DOCUMENT_KEY_ESCAPE`)."""
    if isinstance(declared, Array):
        return Array(_escaped_added_keys(declared.element, added))
    if not isinstance(declared, Struct) or not any(name in added for name, _ in declared.fields):
        return declared
    return Struct(tuple((DOCUMENT_KEY_ESCAPE + n if n in added else n, t) for n, t in declared.fields))


def plan_from_rows(
    dataset_id: str,
    rows: Iterable[dict[str, Any]],
    types: ColumnTypes | None = None,
    **columns: Unpack[PlanColumns],
) -> RelationalizePlan:
    """Plan for a dataset without a schema: the type tree is inferred from the root rows.
    A key column (identity, carried, partition) no row holds -- e.g. a dataset
    without rows -- is a string column of nulls, so every table still exists.
    ``types``: as for :func:`plan_from_schema`."""
    return _inferred_plan(dataset_id, infer_type(rows), types, columns)


def plan_from_ndjson(
    dataset_id: str,
    paths: Iterable[str | PathLike],
    types: ColumnTypes | None = None,
    **columns: Unpack[PlanColumns],
) -> RelationalizePlan:
    """:func:`plan_from_rows` over local NDJSON files (streamed)."""
    return _inferred_plan(dataset_id, infer_type_from_ndjson(paths), types, columns)


@dataclass(frozen=True)
class ColumnTypes:
    """The column types a plan keeps whatever its rows hold: ``declared`` by a
    profile (top-level JSON key -> type), ``previous``: the row type of the
    version the publish replaces."""

    declared: Mapping[str, str] = field(default_factory=dict)
    previous: Type | None = None


def _inferred_plan(dataset_id: str, row_type: Type, types: ColumnTypes | None, columns: PlanColumns):
    keys = [*columns["identity_columns"], *columns.get("carry_columns", ()), *columns.get("partition_columns", ())]
    return _fixed_plan(dataset_id, with_absent_fields(row_type, keys), row_type, types, columns)


def _fixed_plan(
    dataset_id: str, row_type: Type, data_type: Type | None, types: ColumnTypes | None, columns: PlanColumns
) -> RelationalizePlan:
    if types is None:
        return build_plan(dataset_id, row_type, **columns)
    fixed = fixed_row_type(
        row_type, data_type, declared=types.declared, previous=types.previous, ignored_keys=columns["extra_columns"]
    )
    return build_plan(dataset_id, fixed.row_type, text_columns=fixed.text_columns, **columns)


def relationalize_spark(spark, plan: RelationalizePlan, source, **kwargs):
    from bridge_downstream.relationalize.spark_executor import relationalize_spark as run

    return run(spark, plan, source, **kwargs)


def relationalize_arrow(plan: RelationalizePlan, source=None, **kwargs):
    from bridge_downstream.relationalize.arrow_executor import relationalize_arrow as run

    return run(plan, source, **kwargs)
