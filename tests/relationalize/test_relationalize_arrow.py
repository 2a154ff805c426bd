"""The Arrow executor produces exactly the Spark executor's tables: same names,
column names, types and rows (compared sorted), on synthetic and real data."""

from __future__ import annotations

import math
import random

import pyarrow as pa
from test_relationalize_plan import MTB_ARGS, synthetic_rows
from test_relationalize_spark import (
    INTRADAY_MEMBER,
    SLEEP_MEMBER,
    check_structure,
    collect,
    recover_case,
    sorted_rows,
    spelling_case,
    synthetic_case,
    write_ndjson,
)

from bridge_downstream.relationalize import (
    build_plan,
    plan_from_rows,
    relationalize_arrow,
    relationalize_spark,
)
from bridge_downstream.relationalize.arrow_executor import (
    java_double,
    json_text,
    read_ndjson_vectorized,
    table_schema,
)
from bridge_downstream.relationalize.types import (
    BIGINT_T,
    BOOLEAN_T,
    DOUBLE_T,
    STRING_T,
    Array,
    Map,
    Struct,
)


def assert_parity(plan, spark_tables, arrow_tables):
    assert list(arrow_tables) == plan.table_names == list(spark_tables)
    for table in plan.tables:
        got = arrow_tables[table.name]
        assert got.schema == table_schema(table), table.name
        assert got.column_names == table.column_names
        rows = got.to_pylist()
        assert len(rows) == len(spark_tables[table.name]), table.name
        assert sorted_rows(rows) == sorted_rows(spark_tables[table.name]), table.name


def as_rows(tables: dict[str, pa.Table]) -> dict[str, list[dict]]:
    return {name: t.to_pylist() for name, t in tables.items()}


def test_java_double_rendering():
    assert [
        java_double(x)
        for x in [
            0.0,
            -0.0,
            1.0,
            100.0,
            0.001,
            0.000999,
            1e7,
            9999999.0,
            1.5e-5,
            12345678.9,
            1e21,
            -2.5,
            1e300,
        ]
    ] == [
        "0.0",
        "-0.0",
        "1.0",
        "100.0",
        "0.001",
        "9.99E-4",
        "1.0E7",
        "9999999.0",
        "1.5E-5",
        "1.23456789E7",
        "1.0E21",
        "-2.5",
        "1.0E300",
    ]
    # integers below 2**63: exact digits, low-order ones dropped from 2**54 up (Java 17 FloatingDecimal)
    assert java_double(223146674432016512.0) == "2.23146674432016512E17"
    assert java_double(7.654640481329076e18) == "7.6546404813290762E18"
    # known, documented differences (Java 17 is not always shortest): the texts parse to the same double
    assert java_double(2e23) == "2.0E23"  # Spark: 1.9999999999999998E23
    assert json_text({"a": [1, 2.0, None, True, "é\n"], "b": {}}) == '{"a":[1,2.0,null,true,"é\\n"],"b":{}}'


def test_arrow_synthetic_parity(spark, tmp_path_factory):
    plan, rows, path, spark_tables = synthetic_case(spark, tmp_path_factory)
    arrow_tables = relationalize_arrow(plan, path)
    assert_parity(plan, spark_tables, arrow_tables)
    check_structure(plan, rows, as_rows(arrow_tables))
    # same ids whatever the order of the input and however it is split
    reordered = relationalize_arrow(plan, rows=list(reversed(rows)))
    for name in plan.table_names:
        assert sorted_rows(reordered[name].to_pylist()) == sorted_rows(arrow_tables[name].to_pylist())


def test_arrow_real_spelling_parity(spark, tmp_path_factory):
    case = spelling_case(spark, tmp_path_factory)
    # motion fits its types exactly (pyarrow.json reader); taskData's "scores" object goes to a JSON-text column
    assert read_ndjson_vectorized(case["motion"][0], [case["motion"][1]]) is not None
    assert read_ndjson_vectorized(case["task"][0], [case["task"][1]]) is None
    for plan, path, _, spark_tables in case.values():
        assert_parity(plan, spark_tables, relationalize_arrow(plan, path))
        assert_parity(plan, spark_tables, relationalize_arrow(plan, path, vectorized=False))


def test_many_part_files_read_as_one_stream(spark, tmp_path_factory, tmp_path):
    """Ingest writes many part files; the vectorized reader takes them as one
    stream, and a file without a final newline or an empty one changes nothing."""
    plan, path, _, spark_tables = spelling_case(spark, tmp_path_factory)["motion"]
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 3
    parts = []
    for index, line in enumerate(lines):  # one line per file, every other without its newline
        part = tmp_path / f"part-{index:05d}.ndjson"
        part.write_bytes(line.rstrip(b"\n") if index % 2 else line)
        parts.append(part)
    whole = read_ndjson_vectorized(plan, [path])
    split = read_ndjson_vectorized(plan, parts)
    assert split is not None and split.to_pylist() == whole.to_pylist()
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    with_empty = relationalize_arrow(plan, [parts[0], empty, *parts[1:]])
    assert_parity(plan, spark_tables, with_empty)


def test_arrow_recover_sleep_logs_parity(spark, tmp_path_factory):
    plan, path, rows, spark_tables, _ = recover_case(spark, tmp_path_factory, SLEEP_MEMBER, "FitbitSleepLogs_v1")
    arrow_tables = relationalize_arrow(plan, path)
    assert_parity(plan, spark_tables, arrow_tables)
    assert_parity(plan, spark_tables, relationalize_arrow(plan, path, vectorized=False))
    assert arrow_tables["dataset_fitbitsleeplogs_v1_sleeplogdetails"].num_rows == sum(
        len(r.get("SleepLogDetails") or []) for r in rows
    )


