"""Run a profile's expectations on one published version with Great Expectations 1.x.

Each table is read from the version's Parquet (the partition values added as
columns: both engines write the same files), into pandas by default
(:class:`PandasTables`) or, where a Spark session is at hand, as a Spark
DataFrame (:class:`SparkTables`: a table larger than the driver's memory is
checked where it lies). The expectations are translated to GX once, whatever
the source, and run with GX in an ephemeral context: GX writes no files and
keeps no state between runs. The results are plain JSON, stored in the
version's manifest (``quality``) and rendered by :mod:`.html_report`.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Protocol

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage
from bridge_downstream.config.expectations import ANY_DATASET, ROOT_TABLE, Expectation, Expectations
from bridge_downstream.config.profiles import Profile
from bridge_downstream.publish.manifest import PublishedTable, PublishManifest, read_manifest

SAMPLE_COUNT = 5  # unexpected values (with their keys) kept per expectation
CHILD_KEY_COLUMNS = ("id", "index")  # what tells a child table's rows apart, beside the carried record key


def expectations_for(expectations: Expectations, dataset_id: str) -> dict[str, tuple[Expectation, ...]]:
    """A dataset's expectations per table: those for every dataset, then its own."""
    tables: dict[str, tuple[Expectation, ...]] = {}
    for name in (ANY_DATASET, dataset_id):
        for table, items in expectations.get(name, {}).items():
            tables[table] = tables.get(table, ()) + items
    return tables


def root_table(manifest: PublishManifest) -> PublishedTable:
    """The dataset's root table: of the tables without a parent, the shortest name
    (the nested table is named after the root table)."""
    return min((t for t in manifest.tables.values() if t.parent is None), key=lambda t: len(t.name))


class TableSource(Protocol):
    """Where a table's rows are checked: the frame GX is given, and the GX
    datasource that takes it. Everything else is the same for every source."""

    def read(self, published: Storage, table: PublishedTable, columns: set[str]) -> Any: ...

    def as_numbers(self, frame: Any, column: str) -> Any:
        """``frame`` with ``column`` as numbers, text that is no number null."""

    def add_datasource(self, context: Any) -> Any: ...


class PandasTables:
    """The table read into pandas on the driver: quick for what fits in its memory."""

    def read(self, published: Storage, table: PublishedTable, columns: set[str]):
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        pieces = []
        for file in table.files_of("parquet"):
            piece = pq.read_table(io.BytesIO(published.read_bytes(file.key)))
            for name in table.partition_keys:
                if name not in piece.column_names:
                    value = _partition_value(name, file.partition.get(name))
                    piece = piece.append_column(name, pa.array([value] * piece.num_rows, _partition_arrow_type(name)))
            pieces.append(piece)
        if not pieces:
            return pd.DataFrame(columns=sorted(columns))
        return pa.concat_tables(pieces, promote_options="permissive").to_pandas()

    def as_numbers(self, frame, column: str):
        import pandas as pd

        frame[column] = pd.to_numeric(frame[column], errors="coerce")
        return frame

    def add_datasource(self, context):
        return context.data_sources.add_pandas("published")


class SparkTables:
    """The table read by Spark, reached through a
    :class:`~bridge_downstream.publish.spark_engine.SparkLocation` (directly on
    Glue and locally, a staged copy against emulated S3): GX computes its
    metrics as Spark jobs, so no table has to fit in the driver's memory."""

    def __init__(self, spark: Any, location: Any = None):
        from bridge_downstream.publish.spark_engine import DirectLocation

        self.spark = spark
        self.location = location or DirectLocation()

    def read(self, published: Storage, table: PublishedTable, columns: set[str]):
        from bridge_downstream.quality.compare import read_published_spark

        frame = read_published_spark(self.spark, self.location, published, table)
        if frame is None:
            return self.spark.createDataFrame([], ", ".join(f"`{name}` string" for name in sorted(columns)))
        return frame

    def as_numbers(self, frame, column: str):
        from pyspark.sql import functions as F
        from pyspark.sql.types import NumericType

        if isinstance(frame.schema[column].dataType, NumericType):
            return frame
        return frame.withColumn(column, F.expr(f"try_cast(`{column.replace('`', '``')}` AS DOUBLE)"))

    def add_datasource(self, context):
        # Not persisted: each expectation's scan reads only its columns of the
        # Parquet; a cached copy of every column would be the whole table again.
        return context.data_sources.add_spark("published", persist=False)


def _partition_value(name: str, text: str | None) -> int | str | None:
    if text is None or text in ("", layout.HIVE_DEFAULT_PARTITION):
        return None
    return int(text) if layout.partition_type(name) == "int" else text


