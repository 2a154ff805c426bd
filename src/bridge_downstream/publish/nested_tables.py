"""The nested table in a publish (docs/publish.md, "Nested tables"): whether
a dataset gets one, and its manifest entry once its Parquet files are
written. Both engines write it after the plan's tables, partitioned as they
are; it has no CSVs (a CSV cell holds no struct or list)."""

from __future__ import annotations

from collections.abc import Callable

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage
from bridge_downstream.config.profiles import Profile
from bridge_downstream.publish.engine_steps import describe_file, parquet_files, parquet_rows, table_partition_keys
from bridge_downstream.publish.manifest import PublishedFiles, PublishedTable
from bridge_downstream.relationalize.nested import NestedTablePlan, plan_nested_table
from bridge_downstream.relationalize.plan import ROLE_LINK, RelationalizePlan


def nested_table_of(plan: RelationalizePlan, profile: Profile, dataset_id: str) -> NestedTablePlan | None:
    """The dataset's nested table, when its profile asks for one."""
    return plan_nested_table(plan) if profile.publishes_nested(dataset_id) else None


def describe_nested_table(
    published: Storage,
    plan: RelationalizePlan,
    dataset_id: str,
    version: str,
    nested: NestedTablePlan,
    mapper: Callable = map,
) -> PublishedTable:
    """The nested table's manifest entry, once its Parquet files are written
    (Spark's bookkeeping files removed, as for every table)."""
    version_prefix = layout.version_prefix(dataset_id, version)
    prefix = layout.table_prefix(dataset_id, version, "parquet", nested.name) + "/"
    keys = parquet_files(published, prefix)

    def describe(key: str):
        return describe_file(published, key, "parquet", parquet_rows(published, key), version_prefix)

    files = PublishedFiles(mapper(describe, sorted(keys)))
    partition_keys = table_partition_keys(plan, nested)
    comments = nested_comments(plan, nested)
    return PublishedTable(
        name=nested.name,
        dataset_id=dataset_id,
        parent=None,
        columns=[
            {"name": n, "type": t} | ({"comment": comments[n]} if n in comments else {})
            for n, t in nested.athena_columns()
            if n not in partition_keys
        ],
        partition_keys=partition_keys,
        rows=sum(f.rows for f in files),
        files=files,
    )


def nested_comments(plan: RelationalizePlan, nested: NestedTablePlan) -> dict[str, str]:
    """The nested table's column comments: a root table column's own, and for
    an array or map the one of its link column in the root table (an object's
    fields are inside its struct type, which a Glue comment does not reach)."""
    described = plan.column_descriptions.get(plan.root.name, {})
    links = {c.path[0]: c.name for c in plan.root.columns if c.role == ROLE_LINK and len(c.path) == 1}
    comments = {}
    for column in nested.columns:
        source = column.name if column.key is None else links.get(column.key)
        if source in described:
            comments[column.name] = described[source]
    return comments
