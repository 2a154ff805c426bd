"""Run a profile's expectations on one published version with Great Expectations 1.x.

Each table is read from the version's Parquet (pyarrow, the partition values
added as columns: both engines write the same files) into pandas, and its
expectations run with GX in an ephemeral context: GX writes no files
and keeps no state between runs. The results are plain JSON, stored in the
version's manifest (``quality``) and rendered by :mod:`.html_report`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

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


def run_expectations(
    published: Storage, manifest: PublishManifest, profile: Profile, expectations: Expectations | None = None
) -> dict:
    """The version's quality: ``passed`` (no expectation failed), ``blocked`` (a
    ``block`` expectation failed) and one result per expectation."""
    wanted = expectations_for(profile.expectations if expectations is None else expectations, manifest.dataset_id)
    results: list[dict] = []
    for table_name, items in wanted.items():
        table = root_table(manifest) if table_name == ROOT_TABLE else manifest.tables.get(table_name)
        if table is None:
            results.extend(_result(manifest, table_name, item, error="no such table in this version") for item in items)
            continue
        results.extend(_check_table(published, manifest, profile, table, items))
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
) -> list[dict]:
    columns = {c["name"] for c in table.columns} | set(table.partition_keys)
    key = [c for c in _key_columns(profile, manifest, table) if c in columns]
    frame = _read_table(published, table, columns)
    gx = _great_expectations()
    outcomes: dict[int, dict] = {}
    suite_items: list[tuple[int, Any]] = []
    for number, item in enumerate(items):
        ready = _gx_expectation(gx, item, number, published, manifest, profile, table, columns, frame)
        if isinstance(ready, dict):
            outcomes[number] = _result(manifest, table.name, item, **ready)
        else:
            suite_items.append((number, ready))
    if suite_items:
        for number, validation in _validate(gx, frame, [e for _, e in suite_items], key).items():
            outcomes[number] = _result(manifest, table.name, items[number], **validation)
    return [outcomes[number] for number in range(len(items))]


def _read_table(published: Storage, table: PublishedTable, columns: set[str]):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    pieces = []
    for file in table.files_of("parquet"):
        piece = pq.read_table(io.BytesIO(published.read_bytes(file.key)))
        for name, value in file.partition.items():
            if name not in piece.column_names:
                piece = piece.append_column(name, pa.array([value] * piece.num_rows, pa.string()))
        pieces.append(piece)
    if not pieces:
        return pd.DataFrame(columns=sorted(columns))
    return pa.concat_tables(pieces, promote_options="permissive").to_pandas()


def _gx_expectation(gx, item, number, published, manifest, profile, table, columns, frame):
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
        # recover's numbers are often published as text (its table types): compared as numbers,
        # as recover's GX on Spark cast them; text that is no number is no value here.
        import pandas as pd

        frame[item.column] = pd.to_numeric(frame[item.column], errors="coerce")
        return gx.expectations.ExpectColumnValuesToBeBetween(
            column=item.column, min_value=item.min, max_value=item.max, meta=meta
        )
    if item.kind == "not_null":
        return gx.expectations.ExpectColumnValuesToNotBeNull(column=item.column, meta=meta)
    return gx.expectations.ExpectColumnValuesToBeInSet(column=item.column, value_set=list(item.values), meta=meta)


def _validate(gx, frame, suite_items: list, key: list[str]) -> dict[int, dict]:
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
        context.data_sources.add_pandas("published")
        .add_dataframe_asset("table")
        .add_batch_definition_whole_dataframe("version")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result_format: dict[str, Any] = {"result_format": "COMPLETE", "partial_unexpected_count": SAMPLE_COUNT}
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
            "unexpected_count": details.get("unexpected_count"),
            "samples": _samples(details, key),
            "error": error or None,
        }
    return outcomes


def _samples(details: dict, key: list[str]) -> list[dict]:
    indexed = details.get("unexpected_index_list") or []
    if indexed and isinstance(indexed[0], dict):
        return [
            {
                "value": _json_value(next((v for k, v in row.items() if k not in key), None)),
                "key": {k: _json_value(row.get(k)) for k in key},
            }
            for row in indexed[:SAMPLE_COUNT]
        ]
    return [{"value": _json_value(v), "key": {}} for v in (details.get("partial_unexpected_list") or [])[:SAMPLE_COUNT]]


def _json_value(value):
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and math.isnan(value):
        return None
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
    published: Storage, manifest: PublishManifest, profile: Profile, expectations: Expectations | None = None
) -> dict:
    """:func:`run_expectations`, its HTML report written beside the version (``quality.html``)."""
    from bridge_downstream.common import layout
    from bridge_downstream.quality.html_report import render_quality_html

    quality = run_expectations(published, manifest, profile, expectations)
    report_key = f"{layout.version_prefix(manifest.dataset_id, manifest.version)}/{REPORT_NAME}"
    published.write_bytes(report_key, render_quality_html([(manifest, quality)]).encode())
    return {**quality, "report": report_key}


def publish_quality_check(
    profile: Profile, expectations: Expectations | None = None
) -> Callable[[Storage, PublishManifest], dict]:
    """What a publish runs on each new version before making it current
    (:func:`bridge_downstream.publish.engine_steps.publishing_with_quality_check`)."""

    def check(published: Storage, manifest: PublishManifest) -> dict:
        return check_version(published, manifest, profile, expectations)

    return check