def _partition_arrow_type(name: str):
    import pyarrow as pa

    return pa.int32() if layout.partition_type(name) == "int" else pa.string()


def run_expectations(
    published: Storage,
    manifest: PublishManifest,
    profile: Profile,
    expectations: Expectations | None = None,
    source: TableSource | None = None,
) -> dict:
    """The version's quality: ``passed`` (no expectation failed), ``blocked`` (a
    ``block`` expectation failed) and one result per expectation. ``source``:
    where the tables are read and checked (default :class:`PandasTables`)."""
    source = source or PandasTables()
    wanted = expectations_for(profile.expectations if expectations is None else expectations, manifest.dataset_id)
    results: list[dict] = []
    for table_name, items in wanted.items():
        table = root_table(manifest) if table_name == ROOT_TABLE else manifest.tables.get(table_name)
        if table is None:
            results.extend(_result(manifest, table_name, item, error="no such table in this version") for item in items)
            continue
        results.extend(_check_table(published, manifest, profile, table, items, source))
    failed = [r for r in results if not r["passed"]]
    return {
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "passed": not failed,
        "blocked": any(r["policy"] == "block" for r in failed),
        "results": results,
    }


def failed_results(manifest: PublishManifest) -> list[dict]:
    """The expectations a version failed, as its manifest records them."""
    return [r for r in (manifest.quality or {}).get("results", []) if not r["passed"]]


def _result(manifest: PublishManifest, table: str, item: Expectation, **outcome) -> dict:
    return {
        "dataset": manifest.dataset_id,
        "table": table,
        "kind": item.kind,
        "expectation": item.describe(),
        "policy": item.policy,
        "passed": False,
        "element_count": None,
        "unexpected_count": None,
        "samples": [],
        "note": None,
        "error": None,
        **outcome,
    }


def _key_columns(profile: Profile, manifest: PublishManifest, table: PublishedTable) -> list[str]:
    if table.parent is None:
        key = profile.identity_columns(manifest.dataset_id)
    else:
        key = (*profile.carry_columns(manifest.dataset_id), *CHILD_KEY_COLUMNS)
    return list(dict.fromkeys(key))


def _check_table(
    published: Storage,
    manifest: PublishManifest,
    profile: Profile,
    table: PublishedTable,
    items: tuple[Expectation, ...],
    source: TableSource,
) -> list[dict]:
    columns = {c["name"] for c in table.columns} | set(table.partition_keys)
    key = [c for c in _key_columns(profile, manifest, table) if c in columns]
    frame = source.read(published, table, columns)
    # recover's numbers are often published as text (its table types): ranges compare
    # them as numbers, as recover's GX on Spark cast them; text that is no number is no value here.
    for column in sorted({i.column for i in items if i.kind == "between" and i.column in columns}):
        frame = source.as_numbers(frame, column)
    gx = _great_expectations()
    outcomes: dict[int, dict] = {}
    suite_items: list[tuple[int, Any]] = []
    for number, item in enumerate(items):
        ready = _gx_expectation(gx, item, number, published, manifest, profile, table, columns)
        if isinstance(ready, dict):
            outcomes[number] = _result(manifest, table.name, item, **ready)
        else:
            suite_items.append((number, ready))
    if suite_items:
        for number, validation in _validate(gx, source, frame, [e for _, e in suite_items], key).items():
            outcomes[number] = _result(manifest, table.name, items[number], **validation)
    return [outcomes[number] for number in range(len(items))]


def _gx_expectation(gx, item, number, published, manifest, profile, table, columns):
    """The GX expectation for ``item``, or its result where GX has nothing to check."""
    meta = {"number": number}
    if item.kind == "column_exists":
        return gx.expectations.ExpectColumnToExist(column=item.column, meta=meta)
    if item.kind == "row_count_change":
        before = previous_rows(published, manifest, table.name)
        if before is None:
            return {"passed": True, "note": "no previous version of this table to compare with"}
        return gx.expectations.ExpectTableRowCountToBeBetween(
            min_value=None if item.max_decrease is None else math.ceil(before * (1 - item.max_decrease)),
            max_value=None if item.max_increase is None else math.floor(before * (1 + item.max_increase)),
            meta={**meta, "previous_rows": before},
        )
    if item.kind == "unique":
        unique = list(item.columns) or _key_columns(profile, manifest, table)
        missing = [c for c in unique if c not in columns]
        if missing or not unique:
            return {"error": f"key columns {missing or unique} not in the table"}
        if len(unique) == 1:
            return gx.expectations.ExpectColumnValuesToBeUnique(column=unique[0], meta=meta)
        return gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=unique, meta=meta)
    if item.column not in columns:
        # A column no row of this version holds has no value to judge; column_exists asks for it.
        return {"passed": True, "note": f"no column {item.column}: nothing to check"}
    if item.kind == "between":
        return gx.expectations.ExpectColumnValuesToBeBetween(
            column=item.column, min_value=item.min, max_value=item.max, meta=meta
        )
    if item.kind == "not_null":
        return gx.expectations.ExpectColumnValuesToNotBeNull(column=item.column, meta=meta)
    return gx.expectations.ExpectColumnValuesToBeInSet(column=item.column, value_set=list(item.values), meta=meta)