def test_arrow_recover_intraday_parity(spark, tmp_path_factory):
    plan, path, _, spark_tables, _ = recover_case(spark, tmp_path_factory, INTRADAY_MEMBER, "FitbitIntradayCombined_v1")
    # Speed is measured in bench/, not asserted here.
    arrow_tables = relationalize_arrow(plan, path)
    assert arrow_tables[plan.root.name].num_rows == 59_005
    assert_parity(plan, spark_tables, arrow_tables)
    line_by_line = relationalize_arrow(plan, path, vectorized=False)
    assert line_by_line[plan.root.name].equals(arrow_tables[plan.root.name])


def test_doubles_as_json_text_match_spark(spark, tmp_path):
    """Doubles inside JSON-text columns: Spark renders them with Java's Double.toString."""
    rng = random.Random(7)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 25) for _ in range(600)]
    values += [
        1e-3,
        1e7,
        0.1 + 0.2,
        2.0**53 + 2,
        2.0**60 + 2**8,
        2.0**62 * 1.5,
        1.7976931348623157e308,
        123456.0,
        4.35,
        0.3,
    ]
    values += [float(rng.randrange(1, 2**62)) for _ in range(300)]  # Java prints integers its own way
    rows = [
        {"k": f"r{i}", "sourcefile": "f", "sourceindex": i, "v": {"x": v}, "w": "s" if i % 2 else v}
        for i, v in enumerate(values)
    ]
    plan = plan_from_rows(
        "Doubles",
        rows,
        extra_columns={"sourcefile": "string", "sourceindex": "bigint"},
        identity_columns=["sourcefile", "sourceindex"],
    )
    assert plan.root.column("w").type == "string"
    path = write_ndjson(tmp_path / "d.ndjson", rows)
    assert read_ndjson_vectorized(plan, [path]) is None  # numbers in a string column: line-by-line reader
    spark_tables = collect(relationalize_spark(spark, plan, path))
    assert_parity(plan, spark_tables, relationalize_arrow(plan, path))


def test_values_not_matching_a_schema_behave_alike(spark, tmp_path):
    """A document that does not fit its schema's types: both engines null the same values
    (a struct field alone; an array/map with a misfit element entirely) and keep the row."""
    row_type = Struct(
        (
            ("i", BIGINT_T),
            ("d", DOUBLE_T),
            ("b", BOOLEAN_T),
            ("s", STRING_T),
            ("o", Struct((("x", DOUBLE_T), ("y", BIGINT_T)))),
            ("a", Array(BIGINT_T)),
            ("ao", Array(Struct((("x", DOUBLE_T), ("y", BIGINT_T))))),
            ("m", Map(BIGINT_T)),
        )
    )
    plan = build_plan("Misfit", row_type, **MTB_ARGS)
    base = dict(synthetic_rows()[0])
    docs = [
        {
            "i": 1.0,
            "d": "x",
            "b": 1,
            "s": {"z": [1.5]},
            "o": {"x": "s", "y": 2},
            "a": [1, "x"],
            "ao": [{"x": "s", "y": 1}],
            "m": {"k": "v"},
        },
        {"i": 2**64, "d": "NaN", "b": "true", "s": 2, "o": 5, "a": 3, "ao": [1], "m": [1]},
        {
            "i": 3,
            "d": 2,
            "b": True,
            "s": "ok",
            "o": {"x": 1, "y": 1},
            "a": [1, None],
            "ao": [None, {"y": 3}],
            "m": {"k": 1},
        },
    ]
    keep = {k: base[k] for k in ("recordid", "assessmentid", "year", "month", "day", "uploadedon", "sourcefile")}
    rows = [dict(doc, **keep, sourceindex=i) for i, doc in enumerate(docs)]
    path = write_ndjson(tmp_path / "m.ndjson", rows)
    # lines that are not one JSON object: a row of nulls; text after the first value is ignored
    bad_lines = ['[{"i": 1}]', "5", '{"i":', "null", '{"i": 7, "sourceindex": 9} trailing', "   "]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(bad_lines) + "\n")
    spark_tables = collect(relationalize_spark(spark, plan, path))
    arrow_tables = relationalize_arrow(plan, path)
    # NaN != NaN (and the test's JSON collect renders it as "NaN"): compare that column separately
    assert sorted_rows(arrow_tables[plan.root.name].to_pylist()[3:]) == sorted_rows(
        [r for r in spark_tables[plan.root.name] if r["sourceindex"] not in (0, 1, 2)]
    )
    assert len(spark_tables[plan.root.name]) == 3 + 5
    assert {r["sourceindex"] for r in spark_tables[plan.root.name]} == {0, 1, 2, 9, None}
    spark_root = {r["sourceindex"]: r for r in spark_tables[plan.root.name] if r["sourceindex"] in (0, 1, 2)}
    arrow_root = {
        r["sourceindex"]: r for r in arrow_tables[plan.root.name].to_pylist() if r["sourceindex"] in (0, 1, 2)
    }
    for rows_ in (spark_root, arrow_root):
        d = rows_[1].pop("d")
        assert d == "NaN" or math.isnan(d)  # the string "NaN" in a double column -> NaN in both engines
        for r in rows_.values():
            r.pop("d", None)
    assert spark_root == arrow_root
    assert len(spark_root) == 3
    assert read_ndjson_vectorized(plan, [path]) is None  # pyarrow.json refuses these lines
    for name in plan.table_names[1:]:
        assert sorted_rows(arrow_tables[name].to_pylist()) == sorted_rows(spark_tables[name]), name
