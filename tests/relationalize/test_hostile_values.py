"""Values that used to break relationalize, on both executors: identity values
and map keys holding the id separators (ids collided), nulls in identity
columns, integers beyond 64 bits (read as null), and a document of 10,000 keys
(quadratic planning and execution)."""

from __future__ import annotations

import json
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from test_relationalize_spark import collect, expected_elements, write_ndjson

from bridge_downstream.relationalize import (
    plan_from_ndjson,
    plan_from_rows,
    plan_from_schema,
    relationalize_arrow,
    relationalize_spark,
    widen_integers,
)
from bridge_downstream.relationalize.inference import infer_type
from bridge_downstream.relationalize.types import BIGINT_T, DECIMAL_T, STRING_T, Struct
from project_paths import PROJECT_ROOT
from support import build_sample_registry, ingest_folder

KEYS = {"extra_columns": {}, "identity_columns": ["recordid", "sourcefile", "sourceindex"]}
ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]


def _plain(value):
    return int(value) if isinstance(value, Decimal) else value


@pytest.fixture(params=ENGINES)
def run(request):
    """``run(plan, path)`` -> ``{table: [row dict, ...]}`` on the executor under test."""
    if request.param == "spark":
        spark = request.getfixturevalue("spark")

        def on_spark(plan, path):
            tables = collect(relationalize_spark(spark, plan, str(path)))
            return {name: [{k: _plain(v) for k, v in row.items()} for row in rows] for name, rows in tables.items()}

        return on_spark

    def on_arrow(plan, path):
        tables = relationalize_arrow(plan, [path])
        return {name: [{k: _plain(v) for k, v in row.items()} for row in t.to_pylist()] for name, t in tables.items()}

    return on_arrow


# --- ids ---------------------------------------------------------------------


def test_separators_and_nulls_in_identity_values_give_distinct_ids(run, tmp_path):
    # Joined with a bare "|" and nulls skipped, rows 0 and 1 both had the key
    # "a|b|c|0", rows 2, 3 and 4 "x|0": child rows joined two parents.
    identities = [
        ("a|b", "c"),
        ("a", "b|c"),
        (None, "x"),
        ("x", None),
        ("", "x"),
        ("a\\", "|c"),
        ("a\\|", "c"),
        ("\\N", "x"),
    ]
    rows = [
        {"recordid": r, "sourcefile": f, "sourceindex": 0, "xs": [marker]} for marker, (r, f) in enumerate(identities)
    ]
    path = write_ndjson(tmp_path / "part-0.ndjson", rows)
    plan = plan_from_rows("Hostile_v1", rows, **KEYS)
    tables = run(plan, path)
    root, child = tables["dataset_hostile_v1"], tables["dataset_hostile_v1_xs"]
    assert [r["xs"] for r in root] == [
        "a\\|b|c|0/xs",
        "a|b\\|c|0/xs",
        "\\N|x|0/xs",
        "x|\\N|0/xs",
        "|x|0/xs",
        "a\\\\|\\|c|0/xs",
        "a\\\\\\||c|0/xs",
        "\\\\N|x|0/xs",
    ]
    assert len(child) == len(rows)
    # every child row joins exactly one parent: the one its element came from
    parent_marker = {r["xs"]: identities.index((r["recordid"], r["sourcefile"])) for r in root}
    assert len(parent_marker) == len(rows)
    assert sorted((parent_marker[c["id"]], c["xs_val"]) for c in child) == [(i, i) for i in range(len(rows))]