def _validate(gx, source: TableSource, frame, suite_items: list, key: list[str]) -> dict[int, dict]:
    """Run GX expectations on ``frame`` in an ephemeral context: result per expectation number."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # Every store in memory and no Data Docs site: the context leaves nothing behind.
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    batch = (
        source.add_datasource(context)
        .add_dataframe_asset("table")
        .add_batch_definition_whole_dataframe("version")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    # SUMMARY: a few unexpected rows, not all of them (on Spark, all would be collected to the driver).
    result_format: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_COUNT}
    if key:
        result_format["unexpected_index_column_names"] = key
    outcomes = {}
    # One validation each, not one suite: a suite keeps one of two equal expectations
    # (the profile's warn and a study's block on the same range), and each has its result.
    for expectation in suite_items:
        result = batch.validate(expectation, result_format=result_format)
        details = result.result or {}
        error = (result.exception_info or {}).get("exception_message") if result.exception_info else None
        outcomes[expectation.meta["number"]] = {
            "passed": bool(result.success),
            "element_count": details.get("element_count", details.get("observed_value")),
            # Spark sums no rows to null where pandas counts 0; absent: not a count of rows.
            "unexpected_count": (details["unexpected_count"] or 0) if "unexpected_count" in details else None,
            "samples": _samples(details, key),
            "error": error or None,
        }
    return outcomes


def _samples(details: dict, key: list[str]) -> list[dict]:
    """A few unexpected values with their keys, in key order: which rows a source
    returns first is its own (file order on pandas, task order on Spark)."""
    indexed = details.get("partial_unexpected_index_list") or []
    if indexed and isinstance(indexed[0], dict):
        samples = [
            {
                "value": _json_value(next((v for k, v in row.items() if k not in key), None)),
                "key": {k: _json_value(row.get(k)) for k in key},
            }
            for row in indexed[:SAMPLE_COUNT]
        ]
    else:
        values = (details.get("partial_unexpected_list") or [])[:SAMPLE_COUNT]
        samples = [{"value": _json_value(v), "key": {}} for v in values]
    return sorted(samples, key=lambda sample: json.dumps(sample, sort_keys=True, default=str))


def _json_value(value):
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)  # pandas keeps whole numbers read from text as integers, Spark's cast makes them doubles
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def _great_expectations():
    # GX sends usage statistics unless told not to; the pipeline runs offline.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def previous_rows(published: Storage, manifest: PublishManifest, table_name: str) -> int | None:
    if manifest.previous_version is None:
        return None
    previous = read_manifest(published, manifest.dataset_id, manifest.previous_version)
    table = previous.tables.get(table_name)
    return None if table is None else table.rows


REPORT_NAME = "quality.html"


def check_version(
    published: Storage,
    manifest: PublishManifest,
    profile: Profile,
    expectations: Expectations | None = None,
    source: TableSource | None = None,
) -> dict:
    """:func:`run_expectations`, its HTML report written beside the version (``quality.html``)."""
    from bridge_downstream.quality.html_report import render_quality_html

    quality = run_expectations(published, manifest, profile, expectations, source)
    report_key = f"{layout.version_prefix(manifest.dataset_id, manifest.version)}/{REPORT_NAME}"
    published.write_bytes(report_key, render_quality_html([(manifest, quality)]).encode())
    return {**quality, "report": report_key}


def publish_quality_check(
    profile: Profile, expectations: Expectations | None = None, source: TableSource | None = None
) -> Callable[[Storage, PublishManifest], dict]:
    """What a publish runs on each new version before making it current
    (:func:`bridge_downstream.publish.engine_steps.publishing_with_quality_check`);
    ``source``: :class:`SparkTables` where the publish runs on Spark."""

    def check(published: Storage, manifest: PublishManifest) -> dict:
        return check_version(published, manifest, profile, expectations, source)

    return check
