"""Columns read as text and converted: a value that converts is the column's,
one that does not is rescued into the row's ``_rescued_data``, identically on
both executors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bridge_downstream.relationalize import relationalize_arrow, relationalize_spark
from bridge_downstream.relationalize.plan import RESCUED_COLUMN, build_plan
from bridge_downstream.relationalize.text_values import convert_text
from bridge_downstream.relationalize.types import BIGINT_T, STRING_T, Scalar, Struct

KEYS = {"extra_columns": {"recordid": "string"}, "identity_columns": ["recordid"]}
ROW_TYPE = Struct(
    (
        ("q2", STRING_T),  # read as text
        ("scores", Struct((("theta", STRING_T), ("n", BIGINT_T)))),
        ("when", STRING_T),
        ("ok", STRING_T),
        ("plain", STRING_T),
    )
)
TEXT_COLUMNS = {("q2",): "bigint", ("scores", "theta"): "double", ("when",): "timestamp", ("ok",): "boolean"}
ROWS = [
    {"recordid": "r1", "q2": 3, "scores": {"theta": 0.5, "n": 1}, "when": "2024-03-01T10:00:00+02:00", "ok": True},
    {"recordid": "r2", "q2": "n/a", "scores": {"theta": "high"}, "when": "soon", "ok": "yes", "plain": {"a": 1}},
    {"recordid": "r3", "q2": "7", "scores": {"theta": 1e-05}, "when": None},
    {"recordid": "r4", "q2": 1.0, "plain": 'x\u0001"y'},
    {"recordid": "r5", "q2": 99999999999999999999},
]
EXPECTED = {
    "r1": (3, 0.5, datetime(2024, 3, 1, 8, tzinfo=UTC), True, None),
    "r2": (None, None, None, None, {"q2": "n/a", "scores.theta": "high", "when": "soon", "ok": "yes"}),
    "r3": (7, 1e-05, None, None, None),  # a number spelled as a string converts
    "r4": (None, None, None, None, {"q2": "1.0"}),  # 1.0 is no bigint
    "r5": (None, None, None, None, {"q2": "99999999999999999999"}),
}


def _plan():
    return build_plan("Drift_v1", ROW_TYPE, text_columns=TEXT_COLUMNS, **KEYS)


def _check(rows: list[dict]) -> None:
    got = {
        row["recordid"]: (
            row["q2"],
            row["scores_theta"],
            row["when"] if row["when"] is None or row["when"].tzinfo else row["when"].replace(tzinfo=UTC),
            row["ok"],
            None if row[RESCUED_COLUMN] is None else json.loads(row[RESCUED_COLUMN]),
        )
        for row in rows
    }
    assert got == EXPECTED
    assert {row["recordid"]: row["plain"] for row in rows}["r2"] == '{"a":1}'  # a string column takes anything


def _write(tmp_path):
    path = tmp_path / "rows.ndjson"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


def test_the_plan_types_text_columns_and_adds_the_rescued_column():
    root = _plan().root
    assert {
        c.name: (c.type, c.from_text) for c in root.columns if c.name in ("q2", "scores_theta", "when", "plain")
    } == {
        "q2": ("bigint", True),
        "scores_theta": ("double", True),
        "when": ("timestamp", True),
        "plain": ("string", False),
    }
    assert root.columns[-1].name == RESCUED_COLUMN


def test_arrow_converts_or_rescues(tmp_path):
    table = relationalize_arrow(_plan(), [_write(tmp_path)])["dataset_drift_v1"]
    assert str(table.schema.field("q2").type) == "int64"
    _check(table.to_pylist())


@pytest.mark.spark
def test_spark_converts_or_rescues_as_arrow_does(spark, tmp_path):
    # Spark gives a timestamp in the session's zone, without one: UTC (spark_session.py)
    frame = relationalize_spark(spark, _plan(), str(_write(tmp_path)))["dataset_drift_v1"]
    assert dict(frame.dtypes)["q2"] == "bigint"
    _check([row.asDict() for row in frame.collect()])


@pytest.mark.spark
def test_the_rescued_text_escapes_as_spark_writes_it(spark, tmp_path):
    plan = build_plan("Esc_v1", Struct((("v", STRING_T),)), text_columns={("v",): "bigint"}, **KEYS)
    path = tmp_path / "esc.ndjson"
    path.write_text(json.dumps({"recordid": "r", "v": 'a"\\\u0001\n\u00e9/'}) + "\n")
    (arrow,) = relationalize_arrow(plan, [path])["dataset_esc_v1"].column(RESCUED_COLUMN).to_pylist()
    (spark_row,) = relationalize_spark(spark, plan, str(path))["dataset_esc_v1"].select(RESCUED_COLUMN).collect()
    assert arrow == spark_row[0]
    assert json.loads(arrow) == {"v": 'a"\\\u0001\n\u00e9/'}


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("bigint", "-12", -12),
        ("bigint", "012", None),
        ("bigint", "9223372036854775808", None),
        ("decimal(38,0)", "9223372036854775808", 9223372036854775808),
        ("double", "1.5E3", 1500.0),
        ("double", "1.", None),
        ("boolean", "True", None),
        ("timestamp", "2024-02-30", None),
        ("string", "anything", "anything"),
    ],
)
def test_the_conversion_rule(kind, text, value):
    assert convert_text(kind, text) == value
    assert Scalar(kind).kind == kind