def test_map_keys_holding_brackets_give_distinct_ids(run, tmp_path):
    # Unescaped, both value arrays had the id "r/m[1]/m[2]/value_ys": the record
    # id of one row spelled the path of the other's map entry.
    rows = [
        {"recordid": "r/m[1]", "m": {"2": {"ys": ["first"]}}},
        {"recordid": "r", "m": {"1]/m[2": {"ys": ["second"]}, "3\\": {"ys": ["third"]}}},
    ]
    path = write_ndjson(tmp_path / "part-0.ndjson", rows)
    plan = plan_from_rows("Keys_v1", rows, extra_columns={}, identity_columns=["recordid"])
    tables = run(plan, path)
    entries = sorted(tables["dataset_keys_v1_m"], key=lambda r: r["key"])
    assert [(e["key"], e["value_ys"]) for e in entries] == [
        ("1]/m[2", "r/m[1\\]/m\\[2]/value_ys"),
        ("2", "r/m[1]/m[2]/value_ys"),
        ("3\\", "r/m[3\\\\]/value_ys"),
    ]
    values = {e["value_ys"]: e["key"] for e in entries}
    elements = tables["dataset_keys_v1_m_value_ys"]
    assert sorted((values[x["id"]], x["value_ys_val"]) for x in elements) == [
        ("1]/m[2", "second"),
        ("2", "first"),
        ("3\\", "third"),
    ]


@pytest.fixture(scope="module")
def ingested_samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    registry = build_sample_registry(root / "registry")
    report = ingest_folder(PROJECT_ROOT / "samples" / "archives", root / "out", registry)
    return registry, root / "out", sorted(report["datasets"])


def test_ordinary_ids_are_unchanged_on_the_samples(run, ingested_samples):
    """Ids of values without a separator, escape character or null are the ids
    published before escaping existed: every child table's ids (the parents'
    link values) equal the old rule's (``expected_elements``: ``|``-joined
    identity, ``/column``, ``[index]``, ``[key]``), byte for byte."""
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.publish.engine_steps import plan_dataset

    registry, out, datasets = ingested_samples
    ids: dict[str, list[str]] = {}
    for dataset_id in datasets:
        plan, _ = plan_dataset(registry, load_profile("mtb"), dataset_id, LocalStorage(out))
        parts = sorted((out / "json" / f"dataset={dataset_id}").rglob("*.ndjson"))
        rows = [json.loads(line) for part in parts for line in part.read_text().splitlines() if line.strip()]
        tables = run(plan, write_ndjson(out.parent / f"{dataset_id}.ndjson", rows))
        expected = expected_elements(plan, rows)
        for table in plan.tables[1:]:
            ids[table.name] = [r["id"] for r in tables[table.name]]
            assert Counter(ids[table.name]) == Counter(i for i, _, _ in expected[table.name]), table.name
    assert sum(map(len, ids.values())) == 8 + 13 + 10 + 3 + 3  # every child row of the samples
    assert "rec-0003|taskData.json|0/steps[1]/interactions" in ids["dataset_taskdata_v1_steps_interactions"]


# --- numbers -------------------------------------------------------------------

BIG = [2**63, 2**64 - 1, -(2**63) - 1, 10**38 - 1]


def test_integers_beyond_64_bits_widen_an_inferred_column_to_decimal(run, tmp_path):
    rows = [
        {"recordid": "r0", "sourcefile": "a", "sourceindex": 0, "n": 5, "huge": 7, "mixed": 0.5, "xs": [1]},
        *[
            {"recordid": f"r{i}", "sourcefile": "a", "sourceindex": i, "n": value, "xs": [2, value]}
            for i, value in enumerate(BIG, start=1)
        ],
        {"recordid": "r9", "sourcefile": "a", "sourceindex": 9, "huge": 10**38, "mixed": 2**64 - 1},
    ]
    path = write_ndjson(tmp_path / "part-0.ndjson", rows)
    plan = plan_from_ndjson("Numbers_v1", [path], **KEYS)
    types = dict(plan.athena_columns()["dataset_numbers_v1"])
    assert (types["n"], types["huge"], types["mixed"]) == ("decimal(38,0)", "string", "double")
    assert dict(plan.athena_columns()["dataset_numbers_v1_xs"])["xs_val"] == "decimal(38,0)"
    tables = run(plan, path)
    root = {r["recordid"]: r for r in tables["dataset_numbers_v1"]}
    assert [root[f"r{i}"]["n"] for i in range(5)] == [5, *BIG]
    assert (root["r0"]["huge"], root["r9"]["huge"]) == ("7", str(10**38))  # beyond 38 digits: the digits as text
    assert (root["r0"]["mixed"], root["r9"]["mixed"]) == (0.5, float(2**64 - 1))
    elements = sorted(r["xs_val"] for r in tables["dataset_numbers_v1_xs"])
    assert elements == sorted([1, *[2] * len(BIG), *BIG])


