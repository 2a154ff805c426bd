"""Relationalize: nested JSON rows -> flat, linked tables (our replacement for
Glue's ``DynamicFrame.relationalize``).

Pipeline: type tree (from a JSON Schema, or inferred from the rows) ->
:func:`build_plan` (pure, JSON-serializable) -> an executor
(:func:`relationalize_spark` or :func:`relationalize_arrow`), which produce the
same tables.  Rules: docs/relationalize.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from os import PathLike
from typing import Any

from bridge_downstream.relationalize.inference import infer_type, infer_type_from_ndjson
from bridge_downstream.relationalize.plan import (
    ColumnPlan,
    RelationalizePlan,
    TablePlan,
    build_plan,
)
from bridge_downstream.relationalize.schema_types import Resolver, root_row_type, schema_to_type
from bridge_downstream.relationalize.types import Type, merge, type_from_json, type_to_json

__all__ = [
    "ColumnPlan",
    "RelationalizePlan",
    "TablePlan",
    "Type",
    "build_plan",
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
]


def plan_from_schema(
    dataset_id: str,
    schema: dict,
    resolve: Resolver | None = None,
    *,
    extra_columns: dict[str, str],
    identity_columns: list[str],
    carry_columns: list[str] = (),
    partition_columns: list[str] = (),
    base_uri: str | None = None,
    strict: bool = False,
) -> RelationalizePlan:
    """Plan for a dataset with a JSON Schema (no inference pass).

    Raises TypeError when the schema does not describe an object (or an array of
    objects) with properties -- e.g. a definitions-only schema: infer instead."""
    return build_plan(
        dataset_id,
        root_row_type(schema, resolve, base_uri, strict=strict),
        extra_columns=extra_columns,
        identity_columns=identity_columns,
        carry_columns=carry_columns,
        partition_columns=partition_columns,
    )


def plan_from_rows(
    dataset_id: str,
    rows: Iterable[dict[str, Any]],
    *,
    extra_columns: dict[str, str],
    identity_columns: list[str],
    carry_columns: list[str] = (),
    partition_columns: list[str] = (),
) -> RelationalizePlan:
    """Plan for a dataset without a schema: the type tree is inferred from the root rows."""
    return build_plan(
        dataset_id,
        infer_type(rows),
        extra_columns=extra_columns,
        identity_columns=identity_columns,
        carry_columns=carry_columns,
        partition_columns=partition_columns,
    )


def plan_from_ndjson(
    dataset_id: str,
    paths: Iterable[str | PathLike],
    *,
    extra_columns: dict[str, str],
    identity_columns: list[str],
    carry_columns: list[str] = (),
    partition_columns: list[str] = (),
) -> RelationalizePlan:
    """:func:`plan_from_rows` over local NDJSON files (streamed)."""
    return build_plan(
        dataset_id,
        infer_type_from_ndjson(paths),
        extra_columns=extra_columns,
        identity_columns=identity_columns,
        carry_columns=carry_columns,
        partition_columns=partition_columns,
    )


def relationalize_spark(spark, plan: RelationalizePlan, source, **kwargs):
    from bridge_downstream.relationalize.spark_executor import relationalize_spark as run

    return run(spark, plan, source, **kwargs)


def relationalize_arrow(plan: RelationalizePlan, source=None, **kwargs):
    from bridge_downstream.relationalize.arrow_executor import relationalize_arrow as run

    return run(plan, source, **kwargs)
