"""The Spark executor on synthetic edge cases and on real data: row counts at
every depth, id joins, carried key/partition columns, determinism, type drift."""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from test_relationalize_plan import (
    MTB_ARGS,
    RECOVER_ARGS,
    registry_resolver,
    synthetic_plan,
    synthetic_rows,
)

from bridge_downstream.relationalize import plan_from_ndjson, plan_from_schema, relationalize_spark
from bridge_downstream.relationalize.plan import KIND_ARRAY, RelationalizePlan
from project_paths import shared_path

SPELLING_ZIP = ("bridge-archives", "OCJByUtSrVTYtqObYp7XZV_J-mtbSpelling.zip")
RECOVER_ZIP = ("bridge-archives", "recover-2023-01-13T21--08--51Z_TESTDATA.zip")
SLEEP_MEMBER = "FitbitSleepLogs_20230112-20230114.json"
INTRADAY_MEMBER = "FitbitIntradayCombined_20230112-20230114.json"


# --- helpers shared with the Arrow parity tests -----------------------------


def write_ndjson(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return path


def spelling_inputs(directory: Path):
    """(taskData plan, taskData NDJSON, motion plan, motion NDJSON) for the real MTB upload,
    enriched the way ingest does it (from the upload's S3 metadata)."""
    archive = zipfile.ZipFile(shared_path(*SPELLING_ZIP))
    meta = {
        "recordid": "OCJByUtSrVTYtqObYp7XZV_J",
        "assessmentid": "spelling",
        "year": 2022,
        "month": 2,
        "day": 15,
        "uploadedon": "2022-02-15T18:48:15.890Z",
    }
    task = json.loads(archive.read("taskData.json"))
    motion = json.loads(archive.read("motion.json"))
    task_schema = json.loads(shared_path("mtb-taskdata", "archiveSchemas", "taskData_combinedSchema.json").read_text())
    motion_schema = json.loads(shared_path("mobile-client-json", "schemas", "v2", "MotionRecord.json").read_text())
    task_path = write_ndjson(
        directory / "taskdata.ndjson",
        [dict(task, **meta, sourcefile="taskData.json", sourceindex=0)],
    )
    motion_path = write_ndjson(
        directory / "motion.ndjson",
        [dict(m, **meta, sourcefile="motion.json", sourceindex=i) for i, m in enumerate(motion)],
    )
    task_plan = plan_from_schema("sharedSchema_v1", task_schema, registry_resolver(task_schema), **MTB_ARGS)
    motion_plan = plan_from_schema("MotionRecord_v1", motion_schema, registry_resolver(motion_schema), **MTB_ARGS)
    return task_plan, task_path, task, motion_plan, motion_path, motion


def recover_inputs(directory: Path, member: str, dataset_id: str):
    """(inferred plan, NDJSON path, rows) for one data type of the real recover export."""
    archive = zipfile.ZipFile(shared_path(*RECOVER_ZIP))
    lines = archive.read(member).decode("utf-8").splitlines()
    rows = [
        dict(
            json.loads(line),
            cohort="adults_v1",
            exportstartdate="2023-01-12",
            exportenddate="2023-01-14",
            sourcefile=member,
            sourceindex=i,
        )
        for i, line in enumerate(lines)
        if line.strip()
    ]
    path = write_ndjson(directory / f"{dataset_id}.ndjson", rows)
    plan = plan_from_ndjson(dataset_id, [path], **RECOVER_ARGS)
    return plan, path, rows


def collect(frames) -> dict[str, list[dict]]:
    """All tables in one Spark job (a union of JSON-encoded rows): per-table
    collects would each pay the job overhead."""
    from pyspark.sql import functions as F

    if len(frames) == 1:
        return {name: [row.asDict() for row in df.collect()] for name, df in frames.items()}
    union = None
    for name, df in frames.items():
        encoded = df.select(F.lit(name).alias("t"), F.to_json(F.struct(*[df[c] for c in df.columns])).alias("j"))
        union = encoded if union is None else union.unionAll(encoded)
    out = {name: [] for name in frames}
    for t, j in union.collect():
        values = json.loads(j)
        out[t].append({c: values.get(c) for c in frames[t].columns})
    return out


def sorted_rows(rows: list[dict]) -> list[tuple]:
    return sorted((tuple(r.values()) for r in rows), key=repr)


def root_key(plan: RelationalizePlan, row: dict) -> str:
    return "|".join(str(row[c]) for c in plan.identity_columns if row.get(c) is not None)


def expected_elements(plan: RelationalizePlan, rows: list[dict]) -> dict[str, list[tuple[str | None, str, object]]]:
    """Reference walk in plain Python: per table, (id, own row key, element) for every row it must have."""
    out = {plan.root.name: [(None, root_key(plan, r), r) for r in rows]}
    for table in plan.tables[1:]:
        items = []
        for _, pkey, element in out[table.parent]:
            container = element
            for key in table.source_path:
                container = container.get(key) if isinstance(container, dict) else None
            link = f"{pkey}/{table.parent_column}"
            if table.kind == KIND_ARRAY and isinstance(container, list):
                items += [(link, f"{link}[{i}]", x) for i, x in enumerate(container)]
            elif table.kind != KIND_ARRAY and isinstance(container, dict):
                items += [(link, f"{link}[{k}]", x) for k, x in container.items()]
        out[table.name] = items
    return out


def check_structure(plan: RelationalizePlan, rows: list[dict], tables: dict[str, list[dict]]) -> None:
    """Counts at every depth, id joins, carried key/partition columns."""
    expected = expected_elements(plan, rows)
    assert set(tables) == set(plan.table_names)
    root_rows = tables[plan.root.name]
    assert len(root_rows) == len(rows)
    by_key = {root_key(plan, r): r for r in rows}
    assert len(by_key) == len(rows), "identity columns must identify root rows"
    for table in plan.tables:
        got = tables[table.name]
        assert len(got) == len(expected[table.name]), table.name  # == total length of the source arrays
        assert all(list(r) == table.column_names for r in got[:1]), table.name
        if table.parent is None:
            continue
        # ids: exactly the parent's link values, each repeated once per element
        assert Counter(r["id"] for r in got) == Counter(i for i, _, _ in expected[table.name]), table.name
        parent_links = [r[table.parent_column] for r in tables[table.parent] if r[table.parent_column] is not None]
        assert len(parent_links) == len(set(parent_links))  # each id joins exactly one parent row
        assert {r["id"] for r in got} <= set(parent_links)
        if table.kind == KIND_ARRAY:
            per_id = Counter(r["id"] for r in got)
            for r in got:
                assert 0 <= r["index"] < per_id[r["id"]]
            assert len({(r["id"], r["index"]) for r in got}) == len(got)
        # carried key and partition columns equal those of the root row
        for r in got:
            source = by_key[r["id"].split("/", 1)[0]]
            for column in plan.carry_columns:
                assert r[table.column(column).name if column in table.column_names else column] == source[column]


_CACHE: dict = {}


def cached(key, make):
    """Session-wide memo (this module is imported by the Arrow parity tests too):
    Spark results are computed once and compared against from both modules."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def synthetic_case(spark, tmp_path_factory):
    def make():
        rows = synthetic_rows()
        plan = synthetic_plan(rows)
        path = write_ndjson(tmp_path_factory.mktemp("synthetic") / "part-0.ndjson", rows)
        return plan, rows, path, collect(relationalize_spark(spark, plan, path))

    return cached("synthetic", make)


def spelling_case(spark, tmp_path_factory):
    def make():
        task_plan, task_path, task, motion_plan, motion_path, motion = spelling_inputs(
            tmp_path_factory.mktemp("spelling")
        )
        return {
            "task": (
                task_plan,
                task_path,
                task,
                collect(relationalize_spark(spark, task_plan, task_path)),
            ),
            "motion": (
                motion_plan,
                motion_path,
                motion,
                collect(relationalize_spark(spark, motion_plan, motion_path)),
            ),
        }

    return cached("spelling", make)


def recover_case(spark, tmp_path_factory, member, dataset_id):
    def make():
        plan, path, rows = recover_inputs(tmp_path_factory.mktemp(dataset_id), member, dataset_id)
        frames = relationalize_spark(spark, plan, path)
        return plan, path, rows, collect(frames), None

    return cached(dataset_id, make)


# --- synthetic -------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(spark, tmp_path_factory):
    return synthetic_case(spark, tmp_path_factory)


def test_synthetic_structure(synthetic):
    plan, rows, _, tables = synthetic
    check_structure(plan, rows, tables)
    # a grand-grand-child id spells its path
    tag_ids = {r["id"] for r in tables["dataset_synthetic_v1_stephistory_interactions_tags"]}
    assert "REC1|taskData.json|0/stepHistory[0]/interactions[0]/tags" in tag_ids
    assert len(tables["dataset_synthetic_v1_stephistory_interactions_tags"]) == 3 + 0 + 1 + 2
    tags = sorted(
        (r["id"], r["index"], r["tags_val"]) for r in tables["dataset_synthetic_v1_stephistory_interactions_tags"]
    )
    assert (
        "REC1|taskData.json|0/stepHistory[0]/interactions[0]/tags",
        2,
        None,
    ) in tags  # null element kept


def test_empty_null_missing_arrays(synthetic):
    plan, _, _, tables = synthetic
    root = {(r["recordid"], r["sourceindex"]): r for r in tables[plan.root.name]}
    # present (even empty): the link; null or missing: null
    assert root[("REC2", 0)]["stepHistory"] == "REC2|taskData.json|0/stepHistory"  # []
    assert root[("REC3", 0)]["stepHistory"] is None  # missing
    assert root[("REC2", 0)]["matrix"] is None  # null
    assert root[("REC1", 0)]["matrix"] == "REC1|taskData.json|0/matrix"
    history = tables["dataset_synthetic_v1_stephistory"]
    assert not [r for r in history if r["id"].startswith("REC2|")]
    # an element that is null is a row (all element columns null); a null nested array links nothing
    nulls = [r for r in history if r["id"] == "REC1|taskData.json|0/stepHistory" and r["index"] == 3]
    assert nulls and nulls[0]["identifier"] is None and nulls[0]["interactions"] is None
    b = next(r for r in history if r["identifier"] == "b")
    assert b["interactions"] is None
    # arrays of arrays: the inner array is a grand-child table
    inner = tables["dataset_synthetic_v1_matrix_matrix_val"]
    assert sorted((r["id"], r["index"], r["matrix_val_val"]) for r in inner) == [
        ("REC1|taskData.json|0/matrix[0]/matrix_val", 0, 1),
        ("REC1|taskData.json|0/matrix[0]/matrix_val", 1, 2),
        ("REC1|taskData.json|0/matrix[1]/matrix_val", 0, 3),
    ]
    outer = {r["index"]: r["matrix_val"] for r in tables["dataset_synthetic_v1_matrix"]}
    assert outer == {
        0: "REC1|taskData.json|0/matrix[0]/matrix_val",
        1: "REC1|taskData.json|0/matrix[1]/matrix_val",
        2: "REC1|taskData.json|0/matrix[2]/matrix_val",
        3: None,
    }


def test_maps_empty_objects_and_drift(synthetic):
    plan, rows, _, tables = synthetic
    root = {(r["recordid"], r["sourceindex"]): r for r in tables[plan.root.name]}
    assert len(root) == len(rows)  # type drift never drops a row
    # conflicting types -> string with the JSON text (strings stay plain)
    assert [root[k]["drift"] for k in [("REC1", 0), ("REC2", 0), ("REC3", 0), ("REC1", 1)]] == [
        "1",
        "text",
        '{"k":[1,2.0],"s":"v"}',
        "true",
    ]
    assert root[("REC1", 0)]["text"] == (
        '{"x":1.0E-5,"y":1.23456789E7,"z":[0.1,100.0,-0.0,1.0E21,123456789012345678901234567890],"w":"é\\n\\"q\\""}'
    )
    assert root[("REC2", 0)]["text"] == "plain" and root[("REC3", 0)]["text"] == '["arr",7]'
    # int + double -> double
    assert [root[k]["num"] for k in [("REC1", 0), ("REC2", 0), ("REC3", 0)]] == [1.0, 2.5, None]
    # {} -> JSON text
    assert root[("REC1", 0)]["empty"] == "{}" and root[("REC3", 0)]["empty"] is None
    # flattening and clash renames carry the right values
    assert (
        root[("REC1", 0)]["a_b"] == "nested"
        and root[("REC1", 0)]["a_b_2"] == "dotted"
        and root[("REC1", 0)]["a_c_d"] is True
    )
    assert root[("REC1", 0)]["Type"] == "upper" and root[("REC1", 0)]["type_2"] == "lower"
    history = {r["identifier"]: r for r in tables["dataset_synthetic_v1_stephistory"] if r["identifier"]}
    assert history["a"]["id_2"] == "own-id" and history["a"]["index_2"] == 7 and history["a"]["recordid_2"] == "shadow"
    assert history["a"]["recordid"] == "REC1" and history["a"]["score"] == 1.0 and history["b"]["score"] == 2.5
    # maps -> child table with id, key, value...
    by_date = sorted((r["id"], r["key"], r["value_v"], r["value_items"]) for r in tables["dataset_synthetic_v1_bydate"])
    assert by_date == [
        (
            "REC1|taskData.json|0/byDate",
            "2022-01-01",
            1.0,
            "REC1|taskData.json|0/byDate[2022-01-01]/value_items",
        ),
        ("REC1|taskData.json|0/byDate", "2022-01-02", 2.5, None),
    ]
    assert root[("REC2", 0)]["byDate"] == "REC2|taskData.json|0/byDate"  # empty map: link, no rows
    items = sorted(
        (r["id"], r["index"], r["value_items_val"]) for r in tables["dataset_synthetic_v1_bydate_value_items"]
    )
    assert items == [
        ("REC1|taskData.json|0/byDate[2022-01-01]/value_items", 0, 1),
        ("REC1|taskData.json|0/byDate[2022-01-01]/value_items", 1, 2),
    ]


def test_ids_are_deterministic_across_runs_and_partitioning(spark, synthetic, tmp_path):
    plan, rows, _path, tables = synthetic
    # other run: rows reversed, spread over 3 files, lines shuffled over 5 partitions
    for i in range(3):
        write_ndjson(tmp_path / f"part-{i}.ndjson", list(reversed(rows))[i::3])
    lines = spark.read.text(str(tmp_path)).repartition(5)
    assert lines.rdd.getNumPartitions() == 5
    frames = relationalize_spark(spark, plan, lines, persist=True)
    other = collect(frames)
    assert frames.parsed.is_cached
    frames.unpersist()
    assert not frames.parsed.is_cached
    for name in plan.table_names:
        assert sorted_rows(other[name]) == sorted_rows(tables[name]), name


def test_output_schema_matches_plan(spark, synthetic):
    from bridge_downstream.relationalize.spark_executor import table_schema

    plan, _, path, _ = synthetic
    frames = relationalize_spark(spark, plan, path)
    for table in plan.tables:
        assert [(f.name, f.dataType) for f in frames[table.name].schema] == [
            (f.name, f.dataType) for f in table_schema(table)
        ]
        assert [(f.name, f.dataType.simpleString()) for f in frames[table.name].schema] == table.athena_columns()


# --- real data -------------------------------------------------------------


def test_real_spelling_taskdata(spark, tmp_path_factory):
    task_plan, task_path, task, tables = spelling_case(spark, tmp_path_factory)["task"]
    row = json.loads(task_path.read_text())
    check_structure(task_plan, [row], tables)
    assert len(tables["dataset_sharedschema_v1_stephistory"]) == len(task["stepHistory"])
    assert len(tables["dataset_sharedschema_v1_userinteractions"]) == len(task["userInteractions"])
    assert len(tables["dataset_sharedschema_v1_userinteractions_controlevent"]) == sum(
        len(u["controlEvent"]) for u in task["userInteractions"]
    )
    root = tables["dataset_sharedschema_v1"][0]
    assert root["taskName"] == task["taskName"] and root["year"] == 2022
    assert json.loads(root["scores"]) == task["scores"]  # {"type": "object"} -> the object's JSON text
    history = sorted(tables["dataset_sharedschema_v1_stephistory"], key=lambda r: r["index"])
    assert [h["identifier"] for h in history] == [s["identifier"] for s in task["stepHistory"]]
    assert [h["response"] for h in history] == [s.get("response") for s in task["stepHistory"]]
    assert [h["theta"] for h in history] == [s.get("theta") for s in task["stepHistory"]]
    for table in tables.values():
        for r in table:
            assert (r["recordid"], r["assessmentid"], r["year"], r["month"], r["day"]) == (
                "OCJByUtSrVTYtqObYp7XZV_J",
                "spelling",
                2022,
                2,
                15,
            )


def test_real_motion_array_document(spark, tmp_path_factory):
    motion_plan, motion_path, motion, tables = spelling_case(spark, tmp_path_factory)["motion"]
    rows = [json.loads(line) for line in motion_path.read_text().splitlines()]
    check_structure(motion_plan, rows, tables)
    got = sorted(tables["dataset_motionrecord_v1"], key=lambda r: r["sourceindex"])
    assert len(got) == len(motion) == 4
    assert [(r["sensorType"], r["x"], r["uptime"]) for r in got] == [
        (m.get("sensorType"), m.get("x"), m["uptime"]) for m in motion
    ]
    assert list(got[0].keys()) == motion_plan.root.column_names


def test_real_recover_sleep_logs_inferred(spark, tmp_path_factory):
    plan, _path, rows, tables, _ = recover_case(spark, tmp_path_factory, SLEEP_MEMBER, "FitbitSleepLogs_v1")
    assert "dataset_fitbitsleeplogs_v1_sleeplogdetails" in plan.table_names
    check_structure(plan, rows, tables)
    details = tables["dataset_fitbitsleeplogs_v1_sleeplogdetails"]
    assert len(details) == sum(len(r.get("SleepLogDetails") or []) for r in rows) > 0
    assert {c for c in plan.table("dataset_fitbitsleeplogs_v1_sleeplogdetails").column_names} >= {
        "id",
        "index",
        "Type",
        "StartDate",
        "EndDate",
        "Value",
        "ParticipantIdentifier",
        "cohort",
    }
    assert {r["cohort"] for r in details} == {"adults_v1"}


def test_distributed_inference_equals_local(spark, tmp_path_factory):
    from bridge_downstream.relationalize.inference import infer_type
    from bridge_downstream.relationalize.spark_executor import infer_type_spark

    _, path, rows, *_ = recover_case(spark, tmp_path_factory, SLEEP_MEMBER, "FitbitSleepLogs_v1")
    assert infer_type_spark(spark, spark.read.text(str(path)).repartition(4)) == infer_type(rows)
    _, synthetic_rows_, synthetic_path, _ = synthetic_case(spark, tmp_path_factory)
    assert infer_type_spark(spark, synthetic_path) == infer_type(synthetic_rows_)


def test_real_recover_intraday_59005_rows(spark, tmp_path_factory):
    plan, _path, rows, tables, _ = recover_case(spark, tmp_path_factory, INTRADAY_MEMBER, "FitbitIntradayCombined_v1")
    assert len(rows) == 59_005 and plan.table_names == ["dataset_fitbitintradaycombined_v1"]
    root = tables[plan.root.name]
    assert len(root) == 59_005
    assert len({r["sourceindex"] for r in root}) == 59_005
    assert {r["ParticipantIdentifier"] for r in root} == {r["ParticipantIdentifier"] for r in rows}


def test_the_local_session_heap_is_fixed_at_start_up(spark):
    # Committed up front (-Xms = the maximum), so the JVM's memory is set by the
    # setting, not grown over a long publish; 1 GiB unless overridden.
    runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
    maximum, committed = runtime.maxMemory(), runtime.totalMemory()
    assert committed >= 0.95 * maximum
    assert 0.8 * (1 << 30) < maximum <= 1 << 30
    options = spark.sparkContext.getConf().get("spark.driver.extraJavaOptions")
    assert "-XX:+AlwaysPreTouch" in options and "-Xms1g" in options


def test_local_spark_writes_no_checksum_files(spark, tmp_path):
    spark.range(3).write.parquet(str(tmp_path / "out"))
    written = [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(name.endswith(".parquet") for name in written)
    assert not [name for name in written if name.endswith(".crc")]