SCHEMA = {
    "type": "object",
    "properties": {
        "recordid": {"type": "string"},
        "sourcefile": {"type": "string"},
        "sourceindex": {"type": "integer"},
        "n": {"type": "integer"},
        "other": {"type": "integer"},
        "xs": {"type": "array", "items": {"type": "integer"}},
        "m": {"type": "object", "additionalProperties": {"type": "integer"}},
        "huge": {"type": "integer"},
    },
}


def test_widening_a_schema_keeps_every_type_whose_integers_fit():
    lines = [
        b'{"n": 1644950895890000000, "other": 9000000000000000000, "note": "9223372036854775808"}\n',
        b'{"xs": [1, 2], "m": {"a": 3}}\nnot json at all\n',
    ]
    row_type = plan_from_schema("S_v1", SCHEMA, **KEYS).row_type
    # 19 digits that fit, and a big number inside a string, leave the types as they are
    assert widen_integers(row_type, lines) == row_type
    widened = widen_integers(row_type, [*lines, '{"xs": [18446744073709551615]}'])
    assert isinstance(widened, Struct)
    assert dict(widened.fields)["xs"].element == DECIMAL_T
    assert dict(widened.fields)["n"] == BIGINT_T


def test_integers_beyond_64_bits_widen_a_schema_integer_column(run, tmp_path):
    rows = [
        {"recordid": "r0", "sourcefile": "a", "sourceindex": 0, "n": 1, "xs": [1], "m": {"k": 1}, "huge": 1},
        {"recordid": "r1", "sourcefile": "a", "sourceindex": 1, "n": 2**64 - 1, "xs": [-(2**63) - 1]},
        {"recordid": "r2", "sourcefile": "a", "sourceindex": 2, "m": {"k": 2**63}, "huge": 10**40},
    ]
    path = write_ndjson(tmp_path / "part-0.ndjson", rows)
    without_data = plan_from_schema("Schema_v1", SCHEMA, **KEYS)
    assert dict(without_data.athena_columns()["dataset_schema_v1"])["n"] == "bigint"
    plan = plan_from_schema("Schema_v1", SCHEMA, ndjson=[path.read_bytes()], **KEYS)
    columns = plan.athena_columns()
    assert dict(columns["dataset_schema_v1"])["n"] == "decimal(38,0)"
    assert dict(columns["dataset_schema_v1"])["huge"] == "string"  # 41 digits do not fit decimal(38,0)
    assert dict(columns["dataset_schema_v1"])["other"] == "bigint"  # nothing big in it
    assert dict(columns["dataset_schema_v1_xs"])["xs_val"] == "decimal(38,0)"
    assert dict(columns["dataset_schema_v1_m"])["value"] == "decimal(38,0)"
    tables = run(plan, path)
    root = {r["recordid"]: r for r in tables["dataset_schema_v1"]}
    assert [root[f"r{i}"]["n"] for i in range(3)] == [1, 2**64 - 1, None]
    assert [root[f"r{i}"]["huge"] for i in range(3)] == ["1", None, str(10**40)]
    assert sorted(r["xs_val"] for r in tables["dataset_schema_v1_xs"]) == [-(2**63) - 1, 1]
    assert sorted(r["value"] for r in tables["dataset_schema_v1_m"]) == [1, 2**63]


def test_values_converted_into_decimal_are_spark_s(run, tmp_path):
    """A decimal(38,0) column takes what Spark's JSON parser makes of a value:
    numbers and numeric strings (commas dropped) rounded half up, null for what
    does not fit (Arrow reads these line by line: pyarrow refuses them)."""
    values = [2**64 - 1, 1.0, 1.5, -0.5, 2.5, 1e25, "1,234", ".5", "+5", "x", " 12", True, 1e38, "9" * 39, [1], None]
    expected = [2**64 - 1, 1, 2, -1, 3, 10**25, 1234, 1, 5, None, None, None, None, None, None, None]
    rows = [{"recordid": f"r{i:02d}", "sourcefile": "a", "sourceindex": i, "n": v} for i, v in enumerate(values)]
    path = write_ndjson(tmp_path / "part-0.ndjson", rows)
    plan = plan_from_schema("Decimals_v1", SCHEMA, ndjson=[path.read_bytes()], **KEYS)
    assert dict(plan.athena_columns()["dataset_decimals_v1"])["n"] == "decimal(38,0)"
    got = sorted((r["recordid"], r["n"]) for r in run(plan, path)["dataset_decimals_v1"])
    assert [n for _, n in got] == expected
    line_by_line = relationalize_arrow(plan, [path], vectorized=False)["dataset_decimals_v1"]
    assert [_plain(v) for v in line_by_line.column("n").to_pylist()] == expected


# --- a document with 10,000 keys -------------------------------------------------
# Planning and executing were quadratic in the keys of a document (a field looked
# up by scanning its struct, once per column): 10,000 keys took 60-90 s to
# publish. Sixteen times the keys must now take less than 48 times the time: a
# linear step takes about sixteen times (a little more where the data outgrows the
# processor's caches), a quadratic one 256 -- a margin wide enough for a busy
# machine, where a 4x step against an 8x bound proved too narrow.


def _wide(tmp_path: Path, keys: int):
    document: dict = {f"key{i:05d}": i for i in range(keys)}
    document.update(recordid="r0", sourcefile="wide.json", sourceindex=0, nested={"inner": keys})
    return document, write_ndjson(tmp_path / f"wide-{keys}.ndjson", [document])


def _check_wide_row(row: dict, keys: int) -> None:
    assert len(row) == keys + 5  # and recordid, sourcefile, sourceindex, nested_inner, _rescued_data
    assert (row["key00000"], row[f"key{keys - 1:05d}"], row["nested_inner"], row["recordid"]) == (
        0,
        keys - 1,
        keys,
        "r0",
    )


def test_a_document_of_10000_keys_is_relationalized_in_linear_time_on_arrow(tmp_path):
    def seconds(keys: int) -> float:
        document, path = _wide(tmp_path, keys)
        started = time.perf_counter()
        plan = plan_from_rows("Wide_v1", [document], **KEYS)
        (row,) = relationalize_arrow(plan, [path])["dataset_wide_v1"].to_pylist()
        elapsed = time.perf_counter() - started
        _check_wide_row(row, keys)
        return elapsed

    small = min(seconds(1_000) for _ in range(3))
    large = min(seconds(16_000) for _ in range(3))
    assert large < 48 * small, (small, large)


@pytest.mark.spark
def test_a_document_of_10000_keys_is_planned_in_linear_time_on_spark(spark, tmp_path):
    """The executor's work on Spark: the plan, the frames, and Spark's analysis
    of them (running them is Spark's code generation, measured in benchmarks)."""

    def frame(keys: int):
        document, path = _wide(tmp_path, keys)
        started = time.perf_counter()
        plan = plan_from_rows("Wide_v1", [document], **KEYS)
        root = relationalize_spark(spark, plan, str(path))["dataset_wide_v1"]
        assert len(root.schema.fields) == keys + 5
        return root, time.perf_counter() - started

    frame(500)  # warm up: the first frames load and compile Spark's classes
    small_frame, small = frame(2_500)
    _, large = frame(10_000)
    assert large < 8 * small, (small, large)
    (row,) = small_frame.collect()
    _check_wide_row(row.asDict(), 2_500)


def test_inferred_types_of_the_numbers_are_in_one_place():
    assert infer_type([{"a": 2**63 - 1, "b": 2**63, "c": -(10**38) + 1, "d": 10**38}]) == Struct(
        (("a", BIGINT_T), ("b", DECIMAL_T), ("c", DECIMAL_T), ("d", STRING_T))
    )
